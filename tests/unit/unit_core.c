/* Unit tests of the pure core (no MPI): dtype table, UTF-8, JSON escapes,
 * header bytes, plan order/offsets/validation, header decoding. Expected
 * bytes are written out by hand from ../shared/SAFETENSORS.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_buf.h"
#include "mst_header.h"
#include "mst_plan.h"
#include "mst_utf8.h"
#include "t_util.h"

static void test_dtypes(void)
{
    static const char *names[MST_DTYPE_COUNT] = {
        "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3",
        "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32",
        "U32", "F32", "C64", "F64", "I64", "U64"};
    static const int bits[MST_DTYPE_COUNT] = {8, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8,
                                              16, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64};
    for (int i = 0; i < MST_DTYPE_COUNT; i++) {
        mst_dtype d = MST_BOOL;
        CHECK(strcmp(mst_dtype_name((mst_dtype)i), names[i]) == 0);
        CHECK_EQ_INT(mst_dtype_bits((mst_dtype)i), bits[i]);
        CHECK_EQ_INT(mst_dtype_from_name(names[i], &d), MST_OK);
        CHECK_EQ_INT(d, i);
    }
    CHECK_EQ_INT(MST_F8_E4M3FNUZ, 9);
    CHECK_EQ_INT(MST_U64, 21);
    CHECK(mst_dtype_name((mst_dtype)22) == NULL);
    CHECK(mst_dtype_name((mst_dtype)-1) == NULL);
    CHECK_EQ_INT(mst_dtype_bits((mst_dtype)22), 0);
    {
        mst_dtype d;
        CHECK_EQ_INT(mst_dtype_from_name("f32", &d), MST_ERR_UNKNOWN_DTYPE);
        CHECK_EQ_INT(mst_dtype_from_name("F32 ", &d), MST_ERR_UNKNOWN_DTYPE);
        CHECK_EQ_INT(mst_dtype_from_name("", &d), MST_ERR_UNKNOWN_DTYPE);
        CHECK_EQ_INT(mst_dtype_from_name(NULL, &d), MST_ERR_INVALID_ARGUMENT);
    }
    CHECK(strcmp(mst_strerror(MST_ERR_DUPLICATE_NAME), "duplicate tensor name") == 0);
    CHECK(strcmp(mst_strerror(12345), "unknown error code") == 0);
    CHECK(strcmp(mst_version_string(), MST_EXPECTED_VERSION) == 0);
    CHECK_EQ_INT(mst_version_number(), MST_VERSION_NUMBER);
}

static void test_utf8(void)
{
    CHECK_EQ_INT(mst_utf8_check("abc", 3), 3);
    CHECK_EQ_INT(mst_utf8_check("\xc3\xa9t\xc3\xa9", 6), 6);           /* été */
    CHECK_EQ_INT(mst_utf8_check("\xf0\x9f\x98\x80", 4), 4);           /* emoji */
    CHECK_EQ_INT(mst_utf8_check("a\xff", 2), 1);                      /* invalid byte */
    CHECK_EQ_INT(mst_utf8_check("\xc0\xaf", 2), 0);                   /* overlong */
    CHECK_EQ_INT(mst_utf8_check("\xe0\x80\xaf", 3), 0);               /* overlong */
    CHECK_EQ_INT(mst_utf8_check("\xed\xa0\x80", 3), 0);               /* surrogate */
    CHECK_EQ_INT(mst_utf8_check("\xf4\x90\x80\x80", 4), 0);           /* > U+10FFFF */
    CHECK_EQ_INT(mst_utf8_check("ab\xc3", 3), 2);                     /* truncated */
    CHECK_EQ_INT(mst_utf8_check("\xef\xbf\xbf", 3), 3);               /* U+FFFF is fine */
}

static void expect_json_string(const char *in, size_t len, const char *want)
{
    mst_buf b;
    mst_buf_init(&b, 0);
    mst_json_put_string(&b, in, len);
    CHECK_MSG(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0, "got %.*s want %s",
              (int)b.len, b.data, want);
    mst_buf_free(&b);
}

static void test_json_strings(void)
{
    expect_json_string("plain.name_0", 12, "\"plain.name_0\"");
    expect_json_string("q\"b\\s/", 6, "\"q\\\"b\\\\s/\"");
    expect_json_string("\n\t\r\b\f", 5, "\"\\n\\t\\r\\b\\f\"");
    expect_json_string("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"");
    expect_json_string("\0x", 2, "\"\\u0000x\"");
    expect_json_string("\xc3\xa9\xe2\x80\xa8", 5, "\"\xc3\xa9\xe2\x80\xa8\""); /* raw UTF-8 */
}

/* Builds a plan from (name, dtype, ndim, dims..., rank) rows. */
typedef struct row {
    const char *name;
    int dtype;
    int ndim;
    int64_t shape[4];
    int rank;
} row;

static int plan_rows(mst_plan *plan, const row *rows, size_t n, const mst_meta_decl *meta,
                     size_t nmeta, mst_err *err)
{
    mst_decl *d = calloc(n ? n : 1, sizeof *d);
    int rc, nranks = 1;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].rank + 1 > nranks)
            nranks = rows[i].rank + 1;
        d[i].t.name = rows[i].name;
        d[i].t.name_len = (uint32_t)strlen(rows[i].name);
        d[i].t.dtype = (uint8_t)rows[i].dtype;
        d[i].t.ndim = (uint32_t)rows[i].ndim;
        d[i].t.shape = rows[i].shape;
        d[i].rank = rows[i].rank;
        d[i].local = (uint32_t)i;
    }
    for (size_t i = 0; i < nmeta; i++)
        if (meta[i].rank + 1 > nranks)
            nranks = meta[i].rank + 1;
    rc = mst_plan_build(plan, d, n, meta, nmeta, nranks, err);
    free(d);
    return rc;
}

static void expect_header(const mst_plan *plan, const char *json)
{
    size_t n = strlen(json), padded = (n + 7) / 8 * 8;
    CHECK_EQ_INT(plan->header.len, padded);
    CHECK_MSG(plan->header.len >= n && memcmp(plan->header.data, json, n) == 0,
              "\n got  %.*s\n want %s", (int)plan->header.len, plan->header.data, json);
    for (size_t i = n; i < plan->header.len; i++)
        CHECK(plan->header.data[i] == ' ');
}

static void test_plan_canonical(void)
{
    mst_plan plan;
    mst_err err;
    /* empty file: {} and six spaces */
    CHECK_EQ_INT(plan_rows(&plan, NULL, 0, NULL, 0, &err), MST_OK);
    CHECK_EQ_INT(plan.header.len, 8);
    CHECK(memcmp(plan.header.data, "{}      ", 8) == 0);
    CHECK_EQ_INT(plan.data_len, 0);
    mst_plan_free(&plan);

    {
        /* mixed dtypes, scalar, zero-size, metadata; declared in a scrambled order */
        row rows[] = {{"b", MST_U8, 1, {3}, 1},
                      {"c", MST_BF16, 0, {0}, 0},
                      {"a", MST_F32, 2, {2, 2}, 2},
                      {"z", MST_I64, 1, {0}, 1}};
        mst_meta_decl meta[] = {{{"format", 6, "pt", 2}, 0}, {{"format", 6, "pt", 2}, 2},
                                {{"author", 6, "x", 1}, 1}};
        CHECK_EQ_INT(plan_rows(&plan, rows, 4, meta, 3, &err), MST_OK);
        expect_header(&plan,
                      "{\"__metadata__\":{\"author\":\"x\",\"format\":\"pt\"},"
                      "\"z\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[0,0]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"c\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[16,18]},"
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[18,21]}}");
        CHECK_EQ_INT(plan.data_len, 21);
        CHECK_EQ_INT(plan.begin[0], 18);
        CHECK_EQ_INT(plan.begin[1], 16);
        CHECK_EQ_INT(plan.begin[2], 0);
        CHECK_EQ_INT(plan.begin[3], 0);
        CHECK_EQ_INT(plan.order[0], 3);
        CHECK_EQ_INT(plan.order[3], 0);
        mst_plan_free(&plan);
    }
    {
        /* names compare byte-wise: "B" < "a" < "aa" < "\xc3\xa9"; escapes */
        row rows[] = {{"\xc3\xa9", MST_F16, 1, {1}, 0},
                      {"aa", MST_F16, 1, {1}, 0},
                      {"B", MST_F16, 1, {1}, 1},
                      {"a", MST_F16, 1, {1}, 1},
                      {"q\"\\\n\x01/", MST_F16, 1, {1}, 0}};
        CHECK_EQ_INT(plan_rows(&plan, rows, 5, NULL, 0, &err), MST_OK);
        expect_header(&plan,
                      "{\"B\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]},"
                      "\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[2,4]},"
                      "\"aa\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[4,6]},"
                      "\"q\\\"\\\\\\n\\u0001/\":{\"dtype\":\"F16\",\"shape\":[1],"
                      "\"data_offsets\":[6,8]},"
                      "\"\xc3\xa9\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]}}");
        mst_plan_free(&plan);
    }
    {
        /* every dtype, one element each (two for F4, four for F6): the order is
         * the reference enum, descending */
        row rows[MST_DTYPE_COUNT];
        char names[MST_DTYPE_COUNT][16];
        char want[4096];
        size_t o = 0;
        uint64_t off = 0;
        for (int i = 0; i < MST_DTYPE_COUNT; i++) {
            snprintf(names[i], sizeof names[i], "t%02d", i);
            rows[i].name = names[i];
            rows[i].dtype = i;
            rows[i].ndim = 1;
            rows[i].shape[0] = i == MST_F4 ? 2 : (i == MST_F6_E2M3 || i == MST_F6_E3M2) ? 4 : 1;
            rows[i].rank = i % 3;
        }
        CHECK_EQ_INT(plan_rows(&plan, rows, MST_DTYPE_COUNT, NULL, 0, &err), MST_OK);
        o += (size_t)snprintf(want + o, sizeof want - o, "{");
        for (int i = MST_DTYPE_COUNT - 1; i >= 0; i--) {
            uint64_t nb = (uint64_t)rows[i].shape[0] * (uint64_t)mst_dtype_bits((mst_dtype)i) / 8;
            o += (size_t)snprintf(want + o, sizeof want - o,
                                  "%s\"t%02d\":{\"dtype\":\"%s\",\"shape\":[%lld],"
                                  "\"data_offsets\":[%llu,%llu]}",
                                  i == MST_DTYPE_COUNT - 1 ? "" : ",", i,
                                  mst_dtype_name((mst_dtype)i), (long long)rows[i].shape[0],
                                  (unsigned long long)off, (unsigned long long)(off + nb));
            /* every tensor starts at a multiple of its element size */
            CHECK(off % ((uint64_t)mst_dtype_bits((mst_dtype)i) / 8 ? (uint64_t)mst_dtype_bits((mst_dtype)i) / 8 : 1) == 0);
            off += nb;
        }
        snprintf(want + o, sizeof want - o, "}");
        expect_header(&plan, want);
        mst_plan_free(&plan);
    }
    {
        /* integers are plain decimals, never exponents */
        row rows[] = {{"big", MST_U8, 3, {1000000, 1000000, 1000}, 0},
                      {"after", MST_BOOL, 0, {0}, 0}};
        CHECK_EQ_INT(plan_rows(&plan, rows, 2, NULL, 0, &err), MST_OK);
        expect_header(&plan,
                      "{\"big\":{\"dtype\":\"U8\",\"shape\":[1000000,1000000,1000],"
                      "\"data_offsets\":[0,1000000000000000]},"
                      "\"after\":{\"dtype\":\"BOOL\",\"shape\":[],"
                      "\"data_offsets\":[1000000000000000,1000000000000001]}}");
        mst_plan_free(&plan);
    }
}

static void expect_plan_error(const row *rows, size_t n, const mst_meta_decl *meta, size_t nmeta,
                              int code, const char *needle1, const char *needle2)
{
    mst_plan plan;
    mst_err err;
    int rc = plan_rows(&plan, rows, n, meta, nmeta, &err);
    CHECK_MSG(rc == code, "code %d (%s), want %d: %s", rc, mst_strerror(rc), code, err.msg);
    CHECK_EQ_INT(err.code, code);
    CHECK_MSG(!needle1 || strstr(err.msg, needle1), "message \"%s\" lacks \"%s\"", err.msg,
              needle1);
    CHECK_MSG(!needle2 || strstr(err.msg, needle2), "message \"%s\" lacks \"%s\"", err.msg,
              needle2);
    CHECK(plan.header.len == 0 && plan.order == NULL);
    mst_plan_free(&plan);
}

static void test_plan_errors(void)
{
    {
        row r[] = {{"w", MST_F32, 1, {2}, 0}, {"x", MST_F32, 1, {2}, 3}, {"w", MST_F16, 1, {2}, 2}};
        expect_plan_error(r, 3, NULL, 0, MST_ERR_DUPLICATE_NAME, "\"w\"",
                          "declared on rank 0 and on rank 2");
    }
    {
        row r[] = {{"w", MST_F32, 1, {2}, 1}, {"w", MST_F32, 1, {2}, 1}};
        expect_plan_error(r, 2, NULL, 0, MST_ERR_DUPLICATE_NAME, "\"w\"", "twice on rank 1");
    }
    {
        row r[] = {{"", MST_F32, 1, {2}, 3}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_EMPTY_NAME, "rank 3", "empty name");
    }
    {
        row r[] = {{"__metadata__", MST_F32, 1, {2}, 2}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_RESERVED_NAME, "\"__metadata__\"", "rank 2");
    }
    {
        row r[] = {{"bad\xff", MST_F32, 1, {2}, 1}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_INVALID_UTF8, "\"bad\\xff\"", "rank 1");
    }
    {
        row r[] = {{"t", 22, 1, {2}, 1}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_UNKNOWN_DTYPE, "\"t\"", "22");
    }
    {
        row r[] = {{"neg", MST_F32, 2, {2, -3}, 1}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_NEGATIVE_DIM, "\"neg\"", "-3");
    }
    {
        row r[] = {{"el", MST_U8, 2, {INT64_C(1) << 32, INT64_C(1) << 32}, 0}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_SIZE_OVERFLOW, "\"el\"", "element count");
    }
    {
        row r[] = {{"bits", MST_F64, 2, {INT64_C(1) << 30, INT64_C(1) << 30}, 0}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_SIZE_OVERFLOW, "\"bits\"", "overflow 64 bits");
    }
    {
        /* no bytes, but a dimension the header could not hold exactly */
        row r[] = {{"zero", MST_F32, 2, {INT64_C(1) << 62, 0}, 3}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_SIZE_OVERFLOW, "\"zero\" on rank 3",
                          "dimension 0 of the shape is 4611686018427387904, above 2^53");
    }
    {
        row r[] = {{"huge", MST_U8, 1, {(INT64_C(1) << 53) + 1}, 0}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_SIZE_OVERFLOW, "\"huge\"", "2^53");
    }
    {
        /* each fits, the sum passes 2^53 */
        row r[] = {{"h1", MST_U8, 1, {INT64_C(1) << 52}, 0},
                   {"h2", MST_U8, 1, {INT64_C(1) << 52}, 1},
                   {"h3", MST_U8, 1, {1}, 1}};
        expect_plan_error(r, 3, NULL, 0, MST_ERR_SIZE_OVERFLOW, "2^53", "\"h3\"");
    }
    {
        row r[] = {{"f4", MST_F4, 1, {3}, 2}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_PARTIAL_BYTES, "\"f4\"", "12 bits");
    }
    {
        row r[] = {{"f6", MST_F6_E3M2, 2, {1, 2}, 2}};
        expect_plan_error(r, 1, NULL, 0, MST_ERR_PARTIAL_BYTES, "\"f6\"", "rank 2");
    }
    {
        mst_meta_decl m[] = {{{"k", 1, "a", 1}, 0}, {{"k", 1, "a", 1}, 1}, {{"k", 1, "b", 1}, 3}};
        expect_plan_error(NULL, 0, m, 3, MST_ERR_METADATA_CONFLICT,
                          "key \"k\": rank 0 gives \"a\" but rank 3 gives \"b\"", NULL);
    }
    {
        mst_meta_decl m[] = {{{"k", 1, "a", 1}, 2}, {{"k", 1, "b", 1}, 2}};
        expect_plan_error(NULL, 0, m, 2, MST_ERR_METADATA_CONFLICT, "rank 2 gives two values",
                          NULL);
    }
    {
        /* 1001 names of 100,000 bytes: over the 100,000,000-byte header limit */
        size_t n = 1001, len = 100000;
        row *r = calloc(n, sizeof *r);
        char *names = malloc(n * (len + 1));
        for (size_t i = 0; i < n; i++) {
            char *s = names + i * (len + 1);
            memset(s, 'a', len);
            snprintf(s, 12, "%010zu", i);
            s[10] = 'a';
            s[len] = '\0';
            r[i].name = s;
            r[i].dtype = MST_U8;
            r[i].ndim = 1;
            r[i].shape[0] = 0;
        }
        expect_plan_error(r, n, NULL, 0, MST_ERR_HEADER_TOO_LARGE, "100000000", NULL);
        /* 999 of them fit */
        {
            mst_plan plan;
            mst_err err;
            CHECK_EQ_INT(plan_rows(&plan, r, 999, NULL, 0, &err), MST_OK);
            CHECK(plan.header.len <= MST_MAX_HEADER_SIZE && plan.header.len > 99900000);
            mst_plan_free(&plan);
        }
        free(names);
        free(r);
    }
}

static void test_decode(void)
{
    mst_header h;
    mst_err err;
    const char *ok = "{\"__metadata__\":{\"format\":\"pt\"},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                     "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[16,18]}}  ";
    CHECK_EQ_INT(mst_header_decode(&h, ok, strlen(ok), 18, &err), MST_OK);
    CHECK_EQ_INT(h.ntensors, 2);
    CHECK_EQ_INT(h.nmeta, 1);
    CHECK(strcmp(h.meta[0].key, "format") == 0 && strcmp(h.meta[0].value, "pt") == 0);
    CHECK(strcmp(h.tensors[0].name, "a") == 0 && h.tensors[0].ndim == 2 &&
          h.tensors[0].shape[1] == 2 && h.tensors[0].end == 16);
    CHECK(h.tensors[1].dtype == MST_BF16 && h.tensors[1].ndim == 0);
    CHECK_EQ_INT(mst_header_find(&h, "s", 1), 1);
    CHECK_EQ_INT(mst_header_find(&h, "x", 1), (size_t)-1);
    mst_header_free(&h);

    /* round trip of an encoded header with escapes */
    {
        row rows[] = {{"q\"\\\n\x01/\xc3\xa9", MST_I8, 1, {5}, 0}, {"zz", MST_U64, 0, {0}, 0}};
        mst_meta_decl meta[] = {{{"k\t", 2, "v\x7f", 2}, 0}};
        mst_plan plan;
        CHECK_EQ_INT(plan_rows(&plan, rows, 2, meta, 1, &err), MST_OK);
        CHECK_EQ_INT(mst_header_decode(&h, plan.header.data, plan.header.len, 13, &err), MST_OK);
        CHECK_EQ_INT(h.ntensors, 2);
        CHECK(strcmp(h.tensors[0].name, "zz") == 0);
        CHECK(strcmp(h.tensors[1].name, rows[0].name) == 0);
        CHECK(strcmp(h.meta[0].key, "k\t") == 0 && strcmp(h.meta[0].value, "v\x7f") == 0);
        mst_header_free(&h);
        mst_plan_free(&plan);
    }
    /* a few rejections (the full corpus is in tests/reader) */
    {
        static const struct {
            const char *json;
            uint64_t data_len;
            int code;
        } bad[] = {
            {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\0", 4, MST_ERR_FORMAT},
            {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, MST_ERR_OFFSETS},
            {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, MST_ERR_FORMAT},
            {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
             MST_ERR_DUPLICATE_NAME},
            {"{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
             MST_ERR_UNKNOWN_DTYPE},
            {"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1,
             MST_ERR_PARTIAL_BYTES},
            {"{\"a\":{\"dtype\":\"U8\",\"shape\":[9007199254740993],\"data_offsets\":[0,1]}}", 1,
             MST_ERR_FORMAT},
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            size_t len = strlen(bad[i].json) + (i == 0 ? 1 : 0);
            int rc = mst_header_decode(&h, bad[i].json, len, bad[i].data_len, &err);
            CHECK_MSG(rc == bad[i].code, "case %zu: %d (%s), want %d", i, rc, err.msg,
                      bad[i].code);
            CHECK(h.tensors == NULL);
        }
    }
}

int main(void)
{
    test_dtypes();
    test_utf8();
    test_json_strings();
    test_plan_canonical();
    test_plan_errors();
    test_decode();
    if (t_failures) {
        fprintf(stderr, "unit_core: %d failure(s)\n", t_failures);
        return 1;
    }
    printf("unit_core: all checks passed\n");
    return 0;
}

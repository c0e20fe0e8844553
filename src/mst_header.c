#include "mst_header.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst_utf8.h"

/* ------------------------------------------------------------------------ */
/* Encoder                                                                   */

void mst_json_put_string(mst_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the pending run of bytes copied as they are */
    mst_buf_putc(b, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t n = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        mst_buf_put(b, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        mst_buf_put(b, esc, n);
    }
    mst_buf_put(b, s + run, len - run);
    mst_buf_putc(b, '"');
}

typedef struct arrays_ctx {
    const mst_tensor_desc *const *tensors;
    const uint64_t *pos;
} arrays_ctx;

static const mst_tensor_desc *next_of_arrays(void *ctx, size_t i, uint64_t *begin,
                                             uint64_t *end)
{
    const arrays_ctx *a = ctx;
    *begin = a->pos[i];
    *end = a->pos[i + 1];
    return a->tensors[i];
}

int mst_header_encode(mst_buf *out, const mst_kv *meta, size_t nmeta,
                      const mst_tensor_desc *const *tensors, const uint64_t *pos,
                      size_t ntensors, mst_err *err)
{
    arrays_ctx a = {tensors, pos};
    return mst_header_encode_each(out, meta, nmeta, next_of_arrays, &a, ntensors, err);
}

int mst_header_encode_each(mst_buf *out, const mst_kv *meta, size_t nmeta,
                           mst_header_next_fn next, void *ctx, size_t ntensors, mst_err *err)
{
    size_t pad;
    out->limit = MST_MAX_HEADER_SIZE;
    mst_buf_putc(out, '{');
    if (nmeta > 0) {
        mst_buf_puts(out, "\"__metadata__\":{");
        for (size_t i = 0; i < nmeta; i++) {
            if (i)
                mst_buf_putc(out, ',');
            mst_json_put_string(out, meta[i].key, meta[i].key_len);
            mst_buf_putc(out, ':');
            mst_json_put_string(out, meta[i].value, meta[i].value_len);
        }
        mst_buf_putc(out, '}');
    }
    for (size_t i = 0; i < ntensors && mst_buf_ok(out); i++) {
        uint64_t begin, end;
        const mst_tensor_desc *t = next(ctx, i, &begin, &end);
        if (i || nmeta > 0)
            mst_buf_putc(out, ',');
        mst_json_put_string(out, t->name, t->name_len);
        mst_buf_puts(out, ":{\"dtype\":\"");
        mst_buf_puts(out, mst_dtype_name((mst_dtype)t->dtype));
        mst_buf_puts(out, "\",\"shape\":[");
        for (uint32_t d = 0; d < t->ndim; d++) {
            if (d)
                mst_buf_putc(out, ',');
            mst_buf_put_u64(out, (uint64_t)t->shape[d]);
        }
        mst_buf_puts(out, "],\"data_offsets\":[");
        mst_buf_put_u64(out, begin);
        mst_buf_putc(out, ',');
        mst_buf_put_u64(out, end);
        mst_buf_puts(out, "]}");
    }
    mst_buf_putc(out, '}');
    pad = (8 - out->len % 8) % 8;
    while (pad-- && mst_buf_ok(out))
        mst_buf_putc(out, ' ');
    if (out->no_memory)
        return mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory building the header");
    if (out->over_limit)
        return mst_err_set(err, MST_ERR_HEADER_TOO_LARGE,
                           "the header of %zu tensors and %zu metadata entries would exceed "
                           "the %u-byte limit of safetensors readers",
                           ntensors, nmeta, MST_MAX_HEADER_SIZE);
    return MST_OK;
}

/* ------------------------------------------------------------------------ */
/* Decoder                                                                   */

/* serde_json's recursion limit: 128, counted down on entering each array or
 * object and failing when it reaches 0, so 127 levels parse and the 128th
 * (the top-level object counts) is "recursion limit exceeded". */
#define JSON_MAX_DEPTH 127

typedef struct parser {
    const char *s;
    size_t n;
    size_t i;
    mst_err *err;
    mst_header *h;
    size_t str_used;  /* bytes used in h->strings */
    size_t tcap, mcap, dcap, ndims;
    size_t *dim_off;  /* per tensor: index of its shape in h->dims */
    char q[MST_QUOTE_MAX]; /* scratch for quoted names in messages */
} parser;

static int fail(parser *p, int code, const char *what)
{
    return mst_err_set(p->err, code, "invalid header at file offset %zu: %s", 8 + p->i, what);
}

static int no_memory(parser *p)
{
    return mst_err_set(p->err, MST_ERR_NO_MEMORY, "out of memory decoding the header");
}

static void skip_ws(parser *p)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->i++;
    }
}

static int expect(parser *p, char c, const char *what)
{
    skip_ws(p);
    if (p->i >= p->n || p->s[p->i] != c)
        return fail(p, MST_ERR_FORMAT, what);
    p->i++;
    return MST_OK;
}

static int hex4(parser *p, unsigned *out)
{
    unsigned v = 0;
    if (p->n - p->i < 4)
        return fail(p, MST_ERR_FORMAT, "truncated \\u escape");
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return fail(p, MST_ERR_FORMAT, "invalid \\u escape");
    }
    *out = v;
    return MST_OK;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses a string at p->i (after whitespace). With `keep`, its unescaped
 * bytes go to the string arena (*out, *len); the arena never overflows
 * because an unescaped string plus its NUL is never longer than its quoted
 * source. */
static int parse_string(parser *p, int keep, char **out, size_t *len)
{
    char *o = keep ? p->h->strings + p->str_used : NULL;
    size_t olen = 0;
    skip_ws(p);
    if (p->i >= p->n || p->s[p->i] != '"')
        return fail(p, MST_ERR_FORMAT, "expected a string");
    p->i++;
    for (;;) {
        unsigned char c;
        if (p->i >= p->n)
            return fail(p, MST_ERR_FORMAT, "unterminated string");
        c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20)
            return fail(p, MST_ERR_FORMAT, "control character in a string");
        if (c != '\\') {
            if (o)
                o[olen] = (char)c;
            olen++;
            p->i++;
            continue;
        }
        p->i++;
        if (p->i >= p->n)
            return fail(p, MST_ERR_FORMAT, "unterminated escape");
        c = (unsigned char)p->s[p->i++];
        switch (c) {
        case '"': case '\\': case '/':
            break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            char tmp[4];
            size_t k;
            if (hex4(p, &cp))
                return p->err->code;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(p, MST_ERR_FORMAT, "lone trailing surrogate in \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return fail(p, MST_ERR_FORMAT, "lone leading surrogate in \\u escape");
                p->i += 2;
                if (hex4(p, &lo))
                    return p->err->code;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail(p, MST_ERR_FORMAT, "invalid surrogate pair in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            k = put_utf8(tmp, cp);
            if (o)
                memcpy(o + olen, tmp, k);
            olen += k;
            continue;
        }
        default:
            p->i--;
            return fail(p, MST_ERR_FORMAT, "invalid escape in a string");
        }
        if (o)
            o[olen] = (char)c;
        olen++;
    }
    if (o) {
        o[olen] = '\0';
        p->str_used += olen + 1;
        *out = o;
        *len = olen;
    }
    return MST_OK;
}

/* A JSON number per RFC 8259; `*is_uint` tells whether it is a plain
 * non-negative integer (no sign, fraction or exponent), then in *v
 * (saturated at UINT64_MAX). */
static int parse_number(parser *p, int *is_uint, uint64_t *v)
{
    size_t start = p->i;
    uint64_t val = 0;
    int plain = 1;
    if (p->i < p->n && p->s[p->i] == '-') {
        plain = 0;
        p->i++;
    }
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') {
        p->i = start;
        return fail(p, MST_ERR_FORMAT, "invalid number");
    }
    if (p->s[p->i] == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') {
        p->i = start;
        return fail(p, MST_ERR_FORMAT, "number with a leading zero");
    }
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        val = (val > (UINT64_MAX - d) / 10) ? UINT64_MAX : val * 10 + d;
        p->i++;
    }
    if (p->i < p->n && p->s[p->i] == '.') {
        plain = 0;
        p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
            return fail(p, MST_ERR_FORMAT, "invalid number: no digit after '.'");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        plain = 0;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
            return fail(p, MST_ERR_FORMAT, "invalid number: no digit in exponent");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    }
    *is_uint = plain;
    *v = val;
    return MST_OK;
}

/* An integer where the format wants one (shape, data_offsets). */
static int parse_uint(parser *p, const char *field, uint64_t *v)
{
    int is_uint;
    size_t at;
    char what[96];
    skip_ws(p);
    at = p->i;
    if (p->i >= p->n || (p->s[p->i] != '-' && (p->s[p->i] < '0' || p->s[p->i] > '9'))) {
        snprintf(what, sizeof what, "%s: expected a non-negative integer", field);
        return fail(p, MST_ERR_FORMAT, what);
    }
    if (parse_number(p, &is_uint, v))
        return p->err->code;
    if (!is_uint) {
        p->i = at;
        snprintf(what, sizeof what,
                 "%s: expected a non-negative integer without sign, fraction or exponent", field);
        return fail(p, MST_ERR_FORMAT, what);
    }
    if (*v > MST_MAX_OFFSET) {
        p->i = at;
        snprintf(what, sizeof what, "%s: integer above 2^53", field);
        return fail(p, MST_ERR_FORMAT, what);
    }
    return MST_OK;
}

static int skip_literal(parser *p, const char *lit)
{
    size_t k = strlen(lit);
    if (p->n - p->i < k || memcmp(p->s + p->i, lit, k) != 0)
        return fail(p, MST_ERR_FORMAT, "invalid literal");
    p->i += k;
    return MST_OK;
}

/* Any JSON value, checked and dropped (unknown fields of an entry). */
static int skip_value(parser *p, int depth)
{
    char c;
    skip_ws(p);
    if (p->i >= p->n)
        return fail(p, MST_ERR_FORMAT, "expected a value");
    c = p->s[p->i];
    if (c == '"')
        return parse_string(p, 0, NULL, NULL);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (depth <= 0)
            return fail(p, MST_ERR_FORMAT, "recursion limit exceeded (128 nesting levels)");
        p->i++;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == close) {
            p->i++;
            return MST_OK;
        }
        for (;;) {
            if (c == '{') {
                if (parse_string(p, 0, NULL, NULL) || expect(p, ':', "expected ':'"))
                    return p->err->code;
            }
            if (skip_value(p, depth - 1))
                return p->err->code;
            skip_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            return expect(p, close, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == 't')
        return skip_literal(p, "true");
    if (c == 'f')
        return skip_literal(p, "false");
    if (c == 'n')
        return skip_literal(p, "null");
    if (c == '-' || (c >= '0' && c <= '9')) {
        int is_uint;
        uint64_t v;
        return parse_number(p, &is_uint, &v);
    }
    return fail(p, MST_ERR_FORMAT, "expected a value");
}

static int push_dim(parser *p, uint64_t v)
{
    if (p->ndims == p->dcap) {
        size_t cap = p->dcap ? p->dcap * 2 : 64;
        int64_t *d = realloc(p->h->dims, cap * sizeof *d);
        if (!d)
            return no_memory(p);
        p->h->dims = d;
        p->dcap = cap;
    }
    p->h->dims[p->ndims++] = (int64_t)v;
    return MST_OK;
}

static const char *tensor_q(parser *p, const mst_header_tensor *t)
{
    return mst_quote(p->q, sizeof p->q, t->name, t->name_len, MST_QUOTE_LIMIT);
}

/* fail() with "tensor NAME: " in front of the reason. */
static int fail_tensor(parser *p, int code, const mst_header_tensor *t, const char *what)
{
    char msg[MST_QUOTE_MAX + 160];
    snprintf(msg, sizeof msg, "tensor %s: %s", tensor_q(p, t), what);
    return fail(p, code, msg);
}

/* "dtype": a variant name, or the single-key map {"F32": null} that serde
 * also accepts for a unit enum variant. */
static int parse_dtype(parser *p, mst_header_tensor *t)
{
    char *dt;
    size_t dlen, at, mark = p->str_used;
    int as_map = 0;
    mst_dtype d;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '{') {
        as_map = 1;
        p->i++;
        skip_ws(p);
    }
    at = p->i;
    if (p->i >= p->n || p->s[p->i] != '"')
        return fail_tensor(p, MST_ERR_FORMAT, t, "\"dtype\": expected a string");
    if (parse_string(p, 1, &dt, &dlen))
        return p->err->code;
    p->str_used = mark;
    if (strlen(dt) != dlen || mst_dtype_from_name(dt, &d) != MST_OK) {
        char qd[64], what[128];
        p->i = at;
        snprintf(what, sizeof what, "unknown dtype %s", mst_quote(qd, sizeof qd, dt, dlen, 32));
        return fail_tensor(p, MST_ERR_UNKNOWN_DTYPE, t, what);
    }
    t->dtype = d;
    if (!as_map)
        return MST_OK;
    /* serde reads a unit variant's value as (): null, or an empty map */
    if (expect(p, ':', "\"dtype\": expected ':'"))
        return p->err->code;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '{') {
        p->i++;
        if (expect(p, '}', "\"dtype\": a unit variant's value must be null or {}"))
            return p->err->code;
    } else if (p->n - p->i < 4 || memcmp(p->s + p->i, "null", 4) != 0) {
        return fail_tensor(p, MST_ERR_FORMAT, t, "\"dtype\": a unit variant's value must be null or {}");
    } else {
        p->i += 4;
    }
    if (expect(p, '}', "\"dtype\": expected '}' after a one-entry variant map"))
        return p->err->code;
    return MST_OK;
}

static int parse_shape(parser *p, mst_header_tensor *t, size_t *dim_off)
{
    if (expect(p, '[', "\"shape\": expected an array"))
        return p->err->code;
    *dim_off = p->ndims;
    t->ndim = 0;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == ']') {
        p->i++;
        return MST_OK;
    }
    for (;;) {
        uint64_t v;
        if (parse_uint(p, "shape", &v) || push_dim(p, v))
            return p->err->code;
        if (t->ndim == UINT32_MAX)
            return fail_tensor(p, MST_ERR_FORMAT, t, "\"shape\": too many dimensions");
        t->ndim++;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        return expect(p, ']', "\"shape\": expected ',' or ']'");
    }
}

static int parse_offsets(parser *p, mst_header_tensor *t)
{
    if (expect(p, '[', "\"data_offsets\": expected an array of two integers") ||
        parse_uint(p, "data_offsets", &t->begin) ||
        expect(p, ',', "\"data_offsets\": expected two integers") ||
        parse_uint(p, "data_offsets", &t->end) ||
        expect(p, ']', "\"data_offsets\": expected exactly two integers"))
        return p->err->code;
    return MST_OK;
}

/* A tensor entry: an object with dtype, shape, data_offsets (in any order,
 * unknown fields ignored, each field once), or, as serde also accepts for a
 * struct, an array of exactly those three values in that order. */
static int parse_entry(parser *p, mst_header_tensor *t, size_t *dim_off, int depth)
{
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    skip_ws(p);
    if (p->i >= p->n || (p->s[p->i] != '{' && p->s[p->i] != '['))
        return fail_tensor(p, MST_ERR_FORMAT, t, "expected an object");
    if (depth <= 0)
        return fail(p, MST_ERR_FORMAT, "recursion limit exceeded (128 nesting levels)");
    if (p->s[p->i] == '[') {
        p->i++;
        if (parse_dtype(p, t) || expect(p, ',', "tensor array: expected 3 elements") ||
            parse_shape(p, t, dim_off) || expect(p, ',', "tensor array: expected 3 elements") ||
            parse_offsets(p, t) || expect(p, ']', "tensor array: expected exactly 3 elements"))
            return p->err->code;
        return MST_OK;
    }
    p->i++;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            size_t key_at;
            char *key = NULL;
            size_t klen = 0;
            /* keys go to the arena and are dropped again: only three matter */
            size_t mark = p->str_used;
            skip_ws(p);
            key_at = p->i;
            if (parse_string(p, 1, &key, &klen) || expect(p, ':', "expected ':'"))
                return p->err->code;
            p->str_used = mark;
            if (klen == 5 && memcmp(key, "dtype", 5) == 0) {
                if (have_dtype++) {
                    p->i = key_at;
                    return fail_tensor(p, MST_ERR_FORMAT, t, "duplicate field \"dtype\"");
                }
                if (parse_dtype(p, t))
                    return p->err->code;
            } else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
                if (have_shape++) {
                    p->i = key_at;
                    return fail_tensor(p, MST_ERR_FORMAT, t, "duplicate field \"shape\"");
                }
                if (parse_shape(p, t, dim_off))
                    return p->err->code;
            } else if (klen == 12 && memcmp(key, "data_offsets", 12) == 0) {
                if (have_offsets++) {
                    p->i = key_at;
                    return fail_tensor(p, MST_ERR_FORMAT, t, "duplicate field \"data_offsets\"");
                }
                if (parse_offsets(p, t))
                    return p->err->code;
            } else if (skip_value(p, depth - 1)) {
                return p->err->code;
            }
            skip_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (expect(p, '}', "expected ',' or '}' in a tensor entry"))
                return p->err->code;
            break;
        }
    }
    if (!have_dtype || !have_shape || !have_offsets) {
        char what[64];
        snprintf(what, sizeof what, "missing field \"%s\"",
                 !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
        return fail_tensor(p, MST_ERR_FORMAT, t, what);
    }
    return MST_OK;
}

static int parse_metadata(parser *p, int depth)
{
    mst_header *h = p->h;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == 'n')
        return skip_literal(p, "null"); /* the reference reads null as "no metadata" */
    if (p->i >= p->n || p->s[p->i] != '{')
        return fail(p, MST_ERR_FORMAT, "\"__metadata__\" must be an object of strings");
    if (depth <= 0)
        return fail(p, MST_ERR_FORMAT, "recursion limit exceeded (128 nesting levels)");
    p->i++;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
        return MST_OK;
    }
    for (;;) {
        mst_header_meta *m;
        if (h->nmeta == p->mcap) {
            size_t cap = p->mcap ? p->mcap * 2 : 8;
            mst_header_meta *nm = realloc(h->meta, cap * sizeof *nm);
            if (!nm)
                return no_memory(p);
            h->meta = nm;
            p->mcap = cap;
        }
        m = &h->meta[h->nmeta];
        if (parse_string(p, 1, &m->key, &m->key_len) || expect(p, ':', "expected ':'"))
            return p->err->code;
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != '"') {
            char q[MST_QUOTE_MAX], what[MST_QUOTE_MAX + 64];
            snprintf(what, sizeof what, "\"__metadata__\" value of key %s is not a string",
                     mst_quote(q, sizeof q, m->key, m->key_len, MST_QUOTE_LIMIT));
            return fail(p, MST_ERR_FORMAT, what);
        }
        if (parse_string(p, 1, &m->value, &m->value_len))
            return p->err->code;
        h->nmeta++;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        return expect(p, '}', "expected ',' or '}' in \"__metadata__\"");
    }
}

static int parse_top(parser *p)
{
    mst_header *h = p->h;
    int have_meta = 0;
    if (expect(p, '{', "the header must be a JSON object"))
        return p->err->code;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            char *name;
            size_t len, at;
            skip_ws(p);
            at = p->i;
            if (parse_string(p, 1, &name, &len) || expect(p, ':', "expected ':'"))
                return p->err->code;
            if (len == 12 && memcmp(name, "__metadata__", 12) == 0) {
                p->str_used -= len + 1;
                if (have_meta++) {
                    p->i = at;
                    return fail(p, MST_ERR_FORMAT, "duplicate \"__metadata__\"");
                }
                if (parse_metadata(p, JSON_MAX_DEPTH - 1))
                    return p->err->code;
            } else {
                mst_header_tensor *t;
                if (h->ntensors == p->tcap) {
                    size_t cap = p->tcap ? p->tcap * 2 : 64;
                    mst_header_tensor *nt = realloc(h->tensors, cap * sizeof *nt);
                    size_t *nd = realloc(p->dim_off, cap * sizeof *nd);
                    if (nt)
                        h->tensors = nt;
                    if (nd)
                        p->dim_off = nd;
                    if (!nt || !nd)
                        return no_memory(p);
                    p->tcap = cap;
                }
                t = &h->tensors[h->ntensors];
                memset(t, 0, sizeof *t);
                t->name = name;
                t->name_len = len;
                t->pos = 8 + at;
                p->dim_off[h->ntensors] = 0;
                if (parse_entry(p, t, &p->dim_off[h->ntensors], JSON_MAX_DEPTH - 1))
                    return p->err->code;
                h->ntensors++;
            }
            skip_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (expect(p, '}', "expected ',' or '}'"))
                return p->err->code;
            break;
        }
    }
    skip_ws(p);
    if (p->i != p->n)
        return fail(p, MST_ERR_FORMAT,
                    "trailing characters after the JSON object (padding must be spaces)");
    return MST_OK;
}

static int cmp_name(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/* qsort has no context argument; the decoder sorts indices of one header at
 * a time through this pointer, set only for the duration of the sort. */
static _Thread_local const mst_header *sort_header;

static int cmp_by_name(const void *a, const void *b)
{
    const mst_header_tensor *x = &sort_header->tensors[*(const size_t *)a];
    const mst_header_tensor *y = &sort_header->tensors[*(const size_t *)b];
    return cmp_name(x->name, x->name_len, y->name, y->name_len);
}

static int cmp_by_offsets(const void *a, const void *b)
{
    const mst_header_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_meta(const void *a, const void *b)
{
    const mst_header_meta *x = a, *y = b;
    return cmp_name(x->key, x->key_len, y->key, y->key_len);
}

static void put_shape(char *out, size_t cap, const mst_header_tensor *t)
{
    size_t o = 0;
    o += (size_t)snprintf(out + o, cap - o, "[");
    for (uint32_t d = 0; d < t->ndim && o < cap; d++)
        o += (size_t)snprintf(out + o, cap - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (o < cap)
        snprintf(out + o, cap - o, "]");
}

static int validate(mst_header *h, uint64_t data_len, mst_err *err)
{
    char q[MST_QUOTE_MAX], shape[128];
    uint64_t start = 0;
    if (h->ntensors > 1)
        qsort(h->tensors, h->ntensors, sizeof *h->tensors, cmp_by_offsets);
    h->by_name = malloc((h->ntensors ? h->ntensors : 1) * sizeof *h->by_name);
    if (!h->by_name)
        return mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory validating the header");
    for (size_t i = 0; i < h->ntensors; i++)
        h->by_name[i] = i;
    sort_header = h;
    qsort(h->by_name, h->ntensors, sizeof *h->by_name, cmp_by_name);
    sort_header = NULL;
    for (size_t i = 1; i < h->ntensors; i++) {
        const mst_header_tensor *a = &h->tensors[h->by_name[i - 1]];
        const mst_header_tensor *b = &h->tensors[h->by_name[i]];
        if (cmp_name(a->name, a->name_len, b->name, b->name_len) == 0)
            return mst_err_set(err, MST_ERR_DUPLICATE_NAME,
                               "duplicate tensor name: tensor %s appears twice in the header (file offsets %zu "
                               "and %zu)",
                               mst_quote(q, sizeof q, a->name, a->name_len, MST_QUOTE_LIMIT),
                               a->pos < b->pos ? a->pos : b->pos, a->pos < b->pos ? b->pos : a->pos);
    }
    if (h->nmeta > 1) {
        qsort(h->meta, h->nmeta, sizeof *h->meta, cmp_meta);
        for (size_t i = 1; i < h->nmeta; i++)
            if (cmp_meta(&h->meta[i - 1], &h->meta[i]) == 0)
                return mst_err_set(err, MST_ERR_FORMAT, "duplicate metadata key: \"__metadata__\" key %s appears twice",
                                   mst_quote(q, sizeof q, h->meta[i].key, h->meta[i].key_len,
                                             MST_QUOTE_LIMIT));
    }
    for (size_t i = 0; i < h->ntensors; i++) {
        const mst_header_tensor *t = &h->tensors[i];
        uint64_t nel = 1, nbits, bits = (uint64_t)mst_dtype_bits(t->dtype);
        int overflow = 0;
        mst_quote(q, sizeof q, t->name, t->name_len, MST_QUOTE_LIMIT);
        if (t->begin != start || t->end < t->begin) {
            const char *why = t->end < t->begin ? "end before begin"
                              : i == 0           ? "the first tensor must begin at 0"
                              : t->begin > start ? "a hole before it"
                                                 : "it overlaps the previous tensor";
            return mst_err_set(err, MST_ERR_OFFSETS,
                               "invalid offsets: tensor %s (file offset %zu): data_offsets [%llu, "
                               "%llu] but the data must continue at %llu: %s",
                               q, t->pos, (unsigned long long)t->begin,
                               (unsigned long long)t->end, (unsigned long long)start, why);
        }
        for (uint32_t d = 0; d < t->ndim; d++) {
            uint64_t v = (uint64_t)t->shape[d];
            if (v && nel > UINT64_MAX / v)
                overflow = 1;
            nel *= v;
        }
        if (overflow || (bits && nel > UINT64_MAX / bits))
            return mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                               "size overflow: tensor %s (file offset %zu): element count or bit "
                               "size of its shape overflows 64 bits",
                               q, t->pos);
        nbits = nel * bits;
        put_shape(shape, sizeof shape, t);
        if (nbits % 8)
            return mst_err_set(err, MST_ERR_PARTIAL_BYTES,
                               "partial bytes: tensor %s (file offset %zu): %s %s is %llu bits, "
                               "not a whole number of bytes",
                               q, t->pos, mst_dtype_name(t->dtype), shape,
                               (unsigned long long)nbits);
        if (t->end - t->begin != nbits / 8)
            return mst_err_set(err, MST_ERR_OFFSETS,
                               "size mismatch: tensor %s (file offset %zu): data_offsets [%llu, "
                               "%llu] span %llu bytes but %s %s needs %llu",
                               q, t->pos, (unsigned long long)t->begin,
                               (unsigned long long)t->end,
                               (unsigned long long)(t->end - t->begin), mst_dtype_name(t->dtype),
                               shape, (unsigned long long)(nbits / 8));
        start = t->end;
    }
    h->data_len = start;
    if (data_len != UINT64_MAX && start != data_len)
        return mst_err_set(err, MST_ERR_OFFSETS,
                           "incomplete buffer: the tensors end at data offset %llu but the data "
                           "buffer is %llu bytes (%s)",
                           (unsigned long long)start, (unsigned long long)data_len,
                           start < data_len ? "trailing bytes after the last tensor"
                                            : "the file is shorter than its header says");
    return MST_OK;
}

int mst_header_decode(mst_header *h, const char *json, size_t n, uint64_t data_len,
                      mst_err *err)
{
    parser p;
    size_t bad;
    mst_err_clear(err);
    memset(h, 0, sizeof *h);
    memset(&p, 0, sizeof p);
    p.s = json;
    p.n = n;
    p.err = err;
    p.h = h;
    bad = mst_utf8_check(json, n);
    if (bad != n)
        return mst_err_set(err, MST_ERR_INVALID_UTF8,
                           "header not UTF-8: invalid byte at file offset %zu", 8 + bad);
    h->strings = malloc(n + 1);
    if (!h->strings)
        return mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory decoding the header");
    if (parse_top(&p) == MST_OK) {
        for (size_t i = 0; i < h->ntensors; i++)
            h->tensors[i].shape = h->dims ? h->dims + p.dim_off[i] : NULL;
        validate(h, data_len, err);
    }
    free(p.dim_off);
    if (err->code != MST_OK) {
        int code = err->code;
        mst_header_free(h);
        return code;
    }
    return MST_OK;
}

int mst_header_check_length(uint64_t file_size, const unsigned char *len8, uint64_t *n,
                            mst_err *err)
{
    uint64_t v = 0;
    mst_err_clear(err);
    if (file_size < 8 || !len8)
        return mst_err_set(err, MST_ERR_FORMAT,
                           "header too small: the file is %llu bytes, less than the 8-byte "
                           "header length",
                           (unsigned long long)file_size);
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | len8[i];
    if (v > MST_MAX_HEADER_SIZE)
        return mst_err_set(err, MST_ERR_HEADER_TOO_LARGE,
                           "header too large: the header length at file offset 0 is %llu, above "
                           "the %u-byte limit",
                           (unsigned long long)v, MST_MAX_HEADER_SIZE);
    if (v > file_size - 8)
        return mst_err_set(err, MST_ERR_FORMAT,
                           "invalid header length: %llu bytes of header would end at file "
                           "offset %llu, past the end of the file (%llu bytes)",
                           (unsigned long long)v, (unsigned long long)(8 + v),
                           (unsigned long long)file_size);
    *n = v;
    return MST_OK;
}

void mst_header_free(mst_header *h)
{
    if (!h)
        return;
    free(h->tensors);
    free(h->meta);
    free(h->strings);
    free(h->dims);
    free(h->by_name);
    memset(h, 0, sizeof *h);
}

size_t mst_header_find(const mst_header *h, const char *name, size_t len)
{
    size_t lo = 0, hi = h->ntensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const mst_header_tensor *t = &h->tensors[h->by_name[mid]];
        int c = cmp_name(t->name, t->name_len, name, len);
        if (c == 0)
            return h->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1;
}

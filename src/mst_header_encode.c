/* The canonical header: the exact bytes of the reference writer (field
 * order, escapes, padding with spaces to a multiple of 8). */
#include "mst_header.h"

#include <string.h>

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

static char *put_lit(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define LIT(p, s) put_lit(p, s, sizeof s - 1)
#define FAST_NAME 200 /* names up to this long, without escapes, take the fast path */
#define FAST_DIMS 8

/* One tensor's entry, as mst_header_encode_each writes it, into rec (at
 * least FAST_REC bytes) when the name needs no escape and the shape is short:
 * one copy into the header instead of a dozen calls. Returns its length, or
 * 0 for the general path. */
#define FAST_REC (FAST_NAME + 96 + 21 * (FAST_DIMS + 2))
static size_t fast_entry(char *rec, const mst_tensor_desc *t, uint64_t begin, uint64_t end,
                         int comma)
{
    char *p = rec;
    const char *dt = mst_dtype_name((mst_dtype)t->dtype);
    size_t dl = strlen(dt);
    if (t->name_len > FAST_NAME || t->ndim > FAST_DIMS || dl > 16)
        return 0;
    for (size_t i = 0; i < t->name_len; i++) {
        unsigned char c = (unsigned char)t->name[i];
        if (c < 0x20 || c == '"' || c == '\\')
            return 0;
    }
    if (comma)
        *p++ = ',';
    *p++ = '"';
    p = put_lit(p, t->name, t->name_len);
    p = LIT(p, "\":{\"dtype\":\"");
    p = put_lit(p, dt, dl);
    p = LIT(p, "\",\"shape\":[");
    for (uint32_t d = 0; d < t->ndim; d++) {
        if (d)
            *p++ = ',';
        p = mst_u64_digits(p, (uint64_t)t->shape[d]);
    }
    p = LIT(p, "],\"data_offsets\":[");
    p = mst_u64_digits(p, begin);
    *p++ = ',';
    p = mst_u64_digits(p, end);
    p = LIT(p, "]}");
    return (size_t)(p - rec);
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
        char rec[FAST_REC];
        size_t n = fast_entry(rec, t, begin, end, i || nmeta > 0);
        if (n) {
            mst_buf_put(out, rec, n);
            continue;
        }
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

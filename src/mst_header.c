/* The decoded header: the rules that need all of it (tensors contiguous from
 * data offset 0 in file order, sizes that match dtype and shape, the end of
 * the data buffer, no duplicate tensor names or metadata keys), the length
 * field in front of it, lookup by name and release. The JSON itself is read
 * by mst_header_parse.c and mst_header_json.c. */
#include "mst_header.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst_header_parse.h"
#include "mst_buf.h"
#include "mst_utf8.h"

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

/* A tensor's quoted name for a message: built only when one is reported. */
#define QNAME(t) mst_quote(q, sizeof q, (t)->name, (t)->name_len, MST_QUOTE_LIMIT)

static int validate(mst_header *h, uint64_t data_len, mst_err *err)
{
    char q[MST_QUOTE_MAX], shape[128];
    uint64_t start = 0;
    if (h->ntensors > 1)
        qsort(h->tensors, h->ntensors, sizeof *h->tensors, cmp_by_offsets);
    h->by_name = mst_malloc_big((h->ntensors ? h->ntensors : 1) * sizeof *h->by_name);
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
        if (t->begin != start || t->end < t->begin) {
            const char *why = t->end < t->begin ? "end before begin"
                              : i == 0           ? "the first tensor must begin at 0"
                              : t->begin > start ? "a hole before it"
                                                 : "it overlaps the previous tensor";
            return mst_err_set(err, MST_ERR_OFFSETS,
                               "invalid offsets: tensor %s (file offset %zu): data_offsets [%llu, "
                               "%llu] but the data must continue at %llu: %s",
                               QNAME(t), t->pos, (unsigned long long)t->begin,
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
                               QNAME(t), t->pos);
        nbits = nel * bits;
        if (nbits % 8 || t->end - t->begin != nbits / 8)
            put_shape(shape, sizeof shape, t); /* for the messages below */
        if (nbits % 8)
            return mst_err_set(err, MST_ERR_PARTIAL_BYTES,
                               "partial bytes: tensor %s (file offset %zu): %s %s is %llu bits, "
                               "not a whole number of bytes",
                               QNAME(t), t->pos, mst_dtype_name(t->dtype), shape,
                               (unsigned long long)nbits);
        if (t->end - t->begin != nbits / 8)
            return mst_err_set(err, MST_ERR_OFFSETS,
                               "size mismatch: tensor %s (file offset %zu): data_offsets [%llu, "
                               "%llu] span %llu bytes but %s %s needs %llu",
                               QNAME(t), t->pos, (unsigned long long)t->begin,
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
    size_t bad;
    mst_err_clear(err);
    memset(h, 0, sizeof *h);
    bad = mst_utf8_check(json, n);
    if (bad != n)
        return mst_err_set(err, MST_ERR_INVALID_UTF8,
                           "header not UTF-8: invalid byte at file offset %zu", 8 + bad);
    if (mst_header_parse(h, json, n, err) == MST_OK)
        validate(h, data_len, err);
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

void mst_header_tensor_info(const mst_header_tensor *t, mst_tensor_info *out)
{
    out->name = t->name;
    out->name_len = t->name_len;
    out->dtype = t->dtype;
    out->ndim = (int)t->ndim;
    out->shape = t->shape;
    out->begin = t->begin;
    out->end = t->end;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int mst_header_crc(const mst_header *h, size_t i, uint32_t *crc, mst_err *err)
{
    const mst_header_meta *m = NULL;
    for (size_t k = 0; k < h->nmeta; k++)
        if (h->meta[k].key_len == 9 && !memcmp(h->meta[k].key, "mst.crc32", 9))
            m = &h->meta[k];
    if (!m)
        return mst_err_set(err, MST_ERR_NOT_FOUND,
                           "the file has no checksums (no metadata entry \"mst.crc32\")");
    if (m->value_len != 8 * h->ntensors)
        return mst_err_set(err, MST_ERR_CHECKSUM,
                           "metadata \"mst.crc32\" has %zu characters; %zu tensors need %zu",
                           m->value_len, h->ntensors, 8 * h->ntensors);
    *crc = 0;
    for (size_t k = 0; k < 8; k++) {
        int v = hexval(m->value[8 * i + k]);
        if (v < 0)
            return mst_err_set(err, MST_ERR_CHECKSUM,
                               "metadata \"mst.crc32\" is not lowercase hexadecimal at "
                               "character %zu",
                               8 * i + k);
        *crc = *crc << 4 | (uint32_t)v;
    }
    return MST_OK;
}

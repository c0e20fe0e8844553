/* A decoded, validated header as flat bytes, and back (see mst_header.h). */
#include <stdlib.h>
#include <string.h>

#include "mst_header.h"
#include "mst_buf.h"

/* Layout, u64 words in host order: ntensors, nmeta, data_len, nstrings,
 * ndims; per tensor (in h->tensors' order) name_off, name_len, dtype, ndim,
 * begin, end, pos; per metadata entry key_off, key_len, value_off,
 * value_len; by_name (ntensors words); dims (ndims words, every tensor's
 * shape in order); the strings (nstrings bytes, every name, key and value
 * followed by a NUL), padded to 8 bytes. */

static void put_string(mst_buf *strings, mst_buf *b, const char *s, size_t n)
{
    mst_buf_put_raw64(b, strings->len);
    mst_buf_put_raw64(b, n);
    mst_buf_put(strings, s, n);
    mst_buf_putc(strings, '\0');
}

int mst_header_pack(mst_buf *b, const mst_header *h)
{
    mst_buf strings;
    uint64_t ndims = 0;
    int ok;
    mst_buf_init(&strings, 0);
    for (size_t i = 0; i < h->ntensors; i++)
        ndims += h->tensors[i].ndim;
    mst_buf_put_raw64(b, h->ntensors);
    mst_buf_put_raw64(b, h->nmeta);
    mst_buf_put_raw64(b, h->data_len);
    {
        uint64_t nstrings = 0;
        for (size_t i = 0; i < h->ntensors; i++)
            nstrings += h->tensors[i].name_len + 1;
        for (size_t i = 0; i < h->nmeta; i++)
            nstrings += h->meta[i].key_len + 1 + h->meta[i].value_len + 1;
        mst_buf_put_raw64(b, nstrings);
        if (mst_buf_reserve(&strings, (size_t)nstrings + 1) != 0 ||
            mst_buf_reserve(b, (size_t)(nstrings + 8 * (9 * h->ntensors + 4 * h->nmeta + ndims) +
                                        16)) != 0) {
            mst_buf_free(&strings);
            return -1;
        }
    }
    mst_buf_put_raw64(b, ndims);
    for (size_t i = 0; i < h->ntensors; i++) {
        const mst_header_tensor *t = &h->tensors[i];
        put_string(&strings, b, t->name, t->name_len);
        mst_buf_put_raw64(b, (uint64_t)t->dtype);
        mst_buf_put_raw64(b, t->ndim);
        mst_buf_put_raw64(b, t->begin);
        mst_buf_put_raw64(b, t->end);
        mst_buf_put_raw64(b, t->pos);
    }
    for (size_t i = 0; i < h->nmeta; i++) {
        put_string(&strings, b, h->meta[i].key, h->meta[i].key_len);
        put_string(&strings, b, h->meta[i].value, h->meta[i].value_len);
    }
    for (size_t i = 0; i < h->ntensors; i++)
        mst_buf_put_raw64(b, h->by_name[i]);
    for (size_t i = 0; i < h->ntensors; i++)
        for (uint32_t d = 0; d < h->tensors[i].ndim; d++)
            mst_buf_put_raw64(b, (uint64_t)h->tensors[i].shape[d]);
    mst_buf_put(b, strings.data, strings.len);
    while (b->len % 8)
        mst_buf_putc(b, '\0');
    ok = mst_buf_ok(b) && mst_buf_ok(&strings);
    mst_buf_free(&strings);
    return ok ? 0 : -1;
}

static int word(const char **p, const char *end, uint64_t *v)
{
    if (end - *p < 8)
        return -1;
    memcpy(v, *p, 8);
    *p += 8;
    return 0;
}

/* The string at [off, off + n) of the strings, which must end in a NUL there. */
static char *at(char *strings, uint64_t nstrings, uint64_t off, uint64_t n)
{
    if (off > nstrings || n >= nstrings - off || strings[off + n] != '\0')
        return NULL;
    return strings + off;
}

int mst_header_unpack(mst_header *h, const char **p, const char *end)
{
    uint64_t nt, nm, nstrings, ndims, v[7];
    const char *words;
    size_t used = 0;
    memset(h, 0, sizeof *h);
    if (word(p, end, &nt) || word(p, end, &nm) || word(p, end, &h->data_len) ||
        word(p, end, &nstrings) || word(p, end, &ndims))
        return -1;
    /* every count bounded by what is left, before anything is allocated */
    {
        uint64_t left = (uint64_t)(end - *p) / 8;
        if (nt > left / 8 || nm > left / 4 || ndims > left ||
            8 * nt + 4 * nm + ndims > left || nstrings > (uint64_t)(end - *p))
            return -1;
    }
    words = *p;
    *p += 8 * (7 * nt + 4 * nm);
    h->tensors = mst_calloc_big(nt ? nt : 1, sizeof *h->tensors);
    h->meta = calloc(nm ? nm : 1, sizeof *h->meta);
    h->by_name = mst_malloc_big((nt ? nt : 1) * sizeof *h->by_name);
    h->dims = mst_malloc_big((ndims ? ndims : 1) * sizeof *h->dims);
    h->strings = mst_malloc_big(nstrings ? nstrings : 1);
    if (!h->tensors || !h->meta || !h->by_name || !h->dims || !h->strings)
        goto fail;
    h->ntensors = nt;
    h->nmeta = nm;
    for (uint64_t i = 0; i < nt; i++)
        if (word(p, end, &v[0]) || v[0] >= nt)
            goto fail;
        else
            h->by_name[i] = (size_t)v[0];
    for (uint64_t i = 0; i < ndims; i++)
        if (word(p, end, &v[0]))
            goto fail;
        else
            h->dims[i] = (int64_t)v[0];
    if ((uint64_t)(end - *p) < nstrings)
        goto fail;
    memcpy(h->strings, *p, nstrings);
    *p += (nstrings + 7) / 8 * 8;
    if (*p > end)
        goto fail;
    for (uint64_t i = 0; i < nt; i++) {
        mst_header_tensor *t = &h->tensors[i];
        for (int k = 0; k < 7; k++)
            word(&words, end, &v[k]);
        if (!(t->name = at(h->strings, nstrings, v[0], v[1])) || v[2] >= MST_DTYPE_COUNT ||
            v[3] > ndims - used)
            goto fail;
        t->name_len = (size_t)v[1];
        t->dtype = (mst_dtype)v[2];
        t->ndim = (uint32_t)v[3];
        t->shape = h->dims + used;
        used += t->ndim;
        t->begin = v[4];
        t->end = v[5];
        t->pos = (size_t)v[6];
    }
    for (uint64_t i = 0; i < nm; i++) {
        mst_header_meta *m = &h->meta[i];
        for (int k = 0; k < 4; k++)
            word(&words, end, &v[k]);
        if (!(m->key = at(h->strings, nstrings, v[0], v[1])) ||
            !(m->value = at(h->strings, nstrings, v[2], v[3])))
            goto fail;
        m->key_len = (size_t)v[1];
        m->value_len = (size_t)v[3];
    }
    if (used != ndims)
        goto fail;
    return 0;
fail:
    mst_header_free(h);
    return -1;
}

#include "mst_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_utf8.h"

int mst_check_tensor(const char *name, size_t name_len, int dtype, int64_t ndim,
                     const int64_t *shape, int rank, uint64_t *nbytes, mst_err *err)
{
    char q[MST_QUOTE_MAX];
    uint64_t nel = 1, bits, nbits;
    size_t bad;
    if (name_len == 0)
        return mst_err_set(err, MST_ERR_EMPTY_NAME, "rank %d: a tensor has an empty name", rank);
    mst_quote(q, sizeof q, name, name_len, MST_QUOTE_LIMIT);
    if (name_len == 12 && memcmp(name, "__metadata__", 12) == 0)
        return mst_err_set(err, MST_ERR_RESERVED_NAME,
                           "tensor %s on rank %d: the name is reserved for the metadata entry",
                           q, rank);
    bad = mst_utf8_check(name, name_len);
    if (bad != name_len)
        return mst_err_set(err, MST_ERR_INVALID_UTF8,
                           "tensor %s on rank %d: name is not valid UTF-8 (byte %zu)", q, rank,
                           bad);
    if (dtype < 0 || dtype >= MST_DTYPE_COUNT)
        return mst_err_set(err, MST_ERR_UNKNOWN_DTYPE,
                           "tensor %s on rank %d: unknown dtype value %d", q, rank, dtype);
    if (ndim < 0 || (ndim > 0 && !shape))
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "tensor %s on rank %d: %s", q, rank,
                           ndim < 0 ? "negative number of dimensions" : "NULL shape");
    for (int64_t d = 0; d < ndim; d++)
        if (shape[d] < 0)
            return mst_err_set(err, MST_ERR_NEGATIVE_DIM,
                               "tensor %s on rank %d: dimension %lld of the shape is %lld", q,
                               rank, (long long)d, (long long)shape[d]);
    for (int64_t d = 0; d < ndim; d++) {
        uint64_t v = (uint64_t)shape[d];
        if (v && nel > UINT64_MAX / v)
            return mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                               "tensor %s on rank %d: the element count of its shape overflows "
                               "64 bits",
                               q, rank);
        nel *= v;
    }
    bits = (uint64_t)mst_dtype_bits((mst_dtype)dtype);
    if (nel > UINT64_MAX / bits)
        return mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                           "tensor %s on rank %d: %llu elements of %s overflow 64 bits of size",
                           q, rank, (unsigned long long)nel, mst_dtype_name((mst_dtype)dtype));
    nbits = nel * bits;
    if (nbits % 8)
        return mst_err_set(err, MST_ERR_PARTIAL_BYTES,
                           "tensor %s on rank %d: %llu elements of %s are %llu bits, not a whole "
                           "number of bytes",
                           q, rank, (unsigned long long)nel, mst_dtype_name((mst_dtype)dtype),
                           (unsigned long long)nbits);
    if (nbits / 8 > MST_MAX_OFFSET)
        return mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                           "tensor %s on rank %d: %llu bytes is above the 2^53-byte limit", q,
                           rank, (unsigned long long)(nbits / 8));
    *nbytes = nbits / 8;
    return MST_OK;
}

int mst_check_metadata(const char *key, size_t key_len, const char *value, size_t value_len,
                       int rank, mst_err *err)
{
    char q[MST_QUOTE_MAX];
    size_t bad = mst_utf8_check(key, key_len);
    if (bad != key_len)
        return mst_err_set(err, MST_ERR_INVALID_UTF8,
                           "metadata key %s on rank %d: not valid UTF-8 (byte %zu)",
                           mst_quote(q, sizeof q, key, key_len, MST_QUOTE_LIMIT), rank, bad);
    bad = mst_utf8_check(value, value_len);
    if (bad != value_len)
        return mst_err_set(err, MST_ERR_INVALID_UTF8,
                           "metadata value of key %s on rank %d: not valid UTF-8 (byte %zu)",
                           mst_quote(q, sizeof q, key, key_len, MST_QUOTE_LIMIT), rank, bad);
    return MST_OK;
}

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return (alen > blen) - (alen < blen);
}

/* By name, then rank and position, so duplicate reports are deterministic. */
static int cmp_decl_name(const void *a, const void *b)
{
    const mst_decl *x = *(const mst_decl *const *)a, *y = *(const mst_decl *const *)b;
    int c = cmp_bytes(x->t.name, x->t.name_len, y->t.name, y->t.name_len);
    if (c)
        return c;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return (x->local > y->local) - (x->local < y->local);
}

static int cmp_meta(const void *a, const void *b)
{
    const mst_meta_decl *x = *(const mst_meta_decl *const *)a;
    const mst_meta_decl *y = *(const mst_meta_decl *const *)b;
    int c = cmp_bytes(x->kv.key, x->kv.key_len, y->kv.key, y->kv.key_len);
    if (c)
        return c;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* Sorts, merges equal entries, reports the first key with two values. */
static int merge_metadata(const mst_meta_decl *meta, size_t nmeta, mst_kv **out, size_t *nout,
                          mst_err *err)
{
    const mst_meta_decl **s = malloc((nmeta ? nmeta : 1) * sizeof *s);
    mst_kv *kv = malloc((nmeta ? nmeta : 1) * sizeof *kv);
    size_t n = 0;
    if (!s || !kv) {
        free(s);
        free(kv);
        return mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory merging metadata");
    }
    for (size_t i = 0; i < nmeta; i++)
        s[i] = &meta[i];
    qsort(s, nmeta, sizeof *s, cmp_meta);
    for (size_t i = 0; i < nmeta; i++) {
        const mst_meta_decl *m = s[i];
        if (n > 0 && cmp_bytes(kv[n - 1].key, kv[n - 1].key_len, m->kv.key, m->kv.key_len) == 0) {
            const mst_meta_decl *first = s[i - 1];
            if (cmp_bytes(kv[n - 1].value, kv[n - 1].value_len, m->kv.value, m->kv.value_len)) {
                char qk[MST_QUOTE_MAX], qa[MST_QUOTE_MAX], qb[MST_QUOTE_MAX];
                /* find the first entry of this key for the report */
                size_t j = i;
                while (j > 0 && cmp_bytes(s[j - 1]->kv.key, s[j - 1]->kv.key_len, m->kv.key,
                                          m->kv.key_len) == 0)
                    j--;
                first = s[j];
                mst_quote(qk, sizeof qk, m->kv.key, m->kv.key_len, MST_QUOTE_LIMIT);
                mst_quote(qa, sizeof qa, first->kv.value, first->kv.value_len, 100);
                mst_quote(qb, sizeof qb, m->kv.value, m->kv.value_len, 100);
                if (first->rank == m->rank)
                    mst_err_set(err, MST_ERR_METADATA_CONFLICT,
                                "metadata key %s: rank %d gives two values, %s and %s", qk,
                                m->rank, qa, qb);
                else
                    mst_err_set(err, MST_ERR_METADATA_CONFLICT,
                                "metadata key %s: rank %d gives %s but rank %d gives %s", qk,
                                first->rank, qa, m->rank, qb);
                free(s);
                free(kv);
                return err->code;
            }
            continue;
        }
        kv[n++] = m->kv;
    }
    free(s);
    *out = kv;
    *nout = n;
    return MST_OK;
}

int mst_plan_build(mst_plan *plan, const mst_decl *decls, size_t ndecls,
                   const mst_meta_decl *meta, size_t nmeta, mst_err *err)
{
    const mst_decl **byname = NULL;
    const mst_tensor_desc **canon = NULL;
    uint64_t *size = NULL, *pos = NULL;
    mst_kv *kv = NULL;
    size_t nkv = 0, bucket[MST_DTYPE_COUNT + 1];
    size_t alloc_n = ndecls ? ndecls : 1;
    char q[MST_QUOTE_MAX];

    memset(plan, 0, sizeof *plan);
    mst_buf_init(&plan->header, MST_MAX_HEADER_SIZE);
    mst_err_clear(err);

    size = malloc(alloc_n * sizeof *size);
    byname = malloc(alloc_n * sizeof *byname);
    canon = malloc(alloc_n * sizeof *canon);
    pos = malloc((ndecls + 1) * sizeof *pos);
    plan->order = malloc(alloc_n * sizeof *plan->order);
    plan->begin = malloc(alloc_n * sizeof *plan->begin);
    if (!size || !byname || !canon || !pos || !plan->order || !plan->begin) {
        mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory planning %zu tensors", ndecls);
        goto done;
    }

    for (size_t i = 0; i < ndecls; i++) {
        const mst_decl *d = &decls[i];
        if (mst_check_tensor(d->t.name, d->t.name_len, d->t.dtype, d->t.ndim, d->t.shape, d->rank,
                             &size[i], err))
            goto done;
        byname[i] = d;
    }

    /* Names must be unique across all ranks. */
    qsort(byname, ndecls, sizeof *byname, cmp_decl_name);
    for (size_t i = 1; i < ndecls; i++) {
        const mst_decl *a = byname[i - 1], *b = byname[i];
        if (cmp_bytes(a->t.name, a->t.name_len, b->t.name, b->t.name_len) == 0) {
            mst_quote(q, sizeof q, a->t.name, a->t.name_len, MST_QUOTE_LIMIT);
            if (a->rank == b->rank)
                mst_err_set(err, MST_ERR_DUPLICATE_NAME,
                            "duplicate tensor name %s: declared twice on rank %d", q, a->rank);
            else
                mst_err_set(err, MST_ERR_DUPLICATE_NAME,
                            "duplicate tensor name %s: declared on rank %d and on rank %d", q,
                            a->rank, b->rank);
            goto done;
        }
    }

    /* The reference order: dtype descending, then name. A stable counting
     * sort by dtype over the name order gives both in one pass. */
    memset(bucket, 0, sizeof bucket);
    for (size_t i = 0; i < ndecls; i++)
        bucket[MST_DTYPE_COUNT - 1 - byname[i]->t.dtype + 1]++;
    for (int b = 1; b <= MST_DTYPE_COUNT; b++)
        bucket[b] += bucket[b - 1];
    for (size_t i = 0; i < ndecls; i++) {
        const mst_decl *d = byname[i];
        size_t at = bucket[MST_DTYPE_COUNT - 1 - d->t.dtype]++;
        plan->order[at] = (size_t)(d - decls);
    }

    pos[0] = 0;
    for (size_t i = 0; i < ndecls; i++) {
        size_t di = plan->order[i];
        if (size[di] > MST_MAX_OFFSET - pos[i]) {
            mst_quote(q, sizeof q, decls[di].t.name, decls[di].t.name_len, MST_QUOTE_LIMIT);
            mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                        "the data would pass the 2^53-byte limit at tensor %s (rank %d)", q,
                        decls[di].rank);
            goto done;
        }
        pos[i + 1] = pos[i] + size[di];
        plan->begin[di] = pos[i];
        canon[i] = &decls[di].t;
    }

    if (merge_metadata(meta, nmeta, &kv, &nkv, err))
        goto done;
    if (mst_header_encode(&plan->header, kv, nkv, canon, pos, ndecls, err))
        goto done;
    plan->ntensors = ndecls;
    plan->data_len = pos[ndecls];

done:
    free(size);
    free(byname);
    free(canon);
    free(pos);
    free(kv);
    if (err->code != MST_OK) {
        int code = err->code;
        mst_plan_free(plan);
        return code;
    }
    return MST_OK;
}

void mst_plan_free(mst_plan *plan)
{
    if (!plan)
        return;
    free(plan->order);
    free(plan->begin);
    mst_buf_free(&plan->header);
    memset(plan, 0, sizeof *plan);
}

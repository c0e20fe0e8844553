#include "mst_plan.h"
#include "mst_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst_reader.h"
#include "mst_box.h"
#include "mst_utf8.h"

/* The name is quoted only for a message: the check runs for every tensor,
 * on its rank and again in the plan. */
#define QNAME mst_quote(q, sizeof q, name, name_len, MST_QUOTE_LIMIT)

int mst_check_tensor(const char *name, size_t name_len, int dtype, int64_t ndim,
                     const int64_t *shape, int rank, uint64_t *nbytes, mst_err *err)
{
    char q[MST_QUOTE_MAX];
    uint64_t nel = 1, bits, nbits;
    size_t bad;
    if (name_len == 0)
        return mst_err_set(err, MST_ERR_EMPTY_NAME, "rank %d: a tensor has an empty name", rank);
    if (name_len == 12 && memcmp(name, "__metadata__", 12) == 0)
        return mst_err_set(err, MST_ERR_RESERVED_NAME,
                           "tensor %s on rank %d: the name is reserved for the metadata entry",
                           QNAME, rank);
    bad = mst_utf8_check(name, name_len);
    if (bad != name_len)
        return mst_err_set(err, MST_ERR_INVALID_UTF8,
                           "tensor %s on rank %d: name is not valid UTF-8 (byte %zu)", QNAME,
                           rank, bad);
    if (dtype < 0 || dtype >= MST_DTYPE_COUNT)
        return mst_err_set(err, MST_ERR_UNKNOWN_DTYPE,
                           "tensor %s on rank %d: unknown dtype value %d", QNAME, rank, dtype);
    if (ndim < 0 || (ndim > 0 && !shape))
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "tensor %s on rank %d: %s", QNAME, rank,
                           ndim < 0 ? "negative number of dimensions" : "NULL shape");
    for (int64_t d = 0; d < ndim; d++)
        if (shape[d] < 0)
            return mst_err_set(err, MST_ERR_NEGATIVE_DIM,
                               "tensor %s on rank %d: dimension %lld of the shape is %lld",
                               QNAME,
                               rank, (long long)d, (long long)shape[d]);
    /* The reader (and every JSON reader that uses doubles) rejects integers
     * above 2^53, so a zero-size tensor may not carry one either. */
    for (int64_t d = 0; d < ndim; d++)
        if ((uint64_t)shape[d] > MST_MAX_OFFSET)
            return mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                               "tensor %s on rank %d: dimension %lld of the shape is %lld, above "
                               "2^53 (not exactly representable in the JSON header)",
                               QNAME, rank, (long long)d, (long long)shape[d]);
    for (int64_t d = 0; d < ndim; d++) {
        uint64_t v = (uint64_t)shape[d];
        if (v && nel > UINT64_MAX / v)
            return mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                               "tensor %s on rank %d: the element count of its shape overflows "
                               "64 bits",
                               QNAME, rank);
        nel *= v;
    }
    bits = (uint64_t)mst_dtype_bits((mst_dtype)dtype);
    if (nel > UINT64_MAX / bits)
        return mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                           "tensor %s on rank %d: %llu elements of %s overflow 64 bits of size",
                           QNAME, rank, (unsigned long long)nel,
                           mst_dtype_name((mst_dtype)dtype));
    nbits = nel * bits;
    if (nbits % 8)
        return mst_err_set(err, MST_ERR_PARTIAL_BYTES,
                           "tensor %s on rank %d: %llu elements of %s are %llu bits, not a whole "
                           "number of bytes",
                           QNAME, rank, (unsigned long long)nel,
                           mst_dtype_name((mst_dtype)dtype), (unsigned long long)nbits);
    if (nbits / 8 > MST_MAX_OFFSET)
        return mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                           "tensor %s on rank %d: %llu bytes is above the 2^53-byte limit", QNAME,
                           rank, (unsigned long long)(nbits / 8));
    *nbytes = nbits / 8;
    return MST_OK;
}

#undef QNAME

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

static const char *kind_name(int kind)
{
    return kind == MST_DECL_SLICE ? "as a slice" : kind == MST_DECL_REPLICA ? "as a replica"
                                                                            : "whole";
}

static void put_shape(char *out, size_t cap, const mst_tensor_desc *t)
{
    size_t o = (size_t)snprintf(out, cap, "%s [", mst_dtype_name((mst_dtype)t->dtype));
    for (uint32_t d = 0; d < t->ndim && o < cap; d++)
        o += (size_t)snprintf(out + o, cap - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (o < cap)
        snprintf(out + o, cap - o, "]");
}

static int same_type(const mst_tensor_desc *a, const mst_tensor_desc *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim)
        return 0;
    for (uint32_t d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

static int cmp_box_start(const void *a, const void *b)
{
    const mst_decl *x = *(const mst_decl *const *)a, *y = *(const mst_decl *const *)b;
    if (mst_decl_start(x)[0] != mst_decl_start(y)[0])
        return mst_decl_start(x)[0] < mst_decl_start(y)[0] ? -1 : 1;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return (x->local > y->local) - (x->local < y->local);
}

/* The boxes of one tensor must tile its shape: no overlap, and their volumes
 * add up to the tensor's (which, without overlap, leaves no gap). */
static int check_tiling(const mst_decl **g, size_t n, mst_err *err)
{
    const mst_tensor_desc *t = &g[0]->t;
    int ndim = (int)t->ndim;
    char q[MST_QUOTE_MAX], b1[160], b2[160];
    uint64_t total = mst_box_volume(ndim, t->shape), covered = 0;
    const mst_decl **s = mst_malloc_big(n * sizeof *s);
    if (!s)
        return mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory checking slices");
    memcpy(s, g, n * sizeof *s);
    mst_quote(q, sizeof q, t->name, t->name_len, MST_QUOTE_LIMIT);
    if (ndim > 0)
        qsort(s, n, sizeof *s, cmp_box_start);
    for (size_t i = 0; i < n; i++) {
        const int64_t *si = mst_decl_start(s[i]), *ci = mst_decl_count(s[i]);
        /* boxes sorted by their start in dimension 0: only those starting
         * before box i ends there can meet it */
        for (size_t j = i + 1; j < n; j++) {
            const int64_t *sj = mst_decl_start(s[j]), *cj = mst_decl_count(s[j]);
            if (ndim > 0 && sj[0] >= si[0] + ci[0])
                break;
            if (ndim == 0 || mst_box_overlap(ndim, si, ci, sj, cj)) {
                mst_err_set(err, MST_ERR_SLICE_OVERLAP,
                            "tensor %s: box %s of rank %d and box %s of rank %d overlap", q,
                            mst_box_format(b1, sizeof b1, ndim, si, ci), s[i]->rank,
                            mst_box_format(b2, sizeof b2, ndim, sj, cj), s[j]->rank);
                free(s);
                return err->code;
            }
        }
        covered += ndim == 0 ? 1 : mst_box_volume(ndim, ci);
    }
    if (covered != total) {
        char list[512];
        size_t o = 0;
        for (size_t i = 0; i < n && i < 4 && o < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%srank %d %s", i ? ", " : "",
                                  s[i]->rank,
                                  mst_box_format(b1, sizeof b1, ndim, mst_decl_start(s[i]),
                                                 mst_decl_count(s[i])));
        if (n > 4 && o < sizeof list)
            snprintf(list + o, sizeof list - o, ", and %zu more", n - 4);
        mst_err_set(err, MST_ERR_SLICE_GAP,
                    "tensor %s: its %zu boxes (%s) cover %llu of its %llu elements, leaving a gap",
                    q, n, list, (unsigned long long)covered, (unsigned long long)total);
    }
    free(s);
    return err->code;
}

/* The declarations g[0..n) of one name (sorted by rank) form one tensor? */
static int check_group(const mst_decl **g, size_t n, mst_err *err)
{
    char q[MST_QUOTE_MAX], ta[96], tb[96];
    const mst_decl *a = g[0];
    if (n == 1) /* most tensors: nothing to compare, no name to quote */
        return a->kind == MST_DECL_SLICE ? check_tiling(g, n, err) : MST_OK;
    mst_quote(q, sizeof q, a->t.name, a->t.name_len, MST_QUOTE_LIMIT);
    for (size_t i = 1; i < n; i++) {
        const mst_decl *b = g[i];
        if (a->kind == MST_DECL_WHOLE || b->kind == MST_DECL_WHOLE) {
            const mst_decl *x = a->kind == MST_DECL_WHOLE ? a : b, *y = x == a ? b : a;
            if (x->rank == y->rank && y->kind == MST_DECL_WHOLE)
                return mst_err_set(err, MST_ERR_DUPLICATE_NAME,
                                   "duplicate tensor name %s: declared twice on rank %d", q,
                                   x->rank);
            if (y->kind == MST_DECL_WHOLE)
                return mst_err_set(err, MST_ERR_DUPLICATE_NAME,
                                   "duplicate tensor name %s: declared on rank %d and on rank %d",
                                   q, a->rank, b->rank);
            return mst_err_set(err, MST_ERR_DUPLICATE_NAME,
                               "duplicate tensor name %s: declared whole (mst_writer_add) on rank "
                               "%d and %s on rank %d",
                               q, x->rank, kind_name(y->kind), y->rank);
        }
        if (a->kind != b->kind)
            return mst_err_set(err, MST_ERR_SLICE_MISMATCH,
                               "tensor %s: declared %s on rank %d and %s on rank %d", q,
                               kind_name(a->kind), a->rank, kind_name(b->kind), b->rank);
        if (!same_type(&a->t, &b->t)) {
            put_shape(ta, sizeof ta, &a->t);
            put_shape(tb, sizeof tb, &b->t);
            return mst_err_set(err, MST_ERR_SLICE_MISMATCH,
                               "tensor %s: rank %d declares %s %s but rank %d declares %s", q,
                               a->rank, kind_name(a->kind), ta, b->rank, tb);
        }
    }
    return a->kind == MST_DECL_SLICE ? check_tiling(g, n, err) : MST_OK;
}

/* Largest first, so the greedy choice balances well; name order breaks ties. */
typedef struct replica {
    size_t first, n;  /* its declarations: byname[first .. first + n) */
    uint64_t bytes;
} replica;

static int cmp_replica(const void *a, const void *b)
{
    const replica *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    return (x->first > y->first) - (x->first < y->first);
}

/* Bytes of a validated tensor (no overflow). */
static uint64_t tensor_bytes(const mst_tensor_desc *t)
{
    return mst_box_volume((int)t->ndim, t->shape) * (uint64_t)mst_dtype_bits((mst_dtype)t->dtype) /
           8;
}

/* The header's tensors: the canonical order, offsets accumulated as it goes. */
typedef struct header_ctx {
    const mst_decl *decls;
    const size_t *order;
    uint64_t at;
} header_ctx;

static const mst_tensor_desc *next_tensor(void *ctx, size_t i, uint64_t *begin, uint64_t *end)
{
    header_ctx *h = ctx;
    const mst_tensor_desc *t = &h->decls[h->order[i]].t;
    *begin = h->at;
    *end = h->at += tensor_bytes(t);
    return t;
}

static size_t digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

/* The header's length if no name needs escapes, at most `limit`: reserved at
 * once, the header is not copied as it grows (each copy of a large buffer
 * can leave the old one resident). */
static size_t header_estimate(const mst_decl *decls, const size_t *order, size_t ntensors,
                              const mst_kv *kv, size_t nkv, uint64_t data_len, size_t limit)
{
    size_t n = 32, offsets = 2 * digits(data_len) + 1;
    for (size_t i = 0; i < nkv && n < limit; i++)
        n += (size_t)kv[i].key_len + kv[i].value_len + 6;
    for (size_t i = 0; i < ntensors && n < limit; i++) {
        const mst_tensor_desc *t = &decls[order[i]].t;
        /* "name":{"dtype":"F32","shape":[],"data_offsets":[,]}, */
        n += t->name_len + 51 + strlen(mst_dtype_name((mst_dtype)t->dtype)) + offsets;
        for (uint32_t d = 0; d < t->ndim; d++)
            n += digits((uint64_t)t->shape[d]) + 1;
    }
    return n < limit ? n : limit;
}

/*
 * Memory: a million tensors make a million of everything, so the arrays are
 * few and the temporary ones are gone before the header (the largest thing
 * built here) grows: byname (pointers sorted by name), first (the start of
 * each tensor's group in byname), the outputs order and begin, and small
 * arrays for replicas and ranks.
 */
/* Checksums: kv with the entry "mst.crc32" (placeholder digits) put in its
 * sorted place, *at the offset of its value in the header (the metadata
 * comes first), and each tensor's bytes in canonical order. */
static int add_crc_entry(mst_plan *plan, const mst_decl *decls, size_t ngroups, mst_kv **kv,
                         size_t *nkv, char **digits_out, mst_err *err)
{
    const size_t klen = sizeof MST_CRC_KEY - 1;
    mst_kv *n = malloc((*nkv + 1) * sizeof *n);
    char *d = malloc(8 * ngroups + 1);
    size_t j = 0;
    mst_buf pre;
    plan->tlen = mst_malloc_big((ngroups ? ngroups : 1) * sizeof *plan->tlen);
    if (!n || !d || !plan->tlen) {
        free(n);
        free(d);
        return mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory planning checksums");
    }
    for (size_t i = 0; i < *nkv; i++)
        if (cmp_bytes((*kv)[i].key, (*kv)[i].key_len, MST_CRC_KEY, klen) == 0) {
            free(n);
            free(d);
            return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                               "metadata key \"" MST_CRC_KEY "\" is reserved while checksums "
                               "are on (mst_writer_set_checksums): mst writes it");
        }
    while (j < *nkv && cmp_bytes((*kv)[j].key, (*kv)[j].key_len, MST_CRC_KEY, klen) < 0)
        j++;
    memcpy(n, *kv, j * sizeof *n);
    memcpy(n + j + 1, *kv + j, (*nkv - j) * sizeof *n);
    memset(d, '0', 8 * ngroups);
    d[8 * ngroups] = 0;
    n[j].key = MST_CRC_KEY;
    n[j].key_len = klen;
    n[j].value = d;
    n[j].value_len = 8 * ngroups;
    /* the header up to the value, as the encoder writes it */
    mst_buf_init(&pre, 0);
    mst_buf_puts(&pre, "{\"__metadata__\":{");
    for (size_t i = 0; i < j; i++) {
        mst_json_put_string(&pre, n[i].key, n[i].key_len);
        mst_buf_putc(&pre, ':');
        mst_json_put_string(&pre, n[i].value, n[i].value_len);
        mst_buf_putc(&pre, ',');
    }
    mst_json_put_string(&pre, n[j].key, n[j].key_len);
    mst_buf_puts(&pre, ":\"");
    plan->crc_at = pre.len;
    if (!mst_buf_ok(&pre)) {
        mst_buf_free(&pre);
        free(n);
        free(d);
        return mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory planning checksums");
    }
    mst_buf_free(&pre);
    for (size_t i = 0; i < ngroups; i++)
        plan->tlen[i] = tensor_bytes(&decls[plan->order[i]].t);
    free(*kv);
    *kv = n;
    *nkv += 1;
    *digits_out = d;
    return MST_OK;
}

int mst_plan_build(mst_plan *plan, const mst_decl *decls, size_t ndecls,
                   const mst_meta_decl *meta, size_t nmeta, int nranks, mst_err *err)
{
    return mst_plan_build_crc(plan, decls, ndecls, meta, nmeta, nranks, 0, err);
}

int mst_plan_build_crc(mst_plan *plan, const mst_decl *decls, size_t ndecls,
                       const mst_meta_decl *meta, size_t nmeta, int nranks, int checksums,
                       mst_err *err)
{
    char *crc_digits = NULL;
    const mst_decl **byname = NULL;
    size_t *first = NULL, ngroups = 0, nrep = 0;
    uint64_t *load = NULL, at = 0;
    replica *reps = NULL;
    mst_kv *kv = NULL;
    size_t nkv = 0, bucket[MST_DTYPE_COUNT + 1];
    size_t alloc_n = ndecls ? ndecls : 1;
    header_ctx hc;
    char q[MST_QUOTE_MAX];

    memset(plan, 0, sizeof *plan);
    mst_buf_init(&plan->header, MST_MAX_HEADER_SIZE);
    mst_err_clear(err);

    byname = mst_malloc_big(alloc_n * sizeof *byname);
    first = mst_malloc_big((ndecls + 1) * sizeof *first);
    load = calloc(nranks > 0 ? (size_t)nranks : 1, sizeof *load);
    plan->order = mst_malloc_big(alloc_n * sizeof *plan->order);
    plan->begin = mst_malloc_big(alloc_n * sizeof *plan->begin);
    if (!byname || !first || !load || !plan->order || !plan->begin) {
        mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory planning %zu tensors", ndecls);
        goto done;
    }

    /* Validate; the bytes each rank writes, but for replicas (chosen below). */
    for (size_t i = 0; i < ndecls; i++) {
        const mst_decl *d = &decls[i];
        uint64_t bytes;
        if (d->rank < 0 || d->rank >= nranks || d->kind > MST_DECL_REPLICA) {
            mst_err_set(err, MST_ERR_INVALID_ARGUMENT, "declaration %zu: bad rank or kind", i);
            goto done;
        }
        if (mst_check_tensor(d->t.name, d->t.name_len, d->t.dtype, d->t.ndim, d->t.shape, d->rank,
                             &bytes, err))
            goto done;
        if (d->kind == MST_DECL_SLICE &&
            mst_check_box(d->t.name, d->t.name_len, d->t.dtype, (int)d->t.ndim, d->t.shape,
                          mst_decl_start(d), mst_decl_count(d), d->rank, &bytes, err))
            goto done;
        if (d->kind != MST_DECL_REPLICA)
            load[d->rank] += bytes;
        byname[i] = d;
    }

    /* Group the declarations by name; each group must make one tensor. */
    qsort(byname, ndecls, sizeof *byname, cmp_decl_name);
    for (size_t i = 0; i < ndecls;) {
        size_t j = i + 1;
        while (j < ndecls && cmp_bytes(byname[i]->t.name, byname[i]->t.name_len,
                                       byname[j]->t.name, byname[j]->t.name_len) == 0)
            j++;
        if (check_group(byname + i, j - i, err))
            goto done;
        first[ngroups++] = i;
        nrep += byname[i]->kind == MST_DECL_REPLICA;
        i = j;
    }
    first[ngroups] = ndecls;

    /* The reference order: dtype descending, then name. A stable counting
     * sort by dtype over the name order gives both in one pass. */
    memset(bucket, 0, sizeof bucket);
    for (size_t g = 0; g < ngroups; g++)
        bucket[MST_DTYPE_COUNT - 1 - byname[first[g]]->t.dtype + 1]++;
    for (int b = 1; b <= MST_DTYPE_COUNT; b++)
        bucket[b] += bucket[b - 1];
    for (size_t g = 0; g < ngroups; g++) {
        const mst_decl *d = byname[first[g]];
        plan->order[bucket[MST_DTYPE_COUNT - 1 - d->t.dtype]++] = g; /* group index for now */
    }

    /* Contiguous offsets in that order. */
    for (size_t i = 0; i < ngroups; i++) {
        size_t g = plan->order[i];
        const mst_decl *d = byname[first[g]];
        uint64_t bytes = tensor_bytes(&d->t);
        if (bytes > MST_MAX_OFFSET - at) {
            mst_quote(q, sizeof q, d->t.name, d->t.name_len, MST_QUOTE_LIMIT);
            mst_err_set(err, MST_ERR_SIZE_OVERFLOW,
                        "the data would pass the 2^53-byte limit at tensor %s (rank %d)", q,
                        d->rank);
            goto done;
        }
        for (size_t k = first[g]; k < first[g + 1]; k++)
            plan->begin[byname[k] - decls] = at;
        plan->order[i] = (size_t)(d - decls);
        at += bytes;
    }

    /* Each replica is written by the holder with the fewest bytes so far. */
    if (nrep > 0) {
        reps = malloc(nrep * sizeof *reps);
        if (!reps) {
            mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory planning %zu tensors", ndecls);
            goto done;
        }
        nrep = 0;
        for (size_t g = 0; g < ngroups; g++)
            if (byname[first[g]]->kind == MST_DECL_REPLICA) {
                reps[nrep].first = first[g];
                reps[nrep].n = first[g + 1] - first[g];
                reps[nrep].bytes = tensor_bytes(&byname[first[g]]->t);
                nrep++;
            }
        qsort(reps, nrep, sizeof *reps, cmp_replica);
    }
    for (size_t r = 0; r < nrep; r++) {
        const replica *g = &reps[r];
        const mst_decl *best = byname[g->first];
        for (size_t k = g->first + 1; k < g->first + g->n; k++)
            if (load[byname[k]->rank] < load[best->rank])
                best = byname[k];
        load[best->rank] += g->bytes;
        for (size_t k = g->first; k < g->first + g->n; k++)
            if (byname[k] != best)
                plan->begin[byname[k] - decls] = MST_PLAN_SKIP;
    }
    free(byname);
    free(first);
    free(reps);
    byname = NULL;
    first = NULL;
    reps = NULL;

    if (merge_metadata(meta, nmeta, &kv, &nkv, err))
        goto done;
    if (checksums && add_crc_entry(plan, decls, ngroups, &kv, &nkv, &crc_digits, err))
        goto done;
    mst_buf_reserve(&plan->header, header_estimate(decls, plan->order, ngroups, kv, nkv, at,
                                                   MST_MAX_HEADER_SIZE));
    hc.decls = decls;
    hc.order = plan->order;
    hc.at = 0;
    if (mst_header_encode_each(&plan->header, kv, nkv, next_tensor, &hc, ngroups, err))
        goto done;
    plan->ntensors = ngroups;
    plan->data_len = at;

done:
    free(byname);
    free(first);
    free(reps);
    free(load);
    free(kv);
    free(crc_digits);
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
    free(plan->tlen);
    mst_buf_free(&plan->header);
    memset(plan, 0, sizeof *plan);
}

/* mst-bench's synthetic checkpoint, see bench_workload.h. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_workload.h"

const char *const bench_layout_names[3] = {"whole", "rows", "cols"};
const char *const bench_mix_names[2] = {"uniform", "transformer"};

void bench_workload_defaults(bench_workload *wl)
{
    memset(wl, 0, sizeof *wl);
    wl->size = 256ull << 20;
    wl->tensors = 64;
    wl->seed = 1;
    wl->dtype = -1;
    wl->mix = MIX_UNIFORM;
    wl->layout = L_WHOLE;
    wl->width = 1024;
    bench_workload_init(wl);
}

void bench_workload_init(bench_workload *wl)
{
    uint64_t nbig = (wl->tensors + 6) / 7;
    wl->wsum = nbig + (nbig / 3) * 3 + (nbig % 3 == 2 ? 1 : 0);
}

/* Counter-based generator: byte b of a tensor is byte b % 8 of word b / 8,
 * and word k depends only on (seed, name, k). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t bench_name_key(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    return mix64(h ^ seed);
}

void bench_fill(unsigned char *buf, uint64_t off, uint64_t len, uint64_t key)
{
    uint64_t k = off / 8, done = 0;
    unsigned skip = (unsigned)(off % 8);
    while (done < len) {
        uint64_t w = mix64(key + (k + 1) * 0x9e3779b97f4a7c15ull);
        uint64_t n = len - done < 8 - skip ? len - done : 8 - skip;
        memcpy(buf + done, (const unsigned char *)&w + skip, (size_t)n);
        done += n;
        skip = 0;
        k++;
    }
}

static const mst_dtype mix_dtypes[] = {MST_F32, MST_BF16, MST_F16, MST_I64, MST_U8,
                                       MST_F64, MST_I32,  MST_BOOL, MST_F8_E4M3};

/* Whole elements. uniform: an equal share of the bytes, the last one taking
 * the remainder. transformer: every 7th tensor is a matrix of weight 1, 2 or
 * 3 sharing 99% of the bytes, the others share 1% equally (norms, biases); 7
 * is prime to every power-of-two rank count, so round-robin ownership spreads
 * the big ones. 2-D [n/1024, 1024] or [n/64, 64] where the element count
 * allows, else 1-D. */
void bench_describe(const bench_workload *wl, uint64_t i, tensor *t)
{
    uint64_t bytes, el, nel;
    t->dtype = wl->dtype >= 0 ? (mst_dtype)wl->dtype
                              : mix_dtypes[i % (sizeof mix_dtypes / sizeof *mix_dtypes)];
    el = (uint64_t)mst_dtype_bits(t->dtype) / 8;
    if (wl->mix == MIX_UNIFORM) {
        uint64_t share = wl->size / wl->tensors;
        bytes = i + 1 == wl->tensors ? wl->size - share * (wl->tensors - 1) : share;
    } else {
        uint64_t nbig = (wl->tensors + 6) / 7, nsmall = wl->tensors - nbig;
        uint64_t small_total = nsmall ? wl->size / 100 : 0;
        if (i % 7 == 0)
            bytes = (wl->size - small_total) / wl->wsum * (1 + (i / 7) % 3);
        else
            bytes = small_total / nsmall;
    }
    nel = bytes / el;
    snprintf(t->name, sizeof t->name, "model.layers.%" PRIu64 ".weight", i);
    if (nel >= wl->width && nel % wl->width == 0) {
        t->ndim = 2;
        t->shape[0] = (int64_t)(nel / wl->width);
        t->shape[1] = (int64_t)wl->width;
    } else if (nel % 64 == 0 && nel > 0) {
        t->ndim = 2;
        t->shape[0] = (int64_t)(nel / 64);
        t->shape[1] = 64;
    } else {
        t->ndim = 1;
        t->shape[0] = (int64_t)nel;
    }
    t->nbytes = nel * el;
}

static void fill_piece(const bench_workload *wl, piece *p)
{
    uint64_t key = bench_name_key(wl->seed, p->t.name);
    uint64_t el = (uint64_t)mst_dtype_bits(p->t.dtype) / 8;
    if (p->whole) {
        bench_fill(p->data, 0, p->nbytes, key);
    } else if (p->t.ndim == 1 || p->count[1] == p->t.shape[1]) {
        uint64_t row = p->t.ndim == 2 ? (uint64_t)p->t.shape[1] * el : el;
        bench_fill(p->data, (uint64_t)p->start[0] * row, p->nbytes, key);
    } else {
        uint64_t cb = (uint64_t)p->count[1] * el, rowb = (uint64_t)p->t.shape[1] * el;
        for (int64_t r = 0; r < p->count[0]; r++)
            bench_fill(p->data + (uint64_t)r * cb,
                       (uint64_t)(p->start[0] + r) * rowb + (uint64_t)p->start[1] * el, cb, key);
    }
}

int bench_piece_of(const bench_workload *wl, uint64_t i, int rank, int size, piece *p)
{
    memset(p, 0, sizeof *p);
    bench_describe(wl, i, &p->t);
    p->index = i;
    if (wl->layout == L_WHOLE || p->t.nbytes == 0) {
        if (i % (uint64_t)size != (uint64_t)rank)
            return 0;
        p->whole = 1;
        p->nbytes = p->t.nbytes;
    } else {
        int dim = wl->layout == L_COLS && p->t.ndim == 2 ? 1 : 0;
        int64_t e = p->t.shape[dim];
        int64_t lo = e * rank / size, hi = e * (rank + 1) / size;
        uint64_t nel = 1;
        if (hi <= lo)
            return 0;
        for (int d = 0; d < p->t.ndim; d++) {
            p->start[d] = d == dim ? lo : 0;
            p->count[d] = d == dim ? hi - lo : p->t.shape[d];
            nel *= (uint64_t)p->count[d];
        }
        p->nbytes = nel * (uint64_t)mst_dtype_bits(p->t.dtype) / 8;
    }
    return 1;
}

int bench_make_pieces(const bench_workload *wl, int rank, int size, piece **out, size_t *nout,
                      unsigned char **slab, uint64_t *slab_bytes)
{
    size_t cap = wl->layout == L_WHOLE ? wl->tensors / (uint64_t)size + 1 : wl->tensors;
    piece *ps = calloc(cap, sizeof *ps);
    size_t n = 0;
    uint64_t total = 0;
    if (!ps)
        return -1;
    for (uint64_t i = 0; i < wl->tensors; i++) {
        piece p;
        if (!bench_piece_of(wl, i, rank, size, &p))
            continue;
        ps[n++] = p;
        total += p.nbytes;
    }
    *slab = malloc(total ? total : 1);
    if (!*slab) {
        free(ps);
        return -1;
    }
    for (size_t k = 0, off = 0; k < n; off += ps[k].nbytes, k++) {
        ps[k].data = *slab + off;
        fill_piece(wl, &ps[k]);
    }
    *out = ps;
    *nout = n;
    *slab_bytes = total;
    return 0;
}

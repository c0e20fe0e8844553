/* What moves where in the redistribution of strided boxes: the table
 * (built on rank 0, read on every rank) and its chunks. See
 * mst_redist_plan.h. */
#include "mst_redist_plan.h"

#include <stdlib.h>
#include <string.h>

#include "mst_reader.h"
#include "mst_box.h"

/*
 * Table layout (u64 words):
 *   ntensors
 *   per tensor: offset, ndim, name_len, nstrided, ndirect, gb[ndim],
 *               name (name_len bytes, padded to whole words),
 *               nstrided x (rank, local, sb[ndim], cb[ndim]),
 *               ndirect x (first, bytes), sorted by first
 */

typedef struct slice_ref {
    uint64_t begin; /* the tensor's begin in the data section */
    size_t decl;
    int strided;
    uint64_t first, bytes;
} slice_ref;

/* By tensor, then by first byte: the boxes of a tensor (non-empty, not
 * overlapping) have distinct first bytes. */
static int cmp_ref(const void *a, const void *b)
{
    const slice_ref *x = a, *y = b;
    if (x->begin != y->begin)
        return (x->begin > y->begin) - (x->begin < y->begin);
    return (x->first > y->first) - (x->first < y->first);
}

static size_t words(size_t bytes)
{
    return (bytes + 7) / 8;
}

int mst_redist_table(const mst_decl *decls, size_t ndecls, const mst_plan *plan,
                     uint64_t data_start, uint64_t **tab, size_t *len, mst_err *err)
{
    slice_ref *refs = NULL;
    size_t nrefs = 0, maxdim = 0, need = 1, ntab = 0, pos = 1;
    uint64_t *scratch = NULL, *out = NULL;

    *tab = NULL;
    *len = 0;
    for (size_t i = 0; i < ndecls; i++)
        if (decls[i].kind == MST_DECL_SLICE) {
            nrefs++;
            if ((size_t)decls[i].t.ndim > maxdim)
                maxdim = (size_t)decls[i].t.ndim;
        }
    if (nrefs == 0)
        return MST_OK;
    refs = malloc(nrefs * sizeof *refs);
    scratch = malloc((3 * maxdim + 1) * sizeof *scratch);
    if (!refs || !scratch)
        goto oom;
    nrefs = 0;
    for (size_t i = 0; i < ndecls; i++) {
        const mst_decl *d = &decls[i];
        int ndim = (int)d->t.ndim;
        mst_box_layout lay;
        if (d->kind != MST_DECL_SLICE)
            continue;
        mst_box_bytes(ndim, d->t.shape, mst_decl_start(d), mst_decl_count(d),
                      mst_dtype_bits(d->t.dtype), scratch, scratch + ndim, scratch + 2 * ndim);
        mst_box_layout_of(ndim, scratch, scratch + ndim, scratch + 2 * ndim, &lay);
        if (lay.bytes == 0)
            continue;
        refs[nrefs].begin = plan->begin[i];
        refs[nrefs].decl = i;
        refs[nrefs].strided = !lay.contiguous;
        refs[nrefs].first = lay.first;
        refs[nrefs].bytes = lay.bytes;
        nrefs++;
    }
    qsort(refs, nrefs, sizeof *refs, cmp_ref);

    /* size, then fill: the boxes of one tensor are neighbours (same begin;
     * tensors with bytes have distinct begins) */
    for (int fill = 0; fill < 2; fill++) {
        for (size_t a = 0, b; a < nrefs; a = b) {
            size_t ns = 0, nd = 0;
            const mst_decl *t = &decls[refs[a].decl];
            size_t ndim = (size_t)t->t.ndim;
            for (b = a; b < nrefs && refs[b].begin == refs[a].begin; b++)
                refs[b].strided ? ns++ : nd++;
            if (ns == 0)
                continue;
            if (!fill) {
                ntab++;
                need += 5 + ndim + words(t->t.name_len) + ns * (2 + 2 * ndim) + nd * 2;
                continue;
            }
            out[pos++] = data_start + refs[a].begin;
            out[pos++] = ndim;
            out[pos++] = t->t.name_len;
            out[pos++] = ns;
            out[pos++] = nd;
            mst_box_bytes((int)ndim, t->t.shape, mst_decl_start(t), mst_decl_count(t),
                          mst_dtype_bits(t->t.dtype), out + pos, scratch, scratch + ndim);
            pos += ndim;
            memset(out + pos, 0, words(t->t.name_len) * 8);
            memcpy(out + pos, t->t.name, t->t.name_len);
            pos += words(t->t.name_len);
            for (size_t k = a; k < b; k++) {
                const mst_decl *d = &decls[refs[k].decl];
                if (!refs[k].strided)
                    continue;
                out[pos++] = (uint64_t)d->rank;
                out[pos++] = d->local;
                mst_box_bytes((int)ndim, d->t.shape, mst_decl_start(d), mst_decl_count(d),
                              mst_dtype_bits(d->t.dtype), scratch, out + pos, out + pos + ndim);
                pos += 2 * ndim;
            }
            /* contiguous boxes, in order of their first byte (refs are) */
            for (size_t k = a; k < b; k++) {
                if (refs[k].strided)
                    continue;
                out[pos++] = refs[k].first;
                out[pos++] = refs[k].bytes;
            }
        }
        if (!fill) {
            if (ntab == 0)
                break;
            if (!(out = malloc(need * sizeof *out)))
                goto oom;
            out[0] = ntab;
        }
    }
    free(refs);
    free(scratch);
    if (out) {
        *tab = out;
        *len = need;
    }
    return MST_OK;
oom:
    free(refs);
    free(scratch);
    free(out);
    return mst_err_set(err, MST_ERR_NO_MEMORY, "rank 0: out of memory planning strided boxes");
}

int mst_redist_read(const uint64_t *tab, size_t len, mst_redist_tensor **out, size_t *nout)
{
    size_t pos = 1, n;
    mst_redist_tensor *t;
    if (len < 1)
        return -1;
    n = (size_t)tab[0];
    if (n > len || !(t = calloc(n ? n : 1, sizeof *t)))
        return -1;
    for (size_t i = 0; i < n; i++) {
        mst_redist_tensor *r = &t[i];
        size_t ndim;
        if (pos + 5 > len)
            goto bad;
        r->offset = tab[pos];
        ndim = (size_t)tab[pos + 1];
        r->name_len = (size_t)tab[pos + 2];
        r->nstrided = (size_t)tab[pos + 3];
        r->ndirect = (size_t)tab[pos + 4];
        pos += 5;
        if (ndim == 0 || ndim > len || r->name_len > len * 8 || r->nstrided > len ||
            r->ndirect > len || pos + ndim + words(r->name_len) > len)
            goto bad;
        r->ndim = (int)ndim;
        r->gb = tab + pos;
        pos += ndim;
        r->name = (const char *)(tab + pos);
        pos += words(r->name_len);
        if (pos + r->nstrided * (2 + 2 * ndim) + 2 * r->ndirect > len)
            goto bad;
        r->boxes = tab + pos;
        pos += r->nstrided * (2 + 2 * ndim);
        r->direct = tab + pos;
        pos += 2 * r->ndirect;
        r->bytes = 1;
        for (size_t d = 0; d < ndim; d++)
            r->bytes *= r->gb[d];
    }
    if (pos != len)
        goto bad;
    *out = t;
    *nout = n;
    return 0;
bad:
    free(t);
    return -1;
}

int mst_redist_cut(mst_redist_plan *s, int nranks, int me, uint64_t buffer)
{
    size_t nc = 0, cap = 0, round = 0;
    uint64_t *fill = calloc((size_t)nranks, sizeof *fill);
    int next = 0;
    if (!fill)
        return -1;
    s->need = 0;
    for (size_t i = 0; i < s->nt; i++) {
        mst_redist_tensor *r = &s->t[i];
        uint64_t target = (r->bytes + (uint64_t)nranks - 1) / (uint64_t)nranks, rows = 1, along;
        if (target < MST_REDIST_MIN_CHUNK)
            target = MST_REDIST_MIN_CHUNK;
        if (target > buffer)
            target = buffer;
        /* m: the first dimension one index of which fits in a chunk */
        r->m = r->ndim - 1;
        r->slab = 1;
        for (int d = 0; d < r->ndim; d++) {
            uint64_t slab = 1;
            for (int e = d + 1; e < r->ndim; e++)
                slab *= r->gb[e];
            if (slab <= target) {
                r->m = d;
                r->slab = slab;
                break;
            }
        }
        along = target / r->slab; /* chunk length along m (indices) */
        if (along > r->gb[r->m])
            along = r->gb[r->m];
        for (int d = 0; d < r->m; d++)
            rows *= r->gb[d];
        for (uint64_t row = 0; row < rows; row++)
            for (uint64_t a = 0; a < r->gb[r->m]; a += along) {
                mst_redist_chunk *c;
                uint64_t l = r->gb[r->m] - a < along ? r->gb[r->m] - a : along;
                int dest = -1;
                if (nc == cap) {
                    size_t ncap = cap ? 2 * cap : 64;
                    mst_redist_chunk *g = realloc(s->c, ncap * sizeof *g);
                    if (!g) {
                        free(fill);
                        return -1;
                    }
                    s->c = g;
                    cap = ncap;
                }
                c = &s->c[nc++];
                c->tensor = i;
                c->row = row;
                c->a = a;
                c->l = l;
                c->bytes = l * r->slab;
                c->first = row * r->gb[r->m] * r->slab + a * r->slab;
                for (int k = 0; k < nranks && dest < 0; k++) {
                    int d = (next + k) % nranks;
                    if (fill[d] + c->bytes <= buffer)
                        dest = d;
                }
                if (dest < 0) { /* every buffer is full: a new round */
                    round++;
                    memset(fill, 0, (size_t)nranks * sizeof *fill);
                    dest = next;
                }
                c->dest = dest;
                c->round = round;
                c->stage = fill[dest];
                fill[dest] += c->bytes;
                if (dest == me && fill[dest] > s->need)
                    s->need = fill[dest];
                next = (dest + 1) % nranks;
            }
    }
    free(fill);
    s->nc = nc;
    s->rounds = nc ? round + 1 : 0;
    return 0;
}

void mst_chunk_box(int ndim, const uint64_t *gb, int m, uint64_t row, uint64_t a, uint64_t l,
                   uint64_t *cs, uint64_t *cc)
{
    for (int d = m - 1; d >= 0; d--) {
        cs[d] = row % gb[d];
        cc[d] = 1;
        row /= gb[d];
    }
    cs[m] = a;
    cc[m] = l;
    for (int d = m + 1; d < ndim; d++) {
        cs[d] = 0;
        cc[d] = gb[d];
    }
}

void mst_redist_chunk_box(const mst_redist_tensor *r, const mst_redist_chunk *c, uint64_t *cs,
                          uint64_t *cc)
{
    mst_chunk_box(r->ndim, r->gb, r->m, c->row, c->a, c->l, cs, cc);
}

int mst_redist_intersect(size_t ndim, const uint64_t *sb, const uint64_t *cb, const uint64_t *cs,
                         const uint64_t *cc, uint64_t *lo, uint64_t *cnt)
{
    for (size_t d = 0; d < ndim; d++) {
        uint64_t a = sb[d] > cs[d] ? sb[d] : cs[d];
        uint64_t e1 = sb[d] + cb[d], e2 = cs[d] + cc[d];
        uint64_t e = e1 < e2 ? e1 : e2;
        if (e <= a)
            return 0;
        lo[d] = a;
        cnt[d] = e - a;
    }
    return 1;
}

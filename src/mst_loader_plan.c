/* The loader's plan, pure (no MPI, no I/O): every rank reads the same
 * gathered table of requests and computes the same groups (tensors someone
 * asked for, with their boxes), chunks (contiguous file ranges: a tensor cut
 * along its first dimensions, as mst_redist_cut does for the writer), a
 * reader rank and a round for each chunk, and, for a chunk, the byte ranges
 * that some box needs. */
#include "mst_loader.h"
#include "mst_redist_plan.h"
#include "mst_buf.h"

#include <stdlib.h>
#include <string.h>

/* Chunks are at least this big (or the whole tensor). */
#define ML_MIN_CHUNK ((uint64_t)1 << 20)

static int cmp_box(const void *a, const void *b)
{
    const ml_box *x = a, *y = b;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    if (x->tensor != y->tensor)
        return x->tensor < y->tensor ? -1 : 1;
    if (x->owner != y->owner)
        return x->owner < y->owner ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

void ml_plan_free(ml_plan *p)
{
    free(p->boxes);
    free(p->g);
    free(p->dims);
    free(p->c);
    memset(p, 0, sizeof *p);
}

void ml_chunk_box(const ml_group *g, const ml_chunk *c, uint64_t *cs, uint64_t *cc)
{
    mst_chunk_box(g->nd, g->gbv, g->m, c->row, c->a, c->l, cs, cc);
}

static uint64_t volume(int nd, const uint64_t *cnt)
{
    uint64_t v = 1;
    for (int d = 0; d < nd; d++)
        v *= cnt[d];
    return v;
}

/* Reads the table into p->boxes, sorted by (file, tensor, owner, seq). */
static int read_table(ml_plan *p, const uint64_t *tab, size_t len, const ml_file *files,
                      size_t nfiles)
{
    size_t n = 0, cap = 0;
    for (size_t pos = 0; pos < len;) {
        ml_box *b;
        uint64_t nd;
        if (pos + ML_REC_FIXED > len)
            return -1;
        nd = tab[pos + 5];
        if (nd == 0 || nd > 64 || pos + ML_REC_FIXED + 2 * nd > len || tab[pos] >= nfiles ||
            tab[pos + 1] >= files[tab[pos]].h.ntensors)
            return -1;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            ml_box *g = mst_realloc_big(p->boxes, ncap * sizeof *g);
            if (!g)
                return -1;
            p->boxes = g;
            cap = ncap;
        }
        b = &p->boxes[n++];
        b->file = (size_t)tab[pos];
        b->tensor = (size_t)tab[pos + 1];
        b->owner = (int)tab[pos + 2];
        b->seq = (size_t)tab[pos + 3];
        b->stream = (int)tab[pos + 4];
        b->direct = 0;
        b->sb = tab + pos + ML_REC_FIXED;
        b->cb = b->sb + nd;
        pos += ML_REC_FIXED + 2 * nd;
    }
    p->nboxes = n;
    if (n)
        qsort(p->boxes, n, sizeof *p->boxes, cmp_box);
    return 0;
}

static int make_groups(ml_plan *p, const ml_file *files)
{
    size_t ng = 0, ndims = 0;
    for (size_t i = 0; i < p->nboxes; i++)
        if (i == 0 || p->boxes[i].file != p->boxes[i - 1].file ||
            p->boxes[i].tensor != p->boxes[i - 1].tensor) {
            const mst_header_tensor *t = &files[p->boxes[i].file].h.tensors[p->boxes[i].tensor];
            ng++;
            ndims += t->ndim ? t->ndim : 1;
        }
    p->g = mst_calloc_big(ng ? ng : 1, sizeof *p->g);
    p->dims = mst_calloc_big(ndims ? ndims : 1, sizeof *p->dims);
    if (!p->g || !p->dims)
        return -1;
    ng = 0;
    ndims = 0;
    for (size_t i = 0; i < p->nboxes; i++) {
        const ml_box *b = &p->boxes[i];
        if (i == 0 || b->file != p->boxes[i - 1].file || b->tensor != p->boxes[i - 1].tensor) {
            const ml_file *f = &files[b->file];
            const mst_header_tensor *t = &f->h.tensors[b->tensor];
            ml_group *g = &p->g[ng++];
            g->file = b->file;
            g->tensor = b->tensor;
            g->gbv = p->dims + ndims;
            g->nd = ml_byte_dims(t, p->dims + ndims);
            ndims += (size_t)g->nd;
            g->offset = 8 + f->header_size + t->begin;
            g->bytes = t->end - t->begin;
            g->b0 = i;
        }
        p->g[ng - 1].b1 = i + 1;
    }
    p->ng = ng;
    return 0;
}

/* The first byte of box b (relative to its tensor), the byte after its last
 * one, and whether the bytes between are exactly the box's (contiguous). */
static int box_span(const ml_group *g, const ml_box *b, uint64_t *lo, uint64_t *hi)
{
    uint64_t stride = 1, a = 0, e = 0;
    int k = g->nd - 1, contiguous = 1;
    for (int d = g->nd - 1; d >= 0; d--) {
        a += b->sb[d] * stride;
        e += (b->sb[d] + b->cb[d] - 1) * stride;
        stride *= g->gbv[d];
    }
    *lo = a;
    *hi = e + 1;
    while (k > 0 && b->cb[k] == g->gbv[k])
        k--;
    for (int d = 0; d < k; d++)
        contiguous &= b->cb[d] == 1;
    return contiguous;
}

void ml_box_range(const ml_group *g, const ml_box *b, uint64_t *first, uint64_t *len)
{
    uint64_t hi;
    box_span(g, b, first, &hi);
    *len = hi - *first;
}

typedef struct span {
    uint64_t lo, hi;
    size_t box;
    int contiguous;
} span;

static int cmp_span(const void *x, const void *y)
{
    const span *s = x, *t = y;
    if (s->lo != t->lo)
        return (s->lo > t->lo) - (s->lo < t->lo);
    return (s->box > t->box) - (s->box < t->box);
}

/* Marks the direct boxes (ML_DIRECT_MIN, or a sixteenth of a smaller read
 * buffer): a box is compared with the spans
 * (first to last byte) of the other non-empty boxes of its tensor. */
static int mark_direct(ml_plan *p, uint64_t buffer)
{
    size_t most = 0;
    uint64_t least = buffer / 16 < ML_DIRECT_MIN ? buffer / 16 : ML_DIRECT_MIN;
    span *s;
    for (size_t gi = 0; gi < p->ng; gi++)
        if (p->g[gi].b1 - p->g[gi].b0 > most)
            most = p->g[gi].b1 - p->g[gi].b0;
    if (!(s = malloc((most ? most : 1) * sizeof *s)))
        return -1;
    for (size_t gi = 0; gi < p->ng; gi++) {
        const ml_group *g = &p->g[gi];
        size_t n = 0;
        uint64_t reach = 0;
        for (size_t b = g->b0; b < g->b1; b++)
            if (volume(g->nd, p->boxes[b].cb) > 0) {
                s[n].contiguous = box_span(g, &p->boxes[b], &s[n].lo, &s[n].hi);
                s[n++].box = b;
            }
        if (n > 1)
            qsort(s, n, sizeof *s, cmp_span);
        for (size_t i = 0; i < n; i++) {
            ml_box *x = &p->boxes[s[i].box];
            if (!x->stream && s[i].contiguous && (i == 0 || reach <= s[i].lo) &&
                (i + 1 == n || s[i + 1].lo >= s[i].hi) && volume(g->nd, x->cb) >= least)
                x->direct = 1;
            if (s[i].hi > reach)
                reach = s[i].hi;
        }
    }
    free(s);
    return 0;
}

/* Cuts the groups into chunks and gives each a reader and a round: a reader
 * takes chunks while its buffer has room; small chunks (whole small
 * tensors) stay with the same reader so that neighbours become one read; a
 * round ends when every reader's buffer is full, or when a rank's streamed
 * receives would pass the buffer. Where no box is streamed, spread() then
 * gives the readers contiguous stretches instead. */
static int cut(ml_plan *p, int nranks, int me, uint64_t buffer)
{
    size_t nc = 0, cap = 0, round = 0;
    uint64_t *fill = calloc((size_t)nranks * 2, sizeof *fill), *sfill = fill + nranks;
    uint64_t lo[64], cnt[64], cs[64], cc[64];
    int next = 0, prev = -1, prev_small = 0;
    if (!fill)
        return -1;
    p->need = p->stream_need = 0;
    for (size_t gi = 0; gi < p->ng; gi++) {
        ml_group *g = &p->g[gi];
        uint64_t target = (g->bytes + (uint64_t)nranks - 1) / (uint64_t)nranks, rows = 1, along;
        if (target < ML_MIN_CHUNK)
            target = ML_MIN_CHUNK;
        if (target > buffer)
            target = buffer;
        g->m = g->nd - 1;
        g->slab = 1;
        for (int d = 0; d < g->nd; d++) {
            uint64_t slab = 1;
            for (int e = d + 1; e < g->nd; e++)
                slab *= g->gbv[e];
            if (slab <= target) {
                g->m = d;
                g->slab = slab;
                break;
            }
        }
        along = target / g->slab;
        if (along > g->gbv[g->m])
            along = g->gbv[g->m];
        for (int d = 0; d < g->m; d++)
            rows *= g->gbv[d];
        for (uint64_t row = 0; row < rows; row++)
            for (uint64_t a = 0; a < g->gbv[g->m]; a += along) {
                ml_chunk c;
                int dest = -1, needed = 0, small;
                c.group = gi;
                c.row = row;
                c.a = a;
                c.l = g->gbv[g->m] - a < along ? g->gbv[g->m] - a : along;
                c.bytes = c.l * g->slab;
                c.first = row * g->gbv[g->m] * g->slab + a * g->slab;
                ml_chunk_box(g, &c, cs, cc);
                /* does a box need it; the streamed bytes per owner */
                for (size_t b = g->b0; b < g->b1; b++)
                    if (!p->boxes[b].direct &&
                        mst_redist_intersect((size_t)g->nd, p->boxes[b].sb, p->boxes[b].cb, cs,
                                             cc, lo, cnt))
                        needed = 1;
                if (!needed)
                    continue;
                small = c.bytes < ML_MIN_CHUNK / 4;
                if (small && prev_small && prev >= 0 && fill[prev] + c.bytes <= buffer)
                    dest = prev;
                for (int k = 0; k < nranks && dest < 0; k++) {
                    int d = (next + k) % nranks;
                    if (fill[d] + c.bytes <= buffer)
                        dest = d;
                }
                for (size_t b = g->b0; b < g->b1 && dest >= 0; b++) {
                    const ml_box *x = &p->boxes[b];
                    if (x->stream && mst_redist_intersect((size_t)g->nd, x->sb, x->cb, cs, cc, lo, cnt) &&
                        sfill[x->owner] + volume(g->nd, cnt) > buffer &&
                        sfill[x->owner] > 0)
                        dest = -1;
                }
                if (dest < 0) { /* a new round */
                    round++;
                    memset(fill, 0, (size_t)nranks * 2 * sizeof *fill);
                    dest = next;
                }
                for (size_t b = g->b0; b < g->b1; b++) {
                    const ml_box *x = &p->boxes[b];
                    if (x->stream && mst_redist_intersect((size_t)g->nd, x->sb, x->cb, cs, cc, lo, cnt)) {
                        sfill[x->owner] += volume(g->nd, cnt);
                        if (x->owner == me && sfill[me] > p->stream_need)
                            p->stream_need = sfill[me];
                    }
                }
                c.dest = dest;
                c.round = round;
                c.stage = fill[dest];
                fill[dest] += c.bytes;
                if (dest == me && fill[dest] > p->need)
                    p->need = fill[dest];
                if (nc == cap) {
                    size_t ncap = cap ? 2 * cap : 64;
                    ml_chunk *gr = mst_realloc_big(p->c, ncap * sizeof *gr);
                    if (!gr) {
                        free(fill);
                        return -1;
                    }
                    p->c = gr;
                    cap = ncap;
                }
                p->c[nc++] = c;
                prev = dest;
                prev_small = small;
                if (!small || fill[dest] + ML_MIN_CHUNK / 4 > buffer)
                    next = (dest + 1) % nranks;
            }
    }
    free(fill);
    p->nc = nc;
    p->rounds = nc ? round + 1 : 0;
    return 0;
}

/* Chunk order for spread: by round, reader, then file order (group, first:
 * the order cut() made them in). */
static int cmp_spread(const void *x, const void *y)
{
    const ml_chunk *s = x, *t = y;
    if (s->round != t->round)
        return (s->round > t->round) - (s->round < t->round);
    if (s->dest != t->dest)
        return s->dest - t->dest;
    if (s->group != t->group)
        return (s->group > t->group) - (s->group < t->group);
    return (s->first > t->first) - (s->first < t->first);
}

/* Gives the readers contiguous stretches of the file instead of turns: the
 * chunks (in file order) are cut into nranks runs of about equal bytes, rank
 * r reads the r-th, and a rank's chunks fill its rounds in order. In every
 * round the ranks then read in different parts of the file, not side by
 * side (docs/BENCHMARKS.md, "Where the ranks start reading"). Not with a
 * streamed box, whose bytes must reach the sink in order, nor above
 * ML_SPREAD_MAX chunks (the sort's copy of the table stays a few MiB; many
 * chunks are small tensors, which the turns keep together anyway). */
static void spread(ml_plan *p, int nranks, int me, uint64_t buffer)
{
    uint64_t total = 0, at = 0, fill = 0; /* fill, round: the current reader's */
    size_t round = 0;
    int r = 0;
    for (size_t b = 0; b < p->nboxes; b++)
        if (p->boxes[b].stream)
            return;
    if (nranks < 2 || p->nc < 2 || p->nc > ML_SPREAD_MAX)
        return;
    for (size_t i = 0; i < p->nc; i++)
        total += p->c[i].bytes;
    p->need = 0;
    p->rounds = 0;
    for (size_t i = 0; i < p->nc; i++) {
        ml_chunk *c = &p->c[i];
        while (r + 1 < nranks && at >= total / (uint64_t)nranks * (uint64_t)(r + 1)) {
            r++; /* the next reader's stretch: its own rounds from 0 */
            fill = 0;
            round = 0;
        }
        at += c->bytes;
        if (fill && fill + c->bytes > buffer) {
            round++;
            fill = 0;
        }
        c->dest = r;
        c->round = round;
        c->stage = fill;
        fill += c->bytes;
        if (r == me && fill > p->need)
            p->need = fill;
        if (round + 1 > p->rounds)
            p->rounds = round + 1;
    }
    qsort(p->c, p->nc, sizeof *p->c, cmp_spread);
}

int ml_plan_build(ml_plan *p, const uint64_t *tab, size_t len, const ml_file *files,
                  size_t nfiles, int nranks, int me, uint64_t buffer)
{
    memset(p, 0, sizeof *p);
    if (read_table(p, tab, len, files, nfiles) || make_groups(p, files) || mark_direct(p, buffer) ||
        cut(p, nranks, me, buffer)) {
        ml_plan_free(p);
        return -1;
    }
    spread(p, nranks, me, buffer);
    return 0;
}

/* ---- the byte ranges of a chunk that some box needs ------------------------ */

typedef struct seg {
    uint64_t a, e;
} seg;

static int cmp_seg(const void *x, const void *y)
{
    const seg *s = x, *t = y;
    return (s->a > t->a) - (s->a < t->a);
}

int ml_chunk_needs(const ml_plan *p, const ml_chunk *c, ml_emit_fn emit, void *ctx)
{
    const ml_group *g = &p->g[c->group];
    int nd = g->nd, rc = 0;
    uint64_t cs[64], cc[64], lo[64], cnt[64], idx[64];
    uint64_t lines, cur_a = 0, cur_len = 0, line_len;
    size_t k = 0, nb = g->b1 - g->b0;
    uint64_t *blo = NULL, *bcnt = NULL;
    seg *s = NULL;
    ml_chunk_box(g, c, cs, cc);
    blo = malloc((nb * 2 * (size_t)nd + 1) * sizeof *blo);
    s = malloc((nb + 1) * sizeof *s);
    if (!blo || !s) {
        free(blo);
        free(s);
        return -1;
    }
    bcnt = blo + nb * (size_t)nd;
    for (size_t b = g->b0; b < g->b1; b++) {
        if (p->boxes[b].direct ||
            !mst_redist_intersect((size_t)nd, p->boxes[b].sb, p->boxes[b].cb, cs, cc, lo, cnt))
            continue;
        if (volume(nd, cnt) == c->bytes) { /* one box covers the chunk */
            free(blo);
            free(s);
            return emit(ctx, 0, c->bytes);
        }
        for (int d = 0; d < nd; d++) {
            blo[k * (size_t)nd + (size_t)d] = lo[d] - cs[d];
            bcnt[k * (size_t)nd + (size_t)d] = cnt[d];
        }
        k++;
    }
    /* line sweep: lines over the chunk's dimensions but the last */
    line_len = cc[nd - 1];
    lines = c->bytes / (line_len ? line_len : 1);
    memset(idx, 0, sizeof idx);
    for (uint64_t li = 0; li < lines && rc == 0; li++) {
        size_t ns = 0;
        for (size_t b = 0; b < k; b++) {
            const uint64_t *bl = blo + b * (size_t)nd, *bc = bcnt + b * (size_t)nd;
            int in = 1;
            for (int d = 0; d < nd - 1 && in; d++)
                in = idx[d] >= bl[d] && idx[d] < bl[d] + bc[d];
            if (in) {
                s[ns].a = bl[nd - 1];
                s[ns].e = bl[nd - 1] + bc[nd - 1];
                ns++;
            }
        }
        if (ns > 1)
            qsort(s, ns, sizeof *s, cmp_seg);
        for (size_t i = 0; i < ns && rc == 0; i++) {
            uint64_t a = li * line_len + s[i].a, e = li * line_len + s[i].e;
            if (cur_len && a <= cur_a + cur_len) {
                if (e > cur_a + cur_len)
                    cur_len = e - cur_a;
            } else {
                if (cur_len)
                    rc = emit(ctx, cur_a, cur_len);
                cur_a = a;
                cur_len = e - a;
            }
        }
        for (int d = nd - 2; d >= 0; d--) { /* next line */
            if (++idx[d] < cc[d])
                break;
            idx[d] = 0;
        }
    }
    if (rc == 0 && cur_len)
        rc = emit(ctx, cur_a, cur_len);
    free(blo);
    free(s);
    return rc;
}

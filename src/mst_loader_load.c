/* The loader's collective load: the declarations agreed on, every rank's
 * requests gathered into one table (every rank the same), the plan
 * (mst_loader_plan.c), then per round: each reader reads the needed bytes of
 * its chunks into its buffer with MPI_File_read_at, and one MPI_Alltoallw
 * moves each box's part of each chunk from the reader's buffer straight into
 * the requester's memory (derived datatypes with absolute addresses on both
 * sides, buffers MPI_BOTTOM). Streamed boxes are received into a buffer of
 * the loader's and handed to their sinks. */
#include "mst_loader.h"
#include "mst_io.h"
#include "mst_buf.h"
#include "mst_redist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst_exchange.h"

/* ---- gathering the table ---------------------------------------------------- */

static int gather_table(mst_loader *l, uint64_t **tab, size_t *len, mst_err *err)
{
    size_t mine = 0, pos = 0;
    uint64_t *rec, *lens = NULL, total = 0;
    int *counts = NULL, *displs = NULL, rc;
    mst_err local;
    mst_err_clear(&local);
    for (size_t i = 0; i < l->nreqs; i++)
        mine += ML_REC_FIXED + 2 * (size_t)l->reqs[i].ndim;
    rec = mst_malloc_big((mine ? mine : 1) * sizeof *rec);
    lens = malloc((size_t)l->nranks * sizeof *lens);
    counts = malloc((size_t)l->nranks * 2 * sizeof *counts);
    if (!rec || !lens || !counts) {
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory for the request table",
                    l->rank);
        goto out;
    }
    displs = counts + l->nranks;
    for (size_t i = 0; i < l->nreqs; i++) {
        const ml_req *r = &l->reqs[i];
        rec[pos++] = r->file;
        rec[pos++] = r->tensor;
        rec[pos++] = (uint64_t)l->rank;
        rec[pos++] = i;
        rec[pos++] = r->sink ? 1 : 0;
        rec[pos++] = (uint64_t)r->ndim;
        memcpy(rec + pos, r->sb, 2 * (size_t)r->ndim * sizeof *rec);
        pos += 2 * (size_t)r->ndim;
    }
    {
        uint64_t m = mine;
        rc = MPI_Allgather(&m, 1, MPI_UINT64_T, lens, 1, MPI_UINT64_T, l->comm);
    }
    if (rc != MPI_SUCCESS) {
        mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Allgather of the request counts failed",
                    l->rank);
        goto out;
    }
    for (int j = 0; j < l->nranks; j++) {
        if (total + lens[j] > (uint64_t)INT_MAX) {
            mst_err_set(&local, MST_ERR_SIZE_OVERFLOW,
                        "rank %d: the request table passes 2^31 words", l->rank);
            goto out;
        }
        displs[j] = (int)total;
        counts[j] = (int)lens[j];
        total += lens[j];
    }
    if (!(*tab = mst_malloc_big((size_t)(total ? total : 1) * sizeof **tab)))
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory for the request table",
                    l->rank);
out:
    if (mst_agree(l->comm, &local, err) == MST_OK) {
        rc = MPI_Allgatherv(rec, (int)mine, MPI_UINT64_T, *tab, counts, displs, MPI_UINT64_T,
                            l->comm);
        if (rc != MPI_SUCCESS)
            mst_err_set(&local, MST_ERR_MPI,
                        "rank %d: MPI_Allgatherv of the request table failed", l->rank);
        *len = (size_t)total;
        mst_agree(l->comm, &local, err);
    }
    free(rec);
    free(lens);
    free(counts);
    return err->code;
}

/* ---- reads -------------------------------------------------------------------- */

typedef struct reader {
    mst_loader *l;
    ml_file *cfile;   /* the current chunk: its file, buffer and file offset */
    char *cstage;
    uint64_t cbase;
    ml_file *file;    /* a read not yet done, merged across ranges and chunks */
    char *ptr;
    uint64_t off, len;
    mst_err *err;
} reader;

static int do_read(reader *r)
{
    mst_loader *l = r->l;
    uint64_t off = r->off, len = r->len;
    char *ptr = r->ptr;
    r->len = 0;
    while (len > 0) {
        uint64_t part = len < ((uint64_t)1 << 30) ? len : (uint64_t)1 << 30;
        MPI_Status st;
        int got = 0, rc;
        rc = MPI_File_read_at(r->file->fh, (MPI_Offset)off, ptr, (int)part, MPI_BYTE, &st);
        if (rc == MPI_SUCCESS)
            MPI_Get_count(&st, MPI_BYTE, &got);
        if (rc != MPI_SUCCESS || (uint64_t)got != part) {
            char text[MPI_MAX_ERROR_STRING + 64] = "short read (is the file shorter than its "
                                                   "header says?)";
            if (rc != MPI_SUCCESS)
                mst_mpi_errstr(rc, text, sizeof text);
            return mst_err_set(r->err, MST_ERR_IO,
                               "rank %d: reading %llu bytes at offset %llu of %s failed: %s",
                               l->rank, (unsigned long long)part, (unsigned long long)off,
                               r->file->path, text);
        }
        l->stats.read_rank += part;
        off += part;
        ptr += part;
        len -= part;
    }
    return MST_OK;
}

static int emit_read(void *ctx, uint64_t off, uint64_t len)
{
    reader *r = ctx;
    uint64_t at = r->cbase + off;
    char *ptr = r->cstage + off;
    if (r->len && r->file == r->cfile && r->off + r->len == at && r->ptr + r->len == ptr) {
        r->len += len;
        return 0;
    }
    if (r->len && do_read(r))
        return 1;
    r->file = r->cfile;
    r->off = at;
    r->ptr = ptr;
    r->len = len;
    return 0;
}

static int open_file(mst_loader *l, ml_file *f, mst_err *err)
{
    if (f->opened)
        return MST_OK;
    /* through mst_io: a long name must not reach OMPIO as it is */
    if (mst_io_open_read(f->path, l->info, l->rank, &f->fh, err) != MST_OK)
        return err->code;
    f->opened = 1;
    return MST_OK;
}

/* Reads the needed bytes of this rank's chunks of round [c0, c1) into stage;
 * neighbouring ranges (in the file and in the buffer) become one read. */
static int read_round(mst_loader *l, const ml_plan *p, size_t c0, size_t c1, char *stage,
                      mst_err *err)
{
    reader r;
    memset(&r, 0, sizeof r);
    r.l = l;
    r.err = err;
    for (size_t ci = c0; ci < c1; ci++) {
        const ml_chunk *c = &p->c[ci];
        const ml_group *g = &p->g[c->group];
        int rc;
        if (c->dest != l->rank)
            continue;
        r.cfile = &l->files[g->file];
        if (open_file(l, r.cfile, err))
            return err->code;
        r.cstage = stage + c->stage;
        r.cbase = g->offset + c->first;
        rc = ml_chunk_needs(p, c, emit_read, &r);
        if (rc < 0)
            return mst_err_set(err, MST_ERR_NO_MEMORY, "rank %d: out of memory", l->rank);
        if (rc > 0)
            return err->code;
    }
    if (r.len && do_read(&r))
        return err->code;
    return MST_OK;
}

/* Reads this rank's direct boxes straight into their buffers, in file order
 * from a starting point that depends on the rank (rank r of n starts r/n of
 * the way through its boxes, then wraps), so that the ranks begin in
 * different parts of the file rather than all reading one region in lock
 * step; neighbouring boxes (in the file and in memory) become one read.
 * docs/BENCHMARKS.md, "Where the ranks start reading", has the figures. */
static int read_direct(mst_loader *l, const ml_plan *p, mst_err *err)
{
    reader r;
    size_t mine = 0, first, k = 0;
    memset(&r, 0, sizeof r);
    r.l = l;
    r.err = err;
    for (size_t b = 0; b < p->nboxes; b++)
        mine += p->boxes[b].direct && p->boxes[b].owner == l->rank;
    first = (size_t)((uint64_t)mine * (uint64_t)l->rank / (uint64_t)l->nranks);
    for (int pass = 0; pass < 2; pass++) {
        k = 0;
        for (size_t gi = 0; gi < p->ng; gi++) {
            const ml_group *g = &p->g[gi];
            for (size_t b = g->b0; b < g->b1; b++) {
                const ml_box *x = &p->boxes[b];
                uint64_t off0, len;
                if (!x->direct || x->owner != l->rank)
                    continue;
                if ((pass == 0) != (k++ >= first))
                    continue;
                r.cfile = &l->files[g->file];
                if (open_file(l, r.cfile, err))
                    return err->code;
                ml_box_range(g, x, &off0, &len);
                r.cbase = g->offset + off0;
                r.cstage = l->reqs[x->seq].buf;
                if (emit_read(&r, 0, len))
                    return err->code;
            }
        }
    }
    if (r.len && do_read(&r))
        return err->code;
    return MST_OK;
}

/* ---- the exchange ------------------------------------------------------------------ */


typedef struct piece {
    int peer;
    int recv;
    size_t seq;
    MPI_Aint addr;
    MPI_Datatype type;
} piece;

/* A streamed piece received into the stream buffer: box (lo, cnt) relative
 * to request `req`'s box, at `pos` of the buffer. */
typedef struct spiece {
    size_t req;
    uint64_t pos;
    uint64_t lo[64];
    uint64_t cnt[64];
} spiece;

typedef struct round_state {
    piece *p;
    size_t np, pcap;
    spiece *sp;
    size_t nsp, spcap;
    int *scount, *rcount, *zero;
    MPI_Datatype *stype, *rtype;
} round_state;

static int cmp_piece(const void *a, const void *b)
{
    const piece *x = a, *y = b;
    if (x->recv != y->recv)
        return x->recv - y->recv;
    if (x->peer != y->peer)
        return x->peer - y->peer;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int add_piece(round_state *rs, int peer, int recv, const void *addr, MPI_Datatype t)
{
    if (rs->np == rs->pcap) {
        size_t ncap = rs->pcap ? 2 * rs->pcap : 64;
        piece *g = realloc(rs->p, ncap * sizeof *g);
        if (!g)
            return MPI_ERR_NO_MEM;
        rs->p = g;
        rs->pcap = ncap;
    }
    rs->p[rs->np].peer = peer;
    rs->p[rs->np].recv = recv;
    rs->p[rs->np].seq = rs->np;
    rs->p[rs->np].type = t;
    MPI_Get_address(addr, &rs->p[rs->np].addr);
    rs->np++;
    return MPI_SUCCESS;
}

static void clear_round(round_state *rs, int nranks)
{
    for (int j = 0; j < nranks; j++) {
        if (rs->scount[j])
            MPI_Type_free(&rs->stype[j]);
        if (rs->rcount[j])
            MPI_Type_free(&rs->rtype[j]);
        rs->scount[j] = rs->rcount[j] = 0;
        rs->stype[j] = rs->rtype[j] = MPI_BYTE;
    }
    for (size_t i = 0; i < rs->np; i++)
        MPI_Type_free(&rs->p[i].type);
    rs->np = 0;
    rs->nsp = 0;
}

/* The pieces of round [c0, c1) for this rank: what it sends from its read
 * buffer and what it receives into its boxes (or the stream buffer). */
static int build_pieces(mst_loader *l, const ml_plan *p, size_t c0, size_t c1, char *stage,
                        char *sstage, round_state *rs)
{
    uint64_t cs[64], cc[64], lo[64], cnt[64], rel[64], spos = 0;
    MPI_Aint disp;
    int rc = MPI_SUCCESS;
    for (size_t ci = c0; ci < c1 && rc == MPI_SUCCESS; ci++) {
        const ml_chunk *c = &p->c[ci];
        const ml_group *g = &p->g[c->group];
        int nd = g->nd;
        ml_chunk_box(g, c, cs, cc);
        for (size_t b = g->b0; b < g->b1 && rc == MPI_SUCCESS; b++) {
            const ml_box *x = &p->boxes[b];
            MPI_Datatype t;
            if (x->direct || (x->owner != l->rank && c->dest != l->rank))
                continue;
            if (!mst_redist_intersect((size_t)nd, x->sb, x->cb, cs, cc, lo, cnt))
                continue;
            if (c->dest == l->rank) { /* send from the read buffer */
                for (int d = 0; d < nd; d++)
                    rel[d] = lo[d] - cs[d];
                rc = mst_redist_region_type(nd, cc, rel, cnt, &disp, &t);
                if (rc == MPI_SUCCESS &&
                    (rc = add_piece(rs, x->owner, 0, stage + c->stage + disp, t)) != MPI_SUCCESS)
                    MPI_Type_free(&t);
            }
            if (rc == MPI_SUCCESS && x->owner == l->rank) {
                const ml_req *r = &l->reqs[x->seq];
                for (int d = 0; d < nd; d++)
                    rel[d] = lo[d] - x->sb[d];
                if (!r->sink) {
                    rc = mst_redist_region_type(nd, x->cb, rel, cnt, &disp, &t);
                    if (rc == MPI_SUCCESS &&
                        (rc = add_piece(rs, c->dest, 1, (char *)r->buf + disp, t)) != MPI_SUCCESS)
                        MPI_Type_free(&t);
                } else {
                    uint64_t v = 1;
                    spiece *s;
                    for (int d = 0; d < nd; d++)
                        v *= cnt[d];
                    if (rs->nsp == rs->spcap) {
                        size_t ncap = rs->spcap ? 2 * rs->spcap : 16;
                        spiece *gr = realloc(rs->sp, ncap * sizeof *gr);
                        if (!gr)
                            return MPI_ERR_NO_MEM;
                        rs->sp = gr;
                        rs->spcap = ncap;
                    }
                    s = &rs->sp[rs->nsp++];
                    s->req = x->seq;
                    s->pos = spos;
                    memcpy(s->lo, rel, (size_t)nd * sizeof *rel);
                    memcpy(s->cnt, cnt, (size_t)nd * sizeof *cnt);
                    rc = MPI_Type_contiguous((int)v, MPI_BYTE, &t);
                    if (rc == MPI_SUCCESS &&
                        (rc = add_piece(rs, c->dest, 1, sstage + spos, t)) != MPI_SUCCESS)
                        MPI_Type_free(&t);
                    spos += v;
                }
            }
        }
    }
    return rc;
}

/* One struct type per peer and direction from the sorted pieces. */
static int build_types(mst_loader *l, round_state *rs)
{
    int rc = MPI_SUCCESS;
    if (rs->np > 1)
        qsort(rs->p, rs->np, sizeof *rs->p, cmp_piece);
    for (size_t i = 0; i < rs->np && rc == MPI_SUCCESS;) {
        size_t j = i;
        int n;
        int *bl;
        MPI_Aint *ad;
        MPI_Datatype *ty, t;
        while (j < rs->np && rs->p[j].recv == rs->p[i].recv && rs->p[j].peer == rs->p[i].peer)
            j++;
        n = (int)(j - i);
        bl = malloc((size_t)n * sizeof *bl);
        ad = malloc((size_t)n * sizeof *ad);
        ty = malloc((size_t)n * sizeof *ty);
        if (!bl || !ad || !ty) {
            free(bl);
            free(ad);
            free(ty);
            return MPI_ERR_NO_MEM;
        }
        for (int k = 0; k < n; k++) {
            bl[k] = 1;
            ad[k] = rs->p[i + (size_t)k].addr;
            ty[k] = rs->p[i + (size_t)k].type;
        }
        rc = MPI_Type_create_struct(n, bl, ad, ty, &t);
        if (rc == MPI_SUCCESS && (rc = MPI_Type_commit(&t)) != MPI_SUCCESS)
            MPI_Type_free(&t);
        if (rc == MPI_SUCCESS) {
            int peer = rs->p[i].peer;
            if (rs->p[i].recv) {
                rs->rtype[peer] = t;
                rs->rcount[peer] = 1;
            } else {
                rs->stype[peer] = t;
                rs->scount[peer] = 1;
            }
        }
        free(bl);
        free(ad);
        free(ty);
        i = j;
    }
    (void)l;
    return rc;
}

/* Hands the streamed pieces to their sinks, run by run. */
static int feed_sinks(mst_loader *l, round_state *rs, const char *sstage, mst_err *err)
{
    for (size_t i = 0; i < rs->nsp; i++) {
        const spiece *s = &rs->sp[i];
        ml_req *r = &l->reqs[s->req];
        int nd = r->ndim, k = nd - 1;
        uint64_t run = 1, runs = 1, idx[64], st[64], stride = 1;
        const char *src = sstage + s->pos;
        if (!r->sink)
            continue; /* failed before */
        for (int d = nd - 1; d >= 0; d--) {
            st[d] = stride;
            stride *= r->cb[d];
        }
        while (k > 0 && s->cnt[k] == r->cb[k])
            k--;
        for (int d = k; d < nd; d++)
            run *= s->cnt[d];
        for (int d = 0; d < k; d++)
            runs *= s->cnt[d];
        memset(idx, 0, sizeof idx);
        for (uint64_t q = 0; q < runs; q++) {
            uint64_t off = 0;
            int v;
            for (int d = 0; d < nd; d++)
                off += (s->lo[d] + (d < k ? idx[d] : 0)) * st[d];
            v = r->sink(r->ctx, off, src, run);
            if (v != 0) {
                const mst_header_tensor *t = &l->files[r->file].h.tensors[r->tensor];
                char q2[MST_QUOTE_MAX];
                mst_quote(q2, sizeof q2, t->name, t->name_len, MST_QUOTE_LIMIT);
                r->sink = NULL;
                return mst_err_set(err, MST_ERR_CALLBACK,
                                   "tensor %s on rank %d: the sink returned %d at offset %llu",
                                   q2, l->rank, v, (unsigned long long)off);
            }
            src += run;
            for (int d = k - 1; d >= 0; d--) {
                if (++idx[d] < s->cnt[d])
                    break;
                idx[d] = 0;
            }
        }
    }
    return MST_OK;
}

/* ---- the load ------------------------------------------------------------------ */

static void forget_requests(mst_loader *l)
{
    for (size_t i = 0; i < l->nreqs; i++)
        free(l->reqs[i].sb);
    l->nreqs = 0;
    mst_err_clear(&l->first);
}

static int run_rounds(mst_loader *l, const ml_plan *p, mst_err *err)
{
    char *stage = NULL, *sstage = NULL;
    round_state rs;
    mst_err local;
    int n = l->nranks, rc;
    memset(&rs, 0, sizeof rs);
    mst_err_clear(&local);
    stage = malloc(p->need ? (size_t)p->need : 1);
    sstage = malloc(p->stream_need ? (size_t)p->stream_need : 1);
    rs.scount = calloc((size_t)n * 3, sizeof *rs.scount);
    rs.stype = malloc((size_t)n * 2 * sizeof *rs.stype);
    if (!stage || !sstage || !rs.scount || !rs.stype)
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory for the read buffer",
                    l->rank);
    else {
        rs.rcount = rs.scount + n;
        rs.zero = rs.rcount + n;
        rs.rtype = rs.stype + n;
        for (int j = 0; j < n; j++)
            rs.stype[j] = rs.rtype[j] = MPI_BYTE;
        read_direct(l, p, &local); /* the direct boxes first: no buffer, no exchange */
    }
    if (mst_agree(l->comm, &local, err))
        goto out;
    for (size_t c0 = 0; c0 < p->nc;) {
        size_t c1 = c0;
        while (c1 < p->nc && p->c[c1].round == p->c[c0].round)
            c1++;
        read_round(l, p, c0, c1, stage, &local);
        if (!local.code && (rc = build_pieces(l, p, c0, c1, stage, sstage, &rs)) == MPI_SUCCESS)
            rc = build_types(l, &rs);
        else
            rc = MPI_SUCCESS;
        if (!local.code && rc != MPI_SUCCESS) {
            char text[MPI_MAX_ERROR_STRING + 64];
            mst_mpi_errstr(rc, text, sizeof text);
            mst_err_set(&local, rc == MPI_ERR_NO_MEM ? MST_ERR_NO_MEMORY : MST_ERR_MPI,
                        "rank %d: building the datatypes of a round failed: %s", l->rank, text);
        }
        if (mst_agree(l->comm, &local, err))
            break;
        rc = MPI_Alltoallw(MPI_BOTTOM, rs.scount, rs.zero, rs.stype, MPI_BOTTOM, rs.rcount,
                           rs.zero, rs.rtype, l->comm);
        if (rc != MPI_SUCCESS) {
            char text[MPI_MAX_ERROR_STRING + 64];
            mst_mpi_errstr(rc, text, sizeof text);
            mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Alltoallw failed: %s", l->rank, text);
        } else {
            feed_sinks(l, &rs, sstage, &local);
        }
        clear_round(&rs, n);
        l->stats.rounds++;
        if (mst_agree(l->comm, &local, err))
            break;
        c0 = c1;
    }
out:
    if (rs.scount)
        clear_round(&rs, n);
    free(rs.p);
    free(rs.sp);
    free(rs.scount);
    free(rs.stype);
    free(stage);
    free(sstage);
    return err->code;
}

/* ---- checksums (mst_loader_set_verify) ------------------------------------ */

/* Before anything is read: every whole tensor this rank reads into a buffer
 * has a recorded CRC-32 in its file. */
static void verify_ready(mst_loader *l, mst_err *err)
{
    for (size_t i = 0; i < l->nreqs; i++) {
        const ml_req *r = &l->reqs[i];
        const ml_file *f = &l->files[r->file];
        const mst_header_tensor *t = &f->h.tensors[r->tensor];
        uint32_t want;
        mst_err e;
        if (!r->whole || !r->buf || mst_header_crc(&f->h, r->tensor, &want, &e) == MST_OK)
            continue;
        {
            char q[MST_QUOTE_MAX], qp[512];
            mst_quote(q, sizeof q, t->name, t->name_len, MST_QUOTE_LIMIT);
            mst_quote(qp, sizeof qp, f->path, strlen(f->path), 400);
            mst_err_set(err, e.code, "tensor %s on rank %d: cannot verify: %s: %s", q, l->rank, qp,
                        e.msg);
        }
        return;
    }
}

/* After the rounds: the CRC-32 of every whole tensor read into a buffer
 * against the recorded one; the first mismatch of this rank into *err. */
static void verify_buffers(mst_loader *l, mst_err *err)
{
    for (size_t i = 0; i < l->nreqs && err->code == MST_OK; i++) {
        const ml_req *r = &l->reqs[i];
        const ml_file *f = &l->files[r->file];
        const mst_header_tensor *t = &f->h.tensors[r->tensor];
        uint32_t want = 0, got;
        if (!r->whole || !r->buf || mst_header_crc(&f->h, r->tensor, &want, err) != MST_OK)
            continue;
        got = mst_crc32(0, r->buf, (size_t)r->bytes);
        if (got != want) {
            char q[MST_QUOTE_MAX];
            mst_quote(q, sizeof q, t->name, t->name_len, MST_QUOTE_LIMIT);
            mst_err_set(err, MST_ERR_CHECKSUM,
                        "tensor %s on rank %d: checksum mismatch: the file records crc32 %08x, "
                        "the bytes read have %08x",
                        q, l->rank, (unsigned)want, (unsigned)got);
        }
    }
}

int ml_load(mst_loader *l)
{
    uint64_t *tab = NULL, mine[2], all[2];
    size_t len = 0;
    ml_plan p;
    mst_err local;
    memset(&l->stats, 0, sizeof l->stats);
    memset(&p, 0, sizeof p);
    mst_err_clear(&local);
    /* every rank's declarations are checked before anything is read */
    if (l->verify && l->first.code == MST_OK)
        verify_ready(l, &l->first);
    if (mst_agree(l->comm, &l->first, &l->last))
        goto done;
    if (gather_table(l, &tab, &len, &l->last))
        goto done;
    if (ml_plan_build(&p, tab, len, l->files, l->nfiles, l->nranks, l->rank, l->buffer))
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory for the load's plan",
                    l->rank);
    if (mst_agree(l->comm, &local, &l->last))
        goto done;
    for (size_t i = 0; i < l->nreqs; i++)
        l->stats.requested_rank += l->reqs[i].bytes;
    if (run_rounds(l, &p, &l->last))
        goto done;
    if (l->verify)
        verify_buffers(l, &local);
    mine[0] = l->stats.read_rank;
    mine[1] = l->stats.requested_rank;
    if (MPI_Allreduce(mine, all, 2, MPI_UINT64_T, MPI_SUM, l->comm) != MPI_SUCCESS)
        mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Allreduce of the figures failed", l->rank);
    l->stats.read_all = all[0];
    l->stats.requested_all = all[1];
    mst_agree(l->comm, &local, &l->last);
done:
    ml_plan_free(&p);
    free(tab);
    forget_requests(l);
    return l->last.code;
}

/* The MPI half of the redistribution of strided boxes: the table broadcast,
 * then per round the datatypes of the pieces each rank sends and receives,
 * one MPI_Alltoallw, and the writes of the chunks gathered. What moves where
 * is computed by mst_redist_plan.c. */
#include "mst_redist.h"
#include "mst_crc.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_exchange.h"
#include "mst_io.h"

int mst_redist_share(MPI_Comm comm, uint64_t **tab, size_t *len, mst_err *err)
{
    int rank, rc;
    uint64_t n = *len;
    mst_err local;
    mst_err_clear(&local);
    MPI_Comm_rank(comm, &rank);
    rc = MPI_Bcast(&n, 1, MPI_UINT64_T, 0, comm);
    if (rc != MPI_SUCCESS)
        return mst_err_set(err, MST_ERR_MPI, "rank %d: MPI_Bcast of the strided-box table failed",
                           rank);
    if (n == 0)
        return MST_OK;
    if (rank != 0) {
        *len = (size_t)n;
        if (!(*tab = malloc((size_t)n * sizeof **tab)))
            mst_err_set(&local, MST_ERR_NO_MEMORY,
                        "rank %d: out of memory for the strided-box table (%llu bytes)", rank,
                        (unsigned long long)(n * 8));
    }
    if (mst_agree(comm, &local, err))
        return err->code;
    for (uint64_t done = 0; done < n;) {
        uint64_t part = n - done < (uint64_t)1 << 27 ? n - done : (uint64_t)1 << 27;
        rc = MPI_Bcast(*tab + done, (int)part, MPI_UINT64_T, 0, comm);
        if (rc != MPI_SUCCESS) {
            mst_err_set(&local, MST_ERR_MPI,
                        "rank %d: MPI_Bcast of the strided-box table failed", rank);
            break;
        }
        done += part;
    }
    return mst_agree(comm, &local, err);
}

/* ---- the rounds ---------------------------------------------------------- */

typedef struct piece {
    int peer;
    int recv;
    size_t seq;
    MPI_Aint disp;
    MPI_Datatype type;
} piece;

/*
 * The datatype of a region (count cnt at lo) of a C-order array of bytes
 * with dimensions dims, and the displacement of its first byte. The region
 * lies inside one chunk, so every count fits in an int.
 */
int mst_redist_region_type(int ndim, const uint64_t *dims, const uint64_t *lo,
                           const uint64_t *cnt, MPI_Aint *disp, MPI_Datatype *t)
{
    uint64_t stride = 1, run = 1, off = 0;
    uint64_t strides[64];
    uint64_t *st = ndim <= 64 ? strides : malloc((size_t)ndim * sizeof *st);
    MPI_Datatype cur, next;
    int k = ndim - 1, rc;
    if (!st)
        return MPI_ERR_NO_MEM;
    for (int d = ndim - 1; d >= 0; d--) {
        st[d] = stride;
        off += lo[d] * stride;
        stride *= dims[d];
    }
    while (k > 0 && cnt[k] == dims[k])
        k--;
    for (int d = k; d < ndim; d++)
        run *= cnt[d];
    rc = MPI_Type_contiguous((int)run, MPI_BYTE, &cur);
    for (int d = k - 1; d >= 0 && rc == MPI_SUCCESS; d--) {
        if (cnt[d] == 1)
            continue;
        rc = MPI_Type_create_hvector((int)cnt[d], 1, (MPI_Aint)st[d], cur, &next);
        MPI_Type_free(&cur);
        cur = next;
    }
    if (st != strides)
        free(st);
    if (rc != MPI_SUCCESS)
        return rc;
    *disp = (MPI_Aint)off;
    *t = cur;
    return MPI_SUCCESS;
}

static int cmp_piece(const void *a, const void *b)
{
    const piece *x = a, *y = b;
    if (x->recv != y->recv)
        return x->recv - y->recv;
    if (x->peer != y->peer)
        return x->peer - y->peer;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

typedef struct round_types {
    int *scount, *rcount, *sdisp, *rdisp;
    const void *sbuf; /* the send buffer: the first box this round sends from */
    MPI_Aint saddr;   /* its address; send displacements are relative to it */
    MPI_Datatype *stype, *rtype;
    piece *p;
    size_t np, pcap;
    uint64_t *dims; /* scratch: cs, cc, lo, cnt, rel (5 * maxdim) */
} round_types;

static void free_round(round_types *rt, int nranks)
{
    if (!rt->scount)
        return;
    for (int j = 0; j < nranks; j++) {
        if (rt->scount[j])
            MPI_Type_free(&rt->stype[j]);
        if (rt->rcount[j])
            MPI_Type_free(&rt->rtype[j]);
        rt->scount[j] = rt->rcount[j] = 0;
        rt->stype[j] = rt->rtype[j] = MPI_BYTE;
    }
    for (size_t i = 0; i < rt->np; i++)
        if (rt->p[i].type != MPI_DATATYPE_NULL)
            MPI_Type_free(&rt->p[i].type);
    rt->np = 0;
    rt->sbuf = NULL;
}

static int add_piece(round_types *rt, int peer, int recv, MPI_Aint disp, MPI_Datatype type)
{
    if (rt->np == rt->pcap) {
        size_t ncap = rt->pcap ? 2 * rt->pcap : 64;
        piece *g = realloc(rt->p, ncap * sizeof *g);
        if (!g)
            return MPI_ERR_NO_MEM;
        rt->p = g;
        rt->pcap = ncap;
    }
    rt->p[rt->np].peer = peer;
    rt->p[rt->np].recv = recv;
    rt->p[rt->np].seq = rt->np;
    rt->p[rt->np].disp = disp;
    rt->p[rt->np].type = type;
    rt->np++;
    return MPI_SUCCESS;
}

/* The send and receive types of round [c0, c1) for rank me. */
static int build_round(const mst_redist_plan *s, size_t c0, size_t c1, int me, int nranks,
                       mst_redist_data_fn data, void *ctx, round_types *rt)
{
    int rc = MPI_SUCCESS;
    for (size_t ci = c0; ci < c1 && rc == MPI_SUCCESS; ci++) {
        const mst_redist_chunk *c = &s->c[ci];
        const mst_redist_tensor *r = &s->t[c->tensor];
        size_t nd = (size_t)r->ndim;
        uint64_t *cs = rt->dims, *cc = cs + nd, *lo = cc + nd, *cnt = lo + nd, *rel = cnt + nd;
        mst_redist_chunk_box(r, c, cs, cc);
        for (size_t b = 0; b < r->nstrided && rc == MPI_SUCCESS; b++) {
            const uint64_t *box = r->boxes + b * (2 + 2 * nd);
            int owner = (int)box[0];
            const uint64_t *sb = box + 2, *cb = sb + nd;
            MPI_Aint disp;
            MPI_Datatype t;
            if (owner != me && c->dest != me)
                continue;
            if (!mst_redist_intersect(nd, sb, cb, cs, cc, lo, cnt))
                continue;
            if (c->dest == me) {
                for (size_t d = 0; d < nd; d++)
                    rel[d] = lo[d] - cs[d];
                rc = mst_redist_region_type(r->ndim, cc, rel, cnt, &disp, &t);
                if (rc == MPI_SUCCESS &&
                    (rc = add_piece(rt, owner, 1, disp + (MPI_Aint)c->stage, t)) != MPI_SUCCESS)
                    MPI_Type_free(&t);
            }
            if (rc == MPI_SUCCESS && owner == me) {
                MPI_Aint base;
                for (size_t d = 0; d < nd; d++)
                    rel[d] = lo[d] - sb[d];
                const void *mem = data(ctx, (size_t)box[1]);
                rc = mst_redist_region_type(r->ndim, cb, rel, cnt, &disp, &t);
                if (rc == MPI_SUCCESS && !rt->sbuf) {
                    rt->sbuf = mem;
                    rc = MPI_Get_address(mem, &rt->saddr);
                }
                if (rc == MPI_SUCCESS)
                    rc = MPI_Get_address(mem, &base);
                if (rc == MPI_SUCCESS &&
                    (rc = add_piece(rt, c->dest, 0,
                                    MPI_Aint_add(MPI_Aint_diff(base, rt->saddr), disp), t)) !=
                        MPI_SUCCESS)
                    MPI_Type_free(&t);
            }
        }
    }
    if (rc != MPI_SUCCESS)
        return rc;
    if (rt->np > 1)
        qsort(rt->p, rt->np, sizeof *rt->p, cmp_piece);
    for (size_t a = 0, b; a < rt->np && rc == MPI_SUCCESS; a = b) {
        int peer = rt->p[a].peer, recv = rt->p[a].recv, n;
        MPI_Datatype *types;
        MPI_Aint *disps;
        int *bl;
        for (b = a; b < rt->np && rt->p[b].peer == peer && rt->p[b].recv == recv; b++)
            ;
        if (b - a > INT_MAX)
            return MPI_ERR_COUNT;
        n = (int)(b - a);
        if (n == 1 && nranks > 1 && rt->p[a].disp >= INT_MIN && rt->p[a].disp <= INT_MAX) {
            /* One piece: its own type at an int displacement, no struct (a
             * contiguous piece then stays contiguous for the transport:
             * 25-40% faster on column splits). Not on one rank: there Open
             * MPI 4.1 (its coll/self component) puts alltoallw's pieces at
             * the wrong place when displacements are not 0 (slices_small.np1
             * caught it), so on one rank every displacement stays 0. */
            MPI_Datatype *out = recv ? &rt->rtype[peer] : &rt->stype[peer];
            if ((rc = MPI_Type_commit(&rt->p[a].type)) == MPI_SUCCESS) {
                *out = rt->p[a].type;
                rt->p[a].type = MPI_DATATYPE_NULL;
                (recv ? rt->rdisp : rt->sdisp)[peer] = (int)rt->p[a].disp;
                (recv ? rt->rcount : rt->scount)[peer] = 1;
            }
            continue;
        }
        types = malloc((size_t)n * sizeof *types);
        disps = malloc((size_t)n * sizeof *disps);
        bl = malloc((size_t)n * sizeof *bl);
        if (!types || !disps || !bl) {
            rc = MPI_ERR_NO_MEM;
        } else {
            MPI_Datatype *out = recv ? &rt->rtype[peer] : &rt->stype[peer];
            for (int i = 0; i < n; i++) {
                types[i] = rt->p[a + (size_t)i].type;
                disps[i] = rt->p[a + (size_t)i].disp;
                bl[i] = 1;
            }
            rc = MPI_Type_create_struct(n, bl, disps, types, out);
            if (rc == MPI_SUCCESS && (rc = MPI_Type_commit(out)) != MPI_SUCCESS)
                MPI_Type_free(out);
            if (rc == MPI_SUCCESS) {
                (recv ? rt->rcount : rt->scount)[peer] = 1;
                (recv ? rt->rdisp : rt->sdisp)[peer] = 0;
            } else {
                *out = MPI_BYTE;
            }
        }
        free(types);
        free(disps);
        free(bl);
    }
    return rc;
}

/* ---- the writes ---------------------------------------------------------- */

static void describe_part(char *what, size_t cap, const mst_redist_tensor *r, uint64_t pos,
                          uint64_t len)
{
    char q[MST_QUOTE_MAX];
    snprintf(what, cap, "bytes %llu to %llu of tensor %s (gathered from its strided boxes)",
             (unsigned long long)pos, (unsigned long long)(pos + len),
             mst_quote(q, sizeof q, r->name, r->name_len, MST_QUOTE_LIMIT));
}

/* Writes the chunks of [c0, c1) that this rank received, leaving out the
 * ranges of contiguous boxes (their owners write them). Blocking writes: an
 * MPI_File_iwrite_at per chunk, overlapping the next round's exchange, made
 * column splits 2x slower under OMPIO (its POSIX AIO threads, polled under a
 * mutex, and their writes contending for the file's lock with the next
 * round's) and no faster under ROMIO (docs/BENCHMARKS.md, issue 19). */
static int write_chunks(const mst_redist_plan *s, size_t c0, size_t c1, int me,
                        const unsigned char *stage, MPI_File fh, const char *path,
                        mst_crc_acc *crc, mst_err *err)
{
    for (size_t ci = c0; ci < c1; ci++) {
        const mst_redist_chunk *c = &s->c[ci];
        const mst_redist_tensor *r = &s->t[c->tensor];
        uint64_t pos = c->first, end = c->first + c->bytes;
        if (c->dest != me)
            continue;
        for (size_t k = 0; k <= r->ndirect && pos < end; k++) {
            uint64_t gap_end = k < r->ndirect ? r->direct[2 * k] : end, skip_to;
            if (gap_end > end)
                gap_end = end;
            if (gap_end > pos) {
                char what[MST_QUOTE_MAX + 120];
                const unsigned char *from = stage + c->stage + (pos - c->first);
                describe_part(what, sizeof what, r, pos, gap_end - pos);
                if (crc)
                    mst_crc_add_piece(crc, r->offset, r->bytes, pos, from, gap_end - pos);
                if (mst_io_write(fh, path, r->offset + pos, from, gap_end - pos, me, what, err))
                    return err->code;
            }
            if (k == r->ndirect)
                break;
            skip_to = r->direct[2 * k] + r->direct[2 * k + 1];
            if (skip_to > pos)
                pos = skip_to;
        }
    }
    return MST_OK;
}

/* "rank me: what failed: " and the MPI error string of rc, into e. */
static void mpi_failed(mst_err *e, int code, int rc, int me, const char *what)
{
    char text[MPI_MAX_ERROR_STRING + 32];
    mst_mpi_errstr(rc, text, sizeof text);
    mst_err_set(e, code, "rank %d: %s failed: %s", me, what, text);
}

int mst_redist_write(MPI_Comm comm, const uint64_t *tab, size_t len, mst_redist_data_fn data,
                     void *ctx, MPI_File fh, const char *path, uint64_t buffer,
                     mst_crc_acc *crc, mst_err *err)
{
    mst_redist_plan s;
    round_types rt;
    unsigned char *stage = NULL;
    size_t maxdim = 1;
    int me, nranks, rc;
    uint64_t buf = 0;
    mst_err local;

    memset(&s, 0, sizeof s);
    memset(&rt, 0, sizeof rt);
    mst_err_clear(&local);
    MPI_Comm_rank(comm, &me);
    MPI_Comm_size(comm, &nranks);
    if (!tab || len == 0)
        return MST_OK;

    /* the same buffer size on every rank: the smallest */
    rc = MPI_Allreduce(&buffer, &buf, 1, MPI_UINT64_T, MPI_MIN, comm);
    if (rc != MPI_SUCCESS)
        mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Allreduce of the buffer size failed", me);
    if (buf > MST_IO_CHUNK)
        buf = MST_IO_CHUNK;
    if (buf == 0)
        buf = 1;
    if (local.code == MST_OK && mst_redist_read(tab, len, &s.t, &s.nt) != 0)
        mst_err_set(&local, MST_ERR_MPI, "rank %d: the strided-box table received is malformed",
                    me);
    if (local.code == MST_OK && mst_redist_cut(&s, nranks, me, buf) != 0)
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory cutting strided tensors",
                    me);
    for (size_t i = 0; i < s.nt; i++)
        if ((size_t)s.t[i].ndim > maxdim)
            maxdim = (size_t)s.t[i].ndim;
    if (local.code == MST_OK) {
        rt.scount = calloc((size_t)nranks * 4, sizeof *rt.scount);
        rt.stype = malloc((size_t)nranks * 2 * sizeof *rt.stype);
        rt.dims = malloc(5 * maxdim * sizeof *rt.dims);
        stage = malloc(s.need ? (size_t)s.need : 1);
        if (!rt.scount || !rt.stype || !rt.dims || !stage) {
            mst_err_set(&local, MST_ERR_NO_MEMORY,
                        "rank %d: out of memory for a redistribution buffer of %llu bytes", me,
                        (unsigned long long)s.need);
        } else {
            rt.rcount = rt.scount + nranks;
            rt.sdisp = rt.rcount + nranks;
            rt.rdisp = rt.sdisp + nranks;
            rt.rtype = rt.stype + nranks;
            for (int j = 0; j < 2 * nranks; j++)
                rt.stype[j] = MPI_BYTE;
        }
    }

    /* One agreement per round, before its exchange: it carries a failure of
     * the last round's writes or of this round's datatypes to every rank. */
    for (size_t c0 = 0, c1 = 0, round = 0; round < s.rounds; round++, c0 = c1) {
        for (c1 = c0; c1 < s.nc && s.c[c1].round == round; c1++)
            ;
        if (local.code == MST_OK &&
            (rc = build_round(&s, c0, c1, me, nranks, data, ctx, &rt)) != MPI_SUCCESS)
            mpi_failed(&local, rc == MPI_ERR_NO_MEM ? MST_ERR_NO_MEMORY : MST_ERR_MPI, rc, me,
                       "building the datatypes of strided boxes");
        if (mst_agree(comm, &local, err)) {
            free_round(&rt, nranks);
            goto out;
        }
        rc = MPI_Alltoallw(rt.sbuf ? rt.sbuf : MPI_BOTTOM, rt.scount, rt.sdisp, rt.stype,
                           stage, rt.rcount, rt.rdisp, rt.rtype, comm);
        free_round(&rt, nranks);
        if (rc != MPI_SUCCESS) {
            mpi_failed(&local, MST_ERR_MPI, rc, me, "MPI_Alltoallw moving strided boxes");
            continue;
        }
        write_chunks(&s, c0, c1, me, stage, fh, path, crc, &local);
    }
    mst_agree(comm, &local, err);
out:
    free(s.t);
    free(s.c);
    free(rt.scount);
    free(rt.stype);
    free(rt.p);
    free(rt.dims);
    free(stage);
    return err->code;
}

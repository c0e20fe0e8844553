/* Small tensors of several ranks: mst's own two-phase write.
 *
 * Tensors dealt round-robin over the ranks (a mixture-of-experts checkpoint:
 * 100,000 norms, biases and small experts) interleave in the file's order, so
 * no rank has two neighbours and each tensor would be a write of its own.
 * Instead, in rounds, every rank sends its small pieces (MST_SCHED_SMALL) to
 * the rank that writes their stretch of the file, and each rank writes what it
 * received in one call (mst_io_write_runs: one run when the stretch is all
 * small tensors, the usual case).
 *
 * A round is a file window [start, end): start is the lowest offset any rank
 * still has to send, end the lowest offset where some rank would exceed its
 * share (B / N bytes, or the largest piece if larger, or PARTS / N pieces), so no span of
 * large tensors between small ones costs an empty round. The window is cut
 * into N equal stretches, one per rank; a piece that crosses a cut goes to
 * both. B is 8 MiB, or the hint mst_redist_buffer (the redistribution's,
 * whose default is smaller: its chunks are large, these pieces small, and
 * every round costs five collective calls).
 *
 * Memory per rank: a send buffer of S = max(B / N, the largest piece) bytes
 * (pieces are under MST_SCHED_SMALL, 64 KiB), two receive buffers of N * S
 * (smaller when no rank has that many small bytes), and 56 bytes per piece for
 * PARTS / N + 2 pieces per rank: with the default B and pieces of at most
 * B / N bytes, 2 B + B / N + 4 MiB (20 MiB); pieces of 64 KiB at more than 128
 * ranks raise it to 2 N * 64 KiB + 4 MiB.
 *
 * Every rank makes the same collective calls in the same rounds: a rank that
 * fails (memory, a write) stops sending and writing but keeps taking part;
 * the caller agrees on the outcome.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_buf.h"
#include "mst_err.h"
#include "mst_io.h"
#include "mst_writer_impl.h"

#define SMALL_BUFFER ((uint64_t)8 << 20) /* B, unless the hint mst_redist_buffer says */
#define PARTS ((uint64_t)1 << 16) /* pieces a rank receives in a round, at most (+ 2 N) */
/* "No offset" in the reductions of the windows: above every file offset
 * (< 2^53), and below 2^63, because Debian's MPICH 4.0.2 reduces MPI_UINT64_T
 * with MPI_MIN and MPI_MAX as if it were signed (UINT64_MAX would count as -1
 * there, and every window would end before it began). */
#define NONE ((uint64_t)1 << 62)

typedef struct part {
    uint64_t offset, len, at; /* at: position in the receive buffer */
} part;

static int cmp_part(const void *a, const void *b)
{
    const part *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

typedef struct small_state {
    int n;
    uint64_t send_cap, recv_cap, parts_cap, send_parts;
    unsigned char *sbuf, *rbuf, *obuf;
    uint64_t *smeta, *rmeta, *roff, *rlen;
    part *parts;
    int *cnt, *rcnt, *sd, *rd, *smc, *smd, *rmc, *rmd; /* per rank */
} small_state;

static void state_free(small_state *s)
{
    free(s->sbuf);
    free(s->rbuf);
    free(s->obuf);
    free(s->smeta);
    free(s->rmeta);
    free(s->roff);
    free(s->rlen);
    free(s->parts);
    free(s->cnt);
}

static int state_alloc(small_state *s, int n, uint64_t send_cap, uint64_t recv_cap,
                       uint64_t send_parts, uint64_t parts_cap)
{
    s->n = n;
    s->send_cap = send_cap;
    s->recv_cap = recv_cap;
    s->send_parts = send_parts;
    s->parts_cap = parts_cap;
    s->sbuf = mst_malloc_big(send_cap ? send_cap : 1);
    s->rbuf = mst_malloc_big(recv_cap ? recv_cap : 1);
    s->obuf = mst_malloc_big(recv_cap ? recv_cap : 1);
    s->smeta = malloc(2 * (send_parts + (uint64_t)n) * sizeof *s->smeta);
    s->rmeta = malloc(2 * parts_cap * sizeof *s->rmeta);
    s->roff = malloc(parts_cap * sizeof *s->roff);
    s->rlen = malloc(parts_cap * sizeof *s->rlen);
    s->parts = malloc(parts_cap * sizeof *s->parts);
    s->cnt = malloc(10 * (size_t)n * sizeof *s->cnt);
    if (!s->sbuf || !s->rbuf || !s->obuf || !s->smeta || !s->rmeta || !s->roff || !s->rlen ||
        !s->parts || !s->cnt)
        return -1;
    s->rcnt = s->cnt + 2 * n; /* cnt, rcnt: (bytes, parts) per rank */
    s->sd = s->cnt + 4 * n;
    s->rd = s->cnt + 5 * n;
    s->smc = s->cnt + 6 * n;
    s->smd = s->cnt + 7 * n;
    s->rmc = s->cnt + 8 * n;
    s->rmd = s->cnt + 9 * n;
    return 0;
}

/* The first byte of rank d's stretch of window [start, end). */
static uint64_t stretch(uint64_t start, uint64_t end, int n, int d)
{
    uint64_t span = end - start;
    return start + span / (uint64_t)n * (uint64_t)d + span % (uint64_t)n * (uint64_t)d / (uint64_t)n;
}

/* The pieces pc[*cur..] below `end`, cut at the stretches, into the send
 * buffer in file order (so by destination), their counts per rank. */
static void pack(small_state *s, const mst_piece *pc, size_t np, size_t *cur, uint64_t start,
                 uint64_t end)
{
    uint64_t bytes = 0, nparts = 0;
    int d = 0;
    memset(s->cnt, 0, 2 * (size_t)s->n * sizeof *s->cnt);
    for (; *cur < np && pc[*cur].offset < end; (*cur)++) {
        uint64_t o = pc[*cur].offset, left = pc[*cur].len;
        const unsigned char *src = pc[*cur].data;
        while (left > 0) {
            uint64_t cut, n;
            while (d + 1 < s->n && stretch(start, end, s->n, d + 1) <= o)
                d++;
            cut = d + 1 < s->n ? stretch(start, end, s->n, d + 1) : UINT64_MAX;
            n = cut - o < left ? cut - o : left;
            memcpy(s->sbuf + bytes, src, n);
            s->smeta[2 * nparts] = o;
            s->smeta[2 * nparts + 1] = n;
            s->cnt[2 * d] += (int)n;
            s->cnt[2 * d + 1]++;
            nparts++;
            bytes += n;
            o += n;
            src += n;
            left -= n;
        }
    }
}

/* What this rank received, in file order into obuf, then written. Usually
 * the pieces cover one stretch of the file without a gap (distinct tensors
 * never overlap): each is copied straight to its place and the stretch leaves
 * in one call. Otherwise (large tensors in between) the pieces are sorted
 * into runs, written with one call through a file view (the handle is this
 * rank's own, so the view is local). */
static int write_received(const mst_writer *w, MPI_File fh, const char *tmp, small_state *s,
                          mst_err *err)
{
    size_t np = 0, nruns = 0;
    uint64_t at = 0, out = 0, lo = NONE, hi = 0, total = 0;
    int sorted = 1;
    char what[160];
    for (int r = 0; r < s->n; r++) {
        uint64_t pos = (uint64_t)s->rd[r];
        for (int k = 0; k < s->rcnt[2 * r + 1]; k++, np++) {
            part *p = &s->parts[np];
            p->offset = s->rmeta[at++];
            p->len = s->rmeta[at++];
            p->at = pos;
            pos += p->len;
            total += p->len;
            lo = p->offset < lo ? p->offset : lo;
            hi = p->offset + p->len > hi ? p->offset + p->len : hi;
            if (np > 0 && p->offset < s->parts[np - 1].offset)
                sorted = 0;
        }
    }
    if (np == 0)
        return MST_OK;
    snprintf(what, sizeof what, "the small tensors gathered for file bytes %llu to %llu",
             (unsigned long long)lo, (unsigned long long)hi);
    if (hi - lo == total) {
        for (size_t k = 0; k < np; k++)
            memcpy(s->obuf + (s->parts[k].offset - lo), s->rbuf + s->parts[k].at,
                   s->parts[k].len);
        return mst_io_write(fh, tmp, lo, s->obuf, total, w->rank, what, err);
    }
    if (!sorted)
        qsort(s->parts, np, sizeof *s->parts, cmp_part);
    for (size_t k = 0; k < np; k++) {
        const part *p = &s->parts[k];
        memcpy(s->obuf + out, s->rbuf + p->at, p->len);
        out += p->len;
        if (nruns > 0 && s->roff[nruns - 1] + s->rlen[nruns - 1] == p->offset) {
            s->rlen[nruns - 1] += p->len;
        } else {
            s->roff[nruns] = p->offset;
            s->rlen[nruns++] = p->len;
        }
    }
    return mst_io_write_runs(fh, tmp, s->roff, s->rlen, nruns, s->obuf, w->rank, what, err);
}

static int mpi_failed(const mst_writer *w, const char *call, mst_err *err)
{
    if (err->code != MST_OK)
        return err->code;
    return mst_err_set(err, MST_ERR_MPI, "rank %d: %s of small tensors failed", w->rank, call);
}

int mst_sched_write_small(const mst_writer *w, MPI_File fh, const char *tmp,
                          const mst_plan *plan, const write_list *l, mst_err *err)
{
    MPI_Comm comm = w->comm;
    int n = w->size, failed = 0;
    uint64_t b = w->redist_buffer ? w->redist_buffer : SMALL_BUFFER, mine[3] = {0, 0, 0}, most[3];
    uint64_t share, share_parts = PARTS / (uint64_t)n;
    mst_piece *pc = NULL;
    size_t np = 0, cur = 0;
    unsigned char len8[8];
    small_state s;
    memset(&s, 0, sizeof s);
    if (n < 2)
        return MST_OK;
    if (b > ((uint64_t)1 << 28))
        b = (uint64_t)1 << 28; /* counts are int */
    share = b / (uint64_t)n;
    if (share_parts < 1)
        share_parts = 1;
    if (mst_sched_small_pieces(w, plan, l, len8, &pc, &np, err) != MST_OK)
        failed = 1;
    for (size_t k = 0; k < np; k++) {
        mine[0] += pc[k].len;
        mine[2] = pc[k].len > mine[2] ? pc[k].len : mine[2];
    }
    mine[1] = np;
    /* the buffers: no larger than the most any rank has */
    if (MPI_Allreduce(mine, most, 3, MPI_UINT64_T, MPI_MAX, comm) != MPI_SUCCESS) {
        free(pc);
        return mpi_failed(w, "MPI_Allreduce", err);
    }
    if (most[1] == 0) {
        free(pc);
        return err->code;
    }
    if (!failed) {
        /* a share holds the largest piece */
        uint64_t sc = share < most[2] ? most[2] : share < most[0] ? share : most[0];
        uint64_t sp = share_parts < most[1] ? share_parts : most[1];
        if (state_alloc(&s, n, sc, sc * (uint64_t)n, sp, sp * (uint64_t)n + 2 * (uint64_t)n)) {
            mst_err_set(err, MST_ERR_NO_MEMORY,
                        "rank %d: out of memory for gathering small tensors (%llu bytes)",
                        w->rank, (unsigned long long)(3 * sc * (uint64_t)n));
            failed = 1;
        }
    }
    /* a rank without its list or buffers can neither send nor receive: then
     * no rank goes on (the caller agrees on the message) */
    if (MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS) {
        mpi_failed(w, "MPI_Allreduce", err);
        failed = 1;
    }
    if (failed && err->code == MST_OK)
        mst_err_set(err, MST_ERR_NO_MEMORY, "rank %d: another rank ran out of memory for "
                    "gathering small tensors", w->rank);
    while (!failed) {
        uint64_t v[2], r[2], start, end, bytes = 0;
        size_t j = cur;
        int rbytes = 0, rparts = 0, sbytes = 0, sparts = 0;
        /* the window: its start, then its end */
        v[0] = cur == np ? NONE : pc[cur].offset;
        if (MPI_Allreduce(v, &start, 1, MPI_UINT64_T, MPI_MIN, comm) != MPI_SUCCESS) {
            mpi_failed(w, "MPI_Allreduce", err);
            break;
        }
        if (start == NONE)
            break;
        while (j < np &&
               (j == cur || (bytes + pc[j].len <= s.send_cap && j - cur < s.send_parts))) {
            bytes += pc[j].len;
            j++;
        }
        v[0] = j == np ? NONE : pc[j].offset;
        v[1] = NONE - (j == cur ? 0 : pc[j - 1].offset + pc[j - 1].len);
        if (MPI_Allreduce(v, r, 2, MPI_UINT64_T, MPI_MIN, comm) != MPI_SUCCESS) {
            mpi_failed(w, "MPI_Allreduce", err);
            break;
        }
        end = r[0] < NONE - r[1] ? r[0] : NONE - r[1];
        pack(&s, pc, np, &cur, start, end);
        /* who sends what: counts, then the pieces' places, then their bytes */
        if (MPI_Alltoall(s.cnt, 2, MPI_INT, s.rcnt, 2, MPI_INT, comm) != MPI_SUCCESS) {
            mpi_failed(w, "MPI_Alltoall", err);
            break;
        }
        for (int d = 0; d < n; d++) {
            s.sd[d] = sbytes;
            s.smd[d] = 2 * sparts;
            s.smc[d] = 2 * s.cnt[2 * d + 1];
            sbytes += s.cnt[2 * d];
            sparts += s.cnt[2 * d + 1];
            s.rd[d] = rbytes;
            s.rmd[d] = 2 * rparts;
            s.rmc[d] = 2 * s.rcnt[2 * d + 1];
            rbytes += s.rcnt[2 * d];
            rparts += s.rcnt[2 * d + 1];
        }
        for (int d = 0; d < n; d++) { /* byte counts: the even entries, in place */
            s.cnt[d] = s.cnt[2 * d];
            s.rcnt[d] = s.rcnt[2 * d];
        }
        if (MPI_Alltoallv(s.smeta, s.smc, s.smd, MPI_UINT64_T, s.rmeta, s.rmc, s.rmd,
                          MPI_UINT64_T, comm) != MPI_SUCCESS ||
            MPI_Alltoallv(s.sbuf, s.cnt, s.sd, MPI_BYTE, s.rbuf, s.rcnt, s.rd, MPI_BYTE, comm) !=
                MPI_SUCCESS) {
            mpi_failed(w, "MPI_Alltoallv", err);
            break;
        }
        for (int d = n - 1; d >= 0; d--) { /* back to (bytes, parts) for write_received */
            s.rcnt[2 * d + 1] = s.rmc[d] / 2;
            s.rcnt[2 * d] = s.rcnt[d];
        }
        if (err->code == MST_OK) /* after a failed write: still sending, no more writes */
            write_received(w, fh, tmp, &s, err);
    }
    state_free(&s);
    free(pc);
    return err->code;
}

/* mst-bench's load methods: every rank reads back its part of the synthetic
 * checkpoint (its whole tensors, row blocks or column blocks, as the save
 * layouts --layout whole|rows|cols define them), into buffers laid out as
 * its slab, so that --verify compares them with the slab byte for byte:
 *   load          the parallel loader (mst_loader_*): the header read once by
 *                 rank 0 and broadcast, each byte of the file read once, column
 *                 blocks read as contiguous chunks and redistributed;
 *   load-local    every rank opens the file with mst_reader and reads its own
 *                 boxes (a column block: one read per row);
 *   load-scatter  rank 0 alone reads every tensor with mst_reader and sends each
 *                 rank its boxes;
 *   load-raw      plain MPI-IO: every rank reads exactly the byte ranges of its
 *                 boxes (a column block: one read through a strided file view),
 *                 no header parsing (offsets taken untimed beforehand), no
 *                 redistribution: the ceiling; the ranges in the order of the
 *                 bench's pieces (tensor names), so scattered over the file;
 *   load-raw-file the same reads in file order, rank r of n starting r/n of
 *                 the way through its ranges and wrapping, as the loader reads
 *                 its direct boxes: the loader's own order without the loader.
 * The file is saved once through mst first (untimed), or taken as it is with
 * --no-save. Before every run rank 0 tries to drop the page cache. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_load.h"
#include "bench_probes.h"
#include "mst.h"

#define MAX_CALL (1ull << 30) /* bytes per MPI call (int counts) */

typedef struct load_ctx {
    const bench_ctx *c;
    unsigned char *dst;   /* laid out as c->slab */
    uint64_t *file_off;   /* per piece: the file offset of its tensor's data (load-raw) */
    size_t *file_order;   /* the pieces sorted by file offset (load-raw-file) */
    uint64_t read_bytes;  /* this rank's bytes read from storage */
    double open_s;        /* seconds until the header was known */
} load_ctx;

static unsigned char *dst_of(const load_ctx *L, const piece *p)
{
    return L->dst + (p->data - L->c->slab);
}

static uint64_t el_of(const piece *p)
{
    return (uint64_t)mst_dtype_bits(p->t.dtype) / 8;
}

/* a box whose bytes are one contiguous range of its tensor */
static int contiguous(const piece *p)
{
    return p->whole || p->t.ndim == 1 || p->count[1] == p->t.shape[1];
}

static uint64_t row_bytes(const piece *p)
{
    return p->t.ndim == 2 ? (uint64_t)p->t.shape[1] * el_of(p) : el_of(p);
}

static uint64_t first_byte(const piece *p)
{
    if (p->whole)
        return 0;
    return (uint64_t)p->start[0] * row_bytes(p) +
           (p->t.ndim == 2 ? (uint64_t)p->start[1] * el_of(p) : 0);
}

/* ---- load ---- */

static int run_load(load_ctx *L, double t0)
{
    const bench_ctx *c = L->c;
    mst_loader *l = NULL;
    mst_load_stats st;
    int rc = mst_loader_open(&l, c->comm, c->o->out, MPI_INFO_NULL);
    L->open_s = MPI_Wtime() - t0;
    if (rc == MST_OK) {
        for (size_t k = 0; k < c->n; k++) {
            const piece *p = &c->pieces[k];
            if (p->whole)
                mst_loader_read(l, p->t.name, dst_of(L, p));
            else
                mst_loader_read_slice(l, p->t.name, p->t.ndim, p->start, p->count, dst_of(L, p));
        }
        rc = mst_loader_load(l);
    }
    if (rc == MST_OK && mst_loader_stats(l, &st) == MST_OK)
        L->read_bytes = st.read_rank;
    if (rc != MST_OK && c->rank == 0)
        fprintf(c->err, "mst-bench: load of %s failed (%s): %s\n", c->o->out, mst_strerror(rc),
                l ? mst_loader_error(l) : "");
    mst_loader_free(&l);
    return rc != MST_OK;
}

/* ---- load-local ---- */

static int read_box(mst_reader *r, const piece *p, unsigned char *buf)
{
    if (contiguous(p))
        return mst_reader_read(r, p->t.name, first_byte(p), buf, p->nbytes);
    for (int64_t i = 0; i < p->count[0]; i++) {
        uint64_t cb = (uint64_t)p->count[1] * el_of(p);
        int rc = mst_reader_read(r, p->t.name, first_byte(p) + (uint64_t)i * row_bytes(p),
                                 buf + (uint64_t)i * cb, cb);
        if (rc != MST_OK)
            return rc;
    }
    return MST_OK;
}

static int run_local(load_ctx *L, double t0)
{
    const bench_ctx *c = L->c;
    mst_reader *r = NULL;
    int rc = mst_reader_open(&r, c->o->out);
    L->open_s = MPI_Wtime() - t0;
    for (size_t k = 0; k < c->n && rc == MST_OK; k++) {
        rc = read_box(r, &c->pieces[k], dst_of(L, &c->pieces[k]));
        L->read_bytes += rc == MST_OK ? c->pieces[k].nbytes : 0;
    }
    if (rc != MST_OK)
        fprintf(c->err, "mst-bench: rank %d: load-local of %s failed (%s): %s\n", c->rank,
                c->o->out, mst_strerror(rc), r ? mst_reader_error(r) : "");
    mst_reader_free(&r);
    return rc != MST_OK;
}

/* ---- load-scatter ---- */

/* p's box out of its whole tensor's bytes */
static void pack_box(const piece *p, const unsigned char *all, unsigned char *out)
{
    if (contiguous(p)) {
        memcpy(out, all + first_byte(p), p->nbytes);
        return;
    }
    for (int64_t i = 0; i < p->count[0]; i++) {
        uint64_t cb = (uint64_t)p->count[1] * el_of(p);
        memcpy(out + (uint64_t)i * cb, all + first_byte(p) + (uint64_t)i * row_bytes(p), cb);
    }
}

static int run_scatter(load_ctx *L, double t0)
{
    const bench_ctx *c = L->c;
    const bench_workload *wl = &c->o->wl;
    int bad = 0, any = 0;
    if (c->rank != 0) {
        /* rank 0 sends every rank's boxes in tensor order; a failure: empty messages */
        for (size_t k = 0; k < c->n; k++) {
            MPI_Status st;
            int got = 0;
            MPI_Recv(dst_of(L, &c->pieces[k]), (int)c->pieces[k].nbytes, MPI_BYTE, 0, 7, c->comm,
                     &st);
            MPI_Get_count(&st, MPI_BYTE, &got);
            bad |= (uint64_t)got != c->pieces[k].nbytes;
        }
        (void)t0; /* open_s: rank 0's (it alone reads the header) */
    } else {
        mst_reader *r = NULL;
        unsigned char *tbuf = NULL, *sbuf = NULL;
        uint64_t tcap = 0, scap = 0;
        size_t mine = 0;
        int rc = mst_reader_open(&r, c->o->out);
        L->open_s = MPI_Wtime() - t0;
        for (uint64_t i = 0; i < wl->tensors; i++) {
            tensor t;
            bench_describe(wl, i, &t);
            if (rc == MST_OK && t.nbytes > tcap) {
                free(tbuf);
                tcap = t.nbytes;
                if (!(tbuf = malloc(tcap)))
                    rc = MST_ERR_NO_MEMORY;
            }
            if (rc == MST_OK && t.nbytes) {
                rc = mst_reader_read(r, t.name, 0, tbuf, t.nbytes);
                L->read_bytes += t.nbytes;
            }
            for (int q = 0; q < c->size; q++) {
                piece p;
                if (!bench_piece_of(wl, i, q, c->size, &p))
                    continue;
                if (q == 0) {
                    if (rc == MST_OK && p.nbytes)
                        pack_box(&p, tbuf, dst_of(L, &c->pieces[mine]));
                    mine++;
                    continue;
                }
                if (rc == MST_OK && p.nbytes > scap) {
                    free(sbuf);
                    scap = p.nbytes;
                    if (!(sbuf = malloc(scap)))
                        rc = MST_ERR_NO_MEMORY;
                }
                if (rc == MST_OK && p.nbytes)
                    pack_box(&p, tbuf, sbuf);
                MPI_Send(sbuf, rc == MST_OK ? (int)p.nbytes : 0, MPI_BYTE, q, 7, c->comm);
            }
        }
        if (rc != MST_OK)
            fprintf(c->err, "mst-bench: load-scatter of %s failed (%s): %s\n", c->o->out,
                    mst_strerror(rc), r ? mst_reader_error(r) : "");
        bad = rc != MST_OK;
        mst_reader_free(&r);
        free(tbuf);
        free(sbuf);
    }
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c->comm);
    return any;
}

/* ---- load-raw ---- */

static int read_range(MPI_File fh, uint64_t off, unsigned char *buf, uint64_t len)
{
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < MAX_CALL ? len - done : MAX_CALL;
        MPI_Status st;
        int got = 0;
        if (MPI_File_read_at(fh, (MPI_Offset)(off + done), buf + done, (int)n, MPI_BYTE, &st) !=
            MPI_SUCCESS)
            return 1;
        MPI_Get_count(&st, MPI_BYTE, &got);
        if ((uint64_t)got != n)
            return 1;
        done += n;
    }
    return 0;
}

static int run_raw(load_ctx *L, int m, double t0)
{
    const bench_ctx *c = L->c;
    MPI_File fh;
    int bad = 0, view = 0;
    size_t first = (size_t)((uint64_t)c->n * (uint64_t)c->rank / (uint64_t)c->size);
    if (MPI_File_open(MPI_COMM_SELF, c->o->out, MPI_MODE_RDONLY, MPI_INFO_NULL, &fh) !=
        MPI_SUCCESS) {
        fprintf(c->err, "mst-bench: rank %d: MPI_File_open of %s failed\n", c->rank, c->o->out);
        return 1;
    }
    MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN);
    L->open_s = MPI_Wtime() - t0;
    for (size_t i = 0; i < c->n && !bad; i++) {
        size_t k = m == M_LOAD_RAW_FILE ? L->file_order[(first + i) % c->n] : i;
        const piece *p = &c->pieces[k];
        uint64_t at = L->file_off[k] + first_byte(p);
        if (contiguous(p)) {
            if (view) {
                bad |= MPI_File_set_view(fh, 0, MPI_BYTE, MPI_BYTE, "native", MPI_INFO_NULL) !=
                       MPI_SUCCESS;
                view = 0;
            }
            bad |= read_range(fh, at, dst_of(L, p), p->nbytes);
        } else {
            /* the strided runs of a column block through a file view, one read */
            MPI_Datatype ft;
            MPI_Status st;
            int got = 0;
            int cb = (int)((uint64_t)p->count[1] * el_of(p));
            MPI_Type_create_hvector((int)p->count[0], cb, (MPI_Aint)row_bytes(p), MPI_BYTE, &ft);
            MPI_Type_commit(&ft);
            bad |= MPI_File_set_view(fh, (MPI_Offset)at, MPI_BYTE, ft, "native", MPI_INFO_NULL) !=
                   MPI_SUCCESS;
            view = 1;
            bad |= p->nbytes > INT_MAX ||
                   MPI_File_read_at(fh, 0, dst_of(L, p), (int)p->nbytes, MPI_BYTE, &st) !=
                       MPI_SUCCESS;
            MPI_Get_count(&st, MPI_BYTE, &got);
            bad |= (uint64_t)got != p->nbytes;
            MPI_Type_free(&ft);
        }
        L->read_bytes += bad ? 0 : p->nbytes;
    }
    if (MPI_File_close(&fh) != MPI_SUCCESS)
        bad = 1;
    if (bad)
        fprintf(c->err, "mst-bench: rank %d: load-raw of %s failed\n", c->rank, c->o->out);
    return bad;
}

/* ---- driver ---- */

/* Rank 0: 1 if the page cache could be dropped (root, writable /proc/sys). */
static int drop_cache(const bench_ctx *c)
{
    int ok = 0;
    if (c->rank == 0 && !c->o->keep_cache) {
        FILE *f;
        sync();
        if ((f = fopen("/proc/sys/vm/drop_caches", "w"))) {
            ok = fputs("3\n", f) >= 0;
            ok &= fclose(f) == 0;
        }
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, c->comm);
    if (ok && c->o->settle > 0) {
        struct timespec ts;
        ts.tv_sec = (time_t)c->o->settle;
        ts.tv_nsec = (long)((c->o->settle - (double)ts.tv_sec) * 1e9);
        nanosleep(&ts, NULL);
    }
    return ok;
}

static int load_run(load_ctx *L, int m, double t0)
{
    switch (m) {
    case M_LOAD:
        return run_load(L, t0);
    case M_LOAD_LOCAL:
        return run_local(L, t0);
    case M_LOAD_SCATTER:
        return run_scatter(L, t0);
    default:
        return run_raw(L, m, t0);
    }
}

static void print_load_row(const load_ctx *L, int m, int run, double s, int dropped,
                           const uint64_t sums[2], const double *all, FILE *out)
{
    static const char *const keys[4] = {"rss_before_mib", "peak_mib", "extra_mib", "cpu_s"};
    const bench_ctx *c = L->c;
    const bench_workload *wl = &c->o->wl;
    const char *io = getenv("OMPI_MCA_io");
    double open_s = 0;
    for (int r = 0; r < c->size; r++)
        open_s = all[5 * r + 4] > open_s ? all[5 * r + 4] : open_s;
    fprintf(out,
            "{\"method\":\"%s\",\"ranks\":%d,\"bytes\":%" PRIu64 ",\"tensors\":%" PRIu64
            ",\"mix\":\"%s\",\"dtype\":\"%s\",\"layout\":\"%s\",\"io\":\"%s\",\"run\":%d,"
            "\"seconds\":%.6f,\"gib_per_s\":%.4f,\"open_s\":%.6f,\"bytes_read\":%" PRIu64
            ",\"bytes_requested\":%" PRIu64 ",\"read_ratio\":%.4f,\"cache_dropped\":%s"
            ",\"settle_s\":%.1f",
            bench_method_names[m], c->size, c->total, wl->tensors, bench_mix_names[wl->mix],
            wl->dtype >= 0 ? mst_dtype_name((mst_dtype)wl->dtype) : "mix",
            bench_layout_names[wl->layout], io ? io : "default", run, s,
            s > 0 ? (double)sums[1] / s / (1024.0 * 1024 * 1024) : 0.0, open_s, sums[0],
            sums[1], sums[1] ? (double)sums[0] / (double)sums[1] : 0.0,
            dropped ? "true" : "false", dropped ? c->o->settle : 0.0);
    for (int k = 0; k < 4; k++) {
        fprintf(out, ",\"%s\":[", keys[k]);
        for (int r = 0; r < c->size; r++)
            fprintf(out, k == 3 ? "%s%.3f" : "%s%.1f", r ? "," : "", all[5 * r + k]);
        fputc(']', out);
    }
    fputs("}\n", out);
    fflush(out);
}

static int one_load(load_ctx *L, int m, int run, FILE *out, int quiet)
{
    const bench_ctx *c = L->c;
    double t0, t1, cpu0, mem[5], *all = NULL;
    uint64_t mine[2], sums[2] = {0, 0};
    int bad, any = 0, dropped;
    memset(L->dst, 0, c->slab_bytes); /* touched: counted in rss_before */
    L->read_bytes = 0;
    L->open_s = 0;
    dropped = drop_cache(c);
    MPI_Barrier(c->comm);
    mem[0] = bench_status_mib("VmRSS");
    bench_reset_peak();
    MPI_Barrier(c->comm);
    cpu0 = bench_cpu_seconds();
    t0 = MPI_Wtime();
    bad = load_run(L, m, t0);
    MPI_Barrier(c->comm);
    t1 = MPI_Wtime();
    mem[1] = bench_status_mib("VmHWM");
    mem[2] = mem[1] - mem[0];
    mem[3] = bench_cpu_seconds() - cpu0;
    mem[4] = L->open_s;
    mine[0] = L->read_bytes;
    mine[1] = c->slab_bytes;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c->comm);
    MPI_Reduce(mine, sums, 2, MPI_UINT64_T, MPI_SUM, 0, c->comm);
    if (c->rank == 0)
        all = malloc((size_t)c->size * 5 * sizeof *all);
    MPI_Gather(mem, 5, MPI_DOUBLE, all, 5, MPI_DOUBLE, 0, c->comm);
    if (!any && c->rank == 0 && all && !quiet)
        print_load_row(L, m, run, t1 - t0, dropped, sums, all, out);
    free(all);
    return any != 0;
}

static const load_ctx *sort_ctx; /* for by_offset (qsort has no context argument) */

static uint64_t piece_at(const load_ctx *L, size_t k)
{
    return L->file_off[k] + first_byte(&L->c->pieces[k]);
}

static int by_offset(const void *a, const void *b)
{
    uint64_t x = piece_at(sort_ctx, *(const size_t *)a);
    uint64_t y = piece_at(sort_ctx, *(const size_t *)b);
    return (x > y) - (x < y);
}

/* Untimed: the pieces sorted by file offset, for load-raw-file (which
 * starts each rank r/n of the way through them, as read_direct does). */
static void order_by_file(load_ctx *L)
{
    for (size_t k = 0; k < L->c->n; k++)
        L->file_order[k] = k;
    sort_ctx = L;
    qsort(L->file_order, L->c->n, sizeof *L->file_order, by_offset);
}

/* Untimed, every rank: the file offset of each of its pieces' tensors. */
static int find_offsets(load_ctx *L)
{
    const bench_ctx *c = L->c;
    mst_reader *r = NULL;
    int rc = mst_reader_open(&r, c->o->out);
    for (size_t k = 0; k < c->n && rc == MST_OK; k++) {
        mst_tensor_info ti;
        rc = mst_reader_find(r, c->pieces[k].t.name, &ti);
        if (rc == MST_OK)
            L->file_off[k] = mst_reader_data_start(r) + ti.begin;
    }
    if (rc != MST_OK)
        fprintf(c->err, "mst-bench: rank %d: %s: %s\n", c->rank, c->o->out,
                r ? mst_reader_error(r) : mst_strerror(rc));
    mst_reader_free(&r);
    if (rc == MST_OK)
        order_by_file(L);
    return rc != MST_OK;
}

int bench_load_main(const bench_ctx *c, FILE *out)
{
    const bench_options *o = c->o;
    load_ctx L;
    int status = 0, any = 0;
    double marks[4];
    memset(&L, 0, sizeof L);
    L.c = c;
    L.dst = malloc(c->slab_bytes ? c->slab_bytes : 1);
    L.file_off = calloc(c->n ? c->n : 1, sizeof *L.file_off);
    L.file_order = calloc(c->n ? c->n : 1, sizeof *L.file_order);
    status = !L.dst || !L.file_off || !L.file_order;
    if (status)
        fprintf(c->err, "mst-bench: rank %d: out of memory\n", c->rank);
    MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, c->comm);
    status = any;
    if (!status && !o->no_save) /* the checkpoint to load, untimed */
        status = bench_run(c, M_MST, MPI_Wtime(), marks);
    MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, c->comm);
    status = any;
    if (!status)
        status = find_offsets(&L);
    MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, c->comm);
    status = any;
    for (int run = 0; run < o->warmup && !status; run++)
        for (int k = 0; k < o->nmethods && !status; k++)
            status = one_load(&L, o->methods[k], -1, out, 1);
    for (int run = 0; run < o->repeat && !status; run++)
        for (int k = 0; k < o->nmethods && !status; k++) {
            int m = o->methods[(k + run) % o->nmethods];
            status = one_load(&L, m, run, out, 0);
            if (!status && o->verify) {
                int bad = memcmp(L.dst, c->slab, c->slab_bytes) != 0;
                MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c->comm);
                status = any;
                if (c->rank == 0)
                    fprintf(status ? c->err : out, "verify %s: %s\n", bench_method_names[m],
                            status ? "FAILED" : "every byte of every rank's boxes matches");
            }
        }
    MPI_Barrier(c->comm);
    if (o->remove && c->rank == 0)
        unlink(o->out);
    free(L.dst);
    free(L.file_off);
    free(L.file_order);
    return status;
}

/* mst-bench's methods, see bench_methods.h. Every method writes the same
 * tensors, the same bytes, from the same ranks:
 *   mst                   the library: one safetensors file, every rank writes its own bytes;
 *   gather                the naive single file: every rank sends its tensors to rank 0, which
 *                         alone saves them all (an mst_writer on MPI_COMM_SELF);
 *   per-rank              every rank saves its own safetensors file FILE.rankR (the layout of
 *                         torch's distributed checkpoint; no shared file);
 *   raw                   every rank one contiguous MPI_File_write_at of all its bytes into one
 *                         shared file, no header, no plan (the MPI-IO ceiling, like IOR);
 *   per-rank+consolidate  per-rank, then rank 0 reads the per-rank files back and saves the
 *                         single file; timed end to end.
 * The baselines that produce safetensors files save them through mst's public
 * API on one process, so the files are the same bytes as mst's; what differs
 * is where the bytes go and who writes them, which is what they measure. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_methods.h"
#include "bench_probes.h"
#include "mst.h"

const char *const bench_method_names[M_COUNT] = {
    "mst",     "gather",     "per-rank",     "raw",     "per-rank+consolidate",
    "mst+crc", "load", "load-local", "load-scatter", "load-raw", "load-raw-file"};

/* the next save through mst with checksums (the methods mst+crc, or mst
 * with --checksums) */
static int save_checksums;

#define CHUNK (64ull << 20)   /* reads of the checks */
#define MAX_CALL (1ull << 30) /* bytes per MPI call (int counts) */

char *bench_rank_path(const char *out, int r)
{
    size_t n = strlen(out) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s.rank%d", out, r);
    return p;
}

/* ---- saves through mst ---- */

/* Declares a save's tensors on its writer. */
typedef void (*declare_fn)(const bench_ctx *c, mst_writer *w, void *arg);

/* Collective over comm. One save of path through an mst_writer on comm, with
 * the bench's fsync setting and "format": "pt"; when marks is not NULL, the
 * probes note its phases. Nonzero on failure (said by comm's rank 0). */
static int save(const bench_ctx *c, MPI_Comm comm, const char *path, MPI_Info info,
                declare_fn declare, void *arg, double t0, double *marks)
{
    mst_writer *w = NULL;
    int rc, me;
    MPI_Comm_rank(comm, &me);
    if (marks)
        bench_probe_start();
    rc = mst_writer_open(&w, comm, path, info);
    if (rc == MST_OK) {
        mst_writer_set_fsync(w, c->o->fsync);
        mst_writer_set_checksums(w, save_checksums);
        mst_writer_add_metadata(w, "format", "pt");
        declare(c, w, arg); /* errors of the declarations come back from the commit */
        if (marks)
            bench_probe_commit();
        rc = mst_writer_commit(w);
    }
    if (marks)
        bench_probe_stop(t0, marks);
    if (rc != MST_OK && me == 0)
        fprintf(c->err, "mst-bench: rank %d: save of %s failed (%s): %s\n", c->rank, path,
                mst_strerror(rc), w ? mst_writer_error(w) : "");
    mst_writer_free(&w);
    return rc != MST_OK;
}

/* mst: every rank declares its own tensors or boxes */
static void declare_pieces(const bench_ctx *c, mst_writer *w, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < c->n; i++) {
        const piece *p = &c->pieces[i];
        if (p->whole)
            mst_writer_add(w, p->t.name, p->t.dtype, p->t.ndim, p->t.shape, p->data);
        else
            mst_writer_add_slice(w, p->t.name, p->t.dtype, p->t.ndim, p->t.shape, p->start,
                                 p->count, p->data);
    }
}

static int run_mst(const bench_ctx *c, double t0, double *marks, int checksums)
{
    MPI_Info info = MPI_INFO_NULL;
    int bad;
    if (c->o->nhints) {
        MPI_Info_create(&info);
        for (int i = 0; i < c->o->nhints; i++) {
            char key[MPI_MAX_INFO_KEY + 1];
            const char *eq = strchr(c->o->hints[i], '=');
            snprintf(key, sizeof key, "%.*s", (int)(eq - c->o->hints[i]), c->o->hints[i]);
            MPI_Info_set(info, key, eq + 1);
        }
    }
    save_checksums = checksums;
    bad = save(c, c->comm, c->o->out, info, declare_pieces, NULL, t0, marks);
    save_checksums = 0;
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    return bad;
}

/* per-rank: each rank's tensors, or boxes (saved as tensors of the box's
 * shape under the tensor's name), in a file of its own */
static void declare_own(const bench_ctx *c, mst_writer *w, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < c->n; i++) {
        const piece *p = &c->pieces[i];
        mst_writer_add(w, p->t.name, p->t.dtype, p->t.ndim, p->whole ? p->t.shape : p->count,
                       p->data);
    }
}

static int run_per_rank(const bench_ctx *c, double t0, double *marks)
{
    char *path = bench_rank_path(c->o->out, c->rank);
    int bad;
    if (!path) {
        fprintf(c->err, "mst-bench: rank %d: out of memory\n", c->rank);
        marks[0] = marks[1] = marks[2] = MPI_Wtime() - t0;
        return 1;
    }
    bad = save(c, MPI_COMM_SELF, path, MPI_INFO_NULL, declare_own, NULL, t0, marks);
    free(path);
    return bad;
}

/* raw: the ranks' slabs back to back in one shared file, plain MPI-IO */
static int run_raw(const bench_ctx *c, double t0, double *marks)
{
    uint64_t off = 0, done = 0;
    MPI_File fh;
    int rc, bad = 0;
    MPI_Exscan(&c->slab_bytes, &off, 1, MPI_UINT64_T, MPI_SUM, c->comm);
    if (c->rank == 0)
        off = 0;
    rc = MPI_File_open(c->comm, c->o->out, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL,
                       &fh);
    if (rc != MPI_SUCCESS) {
        fprintf(c->err, "mst-bench: rank %d: MPI_File_open of %s failed\n", c->rank, c->o->out);
        return 1;
    }
    MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN);
    marks[0] = MPI_Wtime() - t0;
    while (done < c->slab_bytes && !bad) {
        uint64_t n = c->slab_bytes - done < MAX_CALL ? c->slab_bytes - done : MAX_CALL;
        MPI_Status st;
        int got = 0;
        rc = MPI_File_write_at(fh, (MPI_Offset)(off + done), c->slab + done, (int)n, MPI_BYTE,
                               &st);
        MPI_Get_count(&st, MPI_BYTE, &got);
        bad = rc != MPI_SUCCESS || (uint64_t)got != n;
        done += n;
    }
    marks[1] = MPI_Wtime() - t0;
    if (c->o->fsync && MPI_File_sync(fh) != MPI_SUCCESS)
        bad = 1;
    marks[2] = MPI_Wtime() - t0;
    if (MPI_File_close(&fh) != MPI_SUCCESS)
        bad = 1;
    if (bad)
        fprintf(c->err, "mst-bench: rank %d: raw write failed\n", c->rank);
    return bad;
}

/* gather: rank 0 holds every tensor (its own in its slab, the others' in buf,
 * rank by rank in the order they are received) and declares them all */
typedef struct gathered {
    tensor *all;        /* every tensor of the checkpoint */
    unsigned char *buf; /* the other ranks' slabs, back to back */
} gathered;

static void declare_gathered(const bench_ctx *c, mst_writer *w, void *arg)
{
    const gathered *g = arg;
    uint64_t at = 0;
    for (int r = 0; r < c->size; r++)
        for (uint64_t i = (uint64_t)r, mine = 0; i < c->o->wl.tensors; i += (uint64_t)c->size) {
            const tensor *t = &g->all[i];
            const unsigned char *data = r == 0 ? c->slab + mine : g->buf + at;
            mst_writer_add(w, t->name, t->dtype, t->ndim, t->shape, data);
            if (r == 0)
                mine += t->nbytes;
            else
                at += t->nbytes;
        }
}

static int run_gather(const bench_ctx *c, double t0, double *marks)
{
    gathered g = {NULL, NULL};
    uint64_t at = 0;
    int ok = 1, bad;
    if (c->rank != 0) {
        MPI_Bcast(&ok, 1, MPI_INT, 0, c->comm);
        for (uint64_t done = 0; ok && done < c->slab_bytes; done += MAX_CALL) {
            uint64_t n = c->slab_bytes - done < MAX_CALL ? c->slab_bytes - done : MAX_CALL;
            MPI_Send(c->slab + done, (int)n, MPI_BYTE, 0, 7, c->comm);
        }
        marks[0] = marks[1] = marks[2] = MPI_Wtime() - t0;
        return 0;
    }
    g.all = calloc(c->o->wl.tensors, sizeof *g.all);
    g.buf = malloc(c->total - c->slab_bytes + 1);
    ok = g.all && g.buf;
    MPI_Bcast(&ok, 1, MPI_INT, 0, c->comm);
    if (!ok) {
        fprintf(c->err, "mst-bench: rank 0: out of memory to gather %" PRIu64 " bytes\n",
                c->total);
        free(g.all);
        free(g.buf);
        return 1;
    }
    /* rank r's slab: its tensors r, r + size, ... in index order */
    for (int r = 0; r < c->size; r++) {
        uint64_t bytes = 0;
        for (uint64_t i = (uint64_t)r; i < c->o->wl.tensors; i += (uint64_t)c->size) {
            bench_describe(&c->o->wl, i, &g.all[i]);
            bytes += g.all[i].nbytes;
        }
        for (uint64_t done = 0; r && done < bytes; done += MAX_CALL) {
            uint64_t n = bytes - done < MAX_CALL ? bytes - done : MAX_CALL;
            MPI_Recv(g.buf + at + done, (int)n, MPI_BYTE, r, 7, c->comm, MPI_STATUS_IGNORE);
        }
        if (r)
            at += bytes;
    }
    bad = save(c, MPI_COMM_SELF, c->o->out, MPI_INFO_NULL, declare_gathered, &g, t0, marks);
    free(g.all);
    free(g.buf);
    return bad;
}

/* per-rank+consolidate: rank 0 reads the per-rank files back with mst's
 * reader and saves every tensor as a stream, copied through the writer's
 * staging buffer (64 MiB) piece by piece: memory stays flat, every byte is
 * read and written once more, as a consolidation script would. */
typedef struct source {
    mst_reader *r;
    size_t i;
} source;

typedef struct sources {
    mst_reader **rd; /* one per rank's file */
    source *src;     /* one per tensor */
} sources;

static int read_source(void *ctx, uint64_t offset, void *buf, uint64_t len)
{
    source *s = ctx;
    return mst_reader_read_index(s->r, s->i, offset, buf, len);
}

static void declare_sources(const bench_ctx *c, mst_writer *w, void *arg)
{
    sources *s = arg;
    size_t k = 0;
    for (int r = 0; r < c->size; r++)
        for (size_t i = 0; i < mst_reader_count(s->rd[r]); i++, k++) {
            mst_tensor_info info;
            s->src[k].r = s->rd[r];
            s->src[k].i = i;
            if (mst_reader_tensor(s->rd[r], i, &info) == MST_OK)
                mst_writer_add_stream(w, info.name, info.dtype, info.ndim, info.shape,
                                      read_source, &s->src[k]);
        }
}

static int consolidate(const bench_ctx *c)
{
    sources s = {calloc((size_t)c->size, sizeof(mst_reader *)), NULL};
    size_t n = 0;
    int bad = !s.rd;
    for (int r = 0; r < c->size && !bad; r++) {
        char *path = bench_rank_path(c->o->out, r);
        bad = !path || mst_reader_open(&s.rd[r], path) != MST_OK;
        if (bad)
            fprintf(c->err, "mst-bench: consolidate: %s: %s\n", path ? path : "?",
                    s.rd[r] ? mst_reader_error(s.rd[r]) : "out of memory");
        free(path);
        if (!bad)
            n += mst_reader_count(s.rd[r]);
    }
    if (!bad && !(s.src = calloc(n ? n : 1, sizeof *s.src))) {
        fprintf(c->err, "mst-bench: consolidate: out of memory\n");
        bad = 1;
    }
    if (!bad)
        bad = save(c, MPI_COMM_SELF, c->o->out, MPI_INFO_NULL, declare_sources, &s, 0, NULL);
    for (int r = 0; s.rd && r < c->size; r++)
        mst_reader_free(&s.rd[r]);
    free(s.rd);
    free(s.src);
    return bad;
}

static int run_consolidate(const bench_ctx *c, double t0, double *marks)
{
    int bad = run_per_rank(c, t0, marks), any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c->comm);
    marks[3] = MPI_Wtime() - t0;
    if (any)
        return 1;
    if (c->rank == 0)
        bad = consolidate(c);
    return bad;
}

int bench_run(const bench_ctx *c, int m, double t0, double marks[4])
{
    switch (m) {
    case M_MST: return run_mst(c, t0, marks, c->o->checksums);
    case M_MST_CRC: return run_mst(c, t0, marks, 1);
    case M_RAW: return run_raw(c, t0, marks);
    case M_PERRANK: return run_per_rank(c, t0, marks);
    case M_GATHER: return run_gather(c, t0, marks);
    default: return run_consolidate(c, t0, marks);
    }
}

/* ---- checks ---- */

/* Every byte of the tensors i with i % size == rank in the single file (or,
 * whole_of_mine_only, in this rank's file, which holds only those). */
static int verify_file(const bench_ctx *c, const char *path, int whole_of_mine_only)
{
    const bench_workload *wl = &c->o->wl;
    mst_reader *r = NULL;
    unsigned char *got = malloc(CHUNK), *want = malloc(CHUNK);
    int bad = 0;
    if (!got || !want || mst_reader_open(&r, path) != MST_OK) {
        fprintf(c->err, "mst-bench: rank %d: verify %s: %s\n", c->rank, path,
                r ? mst_reader_error(r) : "cannot open");
        bad = 1;
    } else if (!whole_of_mine_only && mst_reader_count(r) != wl->tensors) {
        fprintf(c->err, "mst-bench: rank %d: verify: %zu tensors in the file, expected %" PRIu64
                        "\n", c->rank, mst_reader_count(r), wl->tensors);
        bad = 1;
    }
    for (uint64_t i = (uint64_t)c->rank; !bad && i < wl->tensors; i += (uint64_t)c->size) {
        tensor t;
        mst_tensor_info info;
        uint64_t key;
        bench_describe(wl, i, &t);
        key = bench_name_key(wl->seed, t.name);
        if (mst_reader_find(r, t.name, &info) != MST_OK || info.dtype != t.dtype ||
            info.ndim != t.ndim || info.end - info.begin != t.nbytes) {
            fprintf(c->err, "mst-bench: rank %d: verify: tensor %s missing or wrong in the "
                            "header\n", c->rank, t.name);
            bad = 1;
        }
        for (uint64_t off = 0; off < t.nbytes && !bad; off += CHUNK) {
            uint64_t len = t.nbytes - off < CHUNK ? t.nbytes - off : CHUNK;
            bench_fill(want, off, len, key);
            if (mst_reader_read(r, t.name, off, got, len) != MST_OK ||
                memcmp(got, want, (size_t)len) != 0) {
                fprintf(c->err, "mst-bench: rank %d: verify: tensor %s differs near byte %"
                                PRIu64 "\n", c->rank, t.name, off);
                bad = 1;
            }
        }
    }
    free(got);
    free(want);
    mst_reader_free(&r);
    return bad;
}

/* raw: this rank's range of the shared file is its slab. */
static int verify_raw(const bench_ctx *c)
{
    uint64_t off = 0;
    unsigned char *got = malloc(CHUNK);
    int fd = open(c->o->out, O_RDONLY), bad = !got || fd < 0;
    MPI_Exscan(&c->slab_bytes, &off, 1, MPI_UINT64_T, MPI_SUM, c->comm);
    if (c->rank == 0)
        off = 0;
    for (uint64_t done = 0; !bad && done < c->slab_bytes; done += CHUNK) {
        uint64_t len = c->slab_bytes - done < CHUNK ? c->slab_bytes - done : CHUNK;
        bad = pread(fd, got, (size_t)len, (off_t)(off + done)) != (ssize_t)len ||
              memcmp(got, c->slab + done, (size_t)len) != 0;
    }
    if (bad)
        fprintf(c->err, "mst-bench: rank %d: verify: raw bytes differ\n", c->rank);
    if (fd >= 0)
        close(fd);
    free(got);
    return bad;
}

int bench_verify(const bench_ctx *c, int m)
{
    if (m == M_RAW)
        return verify_raw(c);
    if (m == M_PERRANK) {
        char *path;
        int bad;
        if (c->o->wl.layout != L_WHOLE)
            return 0; /* boxes under their tensors' names: nothing to compare to */
        path = bench_rank_path(c->o->out, c->rank);
        bad = !path || verify_file(c, path, 1);
        free(path);
        return bad;
    }
    return verify_file(c, c->o->out, 0);
}

void bench_remove_files(const bench_ctx *c)
{
    char *p = bench_rank_path(c->o->out, c->rank);
    if (c->rank == 0)
        unlink(c->o->out);
    if (p)
        unlink(p);
    free(p);
}

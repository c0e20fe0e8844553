/*
 * The split-phase save (mst_writer_commit_begin / _test / _end): the steps
 * of mst_save_file cut in two, with this rank's writes and the data's sync
 * on a thread of the library in between.
 *
 *   begin (collective, on the caller's thread):
 *     options agreed, what split phase refuses agreed -> exchange -> plan
 *     -> agree -> temporary file (rank 0 creates it with MPI_File_open and
 *     the hints, then every rank opens its own handle of it: see the data
 *     path) -> the snapshot copied (if on) -> agree -> the thread started
 *   thread: this rank's pieces in file order (rank 0: the header first),
 *     then the sync of its handle
 *   end (collective, on the caller's thread):
 *     join -> close -> agree -> commit (rank 0: size check, rename, directory
 *     fsync; the file replaced is let go on a thread of its own) -> agree
 *
 * The data path, chosen by each rank at begin (hint mst_split_io):
 *   mpiio (default at MPI_THREAD_MULTIPLE): the rank's own handle (begin's
 *     mst_io_open on MPI_COMM_SELF, the save's hints), MPI_File_write_at and
 *     MPI_File_sync on the thread, mst_io_close by end or mst_writer_free
 *     after the join: opened and closed on the caller's thread;
 *   posix (below MPI_THREAD_MULTIPLE, or asked for): a POSIX descriptor,
 *     pwrite and fsync; the thread makes no MPI call. Whole pages go through
 *     a second descriptor opened with O_DIRECT (hint mst_split_direct, on by
 *     default), from an aligned buffer of the thread's: no page-cache pages
 *     to allocate and fill, which cost the caller's compute most of a core
 *     on the virtual machine measured.
 *
 * A rank's pieces are its whole tensors, the replicas it was chosen for and
 * its boxes that are one contiguous byte range of the file: everything that
 * needs no communication. What does (strided boxes: redistribution or
 * collective writes; checksums: a gather before the header), streams (their
 * callbacks would run on the library's thread) and multi-file sets are
 * refused by begin, on every rank, before anything is created.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "mst.h"
#include "mst_async.h"
#include "mst_box.h"
#include "mst_buf.h"
#include "mst_commit.h"
#include "mst_err.h"
#include "mst_exchange.h"
#include "mst_io.h"
#include "mst_plan.h"
#include "mst_snapshot.h"
#include "mst_temp.h"
#include "mst_writer_impl.h"

/* Bytes per pwrite call, so that a free between begin and end stops the
 * thread within one such write. */
#define ASYNC_CHUNK ((uint64_t)64 << 20)

/* Direct writes (posix path, hint mst_split_direct): file offsets and
 * lengths in whole pages, from a page-aligned buffer of the thread's own
 * (the caller's bytes copied in, DIRECT_BOUNCE at a time). */
#define DIRECT_ALIGN ((uint64_t)4096)
#define DIRECT_BOUNCE ((size_t)8 << 20)

typedef struct piece {
    uint64_t offset, len;
    const unsigned char *data;
    size_t index; /* the declaration (SIZE_MAX: the header) */
} piece;

typedef struct mst_async {
    pthread_t thread;
    int started;       /* the thread runs (else end does its work) */
    int fd;            /* posix: this rank's descriptor of the temporary file */
    int dfd;           /* posix, direct: another one, O_DIRECT (else -1) */
    unsigned char *bounce; /* the thread's aligned buffer for dfd (NULL: buffered only) */
    MPI_File fh;       /* mpiio: this rank's handle of it (MPI_COMM_SELF) */
    int mpiio;         /* the data path: 1 mpiio, 0 posix */
    int lock_fd;       /* rank 0: the ownership lock (mst_temp.h) */
    char *tmp;         /* the temporary file */
    char *target;      /* rank 0: the file it replaces */
    uint64_t expected; /* rank 0: the file's size */
    int fsync;
    int rank;
    piece *pieces;
    size_t npieces;
    unsigned char *header;   /* rank 0: length and header */
    unsigned char *snapshot; /* the copy of this rank's bytes, or NULL */
    mst_snapmem snap;        /* its memory (mst_snapshot.h) */
    int keep_cache;          /* at the end, the mapping goes to the cache */
    const local_tensor *tensors;
    atomic_int done;   /* the thread finished (release; err readable after join) */
    atomic_int cancel; /* mst_writer_free: stop between writes */
    mst_err err;       /* the thread's outcome */
} mst_async;

static int cmp_piece(const void *a, const void *b)
{
    const piece *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

static void name_piece(char *what, size_t cap, const mst_async *a, const piece *p)
{
    char q[MST_QUOTE_MAX];
    const local_tensor *t;
    if (p->index == SIZE_MAX) {
        snprintf(what, cap, "the header");
        return;
    }
    t = &a->tensors[p->index];
    snprintf(what, cap, "tensor %s", mst_quote(q, sizeof q, t->t.name, t->t.name_len,
                                                MST_QUOTE_LIMIT));
}

/* This rank's writes and, with fsync on, the sync of its handle: MPI-IO
 * (mpiio: mst_io_write checks every count) or plain POSIX (posix: no MPI).
 * Sets a->err; stops early when cancelled. */
static void run_writes(mst_async *a)
{
    char what[MST_QUOTE_MAX + 32], why[MPI_MAX_ERROR_STRING + 64];
    int rc;
    for (size_t i = 0; i < a->npieces && a->err.code == MST_OK; i++) {
        const piece *p = &a->pieces[i];
        uint64_t done = 0;
        name_piece(what, sizeof what, a, p);
        while (done < p->len && a->err.code == MST_OK) {
            uint64_t n = p->len - done < ASYNC_CHUNK ? p->len - done : ASYNC_CHUNK;
            ssize_t got;
            if (atomic_load_explicit(&a->cancel, memory_order_relaxed))
                goto out;
            if (a->mpiio) {
                mst_io_write(a->fh, a->tmp, p->offset + done, p->data + done, n, a->rank,
                             what, &a->err);
                done += n;
                continue;
            }
            {
                uint64_t off = p->offset + done;
                const unsigned char *src = p->data + done;
                int fd = a->fd;
                if (a->bounce && off % DIRECT_ALIGN == 0 && n >= DIRECT_ALIGN) {
                    n = n < DIRECT_BOUNCE ? n - n % DIRECT_ALIGN : DIRECT_BOUNCE;
                    memcpy(a->bounce, src, (size_t)n);
                    src = a->bounce;
                    fd = a->dfd;
                } else if (a->bounce && off % DIRECT_ALIGN != 0 &&
                           n > DIRECT_ALIGN - off % DIRECT_ALIGN) {
                    n = DIRECT_ALIGN - off % DIRECT_ALIGN; /* buffered up to a page */
                }
                got = pwrite(fd, src, (size_t)n, (off_t)off);
                if (got < 0 && errno == EINVAL && fd == a->dfd) {
                    free(a->bounce); /* no direct I/O here: buffered from now on */
                    a->bounce = NULL;
                    continue;
                }
            }
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                int e = got < 0 ? errno : ENOSPC;
                mst_err_set(&a->err, MST_ERR_IO,
                            "rank %d: writing %s (%llu bytes at file offset %llu) failed at "
                            "file offset %llu: %s%s",
                            a->rank, what, (unsigned long long)p->len,
                            (unsigned long long)p->offset,
                            (unsigned long long)(p->offset + done), strerror(e),
                            got == 0 ? " (nothing written)" : "");
                break;
            }
            done += (uint64_t)got; /* a short count: the rest is written next */
        }
    }
    if (a->err.code != MST_OK || !a->fsync ||
        atomic_load_explicit(&a->cancel, memory_order_relaxed))
        goto out;
    if (!a->mpiio && fsync(a->fd) != 0)
        mst_err_set(&a->err, MST_ERR_IO, "rank %d: fsync of the temporary file failed: %s",
                    a->rank, strerror(errno));
    if (a->mpiio && (rc = MPI_File_sync(a->fh)) != MPI_SUCCESS) {
        mst_mpi_errstr(rc, why, sizeof why);
        mst_err_set(&a->err, MST_ERR_IO,
                    "rank %d: MPI_File_sync of the temporary file failed: %s", a->rank, why);
    }
out:
    atomic_store_explicit(&a->done, 1, memory_order_release);
}

static void *thread_main(void *arg)
{
    mst_async *a = arg;
    void *b = NULL;
    if (a->dfd >= 0 && posix_memalign(&b, DIRECT_ALIGN, DIRECT_BOUNCE) == 0)
        a->bounce = b;
    run_writes(arg);
    free(a->bounce);
    a->bounce = NULL;
    return NULL;
}

static void async_free(mst_async *a)
{
    if (!a)
        return;
    if (a->fd >= 0)
        close(a->fd);
    if (a->dfd >= 0)
        close(a->dfd);
    mst_io_close(&a->fh);
    mst_temp_release(&a->lock_fd);
    free(a->tmp);
    free(a->target);
    free(a->pieces);
    free(a->header);
    mst_snapmem_put(&a->snap, a->keep_cache);
    free(a);
}

/* Local. What split phase refuses in this rank's declarations and options. */
/* The byte layout of a slice's box in its tensor (contiguous or not, first
 * byte). */
static int slice_layout(const mst_writer *w, const local_tensor *t, mst_box_layout *lay,
                        mst_err *err)
{
    int ndim = (int)t->t.ndim;
    uint64_t *gb = malloc((3 * (size_t)ndim + 1) * sizeof *gb);
    if (!gb)
        return mst_err_set(err, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
    mst_box_bytes(ndim, t->t.shape, box_start(t), box_count(t), mst_dtype_bits(t->t.dtype), gb,
                  gb + ndim, gb + 2 * ndim);
    mst_box_layout_of(ndim, gb, gb + ndim, gb + 2 * ndim, lay);
    free(gb);
    return MST_OK;
}

static int check_supported(const mst_writer *w, mst_err *err)
{
    if (w->max_shard > 0)
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "mst_writer_commit_begin: a multi-file save "
                           "(mst_writer_set_max_shard_size) is not split-phase; use "
                           "mst_writer_commit");
    if (w->checksums)
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "mst_writer_commit_begin: checksums (mst_writer_set_checksums) are "
                           "not split-phase; use mst_writer_commit");
    for (size_t i = 0; i < w->ntensors; i++) {
        const local_tensor *t = &w->tensors[i];
        char q[MST_QUOTE_MAX];
        if (t->nbytes == 0)
            continue;
        if (t->fill)
            return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                               "mst_writer_commit_begin: tensor %s on rank %d is streamed; "
                               "streamed tensors are not split-phase (use mst_writer_commit)",
                               mst_quote(q, sizeof q, t->t.name, t->t.name_len, MST_QUOTE_LIMIT),
                               w->rank);
        if (t->kind == MST_DECL_SLICE) {
            int ndim = (int)t->t.ndim;
            mst_box_layout lay;
            char box[160];
            if (slice_layout(w, t, &lay, err))
                return err->code;
            if (!lay.contiguous)
                return mst_err_set(
                    err, MST_ERR_INVALID_ARGUMENT,
                    "mst_writer_commit_begin: tensor %s on rank %d: box %s is strided in the "
                    "file (it needs communication during the writes); strided boxes are not "
                    "split-phase (use mst_writer_commit)",
                    mst_quote(q, sizeof q, t->t.name, t->t.name_len, MST_QUOTE_LIMIT), w->rank,
                    mst_box_format(box, sizeof box, ndim, box_start(t), box_count(t)));
        }
    }
    return MST_OK;
}

/* Local. The pieces of this rank from its offsets (absolute; MST_PLAN_SKIP
 * nowhere), in file order; with the snapshot, their bytes copied. */
static int build_pieces(mst_writer *w, mst_async *a, const uint64_t *offsets,
                        const mst_plan *plan, uint64_t limit, mst_err *err)
{
    size_t n = 0;
    uint64_t bytes = 0;
    a->pieces = malloc((w->ntensors + 1) * sizeof *a->pieces);
    if (!a->pieces)
        return mst_err_set(err, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
    for (size_t i = 0; i < w->ntensors; i++) {
        const local_tensor *t = &w->tensors[i];
        piece *p;
        if (offsets[i] == MST_PLAN_SKIP || t->nbytes == 0)
            continue;
        p = &a->pieces[n++];
        p->offset = offsets[i];
        if (t->kind == MST_DECL_SLICE) {
            mst_box_layout lay;
            if (slice_layout(w, t, &lay, err))
                return err->code;
            p->offset += lay.first;
        }
        p->len = t->nbytes;
        p->data = t->data;
        p->index = i;
        bytes += t->nbytes;
    }
    if (w->rank == 0) {
        uint64_t hl = plan->header.len;
        piece *p = &a->pieces[n++];
        a->header = malloc(8 + hl);
        if (!a->header)
            return mst_err_set(err, MST_ERR_NO_MEMORY, "rank 0: out of memory");
        for (int i = 0; i < 8; i++)
            a->header[i] = (unsigned char)(hl >> (8 * i));
        memcpy(a->header + 8, plan->header.data, hl);
        p->offset = 0;
        p->len = 8 + hl;
        p->data = a->header;
        p->index = SIZE_MAX;
    }
    a->npieces = n;
    qsort(a->pieces, n, sizeof *a->pieces, cmp_piece);
    if (!w->snapshot)
        return MST_OK;
    if (limit && bytes > limit)
        return mst_err_set(err, MST_ERR_NO_MEMORY,
                           "rank %d: the snapshot needs %llu bytes, more than the hint "
                           "mst_snapshot_limit allows (%llu)",
                           w->rank, (unsigned long long)bytes, (unsigned long long)limit);
    if (mst_snapmem_get(&a->snap, bytes, a->keep_cache) != 0)
        return mst_err_set(err, MST_ERR_NO_MEMORY,
                           "rank %d: out of memory for a snapshot of %llu bytes", w->rank,
                           (unsigned long long)bytes);
    a->snapshot = a->snap.data;
    {
        unsigned char *at = a->snapshot;
        for (size_t i = 0; i < n; i++) {
            piece *p = &a->pieces[i];
            if (p->index == SIZE_MAX)
                continue;
            memcpy(at, p->data, p->len);
            p->data = at;
            at += p->len;
        }
    }
    /* neighbours in the file are neighbours in the snapshot: one write */
    {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            piece *p = &a->pieces[i];
            if (k > 0 && a->pieces[k - 1].index != SIZE_MAX && p->index != SIZE_MAX &&
                a->pieces[k - 1].offset + a->pieces[k - 1].len == p->offset &&
                a->pieces[k - 1].data + a->pieces[k - 1].len == p->data) {
                a->pieces[k - 1].len += p->len; /* named by its first tensor */
                continue;
            }
            a->pieces[k++] = *p;
        }
        a->npieces = k;
    }
    return MST_OK;
}

/* Collective. On an agreed failure after the temporary file exists: every
 * rank closes its descriptor, then rank 0 removes the file. */
static void abandon_agreed(mst_writer *w, mst_async *a)
{
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    if (a->dfd >= 0) {
        close(a->dfd);
        a->dfd = -1;
    }
    mst_io_close(&a->fh);
    MPI_Barrier(w->comm);
    if (w->rank == 0 && a->tmp)
        mst_commit_discard(a->tmp);
}

static int begin_save(mst_writer *w)
{
    MPI_Comm comm = w->comm;
    mst_err local = w->first, *res = &w->last;
    mst_buf blob;
    mst_gathered g;
    mst_plan plan;
    mst_own_decls own;
    uint64_t *offsets = NULL, *rtab = NULL, expected = 0, limit = 0;
    size_t rlen = 0;
    MPI_File fh = MPI_FILE_NULL;
    mst_async *a = calloc(1, sizeof *a);
    int snap[2], snap_all[2], direct = 0;

    memset(&g, 0, sizeof g);
    memset(&plan, 0, sizeof plan);
    mst_buf_init(&blob, 0);
    if (a) {
        a->fd = -1;
        a->dfd = -1;
        a->fh = MPI_FILE_NULL;
        a->lock_fd = -1;
        a->rank = w->rank;
        a->fsync = w->fsync;
        a->tensors = w->tensors;
        mst_err_clear(&a->err);
    }

    /* 1. Options, the snapshot setting, what split phase refuses. */
    mst_writer_agree_options(w, &local);
    snap[0] = w->snapshot;
    snap[1] = -w->snapshot;
    if (MPI_Allreduce(snap, snap_all, 2, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS) {
        if (local.code == MST_OK)
            mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Allreduce of the options failed",
                        w->rank);
    } else if (snap_all[0] != -snap_all[1] && local.code == MST_OK) {
        mst_err_set(&local, MST_ERR_INVALID_ARGUMENT,
                    "ranks disagree on mst_writer_set_snapshot (rank %d has it %s)", w->rank,
                    w->snapshot ? "on" : "off");
    }
    if (local.code == MST_OK && !a)
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
    if (local.code == MST_OK && check_supported(w, &local) == MST_OK &&
        mst_async_choose_path(w, &a->mpiio, &local) == MST_OK &&
        mst_async_split_direct(w, &direct, &local) == MST_OK)
        mst_async_snapshot_limit(w, &limit, &a->keep_cache, &local);

    /* 2. Exchange, as mst_save_file. */
    if (local.code == MST_OK) {
        mst_save_pack(w, w->tensors, w->ntensors, &blob, w->meta, w->nmeta);
        offsets = malloc((w->ntensors ? w->ntensors : 1) * sizeof *offsets);
        if (!mst_buf_ok(&blob) || !offsets)
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory packing metadata",
                        w->rank);
    }
    if (mst_agree(comm, &local, res))
        goto fail;
    own = mst_save_own_decls(w->tensors, w->ntensors, w->meta, w->nmeta);
    if (mst_gather_decls(comm, &blob, &own, &g, res))
        goto fail;
    mst_buf_free(&blob);

    /* 3. Plan (rank 0); no strided box, so no redistribution table. */
    if (w->rank == 0 &&
        mst_plan_build_crc(&plan, g.decls, g.ndecls, g.meta, g.nmeta, w->size, 0, &local) ==
            MST_OK &&
        (a->target = mst_commit_resolve(w->path, &local)) != NULL &&
        mst_commit_check_target(a->target, &local) == MST_OK &&
        mst_save_finish_plan(w, g.decls, g.ndecls, &plan, &expected, &rtab, &rlen, &local) ==
            MST_OK)
        mst_gathered_drop_decls(&g);
    free(rtab);
    rtab = NULL;

    /* 4. Rank 0 creates the temporary file (hints, lock), as mst_save_write. */
    if (w->rank == 0 && local.code == MST_OK &&
        mst_temp_create(a->target, w->hints, &a->tmp, &a->lock_fd, &fh, &local) == MST_OK)
        mst_io_close(&fh); /* every rank opens its own handle below */
    if (mst_agree(comm, &local, res))
        goto fail;
    if (mst_bcast_string(comm, &a->tmp, res))
        goto fail_tmp;
    if (mst_scatter_u64(comm, &g, plan.begin, offsets, w->ntensors, res))
        goto fail_tmp;
    mst_gathered_free(&g);
    a->expected = expected;

    /* 5. Every rank: its handle, its pieces, the snapshot. */
    if (a->mpiio) {
        if (mst_io_open(a->tmp, 0, w->hints, w->rank, &a->fh, NULL, &local) == MST_OK)
            build_pieces(w, a, offsets, &plan, limit, &local);
    } else if ((a->fd = open(a->tmp, O_WRONLY | O_CLOEXEC)) < 0) {
        char q[512];
        mst_quote(q, sizeof q, a->tmp, strlen(a->tmp), 400);
        mst_err_set(&local, MST_ERR_IO, "rank %d: opening the temporary file %s failed: %s",
                    w->rank, q, strerror(errno));
    } else {
        if (direct) /* where the file system refuses it, buffered writes */
            a->dfd = open(a->tmp, O_WRONLY | O_CLOEXEC | O_DIRECT);
        build_pieces(w, a, offsets, &plan, limit, &local);
    }
    free(offsets);
    offsets = NULL;
    mst_plan_free(&plan);
    if (mst_agree(comm, &local, res))
        goto fail_tmp;

    /* 6. The writes start, on a thread that takes no signal (the
     * application's handlers run on its own threads); without a thread, end
     * does them. */
    {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        a->started = pthread_create(&a->thread, NULL, thread_main, a) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    w->async = a;
    return MST_OK;

fail_tmp:
    abandon_agreed(w, a);
fail:
    if (w->rank == 0 && a && a->tmp)
        mst_commit_discard(a->tmp);
    free(offsets);
    free(rtab);
    mst_buf_free(&blob);
    mst_gathered_free(&g);
    mst_plan_free(&plan);
    async_free(a);
    return res->code;
}


int mst_writer_set_snapshot(mst_writer *w, int on)
{
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE, "rank %d: the writer is not open", w->rank);
    w->snapshot = on ? 1 : 0;
    return MST_OK;
}

int mst_writer_commit_begin(mst_writer *w)
{
    int rc;
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE,
                           "rank %d: the writer was %s; a writer commits once", w->rank,
                           w->state == WRITER_FAILED_OPEN ? "not opened" : "already committed");
    rc = begin_save(w);
    w->state = rc == MST_OK ? WRITER_BEGUN : WRITER_BEGIN_FAILED;
    return rc;
}

int mst_writer_commit_test(mst_writer *w, int *done)
{
    if (!w || !done)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state == WRITER_BEGIN_FAILED) {
        *done = 1;
        return MST_OK;
    }
    if (w->state != WRITER_BEGUN || !w->async)
        return mst_err_set(&w->last, MST_ERR_STATE,
                           "rank %d: mst_writer_commit_test without mst_writer_commit_begin",
                           w->rank);
    *done = !w->async->started ||
            atomic_load_explicit(&w->async->done, memory_order_acquire) != 0;
    return MST_OK;
}

int mst_writer_commit_end(mst_writer *w)
{
    mst_async *a;
    mst_err local;
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state == WRITER_BEGIN_FAILED) { /* begin's agreed error, again */
        w->state = WRITER_DONE;
        return w->last.code;
    }
    if (w->state != WRITER_BEGUN || !w->async)
        return mst_err_set(&w->last, MST_ERR_STATE,
                           "rank %d: mst_writer_commit_end without mst_writer_commit_begin",
                           w->rank);
    a = w->async;
    w->async = NULL;
    w->state = WRITER_DONE;

    /* 7. This rank's writes and sync finished, its descriptor closed. */
    if (a->started)
        pthread_join(a->thread, NULL);
    else
        run_writes(a);
    local = a->err;
    if (a->mpiio) {
        char why[MPI_MAX_ERROR_STRING + 64];
        int rc = mst_io_close(&a->fh);
        if (rc != MPI_SUCCESS && local.code == MST_OK) {
            mst_mpi_errstr(rc, why, sizeof why);
            mst_err_set(&local, MST_ERR_IO,
                        "rank %d: MPI_File_close of the temporary file failed: %s", w->rank,
                        why);
        }
    } else {
        if (close(a->fd) != 0 && local.code == MST_OK)
            mst_err_set(&local, MST_ERR_IO, "rank %d: closing the temporary file failed: %s",
                        w->rank, strerror(errno));
        if (a->dfd >= 0 && close(a->dfd) != 0 && local.code == MST_OK)
            mst_err_set(&local, MST_ERR_IO,
                        "rank %d: closing the temporary file (direct) failed: %s", w->rank,
                        strerror(errno));
    }
    a->fd = -1;
    a->dfd = -1;
    if (mst_agree(w->comm, &local, &w->last)) {
        abandon_agreed(w, a);
        async_free(a);
        return w->last.code;
    }

    /* 8. Commit (rank 0), as mst_save_write; the file replaced is let go
     * off the caller's thread (mst_commit_rename). */
    if (w->rank == 0 &&
        mst_commit_rename(a->tmp, a->target, a->expected, w->fsync, &local) != MST_OK)
        mst_commit_discard(a->tmp);
    mst_agree(w->comm, &local, &w->last);
    async_free(a); /* the lock after the rename or the removal */
    return w->last.code;
}

void mst_async_abandon(mst_writer *w)
{
    mst_async *a = w->async;
    if (!a)
        return;
    w->async = NULL;
    atomic_store_explicit(&a->cancel, 1, memory_order_relaxed);
    if (a->started)
        pthread_join(a->thread, NULL);
    if (a->fd >= 0) {
        close(a->fd);
        a->fd = -1;
    }
    if (a->dfd >= 0) {
        close(a->dfd);
        a->dfd = -1;
    }
    mst_io_close(&a->fh); /* after the join: the thread no longer uses it */
    if (w->rank == 0)
        mst_commit_discard(a->tmp);
    async_free(a);
}

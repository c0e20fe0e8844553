/* The save: declare (local) -> exchange -> plan (rank 0) -> agree ->
 * write -> sync, close -> rename. Every step that can fail on one rank is
 * followed by an agreement, so all ranks take the same path and return the
 * same code and message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_buf.h"
#include "mst_err.h"
#include "mst_exchange.h"
#include "mst_header.h"
#include "mst_io.h"
#include "mst_plan.h"

enum writer_state { WRITER_OPEN, WRITER_DONE, WRITER_FAILED_OPEN };

/* One tensor this rank declared. */
typedef struct local_tensor {
    mst_tensor_desc t; /* name and shape point into storage */
    const void *data;  /* the caller's buffer, not copied */
    uint64_t nbytes;
    void *storage;
} local_tensor;

struct mst_writer {
    MPI_Comm comm;
    int rank, size;
    char *path;
    MPI_Info hints;
    int fsync;
    enum writer_state state;

    local_tensor *tensors;
    size_t ntensors, tcap;
    mst_kv *meta; /* key and value copied */
    size_t nmeta, mcap;

    mst_err first; /* the first error of a local call, reported by the commit */
    mst_err last;  /* what mst_writer_error shows */
};

static int keep_first(mst_writer *w, const mst_err *e)
{
    if (w->first.code == MST_OK)
        w->first = *e;
    w->last = *e;
    return e->code;
}

static int check_mpi_ready(mst_err *err)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin)
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "MPI is %s", fin ? "already finalized" : "not initialized");
    return MST_OK;
}

int mst_writer_open(mst_writer **out, MPI_Comm comm, const char *path, MPI_Info hints)
{
    mst_writer *w;
    mst_err local, agreed;
    MPI_Comm dup = MPI_COMM_NULL;
    char *root_path = NULL;
    int rc;

    if (!out)
        return MST_ERR_INVALID_ARGUMENT;
    *out = NULL;
    mst_err_clear(&local);
    if (check_mpi_ready(&local) || comm == MPI_COMM_NULL)
        return MST_ERR_INVALID_ARGUMENT;

    /* Until the agreement below, a local failure must not skip a collective. */
    w = calloc(1, sizeof *w);
    rc = MPI_Comm_dup(comm, &dup);
    if (rc != MPI_SUCCESS) {
        if (w) {
            char text[MPI_MAX_ERROR_STRING + 32];
            mst_mpi_errstr(rc, text, sizeof text);
            mst_err_set(&w->last, MST_ERR_MPI, "MPI_Comm_dup failed: %s", text);
            w->state = WRITER_FAILED_OPEN;
            w->comm = MPI_COMM_NULL;
            w->hints = MPI_INFO_NULL;
            *out = w;
        }
        return MST_ERR_MPI;
    }
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    if (w) {
        w->comm = dup;
        w->hints = MPI_INFO_NULL;
        w->fsync = 1;
        MPI_Comm_rank(dup, &w->rank);
        MPI_Comm_size(dup, &w->size);
    }

    if (!w)
        mst_err_set(&local, MST_ERR_NO_MEMORY, "out of memory creating a writer");
    else if (!path || !*path)
        mst_err_set(&local, MST_ERR_INVALID_ARGUMENT, "rank %d: %s target path", w->rank,
                    path ? "empty" : "NULL");
    else if (!(w->path = strdup(path)))
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
    else if (hints != MPI_INFO_NULL && MPI_Info_dup(hints, &w->hints) != MPI_SUCCESS)
        mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Info_dup of the hints failed", w->rank);

    /* Everyone must name the same file: compare with rank 0's path. */
    if (mst_agree(dup, &local, &agreed) == MST_OK) {
        root_path = w->rank == 0 ? w->path : NULL;
        if (mst_bcast_string(dup, &root_path, &agreed) == MST_OK) {
            if (strcmp(root_path, w->path) != 0) {
                char a[400], b[400];
                mst_err_set(&local, MST_ERR_INVALID_ARGUMENT,
                            "rank %d was given path %s but rank 0 %s", w->rank,
                            mst_quote(a, sizeof a, w->path, strlen(w->path), 300),
                            mst_quote(b, sizeof b, root_path, strlen(root_path), 300));
            }
            mst_agree(dup, &local, &agreed);
        }
        if (w->rank != 0)
            free(root_path);
    }
    if (agreed.code != MST_OK) {
        if (!w) {
            MPI_Comm_free(&dup);
            return agreed.code;
        }
        w->last = agreed;
        w->state = WRITER_FAILED_OPEN;
        *out = w;
        return agreed.code;
    }
    w->state = WRITER_OPEN;
    *out = w;
    return MST_OK;
}

int mst_writer_set_fsync(mst_writer *w, int enabled)
{
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE, "rank %d: the writer is not open", w->rank);
    w->fsync = enabled ? 1 : 0;
    return MST_OK;
}

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
    size_t c;
    void *q;
    if (n < *cap)
        return 0;
    c = *cap ? *cap * 2 : 16;
    q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

int mst_writer_add(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                   const int64_t *shape, const void *data)
{
    mst_err e;
    uint64_t nbytes = 0;
    size_t len;
    char *storage;
    local_tensor *t;
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE,
                           "rank %d: tensors can only be added to an open writer before its commit",
                           w->rank);
    mst_err_clear(&e);
    if (!name) {
        mst_err_set(&e, MST_ERR_INVALID_ARGUMENT, "rank %d: a tensor was added with a NULL name",
                    w->rank);
        return keep_first(w, &e);
    }
    len = strlen(name);
    if (mst_check_tensor(name, len, (int)dtype, ndim, shape, w->rank, &nbytes, &e))
        return keep_first(w, &e);
    if (nbytes > 0 && !data) {
        char q[MST_QUOTE_MAX];
        mst_err_set(&e, MST_ERR_NULL_DATA, "tensor %s on rank %d: data is NULL for %llu bytes",
                    mst_quote(q, sizeof q, name, len, MST_QUOTE_LIMIT), w->rank,
                    (unsigned long long)nbytes);
        return keep_first(w, &e);
    }
    if (len > MST_MAX_HEADER_SIZE) {
        mst_err_set(&e, MST_ERR_HEADER_TOO_LARGE,
                    "rank %d: a tensor name of %zu bytes cannot fit in a header", w->rank, len);
        return keep_first(w, &e);
    }
    /* shape first, so it is aligned; the name follows */
    storage = malloc((size_t)ndim * sizeof(int64_t) + len + 1);
    if (!storage || grow((void **)&w->tensors, &w->tcap, w->ntensors, sizeof *w->tensors)) {
        free(storage);
        mst_err_set(&e, MST_ERR_NO_MEMORY, "rank %d: out of memory adding a tensor", w->rank);
        return keep_first(w, &e);
    }
    t = &w->tensors[w->ntensors++];
    memcpy(storage, shape, (size_t)ndim * sizeof(int64_t));
    memcpy(storage + (size_t)ndim * sizeof(int64_t), name, len + 1);
    t->storage = storage;
    t->t.shape = (const int64_t *)storage;
    t->t.name = storage + (size_t)ndim * sizeof(int64_t);
    t->t.name_len = (uint32_t)len;
    t->t.dtype = (uint8_t)dtype;
    t->t.ndim = (uint32_t)ndim;
    t->data = data;
    t->nbytes = nbytes;
    return MST_OK;
}

int mst_writer_add_metadata(mst_writer *w, const char *key, const char *value)
{
    mst_err e;
    size_t klen, vlen;
    char *copy;
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE,
                           "rank %d: metadata can only be added to an open writer before its "
                           "commit",
                           w->rank);
    mst_err_clear(&e);
    if (!key || !value) {
        mst_err_set(&e, MST_ERR_INVALID_ARGUMENT, "rank %d: metadata with a NULL %s", w->rank,
                    key ? "value" : "key");
        return keep_first(w, &e);
    }
    klen = strlen(key);
    vlen = strlen(value);
    if (mst_check_metadata(key, klen, value, vlen, w->rank, &e))
        return keep_first(w, &e);
    if (klen > MST_MAX_HEADER_SIZE || vlen > MST_MAX_HEADER_SIZE) {
        mst_err_set(&e, MST_ERR_HEADER_TOO_LARGE,
                    "rank %d: a metadata entry of %zu bytes cannot fit in a header", w->rank,
                    klen + vlen);
        return keep_first(w, &e);
    }
    copy = malloc(klen + vlen + 2);
    if (!copy || grow((void **)&w->meta, &w->mcap, w->nmeta, sizeof *w->meta)) {
        free(copy);
        mst_err_set(&e, MST_ERR_NO_MEMORY, "rank %d: out of memory adding metadata", w->rank);
        return keep_first(w, &e);
    }
    memcpy(copy, key, klen + 1);
    memcpy(copy + klen + 1, value, vlen + 1);
    w->meta[w->nmeta].key = copy;
    w->meta[w->nmeta].key_len = (uint32_t)klen;
    w->meta[w->nmeta].value = copy + klen + 1;
    w->meta[w->nmeta].value_len = (uint32_t)vlen;
    w->nmeta++;
    return MST_OK;
}

typedef struct write_item {
    uint64_t offset;
    size_t index;
} write_item;

static int cmp_item(const void *a, const void *b)
{
    const write_item *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* This rank's part of the write: the header on rank 0, then every tensor in
 * file order, straight from the caller's buffers. */
static int write_own(mst_writer *w, MPI_File fh, const char *tmp, const mst_plan *plan,
                     const uint64_t *offsets, mst_err *err)
{
    write_item *items;
    if (w->rank == 0) {
        unsigned char len8[8];
        uint64_t n = plan->header.len;
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)(n >> (8 * i));
        if (mst_io_write(fh, tmp, 0, len8, 8, 0, "the header length", err) ||
            mst_io_write(fh, tmp, 8, plan->header.data, n, 0, "the header", err))
            return err->code;
    }
    items = malloc((w->ntensors ? w->ntensors : 1) * sizeof *items);
    if (!items)
        return mst_err_set(err, MST_ERR_NO_MEMORY, "rank %d: out of memory ordering writes",
                           w->rank);
    for (size_t i = 0; i < w->ntensors; i++) {
        items[i].offset = offsets[i];
        items[i].index = i;
    }
    qsort(items, w->ntensors, sizeof *items, cmp_item);
    for (size_t k = 0; k < w->ntensors; k++) {
        const local_tensor *t = &w->tensors[items[k].index];
        char what[MST_QUOTE_MAX + 16], q[MST_QUOTE_MAX];
        if (t->nbytes == 0)
            continue;
        snprintf(what, sizeof what, "tensor %s",
                 mst_quote(q, sizeof q, t->t.name, t->t.name_len, MST_QUOTE_LIMIT));
        if (mst_io_write(fh, tmp, items[k].offset, t->data, t->nbytes, w->rank, what, err))
            break;
    }
    free(items);
    return err->code;
}

static int commit(mst_writer *w)
{
    MPI_Comm comm = w->comm;
    mst_err local = w->first, *res = &w->last;
    mst_buf blob;
    mst_gathered g;
    mst_plan plan;
    uint64_t *offsets = NULL, *all = NULL, expected = 0;
    char *tmp = NULL;
    MPI_File fh = MPI_FILE_NULL;
    int opts[2], agreed_opts[2], rc, have_tmp = 0;

    memset(&g, 0, sizeof g);
    memset(&plan, 0, sizeof plan);
    mst_buf_init(&blob, 0);

    /* Options must match: the sync is done by every rank or by none. */
    opts[0] = w->fsync;
    opts[1] = -w->fsync;
    rc = MPI_Allreduce(opts, agreed_opts, 2, MPI_INT, MPI_MAX, comm);
    if (rc != MPI_SUCCESS) {
        if (local.code == MST_OK)
            mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Allreduce of the options failed",
                        w->rank);
    } else if (agreed_opts[0] != -agreed_opts[1] && local.code == MST_OK) {
        mst_err_set(&local, MST_ERR_INVALID_ARGUMENT,
                    "ranks disagree on mst_writer_set_fsync (rank %d has it %s)", w->rank,
                    w->fsync ? "on" : "off");
    }
    if (local.code == MST_OK) {
        mst_pack_counts(&blob, w->ntensors, w->nmeta);
        for (size_t i = 0; i < w->ntensors; i++)
            mst_pack_tensor(&blob, &w->tensors[i].t);
        for (size_t i = 0; i < w->nmeta; i++)
            mst_pack_kv(&blob, &w->meta[i]);
        offsets = malloc((w->ntensors ? w->ntensors : 1) * sizeof *offsets);
        if (!mst_buf_ok(&blob) || !offsets)
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory packing metadata",
                        w->rank);
    }
    if (mst_agree(comm, &local, res))
        goto out;
    if (mst_gather_decls(comm, &blob, &g, res))
        goto out;
    mst_buf_free(&blob);

    /* Rank 0: plan, check the target, create the temporary file. */
    if (w->rank == 0) {
        if (mst_plan_build(&plan, g.decls, g.ndecls, g.meta, g.nmeta, &local) == MST_OK &&
            mst_io_check_target(w->path, &local) == MST_OK) {
            uint64_t data_start = 8 + plan.header.len;
            expected = data_start + plan.data_len;
            all = malloc((g.ndecls ? g.ndecls : 1) * sizeof *all);
            tmp = mst_io_temp_name(w->path);
            if (!all || !tmp) {
                mst_err_set(&local, MST_ERR_NO_MEMORY, "rank 0: out of memory");
            } else {
                for (size_t i = 0; i < g.ndecls; i++)
                    all[i] = data_start + plan.begin[i];
                if (mst_io_open(tmp, 1, w->hints, 0, &fh, &local) == MST_OK)
                    have_tmp = 1;
            }
        }
    }
    if (mst_agree(comm, &local, res))
        goto cleanup;
    if (mst_bcast_string(comm, &tmp, res))
        goto cleanup;
    if (mst_scatter_u64(comm, &g, all, offsets, w->ntensors, res))
        goto cleanup;
    mst_gathered_free(&g);
    free(all);
    all = NULL;

    if (w->rank != 0)
        mst_io_open(tmp, 0, w->hints, w->rank, &fh, &local);
    if (mst_agree(comm, &local, res))
        goto cleanup;

    write_own(w, fh, tmp, &plan, offsets, &local);
    if (mst_agree(comm, &local, res))
        goto cleanup;

    mst_io_sync_close(&fh, w->fsync, w->rank, &local);
    if (mst_agree(comm, &local, res))
        goto cleanup;

    if (w->rank == 0 && mst_io_commit(tmp, w->path, expected, w->fsync, &local) != MST_OK)
        mst_io_discard(tmp);
    mst_agree(comm, &local, res);
    goto out;

cleanup:
    /* Every rank is here, on the same failure: close, then rank 0 removes the
     * temporary file once no rank holds it open. */
    if (fh != MPI_FILE_NULL)
        MPI_File_close(&fh);
    MPI_Barrier(comm);
    if (w->rank == 0 && have_tmp)
        mst_io_discard(tmp);
out:
    mst_buf_free(&blob);
    mst_gathered_free(&g);
    mst_plan_free(&plan);
    free(offsets);
    free(all);
    free(tmp);
    return res->code;
}

int mst_writer_commit(mst_writer *w)
{
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE,
                           "rank %d: the writer was %s; a writer commits once", w->rank,
                           w->state == WRITER_DONE ? "already committed" : "not opened");
    w->state = WRITER_DONE;
    return commit(w);
}

void mst_writer_free(mst_writer **wp)
{
    mst_writer *w;
    int fin = 0;
    if (!wp || !*wp)
        return;
    w = *wp;
    *wp = NULL;
    MPI_Finalized(&fin);
    for (size_t i = 0; i < w->ntensors; i++)
        free(w->tensors[i].storage);
    free(w->tensors);
    for (size_t i = 0; i < w->nmeta; i++)
        free((void *)w->meta[i].key);
    free(w->meta);
    free(w->path);
    if (!fin && w->hints != MPI_INFO_NULL)
        MPI_Info_free(&w->hints);
    if (!fin && w->comm != MPI_COMM_NULL)
        MPI_Comm_free(&w->comm);
    free(w);
}

const char *mst_writer_error(const mst_writer *w)
{
    if (!w)
        return "NULL writer";
    return w->last.msg;
}

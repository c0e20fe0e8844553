/* The save: declare (local) -> exchange -> plan (rank 0) -> agree ->
 * write -> sync, close -> rename. Every step that can fail on one rank is
 * followed by an agreement, so all ranks take the same path and return the
 * same code and message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_box.h"
#include "mst_buf.h"
#include "mst_err.h"
#include "mst_exchange.h"
#include "mst_header.h"
#include "mst_io.h"
#include "mst_plan.h"
#include "mst_temp.h"

enum writer_state { WRITER_OPEN, WRITER_DONE, WRITER_FAILED_OPEN };

/* One tensor (or box of one) this rank declared. */
typedef struct local_tensor {
    mst_tensor_desc t;    /* name and shape point into storage; slices: global shape */
    const int64_t *start; /* slices: the box, in storage */
    const int64_t *count;
    int kind;             /* enum mst_decl_kind */
    const void *data;     /* the caller's buffer, not copied */
    uint64_t nbytes;      /* bytes of data */
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

static int add_decl(mst_writer *w, int kind, const char *name, mst_dtype dtype, int ndim,
                    const int64_t *shape, const int64_t *start, const int64_t *count,
                    const void *data)
{
    mst_err e;
    uint64_t nbytes = 0;
    size_t len, ndims;
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
    if (kind == MST_DECL_SLICE &&
        mst_check_box(name, len, (int)dtype, ndim, shape, start, count, w->rank, &nbytes, &e))
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
    /* shape (and box) first, so they are aligned; the name follows */
    ndims = (size_t)ndim * (kind == MST_DECL_SLICE ? 3 : 1);
    storage = malloc(ndims * sizeof(int64_t) + len + 1);
    if (!storage || grow((void **)&w->tensors, &w->tcap, w->ntensors, sizeof *w->tensors)) {
        free(storage);
        mst_err_set(&e, MST_ERR_NO_MEMORY, "rank %d: out of memory adding a tensor", w->rank);
        return keep_first(w, &e);
    }
    t = &w->tensors[w->ntensors++];
    memset(t, 0, sizeof *t);
    memcpy(storage, shape, (size_t)ndim * sizeof(int64_t));
    if (kind == MST_DECL_SLICE) {
        memcpy(storage + (size_t)ndim * sizeof(int64_t), start, (size_t)ndim * sizeof(int64_t));
        memcpy(storage + 2 * (size_t)ndim * sizeof(int64_t), count,
               (size_t)ndim * sizeof(int64_t));
        t->start = (const int64_t *)storage + ndim;
        t->count = (const int64_t *)storage + 2 * (size_t)ndim;
    }
    memcpy(storage + ndims * sizeof(int64_t), name, len + 1);
    t->storage = storage;
    t->t.shape = (const int64_t *)storage;
    t->t.name = storage + ndims * sizeof(int64_t);
    t->t.name_len = (uint32_t)len;
    t->t.dtype = (uint8_t)dtype;
    t->t.ndim = (uint32_t)ndim;
    t->kind = kind;
    t->data = data;
    t->nbytes = nbytes;
    return MST_OK;
}

int mst_writer_add(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                   const int64_t *shape, const void *data)
{
    return add_decl(w, MST_DECL_WHOLE, name, dtype, ndim, shape, NULL, NULL, data);
}

int mst_writer_add_slice(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                         const int64_t *global_shape, const int64_t *start, const int64_t *count,
                         const void *data)
{
    return add_decl(w, MST_DECL_SLICE, name, dtype, ndim, global_shape, start, count, data);
}

int mst_writer_add_replica(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                           const int64_t *shape, const void *data)
{
    return add_decl(w, MST_DECL_REPLICA, name, dtype, ndim, shape, NULL, NULL, data);
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
    uint64_t offset; /* absolute file offset of the first byte */
    size_t index;
    int strided;
    int round;       /* strided boxes: which collective round */
    mst_box_layout layout;
    uint64_t dims[]; /* strided boxes: gb, sb, cb (3 * ndim) */
} write_item;

static int cmp_item(const void *a, const void *b)
{
    const write_item *x = *(const write_item *const *)a, *y = *(const write_item *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

typedef struct write_list {
    write_item **items; /* sorted by file offset */
    size_t n;
    int rounds;         /* collective rounds this rank needs */
} write_list;

static void free_write_list(write_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Where each of this rank's declarations goes: whole tensors and chosen
 * replicas at their offset, boxes at their first byte; strided boxes get a
 * collective round (the i-th strided box of a tensor on this rank goes in
 * round i, so within a round the boxes of this rank never interleave). */
static int plan_writes(mst_writer *w, const uint64_t *offsets, write_list *l, mst_err *err)
{
    l->items = calloc(w->ntensors ? w->ntensors : 1, sizeof *l->items);
    if (!l->items)
        goto oom;
    for (size_t i = 0; i < w->ntensors; i++) {
        const local_tensor *t = &w->tensors[i];
        int ndim = (int)t->t.ndim;
        write_item *it;
        if (offsets[i] == MST_PLAN_SKIP || t->nbytes == 0)
            continue;
        it = calloc(1, sizeof *it + (t->kind == MST_DECL_SLICE ? 3 * (size_t)ndim : 0) *
                                        sizeof(uint64_t));
        if (!it)
            goto oom;
        it->index = i;
        it->offset = offsets[i];
        if (t->kind == MST_DECL_SLICE) {
            uint64_t *gb = it->dims, *sb = gb + ndim, *cb = sb + ndim;
            mst_box_bytes(ndim, t->t.shape, t->start, t->count, mst_dtype_bits(t->t.dtype), gb,
                          sb, cb);
            mst_box_layout_of(ndim, gb, sb, cb, &it->layout);
            it->offset += it->layout.first;
            it->strided = !it->layout.contiguous;
        }
        l->items[l->n++] = it;
    }
    qsort(l->items, l->n, sizeof *l->items, cmp_item);
    /* rounds: tensors occupy disjoint byte ranges, so in file order the boxes
     * of one tensor are neighbours; number its strided ones 0, 1, ... */
    for (size_t i = 0, run = 0; i < l->n; i++) {
        write_item *it = l->items[i];
        if (i > 0 && offsets[l->items[i - 1]->index] != offsets[it->index])
            run = 0;
        if (!it->strided)
            continue;
        it->round = (int)run++;
        if (it->round + 1 > l->rounds)
            l->rounds = it->round + 1;
    }
    return MST_OK;
oom:
    return mst_err_set(err, MST_ERR_NO_MEMORY, "rank %d: out of memory ordering writes", w->rank);
}

static void describe_tensor(char *what, size_t cap, const local_tensor *t)
{
    char q[MST_QUOTE_MAX], box[160];
    mst_quote(q, sizeof q, t->t.name, t->t.name_len, MST_QUOTE_LIMIT);
    if (t->kind == MST_DECL_SLICE)
        snprintf(what, cap, "tensor %s box %s", q,
                 mst_box_format(box, sizeof box, (int)t->t.ndim, t->start, t->count));
    else
        snprintf(what, cap, "tensor %s", q);
}

/* This rank's independent writes: the header on rank 0, then every whole
 * tensor, chosen replica and contiguous box in file order, straight from the
 * caller's buffers. */
static int write_own(mst_writer *w, MPI_File fh, const char *tmp, const mst_plan *plan,
                     const write_list *l, mst_err *err)
{
    if (w->rank == 0) {
        unsigned char len8[8];
        uint64_t n = plan->header.len;
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)(n >> (8 * i));
        if (mst_io_write(fh, tmp, 0, len8, 8, 0, "the header length", err) ||
            mst_io_write(fh, tmp, 8, plan->header.data, n, 0, "the header", err))
            return err->code;
    }
    for (size_t k = 0; k < l->n; k++) {
        const write_item *it = l->items[k];
        const local_tensor *t = &w->tensors[it->index];
        char what[MST_QUOTE_MAX + 200];
        if (it->strided)
            continue;
        describe_tensor(what, sizeof what, t);
        if (mst_io_write(fh, tmp, it->offset, t->data, t->nbytes, w->rank, what, err))
            break;
    }
    return err->code;
}

/* The strided boxes of collective round r, in file order; returns how many. */
static size_t round_boxes(const mst_writer *w, const write_list *l, int r, mst_io_box *boxes,
                          char (*what)[MST_QUOTE_MAX + 200])
{
    size_t n = 0;
    for (size_t k = 0; k < l->n; k++) {
        const write_item *it = l->items[k];
        const local_tensor *t = &w->tensors[it->index];
        int ndim = (int)t->t.ndim;
        mst_io_box *b;
        if (!it->strided || it->round != r)
            continue;
        b = &boxes[n];
        b->offset = it->offset;
        b->ndim = ndim;
        b->gb = it->dims;
        b->cb = it->dims + 2 * (size_t)ndim;
        b->k = it->layout.k;
        b->run = it->layout.run;
        b->bytes = it->layout.bytes;
        b->data = t->data;
        describe_tensor(what[n], sizeof what[n], t);
        b->what = what[n];
        n++;
    }
    return n;
}

/* Collective: the strided boxes, in rounds, through a handle shared by all
 * ranks. Runs only when some rank has strided boxes. */
static int write_strided(mst_writer *w, const char *tmp, const write_list *l, mst_err *err)
{
    int rounds = 0, rc;
    MPI_File fh = MPI_FILE_NULL;
    mst_io_box *boxes = NULL;
    char (*what)[MST_QUOTE_MAX + 200] = NULL;
    mst_err local, agreed;
    mst_err_clear(&local);
    rc = MPI_Allreduce(&l->rounds, &rounds, 1, MPI_INT, MPI_MAX, w->comm);
    if (rc != MPI_SUCCESS)
        return mst_err_set(err, MST_ERR_MPI, "rank %d: MPI_Allreduce of write rounds failed",
                           w->rank);
    if (rounds == 0)
        return MST_OK;
    boxes = malloc((l->n ? l->n : 1) * sizeof *boxes);
    what = malloc((l->n ? l->n : 1) * sizeof *what);
    if (!boxes || !what)
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
    else
        mst_io_open_shared(w->comm, tmp, w->hints, w->rank, &fh, &local);
    if (mst_agree(w->comm, &local, &agreed)) {
        if (fh != MPI_FILE_NULL)
            MPI_File_close(&fh);
        free(boxes);
        free(what);
        *err = agreed;
        return err->code;
    }
    for (int r = 0; r < rounds; r++) {
        size_t n = round_boxes(w, l, r, boxes, what);
        /* after a failure, keep taking part with nothing to write */
        mst_io_write_boxes(w->comm, fh, tmp, boxes, local.code ? 0 : n, w->rank, &local);
    }
    /* No MPI_File_sync on this shared handle: OMPIO 4.1's vulcan swallows a
     * failed pwritev on an aggregator (success, full count) but leaves a
     * request pending, and MPI_File_sync then fails on that rank alone before
     * its barrier, so the other ranks hang in theirs. Closing is one barrier
     * on every rank, whatever happened; the data is flushed by the per-rank
     * handle's sync in the commit (fsync covers every descriptor of the
     * file), which is where such a hidden failure surfaces. */
    rc = MPI_File_close(&fh);
    if (rc != MPI_SUCCESS && local.code == MST_OK)
        mst_err_set(&local, MST_ERR_IO, "rank %d: MPI_File_close of the shared handle failed",
                    w->rank);
    /* Trust the bytes, not the count: read this rank's boxes back. */
    for (int r = 0; r < rounds && local.code == MST_OK; r++) {
        size_t n = round_boxes(w, l, r, boxes, what);
        mst_io_verify_boxes(tmp, w->hints, boxes, n, w->rank, &local);
    }
    free(boxes);
    free(what);
    *err = local;
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
    write_list writes;
    int opts[2], agreed_opts[2], rc, have_tmp = 0, lock_fd = -1;

    memset(&g, 0, sizeof g);
    memset(&plan, 0, sizeof plan);
    memset(&writes, 0, sizeof writes);
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
            mst_pack_tensor(&blob, &w->tensors[i].t, w->tensors[i].kind, w->tensors[i].start,
                            w->tensors[i].count);
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
        if (mst_plan_build(&plan, g.decls, g.ndecls, g.meta, g.nmeta, w->size, &local) ==
                MST_OK &&
            mst_io_check_target(w->path, &local) == MST_OK) {
            uint64_t data_start = 8 + plan.header.len;
            expected = data_start + plan.data_len;
            all = malloc((g.ndecls ? g.ndecls : 1) * sizeof *all);
            if (!all) {
                mst_err_set(&local, MST_ERR_NO_MEMORY, "rank 0: out of memory");
            } else if (mst_temp_create(w->path, &tmp, &lock_fd, &local) == MST_OK) {
                /* created and locked (the lock marks it as owned, for mst-clean) */
                have_tmp = 1;
                for (size_t i = 0; i < g.ndecls; i++)
                    all[i] = plan.begin[i] == MST_PLAN_SKIP ? MST_PLAN_SKIP
                                                            : data_start + plan.begin[i];
                mst_io_open(tmp, 0, w->hints, 0, &fh, &local);
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

    if (plan_writes(w, offsets, &writes, &local) == MST_OK)
        write_own(w, fh, tmp, &plan, &writes, &local);
    if (mst_agree(comm, &local, res))
        goto cleanup;
    write_strided(w, tmp, &writes, &local);
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
    free_write_list(&writes);
    mst_buf_free(&blob);
    mst_gathered_free(&g);
    mst_plan_free(&plan);
    free(offsets);
    free(all);
    mst_temp_release(&lock_fd); /* after the rename or the removal */
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

/* The writer's handle: open, the declarations (add_*), the setters, the
 * options every rank must agree on, commit, free. The save itself is in
 * mst_save.c (one file) and mst_set_save.c (a multi-file set); see
 * mst_writer_impl.h for the map. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_box.h"
#include "mst_err.h"
#include "mst_exchange.h"
#include "mst_header.h"
#include "mst_plan.h"
#include "mst_writer_impl.h"

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
        w->staging = MST_DEFAULT_STAGING;
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

int mst_writer_set_checksums(mst_writer *w, int enabled)
{
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE, "rank %d: the writer is not open", w->rank);
    w->checksums = enabled ? 1 : 0;
    return MST_OK;
}

int mst_writer_set_staging(mst_writer *w, size_t bytes)
{
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE, "rank %d: the writer is not open", w->rank);
    if (bytes < 4096)
        return mst_err_set(&w->last, MST_ERR_INVALID_ARGUMENT,
                           "rank %d: staging buffer of %zu bytes; at least 4096 are needed",
                           w->rank, bytes);
    w->staging = bytes;
    return MST_OK;
}

int mst_writer_set_max_shard_size(mst_writer *w, uint64_t max_bytes)
{
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE, "rank %d: the writer is not open", w->rank);
    w->max_shard = max_bytes;
    return MST_OK;
}

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
    size_t c;
    void *q;
    if (n < *cap)
        return 0;
    c = *cap ? *cap * 2 : 16;
    q = mst_realloc_big(*p, c * elem); /* a million declarations: tens of MiB */
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* `bytes` (> 0) of arena, 8-byte aligned; NULL if out of memory. */
static void *arena_alloc(mst_writer *w, size_t bytes)
{
    size_t words = bytes / 8 + (bytes % 8 != 0);
    arena_block *b = w->arena;
    if (!b || b->cap - b->used < words) {
        size_t cap = b ? (b->cap < ARENA_MAX_WORDS ? 2 * b->cap : b->cap) : ARENA_FIRST_WORDS;
        if (cap < words)
            cap = words;
        if (cap > (SIZE_MAX - sizeof *b) / 8 || !(b = mst_malloc_big(sizeof *b + cap * 8)))
            return NULL;
        b->next = w->arena;
        b->used = 0;
        b->cap = cap;
        w->arena = b;
    }
    b->used += words;
    return b->words + b->used - words;
}

/* `bytes` for one declaration's copies: in the arena, or alone when large (a
 * long name would leave most of a block empty). */
static void *storage_alloc(mst_writer *w, size_t bytes)
{
    void *p;
    if (bytes <= ARENA_OWN_BYTES)
        return arena_alloc(w, bytes);
    if (grow((void **)&w->own, &w->ocap, w->nown, sizeof *w->own) || !(p = malloc(bytes)))
        return NULL;
    w->own[w->nown++] = p;
    return p;
}

static int add_decl(mst_writer *w, int kind, const char *name, mst_dtype dtype, int ndim,
                    const int64_t *shape, const int64_t *start, const int64_t *count,
                    const void *data, int streamed, mst_fill_fn fill, void *fill_ctx)
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
    if (nbytes > 0 && (streamed ? !fill : !data)) {
        char q[MST_QUOTE_MAX];
        mst_err_set(&e, MST_ERR_NULL_DATA, "tensor %s on rank %d: %s is NULL for %llu bytes",
                    mst_quote(q, sizeof q, name, len, MST_QUOTE_LIMIT), w->rank,
                    streamed ? "the fill callback" : "data",
                    (unsigned long long)nbytes);
        return keep_first(w, &e);
    }
    if (streamed && kind == MST_DECL_SLICE && nbytes > 0) {
        uint64_t *gb = malloc((3 * (size_t)ndim + 1) * sizeof *gb);
        mst_box_layout lay;
        if (!gb) {
            mst_err_set(&e, MST_ERR_NO_MEMORY, "rank %d: out of memory adding a tensor", w->rank);
            return keep_first(w, &e);
        }
        mst_box_bytes(ndim, shape, start, count, mst_dtype_bits(dtype), gb, gb + ndim,
                      gb + 2 * ndim);
        mst_box_layout_of(ndim, gb, gb + ndim, gb + 2 * ndim, &lay);
        free(gb);
        if (!lay.contiguous) {
            char q[MST_QUOTE_MAX], box[160];
            mst_err_set(&e, MST_ERR_INVALID_ARGUMENT,
                        "tensor %s on rank %d: streamed box %s is not one contiguous byte range "
                        "of the tensor (stream row blocks; give strided boxes with "
                        "mst_writer_add_slice)",
                        mst_quote(q, sizeof q, name, len, MST_QUOTE_LIMIT), w->rank,
                        mst_box_format(box, sizeof box, ndim, start, count));
            return keep_first(w, &e);
        }
    }
    if (len > MST_MAX_HEADER_SIZE) {
        mst_err_set(&e, MST_ERR_HEADER_TOO_LARGE,
                    "rank %d: a tensor name of %zu bytes cannot fit in a header", w->rank, len);
        return keep_first(w, &e);
    }
    /* shape (and box) first, so they are aligned; the name follows */
    ndims = (size_t)ndim * (kind == MST_DECL_SLICE ? 3 : 1);
    if (grow((void **)&w->tensors, &w->tcap, w->ntensors, sizeof *w->tensors) ||
        !(storage = storage_alloc(w, ndims * sizeof(int64_t) + len + 1))) {
        mst_err_set(&e, MST_ERR_NO_MEMORY, "rank %d: out of memory adding a tensor", w->rank);
        return keep_first(w, &e);
    }
    t = &w->tensors[w->ntensors++];
    memset(t, 0, sizeof *t);
    if (ndim > 0)
        memcpy(storage, shape, (size_t)ndim * sizeof(int64_t));
    if (kind == MST_DECL_SLICE && ndim > 0) {
        memcpy(storage + (size_t)ndim * sizeof(int64_t), start, (size_t)ndim * sizeof(int64_t));
        memcpy(storage + 2 * (size_t)ndim * sizeof(int64_t), count,
               (size_t)ndim * sizeof(int64_t));
    }
    memcpy(storage + ndims * sizeof(int64_t), name, len + 1);
    t->t.shape = (const int64_t *)storage;
    t->t.name = storage + ndims * sizeof(int64_t);
    t->t.name_len = (uint32_t)len;
    t->t.dtype = (uint8_t)dtype;
    t->t.ndim = (uint32_t)ndim;
    t->kind = kind;
    if (streamed)
        t->fill_ctx = fill_ctx;
    else
        t->data = data;
    t->fill = fill;
    t->nbytes = nbytes;
    return MST_OK;
}

int mst_writer_add(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                   const int64_t *shape, const void *data)
{
    return add_decl(w, MST_DECL_WHOLE, name, dtype, ndim, shape, NULL, NULL, data, 0, NULL, NULL);
}

int mst_writer_add_stream(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                          const int64_t *shape, mst_fill_fn fill, void *ctx)
{
    return add_decl(w, MST_DECL_WHOLE, name, dtype, ndim, shape, NULL, NULL, NULL, 1, fill, ctx);
}

int mst_writer_add_slice_stream(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                                const int64_t *global_shape, const int64_t *start,
                                const int64_t *count, mst_fill_fn fill, void *ctx)
{
    return add_decl(w, MST_DECL_SLICE, name, dtype, ndim, global_shape, start, count, NULL, 1,
                    fill, ctx);
}

int mst_writer_add_slice(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                         const int64_t *global_shape, const int64_t *start, const int64_t *count,
                         const void *data)
{
    return add_decl(w, MST_DECL_SLICE, name, dtype, ndim, global_shape, start, count, data, 0,
                    NULL, NULL);
}

int mst_writer_add_replica(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                           const int64_t *shape, const void *data)
{
    return add_decl(w, MST_DECL_REPLICA, name, dtype, ndim, shape, NULL, NULL, data, 0, NULL, NULL);
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

/* Local. The writer's own hints: mst_strided_writes (redistribute, the
 * default, or collective) and mst_redist_buffer (bytes, at least 1). */
static int read_hints(mst_writer *w, mst_err *err)
{
    char v[64];
    int flag = 0;
    w->collective = 0;
    w->redist_buffer = 0;
    if (w->hints == MPI_INFO_NULL)
        return MST_OK;
    if (MPI_Info_get(w->hints, "mst_strided_writes", (int)sizeof v - 1, v, &flag) ==
            MPI_SUCCESS &&
        flag) {
        if (!strcmp(v, "collective"))
            w->collective = 1;
        else if (strcmp(v, "redistribute") != 0)
            return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                               "rank %d: hint mst_strided_writes is \"%.40s\"; expected "
                               "\"redistribute\" or \"collective\"",
                               w->rank, v);
    }
    flag = 0;
    if (MPI_Info_get(w->hints, "mst_redist_buffer", (int)sizeof v - 1, v, &flag) ==
            MPI_SUCCESS &&
        flag) {
        char *end = NULL;
        unsigned long long n = strtoull(v, &end, 10);
        if (v[0] < '0' || v[0] > '9' || *end || n == 0)
            return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                               "rank %d: hint mst_redist_buffer is \"%.40s\"; expected a "
                               "number of bytes, at least 1",
                               w->rank, v);
        w->redist_buffer = n;
    }
    return MST_OK;
}

void mst_writer_agree_options(mst_writer *w, mst_err *local)
{
    /* each value and its negation: MAX of both tells whether all agree */
    int64_t hi = (int64_t)(w->max_shard >> 32), lo = (int64_t)(w->max_shard & 0xffffffffu);
    int64_t opts[10], agreed[10];
    if (local->code == MST_OK)
        read_hints(w, local);
    opts[0] = w->fsync;
    opts[1] = -w->fsync;
    opts[2] = hi;
    opts[3] = -hi;
    opts[4] = lo;
    opts[5] = -lo;
    opts[6] = w->collective;
    opts[7] = -w->collective;
    opts[8] = w->checksums;
    opts[9] = -w->checksums;
    if (MPI_Allreduce(opts, agreed, 10, MPI_INT64_T, MPI_MAX, w->comm) != MPI_SUCCESS) {
        if (local->code == MST_OK)
            mst_err_set(local, MST_ERR_MPI, "rank %d: MPI_Allreduce of the options failed",
                        w->rank);
    } else if (agreed[0] != -agreed[1] && local->code == MST_OK) {
        mst_err_set(local, MST_ERR_INVALID_ARGUMENT,
                    "ranks disagree on mst_writer_set_fsync (rank %d has it %s)", w->rank,
                    w->fsync ? "on" : "off");
    } else if ((agreed[2] != -agreed[3] || agreed[4] != -agreed[5]) && local->code == MST_OK) {
        mst_err_set(local, MST_ERR_INVALID_ARGUMENT,
                    "ranks disagree on mst_writer_set_max_shard_size (rank %d has %llu)",
                    w->rank, (unsigned long long)w->max_shard);
    } else if (agreed[6] != -agreed[7] && local->code == MST_OK) {
        mst_err_set(local, MST_ERR_INVALID_ARGUMENT,
                    "ranks disagree on hint mst_strided_writes (rank %d has %s)", w->rank,
                    w->collective ? "collective" : "redistribute");
    } else if (agreed[8] != -agreed[9] && local->code == MST_OK) {
        mst_err_set(local, MST_ERR_INVALID_ARGUMENT,
                    "ranks disagree on mst_writer_set_checksums (rank %d has it %s)", w->rank,
                    w->checksums ? "on" : "off");
    }
}

int mst_writer_commit(mst_writer *w)
{
    if (!w)
        return MST_ERR_INVALID_ARGUMENT;
    if (w->state != WRITER_OPEN)
        return mst_err_set(&w->last, MST_ERR_STATE,
                           "rank %d: the writer was %s; a writer commits once", w->rank,
                           w->state == WRITER_FAILED_OPEN ? "not opened" : "already committed");
    w->state = WRITER_DONE;
    if (w->max_shard > 0)
        return mst_set_save(w);
    return mst_save_file(w, &w->first, w->tensors, w->ntensors, w->meta, w->nmeta, w->path);
}

void mst_writer_free(mst_writer **wp)
{
    mst_writer *w;
    int fin = 0;
    if (!wp || !*wp)
        return;
    w = *wp;
    *wp = NULL;
    mst_async_abandon(w); /* a split-phase save in flight: no MPI call */
    MPI_Finalized(&fin);
    for (size_t i = 0; i < w->nown; i++)
        free(w->own[i]);
    free(w->own);
    while (w->arena) {
        arena_block *b = w->arena;
        w->arena = b->next;
        free(b);
    }
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

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
#include "mst_redist.h"
#include "mst_set.h"
#include "mst_temp.h"

enum writer_state { WRITER_OPEN, WRITER_DONE, WRITER_FAILED_OPEN };

/* One tensor (or box of one) this rank declared: 64 bytes, a million of
 * them on one rank. */
typedef struct local_tensor {
    mst_tensor_desc t;    /* name and shape point into the writer's arena; slices: global
                             shape, followed there by the box (start, then count) as in
                             mst_decl */
    union {
        const void *data; /* the caller's buffer, not copied */
        void *fill_ctx;   /* streamed: the fill callback's context */
    };
    mst_fill_fn fill;     /* streamed: asked for the bytes instead of data */
    uint64_t nbytes;      /* bytes of data */
    int kind;             /* enum mst_decl_kind */
} local_tensor;

static const int64_t *box_start(const local_tensor *t)
{
    return t->t.shape + t->t.ndim;
}

static const int64_t *box_count(const local_tensor *t)
{
    return t->t.shape + 2 * (size_t)t->t.ndim;
}

/* The copies of declared names, shapes and boxes: blocks that never move
 * (local_tensor points into them), freed with the writer. One allocation per
 * declaration cost a page fault every few dozen tensors and a malloc header
 * each. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap; /* in 8-byte words */
    uint64_t words[];
} arena_block;

#define ARENA_FIRST_WORDS 512       /* 4 KiB */
#define ARENA_MAX_WORDS (1u << 17)  /* 1 MiB: later blocks */
#define ARENA_OWN_BYTES 256         /* larger entries get an allocation of their own */

struct mst_writer {
    MPI_Comm comm;
    int rank, size;
    char *path;
    MPI_Info hints;
    int fsync;
    size_t staging; /* bytes of the staging buffer of streamed tensors */
    uint64_t max_shard; /* multi-file save: bytes of tensor data per shard; 0: one file */
    int collective;     /* hint mst_strided_writes=collective: file views and collective writes */
    uint64_t redist_buffer; /* hint mst_redist_buffer, or 0: the default */
    enum writer_state state;

    local_tensor *tensors;
    size_t ntensors, tcap;
    arena_block *arena; /* newest block first */
    void **own;         /* entries above ARENA_OWN_BYTES */
    size_t nown, ocap;
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
    q = realloc(*p, c * elem);
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
        if (cap > (SIZE_MAX - sizeof *b) / 8 || !(b = malloc(sizeof *b + cap * 8)))
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

typedef struct write_item {
    uint64_t offset; /* absolute file offset of the first byte */
    size_t index;
    int strided;
    int round;       /* strided boxes: which collective round */
} write_item;

/* A box's item: the layout only boxes need (24 bytes an item for a million
 * whole tensors, not 56). */
typedef struct box_item {
    write_item item;
    mst_box_layout layout;
    uint64_t dims[]; /* gb, sb, cb (3 * ndim) */
} box_item;

static const box_item *as_box(const write_item *it)
{
    return (const box_item *)it; /* only for the items of slices */
}

static int cmp_item(const void *a, const void *b)
{
    const write_item *x = *(const write_item *const *)a, *y = *(const write_item *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

typedef struct write_list {
    write_item **items; /* sorted by file offset */
    size_t n;
    int rounds;         /* collective rounds this rank needs */
    void *block;        /* every item, one allocation */
} write_list;

static void free_write_list(write_list *l)
{
    free(l->block);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Where each of this rank's declarations goes: whole tensors and chosen
 * replicas at their offset, boxes at their first byte; strided boxes get a
 * collective round (the i-th strided box of a tensor on this rank goes in
 * round i, so within a round the boxes of this rank never interleave). */
static size_t item_size(const local_tensor *t)
{
    if (t->kind != MST_DECL_SLICE)
        return sizeof(write_item);
    return sizeof(box_item) + 3 * (size_t)t->t.ndim * sizeof(uint64_t);
}

static int plan_writes(mst_writer *w, const uint64_t *offsets, write_list *l, mst_err *err)
{
    size_t bytes = 0;
    char *at;
    for (size_t i = 0; i < w->ntensors; i++)
        if (offsets[i] != MST_PLAN_SKIP && w->tensors[i].nbytes != 0)
            bytes += item_size(&w->tensors[i]);
    l->items = malloc((w->ntensors ? w->ntensors : 1) * sizeof *l->items);
    l->block = calloc(1, bytes ? bytes : 1);
    if (!l->items || !l->block)
        goto oom;
    at = l->block;
    for (size_t i = 0; i < w->ntensors; i++) {
        const local_tensor *t = &w->tensors[i];
        int ndim = (int)t->t.ndim;
        write_item *it;
        if (offsets[i] == MST_PLAN_SKIP || t->nbytes == 0)
            continue;
        it = (write_item *)at; /* sizes are multiples of 8 */
        at += item_size(t);
        it->index = i;
        it->offset = offsets[i];
        if (t->kind == MST_DECL_SLICE) {
            box_item *bi = (box_item *)it;
            uint64_t *gb = bi->dims, *sb = gb + ndim, *cb = sb + ndim;
            mst_box_bytes(ndim, t->t.shape, box_start(t), box_count(t),
                          mst_dtype_bits(t->t.dtype), gb, sb, cb);
            mst_box_layout_of(ndim, gb, sb, cb, &bi->layout);
            it->offset += bi->layout.first;
            it->strided = !bi->layout.contiguous;
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
                 mst_box_format(box, sizeof box, (int)t->t.ndim, box_start(t), box_count(t)));
    else
        snprintf(what, cap, "tensor %s", q);
}

/* A message about a write names its tensor (describe_tensor), but formatting
 * that for every write costs more than many small writes: write_own passes
 * WHAT_MARK instead and, on a failure, puts the text in its place. The mark
 * is a control character, which no quoted name or path contains raw; the
 * text is never shorter than the mark, so the message is cut exactly where
 * formatting it with the text would have cut it. */
#define WHAT_MARK "\x1f"

static void name_in_message(mst_err *err, const char *what)
{
    char msg[MST_MSG_MAX];
    const char *at = strchr(err->msg, WHAT_MARK[0]);
    if (!at)
        return;
    snprintf(msg, sizeof msg, "%.*s%s%s", (int)(at - err->msg), err->msg, what, at + 1);
    memcpy(err->msg, msg, sizeof msg);
}

static void name_tensor_in_message(mst_err *err, const local_tensor *t)
{
    char what[MST_QUOTE_MAX + 200];
    describe_tensor(what, sizeof what, t);
    name_in_message(err, what);
}

/* A streamed tensor (or row box): pieces from its fill callback through the
 * staging buffer, each written at once. */
static int write_streamed(mst_writer *w, MPI_File fh, const char *tmp, const write_item *it,
                          unsigned char *stage, size_t cap, const char *what, mst_err *err)
{
    const local_tensor *t = &w->tensors[it->index];
    for (uint64_t off = 0; off < t->nbytes;) {
        uint64_t n = t->nbytes - off < cap ? t->nbytes - off : cap;
        int rc = t->fill(t->fill_ctx, off, stage, n);
        if (rc != 0)
            return mst_err_set(err, MST_ERR_CALLBACK,
                               "%s on rank %d: the fill callback returned %d for bytes %llu to "
                               "%llu",
                               what, w->rank, rc, (unsigned long long)off,
                               (unsigned long long)(off + n));
        if (mst_io_write(fh, tmp, it->offset + off, stage, n, w->rank, what, err))
            return err->code;
        off += n;
    }
    return MST_OK;
}

/* Small tensors that are neighbours in the file go out in one write: a
 * million 8-byte tensors cost a million MPI_File_write_at calls otherwise.
 * Those under BATCH_SMALL bytes are copied into one buffer of at most
 * BATCH_BYTES (allocated when a second one joins a run); larger ones are
 * written from the caller's buffer as before. */
#define BATCH_SMALL ((uint64_t)64 << 10)
#define BATCH_BYTES ((uint64_t)4 << 20)

typedef struct batch {
    unsigned char *buf;
    size_t cap;          /* bytes of buf once allocated */
    uint64_t offset;     /* file offset of the run's first byte */
    uint64_t len;        /* bytes in the run */
    size_t first, last;  /* the run's items (positions in the write list) */
    size_t n;            /* tensors in the run; 0: none */
    int header;          /* rank 0: the run starts with the length and the header */
} batch;

/* `tensor "a"`, `tensors "a" to "z" (N tensors)`, with "the header and "
 * before them when the run starts with the header; boxes as describe_tensor
 * gives them. */
static void describe_run(char *what, size_t cap, const mst_writer *w, const write_list *l,
                         const batch *b)
{
    char one[MST_QUOTE_MAX + 200], two[MST_QUOTE_MAX + 200];
    const char *head = b->header ? "the header and " : "";
    describe_tensor(one, sizeof one, &w->tensors[l->items[b->first]->index]);
    if (b->n == 1) {
        snprintf(what, cap, "%s%s", head, one);
        return;
    }
    describe_tensor(two, sizeof two, &w->tensors[l->items[b->last]->index]);
    /* "tensor X" twice becomes "tensors X to Y" */
    snprintf(what, cap, "%stensors %s to %s (%zu tensors)", head, one + 7, two + 7, b->n);
}

/* Writes the pending run, if any, and empties it. A run of one tensor is
 * written from the caller's buffer. */
static int flush_batch(mst_writer *w, MPI_File fh, const char *tmp, const write_list *l,
                       batch *b, mst_err *err)
{
    const void *data;
    int rc;
    if (b->n == 0 && !b->header)
        return MST_OK;
    data = b->n == 1 && !b->header ? w->tensors[l->items[b->first]->index].data : b->buf;
    rc = mst_io_write(fh, tmp, b->offset, data, b->len, w->rank, WHAT_MARK, err);
    if (rc != MST_OK) {
        char what[2 * (MST_QUOTE_MAX + 200) + 64];
        if (b->n == 1 && !b->header)
            describe_tensor(what, sizeof what, &w->tensors[l->items[b->first]->index]);
        else
            describe_run(what, sizeof what, w, l, b);
        name_in_message(err, what);
    }
    b->n = 0;
    b->len = 0;
    b->header = 0;
    return rc;
}

/* Allocates the batch buffer once: BATCH_BYTES, or less when this rank's
 * small tensors (`small_bytes`, with the header if folded) are fewer, so a
 * run never outgrows it. */
static int batch_buffer(mst_writer *w, batch *b, uint64_t small_bytes, mst_err *err)
{
    if (!b->buf) {
        b->cap = (size_t)(small_bytes < BATCH_BYTES ? small_bytes : BATCH_BYTES);
        if (!(b->buf = malloc(b->cap)))
            return mst_err_set(err, MST_ERR_NO_MEMORY,
                               "rank %d: out of memory for a write buffer of %zu bytes",
                               w->rank, b->cap);
    }
    return MST_OK;
}

/* This rank's independent writes: the header on rank 0, then every whole
 * tensor, chosen replica and contiguous box in file order, straight from the
 * caller's buffers, runs of small neighbours through the batch buffer. */
static int write_own(mst_writer *w, MPI_File fh, const char *tmp, const mst_plan *plan,
                     const write_list *l, mst_err *err)
{
    unsigned char *stage = NULL;
    size_t cap = 0;
    uint64_t small_bytes = 0;
    batch b;
    memset(&b, 0, sizeof b);
    for (size_t k = 0; k < l->n; k++) {
        const local_tensor *t = &w->tensors[l->items[k]->index];
        if (!l->items[k]->strided && !t->fill && t->nbytes < BATCH_SMALL)
            small_bytes += t->nbytes;
    }
    if (w->rank == 0) {
        unsigned char len8[8];
        uint64_t n = plan->header.len;
        const write_item *it = l->n ? l->items[0] : NULL;
        const local_tensor *t = it ? &w->tensors[it->index] : NULL;
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)(n >> (8 * i));
        if (t && !it->strided && !t->fill && t->nbytes < BATCH_SMALL && it->offset == 8 + n &&
            8 + n < BATCH_SMALL) {
            /* a small header and the first tensor right after it: one run */
            if (batch_buffer(w, &b, small_bytes + 8 + n, err))
                return err->code;
            memcpy(b.buf, len8, 8);
            memcpy(b.buf + 8, plan->header.data, n);
            b.header = 1;
            b.len = 8 + n;
        } else if (mst_io_write(fh, tmp, 0, len8, 8, 0, "the header length", err) ||
                   mst_io_write(fh, tmp, 8, plan->header.data, n, 0, "the header", err)) {
            return err->code;
        }
    }
    for (size_t k = 0; k < l->n; k++) {
        const write_item *it = l->items[k];
        const local_tensor *t = &w->tensors[it->index];
        if (it->strided)
            continue;
        if (!t->fill && t->nbytes < BATCH_SMALL) {
            int joins = (b.n > 0 || b.header) && b.offset + b.len == it->offset &&
                        b.len + t->nbytes <= (b.buf ? b.cap : BATCH_BYTES);
            if (!joins && flush_batch(w, fh, tmp, l, &b, err))
                break;
            if (b.n == 0 && !b.header) {
                b.offset = it->offset;
            } else {
                if (b.n == 1 && !b.header) {
                    /* a second tensor: the first goes into the buffer too */
                    if (batch_buffer(w, &b, small_bytes, err))
                        break;
                    memcpy(b.buf, w->tensors[l->items[b.first]->index].data, b.len);
                }
                memcpy(b.buf + b.len, t->data, t->nbytes);
            }
            if (b.n == 0)
                b.first = k;
            b.last = k;
            b.n++;
            b.len += t->nbytes;
            continue;
        }
        if (flush_batch(w, fh, tmp, l, &b, err))
            break;
        if (t->fill) {
            if (!stage) {
                /* one buffer for all streamed tensors: the staging size, or
                 * the largest of them if smaller */
                for (size_t j = 0; j < l->n; j++) {
                    const local_tensor *u = &w->tensors[l->items[j]->index];
                    if (u->fill && u->nbytes > cap)
                        cap = u->nbytes < w->staging ? (size_t)u->nbytes : w->staging;
                }
                if (!(stage = malloc(cap))) {
                    mst_err_set(err, MST_ERR_NO_MEMORY,
                                "rank %d: out of memory for a staging buffer of %zu bytes",
                                w->rank, cap);
                    break;
                }
            }
            if (write_streamed(w, fh, tmp, it, stage, cap, WHAT_MARK, err)) {
                name_tensor_in_message(err, t);
                break;
            }
        } else if (mst_io_write(fh, tmp, it->offset, t->data, t->nbytes, w->rank, WHAT_MARK,
                                err)) {
            name_tensor_in_message(err, t);
            break;
        }
    }
    if (err->code == MST_OK)
        flush_batch(w, fh, tmp, l, &b, err);
    free(b.buf);
    free(stage);
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
        b->gb = as_box(it)->dims;
        b->cb = as_box(it)->dims + 2 * (size_t)ndim;
        b->k = as_box(it)->layout.k;
        b->run = as_box(it)->layout.run;
        b->bytes = as_box(it)->layout.bytes;
        b->data = t->data;
        describe_tensor(what[n], sizeof what[n], t);
        b->what = what[n];
        n++;
    }
    return n;
}

/* The memory of this rank's declaration `local` (for mst_redist_write). */
static const void *tensor_data(void *ctx, size_t local)
{
    return ((const mst_writer *)ctx)->tensors[local].data;
}

/* Bytes of the redistribution buffer: the hint, or the staging size up to
 * MST_REDIST_BUFFER. */
static uint64_t redist_buffer(const mst_writer *w)
{
    if (w->redist_buffer)
        return w->redist_buffer;
    return w->staging < MST_REDIST_BUFFER ? (uint64_t)w->staging : MST_REDIST_BUFFER;
}

/* With hint mst_strided_writes=collective. Collective: the strided boxes, in
 * rounds, through a handle shared by all ranks, with file views and
 * MPI_File_write_at_all. Runs only when some rank has strided boxes. */
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

/* Collective: every rank's options must match. */
static void check_options(mst_writer *w, mst_err *local)
{
    /* each value and its negation: MAX of both tells whether all agree */
    int64_t hi = (int64_t)(w->max_shard >> 32), lo = (int64_t)(w->max_shard & 0xffffffffu);
    int64_t opts[8], agreed[8];
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
    if (MPI_Allreduce(opts, agreed, 8, MPI_INT64_T, MPI_MAX, w->comm) != MPI_SUCCESS) {
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
    }
}

/* Packs this rank's declarations for the gather; rank 0 packs nothing: its
 * own are read in place (own_decls). */
static void pack_all(mst_writer *w, mst_buf *blob, const mst_kv *meta, size_t nmeta)
{
    if (w->rank == 0)
        return;
    mst_pack_counts(blob, w->ntensors, nmeta);
    for (size_t i = 0; i < w->ntensors; i++)
        mst_pack_tensor(blob, &w->tensors[i].t, w->tensors[i].kind, box_start(&w->tensors[i]),
                        box_count(&w->tensors[i]));
    for (size_t i = 0; i < nmeta; i++)
        mst_pack_kv(blob, &meta[i]);
}

static void own_tensor(void *ctx, size_t i, mst_decl *out)
{
    const local_tensor *t = &((const mst_writer *)ctx)->tensors[i];
    out->t = t->t;
    out->kind = (uint8_t)t->kind;
}

static mst_own_decls own_decls(mst_writer *w, const mst_kv *meta, size_t nmeta)
{
    mst_own_decls own;
    own.ntensors = w->ntensors;
    own.tensor = own_tensor;
    own.ctx = w;
    own.meta = meta;
    own.nmeta = nmeta;
    return own;
}

/*
 * Collective. One file at `path` from w->tensors and `meta`. `first` is the
 * first local error to agree on (the caller's declarations). With keep_tmp,
 * nothing is renamed: rank 0 gets the complete, synced temporary file's name
 * in *keep_tmp (the others NULL).
 */
static int save_file(mst_writer *w, const mst_err *first, const mst_kv *meta, size_t nmeta,
                     const char *path, char **keep_tmp)
{
    MPI_Comm comm = w->comm;
    mst_err local = *first, *res = &w->last;
    mst_buf blob;
    mst_gathered g;
    mst_plan plan;
    uint64_t *offsets = NULL, expected = 0;
    char *tmp = NULL;
    MPI_File fh = MPI_FILE_NULL;
    write_list writes;
    mst_own_decls own;
    uint64_t *rtab = NULL; /* strided boxes to redistribute (mst_redist.h) */
    size_t rlen = 0;
    int have_tmp = 0, lock_fd = -1;

    memset(&g, 0, sizeof g);
    memset(&plan, 0, sizeof plan);
    memset(&writes, 0, sizeof writes);
    mst_buf_init(&blob, 0);
    if (keep_tmp)
        *keep_tmp = NULL;

    /* Options must match: the sync is done by every rank or by none. */
    check_options(w, &local);
    if (local.code == MST_OK) {
        pack_all(w, &blob, meta, nmeta);
        /* rank 0's once its peak is past (below) */
        if (w->rank != 0)
            offsets = malloc((w->ntensors ? w->ntensors : 1) * sizeof *offsets);
        if (!mst_buf_ok(&blob) || (w->rank != 0 && !offsets))
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory packing metadata",
                        w->rank);
    }
    if (mst_agree(comm, &local, res))
        goto out;
    own = own_decls(w, meta, nmeta);
    if (mst_gather_decls(comm, &blob, &own, &g, res))
        goto out;
    mst_buf_free(&blob);

    /* Rank 0: plan, check the target, create the temporary file. */
    if (w->rank == 0) {
        if (mst_plan_build(&plan, g.decls, g.ndecls, g.meta, g.nmeta, w->size, &local) ==
                MST_OK &&
            (keep_tmp || mst_io_check_target(path, &local) == MST_OK)) {
            uint64_t data_start = 8 + plan.header.len;
            expected = data_start + plan.data_len;
            if (!w->collective && mst_redist_table(g.decls, g.ndecls, &plan, data_start, &rtab,
                                                   &rlen, &local) != MST_OK) {
                /* reported below */
            } else {
                /* Nothing below needs the declarations (only their counts)
                 * or the order: free them before anything else is
                 * allocated, and scatter the absolute offsets from where
                 * the relative ones were. */
                mst_gathered_drop_decls(&g);
                free(plan.order);
                plan.order = NULL;
                for (size_t i = 0; i < g.ndecls; i++)
                    if (plan.begin[i] != MST_PLAN_SKIP)
                        plan.begin[i] += data_start;
                offsets = malloc((w->ntensors ? w->ntensors : 1) * sizeof *offsets);
                if (!offsets)
                    mst_err_set(&local, MST_ERR_NO_MEMORY, "rank 0: out of memory");
                else if (mst_temp_create(path, w->hints, &tmp, &lock_fd, &fh, &local) == MST_OK)
                    /* created with the hints, opened, and locked (the lock
                     * marks it as owned, for mst-clean) */
                    have_tmp = 1;
            }
        }
    }
    if (mst_agree(comm, &local, res))
        goto cleanup;
    if (mst_bcast_string(comm, &tmp, res))
        goto cleanup;
    if (mst_scatter_u64(comm, &g, plan.begin, offsets, w->ntensors, res))
        goto cleanup;
    mst_gathered_free(&g);
    free(plan.begin);
    plan.begin = NULL;
    if (!w->collective && mst_redist_share(comm, &rtab, &rlen, res))
        goto cleanup;

    if (w->rank != 0)
        mst_io_open(tmp, 0, w->hints, w->rank, &fh, NULL, &local);
    if (mst_agree(comm, &local, res))
        goto cleanup;

    if (plan_writes(w, offsets, &writes, &local) == MST_OK) {
        free(offsets); /* the items hold them now */
        offsets = NULL;
        write_own(w, fh, tmp, &plan, &writes, &local);
    }
    if (mst_agree(comm, &local, res))
        goto cleanup;
    if (w->collective)
        write_strided(w, tmp, &writes, &local);
    else
        mst_redist_write(comm, rtab, rlen, tensor_data, w, fh, tmp, redist_buffer(w), &local);
    if (mst_agree(comm, &local, res))
        goto cleanup;

    mst_io_sync_close(&fh, w->fsync, w->collective, w->rank, &local);
    if (mst_agree(comm, &local, res))
        goto cleanup;

    if (keep_tmp) {
        if (w->rank == 0 && mst_io_check_size(tmp, expected, &local) == MST_OK) {
            *keep_tmp = tmp;
            tmp = NULL;
        } else if (w->rank == 0) {
            mst_io_discard(tmp);
        }
    } else if (w->rank == 0 && mst_io_commit(tmp, path, expected, w->fsync, &local) != MST_OK) {
        mst_io_discard(tmp);
    }
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
    free(rtab);
    mst_buf_free(&blob);
    mst_gathered_free(&g);
    mst_plan_free(&plan);
    free(offsets);
    mst_temp_release(&lock_fd); /* after the rename or the removal */
    free(tmp);
    return res->code;
}

typedef struct name_ctx {
    const mst_plan *plan;
    const mst_gathered *g;
} name_ctx;

static int cmp_names(const mst_tensor_desc *x, const mst_tensor_desc *y)
{
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* tensor positions (in canonical order) by name */
static int cmp_pos_by_name(const void *a, const void *b, void *ctx)
{
    const name_ctx *c = ctx;
    return cmp_names(&c->g->decls[c->plan->order[*(const size_t *)a]].t,
                     &c->g->decls[c->plan->order[*(const size_t *)b]].t);
}

/*
 * Rank 0: the shard (from 1) of every declaration: tensors in the canonical
 * order of the plan, each shard filled greedily up to `max` bytes, a larger
 * tensor alone in its shard; and the index. Returns the number of shards, or
 * 0 if out of memory.
 */
static int assign_shards(const mst_plan *plan, const mst_gathered *g, uint64_t max,
                         uint64_t *shard_of_decl, mst_buf *index)
{
    size_t nt = plan->ntensors, cap = nt ? nt : 1;
    size_t *by_name = malloc(cap * sizeof *by_name);
    uint64_t *shard = malloc(cap * sizeof *shard), fill = 0, total = 0;
    mst_set_entry *entries = malloc(cap * sizeof *entries);
    name_ctx ctx = {plan, g};
    int nshards = 1;
    if (!by_name || !shard || !entries) {
        nshards = 0;
        goto out;
    }
    for (size_t k = 0; k < nt; k++) {
        const mst_decl *d = &g->decls[plan->order[k]];
        uint64_t nbytes = 0;
        mst_err ignored;
        mst_check_tensor(d->t.name, d->t.name_len, d->t.dtype, d->t.ndim, d->t.shape, 0, &nbytes,
                         &ignored);
        if (fill > 0 && fill + nbytes > max) {
            nshards++;
            fill = 0;
        }
        shard[k] = (uint64_t)nshards;
        fill += nbytes;
        total += nbytes;
        if (nbytes > max) /* alone in its shard */
            fill = max + 1;
        by_name[k] = k;
    }
    qsort_r(by_name, nt, sizeof *by_name, cmp_pos_by_name, &ctx);
    for (size_t i = 0; i < g->ndecls; i++) {
        size_t lo = 0, hi = nt;
        while (lo < hi) { /* every declaration's name is one of the tensors' */
            size_t mid = lo + (hi - lo) / 2;
            int c = cmp_names(&g->decls[plan->order[by_name[mid]]].t, &g->decls[i].t);
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        shard_of_decl[i] = lo < nt ? shard[by_name[lo]] : 1;
    }
    for (size_t k = 0; k < nt; k++) {
        const mst_decl *d = &g->decls[plan->order[k]];
        entries[k].name = d->t.name;
        entries[k].name_len = d->t.name_len;
        entries[k].shard = (int)shard[k];
    }
    if (nshards > 1 && mst_set_index_json(index, entries, nt, nshards, total) != MST_OK)
        nshards = 0;
out:
    free(by_name);
    free(shard);
    free(entries);
    return nshards;
}

/* Collective: a multi-file save into directory w->path. */
static int commit_set(mst_writer *w)
{
    MPI_Comm comm = w->comm;
    mst_err local = w->first, *res = &w->last, none;
    mst_buf blob, index;
    mst_gathered g;
    mst_plan plan;
    uint64_t *all = NULL, *mine = NULL;
    char **tmps = NULL;
    local_tensor *saved = w->tensors, *subset = NULL;
    size_t nsaved = w->ntensors, nmeta = 0;
    mst_kv *meta = NULL;
    mst_own_decls own;
    int nshards = 0, has_format = 0;

    memset(&g, 0, sizeof g);
    memset(&plan, 0, sizeof plan);
    mst_buf_init(&blob, 0);
    mst_buf_init(&index, 0);
    mst_err_clear(&none);

    /* the whole set first: validation, and every tensor's shard */
    check_options(w, &local);
    for (size_t i = 0; i < w->nmeta; i++)
        has_format |= w->meta[i].key_len == 6 && !memcmp(w->meta[i].key, "format", 6);
    meta = malloc((w->nmeta + 1) * sizeof *meta);
    mine = malloc((w->ntensors ? w->ntensors : 1) * sizeof *mine);
    subset = malloc((w->ntensors ? w->ntensors : 1) * sizeof *subset);
    if (local.code == MST_OK) {
        pack_all(w, &blob, w->meta, w->nmeta);
        if (!mst_buf_ok(&blob) || !meta || !mine || !subset)
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory packing metadata",
                        w->rank);
    }
    if (mst_agree(comm, &local, res))
        goto out;
    if (meta) {
        if (w->nmeta)
            memcpy(meta, w->meta, w->nmeta * sizeof *meta);
        nmeta = w->nmeta;
        if (!has_format) {
            meta[nmeta].key = "format";
            meta[nmeta].key_len = 6;
            meta[nmeta].value = "pt";
            meta[nmeta].value_len = 2;
            nmeta++;
        }
    }
    own = own_decls(w, w->meta, w->nmeta);
    if (mst_gather_decls(comm, &blob, &own, &g, res))
        goto out;
    mst_buf_free(&blob);
    if (w->rank == 0 &&
        mst_plan_build(&plan, g.decls, g.ndecls, g.meta, g.nmeta, w->size, &local) == MST_OK &&
        mst_set_check_dir(w->path, &local) == MST_OK) {
        all = malloc((g.ndecls ? g.ndecls : 1) * sizeof *all);
        if (!all || !(nshards = assign_shards(&plan, &g, w->max_shard, all, &index)))
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank 0: out of memory assigning shards");
    }
    if (mst_agree(comm, &local, res))
        goto out;
    if (MPI_Bcast(&nshards, 1, MPI_INT, 0, comm) != MPI_SUCCESS) {
        mst_err_set(res, MST_ERR_MPI, "rank %d: MPI_Bcast of the shard count failed", w->rank);
        goto out;
    }
    if (mst_scatter_u64(comm, &g, all, mine, w->ntensors, res))
        goto out;
    mst_gathered_free(&g);
    mst_plan_free(&plan);
    tmps = calloc((size_t)nshards, sizeof *tmps);
    if (!tmps)
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
    if (mst_agree(comm, &local, res))
        goto out;

    /* each shard: all ranks write their tensors of it into a temporary file */
    for (int k = 1; k <= nshards; k++) {
        char *path = mst_set_shard_path(w->path, k, nshards);
        size_t n = 0;
        int rc;
        for (size_t i = 0; i < nsaved; i++)
            if (mine[i] == (uint64_t)k)
                subset[n++] = saved[i];
        w->tensors = subset;
        w->ntensors = n;
        if (!path)
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
        rc = save_file(w, path ? &none : &local, meta, nmeta, path ? path : w->path,
                       &tmps[k - 1]);
        w->tensors = saved;
        w->ntensors = nsaved;
        free(path);
        if (rc != MST_OK)
            goto discard;
    }

    /* rank 0 switches sets */
    if (w->rank == 0)
        mst_set_commit(w->path, nshards, tmps, &index, w->fsync, &local);
    if (mst_agree(comm, &local, res) == MST_OK)
        goto out;
discard:
    if (w->rank == 0 && res->code != MST_OK && tmps)
        for (int k = 0; k < nshards; k++)
            mst_io_discard(tmps[k]);
out:
    w->tensors = saved;
    w->ntensors = nsaved;
    if (tmps)
        for (int k = 0; k < nshards; k++)
            free(tmps[k]);
    free(tmps);
    free(all);
    free(mine);
    free(subset);
    free(meta);
    mst_buf_free(&blob);
    mst_buf_free(&index);
    mst_gathered_free(&g);
    mst_plan_free(&plan);
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
    if (w->max_shard > 0)
        return commit_set(w);
    return save_file(w, &w->first, w->meta, w->nmeta, w->path, NULL);
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

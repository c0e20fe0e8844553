/* Private to the writer's files: the handle, the declarations it holds,
 * and the functions the steps of a save share.
 *   mst_writer.c     the handle: open, declarations, setters, options, commit, free
 *   mst_save.c       the single-file save, top-down (and the write of one file)
 *   mst_schedule.c   this rank's writes: order, batching, streams, strided boxes
 *   mst_set_save.c   the multi-file save (Hugging Face set)
 *   mst_async.c      the split-phase save (commit_begin / _test / _end) */
#ifndef MST_WRITER_IMPL_H
#define MST_WRITER_IMPL_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mst.h"
#include "mst_buf.h"
#include "mst_err.h"
#include "mst_exchange.h"
#include "mst_plan.h"

/* WRITER_BEGUN: between mst_writer_commit_begin and _end (w->async holds
 * the save in flight); WRITER_BEGIN_FAILED: begin failed, end repeats its
 * error. */
enum writer_state {
    WRITER_OPEN,
    WRITER_DONE,
    WRITER_FAILED_OPEN,
    WRITER_BEGUN,
    WRITER_BEGIN_FAILED
};

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

static inline const int64_t *box_start(const local_tensor *t)
{
    return t->t.shape + t->t.ndim;
}

static inline const int64_t *box_count(const local_tensor *t)
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
#define ARENA_MAX_WORDS (1u << 20)  /* 8 MiB: later blocks (huge-page advice from 4 MiB) */
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
    int checksums;      /* mst_writer_set_checksums: the "mst.crc32" entry */
    int snapshot;       /* mst_writer_set_snapshot: begin copies this rank's bytes */
    enum writer_state state;
    struct mst_async *async; /* the split-phase save in flight (mst_async.c) */

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

/* ---- mst_writer.c -------------------------------------------------------- */

/* Collective: every rank's options (fsync, shard size, the writer's hints)
 * must match; a mismatch or a bad hint is recorded in *local. */
void mst_writer_agree_options(mst_writer *w, mst_err *local);

/* ---- mst_save.c ----------------------------------------------------------- */

/* Local. Packs this rank's declarations for the gather; rank 0 packs nothing:
 * its own are read in place (mst_save_own_decls). */
void mst_save_pack(const mst_writer *w, const local_tensor *tensors, size_t ntensors,
                   mst_buf *blob, const mst_kv *meta, size_t nmeta);
mst_own_decls mst_save_own_decls(const local_tensor *tensors, size_t ntensors,
                                 const mst_kv *meta, size_t nmeta);

/* Local (rank 0). After mst_plan_build of `decls`: *expected (the file's
 * size), the table of strided boxes (unless collective), the declarations'
 * begin offsets made absolute; plan->order freed. */
int mst_save_finish_plan(const mst_writer *w, const mst_decl *decls, size_t ndecls,
                         mst_plan *plan, uint64_t *expected, uint64_t **rtab, size_t *rlen,
                         mst_err *err);

/*
 * Collective. The single-file save: `tensors` and `meta` into one file at
 * `path`. `first` is the first local error to agree on (the caller's
 * declarations).
 */
int mst_save_file(mst_writer *w, const mst_err *first, const local_tensor *tensors,
                  size_t ntensors, const mst_kv *meta, size_t nmeta, const char *path);

/*
 * Collective. Writes one planned file: rank 0 creates the temporary file
 * beside `path` (unless *local already failed), every rank writes its
 * `tensors` at `offsets` (non-zero ranks pass them allocated, rank 0 NULL:
 * it scatters them from plan->begin; all freed here), the strided boxes of
 * `rtab` move, every rank syncs and closes. Then rank 0 renames it over path,
 * or with keep_tmp keeps it and returns its name in *keep_tmp (the others
 * NULL). On rank 0, *plan is the file's plan with absolute offsets and
 * `counts` its declarations per rank (as from the gather); `expected` the
 * file's size. Frees *counts, plan->begin and *rtab.
 */
int mst_save_write(mst_writer *w, mst_err *local, const local_tensor *tensors, size_t ntensors,
                   mst_gathered *counts, mst_plan *plan, uint64_t *offsets, uint64_t expected,
                   uint64_t **rtab, size_t rlen, const char *path, char **keep_tmp);

/* ---- mst_schedule.c ------------------------------------------------------- */

typedef struct write_item write_item;

typedef struct write_list {
    const local_tensor *tensors; /* the items' declarations */
    struct mst_crc_acc *crc;     /* checksums on: the CRCs of the bytes written */
    write_item **items; /* sorted by file offset */
    size_t n;
    int rounds;         /* collective rounds this rank needs */
    void *block;        /* every item, one allocation */
    int gather_small;   /* several ranks: small tensors go through mst_sched_write_small */
} write_list;

/* A small piece of the file this rank writes: `len` bytes at `offset`. */
typedef struct mst_piece {
    uint64_t offset, len;
    const unsigned char *data;
} mst_piece;

/* Local. Where each of `tensors` goes (at offsets[i], absolute; MST_PLAN_SKIP:
 * nowhere), in file order. */
int mst_sched_plan(const mst_writer *w, const local_tensor *tensors, size_t ntensors,
                   const uint64_t *offsets, write_list *l, mst_err *err);
void mst_sched_free(write_list *l);

/* Local. This rank's independent writes: the header on rank 0, then every
 * whole tensor, chosen replica and contiguous box in file order, straight
 * from the caller's buffers, runs of small neighbours through one buffer. */
int mst_sched_write_own(const mst_writer *w, MPI_File fh, const char *tmp, const mst_plan *plan,
                        const write_list *l, mst_err *err);

/* Local. With l->gather_small: this rank's small pieces (the header on rank
 * 0 when it is small and written first, then the whole tensors, replicas and
 * contiguous boxes under MST_SCHED_SMALL bytes), in file order, into *out
 * (malloc'd). */
int mst_sched_small_pieces(const mst_writer *w, const mst_plan *plan, const write_list *l,
                           unsigned char len8[8], mst_piece **out, size_t *n, mst_err *err);

/* Collective (mst_sched_small.c). With l->gather_small (several ranks): the
 * small pieces of every rank, sent to the ranks that write each stretch of
 * the file, which write what they receive in one call per round. Every rank
 * calls it, also after a local failure (it then sends nothing); the caller
 * agrees on *err. */
int mst_sched_write_small(const mst_writer *w, MPI_File fh, const char *tmp,
                          const mst_plan *plan, const write_list *l, mst_err *err);

/* Tensors under this many bytes are batched (one rank) or gathered (several). */
#define MST_SCHED_SMALL ((uint64_t)64 << 10)

/* With hint mst_strided_writes=collective. Collective: the strided boxes, in
 * rounds, through a handle shared by all ranks, with file views and
 * MPI_File_write_at_all. Runs only when some rank has strided boxes. */
int mst_sched_write_strided(const mst_writer *w, const char *tmp, const write_list *l,
                            mst_err *err);

/* The memory of declaration `local` of the local_tensor array ctx (an
 * mst_redist_data_fn). */
const void *mst_sched_tensor_data(void *ctx, size_t local);

/* Bytes of the redistribution buffer: the hint, or the staging size up to
 * MST_REDIST_BUFFER. */
uint64_t mst_sched_redist_buffer(const mst_writer *w);

/* ---- mst_async.c --------------------------------------------------------- */

/* Local. Abandons a split-phase save in flight (mst_writer_free between begin
 * and end): the thread stopped and joined, the descriptor closed, rank 0
 * removes the temporary file. No MPI call. */
void mst_async_abandon(mst_writer *w);

/* ---- mst_set_save.c ------------------------------------------------------- */

/* Collective: a multi-file save into directory w->path. */
int mst_set_save(mst_writer *w);

#endif

/* The loader's internals (mst_loader_* in mst.h). Files: mst_loader.c (open:
 * the header(s) read by rank 0 and shared; declarations; lookups),
 * mst_loader_plan.c (pure: the table of every rank's requests, the chunks
 * and rounds, the byte ranges of a chunk that some box needs) and
 * mst_loader_load.c (the collective load: agreement, reads, exchange). */
#ifndef MST_LOADER_H
#define MST_LOADER_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mst.h"
#include "mst_err.h"
#include "mst_header.h"

/* One safetensors file of the loader. */
typedef struct ml_file {
    char *path;
    uint64_t file_size, header_size;
    mst_header h;
    MPI_File fh;
    int opened;
} ml_file;

/* One declared read of this rank. */
typedef struct ml_req {
    size_t file, tensor;
    int ndim;        /* byte dimensions (at least 1) */
    uint64_t *sb, *cb; /* box in byte dimensions (ndim each), malloc'd together */
    uint64_t bytes;
    void *buf;
    mst_sink_fn sink;
    void *ctx;
    int whole;       /* the box is the whole tensor */
} ml_req;

struct mst_loader {
    MPI_Comm comm;
    MPI_Info info;
    int rank, nranks;
    int failed;          /* the open failed: everything else is MST_ERR_STATE */
    ml_file *files;
    size_t nfiles;
    ml_req *reqs;
    size_t nreqs, cap;
    mst_err first;       /* the first declaration error since the last load */
    mst_err last;
    uint64_t buffer;     /* read buffer (hint mst_load_buffer) */
    uint64_t header_bytes;
    int verify;          /* mst_loader_set_verify */
    mst_load_stats stats;
};

/* Tensor byte dimensions: gb[0..nd) with nd >= 1 (a scalar or a tensor with
 * ndim 0 is [bytes]); returns nd. gb holds at least max(ndim, 1) entries. */
int ml_byte_dims(const mst_header_tensor *t, uint64_t *gb);

/* ---- the plan (mst_loader_plan.c, no MPI) ------------------------------- */

/* Table record of one request (u64 words): file, tensor, owner rank, owner's
 * request index, stream flag, nd, sb[nd], cb[nd]. */
#define ML_REC_FIXED 6

typedef struct ml_box {
    const uint64_t *sb, *cb;
    int owner;
    int stream;
    int direct;      /* read by its owner straight into its buffer (no chunk) */
    size_t seq;
    size_t file, tensor;
} ml_box;

/* A tensor some rank asked for, with its boxes [b0, b1) of the sorted box
 * array. */
typedef struct ml_group {
    size_t file, tensor;
    int nd;
    const uint64_t *gbv;
    uint64_t offset; /* absolute file offset of the tensor's first byte */
    uint64_t bytes;
    int m;
    uint64_t slab;
    size_t b0, b1;
} ml_group;

typedef struct ml_chunk {
    size_t group;
    uint64_t row, a, l;
    uint64_t first, bytes;
    uint64_t stage;
    int dest;
    size_t round;
} ml_chunk;

typedef struct ml_plan {
    ml_box *boxes;
    size_t nboxes;
    ml_group *g;
    size_t ng;
    uint64_t *dims; /* the groups' byte dimensions */
    ml_chunk *c;
    size_t nc, rounds;
    uint64_t need;  /* this rank's read buffer */
    uint64_t stream_need; /* this rank's largest streamed receive of a round */
} ml_plan;

/* A box at least this big (or a sixteenth of the read buffer if less) whose
 * bytes are one contiguous range of its file, that no other box of its
 * tensor overlaps and that is not streamed is direct: its owner reads it
 * into its buffer itself, with no read buffer, chunk, round or exchange. */
#define ML_DIRECT_MIN ((uint64_t)1 << 18)
/* The most chunks whose readers are given contiguous stretches of the file
 * (spread in mst_loader_plan.c); above it they are dealt in turns. */
#define ML_SPREAD_MAX ((size_t)1 << 16)

/* Local. Builds the plan from the gathered table (every rank the same). The
 * loader supplies the files (for the tensors' dims and offsets). 0, or -1
 * (malformed table, out of memory). */
int ml_plan_build(ml_plan *p, const uint64_t *tab, size_t len, const ml_file *files,
                  size_t nfiles, int nranks, int me, uint64_t buffer);
void ml_plan_free(ml_plan *p);

/* The chunk as a box: cs, cc (nd each). */
void ml_chunk_box(const ml_group *g, const ml_chunk *c, uint64_t *cs, uint64_t *cc);

/* A direct box's range: its first byte relative to its tensor's, and its
 * length (its bytes, dense). */
void ml_box_range(const ml_group *g, const ml_box *b, uint64_t *first, uint64_t *len);

/* Calls emit(ctx, off, len) for the byte ranges of chunk c (offsets within
 * the chunk) that some box of its group needs, in increasing order, adjacent
 * ranges merged. Returns what emit returned first non-zero, -1 out of
 * memory, else 0. */
typedef int (*ml_emit_fn)(void *ctx, uint64_t off, uint64_t len);
int ml_chunk_needs(const ml_plan *p, const ml_chunk *c, ml_emit_fn emit, void *ctx);

/* ---- the load (mst_loader_load.c) --------------------------------------- */
int ml_load(mst_loader *l);

#endif

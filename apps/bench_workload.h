/* mst-bench's synthetic checkpoint: which tensors it has, which rank holds
 * which tensor or box, and their bytes (a pure function of the seed, the
 * tensor's name and the byte position, so a check needs no copy). */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <stdint.h>

#include "mst.h"

enum { L_WHOLE, L_ROWS, L_COLS };
extern const char *const bench_layout_names[3];
enum { MIX_UNIFORM, MIX_TRANSFORMER };
extern const char *const bench_mix_names[2];

typedef struct bench_workload {
    uint64_t size;    /* total tensor bytes asked for */
    uint64_t tensors; /* how many */
    uint64_t seed;
    int dtype;        /* an mst_dtype, or -1: a mix */
    int mix, layout;  /* MIX_*, L_* */
    uint64_t width;   /* elements of a 2-D tensor's last dimension (default 1024) */
    uint64_t wsum;    /* transformer: sum of the big tensors' weights (bench_workload_init) */
} bench_workload;

/* Sets the defaults (256 MiB, 64 tensors, seed 1, dtype mix, uniform, whole). */
void bench_workload_defaults(bench_workload *wl);
/* Derives what the options decide (call after changing them). */
void bench_workload_init(bench_workload *wl);

typedef struct tensor {
    char name[48];
    mst_dtype dtype;
    int ndim;
    int64_t shape[2];
    uint64_t nbytes;
} tensor;

/* Tensor i of the checkpoint. */
void bench_describe(const bench_workload *wl, uint64_t i, tensor *t);

/* What one rank holds: a whole tensor or one box of it. */
typedef struct piece {
    uint64_t index;
    tensor t;
    int whole;
    int64_t start[2], count[2];
    uint64_t nbytes;
    unsigned char *data;
} piece;

/* This rank's pieces (index order), their data filled, in one slab of
 * *slab_bytes. Tensor i is rank i % size's (L_WHOLE), or split over all
 * ranks by row or column blocks. -1 when out of memory. */
int bench_make_pieces(const bench_workload *wl, int rank, int size, piece **out, size_t *nout,
                      unsigned char **slab, uint64_t *slab_bytes);

/* Rank `rank`'s piece of tensor i (no data), as bench_make_pieces makes it:
 * 1 if that rank holds one, else 0. */
int bench_piece_of(const bench_workload *wl, uint64_t i, int rank, int size, piece *p);

/* The key of a tensor's bytes, and bytes [off, off+len) of its data. */
uint64_t bench_name_key(uint64_t seed, const char *name);
void bench_fill(unsigned char *buf, uint64_t off, uint64_t len, uint64_t key);

#endif

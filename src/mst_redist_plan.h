/* The pure half of the redistribution (mst_redist.h): what moves where.
 * Rank 0 builds the table of the tensors with strided boxes from the
 * declarations; every rank reads the same table back and cuts it into the
 * same chunks, each with a destination rank, a round and a place in that
 * rank's buffer, and intersects boxes with chunks. No MPI, no I/O: the MPI
 * exchange and the writes are in mst_redist.c. */
#ifndef MST_REDIST_PLAN_H
#define MST_REDIST_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "mst_err.h"
#include "mst_plan.h"

/* Chunks are at least this big (or the whole tensor), so small tensors are
 * not cut into crumbs. */
#define MST_REDIST_MIN_CHUNK ((uint64_t)1 << 20)

/*
 * Local (rank 0). The table of the tensors with at least one strided box:
 * their file offset, byte dimensions and name, their strided boxes (rank,
 * position in that rank's list, box in byte dimensions) and the byte ranges
 * of their contiguous boxes. `data_start` is the file offset of the data
 * section. Sets *tab = NULL, *len = 0 when no tensor has a strided box.
 */
int mst_redist_table(const mst_decl *decls, size_t ndecls, const mst_plan *plan,
                     uint64_t data_start, uint64_t **tab, size_t *len, mst_err *err);

/* One tensor of the table, pointing into it. */
typedef struct mst_redist_tensor {
    uint64_t offset, bytes;
    int ndim;
    int m;           /* chunks: dimension they are cut along */
    uint64_t slab;   /* bytes of one index of dimension m */
    const uint64_t *gb;
    const char *name;
    size_t name_len;
    size_t nstrided, ndirect;
    const uint64_t *boxes;  /* (rank, local, sb[ndim], cb[ndim]) each */
    const uint64_t *direct; /* (first, bytes) each */
} mst_redist_tensor;

/* A chunk: one contiguous range of a tensor's bytes, gathered in one rank's
 * buffer and written by that rank. */
typedef struct mst_redist_chunk {
    size_t tensor;
    uint64_t row;    /* linear index over the dimensions before m */
    uint64_t a, l;   /* indices [a, a + l) along m */
    uint64_t first;  /* first byte within the tensor */
    uint64_t bytes;
    uint64_t stage;  /* offset in the destination's buffer */
    int dest;
    size_t round;
} mst_redist_chunk;

/* The tensors of the table and their chunks, in rounds (chunks of a round
 * are neighbours in c). */
typedef struct mst_redist_plan {
    mst_redist_tensor *t;
    size_t nt;
    mst_redist_chunk *c;
    size_t nc, rounds;
    uint64_t need;   /* this rank's buffer: the largest fill of a round */
} mst_redist_plan;

/* Local. Reads the table tab[0..len) into *out (malloc'd; its entries point
 * into tab). 0, or -1 when it is malformed or memory runs out. */
int mst_redist_read(const uint64_t *tab, size_t len, mst_redist_tensor **out, size_t *nout);

/* Local. Cuts every tensor of s->t into chunks (s->c, malloc'd) of at most
 * `buffer` bytes and gives each a destination, a round and a place in the
 * destination's buffer; s->need is rank me's buffer size. Every rank
 * computes the same. 0, or -1 when memory runs out. */
int mst_redist_cut(mst_redist_plan *s, int nranks, int me, uint64_t buffer);

/* A chunk of a tensor of byte dimensions gb[ndim], cut along dimension m
 * (row: the linear index over the dimensions before m; [a, a + l) along m),
 * as a box: start cs, count cc. The writer's redistribution and the loader
 * cut tensors the same way. */
void mst_chunk_box(int ndim, const uint64_t *gb, int m, uint64_t row, uint64_t a, uint64_t l,
                   uint64_t *cs, uint64_t *cc);

/* The chunk as a box: start cs, count cc (byte dimensions). */
void mst_redist_chunk_box(const mst_redist_tensor *r, const mst_redist_chunk *c, uint64_t *cs,
                          uint64_t *cc);

/* The part of box (sb, cb) inside box (cs, cc), all ndim byte dimensions:
 * start lo, count cnt. 0 when they share no byte. */
int mst_redist_intersect(size_t ndim, const uint64_t *sb, const uint64_t *cb, const uint64_t *cs,
                         const uint64_t *cc, uint64_t *lo, uint64_t *cnt);

#endif

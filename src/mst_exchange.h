/* The MPI side of a save: agreeing on outcomes, gathering every rank's
 * declarations to rank 0, scattering offsets back. Tensor data never passes
 * through here. */
#ifndef MST_EXCHANGE_H
#define MST_EXCHANGE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mst_buf.h"
#include "mst_err.h"
#include "mst_header.h"
#include "mst_plan.h"

/*
 * Collective over comm. Every rank passes its own outcome (code 0 = fine).
 * Returns the code of the lowest-numbered failing rank and copies its message
 * into *out on every rank, so all ranks return the same thing. `mine` and
 * `out` may be the same object.
 */
int mst_agree(MPI_Comm comm, const mst_err *mine, mst_err *out);

/* MPI_Wait for one request that may take long (other ranks wait while rank 0
 * plans or decodes): tests it, spinning for 2 ms, then sleeping between tests
 * (up to 1 ms), so that an oversubscribed node's waiting ranks do not take
 * the cores from the one that works. Returns MPI_Test's error code. */
int mst_wait_idle(MPI_Request *req);

/* Local. Packs one rank's declarations for the gather: the counts first,
 * then exactly nt tensors, then exactly nkv metadata entries. */
void mst_pack_counts(mst_buf *out, size_t nt, size_t nkv);
void mst_pack_tensor(mst_buf *out, const mst_tensor_desc *t, int kind, const int64_t *start,
                     const int64_t *count);
void mst_pack_kv(mst_buf *out, const mst_kv *kv);

typedef struct mst_gathered {
    char *blobs;          /* every rank's packed bytes, rank order */
    mst_decl *decls;      /* rank-major, local order within a rank */
    size_t ndecls;
    mst_meta_decl *meta;
    size_t nmeta;
    int *counts;          /* declarations per rank */
} mst_gathered;

/* Rank 0's own declarations, read where they are instead of packed and
 * copied: a million small ones cost tens of MB a copy. `tensor` fills
 * out->t and out->kind of declaration i (a slice's shape followed in memory
 * by its box, as in mst_decl); names and shapes must outlive *g. */
typedef struct mst_own_decls {
    size_t ntensors;
    void (*tensor)(void *ctx, size_t i, mst_decl *out);
    void *ctx;
    const mst_kv *meta;
    size_t nmeta;
} mst_own_decls;

/*
 * Collective over comm. Gathers every rank's packed declarations to rank 0
 * and unpacks them there (names and shapes point into blobs). With `own`
 * (read on rank 0 only), rank 0 packs nothing (`mine` is empty there) and
 * its declarations come from `own`, pointing into the caller's memory. The
 * outcome is agreed: the same code on every rank. Non-root ranks get an
 * empty *g.
 */
int mst_gather_decls(MPI_Comm comm, const mst_buf *mine, const mst_own_decls *own,
                     mst_gathered *g, mst_err *err);
void mst_gathered_free(mst_gathered *g);
/* Local. Frees the declarations and metadata, keeps the counts per rank (all
 * that mst_scatter_u64 needs); ndecls stays. */
void mst_gathered_drop_decls(mst_gathered *g);

/*
 * Collective over comm. Rank 0 sends each rank `nmine` values of `all`
 * (rank-major, counts from g); every rank receives its own into `mine`.
 */
int mst_scatter_u64(MPI_Comm comm, const mst_gathered *g, const uint64_t *all, uint64_t *mine,
                    size_t nmine, mst_err *err);

/* Collective over comm: rank 0's string to every rank (malloc'd into *s). */
int mst_bcast_string(MPI_Comm comm, char **s, mst_err *err);

#endif

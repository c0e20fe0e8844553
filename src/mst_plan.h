/* The plan: from every rank's declarations to the canonical order, each
 * tensor's offsets and the exact header bytes. Pure (no MPI, no I/O), so it
 * runs and is tested on one process; the same input gives the same bytes
 * whatever the number of ranks. */
#ifndef MST_PLAN_H
#define MST_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "mst_buf.h"
#include "mst_err.h"
#include "mst_header.h"

/* One declaration by one rank. A tensor is one declaration today; the
 * rank/local pair is what lets a tensor be made of pieces from several ranks
 * later (slices, replicas). */
typedef struct mst_decl {
    mst_tensor_desc t;
    int rank;
    uint32_t local; /* position in that rank's own list */
} mst_decl;

typedef struct mst_meta_decl {
    mst_kv kv;
    int rank;
} mst_meta_decl;

typedef struct mst_plan {
    size_t ntensors;
    size_t *order;    /* declaration indices in canonical order */
    uint64_t *begin;  /* per declaration: begin offset in the data buffer */
    uint64_t data_len;
    mst_buf header;   /* the header bytes, padded (N = header.len) */
} mst_plan;

/*
 * Validates one tensor: name (non-empty, not "__metadata__", UTF-8), dtype,
 * shape (ndim >= 0, no negative dimension, no overflow of elements, bits or
 * MST_MAX_OFFSET), whole bytes. Sets *nbytes. Messages name the tensor and
 * `rank`. Shared by the writer's local checks and the plan.
 */
int mst_check_tensor(const char *name, size_t name_len, int dtype, int64_t ndim,
                     const int64_t *shape, int rank, uint64_t *nbytes, mst_err *err);

/* Validates a metadata key and value (UTF-8). */
int mst_check_metadata(const char *key, size_t key_len, const char *value, size_t value_len,
                       int rank, mst_err *err);

/*
 * Builds the plan for `decls` (every rank's tensors) and `meta` (every rank's
 * metadata entries): validation, duplicate names, metadata conflicts, the
 * reference writer's order (dtype descending, then name byte-wise),
 * contiguous offsets, header bytes. On failure the plan is empty.
 */
int mst_plan_build(mst_plan *plan, const mst_decl *decls, size_t ndecls,
                   const mst_meta_decl *meta, size_t nmeta, mst_err *err);
void mst_plan_free(mst_plan *plan);

#endif

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

/* How a rank declared a tensor. */
enum mst_decl_kind {
    MST_DECL_WHOLE = 0,   /* mst_writer_add: this rank alone holds it */
    MST_DECL_SLICE = 1,   /* mst_writer_add_slice: one box of it */
    MST_DECL_REPLICA = 2  /* mst_writer_add_replica: a full copy, like other ranks */
};

/* One declaration by one rank. A tensor is the group of declarations that
 * share its name: one whole, or boxes from any ranks, or replicas. */
typedef struct mst_decl {
    mst_tensor_desc t;      /* for slices: the global shape, followed in memory by
                               the box: start[ndim], then count[ndim] */
    int rank;
    uint32_t local;         /* position in that rank's own list */
    uint8_t kind;           /* enum mst_decl_kind */
} mst_decl;

/* A slice's box, stored right after its shape (a million declarations do
 * not carry two pointers each for the few that are slices). */
static inline const int64_t *mst_decl_start(const mst_decl *d)
{
    return d->t.shape + d->t.ndim;
}

static inline const int64_t *mst_decl_count(const mst_decl *d)
{
    return d->t.shape + 2 * (size_t)d->t.ndim;
}

/* plan.begin of a replica that another holder writes */
#define MST_PLAN_SKIP UINT64_MAX

typedef struct mst_meta_decl {
    mst_kv kv;
    int rank;
} mst_meta_decl;

typedef struct mst_plan {
    size_t ntensors;
    size_t *order;    /* per tensor, in canonical order: index of one of its declarations */
    uint64_t *begin;  /* per declaration: begin offset of its tensor in the data buffer,
                         or MST_PLAN_SKIP for a replica another holder writes */
    uint64_t data_len;
    mst_buf header;   /* the header bytes, padded (N = header.len) */
    /* with checksums (mst_plan_build_crc): where the value of "mst.crc32"
     * starts in header (8 * ntensors placeholder digits), and each tensor's
     * bytes in canonical (data-offset) order */
    size_t crc_at;
    uint64_t *tlen;
} mst_plan;

/* The metadata key of checksums (see mst.h). */
#define MST_CRC_KEY "mst.crc32"

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
 * Builds the plan for `decls` (every rank's tensors, ranks 0..nranks-1) and
 * `meta` (every rank's metadata entries): validation, duplicate names, slices
 * that tile their tensor exactly, replicas that agree, metadata conflicts,
 * the reference writer's order (dtype descending, then name byte-wise),
 * contiguous offsets, the writer of each replica (balancing the bytes each
 * rank writes), header bytes. On failure the plan is empty.
 */
int mst_plan_build(mst_plan *plan, const mst_decl *decls, size_t ndecls,
                   const mst_meta_decl *meta, size_t nmeta, int nranks, mst_err *err);
/* The same with checksums on: the header gets the metadata entry
 * "mst.crc32" with 8 * ntensors placeholder digits (plan->crc_at, plan->tlen
 * set); a metadata entry "mst.crc32" of the caller is then an error
 * (MST_ERR_INVALID_ARGUMENT). */
int mst_plan_build_crc(mst_plan *plan, const mst_decl *decls, size_t ndecls,
                       const mst_meta_decl *meta, size_t nmeta, int nranks, int checksums,
                       mst_err *err);
void mst_plan_free(mst_plan *plan);

#endif

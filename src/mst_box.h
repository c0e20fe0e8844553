/* Boxes of tensors (tensor-parallel slices): validation, formatting and the
 * byte geometry that the writer turns into writes. Pure: no MPI, no I/O.
 *
 * Geometry works on "byte dimensions": the dimensions of the tensor with the
 * last one counted in bytes (elements * bits / 8), so every dtype, F4 and F6
 * included, becomes a tensor of bytes. A box must then cover whole bytes. */
#ifndef MST_BOX_H
#define MST_BOX_H

#include <stddef.h>
#include <stdint.h>

#include "mst_err.h"

/* "[0:4, 2:8]" (start:end per dimension), cut to fit cap. */
char *mst_box_format(char *out, size_t cap, int ndim, const int64_t *start, const int64_t *count);

/*
 * Validates a box of a tensor whose name, dtype and global shape are already
 * valid (mst_check_tensor): start and count non-negative and inside the
 * shape (MST_ERR_SLICE_BOUNDS), whole bytes along the last dimension for
 * sub-byte dtypes (MST_ERR_PARTIAL_BYTES). Sets *nbytes to the box's bytes.
 */
int mst_check_box(const char *name, size_t name_len, int dtype, int ndim, const int64_t *shape,
                  const int64_t *start, const int64_t *count, int rank, uint64_t *nbytes,
                  mst_err *err);

/* Elements of the box (product of count). */
uint64_t mst_box_volume(int ndim, const int64_t *count);

/* The box in byte dimensions: gb, sb, cb get ndim entries (ndim 0: none). */
void mst_box_bytes(int ndim, const int64_t *shape, const int64_t *start, const int64_t *count,
                   int bits, uint64_t *gb, uint64_t *sb, uint64_t *cb);

/*
 * The layout of a box in its tensor's bytes (byte dimensions as above):
 * `first` is the byte offset of its first byte within the tensor; its bytes
 * form runs of `run` contiguous bytes; `k` is the dimension the runs start
 * at: dimensions before k are strided, dimensions after k are whole. A box is
 * one contiguous range iff every dimension before k has count 1.
 */
typedef struct mst_box_layout {
    uint64_t first;
    uint64_t run;
    int k;
    int contiguous;
    uint64_t bytes;
} mst_box_layout;

void mst_box_layout_of(int ndim, const uint64_t *gb, const uint64_t *sb, const uint64_t *cb,
                       mst_box_layout *out);

/* Do two boxes share an element? Empty boxes share nothing. */
int mst_box_overlap(int ndim, const int64_t *s1, const int64_t *c1, const int64_t *s2,
                    const int64_t *c2);

#endif

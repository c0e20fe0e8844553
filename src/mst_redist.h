/* Strided boxes (column blocks, 2-D blocks of tensor-parallel slices) made
 * contiguous before they reach the file: mst's own two-phase I/O.
 *
 * The bytes of every tensor that has a strided box are cut into chunks, each
 * one contiguous range of the file. Every chunk has a destination rank. In
 * rounds, one MPI_Alltoallw moves the parts of the strided boxes that fall
 * into each chunk from their owners straight into the destination's buffer
 * (derived datatypes on both sides, no packing by hand); the destination then
 * writes each chunk with independent, count-checked MPI_File_write_at calls.
 * The bytes of contiguous boxes of the same tensor are written by their
 * owners as usual and skipped by the destination.
 *
 * Memory: two buffers per rank of half the redistribution size (below) and
 * the table, O(boxes of the tensors concerned); no rank holds a full tensor
 * that it did not declare, nor more of another rank's bytes than its buffer.
 * No file is opened collectively and every write is independent, so a failed
 * write on one rank can never leave the others inside a collective I/O call.
 *
 * Files: mst_redist_plan.c (the table and the chunks, no MPI; its header
 * mst_redist_plan.h is included here) and mst_redist.c (the exchange and the
 * writes). */
#ifndef MST_REDIST_H
#define MST_REDIST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mst_err.h"
#include "mst_plan.h"
#include "mst_redist_plan.h"

struct mst_crc_acc;

/* Bytes of the per-rank buffer at most (the staging size, if smaller): 1
 * MiB. Each round of the redistribution costs an agreement and an
 * MPI_Alltoallw, so a smaller buffer means more rounds; a larger one leaves a
 * core's cache between the exchange that fills it and the write that empties
 * it. Column splits of 8 BF16 [2048, 4096] tensors, medians of 6, seconds
 * (docs/BENCHMARKS.md, issue 19, "Blocking writes in the redistribution"),
 * 256 KiB / 512 KiB / 1 MiB / 2 MiB: 0.044 / 0.040 / 0.038 / 0.036 at 2
 * ranks and 0.055 / 0.053 / 0.050 / 0.054 at 4 under OMPIO, 0.045 / 0.039 /
 * 0.036 / 0.033 and 0.054 / 0.049 / 0.048 / 0.052 under ROMIO; the earlier
 * 8 MiB took 0.47-0.55 s. On a parallel file system the hint
 * mst_redist_buffer can ask for stripe-sized chunks. */
#define MST_REDIST_BUFFER ((uint64_t)1 << 20)

/* Collective over comm: rank 0's table to every rank (malloc'd into *tab). */
int mst_redist_share(MPI_Comm comm, uint64_t **tab, size_t *len, mst_err *err);

/* The caller's memory of one of this rank's boxes. */
typedef const void *(*mst_redist_data_fn)(void *ctx, size_t local);

/*
 * Collective over comm (every rank calls it with the same table). Moves and
 * writes the strided boxes through `fh` (this rank's handle on the temporary
 * file `path`). `buffer` is the per-rank buffer size (the ranks' minimum is
 * used). Every round starts with an agreement, so a failure on one rank
 * (memory, a datatype, a write) stops every rank at the same round with the
 * same code and message. With `crc` (checksums on), the CRC of every chunk
 * this rank writes goes there (mst_crc.h).
 */
int mst_redist_write(MPI_Comm comm, const uint64_t *tab, size_t len, mst_redist_data_fn data,
                     void *ctx, MPI_File fh, const char *path, uint64_t buffer,
                     struct mst_crc_acc *crc, mst_err *err);

/* Local. The datatype of region (count cnt at lo) of a C-order byte array
 * with dimensions dims[ndim], and the displacement of its first byte; the
 * region lies inside one chunk, so every count fits an int. Used by the
 * redistribution and by the loader. MPI's code. */
int mst_redist_region_type(int ndim, const uint64_t *dims, const uint64_t *lo,
                           const uint64_t *cnt, MPI_Aint *disp, MPI_Datatype *t);

#endif

/* The split-phase save's hints and helpers (mst_async_opts.c), used by
 * mst_async.c. */
#ifndef MST_ASYNC_H
#define MST_ASYNC_H

#include <stdint.h>

#include "mst_err.h"
#include "mst_writer_impl.h"

/* Direct writes on the posix path when the hint mst_split_direct is not
 * given. */
#define MST_SPLIT_DIRECT_DEFAULT 1

/* Local. The data path: the hint mst_split_io ("auto", the default: mpiio
 * at MPI_THREAD_MULTIPLE, posix below; "mpiio", refused below
 * MPI_THREAD_MULTIPLE; "posix"). *mpiio: 1 mpiio, 0 posix. */
int mst_async_choose_path(const mst_writer *w, int *mpiio, mst_err *err);

/* Local. The hint mst_split_direct: *direct 1 or 0. */
int mst_async_split_direct(const mst_writer *w, int *direct, mst_err *err);

/* Local. The hints mst_snapshot_limit (*limit, 0: none) and
 * mst_snapshot_cache (*keep). */
int mst_async_snapshot_limit(const mst_writer *w, uint64_t *limit, int *keep, mst_err *err);

#endif

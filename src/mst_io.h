/* MPI-IO of a save: opening the temporary file, counted chunked writes,
 * collective writes of strided boxes, sync, close (the POSIX steps around
 * them, target checks to rename, are in mst_commit.h). Each MPI file is
 * opened on MPI_COMM_SELF: a failure on one rank is then a local return value that the
 * writer agrees on, never a collective call some ranks did not reach. */
#ifndef MST_IO_H
#define MST_IO_H

#include <mpi.h>
#include <stdint.h>

#include "mst_err.h"

/* Largest count passed to one MPI-IO call (counts are int). */
#define MST_IO_CHUNK ((uint64_t)1 << 30)
/* Bytes read at a time when strided boxes are read back and compared. */
#define MST_IO_VERIFY_CHUNK ((uint64_t)8 << 20)

/* Local. Creates (rank 0, exclusive) or opens (other ranks) the temporary file
 * for writing, with the caller's hints. With `exists` (may be NULL): set to 1
 * when an exclusive create failed because the name was taken. A name longer
 * than Open MPI's OMPIO survives (244 bytes) is opened through
 * /proc/self/fd/<its directory>/<base>; close the file with mst_io_close. */
int mst_io_open(const char *tmp, int create, MPI_Info hints, int rank, MPI_File *fh,
                int *exists, mst_err *err);

/* Local. Opens path for reading on MPI_COMM_SELF, a long name as
 * mst_io_open does; close it with mst_io_close. */
int mst_io_open_read(const char *path, MPI_Info hints, int rank, MPI_File *fh, mst_err *err);

/* Local. Closes a file opened by mst_io_open (or the read-back), releasing
 * what a long name needed; MPI_FILE_NULL is fine. MPI_File_close's code. */
int mst_io_close(MPI_File *fh);

/* Local. Writes len bytes at offset in chunks of at most MST_IO_CHUNK,
 * checking the count of every call: a short count is a failure. `what` names
 * the bytes in messages ("tensor \"w\"", "the header"); `path` is the file,
 * looked at to explain a failure (a full file system). */
int mst_io_write(MPI_File fh, const char *path, uint64_t offset, const void *buf, uint64_t len,
                 int rank, const char *what, mst_err *err);

/* Local. Writes the n runs (file offset off[i], len[i] bytes; sorted, not
 * overlapping, each at most MST_IO_CHUNK, total at most MST_IO_CHUNK) whose
 * bytes lie back to back in buf, with one MPI_File_write_at through a file
 * view of the runs (an hindexed type; the view is reset to bytes after), so
 * MPI-IO gets them in one call instead of n. Without data sieving (hint
 * romio_ds_write=disable with the view): the gaps are other ranks' bytes,
 * never read and written back. Checks the count. Messages as
 * mst_io_write, with the runs' span. */
int mst_io_write_runs(MPI_File fh, const char *path, const uint64_t *off, const uint64_t *len,
                      size_t n, const void *buf, int rank, const char *what, mst_err *err);

/* Collective over comm. Opens the (existing) temporary file on every rank of
 * comm, for the collective writes of strided boxes. */
int mst_io_open_shared(MPI_Comm comm, const char *tmp, MPI_Info hints, int rank, MPI_File *fh,
                       mst_err *err);

/* A box of a tensor whose bytes are strided in the file (a column block, a
 * 2-D block): runs of `run` bytes, repeated over the dimensions before `k`. */
typedef struct mst_io_box {
    uint64_t offset;      /* absolute file offset of the box's first byte */
    int ndim;
    const uint64_t *gb;   /* the tensor's byte dimensions (see mst_box.h) */
    const uint64_t *cb;   /* the box's byte dimensions */
    int k;
    uint64_t run;
    uint64_t bytes;
    const void *data;     /* the box, C order */
    const char *what;     /* names it in messages */
} mst_io_box;

/*
 * Collective over comm: every rank calls it, with n = 0 if it has nothing.
 * Writes `boxes` (sorted by offset; boxes of different tensors, so their byte
 * ranges do not interleave) through a file view on `fh` (from
 * mst_io_open_shared) with MPI_File_write_at_all, straight from the boxes'
 * memory, in rounds of at most MST_IO_CHUNK bytes per rank (every rank makes
 * the same number of calls), checking the count of every call. MPI-IO's
 * collective buffering then turns the strided pieces of all ranks into large
 * contiguous writes. On a local failure the rank keeps taking part with empty
 * writes, so no rank is left waiting; the caller agrees on the outcome.
 */
int mst_io_write_boxes(MPI_Comm comm, MPI_File fh, const char *path, const mst_io_box *boxes,
                       size_t n, int rank, mst_err *err);

/* Local. Reads this rank's strided boxes back from `path` (own read-only
 * handle, same file view) and compares them with memory. A collective write
 * can lose data without an error: OMPIO 4.1's vulcan ignores a short or
 * failed pwritev on the aggregating rank and reports success. */
int mst_io_verify_boxes(const char *path, MPI_Info hints, const mst_io_box *boxes, size_t n,
                        int rank, mst_err *err);

/* Local. MPI_File_sync; then MPI_File_close (always, even after a failed sync).
 * `collective`: collective writes happened (the message may then say that one
 * of them could have failed unreported). */
int mst_io_sync_close(MPI_File *fh, int sync, int collective, int rank, mst_err *err);

#endif

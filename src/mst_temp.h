/* Temporary files of a save and who owns them. A save's temporary file is
 * "<target>.tmp-mst.<host>.<pid>.<16 hex digits>"; while the save runs, rank 0
 * holds an open-file-description (OFD) write lock on one byte of it, far
 * beyond any data (MST_TEMP_LOCK_OFFSET), so MPI-IO's own byte-range locks
 * never meet it. The kernel drops the lock when the process dies, however it
 * dies, so "lockable" means "no running save owns it". */
#ifndef MST_TEMP_H
#define MST_TEMP_H

#include <mpi.h>

#include "mst_err.h"

#define MST_TEMP_LOCK_OFFSET ((long long)1 << 62)

/* Local (rank 0). Creates a fresh temporary file beside `path` (O_EXCL)
 * with MPI_File_open and the caller's hints (*fh: that handle, for writing),
 * takes the ownership lock and checks that the name still refers to the
 * file it locked (a concurrent mst-clean may have removed it in between; then
 * it tries another name). On success *tmp is the malloc'd name and *lock_fd
 * the descriptor holding the lock (-1 where the file system has no locks);
 * the caller keeps it open until the file is renamed or removed. */
int mst_temp_create(const char *path, MPI_Info hints, char **tmp, int *lock_fd, MPI_File *fh,
                    mst_err *err);

/* Local. Closes the lock descriptor (releasing the lock); NULL-safe, -1-safe. */
void mst_temp_release(int *lock_fd);

#endif

/* The commit protocol of a save, the part after the bytes are written: rank
 * 0 alone, plain POSIX, no MPI. Used by the single-file save (mst_save.c)
 * and by the switch of a multi-file set (mst_set.c):
 *
 *   1. mst_commit_resolve       a symbolic link at the target is followed;
 *      mst_commit_check_target  before anything is created: the target's
 *                               directory exists and is writable, the target
 *                               is a regular file or nothing yet;
 *   2. mst_commit_temp_name     the temporary file's name beside the target
 *                               (mst_temp.c creates and locks it);
 *   3. mst_commit_check_size    after every rank synced and closed it: it has
 *                               exactly the planned size;
 *   4. mst_commit_rename        the atomic rename over the target (the switch
 *                               point), then the directory's fsync;
 *   5. mst_commit_discard       on any failure before the rename: the
 *                               temporary file goes.
 */
#ifndef MST_COMMIT_H
#define MST_COMMIT_H

#include <stddef.h>
#include <stdint.h>

#include "mst_err.h"

/* 16 lowercase hex digits of randomness (getrandom, else time and pid) and
 * a NUL: the unique part of temporary and journal names. */
void mst_commit_random_id(char id[17]);

/* This host's short name (up to the first dot), with every character other
 * than [A-Za-z0-9_-] replaced by '_': safe inside a file name. */
void mst_commit_host(char *host, size_t cap);

/* A fresh temporary name beside path:
 * "<path>.tmp-mst.<host>.<pid>.<16 hex digits>", the file name part of path
 * cut to MST_COMMIT_TEMP_BASE bytes; malloc'd, NULL if out of memory. */
#define MST_COMMIT_TEMP_BASE 100
char *mst_commit_temp_name(const char *path);

/* The file a save to `path` replaces: `path`, or, when it is a symbolic link,
 * where the link leads (followed to the end, relative links from their own
 * directory), so that "latest -> step_1000.safetensors" stays a link and
 * step_1000.safetensors gets the new bytes. malloc'd; NULL (err set) when out
 * of memory or after 40 links. */
char *mst_commit_resolve(const char *path, mst_err *err);

/* The target's directory exists, is a directory and is writable; the target,
 * if it exists, is a regular file (not a directory, FIFO, device, socket). */
int mst_commit_check_target(const char *path, mst_err *err);

/* The temporary file has exactly expected_size bytes. */
int mst_commit_check_size(const char *tmp, uint64_t expected_size, mst_err *err);

/* Checks the temporary file's size, renames it over path and, with durable,
 * fsyncs the directory (opened before the rename, so that only the fsync can
 * fail once the target is replaced). A file it replaces is held open across
 * the rename and closed by a short detached thread (no MPI call, no signal),
 * so that freeing its blocks (0.09 s per 256 MiB on ext4 here) is not the
 * caller's wait. */
int mst_commit_rename(const char *tmp, const char *path, uint64_t expected_size, int durable,
                      mst_err *err);

/* fsync of a directory: 0, or -1 with errno set. */
int mst_commit_sync_dir(const char *dir);

/* Removes the temporary file; NULL and a missing file are fine. */
void mst_commit_discard(const char *tmp);

#endif

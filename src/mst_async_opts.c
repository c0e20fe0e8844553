/*
 * The split-phase save's hints and helpers that need none of its state
 * (mst_async.c): the data path, direct writes and the snapshot's limits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "mst.h"
#include "mst_async.h"
#include "mst_err.h"
#include "mst_writer_impl.h"

/* Local. The data path: the hint mst_split_io ("auto", the default: mpiio
 * at MPI_THREAD_MULTIPLE, posix below; "mpiio", refused below
 * MPI_THREAD_MULTIPLE; "posix"). */
int mst_async_choose_path(const mst_writer *w, int *mpiio, mst_err *err)
{
    char v[64];
    int flag = 0, level = MPI_THREAD_SINGLE;
    if (MPI_Query_thread(&level) != MPI_SUCCESS)
        level = MPI_THREAD_SINGLE;
    *mpiio = level == MPI_THREAD_MULTIPLE;
    if (w->hints == MPI_INFO_NULL ||
        MPI_Info_get(w->hints, "mst_split_io", (int)sizeof v - 1, v, &flag) != MPI_SUCCESS ||
        !flag || !strcmp(v, "auto"))
        return MST_OK;
    if (!strcmp(v, "posix")) {
        *mpiio = 0;
        return MST_OK;
    }
    if (strcmp(v, "mpiio") != 0)
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "rank %d: hint mst_split_io is \"%.40s\"; expected auto, mpiio or "
                           "posix",
                           w->rank, v);
    if (!*mpiio)
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "rank %d: hint mst_split_io=mpiio needs MPI initialised with "
                           "MPI_THREAD_MULTIPLE (MPI_Query_thread gives %s): the library's "
                           "thread may call MPI only then",
                           w->rank, level == MPI_THREAD_SINGLE   ? "MPI_THREAD_SINGLE"
                                    : level == MPI_THREAD_FUNNELED ? "MPI_THREAD_FUNNELED"
                                                                   : "MPI_THREAD_SERIALIZED");
    return MST_OK;
}

/* Local. The hint mst_split_direct: "1" (the default) or "0". */
int mst_async_split_direct(const mst_writer *w, int *direct, mst_err *err)
{
    char v[64];
    int flag = 0;
    *direct = MST_SPLIT_DIRECT_DEFAULT;
    if (w->hints == MPI_INFO_NULL ||
        MPI_Info_get(w->hints, "mst_split_direct", (int)sizeof v - 1, v, &flag) !=
            MPI_SUCCESS ||
        !flag)
        return MST_OK;
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "rank %d: hint mst_split_direct is \"%.40s\"; expected 0 or 1",
                           w->rank, v);
    *direct = v[0] == '1';
    return MST_OK;
}

/* Local. The hints mst_snapshot_limit (bytes, decimal; 0 none) and
 * mst_snapshot_cache ("1", the default, or "0"). */
int mst_async_snapshot_limit(const mst_writer *w, uint64_t *limit, int *keep, mst_err *err)
{
    char v[64];
    int flag = 0;
    *limit = 0;
    *keep = 1;
    if (w->hints != MPI_INFO_NULL &&
        MPI_Info_get(w->hints, "mst_snapshot_cache", (int)sizeof v - 1, v, &flag) ==
            MPI_SUCCESS &&
        flag) {
        if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
            return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                               "rank %d: hint mst_snapshot_cache is \"%.40s\"; expected 0 or 1",
                               w->rank, v);
        *keep = v[0] == '1';
    }
    flag = 0;
    if (w->hints == MPI_INFO_NULL ||
        MPI_Info_get(w->hints, "mst_snapshot_limit", (int)sizeof v - 1, v, &flag) !=
            MPI_SUCCESS ||
        !flag)
        return MST_OK;
    {
        char *end = NULL;
        unsigned long long n = strtoull(v, &end, 10);
        if (v[0] < '0' || v[0] > '9' || *end)
            return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                               "rank %d: hint mst_snapshot_limit is \"%.40s\"; expected a "
                               "number of bytes",
                               w->rank, v);
        *limit = n;
    }
    return MST_OK;
}

/* The snapshot's memory (mst_snapshot.c): anonymous mappings of the
 * library's own, 2 MiB aligned and marked for transparent huge pages, one of
 * which is kept for the next snapshot of the process. Used by mst_async.c;
 * mst_snapshot_reserve (mst.h) fills the cache ahead of the first save. */
#ifndef MST_SNAPSHOT_H
#define MST_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

typedef struct mst_snapmem {
    void *map;           /* the mapping (len bytes), or NULL */
    size_t len;
    unsigned char *data; /* its first 2 MiB boundary: room for the bytes asked */
} mst_snapmem;

/* Local. Memory for `bytes`: the cached mapping if it is large enough and
 * use_cache, else a new one. 0, or -1 when out of memory (m cleared). */
int mst_snapmem_get(mst_snapmem *m, uint64_t bytes, int use_cache);

/* Local. Lets m go: into the cache (keep; the larger of it and what the
 * cache holds stays, the other is unmapped) or back to the system. */
void mst_snapmem_put(mst_snapmem *m, int keep);

#endif

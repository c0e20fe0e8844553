/*
 * The snapshot's memory. A snapshot is an anonymous mapping of its own
 * (returned to the system whatever the allocator keeps), aligned to 2 MiB
 * and marked for transparent huge pages: a copy into it faults one page in
 * 512 (on a virtual machine here, 128 MiB into fresh 4 KiB pages took
 * 0.7 s, into huge pages 0.03-0.17 s).
 *
 * Fresh pages still cost a fault each on first touch, which on the virtual
 * machines measured made a copy into fresh memory 20-50 times slower than
 * into memory touched before. So the mapping of a finished snapshot is kept
 * for the next snapshot of the process (one mapping, the largest seen; the
 * hint mst_snapshot_cache=0 of a writer returns its mapping instead), and
 * mst_snapshot_reserve fills that cache ahead of the first save, outside
 * the training loop. The only state the library keeps between calls; a
 * mutex guards it.
 */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, madvise */
#include "mst_snapshot.h"

#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mst.h"

#define SNAP_ALIGN ((size_t)2 << 20)

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static void *cache_map;
static size_t cache_len;

static unsigned char *aligned(void *p)
{
    return (unsigned char *)(((uintptr_t)p + SNAP_ALIGN - 1) & ~(uintptr_t)(SNAP_ALIGN - 1));
}

/* The mapping length that holds `bytes` from its first 2 MiB boundary, or 0
 * if none can. */
static size_t map_len(uint64_t bytes)
{
    if (bytes > SIZE_MAX - 2 * SNAP_ALIGN)
        return 0;
    return (size_t)bytes + SNAP_ALIGN;
}

static int map_new(mst_snapmem *m, size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    m->map = p;
    m->len = len;
    m->data = aligned(p);
#ifdef MADV_HUGEPAGE
    (void)madvise(m->data, len - (size_t)(m->data - (unsigned char *)p), MADV_HUGEPAGE);
#endif
    return 0;
}

/* The cached mapping if it holds `len` bytes (taken out of the cache). */
static int take_cached(mst_snapmem *m, size_t len)
{
    int got = 0;
    pthread_mutex_lock(&cache_lock);
    if (cache_map && cache_len >= len) {
        m->map = cache_map;
        m->len = cache_len;
        m->data = aligned(cache_map);
        cache_map = NULL;
        cache_len = 0;
        got = 1;
    }
    pthread_mutex_unlock(&cache_lock);
    return got;
}

int mst_snapmem_get(mst_snapmem *m, uint64_t bytes, int use_cache)
{
    size_t len = map_len(bytes);
    memset(m, 0, sizeof *m);
    if (len == 0)
        return -1;
    if (use_cache && take_cached(m, len))
        return 0;
    return map_new(m, len);
}

void mst_snapmem_put(mst_snapmem *m, int keep)
{
    void *drop = m->map;
    size_t drop_len = m->len;
    memset(m, 0, sizeof *m);
    if (!drop)
        return;
    if (keep) {
        pthread_mutex_lock(&cache_lock);
        if (drop_len > cache_len) { /* keep the larger one */
            void *old = cache_map;
            size_t old_len = cache_len;
            cache_map = drop;
            cache_len = drop_len;
            drop = old;
            drop_len = old_len;
        }
        pthread_mutex_unlock(&cache_lock);
    }
    if (drop)
        munmap(drop, drop_len);
}

int mst_snapshot_reserve(uint64_t bytes)
{
    mst_snapmem m;
    long pg = sysconf(_SC_PAGESIZE);
    size_t len, page = pg > 0 ? (size_t)pg : 4096;
    if (bytes == 0) { /* return the cache to the system */
        if (take_cached(&m, 0))
            mst_snapmem_put(&m, 0);
        return MST_OK;
    }
    if ((len = map_len(bytes)) == 0)
        return MST_ERR_NO_MEMORY;
    pthread_mutex_lock(&cache_lock);
    if (cache_map && cache_len >= len) {
        pthread_mutex_unlock(&cache_lock);
        return MST_OK; /* a snapshot of this size has run, or was reserved */
    }
    pthread_mutex_unlock(&cache_lock);
    if (map_new(&m, len) != 0)
        return MST_ERR_NO_MEMORY;
    /* the first touch, here rather than in a save's begin: a write to every
     * page the snapshot of `bytes` will use */
    for (size_t at = 0; at < (size_t)bytes; at += page)
        m.data[at] = 0;
    mst_snapmem_put(&m, 1);
    return MST_OK;
}

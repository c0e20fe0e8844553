/* Hugging Face multi-file sets: shard names, the index file, and the switch
 * from the previous set to the new one (rank 0, plain POSIX, no MPI). */
#ifndef MST_SET_H
#define MST_SET_H

#include <stddef.h>
#include <stdint.h>

#include "mst_buf.h"
#include "mst_err.h"

#define MST_SET_SINGLE "model.safetensors"
#define MST_SET_INDEX "model.safetensors.index.json"

/* "model-0000k-of-0000n.safetensors" (k from 1), or MST_SET_SINGLE when
 * n == 1; malloc'd "dir/name", NULL if out of memory. */
char *mst_set_shard_path(const char *dir, int k, int n);

/* One weight_map entry. */
typedef struct mst_set_entry {
    const char *name;
    size_t name_len;
    int shard; /* from 1 */
} mst_set_entry;

/* The index as transformers writes it: json.dumps(index, indent=2,
 * sort_keys=True) + "\n" (ASCII only: other characters as \uXXXX, surrogate
 * pairs above U+FFFF). `entries` are sorted here by name. */
int mst_set_index_json(mst_buf *out, mst_set_entry *entries, size_t n, int nshards,
                       uint64_t total_size);

/* Rank 0, before a set save: dir exists, is a writable directory, and holds
 * no journal of an unfinished save. */
int mst_set_check_dir(const char *dir, mst_err *err);

/*
 * Rank 0, after every shard is complete under its temporary name tmps[k]
 * (k = 0..n-1): writes the index (when n > 1) and switches sets: journal,
 * previous set moved aside, new shards renamed into place, the index (or the
 * single file) last, then the old files and the journal removed. With
 * durable, the files and the directory are synced at each step. On failure
 * before the switch point everything new is removed and the previous set is
 * moved back.
 */
int mst_set_commit(const char *dir, int n, char **tmps, const mst_buf *index, int durable,
                   mst_err *err);

#endif

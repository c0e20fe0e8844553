/* mst-inspect on a Hugging Face index file (model.safetensors.index.json):
 * checks the whole set. Every shard the weight_map names is a valid
 * safetensors file (by the reader's rules); every weight_map entry is in the
 * shard it names; every tensor of every shard is in the weight_map, under its
 * shard; no tensor is in two shards; metadata.total_size is the sum of the
 * tensors' bytes. */
#define _GNU_SOURCE
#include "set_check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"

typedef struct shard {
    const char *file; /* as the index names it */
    mst_reader *r;
} shard;

static int fail(FILE *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(FILE *err, const char *path, const char *fmt, ...)
{
    va_list ap;
    fprintf(err, "mst-inspect: %s: invalid set: ", path);
    va_start(ap, fmt);
    vfprintf(err, fmt, ap);
    va_end(ap);
    fputc('\n', err);
    return 1;
}

int mst_inspect_index(const char *path, int check_only, FILE *out, FILE *err)
{
    mst_shardset *ix = NULL;
    shard *shards = NULL; /* in order of first mention in the weight_map */
    size_t nshards = 0, nentries, ntensors = 0;
    uint64_t bytes = 0, total = 0;
    int rc = 1, present = 0;
    if (mst_shardset_open(&ix, path) != MST_OK) {
        fprintf(err, "mst-inspect: %s\n", ix ? mst_shardset_error(ix) : "out of memory");
        goto out;
    }
    mst_shardset_total_size(ix, &total, &present);
    if (!present) {
        fail(err, path, "no \"metadata\": {\"total_size\": N}");
        goto out;
    }
    nentries = mst_shardset_tensor_count(ix);
    shards = calloc(mst_shardset_shard_count(ix) + 1, sizeof *shards);
    if (!shards)
        goto out;
    /* the shards, each opened once */
    for (size_t k = 0; k < nentries; k++) {
        const char *name, *file;
        mst_tensor_info info;
        size_t i;
        mst_shardset_tensor(ix, k, &name, &file);
        for (i = 0; i < nshards && strcmp(shards[i].file, file); i++)
            ;
        if (i == nshards) {
            size_t at;
            for (at = 0; strcmp(mst_shardset_shard(ix, at), file) != 0; at++)
                ;
            shards[nshards++].file = file;
            if (mst_reader_open(&shards[i].r, mst_shardset_shard_path(ix, at)) != MST_OK) {
                fail(err, path, "shard %s: %s", file,
                     shards[i].r ? mst_reader_error(shards[i].r) : "out of memory");
                goto out;
            }
        }
        if (mst_reader_find(shards[i].r, name, &info) != MST_OK) {
            fail(err, path, "tensor \"%s\" is not in %s, where the weight_map puts it", name,
                 file);
            goto out;
        }
    }
    /* every tensor of every shard: in the weight_map, under that shard, once */
    for (size_t i = 0; i < nshards; i++) {
        size_t n = mst_reader_count(shards[i].r);
        for (size_t k = 0; k < n; k++) {
            mst_tensor_info info;
            const char *where;
            mst_reader_tensor(shards[i].r, k, &info);
            if (mst_shardset_find(ix, info.name, &where) != MST_OK) {
                fail(err, path, "tensor \"%s\" of %s is missing from the weight_map", info.name,
                     shards[i].file);
                goto out;
            }
            if (strcmp(where, shards[i].file) != 0) {
                fail(err, path, "tensor \"%s\" is in both %s and %s", info.name, shards[i].file,
                     where);
                goto out;
            }
            bytes += info.end - info.begin;
            ntensors++;
        }
    }
    if (ntensors != nentries) {
        fail(err, path, "the weight_map has %zu entries but the shards hold %zu tensors",
             nentries, ntensors);
        goto out;
    }
    if (bytes != total) {
        fail(err, path, "metadata.total_size is %" PRIu64 " but the shards hold %" PRIu64
                        " bytes of tensors",
             total, bytes);
        goto out;
    }
    if (!check_only)
        fprintf(out, "set %s: %zu shards, %zu tensors, %" PRIu64 " bytes; valid\n", path,
                nshards, ntensors, bytes);
    rc = 0;
out:
    for (size_t i = 0; i < nshards; i++)
        mst_reader_free(&shards[i].r);
    free(shards);
    mst_shardset_free(&ix);
    return rc;
}

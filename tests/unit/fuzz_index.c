/* libFuzzer target over the index reader of Hugging Face sets: the input is
 * the bytes of a model.safetensors.index.json, parsed by mst_shardset_open's
 * own code (mst_shardset_open_mem, without the file). It then checks the
 * invariants of every accepted index through the public mst_shardset_*
 * functions: shards sorted, unique, plain file names in the index's
 * directory; every tensor in a listed shard; lookups by name agree with the
 * first weight_map entry of that name. A violated invariant traps; a
 * rejected input must come with a message.
 *
 * Built with clang -fsanitize=fuzzer,address,undefined (MST_ENABLE_FUZZING),
 * and without libFuzzer by tests/unit/fuzz_replay.c (as fuzz_index_replay),
 * which feeds it the saved inputs of tests/unit/fuzz_index/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mst_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int mst_shardset_open_mem(mst_shardset **out, const char *text, size_t len, const char *path);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

#define DIR "ckpt/"

static void check_accepted(const mst_shardset *s)
{
    size_t ns = mst_shardset_shard_count(s), nt = mst_shardset_tensor_count(s);
    uint64_t total = 0;
    int present = -1;
    for (size_t i = 0; i < ns; i++) {
        const char *f = mst_shardset_shard(s, i), *p = mst_shardset_shard_path(s, i);
        REQUIRE(f && p && *f && !strchr(f, '/') && strcmp(f, ".") && strcmp(f, ".."));
        REQUIRE(strncmp(p, DIR, strlen(DIR)) == 0 && strcmp(p + strlen(DIR), f) == 0);
        REQUIRE(i == 0 || strcmp(mst_shardset_shard(s, i - 1), f) < 0);
    }
    REQUIRE(mst_shardset_shard(s, ns) == NULL && mst_shardset_shard_path(s, ns) == NULL);
    REQUIRE(nt == 0 || ns > 0);
    for (size_t i = 0; i < nt; i++) {
        const char *name = NULL, *shard = NULL, *found = NULL;
        int used = 0;
        REQUIRE(mst_shardset_tensor(s, i, &name, &shard) == MST_OK && name && shard);
        for (size_t k = 0; k < ns; k++)
            used |= mst_shardset_shard(s, k) == shard;
        REQUIRE(used);
        REQUIRE(mst_shardset_find(s, name, &found) == MST_OK && found);
        /* the first entry of a name (cJSON keeps duplicates) is the one found */
        for (size_t j = 0; j < i; j++) {
            const char *n2 = NULL, *s2 = NULL;
            REQUIRE(mst_shardset_tensor(s, j, &n2, &s2) == MST_OK);
            if (!strcmp(n2, name)) {
                shard = s2;
                break;
            }
        }
        REQUIRE(found == shard);
    }
    REQUIRE(mst_shardset_tensor(s, nt, NULL, NULL) != MST_OK);
    REQUIRE(mst_shardset_total_size(s, &total, &present) == MST_OK);
    REQUIRE(present == 0 || present == 1);
    REQUIRE(mst_shardset_error(s) && mst_shardset_error(s)[0] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mst_shardset *s = NULL;
    int rc = mst_shardset_open_mem(&s, (const char *)data, size, DIR "model.safetensors.index.json");
    if (rc == MST_OK)
        check_accepted(s);
    else
        REQUIRE(rc != MST_ERR_NO_MEMORY ? s && mst_shardset_error(s)[0] != '\0' : 1);
    mst_shardset_free(&s);
    REQUIRE(s == NULL);
    return 0;
}

/* mst-inspect on a Hugging Face index file (model.safetensors.index.json):
 * checks the whole set. Every shard the weight_map names is a valid
 * safetensors file (by the reader's rules); every weight_map entry is in the
 * shard it names; every tensor of every shard is in the weight_map, under its
 * shard; no tensor is in two shards; metadata.total_size is the sum of the
 * tensors' bytes. */
#define _GNU_SOURCE
#include "set_check.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mst.h"

typedef struct shard {
    char *file; /* as the index names it */
    mst_reader *r;
    size_t claimed; /* weight_map entries naming it */
} shard;

static char *slurp(const char *path, FILE *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    if (!f) {
        fprintf(err, "mst-inspect: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t got;
        if (n + 65537 > cap) {
            char *b;
            cap = cap ? cap * 2 : 1 << 20;
            if (cap > ((size_t)1 << 31) || !(b = realloc(buf, cap))) {
                fprintf(err, "mst-inspect: %s: too large for an index file\n", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        got = fread(buf + n, 1, 65536, f);
        n += got;
        if (got < 65536)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

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
    char *text = slurp(path, err), *dir = NULL;
    const char *slash = strrchr(path, '/');
    cJSON *root = NULL, *wm, *meta, *ts, *e;
    shard *shards = NULL;
    size_t nshards = 0, nentries = 0, ntensors = 0;
    uint64_t bytes = 0;
    int rc = 1;
    if (!text)
        return 1;
    root = cJSON_Parse(text);
    free(text);
    if (!root) {
        fail(err, path, "not valid JSON");
        goto out;
    }
    wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    ts = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, "total_size") : NULL;
    if (!cJSON_IsObject(wm)) {
        fail(err, path, "no \"weight_map\" object");
        goto out;
    }
    if (!cJSON_IsNumber(ts) || ts->valuedouble < 0) {
        fail(err, path, "no \"metadata\": {\"total_size\": N}");
        goto out;
    }
    dir = strndup(path, slash ? (size_t)(slash - path) + 1 : 0);
    if (!dir)
        goto out;
    /* the shards, each opened once */
    cJSON_ArrayForEach(e, wm)
    {
        size_t i;
        nentries++;
        if (!cJSON_IsString(e) || !*e->valuestring || strchr(e->valuestring, '/')) {
            fail(err, path, "weight_map entry \"%s\" does not name a shard file", e->string);
            goto out;
        }
        for (i = 0; i < nshards && strcmp(shards[i].file, e->valuestring); i++)
            ;
        if (i == nshards) {
            shard *s = realloc(shards, (nshards + 1) * sizeof *s);
            char *p;
            if (!s)
                goto out;
            shards = s;
            memset(&shards[nshards], 0, sizeof *shards);
            if (!(shards[nshards].file = strdup(e->valuestring)) ||
                asprintf(&p, "%s%s", dir, e->valuestring) < 0)
                goto out;
            nshards++;
            if (mst_reader_open(&shards[i].r, p) != MST_OK) {
                fail(err, path, "shard %s: %s", e->valuestring,
                     shards[i].r ? mst_reader_error(shards[i].r) : "out of memory");
                free(p);
                goto out;
            }
            free(p);
        }
        shards[i].claimed++;
        {
            mst_tensor_info info;
            if (mst_reader_find(shards[i].r, e->string, &info) != MST_OK) {
                fail(err, path, "tensor \"%s\" is not in %s, where the weight_map puts it",
                     e->string, e->valuestring);
                goto out;
            }
        }
    }
    /* every tensor of every shard: in the weight_map, under that shard, once */
    for (size_t i = 0; i < nshards; i++) {
        size_t n = mst_reader_count(shards[i].r);
        for (size_t k = 0; k < n; k++) {
            mst_tensor_info info;
            cJSON *where;
            mst_reader_tensor(shards[i].r, k, &info);
            where = cJSON_GetObjectItemCaseSensitive(wm, info.name);
            if (!where) {
                fail(err, path, "tensor \"%s\" of %s is missing from the weight_map", info.name,
                     shards[i].file);
                goto out;
            }
            if (strcmp(where->valuestring, shards[i].file) != 0) {
                fail(err, path, "tensor \"%s\" is in both %s and %s", info.name, shards[i].file,
                     where->valuestring);
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
    if ((double)bytes != ts->valuedouble) {
        fail(err, path, "metadata.total_size is %.0f but the shards hold %" PRIu64
                        " bytes of tensors",
             ts->valuedouble, bytes);
        goto out;
    }
    if (!check_only)
        fprintf(out, "set %s: %zu shards, %zu tensors, %" PRIu64 " bytes; valid\n", path,
                nshards, ntensors, bytes);
    rc = 0;
out:
    for (size_t i = 0; i < nshards; i++) {
        free(shards[i].file);
        mst_reader_free(&shards[i].r);
    }
    free(shards);
    free(dir);
    cJSON_Delete(root);
    return rc;
}

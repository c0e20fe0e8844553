/* Reading a Hugging Face set's index (model.safetensors.index.json): the
 * public mst_shardset_* reader, local and without MPI. The set's names, the
 * index writer and the switch are in mst_set.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "mst_reader.h"
#include "mst_err.h"
#include "mst_set.h"

typedef struct index_entry {
    char *name;
    size_t shard; /* position in shards */
} index_entry;

struct mst_shardset {
    char **shards;        /* file names, sorted, unique */
    char **shard_paths;   /* the index's directory + file name */
    size_t nshards;
    index_entry *t;       /* weight_map entries, in the index's order */
    size_t nt;
    size_t *by_name;      /* positions in t, sorted by name (first entry of a name first) */
    uint64_t total_size;
    int has_total_size;
    mst_err err;
};

static int fail(mst_shardset *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(mst_shardset *s, int code, const char *fmt, ...)
{
    va_list ap;
    s->err.code = code;
    va_start(ap, fmt);
    vsnprintf(s->err.msg, sizeof s->err.msg, fmt, ap);
    va_end(ap);
    return code;
}

/* The whole file, NUL-terminated, up to 2 GiB. */
static int slurp(mst_shardset *s, const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    if (!f)
        return fail(s, MST_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    for (;;) {
        size_t got;
        if (n + 65536 + 1 > cap) {
            char *b;
            cap = cap ? 2 * cap : 1 << 20;
            if (cap > ((size_t)1 << 31) || !(b = realloc(buf, cap))) {
                free(buf);
                fclose(f);
                return fail(s, MST_ERR_FORMAT, "%s is too large for an index file", path);
            }
            buf = b;
        }
        got = fread(buf + n, 1, 65536, f);
        n += got;
        if (got < 65536)
            break;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        return fail(s, MST_ERR_IO, "cannot read %s: %s", path, strerror(e));
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    return MST_OK;
}

/* A shard file name as an index may give it: a plain name in the index's
 * directory. */
static int plain_file_name(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_pos(const void *a, const void *b, void *ctx)
{
    const index_entry *t = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(t[x].name, t[y].name);
    return c ? c : (x > y) - (x < y);
}

static size_t shard_pos(const mst_shardset *s, const char *file)
{
    size_t lo = 0, hi = s->nshards;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(s->shards[mid], file) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The weight_map's entries, the sorted shard list, the lookup by name. */
static int load(mst_shardset *s, const cJSON *wm, const char *path, const char *dir)
{
    const cJSON *e;
    const char **files;
    size_t n = 0, k = 0;
    cJSON_ArrayForEach(e, wm)
    {
        if (!cJSON_IsString(e) || !plain_file_name(e->valuestring))
            return fail(s, MST_ERR_FORMAT,
                        "%s: weight_map entry \"%s\" does not name a shard file in the index's "
                        "directory",
                        path, e->string);
        n++;
    }
    s->t = calloc(n ? n : 1, sizeof *s->t);
    s->by_name = malloc((n ? n : 1) * sizeof *s->by_name);
    s->shards = calloc(n ? n : 1, sizeof *s->shards);
    s->shard_paths = calloc(n ? n : 1, sizeof *s->shard_paths);
    files = malloc((n ? n : 1) * sizeof *files);
    if (!s->t || !s->by_name || !s->shards || !s->shard_paths || !files) {
        free(files);
        return fail(s, MST_ERR_NO_MEMORY, "out of memory");
    }
    cJSON_ArrayForEach(e, wm)
    {
        files[k++] = e->valuestring;
        if (!(s->t[s->nt].name = strdup(e->string))) {
            free(files);
            return fail(s, MST_ERR_NO_MEMORY, "out of memory");
        }
        s->by_name[s->nt] = s->nt;
        s->nt++;
    }
    qsort(files, k, sizeof *files, cmp_str);
    for (size_t i = 0; i < k; i++) {
        size_t len = strlen(dir) + strlen(files[i]) + 1;
        if (s->nshards > 0 && !strcmp(s->shards[s->nshards - 1], files[i]))
            continue;
        s->shards[s->nshards] = strdup(files[i]);
        s->shard_paths[s->nshards] = malloc(len);
        if (!s->shards[s->nshards] || !s->shard_paths[s->nshards]) {
            s->nshards++; /* freed with the set */
            free(files);
            return fail(s, MST_ERR_NO_MEMORY, "out of memory");
        }
        snprintf(s->shard_paths[s->nshards], len, "%s%s", dir, files[i]);
        s->nshards++;
    }
    free(files);
    k = 0;
    cJSON_ArrayForEach(e, wm)
        s->t[k++].shard = shard_pos(s, e->valuestring);
    qsort_r(s->by_name, s->nt, sizeof *s->by_name, cmp_pos, s->t);
    return MST_OK;
}

/* The index's text (NUL-terminated) of `file`, in directory `dir`: the
 * JSON, the total size, the weight_map. */
static int parse(mst_shardset *s, const char *text, const char *file, const char *dir)
{
    cJSON *root, *wm, *meta, *ts;
    root = cJSON_Parse(text);
    if (!root)
        return fail(s, MST_ERR_FORMAT, "%s is not valid JSON", file);
    wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(wm)) {
        fail(s, MST_ERR_FORMAT, "%s has no \"weight_map\" object", file);
        goto out;
    }
    meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    ts = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, "total_size") : NULL;
    if (ts) {
        /* integers up to 2^53 are exact in a double */
        double v = cJSON_IsNumber(ts) ? ts->valuedouble : -1;
        if (!(v >= 0 && v <= 9007199254740992.0 && v == (double)(uint64_t)v)) {
            fail(s, MST_ERR_FORMAT, "%s: metadata.total_size is not a non-negative integer",
                 file);
            goto out;
        }
        s->total_size = (uint64_t)v;
        s->has_total_size = 1;
    }
    load(s, wm, file, dir);
out:
    cJSON_Delete(root);
    return s->err.code;
}

/* The directory part of `file` ("" or ending in '/'), malloc'd. */
static char *dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    return strndup(file, slash ? (size_t)(slash - file) + 1 : 0);
}

int mst_shardset_open(mst_shardset **out, const char *path)
{
    mst_shardset *s;
    struct stat st;
    char *file = NULL, *dir = NULL, *text = NULL;
    if (!out)
        return MST_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!path)
        return MST_ERR_INVALID_ARGUMENT;
    if (!(s = calloc(1, sizeof *s)))
        return MST_ERR_NO_MEMORY;
    *out = s;
    /* the set's directory stands for its index */
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t len = strlen(path) + sizeof "/" MST_SET_INDEX;
        if ((file = malloc(len)))
            snprintf(file, len, "%s/%s", path, MST_SET_INDEX);
    } else {
        file = strdup(path);
    }
    if (!file)
        return fail(s, MST_ERR_NO_MEMORY, "out of memory");
    if (!(dir = dir_of(file))) {
        fail(s, MST_ERR_NO_MEMORY, "out of memory");
        goto out;
    }
    if (slurp(s, file, &text) != MST_OK)
        goto out;
    parse(s, text, file, dir);
    free(text);
out:
    free(file);
    free(dir);
    return s->err.code;
}

/* Internal (the fuzz target tests/unit/fuzz_index.c): mst_shardset_open of an
 * index file named `path` whose bytes are text[0, len), without reading it
 * (a NUL byte ends the text, as in a file read by mst_shardset_open). */
int mst_shardset_open_mem(mst_shardset **out, const char *text, size_t len, const char *path);

int mst_shardset_open_mem(mst_shardset **out, const char *text, size_t len, const char *path)
{
    mst_shardset *s;
    char *copy, *dir;
    if (!out)
        return MST_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!path || (!text && len))
        return MST_ERR_INVALID_ARGUMENT;
    if (!(s = calloc(1, sizeof *s)))
        return MST_ERR_NO_MEMORY;
    *out = s;
    copy = malloc(len + 1);
    dir = dir_of(path);
    if (!copy || !dir) {
        fail(s, MST_ERR_NO_MEMORY, "out of memory");
    } else {
        if (len)
            memcpy(copy, text, len);
        copy[len] = '\0';
        parse(s, copy, path, dir);
    }
    free(copy);
    free(dir);
    return s->err.code;
}

const char *mst_shardset_error(const mst_shardset *s)
{
    if (!s)
        return "NULL shard set";
    return s->err.msg;
}

size_t mst_shardset_shard_count(const mst_shardset *s)
{
    return s && s->err.code == MST_OK ? s->nshards : 0;
}

const char *mst_shardset_shard(const mst_shardset *s, size_t i)
{
    return i < mst_shardset_shard_count(s) ? s->shards[i] : NULL;
}

const char *mst_shardset_shard_path(const mst_shardset *s, size_t i)
{
    return i < mst_shardset_shard_count(s) ? s->shard_paths[i] : NULL;
}

size_t mst_shardset_tensor_count(const mst_shardset *s)
{
    return s && s->err.code == MST_OK ? s->nt : 0;
}

int mst_shardset_tensor(const mst_shardset *s, size_t i, const char **name, const char **shard)
{
    if (!s || !name || !shard)
        return MST_ERR_INVALID_ARGUMENT;
    if (i >= mst_shardset_tensor_count(s))
        return MST_ERR_NOT_FOUND;
    *name = s->t[i].name;
    *shard = s->shards[s->t[i].shard];
    return MST_OK;
}

int mst_shardset_find(const mst_shardset *s, const char *name, const char **shard)
{
    size_t lo = 0, hi;
    if (!s || !name || !shard)
        return MST_ERR_INVALID_ARGUMENT;
    hi = mst_shardset_tensor_count(s);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(s->t[s->by_name[mid]].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == mst_shardset_tensor_count(s) || strcmp(s->t[s->by_name[lo]].name, name) != 0)
        return MST_ERR_NOT_FOUND;
    *shard = s->shards[s->t[s->by_name[lo]].shard];
    return MST_OK;
}

int mst_shardset_total_size(const mst_shardset *s, uint64_t *out, int *present)
{
    if (!s || !out || !present)
        return MST_ERR_INVALID_ARGUMENT;
    if (s->err.code != MST_OK)
        return MST_ERR_STATE;
    *out = s->total_size;
    *present = s->has_total_size;
    return MST_OK;
}

void mst_shardset_free(mst_shardset **sp)
{
    mst_shardset *s;
    if (!sp || !*sp)
        return;
    s = *sp;
    *sp = NULL;
    for (size_t i = 0; i < s->nt; i++)
        free(s->t[i].name);
    for (size_t i = 0; i < s->nshards; i++) {
        free(s->shards[i]);
        free(s->shard_paths[i]);
    }
    free(s->t);
    free(s->by_name);
    free(s->shards);
    free(s->shard_paths);
    free(s);
}

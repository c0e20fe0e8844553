/* mst-merge: many safetensors files (or Hugging Face index files) into one.
 *
 *   mpirun -np N mst-merge -o OUT [options] IN...
 *
 * Rank 0 reads and validates every input's header (never its data), builds
 * the list of tensors and the merged metadata, and broadcasts them. The
 * output's bytes, in canonical order, are then cut into N equal ranges: rank
 * r streams the tensors (or row blocks of a tensor) that fall into range r,
 * straight from the inputs through the library's staging buffer, so one huge
 * input is shared by all ranks and no rank holds more than that buffer.
 *
 * Exit status: 0 merged, 1 failed (reason on stderr, from rank 0), 2 usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "mst.h"

/* ---- options ------------------------------------------------------------ */

typedef struct options {
    const char *out;
    const char **inputs;
    int ninputs;
    const char **include, **exclude;
    int ninclude, nexclude;
    char **meta_kv; /* "KEY=VALUE" */
    int nmeta;
    size_t staging;
    uint64_t max_shard; /* 0: one output file */
    const char *recover;
    int fsync;
    int checksums; /* --checksums */
    int progress; /* -1 auto (a terminal), 0 off, 1 on */
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -np N mst-merge -o OUT [options] IN...\n"
            "  Merge safetensors files (or model.safetensors.index.json files, which stand\n"
            "  for their shards) into one safetensors file, byte-identical to what\n"
            "  safetensors.torch.save_file writes for the union of their tensors. The work\n"
            "  is split over the ranks by bytes.\n"
            "  -o, --output OUT        the merged file (replaced atomically)\n"
            "  --max-shard-size SIZE   write a Hugging Face multi-file set into the directory\n"
            "                          OUT (created if missing) instead: shards of at most\n"
            "                          SIZE bytes of tensors (5GB, 500MB: decimal as the Hub\n"
            "                          counts; 2GiB: binary; or a number of bytes), plus\n"
            "                          model.safetensors.index.json; one shard is\n"
            "                          model.safetensors. The previous set is replaced\n"
            "                          atomically\n"
            "  --include GLOB          keep only tensors whose name matches (repeatable)\n"
            "  --exclude GLOB          drop tensors whose name matches (repeatable)\n"
            "  --metadata KEY=VALUE    set a __metadata__ entry (wins over the inputs')\n"
            "  --staging BYTES         staging buffer per rank (default 64 MiB)\n"
            "  --no-fsync              do not sync the output before the rename\n"
            "  --checksums             record every tensor's CRC-32 in the output (metadata\n"
            "                          \"mst.crc32\") and check each input tensor that has\n"
            "                          one against it (a mismatch fails the merge, naming\n"
            "                          the tensor); inputs' own \"mst.crc32\" entries are\n"
            "                          never copied (without --checksums they are dropped)\n"
            "  --progress              progress on stderr even when it is not a terminal\n"
            "  --quiet                 no progress and no summary line\n"
            "  mst-merge --recover DIR finish or roll back what an interrupted multi-file\n"
            "                          save left in DIR (no mpirun needed)\n"
            "  --version               print the version and exit\n"
            "  On success rank 0 prints one summary line on stdout (not with --quiet).\n"
            "exit status: 0 merged, 1 failed, 2 usage\n");
}

/* "5GB" (10^9), "2GiB" (2^30), "500MB", "1KB", or a number of bytes. */
static int parse_shard_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"", 1},         {"B", 1},           {"KB", 1000},       {"MB", 1000000},
                 {"GB", 1000000000}, {"TB", 1000000000000ull}, {"KiB", 1024}, {"MiB", 1 << 20},
                 {"GiB", 1 << 30}, {"TiB", 1ull << 40}};
    char *end;
    unsigned long long v;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (v == 0 || v > UINT64_MAX / units[i].mult)
            return -1;
        *out = v * units[i].mult;
        return 0;
    }
    return -1;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    if (!strcmp(end, "K") || !strcmp(end, "KiB"))
        v <<= 10;
    else if (!strcmp(end, "M") || !strcmp(end, "MiB"))
        v <<= 20;
    else if (!strcmp(end, "G") || !strcmp(end, "GiB"))
        v <<= 30;
    else if (*end)
        return -1;
    *out = (size_t)v;
    return 0;
}

/* Returns 0, or 2 on a usage error (message printed by rank 0 only). */
static int parse_args(int argc, char **argv, options *o, int rank)
{
    memset(o, 0, sizeof *o);
    o->fsync = 1;
    o->progress = -1;
    o->staging = MST_DEFAULT_STAGING;
    o->inputs = calloc((size_t)argc, sizeof *o->inputs);
    o->include = calloc((size_t)argc, sizeof *o->include);
    o->exclude = calloc((size_t)argc, sizeof *o->exclude);
    o->meta_kv = calloc((size_t)argc, sizeof *o->meta_kv);
    if (!o->inputs || !o->include || !o->exclude || !o->meta_kv)
        return 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && more)
            o->out = argv[++i];
        else if (!strcmp(a, "--include") && more)
            o->include[o->ninclude++] = argv[++i];
        else if (!strcmp(a, "--exclude") && more)
            o->exclude[o->nexclude++] = argv[++i];
        else if (!strcmp(a, "--metadata") && more && strchr(argv[i + 1], '='))
            o->meta_kv[o->nmeta++] = argv[++i];
        else if (!strcmp(a, "--staging") && more && parse_size(argv[i + 1], &o->staging) == 0)
            i++;
        else if (!strcmp(a, "--max-shard-size") && more &&
                 parse_shard_size(argv[i + 1], &o->max_shard) == 0)
            i++;
        else if (!strcmp(a, "--recover") && more)
            o->recover = argv[++i];
        else if (!strcmp(a, "--no-fsync"))
            o->fsync = 0;
        else if (!strcmp(a, "--checksums"))
            o->checksums = 1;
        else if (!strcmp(a, "--progress"))
            o->progress = 1;
        else if (!strcmp(a, "--quiet"))
            o->progress = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (rank == 0)
                usage(stdout);
            return 3;
        } else if (!strcmp(a, "--version")) {
            if (rank == 0)
                printf("mst-merge %s\n", mst_version_string());
            return 3;
        } else if (a[0] == '-' && a[1]) {
            if (rank == 0) {
                fprintf(stderr, "mst-merge: bad option %s\n", a);
                usage(stderr);
            }
            return 2;
        } else
            o->inputs[o->ninputs++] = a;
    }
    if (o->recover)
        return 0;
    if (!o->out || o->ninputs == 0) {
        if (rank == 0) {
            fprintf(stderr, "mst-merge: %s\n", !o->out ? "no output (-o OUT)" : "no input");
            usage(stderr);
        }
        return 2;
    }
    return 0;
}

static void free_options(options *o)
{
    free(o->inputs);
    free(o->include);
    free(o->exclude);
    free(o->meta_kv);
}

/* ---- the merge list (built on rank 0, broadcast) ------------------------- */

typedef struct src_tensor {
    char *name;
    mst_dtype dtype;
    int ndim;
    int64_t shape[8];
    int64_t *shape_big; /* ndim > 8 */
    int file;           /* index into files */
    uint64_t offset;    /* absolute offset of its bytes in that file */
    uint64_t nbytes;
    uint32_t crc;       /* the input's "mst.crc32" value of it, if has_crc */
    int has_crc;
} src_tensor;

static const int64_t *shape_of(const src_tensor *t)
{
    return t->ndim > 8 ? t->shape_big : t->shape;
}

typedef struct merge_list {
    char **files;
    int nfiles, fcap;
    src_tensor *t;
    size_t n, cap;
    char **mkey, **mval; /* merged metadata */
    int *mfile;          /* which file gave the value (-1: --metadata) */
    size_t nm, mcap;
} merge_list;

static char errbuf[4096];

static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return 1;
}

static int add_file(merge_list *m, const char *path)
{
    for (int i = 0; i < m->nfiles; i++)
        if (!strcmp(m->files[i], path))
            return i;
    if (m->nfiles == m->fcap) {
        int c = m->fcap ? 2 * m->fcap : 16;
        char **f = realloc(m->files, (size_t)c * sizeof *f);
        if (!f)
            return -1;
        m->files = f;
        m->fcap = c;
    }
    if (!(m->files[m->nfiles] = strdup(path)))
        return -1;
    return m->nfiles++;
}

static int keep_name(const options *o, const char *name)
{
    int keep = o->ninclude == 0;
    for (int i = 0; i < o->ninclude && !keep; i++)
        keep = fnmatch(o->include[i], name, 0) == 0;
    for (int i = 0; i < o->nexclude && keep; i++)
        keep = fnmatch(o->exclude[i], name, 0) != 0;
    return keep;
}

static int set_meta(merge_list *m, const char *k, const char *v, int file, int forced)
{
    for (size_t i = 0; i < m->nm; i++) {
        if (strcmp(m->mkey[i], k) != 0)
            continue;
        if (m->mfile[i] == -1 && !forced)
            return 0; /* --metadata wins */
        if (!forced && strcmp(m->mval[i], v) != 0)
            return fail("metadata key \"%s\" is \"%s\" in %s but \"%s\" in %s; choose one with "
                        "--metadata %s=VALUE",
                        k, m->mval[i], m->files[m->mfile[i]], v, m->files[file], k);
        free(m->mval[i]);
        m->mval[i] = strdup(v);
        m->mfile[i] = forced ? -1 : file;
        return m->mval[i] ? 0 : fail("out of memory");
    }
    if (m->nm == m->mcap) {
        size_t c = m->mcap ? 2 * m->mcap : 16;
        char **a = realloc(m->mkey, c * sizeof *a), **b;
        int *f;
        if (!a)
            return fail("out of memory");
        m->mkey = a;
        if (!(b = realloc(m->mval, c * sizeof *b)))
            return fail("out of memory");
        m->mval = b;
        if (!(f = realloc(m->mfile, c * sizeof *f)))
            return fail("out of memory");
        m->mfile = f;
        m->mcap = c;
    }
    m->mkey[m->nm] = strdup(k);
    m->mval[m->nm] = strdup(v);
    m->mfile[m->nm] = forced ? -1 : file;
    m->nm++;
    return m->mkey[m->nm - 1] && m->mval[m->nm - 1] ? 0 : fail("out of memory");
}

static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* Is file one of the set files (model*.safetensors, the index) in dir? */
static int in_set_dir(const char *file, const char *dir)
{
    char *rf = realpath(file, NULL), *rd = realpath(dir, NULL), *slash;
    int r = 0;
    if (rf && rd && (slash = strrchr(rf, '/'))) {
        *slash = '\0';
        r = !strcmp(rf, rd) && !strncmp(slash + 1, "model", 5);
    }
    free(rf);
    free(rd);
    return r;
}

/* The shards an index file names, in order of first appearance, with the
 * tensors it says each holds (checked against the shards later). */
typedef struct index_claim {
    char *name;
    int file;
} index_claim;

static int is_index(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && !strcmp(path + n - 5, ".json");
}

/* Expands an index file (read by mst_shardset_open): appends its shards to
 * m->files, in order of first mention, and its claims. */
static int expand_index(merge_list *m, const char *path, index_claim **claims, size_t *nclaims,
                        size_t *ccap)
{
    mst_shardset *ix = NULL;
    size_t n;
    int rc = 0;
    if (mst_shardset_open(&ix, path) != MST_OK) {
        rc = fail("%s", ix ? mst_shardset_error(ix) : "out of memory");
        mst_shardset_free(&ix);
        return rc;
    }
    n = mst_shardset_tensor_count(ix);
    for (size_t k = 0; k < n; k++) {
        const char *name, *file;
        size_t at;
        int fi;
        mst_shardset_tensor(ix, k, &name, &file);
        for (at = 0; strcmp(mst_shardset_shard(ix, at), file) != 0; at++)
            ;
        fi = add_file(m, mst_shardset_shard_path(ix, at));
        if (fi < 0) {
            rc = fail("out of memory");
            break;
        }
        if (*nclaims == *ccap) {
            size_t c = *ccap ? 2 * *ccap : 64;
            index_claim *p = realloc(*claims, c * sizeof *p);
            if (!p) {
                rc = fail("out of memory");
                break;
            }
            *claims = p;
            *ccap = c;
        }
        (*claims)[*nclaims].name = strdup(name);
        (*claims)[*nclaims].file = fi;
        if (!(*claims)[*nclaims].name) {
            rc = fail("out of memory");
            break;
        }
        (*nclaims)++;
    }
    mst_shardset_free(&ix);
    return rc;
}

static int cmp_name(const void *a, const void *b)
{
    const src_tensor *x = *(const src_tensor *const *)a, *y = *(const src_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_claim(const void *a, const void *b)
{
    return strcmp(((const index_claim *)a)->name, ((const index_claim *)b)->name);
}

/* Rank 0: every input's header, the filters, the checks. */
static int build_list(const options *o, merge_list *m)
{
    index_claim *claims = NULL;
    size_t nclaims = 0, ccap = 0;
    int rc = 0;
    char *outdir;
    const char *slash = strrchr(o->out, '/');
    struct stat st;

    /* the output's directory must exist, and the output must not be an input */
    outdir = strndup(o->out, slash ? (size_t)(slash - o->out) + (slash == o->out) : 0);
    if (!outdir)
        return fail("out of memory");
    if (stat(*outdir ? outdir : ".", &st) != 0 || !S_ISDIR(st.st_mode)) {
        fail("the output's directory %s does not exist", *outdir ? outdir : ".");
        free(outdir);
        return 1;
    }
    free(outdir);
    if (o->max_shard) {
        if (mkdir(o->out, 0755) != 0 && errno != EEXIST)
            return fail("cannot create the output directory %s: %s", o->out, strerror(errno));
        if (stat(o->out, &st) != 0 || !S_ISDIR(st.st_mode))
            return fail("the output %s is not a directory (--max-shard-size writes a set into "
                        "a directory)",
                        o->out);
    }

    /* --metadata first: it wins over the inputs' values */
    for (int i = 0; i < o->nmeta && rc == 0; i++) {
        char *kv = o->meta_kv[i], *eq = strchr(kv, '=');
        *eq = '\0';
        rc = set_meta(m, kv, eq + 1, -1, 1);
        *eq = '=';
    }
    for (int i = 0; i < o->ninputs && rc == 0; i++) {
        if (is_index(o->inputs[i]))
            rc = expand_index(m, o->inputs[i], &claims, &nclaims, &ccap);
        else if (add_file(m, o->inputs[i]) < 0)
            rc = fail("out of memory");
    }
    for (int f = 0; f < m->nfiles && rc == 0; f++) {
        mst_reader *r = NULL;
        size_t n;
        if (same_file(m->files[f], o->out) || !strcmp(m->files[f], o->out)) {
            rc = fail("the output %s is also an input", o->out);
            break;
        }
        if (o->max_shard && in_set_dir(m->files[f], o->out)) {
            rc = fail("the input %s is part of the set in the output directory %s, which the "
                      "merge would replace; write to another directory",
                      m->files[f], o->out);
            break;
        }
        if (mst_reader_open(&r, m->files[f]) != MST_OK) {
            rc = fail("%s: %s", m->files[f], r ? mst_reader_error(r) : "out of memory");
            mst_reader_free(&r);
            break;
        }
        n = mst_reader_count(r);
        for (size_t i = 0; i < n && rc == 0; i++) {
            mst_tensor_info info;
            src_tensor *t;
            mst_reader_tensor(r, i, &info);
            if (strlen(info.name) != info.name_len) {
                rc = fail("%s: tensor names with NUL characters cannot be merged", m->files[f]);
                break;
            }
            if (!keep_name(o, info.name))
                continue;
            if (m->n == m->cap) {
                size_t c = m->cap ? 2 * m->cap : 256;
                src_tensor *p = realloc(m->t, c * sizeof *p);
                if (!p) {
                    rc = fail("out of memory");
                    break;
                }
                m->t = p;
                m->cap = c;
            }
            t = &m->t[m->n];
            memset(t, 0, sizeof *t);
            t->name = strdup(info.name);
            t->dtype = info.dtype;
            t->ndim = info.ndim;
            if (info.ndim > 8)
                t->shape_big = malloc((size_t)info.ndim * sizeof(int64_t));
            if (!t->name || (info.ndim > 8 && !t->shape_big)) {
                free(t->name);
                rc = fail("out of memory");
                break;
            }
            if (info.ndim > 0)
                memcpy(info.ndim > 8 ? t->shape_big : t->shape, info.shape,
                       (size_t)info.ndim * sizeof(int64_t));
            t->file = f;
            if (o->checksums) {
                int crc_rc = mst_reader_checksum(r, i, &t->crc);
                t->has_crc = crc_rc == MST_OK;
                if (crc_rc != MST_OK && crc_rc != MST_ERR_NOT_FOUND) {
                    rc = fail("%s: %s", m->files[f], mst_reader_error(r));
                    free(t->name);
                    break;
                }
            }
            t->offset = mst_reader_data_start(r) + info.begin;
            t->nbytes = info.end - info.begin;
            m->n++;
        }
        for (size_t i = 0; i < mst_reader_metadata_count(r) && rc == 0; i++) {
            const char *k, *v;
            mst_reader_metadata(r, i, &k, &v);
            if (strcmp(k, "mst.crc32") != 0) /* its own tensors' checksums: stale here */
                rc = set_meta(m, k, v, f, 0);
        }
        mst_reader_free(&r);
    }
    /* duplicate names across inputs; index claims against the shards */
    if (rc == 0 && m->n > 1) {
        src_tensor **by = malloc(m->n * sizeof *by);
        if (!by)
            rc = fail("out of memory");
        for (size_t i = 0; by && i < m->n; i++)
            by[i] = &m->t[i];
        if (by) {
            qsort(by, m->n, sizeof *by, cmp_name);
            for (size_t i = 1; i < m->n && rc == 0; i++)
                if (!strcmp(by[i - 1]->name, by[i]->name))
                    rc = fail("tensor \"%s\" is in both %s and %s", by[i]->name,
                              m->files[by[i - 1]->file], m->files[by[i]->file]);
            for (size_t c = 0; c < nclaims && rc == 0; c++) {
                src_tensor key, *kp = &key, **hit;
                if (!keep_name(o, claims[c].name))
                    continue;
                key.name = claims[c].name;
                hit = bsearch(&kp, by, m->n, sizeof *by, cmp_name);
                if (!hit || (*hit)->file != claims[c].file)
                    rc = fail("the index maps tensor \"%s\" to %s, which does not hold it",
                              claims[c].name, m->files[claims[c].file]);
            }
        }
        free(by);
    }
    if (rc == 0 && nclaims > 0) {
        /* every tensor of a shard must be listed by its index */
        qsort(claims, nclaims, sizeof *claims, cmp_claim);
        for (size_t i = 0; i < m->n && rc == 0; i++) {
            index_claim key = {m->t[i].name, 0}, *hit;
            int from_index = 0;
            for (int k = 0; k < o->ninputs && !from_index; k++)
                from_index = !is_index(o->inputs[k]) && !strcmp(o->inputs[k], m->files[m->t[i].file]);
            if (from_index)
                continue;
            hit = bsearch(&key, claims, nclaims, sizeof *claims, cmp_claim);
            if (!hit)
                rc = fail("tensor \"%s\" of shard %s is not in its index's weight_map",
                          m->t[i].name, m->files[m->t[i].file]);
        }
    }
    for (size_t c = 0; c < nclaims; c++)
        free(claims[c].name);
    free(claims);
    return rc;
}

/* ---- broadcast: rank 0's list as one buffer ------------------------------ */

typedef struct wbuf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} wbuf;

static void put(wbuf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        unsigned char *q;
        while (c < b->n + n)
            c *= 2;
        if (!(q = realloc(b->p, c))) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_u64(wbuf *b, uint64_t v)
{
    put(b, &v, sizeof v);
}

static void put_str(wbuf *b, const char *s)
{
    uint64_t n = strlen(s);
    put_u64(b, n);
    put(b, s, (size_t)n);
}

typedef struct rbuf {
    const unsigned char *p;
    size_t n, at;
} rbuf;

static uint64_t get_u64(rbuf *b)
{
    uint64_t v = 0;
    if (b->at + sizeof v <= b->n)
        memcpy(&v, b->p + b->at, sizeof v);
    b->at += sizeof v;
    return v;
}

static char *get_str(rbuf *b)
{
    uint64_t n = get_u64(b);
    char *s;
    if (b->at + n > b->n || !(s = malloc((size_t)n + 1)))
        return NULL;
    memcpy(s, b->p + b->at, (size_t)n);
    s[n] = '\0';
    b->at += (size_t)n;
    return s;
}

static void pack_list(const merge_list *m, wbuf *b)
{
    put_u64(b, (uint64_t)m->nfiles);
    for (int i = 0; i < m->nfiles; i++)
        put_str(b, m->files[i]);
    put_u64(b, m->n);
    for (size_t i = 0; i < m->n; i++) {
        const src_tensor *t = &m->t[i];
        put_str(b, t->name);
        put_u64(b, (uint64_t)t->dtype);
        put_u64(b, (uint64_t)t->ndim);
        for (int d = 0; d < t->ndim; d++)
            put_u64(b, (uint64_t)shape_of(t)[d]);
        put_u64(b, (uint64_t)t->file);
        put_u64(b, t->offset);
        put_u64(b, t->nbytes);
        put_u64(b, (uint64_t)t->has_crc << 32 | t->crc);
    }
    put_u64(b, m->nm);
    for (size_t i = 0; i < m->nm; i++) {
        put_str(b, m->mkey[i]);
        put_str(b, m->mval[i]);
    }
}

static int unpack_list(const unsigned char *p, size_t n, merge_list *m)
{
    rbuf b = {p, n, 0};
    uint64_t nf = get_u64(&b), nt;
    m->files = calloc(nf ? nf : 1, sizeof *m->files);
    if (!m->files)
        return -1;
    for (uint64_t i = 0; i < nf; i++, m->nfiles++)
        if (!(m->files[i] = get_str(&b)))
            return -1;
    nt = get_u64(&b);
    m->t = calloc(nt ? nt : 1, sizeof *m->t);
    if (!m->t)
        return -1;
    for (uint64_t i = 0; i < nt; i++, m->n++) {
        src_tensor *t = &m->t[i];
        if (!(t->name = get_str(&b)))
            return -1;
        t->dtype = (mst_dtype)get_u64(&b);
        t->ndim = (int)get_u64(&b);
        if (t->ndim > 8 && !(t->shape_big = malloc((size_t)t->ndim * sizeof(int64_t))))
            return -1;
        for (int d = 0; d < t->ndim; d++)
            (t->ndim > 8 ? t->shape_big : t->shape)[d] = (int64_t)get_u64(&b);
        t->file = (int)get_u64(&b);
        t->offset = get_u64(&b);
        t->nbytes = get_u64(&b);
        {
            uint64_t c = get_u64(&b);
            t->has_crc = (int)(c >> 32);
            t->crc = (uint32_t)c;
        }
    }
    m->nm = get_u64(&b);
    m->mkey = calloc(m->nm ? m->nm : 1, sizeof *m->mkey);
    m->mval = calloc(m->nm ? m->nm : 1, sizeof *m->mval);
    if (!m->mkey || !m->mval)
        return -1;
    for (size_t i = 0; i < m->nm; i++)
        if (!(m->mkey[i] = get_str(&b)) || !(m->mval[i] = get_str(&b)))
            return -1;
    return b.at == n ? 0 : -1;
}

static void free_list(merge_list *m)
{
    for (int i = 0; i < m->nfiles; i++)
        free(m->files[i]);
    free(m->files);
    for (size_t i = 0; i < m->n; i++) {
        free(m->t[i].name);
        free(m->t[i].shape_big);
    }
    free(m->t);
    for (size_t i = 0; i < m->nm; i++) {
        free(m->mkey ? m->mkey[i] : NULL);
        free(m->mval ? m->mval[i] : NULL);
    }
    free(m->mkey);
    free(m->mval);
    free(m->mfile);
}

/* ---- streaming from the inputs ------------------------------------------- */

typedef struct progress {
    int on, tty;
    uint64_t share;  /* bytes of rank 0's share */
    uint64_t done;   /* of them, streamed */
    uint64_t total;  /* bytes of the whole output's data */
    double t0, last;
} progress;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void human(char *buf, size_t cap, double bytes)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) {
        bytes /= 1024;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
}

/* Rank 0's progress stands for the job's: every rank has an equal share of
 * the bytes. On a terminal one line is redrawn twice a second; into a log
 * (--progress) a line every 10 seconds. */
static void show_progress(progress *p, int final)
{
    double t = now(), frac, done, rate, left;
    char a[32], b[32], c[32];
    if (!p->on || (!final && t - p->last < (p->tty ? 0.5 : 10.0)))
        return;
    p->last = t;
    frac = p->share ? (double)p->done / (double)p->share : 1.0;
    done = frac * (double)p->total;
    rate = t > p->t0 ? done / (t - p->t0) : 0;
    left = rate > 0 ? ((double)p->total - done) / rate : 0;
    human(a, sizeof a, done);
    human(b, sizeof b, (double)p->total);
    human(c, sizeof c, rate);
    fprintf(stderr, "%smst-merge: %s of %s (%3.0f%%), %s/s, %.0f s left%s", p->tty ? "\r" : "",
            a, b, 100.0 * frac, c, left, p->tty && !final ? "   " : "\n");
    fflush(stderr);
}

typedef struct piece {
    const merge_list *m;
    int *fds;
    const src_tensor *t;
    uint64_t src;      /* absolute offset of the piece's first byte in its input */
    uint64_t nbytes;
    progress *prog;
    int check;         /* --checksums: the whole tensor, checked against t->crc */
    uint64_t next;     /* bytes given so far (the library asks in order) */
    uint32_t crc;
} piece;

/* A fill callback's code for "the input's bytes do not match its checksum". */
#define CRC_MISMATCH EBADMSG

static int fill_from_input(void *ctx, uint64_t offset, void *buf, uint64_t len)
{
    piece *p = ctx;
    int *fd = &p->fds[p->t->file];
    unsigned char *out = buf;
    if (*fd < 0) {
        *fd = open(p->m->files[p->t->file], O_RDONLY | O_CLOEXEC);
        if (*fd < 0)
            return errno ? errno : EIO;
#ifdef POSIX_FADV_SEQUENTIAL
        posix_fadvise(*fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    }
    if (p->check && offset != p->next)
        p->check = 0; /* out of order: cannot happen (streams fill in order) */
    while (len > 0) {
        ssize_t got = pread(*fd, out, len, (off_t)(p->src + offset));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return got < 0 ? errno : ENODATA; /* the input shrank under us */
        if (p->check) {
            p->crc = mst_crc32(p->crc, out, (size_t)got);
            p->next += (uint64_t)got;
            if (p->next == p->nbytes && p->crc != p->t->crc)
                return CRC_MISMATCH;
        }
        out += got;
        offset += (uint64_t)got;
        len -= (uint64_t)got;
        if (p->prog) {
            p->prog->done += (uint64_t)got;
            show_progress(p->prog, 0);
        }
    }
    return 0;
}

static int cmp_canonical(const void *a, const void *b)
{
    const src_tensor *x = *(const src_tensor *const *)a, *y = *(const src_tensor *const *)b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Declares this rank's share: the output's data bytes, in canonical order,
 * cut into `size` equal ranges; a tensor across a cut is split into row
 * blocks at the rows nearest the cuts (a tensor whose rows are not whole
 * bytes, or a scalar, goes whole to the rank where it starts). */
static int declare_share(mst_writer *w, const merge_list *m, int rank, int size, int *fds,
                         piece **pieces_out, size_t *npieces, progress *prog, int checksums)
{
    src_tensor **order = malloc((m->n ? m->n : 1) * sizeof *order);
    piece *pieces = calloc(m->n * 2 + (size_t)size + 1, sizeof *pieces);
    uint64_t total = 0, pos = 0;
    size_t np = 0;
    int rc = MST_OK;
    if (!order || !pieces) {
        free(order);
        free(pieces);
        return MST_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < m->n; i++) {
        order[i] = &m->t[i];
        total += m->t[i].nbytes;
    }
    prog->total = total;
    qsort(order, m->n, sizeof *order, cmp_canonical);
    /* floor(total * r / size) without overflow */
#define CUT(r) (total / (uint64_t)size * (uint64_t)(r) + total % (uint64_t)size * (uint64_t)(r) / (uint64_t)size)
    for (size_t i = 0; i < m->n; i++) {
        const src_tensor *t = order[i];
        const int64_t *shape = shape_of(t);
        uint64_t begin = pos, end = pos + t->nbytes, rows = t->ndim ? (uint64_t)shape[0] : 1;
        uint64_t row = rows ? t->nbytes / rows : 0;
        int first = 0;
        pos = end;
        /* the rank whose range holds the tensor's first byte */
        while (first + 1 < size && CUT(first + 1) <= begin)
            first++;
        /* --checksums: a tensor with an input checksum goes whole to one rank,
         * which checks every byte in order */
        if (t->nbytes == 0 || rows < 2 || row * rows != t->nbytes || end <= CUT(first + 1) ||
            first + 1 >= size || (checksums && t->has_crc)) {
            if (first == rank) {
                piece *p = &pieces[np++];
                p->m = m;
                p->fds = fds;
                p->t = t;
                p->src = t->offset;
                p->nbytes = t->nbytes;
                p->prog = prog;
                p->check = checksums && t->has_crc;
                rc = mst_writer_add_stream(w, t->name, t->dtype, t->ndim, shape, fill_from_input,
                                           p);
                prog->share += t->nbytes;
            }
        } else {
            /* row blocks: rank r takes the rows that start in its range */
            int64_t *start = calloc((size_t)t->ndim * 2, sizeof *start), *count;
            if (!start) {
                rc = MST_ERR_NO_MEMORY;
                break;
            }
            count = start + t->ndim;
            for (int r = first; r < size && rc == MST_OK; r++) {
                uint64_t lo = CUT(r) > begin ? CUT(r) : begin;
                uint64_t hi = r + 1 < size && CUT(r + 1) < end ? CUT(r + 1) : end;
                uint64_t r0 = r == first ? 0 : (lo - begin + row - 1) / row;
                uint64_t r1 = hi == end ? rows : (hi - begin + row - 1) / row;
                piece *p;
                if (lo >= end)
                    break;
                if (r != rank || r1 <= r0)
                    continue;
                memcpy(count, shape, (size_t)t->ndim * sizeof *count);
                start[0] = (int64_t)r0;
                count[0] = (int64_t)(r1 - r0);
                p = &pieces[np++];
                p->m = m;
                p->fds = fds;
                p->t = t;
                p->src = t->offset + r0 * row;
                p->nbytes = (r1 - r0) * row;
                p->prog = prog;
                rc = mst_writer_add_slice_stream(w, t->name, t->dtype, t->ndim, shape, start,
                                                 count, fill_from_input, p);
                prog->share += p->nbytes;
            }
            free(start);
        }
        if (rc != MST_OK)
            break;
    }
#undef CUT
    free(order);
    *pieces_out = pieces;
    *npieces = np;
    return rc;
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv)
{
    options o;
    merge_list m;
    int rank, size, rc, status = 0, *fds = NULL;
    uint64_t len = 0;
    wbuf b;
    mst_writer *w = NULL;
    piece *pieces = NULL;
    size_t npieces = 0;
    progress prog;
    double t_start;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    memset(&m, 0, sizeof m);
    memset(&b, 0, sizeof b);
    memset(&prog, 0, sizeof prog);

    t_start = now();
    rc = parse_args(argc, argv, &o, rank);
    if (rc) {
        free_options(&o);
        MPI_Finalize();
        return rc == 3 ? 0 : 2;
    }
    if (o.recover) {
        char report[8192];
        if (rank == 0) {
            FILE *f;
            rc = mst_shardset_recover(o.recover, report, sizeof report);
            f = rc ? stderr : stdout;
            if (!*report)
                fprintf(f, "mst-merge: %s: nothing to recover\n", o.recover);
            /* every line of the report under the tool's name, as its other messages */
            for (char *line = report, *nl; *line; line = nl + 1) {
                if (!(nl = strchr(line, '\n'))) {
                    fprintf(f, "mst-merge: %s\n", line);
                    break;
                }
                fprintf(f, "mst-merge: %.*s\n", (int)(nl - line), line);
            }
        }
        MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
        free_options(&o);
        MPI_Finalize();
        return rc ? 1 : 0;
    }

    /* rank 0 reads the headers; the list, or the reason it failed, goes to all */
    if (rank == 0) {
        if (build_list(&o, &m) == 0) {
            pack_list(&m, &b);
            if (b.oom)
                fail("out of memory");
        }
        len = errbuf[0] ? 0 : b.n;
    }
    MPI_Bcast(&len, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (len == 0) {
        if (rank == 0)
            fprintf(stderr, "mst-merge: %s\n", errbuf);
        status = 1;
        goto done;
    }
    if (rank != 0 && !(b.p = malloc((size_t)len)))
        MPI_Abort(MPI_COMM_WORLD, 1); /* a tool's main; the job cannot go on */
    for (uint64_t at = 0; at < len; at += (uint64_t)1 << 30) {
        uint64_t n = len - at < ((uint64_t)1 << 30) ? len - at : ((uint64_t)1 << 30);
        MPI_Bcast(b.p + at, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
    if (rank != 0 && unpack_list(b.p, (size_t)len, &m) != 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    free(b.p);
    b.p = NULL;

    fds = malloc((size_t)(m.nfiles ? m.nfiles : 1) * sizeof *fds);
    if (!fds)
        MPI_Abort(MPI_COMM_WORLD, 1);
    for (int i = 0; i < m.nfiles; i++)
        fds[i] = -1;
    prog.tty = isatty(2);
    prog.on = rank == 0 && (o.progress == 1 || (o.progress == -1 && prog.tty));

    rc = mst_writer_open(&w, MPI_COMM_WORLD, o.out, MPI_INFO_NULL);
    if (rc == MST_OK) {
        mst_writer_set_fsync(w, o.fsync);
        mst_writer_set_max_shard_size(w, o.max_shard);
        mst_writer_set_checksums(w, o.checksums);
        if (mst_writer_set_staging(w, o.staging) != MST_OK && rank == 0)
            fprintf(stderr, "mst-merge: %s; using the default\n", mst_writer_error(w));
        for (size_t i = 0; i < m.nm; i++)
            if (rank == 0)
                mst_writer_add_metadata(w, m.mkey[i], m.mval[i]);
        declare_share(w, &m, rank, size, fds, &pieces, &npieces, &prog, o.checksums);
        prog.t0 = prog.last = now();
        rc = mst_writer_commit(w);
    }
    show_progress(&prog, 1);
    if (rc != MST_OK) {
        if (rank == 0) {
            char code[32];
            const char *msg = w ? mst_writer_error(w) : mst_strerror(rc);
            snprintf(code, sizeof code, "returned %d ", CRC_MISMATCH);
            fprintf(stderr, "mst-merge: %s%s\n", msg,
                    rc == MST_ERR_CALLBACK && strstr(msg, code)
                        ? " (checksum mismatch: the input's bytes do not match its "
                          "\"mst.crc32\")"
                        : "");
        }
        status = 1;
    } else if (rank == 0 && o.progress != 0) {
        /* one line for a batch job's log; --quiet drops it */
        uint64_t bytes = 0;
        for (size_t i = 0; i < m.n; i++)
            bytes += m.t[i].nbytes;
        printf("mst-merge: wrote %s%s: %zu tensor%s, %" PRIu64 " bytes of data from %d input "
               "file%s in %.2f s\n",
               o.max_shard ? "the set in " : "", o.out, m.n, m.n == 1 ? "" : "s", bytes,
               m.nfiles, m.nfiles == 1 ? "" : "s", now() - t_start);
    }
    mst_writer_free(&w);
    for (int i = 0; i < m.nfiles; i++)
        if (fds[i] >= 0)
            close(fds[i]);
done:
    free(fds);
    free(pieces);
    free(b.p);
    free_list(&m);
    free_options(&o);
    MPI_Finalize();
    return status;
}

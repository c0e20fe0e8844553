/* mst-inspect: list and validate a safetensors file, or a whole Hugging Face
 * multi-file set through its index.
 *
 *   mst-inspect [--json | --check] FILE
 *   mst-inspect [--check] model.safetensors.index.json
 *   mst-inspect --verify FILE | DIR | model.safetensors.index.json
 *
 * Exit status: 0 valid, 1 invalid or unreadable (reason on stderr: "invalid", or
 * "cannot open" / "cannot read" with the system's reason), 2 usage.
 * --verify: 0 every tensor matches its checksum, 1 a mismatch (each tensor
 * named) or an invalid or unreadable file, 3 no checksums to verify (a file
 * without the "mst.crc32" entry).
 * Uses only the public reader API; reads the header, and the data only with
 * --verify. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mst.h"
#include "set_check.h"

static void usage(FILE *err)
{
    fprintf(err,
            "usage: mst-inspect [--json | --check] FILE\n"
            "  List the tensors of a safetensors file and validate it by the rules of the\n"
            "  reference reader (plus: duplicate names, integers above 2^53).\n"
            "  --json   machine-readable output\n"
            "  --check  validate only; print nothing on success\n"
            "  --version  print the version and exit\n"
            "  A FILE ending in .json is a Hugging Face index: the whole set is checked\n"
            "  (every shard valid, every weight_map entry in its shard, no tensor missing\n"
            "  or in two shards, metadata.total_size right).\n"
            "  --verify FILE|DIR  recompute every tensor's CRC-32 and compare it with the\n"
            "           file's \"mst.crc32\" checksums (written with checksums on); a DIR\n"
            "           or an index: every .safetensors file of the directory\n"
            "exit status: 0 valid, 1 invalid or cannot be read, 2 usage;\n"
            "  --verify: 0 all verified, 1 a mismatch (each tensor named) or a bad file,\n"
            "  3 no checksums in a file\n");
}

/* Names are printed as JSON strings in the table too, so that odd names
 * (spaces, quotes, control characters) stay unambiguous. */
static void put_json_string(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static uint64_t shape_elements(const mst_tensor_info *t)
{
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d];
    return n;
}

static void print_shape(FILE *out, const mst_tensor_info *t)
{
    fputc('[', out);
    for (int d = 0; d < t->ndim; d++)
        fprintf(out, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    fputc(']', out);
}

static void print_summary(FILE *out, const char *path, const mst_reader *r)
{
    size_t n = mst_reader_count(r), per_dtype[MST_DTYPE_COUNT] = {0};
    uint64_t start = mst_reader_data_start(r);
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        mst_tensor_info t;
        mst_reader_tensor(r, i, &t);
        per_dtype[t.dtype]++;
    }
    fprintf(out, "%s: %zu tensors, %" PRIu64 " bytes of data; dtypes: ", path, n,
            mst_reader_data_size(r));
    for (int d = MST_DTYPE_COUNT - 1; d >= 0; d--) {
        if (!per_dtype[d])
            continue;
        fprintf(out, "%s%s x%zu", first ? "" : ", ", mst_dtype_name((mst_dtype)d), per_dtype[d]);
        first = 0;
    }
    if (first)
        fputs("none", out);
    fprintf(out, "; header %" PRIu64 " bytes, data starts at byte %" PRIu64 " (%s)\n",
            mst_reader_header_size(r), start,
            start % 8 == 0 ? "8-byte aligned" : "NOT 8-byte aligned");
}

static void print_table(FILE *out, const char *path, const mst_reader *r)
{
    size_t n = mst_reader_metadata_count(r);
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        size_t klen, vlen;
        mst_reader_metadata_len(r, i, &k, &klen, &v, &vlen);
        fputs("metadata ", out);
        put_json_string(out, k, klen);
        fputs(" = ", out);
        put_json_string(out, v, vlen);
        fputc('\n', out);
    }
    n = mst_reader_count(r);
    if (n)
        fprintf(out, "%-12s %-9s %-24s %s\n", "DTYPE", "BYTES", "DATA_OFFSETS", "NAME SHAPE");
    for (size_t i = 0; i < n; i++) {
        mst_tensor_info t;
        char offs[48];
        mst_reader_tensor(r, i, &t);
        snprintf(offs, sizeof offs, "[%" PRIu64 ", %" PRIu64 "]", t.begin, t.end);
        fprintf(out, "%-12s %-9" PRIu64 " %-24s ", mst_dtype_name(t.dtype), t.end - t.begin, offs);
        put_json_string(out, t.name, t.name_len);
        fputc(' ', out);
        print_shape(out, &t);
        fputc('\n', out);
    }
    print_summary(out, path, r);
}

/* --json is streamed, not built as a tree: a 100 MB header holds millions
 * of tensors. Strings go through put_json_string (NUL bytes as \u0000). */
static void print_json(FILE *out, const char *path, const mst_reader *r)
{
    size_t n = mst_reader_metadata_count(r);
    fputs("{\n  \"file\": ", out);
    put_json_string(out, path, strlen(path));
    fprintf(out,
            ",\n  \"valid\": true,\n  \"header_size\": %" PRIu64 ",\n  \"data_start\": %" PRIu64
            ",\n  \"data_size\": %" PRIu64 ",\n  \"tensor_count\": %zu,\n  \"metadata\": {",
            mst_reader_header_size(r), mst_reader_data_start(r), mst_reader_data_size(r),
            mst_reader_count(r));
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        size_t klen, vlen;
        mst_reader_metadata_len(r, i, &k, &klen, &v, &vlen);
        fputs(i ? ",\n    " : "\n    ", out);
        put_json_string(out, k, klen);
        fputs(": ", out);
        put_json_string(out, v, vlen);
    }
    fputs(n ? "\n  },\n  \"tensors\": [" : "},\n  \"tensors\": [", out);
    n = mst_reader_count(r);
    for (size_t i = 0; i < n; i++) {
        mst_tensor_info t;
        mst_reader_tensor(r, i, &t);
        fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", out);
        put_json_string(out, t.name, t.name_len);
        fprintf(out, ", \"dtype\": \"%s\", \"shape\": ", mst_dtype_name(t.dtype));
        fputc('[', out);
        for (int d = 0; d < t.ndim; d++)
            fprintf(out, "%s%" PRId64, d ? ", " : "", t.shape[d]);
        fprintf(out,
                "], \"elements\": %" PRIu64 ", \"data_offsets\": [%" PRIu64 ", %" PRIu64
                "], \"bytes\": %" PRIu64 "}",
                shape_elements(&t), t.begin, t.end, t.end - t.begin);
    }
    fputs(n ? "\n  ]\n}\n" : "]\n}\n", out);
}

/* --verify of one file: 0 all match, 1 a mismatch or a bad file, 3 no
 * checksums. Adds the tensors verified to *count. */
static int verify_file(const char *path, FILE *out, FILE *err, size_t *count)
{
    mst_reader *r = NULL;
    size_t n, bad = 0;
    uint32_t crc;
    int rc = mst_reader_open(&r, path);
    if (rc != MST_OK) {
        fprintf(err, "mst-inspect: %s: %s: %s\n", path, mst_strerror(rc),
                r ? mst_reader_error(r) : "out of memory");
        mst_reader_free(&r);
        return 1;
    }
    n = mst_reader_count(r);
    if (n > 0 && (rc = mst_reader_checksum(r, 0, &crc)) != MST_OK) {
        fprintf(err, "mst-inspect: %s: %s\n", path,
                rc == MST_ERR_NOT_FOUND ? "no checksums (no \"mst.crc32\" metadata entry); "
                                          "nothing verified"
                                        : mst_reader_error(r));
        mst_reader_free(&r);
        return rc == MST_ERR_NOT_FOUND ? 3 : 1;
    }
    if (n == 0) {
        const char *k, *v;
        int has = 0;
        for (size_t i = 0; i < mst_reader_metadata_count(r); i++)
            if (mst_reader_metadata(r, i, &k, &v) == MST_OK && !strcmp(k, "mst.crc32"))
                has = 1;
        if (!has) {
            fprintf(err, "mst-inspect: %s: no checksums (no \"mst.crc32\" metadata entry); "
                         "nothing verified\n", path);
            mst_reader_free(&r);
            return 3;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rc = mst_reader_verify_index(r, i);
        if (rc != MST_OK) {
            fprintf(err, "mst-inspect: %s: %s\n", path, mst_reader_error(r));
            bad++;
        }
    }
    mst_reader_free(&r);
    if (bad) {
        fprintf(err, "mst-inspect: %s: %zu of %zu tensors failed verification\n", path, bad, n);
        return 1;
    }
    fprintf(out, "%s: %zu tensors verified (crc32)\n", path, n);
    *count += n;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --verify of a directory (or the directory of an index): every
 * *.safetensors file in it, in name order. */
static int verify_dir(const char *dir, FILE *out, FILE *err)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0, count = 0;
    int worst = 0;
    if (!d) {
        fprintf(err, "mst-inspect: %s: cannot open: %s\n", dir, strerror(errno));
        return 1;
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 12 || strcmp(e->d_name + len - 12, ".safetensors"))
            continue;
        if (n == cap) {
            char **g = realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *g);
            if (!g)
                break;
            names = g;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n == 0) {
        fprintf(err, "mst-inspect: %s: no .safetensors files to verify\n", dir);
        free(names);
        return 1;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char *p = malloc(strlen(dir) + strlen(names[i]) + 2);
        int rc = 1;
        if (p) {
            sprintf(p, "%s/%s", dir, names[i]);
            rc = verify_file(p, out, err, &count);
        }
        /* 1 (a mismatch) outranks 3 (no checksums) */
        if (rc == 1 || (rc == 3 && worst == 0))
            worst = rc;
        free(p);
        free(names[i]);
    }
    free(names);
    if (worst == 0)
        fprintf(out, "%s: %zu files, %zu tensors verified (crc32)\n", dir, n, count);
    return worst;
}

static int verify_main(const char *path, FILE *out, FILE *err)
{
    struct stat st;
    size_t count = 0;
    size_t len = strlen(path);
    if (len > 5 && !strcmp(path + len - 5, ".json")) {
        char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
        int rc;
        if (!dir)
            return 1;
        if (slash)
            *slash = 0;
        rc = verify_dir(slash ? (dir[0] ? dir : "/") : ".", out, err);
        free(dir);
        return rc;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return verify_dir(path, out, err);
    return verify_file(path, out, err, &count);
}

/* The tool as a function, so tests can call it with their own streams. */
int inspect_main(int argc, char **argv, FILE *out, FILE *err);

int inspect_main(int argc, char **argv, FILE *out, FILE *err)
{
    const char *path = NULL;
    int json = 0, check = 0, verify = 0, rc;
    mst_reader *r = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--verify") == 0) {
            verify = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(out);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            fprintf(out, "mst-inspect %s\n", mst_version_string());
            return 0;
        } else if (strcmp(argv[i], "--") == 0 && i + 1 < argc && !path && i + 2 == argc) {
            path = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(err, "mst-inspect: unknown option %s\n", argv[i]);
            usage(err);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(err, "mst-inspect: one file at a time\n");
            usage(err);
            return 2;
        }
    }
    if (!path || (json && check) || (verify && (json || check))) {
        usage(err);
        return 2;
    }
    if (verify)
        return verify_main(path, out, err);
    if (strlen(path) > 5 && !strcmp(path + strlen(path) - 5, ".json")) {
        if (json) {
            fprintf(err, "mst-inspect: --json is for single files, not for an index\n");
            return 2;
        }
        return mst_inspect_index(path, check, out, err);
    }
    rc = mst_reader_open(&r, path);
    if (rc != MST_OK) {
        /* a file that cannot be opened is not an invalid file: say which (the
         * exit status is 1 for both); O_NONBLOCK: a FIFO must not hang here */
        int fd = rc == MST_ERR_IO ? open(path, O_RDONLY | O_NONBLOCK) : -1;
        if (rc == MST_ERR_IO && fd < 0)
            fprintf(err, "mst-inspect: %s: cannot open: %s\n", path, strerror(errno));
        else
            fprintf(err, "mst-inspect: %s: %s (%s): %s\n", path,
                    rc == MST_ERR_IO ? "cannot read" : "invalid", mst_strerror(rc),
                    r ? mst_reader_error(r) : "out of memory");
        if (fd >= 0)
            close(fd);
        if (json) {
            const char *msg = r ? mst_reader_error(r) : "out of memory";
            fputs("{\n  \"file\": ", out);
            put_json_string(out, path, strlen(path));
            fprintf(out, ",\n  \"valid\": false,\n  \"code\": %d,\n  \"code_name\": ", rc);
            put_json_string(out, mst_strerror(rc), strlen(mst_strerror(rc)));
            fputs(",\n  \"error\": ", out);
            put_json_string(out, msg, strlen(msg));
            fputs("\n}\n", out);
        }
        mst_reader_free(&r);
        return 1;
    }
    if (json) {
        print_json(out, path, r);
    } else if (!check) {
        print_table(out, path, r);
    }
    mst_reader_free(&r);
    return 0;
}

int main(int argc, char **argv)
{
    return inspect_main(argc, argv, stdout, stderr);
}

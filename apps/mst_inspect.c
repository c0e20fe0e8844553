/* mst-inspect: list and validate a safetensors file.
 *
 *   mst-inspect [--json | --check] FILE
 *
 * Exit status: 0 valid, 1 invalid or unreadable (reason on stderr), 2 usage. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mst.h"

static void usage(FILE *err)
{
    fprintf(err,
            "usage: mst-inspect [--json | --check] FILE\n"
            "  List the tensors of a safetensors file and validate it by the rules of the\n"
            "  reference reader (plus: duplicate names, integers above 2^53).\n"
            "  --json   machine-readable output\n"
            "  --check  validate only; print nothing on success\n"
            "exit status: 0 valid, 1 invalid, 2 usage\n");
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
        mst_reader_metadata(r, i, &k, &v);
        fputs("metadata ", out);
        put_json_string(out, k, strlen(k));
        fputs(" = ", out);
        put_json_string(out, v, strlen(v));
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

static cJSON *json_u64(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf); /* cJSON's doubles would print large values with exponents */
}

static cJSON *json_string(const char *s, size_t len)
{
    if (strlen(s) == len)
        return cJSON_CreateString(s);
    /* a name with an embedded NUL (from a \u0000 escape): escape it ourselves */
    {
        size_t cap = len * 6 + 3, o = 0;
        char *buf = malloc(cap);
        cJSON *item;
        if (!buf)
            return NULL;
        buf[o++] = '"';
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c == '"' || c == '\\')
                o += (size_t)snprintf(buf + o, cap - o, "\\%c", c);
            else if (c < 0x20)
                o += (size_t)snprintf(buf + o, cap - o, "\\u%04x", c);
            else
                buf[o++] = (char)c;
        }
        buf[o++] = '"';
        buf[o] = '\0';
        item = cJSON_CreateRaw(buf);
        free(buf);
        return item;
    }
}

static int print_json(FILE *out, const char *path, const mst_reader *r)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject(), *list = cJSON_CreateArray();
    char *text;
    size_t n;
    if (!root || !meta || !list)
        goto oom;
    cJSON_AddItemToObject(root, "file", cJSON_CreateString(path));
    cJSON_AddItemToObject(root, "valid", cJSON_CreateTrue());
    cJSON_AddItemToObject(root, "header_size", json_u64(mst_reader_header_size(r)));
    cJSON_AddItemToObject(root, "data_start", json_u64(mst_reader_data_start(r)));
    cJSON_AddItemToObject(root, "data_size", json_u64(mst_reader_data_size(r)));
    cJSON_AddItemToObject(root, "tensor_count", json_u64(mst_reader_count(r)));
    n = mst_reader_metadata_count(r);
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        mst_reader_metadata(r, i, &k, &v);
        cJSON_AddItemToObject(meta, k, cJSON_CreateString(v));
    }
    cJSON_AddItemToObject(root, "metadata", meta);
    meta = NULL;
    n = mst_reader_count(r);
    for (size_t i = 0; i < n; i++) {
        mst_tensor_info t;
        cJSON *e = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        if (!e || !shape || !offs) {
            cJSON_Delete(e);
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            goto oom;
        }
        mst_reader_tensor(r, i, &t);
        for (int d = 0; d < t.ndim; d++)
            cJSON_AddItemToArray(shape, json_u64((uint64_t)t.shape[d]));
        cJSON_AddItemToArray(offs, json_u64(t.begin));
        cJSON_AddItemToArray(offs, json_u64(t.end));
        cJSON_AddItemToObject(e, "name", json_string(t.name, t.name_len));
        cJSON_AddItemToObject(e, "dtype", cJSON_CreateString(mst_dtype_name(t.dtype)));
        cJSON_AddItemToObject(e, "shape", shape);
        cJSON_AddItemToObject(e, "elements", json_u64(shape_elements(&t)));
        cJSON_AddItemToObject(e, "data_offsets", offs);
        cJSON_AddItemToObject(e, "bytes", json_u64(t.end - t.begin));
        cJSON_AddItemToArray(list, e);
    }
    cJSON_AddItemToObject(root, "tensors", list);
    list = NULL;
    text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        goto oom_done;
    fprintf(out, "%s\n", text);
    cJSON_free(text);
    return 0;
oom:
    cJSON_Delete(root);
    cJSON_Delete(meta);
    cJSON_Delete(list);
oom_done:
    return -1;
}

/* The tool as a function, so tests can call it with their own streams. */
int inspect_main(int argc, char **argv, FILE *out, FILE *err);

int inspect_main(int argc, char **argv, FILE *out, FILE *err)
{
    const char *path = NULL;
    int json = 0, check = 0, rc;
    mst_reader *r = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(out);
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
    if (!path || (json && check)) {
        usage(err);
        return 2;
    }
    rc = mst_reader_open(&r, path);
    if (rc != MST_OK) {
        fprintf(err, "mst-inspect: %s: invalid (%s): %s\n", path, mst_strerror(rc),
                r ? mst_reader_error(r) : "out of memory");
        if (json) {
            cJSON *o = cJSON_CreateObject();
            char *text;
            cJSON_AddItemToObject(o, "file", cJSON_CreateString(path));
            cJSON_AddItemToObject(o, "valid", cJSON_CreateFalse());
            cJSON_AddItemToObject(o, "code", cJSON_CreateNumber(rc));
            cJSON_AddItemToObject(o, "error", cJSON_CreateString(r ? mst_reader_error(r) : ""));
            text = cJSON_Print(o);
            if (text)
                fprintf(out, "%s\n", text);
            cJSON_free(text);
            cJSON_Delete(o);
        }
        mst_reader_free(&r);
        return 1;
    }
    if (json) {
        if (print_json(out, path, r) != 0) {
            fprintf(err, "mst-inspect: out of memory\n");
            mst_reader_free(&r);
            return 1;
        }
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

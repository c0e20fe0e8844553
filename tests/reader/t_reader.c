/* Tests of the reader (local, no MPI runtime needed).
 *
 *   t_reader corpus DIR   every file of DIR/manifest.tsv (tests/reader/make_corpus.py)
 *                         gets its expected code and a message containing the expected text
 *   t_reader api DIR      the API on files written into DIR: whole tensors, byte ranges,
 *                         bounds, lookups by name with NUL bytes, metadata, FIFOs,
 *                         directories, a file truncated after opening, NULL arguments
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "mst.h"
#include "t_util.h"

static const struct {
    const char *name;
    int code;
} CODES[] = {
    {"ok", MST_OK},
    {"IO", MST_ERR_IO},
    {"FORMAT", MST_ERR_FORMAT},
    {"OFFSETS", MST_ERR_OFFSETS},
    {"HEADER_TOO_LARGE", MST_ERR_HEADER_TOO_LARGE},
    {"INVALID_UTF8", MST_ERR_INVALID_UTF8},
    {"UNKNOWN_DTYPE", MST_ERR_UNKNOWN_DTYPE},
    {"DUPLICATE_NAME", MST_ERR_DUPLICATE_NAME},
    {"SIZE_OVERFLOW", MST_ERR_SIZE_OVERFLOW},
    {"PARTIAL_BYTES", MST_ERR_PARTIAL_BYTES},
};

static int code_of(const char *name)
{
    for (size_t i = 0; i < sizeof CODES / sizeof *CODES; i++)
        if (strcmp(CODES[i].name, name) == 0)
            return CODES[i].code;
    return -1;
}

static int run_corpus(const char *dir)
{
    char path[4096 + 8192], line[8192];
    size_t nok = 0, nbad = 0;
    FILE *m;
    snprintf(path, sizeof path, "%s/manifest.tsv", dir);
    m = fopen(path, "r");
    if (!m) {
        fprintf(stderr, "t_reader: cannot open %s\n", path);
        return 1;
    }
    while (fgets(line, sizeof line, m)) {
        char *file = line, *expect, *message, *end;
        int want, rc;
        mst_reader *r = NULL;
        line[strcspn(line, "\n")] = '\0';
        expect = strchr(file, '\t');
        CHECK(expect != NULL);
        if (!expect)
            continue;
        *expect++ = '\0';
        message = strchr(expect, '\t');
        CHECK(message != NULL);
        if (!message)
            continue;
        *message++ = '\0';
        end = strchr(message, '\t');
        if (end)
            *end = '\0';
        want = code_of(expect);
        CHECK_MSG(want >= 0, "%s: unknown code name %s", file, expect);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        rc = mst_reader_open(&r, path);
        CHECK_MSG(rc == want, "%s: code %d (%s), want %d (%s): %s", file, rc, mst_strerror(rc),
                  want, expect, r ? mst_reader_error(r) : "");
        if (want != MST_OK) {
            CHECK_MSG(r && strstr(mst_reader_error(r), message) != NULL,
                      "%s: message \"%s\" lacks \"%s\"", file, r ? mst_reader_error(r) : "",
                      message);
            CHECK_MSG(mst_reader_count(r) == 0, "%s: tensors after a failed open", file);
            nbad++;
        } else {
            /* every tensor of a valid file is found by name and readable whole */
            for (size_t i = 0; i < mst_reader_count(r); i++) {
                mst_tensor_info t, f;
                unsigned char *buf;
                CHECK_EQ_INT(mst_reader_tensor(r, i, &t), MST_OK);
                CHECK_EQ_INT(mst_reader_find_len(r, t.name, t.name_len, &f), MST_OK);
                CHECK(f.begin == t.begin && f.end == t.end);
                buf = malloc(t.end - t.begin + 1);
                CHECK(buf != NULL);
                if (buf)
                    CHECK_EQ_INT(mst_reader_read_index(r, i, 0, buf, t.end - t.begin), MST_OK);
                free(buf);
            }
            nok++;
        }
        mst_reader_free(&r);
    }
    fclose(m);
    CHECK_MSG(nbad >= 40 && nok >= 10, "corpus too small: %zu malformed, %zu valid", nbad, nok);
    printf("t_reader corpus: %zu malformed and %zu valid files checked\n", nbad, nok);
    return 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    if (len && fwrite(data, 1, len, f) != len) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

/* 8-byte length + header + data */
static int write_image(const char *path, const char *header, size_t hlen, const void *data,
                       size_t dlen)
{
    unsigned char *buf = malloc(8 + hlen + dlen);
    int rc;
    if (!buf)
        return -1;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (dlen)
        memcpy(buf + 8 + hlen, data, dlen);
    rc = write_file(path, buf, 8 + hlen + dlen);
    free(buf);
    return rc;
}

static void test_api(const char *dir)
{
    char path[4096], fifo[4096];
    /* tensors: "w" U8 [2,3] at [0,6], "a\0b" U8 [2] at [6,8]; metadata "k\0" = "v\0v" */
    static const char header[] =
        "{\"__metadata__\":{\"k\\u0000\":\"v\\u0000v\",\"format\":\"pt\"},"
        "\"w\":{\"dtype\":\"U8\",\"shape\":[2,3],\"data_offsets\":[0,6]},"
        "\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}";
    const unsigned char data[8] = {10, 11, 12, 13, 14, 15, 16, 17};
    unsigned char buf[16];
    mst_reader *r = NULL;
    mst_tensor_info t;
    const char *k, *v;
    size_t klen, vlen;

    snprintf(path, sizeof path, "%s/api.safetensors", dir);
    CHECK_EQ_INT(write_image(path, header, sizeof header - 1, data, sizeof data), 0);
    CHECK_EQ_INT(mst_reader_open(&r, path), MST_OK);
    CHECK_EQ_INT(mst_reader_count(r), 2);
    CHECK_EQ_INT(mst_reader_header_size(r), sizeof header - 1);
    CHECK_EQ_INT(mst_reader_data_start(r), 8 + sizeof header - 1);
    CHECK_EQ_INT(mst_reader_data_size(r), 8);
    CHECK_EQ_INT(mst_reader_tensor(r, 0, &t), MST_OK);
    CHECK(t.name_len == 1 && strcmp(t.name, "w") == 0 && t.dtype == MST_U8 && t.ndim == 2 &&
          t.shape[0] == 2 && t.shape[1] == 3 && t.begin == 0 && t.end == 6);
    CHECK_EQ_INT(mst_reader_tensor(r, 2, &t), MST_ERR_INVALID_ARGUMENT);

    /* whole tensor, ranges, bounds */
    CHECK_EQ_INT(mst_reader_read(r, "w", 0, buf, 6), MST_OK);
    CHECK(memcmp(buf, data, 6) == 0);
    CHECK_EQ_INT(mst_reader_read(r, "w", 2, buf, 3), MST_OK);
    CHECK(memcmp(buf, data + 2, 3) == 0);
    CHECK_EQ_INT(mst_reader_read(r, "w", 6, buf, 0), MST_OK);
    CHECK_EQ_INT(mst_reader_read(r, "w", 4, buf, 3), MST_ERR_RANGE);
    CHECK_MSG(strstr(mst_reader_error(r), "tensor \"w\" has 6 bytes; cannot read 3 bytes at 4"),
              "%s", mst_reader_error(r));
    CHECK_EQ_INT(mst_reader_read(r, "w", 7, buf, 0), MST_ERR_RANGE);
    CHECK_EQ_INT(mst_reader_read(r, "w", UINT64_MAX, buf, 1), MST_ERR_RANGE);
    CHECK_EQ_INT(mst_reader_read(r, "w", 1, buf, UINT64_MAX), MST_ERR_RANGE);
    CHECK_EQ_INT(mst_reader_read(r, "nope", 0, buf, 1), MST_ERR_NOT_FOUND);
    CHECK_MSG(strstr(mst_reader_error(r), "no tensor \"nope\""), "%s", mst_reader_error(r));
    CHECK_EQ_INT(mst_reader_read(r, "w", 0, NULL, 1), MST_ERR_INVALID_ARGUMENT);

    /* a name with a NUL byte: only the _len forms reach it */
    CHECK_EQ_INT(mst_reader_find(r, "a", &t), MST_ERR_NOT_FOUND);
    CHECK_EQ_INT(mst_reader_find_len(r, "a\0b", 3, &t), MST_OK);
    CHECK(t.name_len == 3 && memcmp(t.name, "a\0b", 4) == 0 && t.begin == 6 && t.end == 8);
    CHECK_EQ_INT(mst_reader_read_len(r, "a\0b", 3, 1, buf, 1), MST_OK);
    CHECK_EQ_INT(buf[0], 17);
    CHECK_EQ_INT(mst_reader_read_index(r, 1, 0, buf, 2), MST_OK);
    CHECK(buf[0] == 16 && buf[1] == 17);
    CHECK_EQ_INT(mst_reader_read_index(r, 1, 1, buf, 2), MST_ERR_RANGE);
    CHECK_EQ_INT(mst_reader_read_index(r, 2, 0, buf, 1), MST_ERR_NOT_FOUND);

    /* metadata, sorted by key, with lengths */
    CHECK_EQ_INT(mst_reader_metadata_count(r), 2);
    CHECK_EQ_INT(mst_reader_metadata(r, 0, &k, &v), MST_OK);
    CHECK(strcmp(k, "format") == 0 && strcmp(v, "pt") == 0);
    CHECK_EQ_INT(mst_reader_metadata_len(r, 1, &k, &klen, &v, &vlen), MST_OK);
    CHECK(klen == 2 && memcmp(k, "k\0", 2) == 0 && vlen == 3 && memcmp(v, "v\0v", 3) == 0);
    CHECK_EQ_INT(mst_reader_metadata_len(r, 2, &k, &klen, &v, &vlen), MST_ERR_INVALID_ARGUMENT);

    /* truncated after opening: the read fails cleanly */
    CHECK_EQ_INT(truncate(path, (off_t)(8 + sizeof header - 1 + 4)), 0);
    CHECK_EQ_INT(mst_reader_read(r, "w", 0, buf, 6), MST_ERR_IO);
    CHECK_MSG(strstr(mst_reader_error(r), "the file ended early"), "%s", mst_reader_error(r));
    CHECK_EQ_INT(mst_reader_read(r, "w", 0, buf, 4), MST_OK);
    mst_reader_free(&r);
    CHECK(r == NULL);
    mst_reader_free(&r); /* NULL-safe */
    mst_reader_free(NULL);

    /* and reopened it is invalid */
    CHECK_EQ_INT(mst_reader_open(&r, path), MST_ERR_OFFSETS);
    CHECK_MSG(strstr(mst_reader_error(r), "the file is shorter than its header says"), "%s",
              mst_reader_error(r));
    /* a failed handle answers every call without crashing */
    CHECK_EQ_INT(mst_reader_count(r), 0);
    CHECK_EQ_INT(mst_reader_read(r, "w", 0, buf, 1), MST_ERR_STATE);
    CHECK_EQ_INT(mst_reader_find(r, "w", &t), MST_ERR_NOT_FOUND);
    mst_reader_free(&r);

    /* not regular files: a FIFO (no writer: must not hang), a directory */
    snprintf(fifo, sizeof fifo, "%s/api.fifo", dir);
    unlink(fifo);
    CHECK_EQ_INT(mkfifo(fifo, 0600), 0);
    CHECK_EQ_INT(mst_reader_open(&r, fifo), MST_ERR_IO);
    CHECK_MSG(strstr(mst_reader_error(r), "not a regular file"), "%s", mst_reader_error(r));
    mst_reader_free(&r);
    unlink(fifo);
    CHECK_EQ_INT(mst_reader_open(&r, dir), MST_ERR_IO);
    CHECK_MSG(strstr(mst_reader_error(r), "is a directory"), "%s", mst_reader_error(r));
    mst_reader_free(&r);
    CHECK_EQ_INT(mst_reader_open(&r, "/dev/null"), MST_ERR_IO);
    mst_reader_free(&r);
    snprintf(path, sizeof path, "%s/does-not-exist", dir);
    CHECK_EQ_INT(mst_reader_open(&r, path), MST_ERR_IO);
    CHECK_MSG(strstr(mst_reader_error(r), "cannot open"), "%s", mst_reader_error(r));
    mst_reader_free(&r);

    /* NULL arguments */
    CHECK_EQ_INT(mst_reader_open(NULL, path), MST_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(mst_reader_open(&r, NULL), MST_ERR_INVALID_ARGUMENT);
    mst_reader_free(&r);
    CHECK_EQ_INT(mst_reader_count(NULL), 0);
    CHECK_EQ_INT(mst_reader_find(NULL, "w", &t), MST_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(mst_reader_read(NULL, "w", 0, buf, 1), MST_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(mst_strerror(MST_ERR_RANGE), "read outside the tensor") == 0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: t_reader corpus|api DIR\n");
        return 2;
    }
    if (strcmp(argv[1], "corpus") == 0) {
        if (run_corpus(argv[2]))
            return 1;
    } else if (strcmp(argv[1], "api") == 0) {
        test_api(argv[2]);
    } else {
        fprintf(stderr, "t_reader: unknown mode %s\n", argv[1]);
        return 2;
    }
    if (t_failures) {
        fprintf(stderr, "t_reader %s: %d failure(s)\n", argv[1], t_failures);
        return 1;
    }
    printf("t_reader %s: all checks passed\n", argv[1]);
    return 0;
}

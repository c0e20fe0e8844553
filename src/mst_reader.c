/* The reader: length checks, then the strict header decoder; data is read
 * only on request, with pread, so a header can be checked without touching
 * gigabytes behind it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mst_reader.h"
#include "mst_crc.h"
#include "mst_err.h"
#include "mst_header.h"

struct mst_reader {
    int fd;
    uint64_t file_size;
    uint64_t header_size; /* N */
    mst_header h;
    mst_err last;
};

/* Reads exactly len bytes at off; 0, or -1 with errno (0 at end of file). */
static int read_full(int fd, void *buf, uint64_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        size_t chunk = len > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)len;
        ssize_t got = pread(fd, p, chunk, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (got == 0) {
            errno = 0;
            return -1;
        }
        p += got;
        off += (uint64_t)got;
        len -= (uint64_t)got;
    }
    return 0;
}

static int open_file(mst_reader *r, const char *path)
{
    char qp[512];
    struct stat st;
    unsigned char len8[8];
    char *json;
    uint64_t n = 0;
    mst_quote(qp, sizeof qp, path, strlen(path), 400);
    /* O_NONBLOCK: opening a FIFO without a writer would block forever; it is
     * refused below like any other file that is not a regular file. */
    r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (r->fd < 0)
        return mst_err_set(&r->last, MST_ERR_IO, "cannot open %s: %s", qp, strerror(errno));
    if (fstat(r->fd, &st) != 0)
        return mst_err_set(&r->last, MST_ERR_IO, "cannot stat %s: %s", qp, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return mst_err_set(&r->last, MST_ERR_IO, "%s is a directory", qp);
    if (!S_ISREG(st.st_mode))
        return mst_err_set(&r->last, MST_ERR_IO,
                           "%s is not a regular file (a FIFO, socket or device)", qp);
    r->file_size = (uint64_t)st.st_size;
    if (r->file_size >= 8 && read_full(r->fd, len8, 8, 0) != 0)
        return mst_err_set(&r->last, MST_ERR_IO, "reading %s failed: %s", qp,
                           errno ? strerror(errno) : "unexpected end of file");
    if (mst_header_check_length(r->file_size, r->file_size >= 8 ? len8 : NULL, &n, &r->last))
        return r->last.code;
    r->header_size = n;
    json = malloc(n ? n : 1);
    if (!json)
        return mst_err_set(&r->last, MST_ERR_NO_MEMORY, "out of memory for a %llu-byte header",
                           (unsigned long long)n);
    if (read_full(r->fd, json, n, 8) != 0) {
        int e = errno;
        free(json);
        return mst_err_set(&r->last, MST_ERR_IO, "reading the header of %s failed: %s", qp,
                           e ? strerror(e) : "unexpected end of file");
    }
    mst_header_decode(&r->h, json, n, r->file_size - 8 - n, &r->last);
    free(json);
    return r->last.code;
}

int mst_reader_open(mst_reader **out, const char *path)
{
    mst_reader *r;
    if (!out)
        return MST_ERR_INVALID_ARGUMENT;
    *out = NULL;
    r = calloc(1, sizeof *r);
    if (!r)
        return MST_ERR_NO_MEMORY;
    r->fd = -1;
    *out = r;
    if (!path)
        return mst_err_set(&r->last, MST_ERR_INVALID_ARGUMENT, "NULL path");
    if (open_file(r, path) != MST_OK) {
        if (r->fd >= 0)
            close(r->fd);
        r->fd = -1;
    }
    return r->last.code;
}

void mst_reader_free(mst_reader **rp)
{
    mst_reader *r;
    if (!rp || !*rp)
        return;
    r = *rp;
    *rp = NULL;
    if (r->fd >= 0)
        close(r->fd);
    mst_header_free(&r->h);
    free(r);
}

const char *mst_reader_error(const mst_reader *r)
{
    return r ? r->last.msg : "NULL reader";
}

size_t mst_reader_count(const mst_reader *r)
{
    return r ? r->h.ntensors : 0;
}

int mst_reader_tensor(const mst_reader *r, size_t i, mst_tensor_info *out)
{
    if (!r || !out || i >= r->h.ntensors)
        return MST_ERR_INVALID_ARGUMENT;
    mst_header_tensor_info(&r->h.tensors[i], out);
    return MST_OK;
}

int mst_reader_find_len(const mst_reader *r, const char *name, size_t name_len,
                        mst_tensor_info *out)
{
    size_t i;
    if (!r || (!name && name_len) || !out)
        return MST_ERR_INVALID_ARGUMENT;
    i = mst_header_find(&r->h, name ? name : "", name_len);
    if (i == (size_t)-1)
        return MST_ERR_NOT_FOUND;
    mst_header_tensor_info(&r->h.tensors[i], out);
    return MST_OK;
}

int mst_reader_find(const mst_reader *r, const char *name, mst_tensor_info *out)
{
    if (!name)
        return MST_ERR_INVALID_ARGUMENT;
    return mst_reader_find_len(r, name, strlen(name), out);
}

size_t mst_reader_metadata_count(const mst_reader *r)
{
    return r ? r->h.nmeta : 0;
}

int mst_reader_metadata(const mst_reader *r, size_t i, const char **key, const char **value)
{
    if (!r || !key || !value || i >= r->h.nmeta)
        return MST_ERR_INVALID_ARGUMENT;
    *key = r->h.meta[i].key;
    *value = r->h.meta[i].value;
    return MST_OK;
}

int mst_reader_metadata_len(const mst_reader *r, size_t i, const char **key, size_t *key_len,
                            const char **value, size_t *value_len)
{
    if (!r || !key || !key_len || !value || !value_len || i >= r->h.nmeta)
        return MST_ERR_INVALID_ARGUMENT;
    *key = r->h.meta[i].key;
    *key_len = r->h.meta[i].key_len;
    *value = r->h.meta[i].value;
    *value_len = r->h.meta[i].value_len;
    return MST_OK;
}

uint64_t mst_reader_header_size(const mst_reader *r)
{
    return r ? r->header_size : 0;
}

uint64_t mst_reader_data_start(const mst_reader *r)
{
    return r ? 8 + r->header_size : 0;
}

uint64_t mst_reader_data_size(const mst_reader *r)
{
    return r ? r->h.data_len : 0;
}

static int read_tensor(mst_reader *r, const mst_header_tensor *t, uint64_t offset, void *buf,
                       uint64_t len)
{
    char q[MST_QUOTE_MAX];
    uint64_t size = t->end - t->begin;
    mst_quote(q, sizeof q, t->name, t->name_len, MST_QUOTE_LIMIT);
    if (offset > size || len > size - offset)
        return mst_err_set(&r->last, MST_ERR_RANGE,
                           "tensor %s has %llu bytes; cannot read %llu bytes at %llu", q,
                           (unsigned long long)size, (unsigned long long)len,
                           (unsigned long long)offset);
    if (read_full(r->fd, buf, len, 8 + r->header_size + t->begin + offset) != 0)
        return mst_err_set(&r->last, MST_ERR_IO, "reading tensor %s failed: %s", q,
                           errno ? strerror(errno) : "the file ended early (truncated since it was opened?)");
    return MST_OK;
}

static int check_open(mst_reader *r)
{
    if (r->fd < 0)
        return mst_err_set(&r->last, MST_ERR_STATE, "the reader has no valid file open");
    return MST_OK;
}

int mst_reader_read_len(mst_reader *r, const char *name, size_t name_len, uint64_t offset,
                        void *buf, uint64_t len)
{
    char q[MST_QUOTE_MAX];
    size_t i;
    if (!r || (!name && name_len) || (!buf && len))
        return MST_ERR_INVALID_ARGUMENT;
    if (check_open(r))
        return r->last.code;
    i = mst_header_find(&r->h, name ? name : "", name_len);
    if (i == (size_t)-1)
        return mst_err_set(&r->last, MST_ERR_NOT_FOUND, "no tensor %s in the file",
                           mst_quote(q, sizeof q, name ? name : "", name_len, MST_QUOTE_LIMIT));
    return read_tensor(r, &r->h.tensors[i], offset, buf, len);
}

int mst_reader_read(mst_reader *r, const char *name, uint64_t offset, void *buf, uint64_t len)
{
    if (!name)
        return MST_ERR_INVALID_ARGUMENT;
    return mst_reader_read_len(r, name, strlen(name), offset, buf, len);
}

int mst_reader_read_index(mst_reader *r, size_t i, uint64_t offset, void *buf, uint64_t len)
{
    if (!r || (!buf && len))
        return MST_ERR_INVALID_ARGUMENT;
    if (check_open(r))
        return r->last.code;
    if (i >= r->h.ntensors)
        return mst_err_set(&r->last, MST_ERR_NOT_FOUND, "no tensor number %zu (the file has %zu)",
                           i, r->h.ntensors);
    return read_tensor(r, &r->h.tensors[i], offset, buf, len);
}

/* ---- Checksums ("mst.crc32", see mst.h) ---------------------------------- */

int mst_reader_checksum(mst_reader *r, size_t i, uint32_t *crc)
{
    if (!r || !crc)
        return MST_ERR_INVALID_ARGUMENT;
    if (check_open(r))
        return r->last.code;
    if (i >= r->h.ntensors)
        return mst_err_set(&r->last, MST_ERR_NOT_FOUND, "no tensor number %zu (the file has %zu)",
                           i, r->h.ntensors);
    return mst_header_crc(&r->h, i, crc, &r->last);
}

static int mismatch(mst_reader *r, size_t i, uint32_t want, uint32_t got)
{
    char q[MST_QUOTE_MAX];
    const mst_header_tensor *t = &r->h.tensors[i];
    mst_quote(q, sizeof q, t->name, t->name_len, MST_QUOTE_LIMIT);
    return mst_err_set(&r->last, MST_ERR_CHECKSUM,
                       "tensor %s: checksum mismatch: the file records crc32 %08x, its bytes "
                       "have %08x",
                       q, (unsigned)want, (unsigned)got);
}

int mst_reader_check_index(mst_reader *r, size_t i, const void *buf, uint64_t len)
{
    uint32_t want;
    int rc;
    if (!r || (!buf && len))
        return MST_ERR_INVALID_ARGUMENT;
    if ((rc = mst_reader_checksum(r, i, &want)) != MST_OK)
        return rc;
    if (len != r->h.tensors[i].end - r->h.tensors[i].begin)
        return mst_err_set(&r->last, MST_ERR_RANGE,
                           "tensor number %zu has %llu bytes; %llu given to check", i,
                           (unsigned long long)(r->h.tensors[i].end - r->h.tensors[i].begin),
                           (unsigned long long)len);
    {
        uint32_t got = mst_crc32(0, buf, (size_t)len);
        return got == want ? MST_OK : mismatch(r, i, want, got);
    }
}

int mst_reader_verify_index(mst_reader *r, size_t i)
{
    enum { CHUNK = 8 << 20 };
    const mst_header_tensor *t;
    unsigned char *buf;
    uint32_t want, got = 0;
    uint64_t size;
    int rc;
    if (!r)
        return MST_ERR_INVALID_ARGUMENT;
    if ((rc = mst_reader_checksum(r, i, &want)) != MST_OK)
        return rc;
    t = &r->h.tensors[i];
    size = t->end - t->begin;
    buf = malloc(size < CHUNK ? (size ? (size_t)size : 1) : CHUNK);
    if (!buf)
        return mst_err_set(&r->last, MST_ERR_NO_MEMORY, "out of memory verifying a tensor");
    for (uint64_t off = 0; off < size; off += CHUNK) {
        uint64_t n = size - off < CHUNK ? size - off : CHUNK;
        if ((rc = read_tensor(r, t, off, buf, n)) != MST_OK) {
            free(buf);
            return rc;
        }
        got = mst_crc32(got, buf, (size_t)n);
    }
    free(buf);
    return got == want ? MST_OK : mismatch(r, i, want, got);
}

int mst_reader_verify(mst_reader *r, const char *name)
{
    char q[MST_QUOTE_MAX];
    size_t i;
    if (!r || !name)
        return MST_ERR_INVALID_ARGUMENT;
    if (check_open(r))
        return r->last.code;
    i = mst_header_find(&r->h, name, strlen(name));
    if (i == (size_t)-1)
        return mst_err_set(&r->last, MST_ERR_NOT_FOUND, "no tensor %s in the file",
                           mst_quote(q, sizeof q, name, strlen(name), MST_QUOTE_LIMIT));
    return mst_reader_verify_index(r, i);
}

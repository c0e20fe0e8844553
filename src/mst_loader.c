/* The loader: opening (rank 0 reads the header(s) and a set's index and
 * broadcasts the raw bytes; every rank decodes them), declarations, lookups
 * and the handle. The load itself is in mst_loader_load.c. */
#include "mst_loader.h"
#include "mst_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mst_box.h"
#include "mst_buf.h"
#include "mst_exchange.h"

int ml_byte_dims(const mst_header_tensor *t, uint64_t *gb)
{
    if (t->ndim == 0) {
        gb[0] = t->end - t->begin;
        return 1;
    }
    for (uint32_t d = 0; d < t->ndim; d++)
        gb[d] = (uint64_t)t->shape[d];
    gb[t->ndim - 1] = (uint64_t)t->shape[t->ndim - 1] * (uint64_t)mst_dtype_bits(t->dtype) / 8;
    return (int)t->ndim;
}

/* ---- rank 0: the raw bytes ---------------------------------------------- */

static int read_full(int fd, void *buf, uint64_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        size_t chunk = len > ((uint64_t)1 << 30) ? (size_t)1 << 30 : (size_t)len;
        ssize_t got = pread(fd, p, chunk, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = 0;
            return -1;
        }
        p += got;
        off += (uint64_t)got;
        len -= (uint64_t)got;
    }
    return 0;
}

static void pad8(mst_buf *b)
{
    static const char zeros[8];
    mst_buf_put(b, zeros, (8 - b->len % 8) % 8);
}

static void put_bytes(mst_buf *b, const char *s, size_t n)
{
    mst_buf_put_raw64(b, n);
    mst_buf_put(b, s, n);
    pad8(b);
}

/* Appends one file: path, size, N, header bytes (the reader's length checks
 * first, with its messages). */
static int pack_file(mst_buf *b, const char *path, mst_err *err)
{
    char qp[512];
    struct stat st;
    unsigned char len8[8];
    uint64_t n = 0, size;
    int fd, rc = MST_OK;
    mst_quote(qp, sizeof qp, path, strlen(path), 400);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return mst_err_set(err, MST_ERR_IO, "cannot open %s: %s", qp, strerror(errno));
    if (fstat(fd, &st) != 0)
        rc = mst_err_set(err, MST_ERR_IO, "cannot stat %s: %s", qp, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        rc = mst_err_set(err, MST_ERR_IO, "%s is a directory", qp);
    else if (!S_ISREG(st.st_mode))
        rc = mst_err_set(err, MST_ERR_IO, "%s is not a regular file (a FIFO, socket or device)",
                         qp);
    if (rc) {
        close(fd);
        return rc;
    }
    size = (uint64_t)st.st_size;
    if (size >= 8 && read_full(fd, len8, 8, 0) != 0)
        rc = mst_err_set(err, MST_ERR_IO, "reading %s failed: %s", qp,
                         errno ? strerror(errno) : "unexpected end of file");
    else if (mst_header_check_length(size, size >= 8 ? len8 : NULL, &n, err))
        rc = err->code;
    if (rc == MST_OK) {
        put_bytes(b, path, strlen(path));
        mst_buf_put_raw64(b, size);
        mst_buf_put_raw64(b, n);
        if (mst_buf_reserve(b, (size_t)n + 8) != 0) {
            rc = mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory for the %llu-byte header of %s",
                             (unsigned long long)n, qp);
        } else if (read_full(fd, b->data + b->len, n, 8) != 0) {
            rc = mst_err_set(err, MST_ERR_IO, "reading the header of %s failed: %s", qp,
                             errno ? strerror(errno) : "unexpected end of file");
        } else {
            b->len += (size_t)n;
            pad8(b);
        }
    }
    close(fd);
    return rc;
}

static int is_set_path(const char *path)
{
    struct stat st;
    size_t n = strlen(path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 1;
    return n >= 5 && strcmp(path + n - 5, ".json") == 0;
}

/* Rank 0: the blob rank 0 decodes. Layout (u64 words, strings padded to
 * 8 bytes): nfiles, files (path, size, N, header), nentries, entries (name,
 * shard index) of a set's weight_map (0 entries for a single file). */
static int pack_all(mst_buf *b, const char *path, int *is_set, mst_err *err)
{
    mst_shardset *s = NULL;
    int rc;
    *is_set = is_set_path(path);
    if (!*is_set) {
        mst_buf_put_raw64(b, 1);
        if (pack_file(b, path, err))
            return err->code;
        mst_buf_put_raw64(b, 0); /* not a set */
        return mst_buf_ok(b) ? MST_OK
                             : mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory for the header");
    }
    rc = mst_shardset_open(&s, path);
    if (rc != MST_OK) {
        mst_err_set(err, rc, "%s", s ? mst_shardset_error(s) : "out of memory");
        mst_shardset_free(&s);
        return rc;
    }
    mst_buf_put_raw64(b, mst_shardset_shard_count(s));
    for (size_t i = 0; i < mst_shardset_shard_count(s) && rc == MST_OK; i++)
        rc = pack_file(b, mst_shardset_shard_path(s, i), err);
    if (rc == MST_OK) {
        mst_buf_put_raw64(b, 1); /* a set */
        mst_buf_put_raw64(b, mst_shardset_tensor_count(s));
        for (size_t i = 0; i < mst_shardset_tensor_count(s); i++) {
            const char *name, *shard;
            size_t k = 0;
            mst_shardset_tensor(s, i, &name, &shard);
            while (k < mst_shardset_shard_count(s) && mst_shardset_shard(s, k) != shard)
                k++;
            put_bytes(b, name, strlen(name));
            mst_buf_put_raw64(b, k);
        }
        if (!mst_buf_ok(b))
            rc = mst_err_set(err, MST_ERR_NO_MEMORY, "out of memory for the headers of the set");
    }
    mst_shardset_free(&s);
    return rc;
}

/* ---- every rank: decoding ------------------------------------------------- */

typedef struct cursor {
    const char *p, *end;
} cursor;

static int get64(cursor *c, uint64_t *v)
{
    if (c->end - c->p < 8)
        return -1;
    memcpy(v, c->p, 8);
    c->p += 8;
    return 0;
}

/* n bytes, then the padding to 8 */
static int get_raw(cursor *c, uint64_t n, const char **s)
{
    uint64_t padded = (n + 7) / 8 * 8;
    if (n > (uint64_t)(c->end - c->p) || padded > (uint64_t)(c->end - c->p))
        return -1;
    *s = c->p;
    c->p += padded;
    return 0;
}

static int get_bytes(cursor *c, const char **s, uint64_t *n)
{
    return get64(c, n) || get_raw(c, *n, s);
}

static int check_set(mst_loader *l, cursor *c)
{
    uint64_t nent, total = 0;
    size_t *base = calloc(l->nfiles + 1, sizeof *base);
    unsigned char *seen;
    int rc = MST_OK;
    char q[MST_QUOTE_MAX];
    if (!base)
        return mst_err_set(&l->last, MST_ERR_NO_MEMORY, "out of memory");
    for (size_t f = 0; f < l->nfiles; f++)
        base[f + 1] = base[f] + l->files[f].h.ntensors;
    total = base[l->nfiles];
    seen = calloc(total ? total : 1, 1);
    if (!seen || get64(c, &nent)) {
        free(base);
        free(seen);
        return mst_err_set(&l->last, seen ? MST_ERR_FORMAT : MST_ERR_NO_MEMORY,
                           seen ? "malformed set description" : "out of memory");
    }
    for (uint64_t i = 0; i < nent && rc == MST_OK; i++) {
        const char *name;
        uint64_t n, k;
        size_t t;
        if (get_bytes(c, &name, &n) || get64(c, &k) || k >= l->nfiles) {
            rc = mst_err_set(&l->last, MST_ERR_FORMAT, "malformed set description");
            break;
        }
        mst_quote(q, sizeof q, name, (size_t)n, MST_QUOTE_LIMIT);
        t = mst_header_find(&l->files[k].h, name, (size_t)n);
        if (t == (size_t)-1)
            rc = mst_err_set(&l->last, MST_ERR_FORMAT,
                             "tensor %s is not in %s, where the weight_map puts it", q,
                             l->files[k].path);
        else if (seen[base[k] + t]++)
            rc = mst_err_set(&l->last, MST_ERR_FORMAT, "tensor %s is in the weight_map twice",
                             q);
    }
    for (size_t f = 0; f < l->nfiles && rc == MST_OK; f++)
        for (size_t t = 0; t < l->files[f].h.ntensors && rc == MST_OK; t++)
            if (!seen[base[f] + t]) {
                const mst_header_tensor *ht = &l->files[f].h.tensors[t];
                mst_quote(q, sizeof q, ht->name, ht->name_len, MST_QUOTE_LIMIT);
                rc = mst_err_set(&l->last, MST_ERR_FORMAT,
                                 "tensor %s of %s is missing from the weight_map", q,
                                 l->files[f].path);
            }
    free(base);
    free(seen);
    return rc;
}

static int decode_all(mst_loader *l, const char *blob, size_t len)
{
    cursor c = {blob, blob + len};
    uint64_t nf;
    if (get64(&c, &nf) || nf > len / 8)
        return mst_err_set(&l->last, MST_ERR_FORMAT, "malformed header description");
    l->files = calloc(nf ? nf : 1, sizeof *l->files);
    if (!l->files)
        return mst_err_set(&l->last, MST_ERR_NO_MEMORY, "out of memory");
    for (uint64_t f = 0; f < nf; f++) {
        ml_file *file = &l->files[f];
        const char *path, *json;
        uint64_t plen, n;
        if (get_bytes(&c, &path, &plen) || get64(&c, &file->file_size) || get64(&c, &n) ||
            get_raw(&c, n, &json) || n > file->file_size - 8)
            return mst_err_set(&l->last, MST_ERR_FORMAT, "malformed header description");
        file->fh = MPI_FILE_NULL;
        if (!(file->path = malloc(plen + 1)))
            return mst_err_set(&l->last, MST_ERR_NO_MEMORY, "out of memory");
        memcpy(file->path, path, plen);
        file->path[plen] = '\0';
        l->nfiles = f + 1;
        file->header_size = n;
        l->header_bytes += 8 + n;
        if (mst_header_decode(&file->h, json, n, file->file_size - 8 - n, &l->last)) {
            mst_err e = l->last;
            char q[512];
            mst_quote(q, sizeof q, file->path, plen, 400);
            mst_err_set(&l->last, e.code, "%s: %s", q, e.msg);
            return l->last.code;
        }
    }
    {
        uint64_t is_set;
        if (get64(&c, &is_set))
            return mst_err_set(&l->last, MST_ERR_FORMAT, "malformed header description");
        return is_set ? check_set(l, &c) : MST_OK;
    }
}

/* Rank 0, after decode_all: the decoded, validated headers for the other
 * ranks (nfiles; per file path, size, N, the header as mst_header_pack
 * writes it), so that no other rank parses JSON again. */
static int pack_decoded(const mst_loader *l, mst_buf *b)
{
    mst_buf_put_raw64(b, l->nfiles);
    for (size_t f = 0; f < l->nfiles; f++) {
        const ml_file *file = &l->files[f];
        put_bytes(b, file->path, strlen(file->path));
        mst_buf_put_raw64(b, file->file_size);
        mst_buf_put_raw64(b, file->header_size);
        if (mst_header_pack(b, &file->h) != 0)
            return -1;
    }
    return mst_buf_ok(b) ? 0 : -1;
}

static int unpack_decoded(mst_loader *l, const char *blob, size_t len)
{
    cursor c = {blob, blob + len};
    uint64_t nf;
    if (get64(&c, &nf) || nf > len / 8)
        return mst_err_set(&l->last, MST_ERR_FORMAT, "rank %d: malformed header description",
                           l->rank);
    l->files = calloc(nf ? nf : 1, sizeof *l->files);
    if (!l->files)
        return mst_err_set(&l->last, MST_ERR_NO_MEMORY, "rank %d: out of memory", l->rank);
    for (uint64_t f = 0; f < nf; f++) {
        ml_file *file = &l->files[f];
        const char *path;
        uint64_t plen;
        file->fh = MPI_FILE_NULL;
        if (get_bytes(&c, &path, &plen) || get64(&c, &file->file_size) ||
            get64(&c, &file->header_size))
            return mst_err_set(&l->last, MST_ERR_FORMAT,
                               "rank %d: malformed header description", l->rank);
        if (!(file->path = malloc(plen + 1)))
            return mst_err_set(&l->last, MST_ERR_NO_MEMORY, "rank %d: out of memory", l->rank);
        memcpy(file->path, path, plen);
        file->path[plen] = '\0';
        l->nfiles = f + 1;
        l->header_bytes += 8 + file->header_size;
        if (mst_header_unpack(&file->h, &c.p, c.end) != 0)
            return mst_err_set(&l->last, MST_ERR_NO_MEMORY,
                               "rank %d: out of memory for the decoded header of %s (or a "
                               "malformed description)", l->rank, file->path);
    }
    return MST_OK;
}

/* ---- open ------------------------------------------------------------------ */

static int parse_hints(mst_loader *l, MPI_Info hints, mst_err *err)
{
    char val[64];
    int flag = 0;
    l->buffer = MST_LOAD_BUFFER;
    if (hints == MPI_INFO_NULL)
        return MST_OK;
    if (MPI_Info_get(hints, "mst_load_buffer", (int)sizeof val - 1, val, &flag) != MPI_SUCCESS)
        return mst_err_set(err, MST_ERR_MPI, "rank %d: MPI_Info_get failed", l->rank);
    if (flag) {
        char *end;
        unsigned long long v;
        errno = 0;
        v = strtoull(val, &end, 10);
        if (val[0] < '0' || val[0] > '9' || *end || errno || v < 4096 || v > ((uint64_t)1 << 31))
            return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                               "rank %d: hint mst_load_buffer=\"%s\" is not a number of bytes "
                               "from 4096 to 2^31",
                               l->rank, val);
        l->buffer = v;
    }
    return MST_OK;
}

/* Rank 0's blob to every rank, in pieces of at most 1 GiB. */
static int share_blob(mst_loader *l, mst_buf *b, mst_err *err)
{
    uint64_t n = b->len;
    mst_err local;
    mst_err_clear(&local);
    if (MPI_Bcast(&n, 1, MPI_UINT64_T, 0, l->comm) != MPI_SUCCESS)
        return mst_err_set(err, MST_ERR_MPI, "rank %d: MPI_Bcast of the header size failed",
                           l->rank);
    if (l->rank != 0 && mst_buf_reserve(b, (size_t)n))
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory for %llu header bytes",
                    l->rank, (unsigned long long)n);
    if (mst_agree(l->comm, &local, err))
        return err->code;
    for (uint64_t done = 0; done < n;) {
        uint64_t part = n - done < ((uint64_t)1 << 30) ? n - done : (uint64_t)1 << 30;
        if (MPI_Bcast(b->data + done, (int)part, MPI_BYTE, 0, l->comm) != MPI_SUCCESS) {
            mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Bcast of the headers failed", l->rank);
            break;
        }
        done += part;
    }
    b->len = (size_t)n;
    return mst_agree(l->comm, &local, err);
}

int mst_loader_open(mst_loader **out, MPI_Comm comm, const char *path, MPI_Info hints)
{
    mst_loader *l;
    int init = 0, fin = 0, is_set = 0;
    char *p = NULL;
    mst_buf blob;
    mst_err local;
    if (!out)
        return MST_ERR_INVALID_ARGUMENT;
    *out = NULL;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin || comm == MPI_COMM_NULL)
        return MST_ERR_INVALID_ARGUMENT;
    if (!(l = calloc(1, sizeof *l)))
        return MST_ERR_NO_MEMORY;
    l->comm = MPI_COMM_NULL;
    l->info = MPI_INFO_NULL;
    l->failed = 1;
    *out = l;
    if (MPI_Comm_dup(comm, &l->comm) != MPI_SUCCESS) {
        l->comm = MPI_COMM_NULL;
        return mst_err_set(&l->last, MST_ERR_MPI, "MPI_Comm_dup failed");
    }
    MPI_Comm_set_errhandler(l->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(l->comm, &l->rank);
    MPI_Comm_size(l->comm, &l->nranks);
    mst_err_clear(&local);
    if (hints != MPI_INFO_NULL && MPI_Info_dup(hints, &l->info) != MPI_SUCCESS) {
        l->info = MPI_INFO_NULL;
        mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Info_dup failed", l->rank);
    } else {
        parse_hints(l, hints, &local);
    }
    if (l->rank == 0 && !path && !local.code)
        mst_err_set(&local, MST_ERR_INVALID_ARGUMENT, "rank 0: NULL path");
    if (mst_agree(l->comm, &local, &l->last))
        return l->last.code;
    {   /* the smallest buffer over the ranks */
        uint64_t mine = l->buffer;
        if (MPI_Allreduce(&mine, &l->buffer, 1, MPI_UINT64_T, MPI_MIN, l->comm) != MPI_SUCCESS)
            mst_err_set(&local, MST_ERR_MPI, "rank %d: MPI_Allreduce failed", l->rank);
        if (mst_agree(l->comm, &local, &l->last))
            return l->last.code;
    }
    p = l->rank == 0 ? (char *)path : NULL;
    if (mst_bcast_string(l->comm, &p, &l->last))
        return l->last.code;
    /* rank 0 reads, decodes and validates every header (and a set's
     * index); the others receive the decoded result (mst_header_pack) */
    mst_buf_init(&blob, 0);
    if (l->rank == 0) {
        if (pack_all(&blob, p, &is_set, &local) == MST_OK &&
            decode_all(l, blob.data, blob.len) != MST_OK)
            local = l->last;
        mst_buf_free(&blob);
        mst_buf_init(&blob, 0);
        if (local.code == MST_OK && l->nranks > 1 && pack_decoded(l, &blob) != 0)
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank 0: out of memory for the headers");
    } else {
        free(p);
    }
    if (mst_agree(l->comm, &local, &l->last) == MST_OK && l->nranks > 1 &&
        share_blob(l, &blob, &l->last) == MST_OK && l->rank != 0)
        unpack_decoded(l, blob.data, blob.len);
    mst_buf_free(&blob);
    if (l->last.code == MST_OK || l->nranks > 0) {
        mst_err mine = l->last;
        mst_agree(l->comm, &mine, &l->last);
    }
    if (l->last.code == MST_OK)
        l->failed = 0;
    return l->last.code;
}

void mst_loader_free(mst_loader **lp)
{
    mst_loader *l;
    int fin = 0;
    if (!lp || !*lp)
        return;
    l = *lp;
    *lp = NULL;
    MPI_Finalized(&fin);
    for (size_t f = 0; f < l->nfiles; f++) {
        if (!fin && l->files[f].opened)
            mst_io_close(&l->files[f].fh);
        free(l->files[f].path);
        mst_header_free(&l->files[f].h);
    }
    free(l->files);
    for (size_t i = 0; i < l->nreqs; i++)
        free(l->reqs[i].sb);
    free(l->reqs);
    if (!fin && l->info != MPI_INFO_NULL)
        MPI_Info_free(&l->info);
    if (!fin && l->comm != MPI_COMM_NULL)
        MPI_Comm_free(&l->comm);
    free(l);
}

const char *mst_loader_error(const mst_loader *l)
{
    return l ? l->last.msg : "NULL loader";
}

int mst_loader_stats(const mst_loader *l, mst_load_stats *out)
{
    if (!l || !out)
        return MST_ERR_INVALID_ARGUMENT;
    *out = l->stats;
    out->header_bytes = l->header_bytes;
    return MST_OK;
}

/* ---- lookups ------------------------------------------------------------------ */

/* The file and index of tensor `name`; -1 when absent. */
static int lookup(const mst_loader *l, const char *name, size_t *file, size_t *tensor)
{
    size_t len = strlen(name);
    for (size_t f = 0; f < l->nfiles; f++) {
        size_t t = mst_header_find(&l->files[f].h, name, len);
        if (t != (size_t)-1) {
            *file = f;
            *tensor = t;
            return 0;
        }
    }
    return -1;
}

int mst_loader_find(const mst_loader *l, const char *name, mst_tensor_info *out)
{
    size_t f, t;
    if (!l || !name || !out)
        return MST_ERR_INVALID_ARGUMENT;
    if (l->failed)
        return MST_ERR_STATE;
    if (lookup(l, name, &f, &t))
        return MST_ERR_NOT_FOUND;
    mst_header_tensor_info(&l->files[f].h.tensors[t], out);
    return MST_OK;
}

size_t mst_loader_count(const mst_loader *l)
{
    size_t n = 0;
    if (!l)
        return 0;
    for (size_t f = 0; f < l->nfiles; f++)
        n += l->files[f].h.ntensors;
    return n;
}

int mst_loader_tensor(const mst_loader *l, size_t i, mst_tensor_info *out)
{
    if (!l || !out)
        return MST_ERR_INVALID_ARGUMENT;
    for (size_t f = 0; f < l->nfiles; f++) {
        if (i < l->files[f].h.ntensors) {
            mst_header_tensor_info(&l->files[f].h.tensors[i], out);
            return MST_OK;
        }
        i -= l->files[f].h.ntensors;
    }
    return MST_ERR_INVALID_ARGUMENT;
}

/* ---- declarations ------------------------------------------------------------------ */

/* Keeps the first error of this rank for the next load; returns its code. */
static int keep(mst_loader *l, const mst_err *e)
{
    l->last = *e;
    if (l->first.code == MST_OK)
        l->first = *e;
    return e->code;
}

static int declare(mst_loader *l, const char *name, int ndim, const int64_t *start,
                   const int64_t *count, void *buf, mst_sink_fn sink, void *ctx)
{
    mst_err e;
    size_t f, t;
    const mst_header_tensor *ht;
    char q[MST_QUOTE_MAX], box[160];
    uint64_t bytes = 0, gb[64];
    ml_req *r;
    int whole = !start && !count, nd;
    if (!l)
        return MST_ERR_INVALID_ARGUMENT;
    mst_err_clear(&e);
    if (l->failed)
        return mst_err_set(&l->last, MST_ERR_STATE, "the loader's open failed");
    if (!name)
        return keep(l, (mst_err_set(&e, MST_ERR_INVALID_ARGUMENT, "rank %d: NULL tensor name",
                                    l->rank), &e));
    mst_quote(q, sizeof q, name, strlen(name), MST_QUOTE_LIMIT);
    if (lookup(l, name, &f, &t)) {
        if (whole)
            mst_err_set(&e, MST_ERR_NOT_FOUND, "tensor %s on rank %d: not in the file", q,
                        l->rank);
        else
            mst_err_set(&e, MST_ERR_NOT_FOUND, "tensor %s on rank %d (box %s): not in the file",
                        q, l->rank,
                        ndim >= 0 && start && count ? mst_box_format(box, sizeof box, ndim, start,
                                                                     count)
                                                    : "?");
        return keep(l, &e);
    }
    ht = &l->files[f].h.tensors[t];
    if (ht->ndim > 64)
        return keep(l, (mst_err_set(&e, MST_ERR_INVALID_ARGUMENT,
                                    "tensor %s on rank %d: more than 64 dimensions", q, l->rank),
                        &e));
    if (!whole) {
        if (ndim != (int)ht->ndim || !start || !count) {
            mst_err_set(&e, ndim != (int)ht->ndim ? MST_ERR_SLICE_MISMATCH : MST_ERR_INVALID_ARGUMENT,
                        "tensor %s on rank %d: a box of %d dimensions%s for a tensor of %u", q,
                        l->rank, ndim, !start || !count ? " (NULL start or count)" : "",
                        ht->ndim);
            return keep(l, &e);
        }
        if (mst_check_box(ht->name, ht->name_len, ht->dtype, ndim, ht->shape, start, count,
                          l->rank, &bytes, &e))
            return keep(l, &e);
    } else {
        bytes = ht->end - ht->begin;
    }
    if (bytes > 0 && !buf && !sink) {
        if (whole)
            mst_err_set(&e, MST_ERR_NULL_DATA, "tensor %s on rank %d: NULL %s", q, l->rank,
                        ctx == l ? "sink" : "buffer");
        else
            mst_err_set(&e, MST_ERR_NULL_DATA, "tensor %s on rank %d: box %s: NULL %s", q,
                        l->rank, mst_box_format(box, sizeof box, ndim, start, count),
                        ctx == l ? "sink" : "buffer");
        return keep(l, &e);
    }
    if (bytes == 0)
        return MST_OK; /* nothing to read */
    if (l->nreqs == l->cap) {
        size_t ncap = l->cap ? 2 * l->cap : 16;
        ml_req *g = realloc(l->reqs, ncap * sizeof *g);
        if (!g)
            return keep(l, (mst_err_set(&e, MST_ERR_NO_MEMORY, "rank %d: out of memory", l->rank),
                            &e));
        l->reqs = g;
        l->cap = ncap;
    }
    nd = ml_byte_dims(ht, gb);
    r = &l->reqs[l->nreqs];
    memset(r, 0, sizeof *r);
    if (!(r->sb = malloc(2 * (size_t)nd * sizeof *r->sb)))
        return keep(l, (mst_err_set(&e, MST_ERR_NO_MEMORY, "rank %d: out of memory", l->rank),
                        &e));
    r->cb = r->sb + nd;
    r->file = f;
    r->tensor = t;
    r->ndim = nd;
    r->bytes = bytes;
    if (whole || ht->ndim == 0) {
        for (int d = 0; d < nd; d++) {
            r->sb[d] = 0;
            r->cb[d] = gb[d];
        }
    } else {
        uint64_t g2[64];
        mst_box_bytes(ndim, ht->shape, start, count, mst_dtype_bits(ht->dtype), g2, r->sb, r->cb);
    }
    r->buf = buf;
    r->sink = sink;
    r->ctx = ctx == l ? NULL : ctx;
    r->whole = bytes == ht->end - ht->begin;
    l->nreqs++;
    return MST_OK;
}

int mst_loader_set_verify(mst_loader *l, int on)
{
    if (!l)
        return MST_ERR_INVALID_ARGUMENT;
    if (l->failed)
        return mst_err_set(&l->last, MST_ERR_STATE, "the loader's open failed");
    l->verify = on != 0;
    return MST_OK;
}

int mst_loader_read(mst_loader *l, const char *name, void *buf)
{
    return declare(l, name, 0, NULL, NULL, buf, NULL, NULL);
}

int mst_loader_read_slice(mst_loader *l, const char *name, int ndim, const int64_t *start,
                          const int64_t *count, void *buf)
{
    static const int64_t none[1] = {0};
    /* a scalar's box: ndim 0, start and count unused */
    if (ndim == 0)
        return declare(l, name, 0, start ? start : none, count ? count : none, buf, NULL, NULL);
    return declare(l, name, ndim, start, count, buf, NULL, NULL);
}

int mst_loader_read_stream(mst_loader *l, const char *name, int ndim, const int64_t *start,
                           const int64_t *count, mst_sink_fn sink, void *ctx)
{
    int whole = ndim == 0 || !start || !count;
    if (!l)
        return MST_ERR_INVALID_ARGUMENT;
    if (!sink) /* ctx == l marks "the sink is NULL" in the message */
        return declare(l, name, whole ? 0 : ndim, whole ? NULL : start, whole ? NULL : count,
                       NULL, NULL, l);
    return declare(l, name, whole ? 0 : ndim, whole ? NULL : start, whole ? NULL : count, NULL,
                   sink, ctx);
}

int mst_loader_load(mst_loader *l)
{
    if (!l)
        return MST_ERR_INVALID_ARGUMENT;
    if (l->failed)
        return mst_err_set(&l->last, MST_ERR_STATE, "the loader's open failed");
    return ml_load(l);
}

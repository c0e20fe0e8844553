/* Checksums (mst_writer_set_checksums): writes the files that
 * tests/tools/t_checksums.py checks independently (Python's zlib, its own
 * parser), at any number of ranks:
 *   OUT/redist.safetensors      whole, batched small, empty, streamed, row,
 *                               column, block and replicated tensors; strided
 *                               boxes redistributed (the default)
 *   OUT/collective.safetensors  the same with mst_strided_writes=collective
 *   OUT/set/                    the same as a multi-file set (small shards)
 *   OUT/off.safetensors         the same, checksums off (must equal the oracle)
 *   OUT/spec.json               the tensors (names, dtypes, shapes) for the oracle
 * and checks the errors: the reserved key while on, ranks that disagree.
 * Every byte follows t_fill (tests/common/t_util.h), by global position. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mst.h"
#include "t_util.h"

typedef struct decl {
    char name[64];
    mst_dtype dtype;
    int ndim;
    int64_t shape[2], start[2], count[2];
    int kind; /* 0 whole, 1 slice, 2 replica, 3 streamed, 4 streamed slice */
    unsigned char *data;
} decl;

static decl ds[64];
static int nd;
static int size;

/* the box's bytes, each at its global byte position (byte dimensions) */
static unsigned char *box_bytes(const char *name, mst_dtype dt, int ndim, const int64_t *shape,
                                const int64_t *start, const int64_t *count)
{
    int64_t eb = mst_dtype_bits(dt) / 8;
    int64_t rows = ndim == 2 ? count[0] : 1, cols = (ndim == 2 ? count[1] : count[0]) * eb;
    int64_t gcols = (ndim == 2 ? shape[1] : shape[0]) * eb;
    int64_t r0 = ndim == 2 ? start[0] : 0, c0 = (ndim == 2 ? start[1] : start[0]) * eb;
    unsigned char *b = malloc((size_t)(rows * cols) + 1);
    for (int64_t r = 0; r < rows; r++)
        t_fill(b + r * cols, (uint64_t)((r0 + r) * gcols + c0), (uint64_t)cols, name);
    return b;
}

static void add(const char *name, mst_dtype dt, int ndim, int64_t s0, int64_t s1, int kind,
                int64_t a0, int64_t a1, int64_t n0, int64_t n1)
{
    decl *d = &ds[nd++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->dtype = dt;
    d->ndim = ndim;
    d->shape[0] = s0;
    d->shape[1] = s1;
    d->kind = kind;
    d->start[0] = a0;
    d->start[1] = a1;
    d->count[0] = kind == 1 || kind == 4 ? n0 : s0;
    d->count[1] = kind == 1 || kind == 4 ? n1 : s1;
    if (kind != 1 && kind != 4) {
        d->start[0] = d->start[1] = 0;
    }
    d->data = kind == 3 ? NULL : box_bytes(name, dt, ndim, d->shape, d->start, d->count);
}

typedef struct stream_ctx {
    const decl *d;
} stream_ctx;

static int fill_whole(void *ctx, uint64_t off, void *buf, uint64_t len)
{
    t_fill(buf, off, len, ((const decl *)ctx)->name);
    return 0;
}

/* a streamed box: bytes from its prepared buffer */
static int fill_box(void *ctx, uint64_t off, void *buf, uint64_t len)
{
    memcpy(buf, ((const decl *)ctx)->data + off, len);
    return 0;
}

static void declare_all(int rank)
{
    char n[64];
    int p = size == 4 ? 2 : 1, q = size / p, bi = rank / q, bj = rank % q;
    nd = 0;
    snprintf(n, sizeof n, "whole.r%d", rank);
    add(n, MST_U8, 1, 1000 + 37 * rank, 0, 0, 0, 0, 0, 0);
    snprintf(n, sizeof n, "tiny.r%d", rank);
    add(n, MST_I32, 1, 3 + rank, 0, 0, 0, 0, 0, 0);
    snprintf(n, sizeof n, "big.r%d", rank);
    add(n, MST_F32, 1, 70000 + rank, 0, 0, 0, 0, 0, 0);
    /* above the 4 MiB pieces a large tensor's CRC and writes go in */
    snprintf(n, sizeof n, "huge.r%d", rank);
    add(n, MST_U8, 1, (4 << 20) + 12345 + rank, 0, 0, 0, 0, 0, 0);
    snprintf(n, sizeof n, "empty.r%d", rank);
    add(n, MST_F32, 2, 0, 5, 0, 0, 0, 0, 0);
    snprintf(n, sizeof n, "stream.r%d", rank);
    add(n, MST_U8, 1, 300000 + rank, 0, 3, 0, 0, 0, 0);
    add("rows", MST_BF16, 2, 8 * size, 100, 1, 8 * rank, 0, 8, 100);
    add("rows_streamed", MST_U8, 2, 50 * size, 999, 4, 50 * rank, 0, 50, 999);
    add("bigrows", MST_U8, 2, 5 * size, (1 << 20) + 7, 1, 5 * rank, 0, 5, (1 << 20) + 7);
    add("cols", MST_F32, 2, 64, 10 * size, 1, 0, 10 * rank, 64, 10);
    add("bigcols", MST_U8, 2, 3000, 400 * size, 1, 0, 400 * rank, 3000, 400);
    add("blocks", MST_U8, 2, 40 * p, 60 * q, 1, 40 * bi, 60 * bj, 40, 60);
    add("rep", MST_F16, 1, 5000, 0, 2, 0, 0, 0, 0);
    add("rep_small", MST_I64, 1, 3, 0, 2, 0, 0, 0, 0);
    add("rep_empty", MST_U8, 1, 0, 0, 2, 0, 0, 0, 0);
}

static int save(const char *path, int checksums, const char *strided, uint64_t shard,
                int extra_key, int disagree)
{
    mst_writer *w = NULL;
    MPI_Info info = MPI_INFO_NULL;
    int rc, rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (strided) {
        MPI_Info_create(&info);
        MPI_Info_set(info, "mst_strided_writes", strided);
    }
    rc = mst_writer_open(&w, MPI_COMM_WORLD, path, info);
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    if (rc != MST_OK)
        return rc;
    mst_writer_set_fsync(w, 0);
    mst_writer_set_staging(w, 4096); /* many pieces per streamed tensor */
    mst_writer_set_checksums(w, disagree ? rank == 1 : checksums);
    if (shard)
        mst_writer_set_max_shard_size(w, shard);
    for (int i = 0; i < nd; i++) {
        decl *d = &ds[i];
        switch (d->kind) {
        case 0:
            mst_writer_add(w, d->name, d->dtype, d->ndim, d->shape, d->data);
            break;
        case 1:
            mst_writer_add_slice(w, d->name, d->dtype, d->ndim, d->shape, d->start, d->count,
                                 d->data);
            break;
        case 2:
            mst_writer_add_replica(w, d->name, d->dtype, d->ndim, d->shape, d->data);
            break;
        case 3:
            mst_writer_add_stream(w, d->name, d->dtype, d->ndim, d->shape, fill_whole, d);
            break;
        case 4:
            mst_writer_add_slice_stream(w, d->name, d->dtype, d->ndim, d->shape, d->start,
                                        d->count, fill_box, d);
            break;
        }
    }
    mst_writer_add_metadata(w, "purpose", "checksums");
    if (extra_key)
        mst_writer_add_metadata(w, "mst.crc32", "user value");
    rc = mst_writer_commit(w);
    if (rc != MST_OK && rank == 0)
        fprintf(stderr, "commit of %s: %s\n", path, mst_writer_error(w));
    if (rc != MST_OK)
        t_failures += 0; /* the callers check rc */
    {
        static char last[1024];
        snprintf(last, sizeof last, "%s", mst_writer_error(w));
        if (rc != MST_OK && extra_key + disagree)
            CHECK_MSG(strstr(last, extra_key ? "reserved" : "disagree on mst_writer_set_checksums"),
                      "message: %s", last);
    }
    mst_writer_free(&w);
    return rc;
}

static void write_spec(const char *out)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof path, "%s/spec.json", out);
    f = fopen(path, "w");
    fprintf(f, "{\"metadata\": [[\"purpose\", \"checksums\"]], \"tensors\": [");
    for (int r = 0, first = 1; r < size; r++) {
        declare_all(r);
        for (int i = 0; i < nd; i++) {
            if (r > 0 && (ds[i].kind == 1 || ds[i].kind == 2 || ds[i].kind == 4))
                continue; /* shared tensors once */
            fprintf(f, "%s{\"name\": ", first ? "" : ", ");
            t_put_json_string(f, ds[i].name);
            fprintf(f, ", \"dtype\": \"%s\", \"shape\": [", mst_dtype_name(ds[i].dtype));
            for (int k = 0; k < ds[i].ndim; k++)
                fprintf(f, "%s%lld", k ? ", " : "", (long long)ds[i].shape[k]);
            fprintf(f, "]}");
            first = 0;
        }
        for (int i = 0; i < nd; i++)
            free(ds[i].data);
    }
    fprintf(f, "]}\n");
    fclose(f);
}

/* Loads `path` with mst_loader_set_verify(verify): tensor i whole on rank
 * i % size, the last tensor whole on every rank, and the first half of the
 * rows of every 2-D tensor as a box on every rank (boxes are not checked).
 * Returns the load's code; *msg its message (the same on every rank). */
static int load_verified(const char *path, int verify, char *msg, size_t cap, int *untouched)
{
    mst_loader *l = NULL;
    size_t n;
    unsigned char **bufs;
    int rc = mst_loader_open(&l, MPI_COMM_WORLD, path, MPI_INFO_NULL);
    CHECK_EQ_INT(rc, MST_OK);
    CHECK_EQ_INT(mst_loader_set_verify(l, verify), MST_OK);
    n = mst_loader_count(l);
    bufs = calloc(2 * n + 1, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        mst_tensor_info t;
        uint64_t bytes;
        CHECK_EQ_INT(mst_loader_tensor(l, i, &t), MST_OK);
        bytes = t.end - t.begin;
        if (i % (size_t)size == (size_t)t_rank || i == n - 1) {
            bufs[i] = malloc(bytes + 1);
            memset(bufs[i], 0xab, bytes + 1);
            CHECK_EQ_INT(mst_loader_read(l, t.name, bufs[i]), MST_OK);
        }
        if (t.ndim == 2 && t.shape[0] >= 2) {
            int64_t st[2] = {0, 0}, ct[2] = {t.shape[0] / 2, t.shape[1]};
            bufs[n + i] = malloc(bytes + 1);
            memset(bufs[n + i], 0xab, bytes + 1);
            CHECK_EQ_INT(mst_loader_read_slice(l, t.name, 2, st, ct, bufs[n + i]), MST_OK);
        }
    }
    rc = mst_loader_load(l);
    snprintf(msg, cap, "%s", mst_loader_error(l));
    *untouched = 1;
    for (size_t i = 0; i < 2 * n; i++) {
        if (bufs[i]) {
            mst_tensor_info t;
            CHECK_EQ_INT(mst_loader_tensor(l, i % n, &t), MST_OK);
            for (uint64_t b = 0; b < t.end - t.begin && *untouched; b++)
                if (bufs[i][b] != 0xab)
                    *untouched = 0;
        }
        free(bufs[i]);
    }
    free(bufs);
    mst_loader_free(&l);
    return rc;
}

/* The same message on every rank. */
static void same_message(const char *msg)
{
    char mine[1024] = {0}, *all = malloc(1024 * (size_t)size);
    snprintf(mine, sizeof mine, "%s", msg);
    MPI_Allgather(mine, 1024, MPI_CHAR, all, 1024, MPI_CHAR, MPI_COMM_WORLD);
    for (int r = 0; r < size; r++)
        CHECK_MSG(strcmp(all + 1024 * r, mine) == 0, "rank %d says \"%s\", this rank \"%s\"",
                  r, all + 1024 * r, mine);
    free(all);
}

/* The parallel loader's checks (mst_loader_set_verify): intact files and
 * sets pass; one flipped bit in a tensor read whole fails on every rank,
 * naming the tensor and the rank that read it; a file without checksums
 * fails before any buffer is written. The flip and the CRC come from the
 * test (zlib's value is checked by t_checksums.py on the same files). */
static void loader_verify(const char *dir)
{
    char path[4096], bad[4096], msg[1024], want[512];
    int untouched;
    snprintf(path, sizeof path, "%s/redist.safetensors", dir);
    CHECK_EQ_INT(load_verified(path, 1, msg, sizeof msg, &untouched), MST_OK);
    snprintf(path, sizeof path, "%s/set", dir);
    CHECK_EQ_INT(load_verified(path, 1, msg, sizeof msg, &untouched), MST_OK);
    /* flip one bit in the middle of the biggest tensor */
    snprintf(path, sizeof path, "%s/redist.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/flipped.safetensors", dir);
    {
        mst_reader *r = NULL;
        size_t big = 0, len = 0;
        uint64_t most = 0, at = 0, hdr;
        unsigned char *img;
        CHECK_EQ_INT(mst_reader_open(&r, path), MST_OK);
        for (size_t i = 0; i < mst_reader_count(r); i++) {
            mst_tensor_info t;
            mst_reader_tensor(r, i, &t);
            if (t.end - t.begin > most) {
                most = t.end - t.begin;
                big = i;
                at = t.begin + most / 2;
            }
        }
        {
            mst_tensor_info t;
            mst_reader_tensor(r, big, &t);
            /* read whole by rank big % size, and by every rank if it is the
             * last tensor (then rank 0's report wins) */
            snprintf(want, sizeof want, "tensor \"%.*s\" on rank %d: checksum mismatch",
                     (int)t.name_len, t.name,
                     big == mst_reader_count(r) - 1 ? 0 : (int)(big % (size_t)size));
        }
        mst_reader_free(&r);
        if (t_rank == 0) {
            img = t_read_file(path, &len);
            memcpy(&hdr, img, 8);
            img[8 + hdr + at] ^= 0x10;
            CHECK_EQ_INT(t_write_file(bad, img, len), 0);
            free(img);
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
    CHECK_EQ_INT(load_verified(bad, 1, msg, sizeof msg, &untouched), MST_ERR_CHECKSUM);
    CHECK_MSG(strstr(msg, want) != NULL, "message \"%s\" lacks \"%s\"", msg, want);
    same_message(msg);
    /* off: the flip goes unnoticed (the check is the caller's choice) */
    CHECK_EQ_INT(load_verified(bad, 0, msg, sizeof msg, &untouched), MST_OK);
    /* no "mst.crc32": refused before anything is read or written */
    snprintf(path, sizeof path, "%s/off.safetensors", dir);
    CHECK_EQ_INT(load_verified(path, 1, msg, sizeof msg, &untouched), MST_ERR_NOT_FOUND);
    CHECK_MSG(strstr(msg, "cannot verify") && strstr(msg, "no checksums"), "message \"%s\"", msg);
    CHECK(untouched);
    same_message(msg);
}

int main(int argc, char **argv)
{
    char path[4096];
    int rank;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    t_rank = rank;
    if (argc != 2) {
        fprintf(stderr, "usage: t_checksums OUTDIR\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (rank == 0)
        write_spec(argv[1]);
    declare_all(rank);

    snprintf(path, sizeof path, "%s/redist.safetensors", argv[1]);
    CHECK_EQ_INT(save(path, 1, NULL, 0, 0, 0), MST_OK);
    snprintf(path, sizeof path, "%s/collective.safetensors", argv[1]);
    CHECK_EQ_INT(save(path, 1, "collective", 0, 0, 0), MST_OK);
    snprintf(path, sizeof path, "%s/set", argv[1]);
    if (rank == 0)
        mkdir(path, 0777);
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK_EQ_INT(save(path, 1, NULL, 400000, 0, 0), MST_OK);
    snprintf(path, sizeof path, "%s/off.safetensors", argv[1]);
    CHECK_EQ_INT(save(path, 0, NULL, 0, 0, 0), MST_OK);
    /* off: "mst.crc32" is ordinary metadata */
    snprintf(path, sizeof path, "%s/userkey.safetensors", argv[1]);
    CHECK_EQ_INT(save(path, 0, NULL, 0, 1, 0), MST_OK);
    /* on: the key is reserved, on every rank, and no file appears */
    snprintf(path, sizeof path, "%s/reserved.safetensors", argv[1]);
    CHECK_EQ_INT(save(path, 1, NULL, 0, 1, 0), MST_ERR_INVALID_ARGUMENT);
    CHECK(!t_file_exists(path));
    if (size > 1) {
        snprintf(path, sizeof path, "%s/disagree.safetensors", argv[1]);
        CHECK_EQ_INT(save(path, 1, NULL, 0, 0, 1), MST_ERR_INVALID_ARGUMENT);
        CHECK(!t_file_exists(path));
    }
    loader_verify(argv[1]);
    for (int i = 0; i < nd; i++)
        free(ds[i].data);
    {
        int total = 0;
        MPI_Allreduce(&t_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (rank == 0)
            printf("%s: %d failed checks at %d ranks\n", total ? "FAILED" : "passed", total,
                   size);
        MPI_Finalize();
        return total ? 1 : 0;
    }
}

/* Saves a test case from every rank and compares the file, byte for byte, with
 * the canonical bytes written by the independent oracle
 * (tests/oracle/reference_writer.py) from this program's own description of the case.
 *
 *   t_save describe CASE SPEC.json           (no MPI: the case for the oracle)
 *   mpirun -np N t_save save CASE OUT EXPECTED [--no-fsync] [--stream=STAGING]
 *                                              [--shards=LIMIT]
 *
 * --shards: a multi-file save (mst_writer_set_max_shard_size) into the
 * directory OUT, compared file by file with the directory EXPECTED
 * (tests/oracle/reference_set.py); OUT must then hold exactly those files.
 * --stream: every other tensor is streamed through a fill callback with a
 * staging buffer of STAGING bytes (mst_writer_add_stream), and the others
 * with rows are split into two row boxes, streamed from two ranks
 * (mst_writer_add_slice_stream); the callbacks check that they are asked for
 * increasing, non-overlapping pieces of at most STAGING bytes that cover the
 * tensor once.
 *
 * Which rank owns which tensor depends on the number of ranks, so the same
 * expected file checks that the output does not. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "mst.h"
#include "t_util.h"

/* tensors of a case, at most ("many" has 3000) */
#define T_MAX 4096

typedef struct tcase_tensor {
    char name[96];
    mst_dtype dtype;
    int ndim;
    int64_t shape[4];
} tcase_tensor;

typedef struct tcase {
    tcase_tensor t[T_MAX];
    int n;
    const char *meta[8][2]; /* merged metadata, as it must appear */
    int nmeta;
} tcase;

static void add(tcase *c, const char *name, mst_dtype dtype, int ndim, int64_t d0, int64_t d1,
                int64_t d2)
{
    tcase_tensor *t = &c->t[c->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
}

static uint64_t nbytes(const tcase_tensor *t)
{
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d];
    return n * (uint64_t)mst_dtype_bits(t->dtype) / 8;
}

static int build_case(const char *name, tcase *c)
{
    memset(c, 0, sizeof *c);
    if (!strcmp(name, "mixed")) {
        char buf[96];
        /* one of every dtype, several shapes each */
        for (int d = 0; d < MST_DTYPE_COUNT; d++) {
            int sub = mst_dtype_bits((mst_dtype)d) < 8;
            snprintf(buf, sizeof buf, "model.layers.%d.%s", d, mst_dtype_name((mst_dtype)d));
            add(c, buf, (mst_dtype)d, 2, 3, sub ? 8 : 5, 0);
            snprintf(buf, sizeof buf, "vec.%s", mst_dtype_name((mst_dtype)d));
            add(c, buf, (mst_dtype)d, 1, sub ? 4 : 7, 0, 0);
        }
        add(c, "scalar.f32", MST_F32, 0, 0, 0, 0);
        add(c, "scalar.bf16", MST_BF16, 0, 0, 0, 0);
        add(c, "scalar.bool", MST_BOOL, 0, 0, 0, 0);
        add(c, "empty.f32", MST_F32, 2, 0, 3, 0);
        add(c, "empty.i64", MST_I64, 1, 0, 0, 0);
        add(c, "empty.f4", MST_F4, 3, 2, 0, 7);
        add(c, "a", MST_F32, 1, 1, 0, 0);
        add(c, "B", MST_F32, 1, 2, 0, 0);
        add(c, "aa", MST_F32, 1, 3, 0, 0);
        add(c, "\xc3\xa9t\xc3\xa9.poids", MST_F16, 2, 2, 2, 0);        /* été.poids */
        add(c, "\xe5\xb1\x82.0", MST_F16, 1, 3, 0, 0);                 /* CJK */
        add(c, "emoji.\xf0\x9f\x98\x80", MST_U8, 1, 5, 0, 0);
        add(c, "q\"uote\\back/slash", MST_I32, 1, 2, 0, 0);
        add(c, "ctl\n\t\x01\x1f\x7f", MST_I16, 1, 3, 0, 0);
        add(c, "space name", MST_U16, 3, 2, 3, 4);
        add(c, "deep", MST_F64, 3, 4, 1, 3);
        /* big enough to take many pieces through a 4 KiB staging buffer */
        add(c, "embed.weight", MST_F32, 2, 300, 129, 0);
        add(c, "lm_head.weight", MST_BF16, 2, 301, 77, 0);
        c->meta[0][0] = "format";
        c->meta[0][1] = "pt";
        c->meta[1][0] = "rank0.note";
        c->meta[1][1] = "caf\xc3\xa9 \"quoted\"\n";
        c->meta[2][0] = "";
        c->meta[2][1] = "empty key";
        c->nmeta = 3;
        return 0;
    }
    if (!strcmp(name, "big")) {
        /* one tensor past 2 GiB (and past two 1 GiB write chunks, odd size) */
        add(c, "big.u8", MST_U8, 1, (INT64_C(1) << 31) + 4093, 0, 0);
        add(c, "small.f32", MST_F32, 2, 17, 3, 0);
        add(c, "small.bf16", MST_BF16, 1, 9, 0, 0);
        add(c, "small.i8", MST_I8, 1, 11, 0, 0);
        c->meta[0][0] = "format";
        c->meta[0][1] = "pt";
        c->nmeta = 1;
        return 0;
    }
    if (!strcmp(name, "many")) {
        /* 3000 small tensors dealt over the ranks by hash (owner()): no rank
         * has many neighbours in the file, and the header is small */
        char buf[96];
        static const mst_dtype dt[4] = {MST_F32, MST_BF16, MST_U8, MST_I64};
        for (int i = 0; i < 3000; i++) {
            snprintf(buf, sizeof buf, "e.%d.w%d", i / 8, i % 8);
            add(c, buf, dt[i % 4], 1, 1 + (i * 37) % 97, 0, 0);
        }
        add(c, "big.f32", MST_F32, 2, 200, 100, 0); /* 80,000 bytes: not small */
        c->meta[0][0] = "format";
        c->meta[0][1] = "pt";
        c->nmeta = 1;
        return 0;
    }
    if (!strcmp(name, "gaps")) {
        /* all U8, in name order: the header, a.0, the large b.big, c.0, then
         * 60 small d.* back to back. At 2-4 ranks the first rank's stretch of
         * the small tensors' window has a gap (b.big) and the others' have
         * none: a file view there would be a collective call made by one rank */
        char buf[96];
        add(c, "a.0", MST_U8, 1, 1000, 0, 0);
        add(c, "b.big", MST_U8, 1, 100000, 0, 0);
        add(c, "c.0", MST_U8, 1, 1000, 0, 0);
        for (int i = 0; i < 60; i++) {
            snprintf(buf, sizeof buf, "d.%03d", i);
            add(c, buf, MST_U8, 1, 2000 + i, 0, 0);
        }
        return 0;
    }
    if (!strcmp(name, "empty"))
        return 0;
    if (!strcmp(name, "meta_only")) {
        c->meta[0][0] = "only";
        c->meta[0][1] = "metadata";
        c->nmeta = 1;
        return 0;
    }
    return -1;
}

/* The owner of tensor i at `size` ranks: uneven, and different for every
 * rank count. The big tensor sits on the last rank. */
static int owner(const tcase *c, int i, int size)
{
    if (!strcmp(c->t[i].name, "big.u8"))
        return size - 1;
    return (int)((t_name_hash(c->t[i].name) + (uint32_t)i * 7u) % (uint32_t)size);
}

static int describe(const tcase *c, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f, "{\"metadata\": [");
    for (int i = 0; i < c->nmeta; i++) {
        fprintf(f, "%s[", i ? ", " : "");
        t_put_json_string(f, c->meta[i][0]);
        fprintf(f, ", ");
        t_put_json_string(f, c->meta[i][1]);
        fprintf(f, "]");
    }
    fprintf(f, "],\n \"tensors\": [");
    for (int i = 0; i < c->n; i++) {
        fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
        t_put_json_string(f, c->t[i].name);
        fprintf(f, ", \"dtype\": \"%s\", \"shape\": [", mst_dtype_name(c->t[i].dtype));
        for (int d = 0; d < c->t[i].ndim; d++)
            fprintf(f, "%s%" PRId64, d ? ", " : "", c->t[i].shape[d]);
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
    return fclose(f) != 0;
}

/* Compares OUT with EXPECTED: small files whole on every rank, large ones in
 * 64 MiB stripes spread over the ranks. */
static void compare_files(const char *out, const char *expected, int rank, int size)
{
    const size_t chunk = 64u << 20;
    FILE *a = fopen(out, "rb"), *b = fopen(expected, "rb");
    unsigned char *x = malloc(chunk), *y = malloc(chunk);
    long long la, lb;
    CHECK_MSG(a && b && x && y, "cannot open %s or %s", out, expected);
    if (!a || !b || !x || !y)
        goto done;
    fseek(a, 0, SEEK_END);
    fseek(b, 0, SEEK_END);
    la = ftell(a);
    lb = ftell(b);
    CHECK_MSG(la == lb, "%s has %lld bytes, expected %lld", out, la, lb);
    for (long long off = 0, k = 0; la == lb && off < la; off += (long long)chunk, k++) {
        size_t n = (size_t)(la - off < (long long)chunk ? la - off : (long long)chunk);
        if (la > (long long)chunk && k % size != rank)
            continue;
        fseek(a, off, SEEK_SET);
        fseek(b, off, SEEK_SET);
        CHECK(fread(x, 1, n, a) == n && fread(y, 1, n, b) == n);
        if (memcmp(x, y, n) != 0) {
            size_t i = 0;
            while (x[i] == y[i])
                i++;
            CHECK_MSG(0, "%s differs from %s at byte %lld", out, expected, off + (long long)i);
            break;
        }
    }
done:
    if (a)
        fclose(a);
    if (b)
        fclose(b);
    free(x);
    free(y);
}

/* A streamed tensor or box: the data rule, from byte `base` of the tensor. */
typedef struct stream_ctx {
    const char *name;
    uint64_t base;   /* first byte of the box in the tensor */
    uint64_t nbytes; /* bytes of the box */
    uint64_t next;   /* the offset the next call must ask for */
    size_t staging;
    int calls;
} stream_ctx;

static int fill_rule(void *ctx, uint64_t offset, void *buf, uint64_t len)
{
    stream_ctx *s = ctx;
    CHECK_MSG(offset == s->next, "%s: asked for offset %llu, expected %llu", s->name,
              (unsigned long long)offset, (unsigned long long)s->next);
    CHECK_MSG(len > 0 && len <= s->staging && offset + len <= s->nbytes,
              "%s: asked for %llu bytes at %llu (staging %zu, box %llu bytes)", s->name,
              (unsigned long long)len, (unsigned long long)offset, s->staging,
              (unsigned long long)s->nbytes);
    t_fill(buf, s->base + offset, len, s->name);
    s->next = offset + len;
    s->calls++;
    return 0;
}

static void compare_dirs(const char *out, const char *expected, int rank, int size)
{
    DIR *d = opendir(expected);
    struct dirent *e;
    int n = 0;
    CHECK_MSG(d != NULL, "cannot list %s", expected);
    while (d && (e = readdir(d))) {
        char a[4096], b[4096];
        if (e->d_name[0] == '.')
            continue;
        snprintf(a, sizeof a, "%s/%s", out, e->d_name);
        snprintf(b, sizeof b, "%s/%s", expected, e->d_name);
        compare_files(a, b, rank, size);
        n++;
    }
    if (d)
        closedir(d);
    /* nothing else: no journal, no old or temporary files */
    d = opendir(out);
    while (d && (e = readdir(d))) {
        /* the lock file of set switches stays (see mst_writer_set_max_shard_size) */
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            strcmp(e->d_name, ".mst-set.lock") != 0)
            n--;
    }
    if (d)
        closedir(d);
    CHECK_MSG(n == 0, "%s holds %d more files than %s", out, -n, expected);
}

/* --redist=BYTES: the hint mst_redist_buffer (small tensors of several ranks
 * then move in rounds of BYTES / ranks per rank, cut at many places) */
static const char *redist_buffer;

static int save(const tcase *c, const char *out, const char *expected, int fsync, size_t staging,
                uint64_t shard_limit)
{
    static stream_ctx ctx[2 * T_MAX];
    int rank, size, rc;
    mst_writer *w = NULL;
    static void *bufs[T_MAX];
    char dir[4096], prefix[4096];
    const char *slash;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    t_rank = rank;

    if (rank == 0 && !shard_limit)
        remove(out);
    if (rank == 0 && shard_limit)
        mkdir(out, 0755);
    MPI_Barrier(MPI_COMM_WORLD);

    {
        /* hints reach MPI_File_open; the writer keeps its own copy, so the
         * caller may free them at once */
        MPI_Info hints;
        MPI_Info_create(&hints);
        MPI_Info_set(hints, "striping_factor", "4");
        MPI_Info_set(hints, "cb_buffer_size", "1048576");
        MPI_Info_set(hints, "romio_ds_write", "disable");
        if (redist_buffer)
            MPI_Info_set(hints, "mst_redist_buffer", redist_buffer);
        rc = mst_writer_open(&w, MPI_COMM_WORLD, out, hints);
        MPI_Info_free(&hints);
    }
    CHECK_EQ_INT(rc, MST_OK);
    CHECK_EQ_INT(mst_writer_set_fsync(w, fsync), MST_OK);
    /* metadata: "format" from every rank (the same value), the rest from one */
    for (int i = 0; i < c->nmeta; i++)
        if (i == 0 || rank == i % size)
            CHECK_EQ_INT(mst_writer_add_metadata(w, c->meta[i][0], c->meta[i][1]), MST_OK);
    for (int i = 0; i < c->n; i++) {
        const tcase_tensor *t = &c->t[i];
        uint64_t nb = nbytes(t);
        unsigned char *data;
        if (staging && i % 2 == 1 && t->ndim >= 1 && t->shape[0] >= 2 &&
            (nb * 8) % (uint64_t)t->shape[0] == 0 &&
            ((nb * 8) / (uint64_t)t->shape[0]) % 8 == 0) {
            /* two row boxes, from the owner and the next rank */
            int64_t half = t->shape[0] / 2, start[4] = {0}, count[4];
            uint64_t row = nb / (uint64_t)t->shape[0];
            for (int b = 0; b < 2; b++) {
                stream_ctx *s = &ctx[2 * i + b];
                if ((owner(c, i, size) + b) % size != rank)
                    continue;
                memcpy(count, t->shape, sizeof count);
                start[0] = b ? half : 0;
                count[0] = b ? t->shape[0] - half : half;
                s->name = t->name;
                s->base = (uint64_t)start[0] * row;
                s->nbytes = (uint64_t)count[0] * row;
                s->staging = staging;
                CHECK_EQ_INT(mst_writer_add_slice_stream(w, t->name, t->dtype, t->ndim, t->shape,
                                                         start, count, fill_rule, s),
                             MST_OK);
            }
            continue;
        }
        if (owner(c, i, size) != rank)
            continue;
        if (staging && i % 2 == 0) {
            stream_ctx *s = &ctx[2 * i];
            s->name = t->name;
            s->nbytes = nb;
            s->staging = staging;
            CHECK_EQ_INT(mst_writer_add_stream(w, t->name, t->dtype, t->ndim, t->shape,
                                               fill_rule, s),
                         MST_OK);
            continue;
        }
        /* every other tensor from an odd address: the buffers are the caller's */
        bufs[i] = malloc((size_t)nb + 1);
        CHECK(bufs[i] != NULL);
        if (!bufs[i])
            continue;
        data = (unsigned char *)bufs[i] + (i % 2);
        t_fill(data, 0, nb, t->name);
        CHECK_EQ_INT(mst_writer_add(w, t->name, t->dtype, t->ndim, t->shape,
                                    nb ? data : NULL), MST_OK);
    }
    if (staging)
        CHECK_EQ_INT(mst_writer_set_staging(w, staging), MST_OK);
    if (shard_limit)
        CHECK_EQ_INT(mst_writer_set_max_shard_size(w, shard_limit), MST_OK);
    rc = mst_writer_commit(w);
    CHECK_MSG(rc == MST_OK, "commit: %s: %s", mst_strerror(rc), mst_writer_error(w));
    /* every streamed byte was asked for, exactly once */
    for (int i = 0; i < 2 * c->n; i++)
        CHECK_MSG(ctx[i].next == ctx[i].nbytes && (ctx[i].nbytes == 0 || ctx[i].calls > 0),
                  "%s: %llu of %llu bytes streamed", ctx[i].name ? ctx[i].name : "?",
                  (unsigned long long)ctx[i].next, (unsigned long long)ctx[i].nbytes);
    CHECK(strcmp(mst_writer_error(w), "") == 0);
    /* a writer commits once */
    CHECK_EQ_INT(mst_writer_commit(w), MST_ERR_STATE);
    CHECK_EQ_INT(mst_writer_add(w, "late", MST_U8, 0, NULL, "x"), MST_ERR_STATE);
    mst_writer_free(&w);
    CHECK(w == NULL);
    mst_writer_free(&w); /* NULL-safe */
    for (int i = 0; i < T_MAX; i++)
        free(bufs[i]);

    if (rc == MST_OK && shard_limit) {
        compare_dirs(out, expected, rank, size);
    } else if (rc == MST_OK) {
        mst_reader *r = NULL;
        compare_files(out, expected, rank, size);
        CHECK_EQ_INT(mst_reader_open(&r, out), MST_OK);
        CHECK_EQ_INT(mst_reader_count(r), c->n);
        CHECK_EQ_INT(mst_reader_metadata_count(r), c->nmeta);
        mst_reader_free(&r);
        /* no temporary file left beside the target */
        slash = strrchr(out, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - out) : 1, slash ? out : ".");
        snprintf(prefix, sizeof prefix, "%s.tmp-mst.", slash ? slash + 1 : out);
        CHECK_EQ_INT(t_count_prefix(dir, prefix), 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    static tcase c;
    int total = 0, rank = 0;
    if (argc == 4 && !strcmp(argv[1], "describe")) {
        if (build_case(argv[2], &c) != 0) {
            fprintf(stderr, "unknown case %s\n", argv[2]);
            return 2;
        }
        return describe(&c, argv[3]);
    }
    if (argc < 5 || strcmp(argv[1], "save") != 0 || build_case(argv[2], &c) != 0) {
        fprintf(stderr, "usage: t_save describe CASE SPEC | t_save save CASE OUT EXPECTED "
                        "[--no-fsync]\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    {
        int fsync = 1;
        size_t staging = 0;
        uint64_t shards = 0;
        for (int a = 5; a < argc; a++) {
            if (!strcmp(argv[a], "--no-fsync"))
                fsync = 0;
            else if (!strncmp(argv[a], "--stream=", 9))
                staging = (size_t)strtoull(argv[a] + 9, NULL, 0);
            else if (!strncmp(argv[a], "--redist=", 9))
                redist_buffer = argv[a] + 9;
            else if (!strncmp(argv[a], "--shards=", 9))
                shards = strtoull(argv[a] + 9, NULL, 0);
        }
        save(&c, argv[3], argv[4], fsync, staging, shards);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Allreduce(&t_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (total == 0 && rank == 0) {
        /* the output is checked: remove it (big cases would fill the disk) */
        if (remove(argv[3]) != 0) {
            DIR *d = opendir(argv[3]);
            struct dirent *e;
            char p[8192];
            while (d && (e = readdir(d)))
                if (e->d_name[0] != '.') {
                    snprintf(p, sizeof p, "%s/%s", argv[3], e->d_name);
                    remove(p);
                }
            if (d)
                closedir(d);
            rmdir(argv[3]);
        }
        printf("t_save %s: identical to the canonical bytes\n", argv[2]);
    }
    MPI_Finalize();
    return total ? 1 : 0;
}

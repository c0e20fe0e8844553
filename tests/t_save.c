/* Saves a test case from every rank and compares the file, byte for byte, with
 * the canonical bytes written by the independent oracle
 * (tests/reference_writer.py) from this program's own description of the case.
 *
 *   t_save describe CASE SPEC.json           (no MPI: the case for the oracle)
 *   mpirun -np N t_save save CASE OUT EXPECTED [--no-fsync]
 *
 * Which rank owns which tensor depends on the number of ranks, so the same
 * expected file checks that the output does not. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mst.h"
#include "t_util.h"

typedef struct tcase_tensor {
    char name[96];
    mst_dtype dtype;
    int ndim;
    int64_t shape[4];
} tcase_tensor;

typedef struct tcase {
    tcase_tensor t[128];
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

static int save(const tcase *c, const char *out, const char *expected, int fsync)
{
    int rank, size, rc;
    mst_writer *w = NULL;
    void *bufs[128] = {0};
    char dir[4096], prefix[4096];
    const char *slash;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    t_rank = rank;

    if (rank == 0)
        remove(out);
    MPI_Barrier(MPI_COMM_WORLD);

    {
        /* hints reach MPI_File_open; the writer keeps its own copy, so the
         * caller may free them at once */
        MPI_Info hints;
        MPI_Info_create(&hints);
        MPI_Info_set(hints, "striping_factor", "4");
        MPI_Info_set(hints, "cb_buffer_size", "1048576");
        MPI_Info_set(hints, "romio_ds_write", "disable");
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
        if (owner(c, i, size) != rank)
            continue;
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
    rc = mst_writer_commit(w);
    CHECK_MSG(rc == MST_OK, "commit: %s: %s", mst_strerror(rc), mst_writer_error(w));
    CHECK(strcmp(mst_writer_error(w), "") == 0);
    /* a writer commits once */
    CHECK_EQ_INT(mst_writer_commit(w), MST_ERR_STATE);
    CHECK_EQ_INT(mst_writer_add(w, "late", MST_U8, 0, NULL, "x"), MST_ERR_STATE);
    mst_writer_free(&w);
    CHECK(w == NULL);
    mst_writer_free(&w); /* NULL-safe */
    for (int i = 0; i < 128; i++)
        free(bufs[i]);

    if (rc == MST_OK) {
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
    save(&c, argv[3], argv[4], !(argc > 5 && !strcmp(argv[5], "--no-fsync")));
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Allreduce(&t_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (total == 0 && rank == 0) {
        /* the output is checked: remove it (big cases would fill the disk) */
        remove(argv[3]);
        printf("t_save %s: identical to the canonical bytes\n", argv[2]);
    }
    MPI_Finalize();
    return total ? 1 : 0;
}

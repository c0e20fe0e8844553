/* Tensor-parallel saves: tensors split into random boxes (rows, columns, 2-D
 * blocks, random guillotine cuts, several boxes per rank, uneven, empty) or
 * replicated on random subsets of ranks, saved from every rank and compared
 * byte for byte with the canonical file of the full tensors, written by the
 * oracle (tests/oracle/reference_writer.py) as if one rank had saved them whole.
 *
 *   t_slices describe SPEC.json
 *   mpirun -np N t_slices save OUT EXPECTED SEED [RUNS [MODE]]
 *     RUNS saves with seeds SEED, SEED+1, ...: a different tiling each time,
 *     the same bytes expected. MODE picks how strided boxes are written:
 *     "redistribute" (the default), "small" (redistribution through buffers
 *     of 1 to 4096 bytes, a different size each run, so tensors are cut into
 *     many chunks and rounds) or "collective" (file views and collective
 *     writes).
 *   mpirun -np N t_slices big OUT
 *     A U8 tensor of 3 x 715,827,883 = 2^31 + 1 elements split into uneven
 *     column blocks (strided, counts over 2^31), beside a 1-D tensor split
 *     into rows, verified byte by byte through the reader. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mst.h"
#include "t_util.h"

typedef struct spec {
    const char *name;
    mst_dtype dtype;
    int ndim;
    int64_t shape[4];
} spec;

static const spec tensors[] = {
    {"embed.weight", MST_BF16, 2, {37, 24}},     /* vocabulary not divisible by ranks */
    {"attn.qkv.weight", MST_F32, 2, {16, 21}},
    {"mlp.up.weight", MST_F16, 2, {12, 10}},
    {"bias.i64", MST_I64, 1, {103}},
    {"cube.u8", MST_U8, 3, {5, 6, 7}},
    {"hyper.f64", MST_F64, 4, {3, 4, 5, 2}},
    {"quant.f4", MST_F4, 2, {6, 8}},
    {"quant.f6", MST_F6_E2M3, 2, {3, 8}},
    {"norm.weight", MST_F32, 1, {24}},
    {"scale", MST_F32, 0, {0}},
    {"empty.rows", MST_F32, 2, {0, 5}},
    {"mask.bool", MST_BOOL, 2, {9, 9}},
    {"rot.c64", MST_C64, 2, {4, 6}},
    {"wide.u16", MST_U16, 2, {2, 300}},
};
#define NTENSORS ((int)(sizeof tensors / sizeof *tensors))

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int64_t rnd_range(int64_t lo, int64_t hi) /* [lo, hi] */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static int describe(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f, "{\"metadata\": [[\"format\", \"pt\"]], \"tensors\": [");
    for (int i = 0; i < NTENSORS; i++) {
        fprintf(f, "%s\n {\"name\": ", i ? "," : "");
        t_put_json_string(f, tensors[i].name);
        fprintf(f, ", \"dtype\": \"%s\", \"shape\": [", mst_dtype_name(tensors[i].dtype));
        for (int d = 0; d < tensors[i].ndim; d++)
            fprintf(f, "%s%" PRId64, d ? ", " : "", tensors[i].shape[d]);
        fprintf(f, "]}");
    }
    fprintf(f, "]}\n");
    return fclose(f) != 0;
}

typedef struct box {
    int64_t start[4], count[4];
    int rank;
} box;

/* Elements along the last dimension must cover whole bytes (F4, F6). */
static int64_t last_align(mst_dtype d)
{
    int bits = mst_dtype_bits(d);
    return bits % 8 == 0 ? 1 : bits == 4 ? 2 : 4;
}

/* Cuts [0, n) into k pieces at random (aligned) points; pieces may be empty. */
static int cut(int64_t n, int k, int64_t align, int64_t *at)
{
    at[0] = 0;
    at[k] = n;
    for (int i = 1; i < k; i++)
        at[i] = rnd_range(0, n / align) * align;
    /* sort */
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && at[j] < at[j - 1]; j--) {
            int64_t t = at[j];
            at[j] = at[j - 1];
            at[j - 1] = t;
        }
    return k;
}

/* A random tiling of tensor t into boxes; returns the number of boxes. */
static int tile(const spec *t, int size, box *out, const char **scheme)
{
    int n = 0, nd = t->ndim, last = nd - 1;
    int64_t at[17], at2[17];
    int s = (int)(rnd() % 5);
    box whole;
    for (int d = 0; d < nd; d++) {
        whole.start[d] = 0;
        whole.count[d] = t->shape[d];
    }
    whole.rank = 0;
    if (nd == 0) {
        *scheme = "scalar";
        whole.rank = (int)(rnd() % (uint64_t)size);
        out[0] = whole;
        return 1;
    }
    if (s == 0 || (nd == 1 && s >= 2)) {
        /* rows: split dimension 0 over the ranks (uneven), maybe more pieces */
        int k = size + (int)(rnd() % 3);
        *scheme = "rows";
        cut(t->shape[0], k, nd == 1 ? last_align(t->dtype) : 1, at);
        for (int i = 0; i < k; i++) {
            box b = whole;
            b.start[0] = at[i];
            b.count[0] = at[i + 1] - at[i];
            b.rank = i % size;
            out[n++] = b;
        }
    } else if (s == 1) {
        /* columns: split the last dimension */
        int k = size + (int)(rnd() % 2);
        *scheme = "cols";
        cut(t->shape[last], k, last_align(t->dtype), at);
        for (int i = 0; i < k; i++) {
            box b = whole;
            b.start[last] = at[i];
            b.count[last] = at[i + 1] - at[i];
            b.rank = (i + 1) % size;
            out[n++] = b;
        }
    } else if (s == 2) {
        /* 2-D blocks over dimension 0 and the last one */
        int k1 = 1 + (int)(rnd() % 3), k2 = 1 + (int)(rnd() % 3);
        *scheme = "blocks";
        cut(t->shape[0], k1, 1, at);
        cut(t->shape[last], k2, last_align(t->dtype), at2);
        for (int i = 0; i < k1; i++)
            for (int j = 0; j < k2; j++) {
                box b = whole;
                b.start[0] = at[i];
                b.count[0] = at[i + 1] - at[i];
                b.start[last] = at2[j];
                b.count[last] = at2[j + 1] - at2[j];
                b.rank = (int)(rnd() % (uint64_t)size);
                out[n++] = b;
            }
    } else {
        /* guillotine: cut a random box along a random dimension, a few times */
        int pieces = 1 + (int)(rnd() % 6), tries = 0;
        *scheme = "guillotine";
        out[n++] = whole;
        while (n < pieces && tries++ < 100) {
            int i = (int)(rnd() % (uint64_t)n), d = (int)(rnd() % (uint64_t)nd);
            int64_t align = d == last ? last_align(t->dtype) : 1, c;
            box a = out[i], b;
            if (a.count[d] < 2 * align)
                continue;
            c = rnd_range(1, a.count[d] / align - 1) * align;
            b = a;
            a.count[d] = c;
            b.start[d] += c;
            b.count[d] -= c;
            out[i] = a;
            out[n++] = b;
        }
        for (int i = 0; i < n; i++)
            out[i].rank = (int)(rnd() % (uint64_t)size);
    }
    return n;
}

/* The bytes of a box of tensor t, cut from the full tensor's data rule. */
static unsigned char *box_data(const spec *t, const box *b, uint64_t *nbytes)
{
    int nd = t->ndim, bits = mst_dtype_bits(t->dtype);
    uint64_t gb[4] = {0}, sb[4] = {0}, cb[4] = {0}, vol = 1, run, idx[4] = {0}, pos = 0;
    unsigned char *buf;
    for (int d = 0; d < nd; d++) {
        gb[d] = (uint64_t)t->shape[d];
        sb[d] = (uint64_t)b->start[d];
        cb[d] = (uint64_t)b->count[d];
    }
    if (nd > 0) {
        gb[nd - 1] = gb[nd - 1] * (uint64_t)bits / 8;
        sb[nd - 1] = sb[nd - 1] * (uint64_t)bits / 8;
        cb[nd - 1] = cb[nd - 1] * (uint64_t)bits / 8;
    }
    for (int d = 0; d < nd; d++)
        vol *= cb[d];
    if (nd == 0)
        vol = (uint64_t)bits / 8;
    *nbytes = vol;
    buf = malloc(vol ? vol : 1);
    if (nd == 0) {
        t_fill(buf, 0, vol, t->name);
        return buf;
    }
    if (vol == 0)
        return buf;
    run = cb[nd - 1];
    /* every row of the box: a run along the last dimension */
    for (;;) {
        uint64_t off = 0, stride = 1;
        for (int d = nd - 1; d >= 0; d--) {
            off += (d == nd - 1 ? sb[d] : sb[d] + idx[d]) * stride;
            stride *= gb[d];
        }
        t_fill(buf + pos, off, run, t->name);
        pos += run;
        {
            int d = nd - 2;
            while (d >= 0 && ++idx[d] == cb[d])
                idx[d--] = 0;
            if (d < 0)
                break;
        }
    }
    return buf;
}

static void compare_files(const char *out, const char *expected)
{
    size_t la = 0, lb = 0;
    unsigned char *a = t_read_file(out, &la), *b = t_read_file(expected, &lb);
    CHECK_MSG(a && b, "cannot read %s or %s", out, expected);
    if (a && b) {
        CHECK_MSG(la == lb, "%s has %zu bytes, expected %zu", out, la, lb);
        if (la == lb && memcmp(a, b, la) != 0) {
            size_t i = 0;
            while (a[i] == b[i])
                i++;
            CHECK_MSG(0, "%s differs from %s at byte %zu", out, expected, i);
        }
    }
    free(a);
    free(b);
}

static const char *mode = "redistribute";

/* The writer's hints for this run (MPI_INFO_NULL for the default). */
static MPI_Info run_hints(int run)
{
    static const char *const buffers[] = {"1", "7", "64", "333", "4096", "24"};
    MPI_Info info = MPI_INFO_NULL;
    if (!strcmp(mode, "redistribute"))
        return MPI_INFO_NULL;
    MPI_Info_create(&info);
    if (!strcmp(mode, "small"))
        MPI_Info_set(info, "mst_redist_buffer",
                     buffers[run % (int)(sizeof buffers / sizeof *buffers)]);
    else
        MPI_Info_set(info, "mst_strided_writes", mode);
    return info;
}

static void save(const char *out, const char *expected, uint64_t seed, int run, int rank,
                 int size)
{
    MPI_Info hints = run_hints(run);
    static box boxes[NTENSORS][64];
    int nboxes[NTENSORS];
    int replica_of[NTENSORS]; /* bitmask of holders, 0 when sliced */
    void *bufs[NTENSORS * 64];
    int nbufs = 0, rc;
    mst_writer *w = NULL;
    char log[2048];
    size_t lo = 0;

    rng_state = seed * 7919 + 17; /* the same on every rank: the same tiling */
    for (int i = 0; i < NTENSORS; i++) {
        const char *scheme = "";
        replica_of[i] = 0;
        if (rnd() % 5 == 0) {
            /* a replica on a random non-empty subset of the ranks */
            while (replica_of[i] == 0)
                replica_of[i] = (int)(rnd() % (1u << size));
            nboxes[i] = 0;
            scheme = "replica";
        } else {
            nboxes[i] = tile(&tensors[i], size, boxes[i], &scheme);
        }
        lo += (size_t)snprintf(log + lo, lo < sizeof log ? sizeof log - lo : 0, "%s%s:%s",
                               i ? " " : "", tensors[i].name, scheme);
    }
    if (rank == 0 && getenv("T_SLICES_VERBOSE"))
        printf("seed %" PRIu64 ": %s\n", seed, log);

    if (rank == 0)
        remove(out);
    CHECK_EQ_INT(mst_writer_open(&w, MPI_COMM_WORLD, out, hints), MST_OK);
    if (hints != MPI_INFO_NULL)
        MPI_Info_free(&hints);
    CHECK_EQ_INT(mst_writer_add_metadata(w, "format", "pt"), MST_OK);
    for (int i = 0; i < NTENSORS; i++) {
        const spec *t = &tensors[i];
        if (replica_of[i]) {
            if (replica_of[i] & (1 << rank)) {
                box whole;
                uint64_t nb;
                for (int d = 0; d < t->ndim; d++) {
                    whole.start[d] = 0;
                    whole.count[d] = t->shape[d];
                }
                bufs[nbufs] = box_data(t, &whole, &nb);
                CHECK_EQ_INT(mst_writer_add_replica(w, t->name, t->dtype, t->ndim, t->shape,
                                                    bufs[nbufs]),
                             MST_OK);
                nbufs++;
            }
            continue;
        }
        for (int j = 0; j < nboxes[i]; j++) {
            uint64_t nb;
            if (boxes[i][j].rank != rank)
                continue;
            bufs[nbufs] = box_data(t, &boxes[i][j], &nb);
            rc = mst_writer_add_slice(w, t->name, t->dtype, t->ndim, t->shape, boxes[i][j].start,
                                      boxes[i][j].count, bufs[nbufs]);
            CHECK_MSG(rc == MST_OK, "add_slice %s: %s", t->name, mst_writer_error(w));
            nbufs++;
        }
    }
    rc = mst_writer_commit(w);
    CHECK_MSG(rc == MST_OK, "seed %" PRIu64 ": commit: %s: %s (tiling: %s)", seed,
              mst_strerror(rc), mst_writer_error(w), log);
    mst_writer_free(&w);
    for (int i = 0; i < nbufs; i++)
        free(bufs[i]);
    if (rc == MST_OK) {
        int before = t_failures;
        compare_files(out, expected);
        if (t_failures != before)
            fprintf(stderr, "[rank %d] seed %" PRIu64 " tiling: %s\n", rank, seed, log);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

static unsigned char big_byte(uint64_t i, uint64_t j)
{
    return (unsigned char)(i * 131 + j * 7 + (j >> 8) * 13 + (j >> 20));
}

/* The big case: every rank fills and declares its column block, then rank 0
 * checks the header with the reader and every byte of the data. */
static void big(const char *out, int rank, int size)
{
    const int64_t shape[2] = {3, 715827883}, vshape[1] = {1000003};
    int64_t c0 = shape[1] * rank / size, c1 = shape[1] * (rank + 1) / size;
    int64_t start[2] = {0, c0}, count[2] = {3, c1 - c0};
    int64_t v0 = vshape[0] * rank / size, v1 = vshape[0] * (rank + 1) / size;
    uint64_t bytes = (uint64_t)3 * (uint64_t)(c1 - c0);
    unsigned char *mine = malloc(bytes ? bytes : 1);
    uint16_t *vec = malloc((size_t)(v1 - v0 + 1) * sizeof *vec);
    mst_writer *w = NULL;
    int rc;
    CHECK(mine && vec);
    if (!mine || !vec)
        return;
    for (uint64_t i = 0; i < 3; i++)
        for (uint64_t j = 0; j < (uint64_t)(c1 - c0); j++)
            mine[i * (uint64_t)(c1 - c0) + j] = big_byte(i, j + (uint64_t)c0);
    for (int64_t k = v0; k < v1; k++)
        vec[k - v0] = (uint16_t)(k * 40503u);
    if (rank == 0)
        remove(out);
    CHECK_EQ_INT(mst_writer_open(&w, MPI_COMM_WORLD, out, MPI_INFO_NULL), MST_OK);
    mst_writer_set_fsync(w, 0);
    CHECK_EQ_INT(mst_writer_add_slice(w, "big.u8", MST_U8, 2, shape, start, count, mine), MST_OK);
    start[0] = v0;
    count[0] = v1 - v0;
    CHECK_EQ_INT(mst_writer_add_slice(w, "vec.bf16", MST_BF16, 1, vshape, start, count, vec),
                 MST_OK);
    rc = mst_writer_commit(w);
    CHECK_MSG(rc == MST_OK, "commit: %s", mst_writer_error(w));
    mst_writer_free(&w);
    free(mine);
    free(vec);
    if (rc == MST_OK && rank == 0) {
        mst_reader *r = NULL;
        mst_tensor_info ti;
        const uint64_t part = (uint64_t)64 << 20;
        unsigned char *buf = malloc(part);
        CHECK(buf != NULL);
        CHECK_EQ_INT(mst_reader_open(&r, out), MST_OK);
        if (buf && r && mst_reader_find(r, "big.u8", &ti) == MST_OK) {
            uint64_t row = (uint64_t)shape[1], n = 0, bad = 0;
            CHECK(ti.ndim == 2 && ti.shape[0] == 3 && ti.shape[1] == shape[1]);
            CHECK(ti.end - ti.begin == 3 * row);
            for (uint64_t off = 0; off < 3 * row && !bad; off += n) {
                n = 3 * row - off < part ? 3 * row - off : part;
                CHECK_EQ_INT(mst_reader_read(r, "big.u8", off, buf, n), MST_OK);
                for (uint64_t k = 0; k < n; k++)
                    if (buf[k] != big_byte((off + k) / row, (off + k) % row)) {
                        CHECK_MSG(0, "big.u8 byte %llu is %u, expected %u",
                                  (unsigned long long)(off + k), buf[k],
                                  big_byte((off + k) / row, (off + k) % row));
                        bad = 1;
                        break;
                    }
            }
        } else {
            CHECK_MSG(0, "big.u8 not found in %s", out);
        }
        if (buf && r && mst_reader_find(r, "vec.bf16", &ti) == MST_OK) {
            uint16_t *v = (uint16_t *)buf;
            CHECK(ti.end - ti.begin == 2 * (uint64_t)vshape[0]);
            CHECK_EQ_INT(mst_reader_read(r, "vec.bf16", 0, v, 2 * (uint64_t)vshape[0]), MST_OK);
            for (int64_t k = 0; k < vshape[0]; k++)
                if (v[k] != (uint16_t)(k * 40503u)) {
                    CHECK_MSG(0, "vec.bf16 element %lld differs", (long long)k);
                    break;
                }
        } else {
            CHECK_MSG(0, "vec.bf16 not found in %s", out);
        }
        mst_reader_free(&r);
        free(buf);
    }
}

int main(int argc, char **argv)
{
    int rank, size, total = 0, runs = 0, is_big;
    if (argc == 3 && !strcmp(argv[1], "describe"))
        return describe(argv[2]);
    is_big = argc == 3 && !strcmp(argv[1], "big");
    if (!is_big && (argc < 5 || strcmp(argv[1], "save") != 0)) {
        fprintf(stderr, "usage: t_slices describe SPEC | t_slices save OUT EXPECTED SEED [RUNS "
                        "[redistribute|small|collective]] | t_slices big OUT\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    t_rank = rank;
    if (is_big) {
        big(argv[2], rank, size);
    } else {
        uint64_t seed = strtoull(argv[4], NULL, 10);
        runs = argc > 5 ? atoi(argv[5]) : 1;
        if (argc > 6)
            mode = argv[6];
        for (int r = 0; r < runs; r++)
            save(argv[2], argv[3], seed + (uint64_t)r, r, rank, size);
    }
    MPI_Allreduce(&t_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        if (!total || is_big) /* a 2 GiB file is not kept for inspection */
            remove(argv[2]);
        if (is_big)
            printf("t_slices big at %d ranks: %s\n", size,
                   total ? "FAILED" : "2^31 + 1 elements from column blocks, every byte right");
        else
            printf("t_slices at %d ranks, %d tilings, strided boxes: %s: %s\n", size, runs, mode,
                   total ? "FAILED"
                         : "every file identical to the full tensors saved by one rank");
    }
    MPI_Finalize();
    return total ? 1 : 0;
}

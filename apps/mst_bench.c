/* mst-bench: write a synthetic checkpoint through mst from every rank and
 * report the throughput.
 *
 *   mpirun -np 4 mst-bench -o /scratch/ckpt.safetensors --size 4GiB --tensors 256 --verify
 *
 * Tensor i is owned by rank i % nranks; its bytes are a pure function of the
 * seed, its name and the byte position, so --verify can check every byte
 * without keeping a copy. One JSON line per run on rank 0's stdout. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mst.h"

typedef struct options {
    const char *out;
    uint64_t size;
    uint64_t tensors;
    uint64_t seed;
    int dtype; /* -1: a mix */
    int verify, fsync, repeat, remove;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -np N mst-bench -o FILE [options]\n"
            "  -o, --out FILE    target file (on the file system to measure)\n"
            "  --size SIZE       total tensor bytes (default 256MiB); suffixes K M G (1000s)\n"
            "                    or KiB MiB GiB (1024s)\n"
            "  --tensors N       number of tensors (default 64), spread round-robin over ranks\n"
            "  --dtype NAME|mix  dtype of every tensor (default mix: F32 BF16 F16 I64 U8 ...)\n"
            "  --seed S          data seed (default 1)\n"
            "  --no-fsync        skip MPI_File_sync and the directory fsync\n"
            "  --repeat R        runs (default 1), one JSON line each\n"
            "  --verify          read the file back and check every byte of every tensor\n"
            "  --remove          delete the file at the end\n");
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mul = 1;
    if (end == s || s[0] == '-')
        return -1;
    if (!strcmp(end, "") || !strcmp(end, "B"))
        mul = 1;
    else if (!strcmp(end, "K") || !strcmp(end, "KB"))
        mul = 1000;
    else if (!strcmp(end, "M") || !strcmp(end, "MB"))
        mul = 1000000;
    else if (!strcmp(end, "G") || !strcmp(end, "GB"))
        mul = 1000000000;
    else if (!strcmp(end, "KiB"))
        mul = 1024;
    else if (!strcmp(end, "MiB"))
        mul = 1024 * 1024;
    else if (!strcmp(end, "GiB"))
        mul = 1024ull * 1024 * 1024;
    else
        return -1;
    if (v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int parse_args(int argc, char **argv, options *o, FILE *err, int rank)
{
    memset(o, 0, sizeof *o);
    o->size = 256ull << 20;
    o->tensors = 64;
    o->seed = 1;
    o->dtype = -1;
    o->fsync = 1;
    o->repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            bad = !v;
            o->out = v;
            i++;
        } else if (!strcmp(a, "--size")) {
            bad = !v || parse_size(v, &o->size);
            i++;
        } else if (!strcmp(a, "--tensors")) {
            bad = !v || parse_size(v, &o->tensors) || o->tensors == 0;
            i++;
        } else if (!strcmp(a, "--seed")) {
            bad = !v || parse_size(v, &o->seed);
            i++;
        } else if (!strcmp(a, "--dtype")) {
            mst_dtype d;
            if (v && !strcmp(v, "mix"))
                o->dtype = -1;
            else if (v && mst_dtype_from_name(v, &d) == MST_OK && mst_dtype_bits(d) % 8 == 0)
                o->dtype = (int)d;
            else
                bad = 1;
            i++;
        } else if (!strcmp(a, "--repeat")) {
            uint64_t r;
            bad = !v || parse_size(v, &r) || r == 0 || r > 1000;
            o->repeat = bad ? 1 : (int)r;
            i++;
        } else if (!strcmp(a, "--no-fsync")) {
            o->fsync = 0;
        } else if (!strcmp(a, "--verify")) {
            o->verify = 1;
        } else if (!strcmp(a, "--remove")) {
            o->remove = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (rank == 0)
                usage(stdout);
            return 1;
        } else {
            bad = 1;
        }
        if (bad) {
            if (rank == 0) {
                fprintf(err, "mst-bench: bad or incomplete option %s\n", a);
                usage(err);
            }
            return 2;
        }
    }
    if (!o->out) {
        if (rank == 0) {
            fprintf(err, "mst-bench: -o FILE is required\n");
            usage(err);
        }
        return 2;
    }
    return 0;
}

/* Counter-based generator: word k of a tensor depends only on (seed, name, k). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t name_key(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *c = name; *c; c++)
        h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
    return mix64(h ^ seed);
}

/* Bytes [off, off+len) of the tensor stream with key `key`; off multiple of 8. */
static void fill(unsigned char *buf, uint64_t off, uint64_t len, uint64_t key)
{
    uint64_t k = off / 8, done = 0;
    while (done < len) {
        uint64_t w = mix64(key + (k + 1) * 0x9e3779b97f4a7c15ull);
        uint64_t n = len - done < 8 ? len - done : 8;
        memcpy(buf + done, &w, (size_t)n);
        done += n;
        k++;
    }
}

static const mst_dtype mix_dtypes[] = {MST_F32, MST_BF16, MST_F16, MST_I64, MST_U8,
                                       MST_F64, MST_I32,  MST_BOOL, MST_F8_E4M3};

typedef struct tensor {
    char name[64];
    mst_dtype dtype;
    int ndim;
    int64_t shape[2];
    uint64_t nbytes;
    unsigned char *data;
} tensor;

/* Tensor i of the synthetic checkpoint: an equal share of the bytes, the
 * last one taking the remainder, whole elements. */
static void describe(const options *o, uint64_t i, tensor *t)
{
    uint64_t share = o->size / o->tensors, bytes, el, nel;
    t->dtype = o->dtype >= 0 ? (mst_dtype)o->dtype
                             : mix_dtypes[i % (sizeof mix_dtypes / sizeof *mix_dtypes)];
    el = (uint64_t)mst_dtype_bits(t->dtype) / 8;
    bytes = i + 1 == o->tensors ? o->size - share * (o->tensors - 1) : share;
    nel = bytes / el;
    snprintf(t->name, sizeof t->name, "model.layers.%" PRIu64 ".weight", i);
    if (nel % 64 == 0 && nel > 0) {
        t->ndim = 2;
        t->shape[0] = (int64_t)(nel / 64);
        t->shape[1] = 64;
    } else {
        t->ndim = 1;
        t->shape[0] = (int64_t)nel;
    }
    t->nbytes = nel * el;
    t->data = NULL;
}

static int verify(const options *o, const tensor *mine, size_t n, uint64_t ntotal, int rank,
                  FILE *err)
{
    mst_reader *r = NULL;
    unsigned char *got = NULL, *want = NULL;
    const uint64_t chunk = 64ull << 20;
    int bad = 0;
    if (mst_reader_open(&r, o->out) != MST_OK) {
        fprintf(err, "mst-bench: rank %d: verify: %s\n", rank, r ? mst_reader_error(r) : "?");
        mst_reader_free(&r);
        return 1;
    }
    if (mst_reader_count(r) != ntotal) {
        fprintf(err, "mst-bench: rank %d: verify: %zu tensors in the file, expected %" PRIu64 "\n",
                rank, mst_reader_count(r), ntotal);
        bad = 1;
    }
    got = malloc(chunk);
    want = malloc(chunk);
    for (size_t i = 0; i < n && !bad && got && want; i++) {
        const tensor *t = &mine[i];
        mst_tensor_info info;
        uint64_t key = name_key(o->seed, t->name);
        if (mst_reader_find(r, t->name, &info) != MST_OK || info.dtype != t->dtype ||
            info.ndim != t->ndim || info.end - info.begin != t->nbytes) {
            fprintf(err, "mst-bench: rank %d: verify: tensor %s missing or wrong in the header\n",
                    rank, t->name);
            bad = 1;
            break;
        }
        for (uint64_t off = 0; off < t->nbytes && !bad; off += chunk) {
            uint64_t len = t->nbytes - off < chunk ? t->nbytes - off : chunk;
            fill(want, off, len, key);
            if (mst_reader_read(r, t->name, off, got, len) != MST_OK ||
                memcmp(got, want, (size_t)len) != 0) {
                fprintf(err, "mst-bench: rank %d: verify: tensor %s differs near byte %" PRIu64
                             "\n", rank, t->name, off);
                bad = 1;
            }
        }
    }
    if (!got || !want) {
        fprintf(err, "mst-bench: rank %d: verify: out of memory\n", rank);
        bad = 1;
    }
    free(got);
    free(want);
    mst_reader_free(&r);
    return bad;
}

int bench_main(int argc, char **argv, MPI_Comm comm, FILE *out, FILE *err);

int bench_main(int argc, char **argv, MPI_Comm comm, FILE *out, FILE *err)
{
    options o;
    int rank, size, rc, status = 0, any = 0;
    tensor *mine = NULL;
    size_t nmine = 0;
    uint64_t total = 0;
    const char *io = getenv("OMPI_MCA_io");
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    rc = parse_args(argc, argv, &o, err, rank);
    if (rc)
        return rc == 1 ? 0 : 2;

    /* Whole elements per tensor: the bytes written can be a little under --size. */
    for (uint64_t i = 0; i < o.tensors; i++) {
        tensor t;
        describe(&o, i, &t);
        total += t.nbytes;
    }
    /* This rank's tensors, with their data. */
    mine = calloc(o.tensors / (uint64_t)size + 1, sizeof *mine);
    for (uint64_t i = (uint64_t)rank; mine && i < o.tensors; i += (uint64_t)size) {
        tensor *t = &mine[nmine++];
        describe(&o, i, t);
        t->data = malloc(t->nbytes ? t->nbytes : 1);
        if (!t->data)
            break;
        fill(t->data, 0, t->nbytes, name_key(o.seed, t->name));
    }
    status = !mine || (nmine && !mine[nmine - 1].data);
    MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        if (status)
            fprintf(err, "mst-bench: rank %d: out of memory for its tensors\n", rank);
        status = 1;
        goto done;
    }

    for (int run = 0; run < o.repeat && !status; run++) {
        mst_writer *w = NULL;
        double t0, t1;
        MPI_Barrier(comm);
        t0 = MPI_Wtime();
        rc = mst_writer_open(&w, comm, o.out, MPI_INFO_NULL);
        if (rc == MST_OK) {
            mst_writer_set_fsync(w, o.fsync);
            mst_writer_add_metadata(w, "format", "pt");
            for (size_t i = 0; i < nmine; i++)
                mst_writer_add(w, mine[i].name, mine[i].dtype, mine[i].ndim, mine[i].shape,
                               mine[i].data);
            rc = mst_writer_commit(w);
        }
        t1 = MPI_Wtime();
        if (rc != MST_OK) {
            if (rank == 0)
                fprintf(err, "mst-bench: save failed (%s): %s\n", mst_strerror(rc),
                        w ? mst_writer_error(w) : "");
            status = 1;
        } else if (rank == 0) {
            double s = t1 - t0;
            fprintf(out,
                    "{\"method\":\"mst\",\"ranks\":%d,\"bytes\":%" PRIu64 ",\"tensors\":%" PRIu64
                    ",\"fsync\":%s,\"io\":\"%s\",\"run\":%d,\"seconds\":%.6f,\"gib_per_s\":%.4f}\n",
                    size, total, o.tensors, o.fsync ? "true" : "false", io ? io : "default",
                    run, s, s > 0 ? (double)total / s / (1024.0 * 1024 * 1024) : 0.0);
            fflush(out);
        }
        mst_writer_free(&w);
    }

    if (!status && o.verify) {
        status = verify(&o, mine, nmine, o.tensors, rank, err);
        MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, comm);
        status = any;
        if (rank == 0)
            fprintf(status ? err : out, "verify: %s\n",
                    status ? "FAILED" : "every byte of every tensor matches");
    }
    MPI_Barrier(comm);
    if (o.remove && rank == 0)
        remove(o.out);

done:
    for (size_t i = 0; i < nmine; i++)
        free(mine[i].data);
    free(mine);
    return status;
}

int main(int argc, char **argv)
{
    int rc;
    MPI_Init(&argc, &argv);
    rc = bench_main(argc, argv, MPI_COMM_WORLD, stdout, stderr);
    MPI_Finalize();
    return rc;
}

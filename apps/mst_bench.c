/* mst-bench: write a synthetic checkpoint from every rank, through mst and
 * through what users would do instead, and report time, throughput and
 * memory.
 *
 *   mpirun -np 4 mst-bench -o /scratch/ckpt.safetensors --size 4GiB --tensors 256 \
 *       --method mst,raw,per-rank --repeat 3 --verify
 *
 * Methods (all write the same tensors, the same bytes, from the same ranks):
 *   mst                   the library: one safetensors file, every rank writes its own bytes;
 *   gather                every rank sends its tensors to rank 0, which writes one safetensors
 *                         file with plain POSIX writes (what a naive job does);
 *   per-rank              every rank writes its own safetensors file FILE.rankR (the layout of
 *                         torch's distributed checkpoint; no shared file);
 *   raw                   every rank one contiguous MPI_File_write_at of all its bytes into one
 *                         shared file, no header, no plan (the MPI-IO ceiling, like IOR);
 *   per-rank+consolidate  per-rank, then rank 0 reads the per-rank files back and writes the
 *                         single safetensors file; timed end to end;
 *   redistribute          (--layout cols only, not in "all") a prototype for column splits:
 *                         column blocks to row blocks by MPI_Alltoallw, contiguous writes.
 * With several methods and --repeat R, the methods are interleaved, the order
 * turning every round: A B C, B C A, C A B ...
 *
 * Tensor i is owned by rank i % nranks (--layout whole), or split over all
 * ranks by row blocks or column blocks (--layout rows|cols, through
 * mst_writer_add_slice). Its bytes are a pure function of the seed, its name
 * and the byte position, so --verify checks every byte without a copy.
 *
 * One JSON line per run on rank 0's stdout: seconds per phase, GiB/s, and the
 * peak resident memory of every rank during the save (VmHWM, reset through
 * /proc/self/clear_refs before each run) next to its resident memory before
 * (the caller's tensors), and every rank's CPU seconds (cpu_s; for mst also
 * cpu_plan_s, until its first file open). The phases of the mst method are taken without
 * touching the library: mst-bench interposes MPI_File_open, MPI_File_write_at,
 * MPI_File_write_at_all and MPI_File_sync (the MPI profiling interface) and
 * notes when each rank first opens the file, last writes and last syncs. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "mst.h"

enum { M_MST, M_GATHER, M_PERRANK, M_RAW, M_CONSOLIDATE, M_REDIST, M_COUNT };
static const char *const method_names[M_COUNT] = {"mst", "gather", "per-rank", "raw",
                                                  "per-rank+consolidate", "redistribute"};
#define M_ALL (M_CONSOLIDATE + 1) /* what "all" runs */
enum { L_WHOLE, L_ROWS, L_COLS };
static const char *const layout_names[] = {"whole", "rows", "cols"};
enum { MIX_UNIFORM, MIX_TRANSFORMER };
static const char *const mix_names[] = {"uniform", "transformer"};

#define CHUNK (64ull << 20)         /* reads and copies */
#define MAX_CALL (1ull << 30)       /* bytes per MPI call or pwrite (int counts) */

typedef struct options {
    const char *out;
    uint64_t size;
    uint64_t tensors;
    uint64_t seed;
    int dtype; /* -1: a mix */
    int mix, layout;
    int methods[M_COUNT * 4];
    int nmethods;
    int verify, fsync, repeat, remove, warmup;
    const char *hints[16]; /* --hint KEY=VALUE, for the mst method's MPI_Info */
    int nhints;
    uint64_t wsum; /* transformer: sum of the big tensors' weights */
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -np N mst-bench -o FILE [options]\n"
            "  -o, --out FILE    target file (on the file system to measure)\n"
            "  --method LIST     comma-separated, interleaved per repeat (default mst):\n"
            "                    mst gather per-rank raw per-rank+consolidate, or all;\n"
            "                    redistribute (--layout cols only): a prototype of column\n"
            "                    blocks turned into row blocks by MPI_Alltoallw, then one\n"
            "                    contiguous write per rank and tensor (same file as mst)\n"
            "  --size SIZE       total tensor bytes (default 256MiB); suffixes K M G (1000s)\n"
            "                    or KiB MiB GiB (1024s)\n"
            "  --tensors N       number of tensors (default 64)\n"
            "  --mix NAME        uniform (equal sizes, default) or transformer (every 7th\n"
            "                    tensor a big matrix of 1x-3x, 99%% of the bytes; the rest small)\n"
            "  --dtype NAME|mix  dtype of every tensor (default mix: F32 BF16 F16 I64 U8 ...)\n"
            "  --layout L        whole (tensor i on rank i %% N, default), rows or cols (every\n"
            "                    2-D tensor split over all ranks by row or column blocks)\n"
            "  --seed S          data seed (default 1)\n"
            "  --no-fsync        no fsync (mst: MPI_File_sync and the directory fsync)\n"
            "  --repeat R        runs (default 1) of every method, one JSON line each\n"
            "  --warmup W        untimed runs of every method first (default 1): the first\n"
            "                    write of a process is slower, whatever the method\n"
            "  --hint KEY=VALUE  an MPI_Info hint for mst's writer (repeatable): MPI-IO's\n"
            "                    (striping_factor, cb_nodes, ...) or mst's own\n"
            "                    (mst_strided_writes=redistribute|collective, mst_redist_buffer)\n"
            "  --verify          read every file back and check every byte\n"
            "  --remove          delete the files at the end\n"
            "  --version         print the version and exit\n");
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

static int parse_methods(const char *v, options *o)
{
    char buf[256];
    o->nmethods = 0;
    if (strlen(v) >= sizeof buf)
        return -1;
    strcpy(buf, v);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int found = 0;
        if (!strcmp(tok, "all")) {
            for (int m = 0; m < M_ALL && o->nmethods < M_COUNT * 4; m++)
                o->methods[o->nmethods++] = m;
            continue;
        }
        for (int m = 0; m < M_COUNT; m++)
            if (!strcmp(tok, method_names[m]) && o->nmethods < M_COUNT * 4) {
                o->methods[o->nmethods++] = m;
                found = 1;
            }
        if (!found)
            return -1;
    }
    return o->nmethods ? 0 : -1;
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
    o->warmup = 1;
    o->methods[0] = M_MST;
    o->nmethods = 1;
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
        } else if (!strcmp(a, "--method")) {
            bad = !v || parse_methods(v, o);
            i++;
        } else if (!strcmp(a, "--mix")) {
            if (v && !strcmp(v, "uniform"))
                o->mix = MIX_UNIFORM;
            else if (v && !strcmp(v, "transformer"))
                o->mix = MIX_TRANSFORMER;
            else
                bad = 1;
            i++;
        } else if (!strcmp(a, "--hint")) {
            bad = !v || !strchr(v, '=') || v[0] == '=' ||
                  o->nhints == (int)(sizeof o->hints / sizeof *o->hints);
            if (!bad)
                o->hints[o->nhints++] = v;
            i++;
        } else if (!strcmp(a, "--layout")) {
            if (v && !strcmp(v, "whole"))
                o->layout = L_WHOLE;
            else if (v && !strcmp(v, "rows"))
                o->layout = L_ROWS;
            else if (v && !strcmp(v, "cols"))
                o->layout = L_COLS;
            else
                bad = 1;
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
        } else if (!strcmp(a, "--warmup")) {
            uint64_t r;
            bad = !v || parse_size(v, &r) || r > 100;
            o->warmup = bad ? 1 : (int)r;
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
        } else if (!strcmp(a, "--version")) {
            if (rank == 0)
                printf("mst-bench %s\n", mst_version_string());
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
    for (int k = 0; k < o->nmethods; k++)
        if (o->methods[k] == M_REDIST && o->layout != L_COLS) {
            if (rank == 0)
                fprintf(err, "mst-bench: --method redistribute needs --layout cols\n");
            return 2;
        }
    if (o->layout != L_WHOLE)
        for (int k = 0; k < o->nmethods; k++)
            if (o->methods[k] == M_GATHER || o->methods[k] == M_CONSOLIDATE) {
                if (rank == 0)
                    fprintf(err, "mst-bench: --layout %s is for the methods mst, raw and "
                                 "per-rank\n", layout_names[o->layout]);
                return 2;
            }
    {
        uint64_t nbig = (o->tensors + 6) / 7;
        o->wsum = nbig + (nbig / 3) * 3 + (nbig % 3 == 2 ? 1 : 0);
    }
    return 0;
}

/* Counter-based generator: byte b of a tensor is byte b % 8 of word b / 8,
 * and word k depends only on (seed, name, k). */
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

/* Bytes [off, off+len) of the tensor stream with key `key`. */
static void fill(unsigned char *buf, uint64_t off, uint64_t len, uint64_t key)
{
    uint64_t k = off / 8, done = 0;
    unsigned skip = (unsigned)(off % 8);
    while (done < len) {
        uint64_t w = mix64(key + (k + 1) * 0x9e3779b97f4a7c15ull);
        uint64_t n = len - done < 8 - skip ? len - done : 8 - skip;
        memcpy(buf + done, (const unsigned char *)&w + skip, (size_t)n);
        done += n;
        skip = 0;
        k++;
    }
}

static const mst_dtype mix_dtypes[] = {MST_F32, MST_BF16, MST_F16, MST_I64, MST_U8,
                                       MST_F64, MST_I32,  MST_BOOL, MST_F8_E4M3};

typedef struct tensor {
    char name[48];
    mst_dtype dtype;
    int ndim;
    int64_t shape[2];
    uint64_t nbytes;
} tensor;

/* Tensor i of the synthetic checkpoint, whole elements. uniform: an equal
 * share of the bytes, the last one taking the remainder. transformer: every
 * 7th tensor is a matrix of weight 1, 2 or 3 sharing 99% of the bytes, the
 * others share 1% equally (norms, biases); 7 is prime to every power-of-two
 * rank count, so round-robin ownership spreads the big ones. 2-D [n/1024, 1024] or [n/64, 64]
 * where the element count allows, else 1-D. */
static void describe(const options *o, uint64_t i, tensor *t)
{
    uint64_t bytes, el, nel;
    t->dtype = o->dtype >= 0 ? (mst_dtype)o->dtype
                             : mix_dtypes[i % (sizeof mix_dtypes / sizeof *mix_dtypes)];
    el = (uint64_t)mst_dtype_bits(t->dtype) / 8;
    if (o->mix == MIX_UNIFORM) {
        uint64_t share = o->size / o->tensors;
        bytes = i + 1 == o->tensors ? o->size - share * (o->tensors - 1) : share;
    } else {
        uint64_t nbig = (o->tensors + 6) / 7, nsmall = o->tensors - nbig;
        uint64_t small_total = nsmall ? o->size / 100 : 0;
        if (i % 7 == 0)
            bytes = (o->size - small_total) / o->wsum * (1 + (i / 7) % 3);
        else
            bytes = small_total / nsmall;
    }
    nel = bytes / el;
    snprintf(t->name, sizeof t->name, "model.layers.%" PRIu64 ".weight", i);
    if (nel >= 1024 && nel % 1024 == 0) {
        t->ndim = 2;
        t->shape[0] = (int64_t)(nel / 1024);
        t->shape[1] = 1024;
    } else if (nel % 64 == 0 && nel > 0) {
        t->ndim = 2;
        t->shape[0] = (int64_t)(nel / 64);
        t->shape[1] = 64;
    } else {
        t->ndim = 1;
        t->shape[0] = (int64_t)nel;
    }
    t->nbytes = nel * el;
}

/* What one rank holds: a whole tensor or one box of it. */
typedef struct piece {
    uint64_t index;
    tensor t;
    int whole;
    int64_t start[2], count[2];
    uint64_t nbytes;
    unsigned char *data;
} piece;

static void fill_piece(const options *o, piece *p)
{
    uint64_t key = name_key(o->seed, p->t.name), el = (uint64_t)mst_dtype_bits(p->t.dtype) / 8;
    if (p->whole) {
        fill(p->data, 0, p->nbytes, key);
    } else if (p->t.ndim == 1 || p->count[1] == p->t.shape[1]) {
        uint64_t row = p->t.ndim == 2 ? (uint64_t)p->t.shape[1] * el : el;
        fill(p->data, (uint64_t)p->start[0] * row, p->nbytes, key);
    } else {
        uint64_t cb = (uint64_t)p->count[1] * el, rowb = (uint64_t)p->t.shape[1] * el;
        for (int64_t r = 0; r < p->count[0]; r++)
            fill(p->data + (uint64_t)r * cb, (uint64_t)(p->start[0] + r) * rowb +
                                                 (uint64_t)p->start[1] * el, cb, key);
    }
}

/* This rank's pieces, their data in one slab (index order). */
static int make_pieces(const options *o, int rank, int size, piece **out, size_t *nout,
                       unsigned char **slab, uint64_t *slab_bytes)
{
    size_t cap = o->layout == L_WHOLE ? o->tensors / (uint64_t)size + 1 : o->tensors;
    piece *ps = calloc(cap, sizeof *ps);
    size_t n = 0;
    uint64_t total = 0;
    if (!ps)
        return -1;
    for (uint64_t i = 0; i < o->tensors; i++) {
        piece p;
        memset(&p, 0, sizeof p);
        describe(o, i, &p.t);
        p.index = i;
        if (o->layout == L_WHOLE || p.t.nbytes == 0) {
            if (i % (uint64_t)size != (uint64_t)rank)
                continue;
            p.whole = 1;
            p.nbytes = p.t.nbytes;
        } else {
            int dim = o->layout == L_COLS && p.t.ndim == 2 ? 1 : 0;
            int64_t e = p.t.shape[dim];
            int64_t lo = e * rank / size, hi = e * (rank + 1) / size;
            uint64_t nel = 1;
            if (hi <= lo)
                continue;
            for (int d = 0; d < p.t.ndim; d++) {
                p.start[d] = d == dim ? lo : 0;
                p.count[d] = d == dim ? hi - lo : p.t.shape[d];
                nel *= (uint64_t)p.count[d];
            }
            p.nbytes = nel * (uint64_t)mst_dtype_bits(p.t.dtype) / 8;
        }
        ps[n++] = p;
        total += p.nbytes;
    }
    *slab = malloc(total ? total : 1);
    if (!*slab) {
        free(ps);
        return -1;
    }
    for (size_t k = 0, off = 0; k < n; off += ps[k].nbytes, k++) {
        ps[k].data = *slab + off;
        fill_piece(o, &ps[k]);
    }
    *out = ps;
    *nout = n;
    *slab_bytes = total;
    return 0;
}

/* ---- memory: resident now, and the peak since the last reset ---- */

static double status_mib(const char *field)
{
    char line[256];
    size_t k = strlen(field);
    double v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, k) && line[k] == ':') {
            v = strtod(line + k + 1, NULL) / 1024.0;
            break;
        }
    fclose(f);
    return v;
}

/* user + system CPU seconds of this process so far */
static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

/* ---- MPI profiling interface: when the library opens, writes, syncs ---- */

static struct probe {
    int on;
    double first_open, last_write, last_sync, cpu_at_open;
} probe;

int MPI_File_open(MPI_Comm comm, const char *filename, int amode, MPI_Info info, MPI_File *fh)
{
    if (probe.on && probe.first_open < 0) {
        probe.first_open = PMPI_Wtime();
        probe.cpu_at_open = cpu_seconds();
    }
    return PMPI_File_open(comm, filename, amode, info, fh);
}

int MPI_File_write_at(MPI_File fh, MPI_Offset offset, const void *buf, int count,
                      MPI_Datatype datatype, MPI_Status *status)
{
    int rc = PMPI_File_write_at(fh, offset, buf, count, datatype, status);
    if (probe.on)
        probe.last_write = PMPI_Wtime();
    return rc;
}

int MPI_File_write_at_all(MPI_File fh, MPI_Offset offset, const void *buf, int count,
                          MPI_Datatype datatype, MPI_Status *status)
{
    int rc = PMPI_File_write_at_all(fh, offset, buf, count, datatype, status);
    if (probe.on)
        probe.last_write = PMPI_Wtime();
    return rc;
}

/* mst waits for its MPI_File_iwrite_at calls (strided slices) with MPI_Wait */
int MPI_Wait(MPI_Request *req, MPI_Status *status)
{
    int rc = PMPI_Wait(req, status);
    if (probe.on)
        probe.last_write = PMPI_Wtime();
    return rc;
}

int MPI_File_sync(MPI_File fh)
{
    int rc = PMPI_File_sync(fh);
    if (probe.on)
        probe.last_sync = PMPI_Wtime();
    return rc;
}

/* ---- safetensors headers for the methods that do not use mst ---- */

typedef struct entry {
    const char *name;
    int dtype, ndim;
    const int64_t *shape;
    uint64_t nbytes;
    const unsigned char *data; /* gather, per-rank */
    int src;                   /* consolidate: which per-rank file */
} entry;

/* The reference order: dtype descending, then name bytes. */
static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->dtype != y->dtype)
        return x->dtype > y->dtype ? -1 : 1;
    return strcmp(x->name, y->name);
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int bad;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->bad)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *q;
        while (cap < b->len + n + 1)
            cap *= 2;
        q = realloc(b->p, cap);
        if (!q) {
            b->bad = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_u64(sbuf *b, uint64_t v)
{
    char t[24];
    int n = snprintf(t, sizeof t, "%" PRIu64, v);
    sb_put(b, t, (size_t)n);
}

/* Sorts e into file order and returns the 8-byte length plus the padded
 * header, as the reference writer (and mst) produce them; NULL if out of
 * memory. Names are plain ASCII here, nothing to escape. */
static char *build_header(entry *e, size_t n, uint64_t *out_len)
{
    sbuf b = {0};
    uint64_t pos = 0, hlen;
    qsort(e, n, sizeof *e, cmp_entry);
    sb_put(&b, "\0\0\0\0\0\0\0\0", 8);
    sb_puts(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++) {
        sb_puts(&b, ",\"");
        sb_puts(&b, e[i].name);
        sb_puts(&b, "\":{\"dtype\":\"");
        sb_puts(&b, mst_dtype_name((mst_dtype)e[i].dtype));
        sb_puts(&b, "\",\"shape\":[");
        for (int d = 0; d < e[i].ndim; d++) {
            if (d)
                sb_put(&b, ",", 1);
            sb_u64(&b, (uint64_t)e[i].shape[d]);
        }
        sb_puts(&b, "],\"data_offsets\":[");
        sb_u64(&b, pos);
        sb_put(&b, ",", 1);
        pos += e[i].nbytes;
        sb_u64(&b, pos);
        sb_puts(&b, "]}");
    }
    sb_put(&b, "}", 1);
    while ((b.len - 8) % 8)
        sb_put(&b, " ", 1);
    if (b.bad) {
        free(b.p);
        return NULL;
    }
    hlen = b.len - 8;
    for (int i = 0; i < 8; i++)
        b.p[i] = (char)(unsigned char)(hlen >> (8 * i));
    *out_len = b.len;
    return b.p;
}

static int pwrite_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
    const unsigned char *p = buf;
    while (len > 0) {
        size_t n = len < MAX_CALL ? (size_t)len : (size_t)MAX_CALL;
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        off += (uint64_t)w;
        len -= (uint64_t)w;
    }
    return 0;
}

/* Writes a safetensors file of entries (sorted here) from their buffers. */
static int write_file(const char *path, entry *e, size_t n, int do_fsync, double *t_write,
                      double *t_sync, FILE *err)
{
    uint64_t hlen = 0, off;
    char *h = build_header(e, n, &hlen);
    int fd, bad = 0;
    if (!h) {
        fprintf(err, "mst-bench: out of memory for a header\n");
        return 1;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(err, "mst-bench: cannot create %s: %s\n", path, strerror(errno));
        free(h);
        return 1;
    }
    bad = pwrite_all(fd, h, hlen, 0);
    off = hlen;
    for (size_t i = 0; i < n && !bad; i++) {
        bad = pwrite_all(fd, e[i].data, e[i].nbytes, off);
        off += e[i].nbytes;
    }
    *t_write = MPI_Wtime();
    if (!bad && do_fsync)
        bad = fsync(fd);
    *t_sync = MPI_Wtime();
    if (close(fd))
        bad = 1;
    if (bad)
        fprintf(err, "mst-bench: writing %s failed: %s\n", path, strerror(errno));
    free(h);
    return bad;
}

static char *rank_path(const char *out, int r)
{
    size_t n = strlen(out) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s.rank%d", out, r);
    return p;
}

/* ---- the methods: each fills marks[] with the times (from t0) at which this
 * rank ended plan, write, sync, and (consolidate) the per-rank part ---- */

typedef struct ctx {
    const options *o;
    MPI_Comm comm;
    int rank, size;
    piece *pieces;
    size_t n;
    unsigned char *slab;
    uint64_t slab_bytes, total;
    FILE *err;
} ctx;

static int run_mst(const ctx *c, double t0, double *marks)
{
    mst_writer *w = NULL;
    int rc;
    probe.first_open = probe.last_write = probe.last_sync = probe.cpu_at_open = -1;
    probe.on = 1;
    MPI_Info info = MPI_INFO_NULL;
    if (c->o->nhints) {
        MPI_Info_create(&info);
        for (int i = 0; i < c->o->nhints; i++) {
            char key[MPI_MAX_INFO_KEY + 1];
            const char *eq = strchr(c->o->hints[i], '=');
            snprintf(key, sizeof key, "%.*s", (int)(eq - c->o->hints[i]), c->o->hints[i]);
            MPI_Info_set(info, key, eq + 1);
        }
    }
    rc = mst_writer_open(&w, c->comm, c->o->out, info);
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    if (rc == MST_OK) {
        mst_writer_set_fsync(w, c->o->fsync);
        mst_writer_add_metadata(w, "format", "pt");
        for (size_t i = 0; i < c->n; i++) {
            const piece *p = &c->pieces[i];
            if (p->whole)
                mst_writer_add(w, p->t.name, p->t.dtype, p->t.ndim, p->t.shape, p->data);
            else
                mst_writer_add_slice(w, p->t.name, p->t.dtype, p->t.ndim, p->t.shape, p->start,
                                     p->count, p->data);
        }
        rc = mst_writer_commit(w);
    }
    probe.on = 0;
    if (rc != MST_OK && c->rank == 0)
        fprintf(c->err, "mst-bench: save failed (%s): %s\n", mst_strerror(rc),
                w ? mst_writer_error(w) : "");
    mst_writer_free(&w);
    if (probe.first_open < 0)
        probe.first_open = MPI_Wtime();
    if (probe.last_write < probe.first_open)
        probe.last_write = probe.first_open;
    marks[0] = probe.first_open - t0;
    marks[1] = probe.last_write - t0;
    marks[2] = (probe.last_sync > probe.last_write ? probe.last_sync : probe.last_write) - t0;
    return rc != MST_OK;
}

static int run_raw(const ctx *c, double t0, double *marks)
{
    uint64_t off = 0, done = 0;
    MPI_File fh;
    int rc, bad = 0;
    MPI_Exscan(&c->slab_bytes, &off, 1, MPI_UINT64_T, MPI_SUM, c->comm);
    if (c->rank == 0)
        off = 0;
    rc = MPI_File_open(c->comm, c->o->out, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL,
                       &fh);
    if (rc != MPI_SUCCESS) {
        fprintf(c->err, "mst-bench: rank %d: MPI_File_open of %s failed\n", c->rank, c->o->out);
        return 1;
    }
    MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN);
    marks[0] = MPI_Wtime() - t0;
    while (done < c->slab_bytes && !bad) {
        uint64_t n = c->slab_bytes - done < MAX_CALL ? c->slab_bytes - done : MAX_CALL;
        MPI_Status st;
        int got = 0;
        rc = MPI_File_write_at(fh, (MPI_Offset)(off + done), c->slab + done, (int)n, MPI_BYTE,
                               &st);
        MPI_Get_count(&st, MPI_BYTE, &got);
        bad = rc != MPI_SUCCESS || (uint64_t)got != n;
        done += n;
    }
    marks[1] = MPI_Wtime() - t0;
    if (c->o->fsync && MPI_File_sync(fh) != MPI_SUCCESS)
        bad = 1;
    marks[2] = MPI_Wtime() - t0;
    if (MPI_File_close(&fh) != MPI_SUCCESS)
        bad = 1;
    if (bad)
        fprintf(c->err, "mst-bench: rank %d: raw write failed\n", c->rank);
    return bad;
}

static int run_per_rank(const ctx *c, double t0, double *marks)
{
    entry *e = calloc(c->n ? c->n : 1, sizeof *e);
    char *path = rank_path(c->o->out, c->rank);
    double tw = 0, ts = 0;
    int bad;
    if (!e || !path) {
        free(e);
        free(path);
        fprintf(c->err, "mst-bench: rank %d: out of memory\n", c->rank);
        return 1;
    }
    for (size_t i = 0; i < c->n; i++) {
        const piece *p = &c->pieces[i];
        e[i].name = p->t.name;
        e[i].dtype = (int)p->t.dtype;
        e[i].ndim = p->t.ndim;
        e[i].shape = p->whole ? p->t.shape : p->count;
        e[i].nbytes = p->nbytes;
        e[i].data = p->data;
    }
    marks[0] = MPI_Wtime() - t0; /* header built inside write_file: counted as write */
    bad = write_file(path, e, c->n, c->o->fsync, &tw, &ts, c->err);
    marks[1] = tw - t0;
    marks[2] = ts - t0;
    free(e);
    free(path);
    return bad;
}

static int run_gather(const ctx *c, double t0, double *marks)
{
    const uint64_t total = c->total;
    int ok = 1, bad = 0;
    if (c->rank != 0) {
        MPI_Bcast(&ok, 1, MPI_INT, 0, c->comm);
        for (uint64_t done = 0; ok && done < c->slab_bytes; done += MAX_CALL) {
            uint64_t n = c->slab_bytes - done < MAX_CALL ? c->slab_bytes - done : MAX_CALL;
            MPI_Send(c->slab + done, (int)n, MPI_BYTE, 0, 7, c->comm);
        }
        marks[0] = marks[1] = marks[2] = MPI_Wtime() - t0;
        return 0;
    }
    {
        entry *e = calloc(c->o->tensors, sizeof *e);
        tensor *all = calloc(c->o->tensors, sizeof *all);
        unsigned char *buf = malloc(total - c->slab_bytes + 1);
        double tw = 0, ts = 0;
        uint64_t at = 0;
        ok = e && all && buf;
        MPI_Bcast(&ok, 1, MPI_INT, 0, c->comm);
        if (!ok) {
            fprintf(c->err, "mst-bench: rank 0: out of memory to gather %" PRIu64 " bytes\n",
                    total);
            free(e);
            free(all);
            free(buf);
            return 1;
        }
        /* rank r's slab: its tensors r, r + size, ... in index order */
        for (int r = 0; r < c->size; r++) {
            uint64_t bytes = 0, start = at;
            for (uint64_t i = (uint64_t)r; i < c->o->tensors; i += (uint64_t)c->size) {
                describe(c->o, i, &all[i]);
                e[i].name = all[i].name;
                e[i].dtype = (int)all[i].dtype;
                e[i].ndim = all[i].ndim;
                e[i].shape = all[i].shape;
                e[i].nbytes = all[i].nbytes;
                e[i].data = r == 0 ? c->slab + bytes : buf + at;
                bytes += all[i].nbytes;
                if (r)
                    at += all[i].nbytes;
            }
            for (uint64_t done = 0; r && done < bytes; done += MAX_CALL) {
                uint64_t n = bytes - done < MAX_CALL ? bytes - done : MAX_CALL;
                MPI_Recv(buf + start + done, (int)n, MPI_BYTE, r, 7, c->comm, MPI_STATUS_IGNORE);
            }
        }
        marks[0] = MPI_Wtime() - t0;
        bad = write_file(c->o->out, e, c->o->tensors, c->o->fsync, &tw, &ts, c->err);
        marks[1] = tw - t0;
        marks[2] = ts - t0;
        free(e);
        free(all);
        free(buf);
    }
    return bad;
}

/* Rank 0 reads the per-rank files back (through mst's reader) and writes the
 * single file: header, then every tensor in 64 MiB pieces. */
static int consolidate(const ctx *c)
{
    mst_reader **rd = calloc((size_t)c->size, sizeof *rd);
    entry *e = NULL;
    unsigned char *buf = malloc(CHUNK);
    char *h = NULL;
    size_t n = 0, k = 0;
    uint64_t hlen = 0, off;
    int bad = !rd || !buf, fd = -1;
    for (int r = 0; r < c->size && !bad; r++) {
        char *path = rank_path(c->o->out, r);
        bad = !path || mst_reader_open(&rd[r], path) != MST_OK;
        if (bad)
            fprintf(c->err, "mst-bench: consolidate: %s: %s\n", path ? path : "?",
                    rd[r] ? mst_reader_error(rd[r]) : "out of memory");
        free(path);
        if (!bad)
            n += mst_reader_count(rd[r]);
    }
    if (!bad)
        bad = !(e = calloc(n ? n : 1, sizeof *e));
    for (int r = 0; r < c->size && !bad; r++)
        for (size_t i = 0; i < mst_reader_count(rd[r]); i++, k++) {
            mst_tensor_info info;
            mst_reader_tensor(rd[r], i, &info);
            e[k].name = info.name;
            e[k].dtype = (int)info.dtype;
            e[k].ndim = info.ndim;
            e[k].shape = info.shape;
            e[k].nbytes = info.end - info.begin;
            e[k].src = r;
        }
    if (!bad)
        bad = !(h = build_header(e, n, &hlen));
    if (!bad && (fd = open(c->o->out, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
        bad = 1;
    if (!bad)
        bad = pwrite_all(fd, h, hlen, 0);
    off = hlen;
    for (size_t i = 0; i < n && !bad; i++) {
        for (uint64_t done = 0; done < e[i].nbytes && !bad; done += CHUNK) {
            uint64_t len = e[i].nbytes - done < CHUNK ? e[i].nbytes - done : CHUNK;
            bad = mst_reader_read(rd[e[i].src], e[i].name, done, buf, len) != MST_OK ||
                  pwrite_all(fd, buf, len, off + done);
        }
        off += e[i].nbytes;
    }
    if (!bad && c->o->fsync)
        bad = fsync(fd);
    if (fd >= 0 && close(fd))
        bad = 1;
    if (bad)
        fprintf(c->err, "mst-bench: consolidating into %s failed\n", c->o->out);
    for (int r = 0; rd && r < c->size; r++)
        mst_reader_free(&rd[r]);
    free(rd);
    free(e);
    free(h);
    free(buf);
    return bad;
}

static int run_consolidate(const ctx *c, double t0, double *marks)
{
    int bad = run_per_rank(c, t0, marks), any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c->comm);
    marks[3] = MPI_Wtime() - t0;
    if (any)
        return 1;
    if (c->rank == 0)
        bad = consolidate(c);
    return bad;
}

/* Prototype of what mst could do with column splits: per tensor, turn the
 * column blocks into row blocks with one MPI_Alltoallw (subarray types on
 * both sides, no packing by hand), then every rank writes its row block, one
 * contiguous range, with MPI_File_write_at. The staging buffer is one row
 * block, the size of the rank's own box. The file is mst's, byte for byte:
 * rank 0 writes the header, every rank computes the same offsets. */
static int run_redistribute(const ctx *c, double t0, double *marks)
{
    const options *o = c->o;
    const int n = c->size, me = c->rank;
    entry *e = calloc(o->tensors, sizeof *e);
    tensor *all = calloc(o->tensors, sizeof *all);
    uint64_t *off = calloc(o->tensors, sizeof *off), hlen = 0, pos;
    int *cnt = calloc((size_t)n * 3, sizeof *cnt), *dsp = cnt + n, *rcnt = dsp + n;
    MPI_Datatype *st = calloc((size_t)n * 2, sizeof *st), *rt = st + n;
    unsigned char *stage = NULL;
    size_t stage_cap = 0;
    char *h = NULL;
    MPI_File fh = MPI_FILE_NULL;
    int bad = !e || !all || !off || !cnt || !st;
    for (uint64_t i = 0; !bad && i < o->tensors; i++) {
        describe(o, i, &all[i]);
        e[i].name = all[i].name;
        e[i].dtype = (int)all[i].dtype;
        e[i].ndim = all[i].ndim;
        e[i].shape = all[i].shape;
        e[i].nbytes = all[i].nbytes;
        e[i].src = (int)i;
    }
    if (!bad)
        bad = !(h = build_header(e, o->tensors, &hlen));
    pos = hlen;
    for (uint64_t k = 0; !bad && k < o->tensors; k++) {
        off[e[k].src] = pos;
        pos += e[k].nbytes;
    }
    if (!bad && MPI_File_open(c->comm, o->out, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL,
                              &fh) != MPI_SUCCESS)
        bad = 1;
    marks[0] = MPI_Wtime() - t0;
    if (!bad && me == 0)
        bad = MPI_File_write_at(fh, 0, h, (int)hlen, MPI_BYTE, MPI_STATUS_IGNORE) != MPI_SUCCESS;
    for (size_t k = 0; !bad && k < c->n; k++) {
        const piece *p = &c->pieces[k];
        const tensor *t = &p->t;
        int64_t R, C, el = mst_dtype_bits(t->dtype) / 8, rlo = 0, rh = 0, mycols;
        uint64_t bytes;
        MPI_Datatype elt;
        if (p->whole || t->ndim != 2 || p->count[1] == t->shape[1]) {
            /* a whole tensor or a 1-D split: already contiguous */
            uint64_t at = off[p->index] + (p->whole ? 0 : (uint64_t)p->start[0] * (uint64_t)el *
                                                               (t->ndim == 2 ? (uint64_t)t->shape[1] : 1));
            for (uint64_t d = 0; !bad && d < p->nbytes; d += MAX_CALL) {
                uint64_t len = p->nbytes - d < MAX_CALL ? p->nbytes - d : MAX_CALL;
                bad = MPI_File_write_at(fh, (MPI_Offset)(at + d), p->data + d, (int)len, MPI_BYTE,
                                        MPI_STATUS_IGNORE) != MPI_SUCCESS;
            }
            continue;
        }
        R = t->shape[0];
        C = t->shape[1];
        mycols = p->count[1];
        rlo = R * me / n;
        rh = R * (me + 1) / n - rlo;
        bytes = (uint64_t)(rh * C * el);
        if (bytes > stage_cap) {
            free(stage);
            stage_cap = bytes;
            if (!(stage = malloc(stage_cap))) {
                bad = 1;
                break;
            }
        }
        MPI_Type_contiguous((int)el, MPI_BYTE, &elt);
        for (int j = 0; j < n; j++) {
            int64_t jr0 = R * j / n, jrh = R * (j + 1) / n - jr0;
            int64_t jc0 = C * j / n, jcw = C * (j + 1) / n - jc0;
            int gs[2] = {(int)R, (int)mycols}, ss[2] = {(int)jrh, (int)mycols}, s0[2] = {(int)jr0, 0};
            int gr[2] = {(int)rh, (int)C}, sr[2] = {(int)rh, (int)jcw}, r0[2] = {0, (int)jc0};
            MPI_Type_create_subarray(2, gs, ss, s0, MPI_ORDER_C, elt, &st[j]);
            MPI_Type_create_subarray(2, gr, sr, r0, MPI_ORDER_C, elt, &rt[j]);
            MPI_Type_commit(&st[j]);
            MPI_Type_commit(&rt[j]);
            dsp[j] = 0;
            cnt[j] = jrh > 0 && mycols > 0 ? 1 : 0;
        }
        for (int j = 0; j < n; j++)
            rcnt[j] = rh > 0 && C * (j + 1) / n > C * j / n ? 1 : 0;
        bad = MPI_Alltoallw(p->data, cnt, dsp, st, stage, rcnt, dsp, rt, c->comm) != MPI_SUCCESS;
        for (int j = 0; j < n; j++) {
            MPI_Type_free(&st[j]);
            MPI_Type_free(&rt[j]);
        }
        MPI_Type_free(&elt);
        for (uint64_t d = 0; !bad && d < bytes; d += MAX_CALL) {
            uint64_t len = bytes - d < MAX_CALL ? bytes - d : MAX_CALL;
            bad = MPI_File_write_at(fh, (MPI_Offset)(off[p->index] + (uint64_t)(rlo * C * el) + d),
                                    stage + d, (int)len, MPI_BYTE,
                                    MPI_STATUS_IGNORE) != MPI_SUCCESS;
        }
    }
    marks[1] = MPI_Wtime() - t0;
    if (!bad && o->fsync && MPI_File_sync(fh) != MPI_SUCCESS)
        bad = 1;
    marks[2] = MPI_Wtime() - t0;
    if (fh != MPI_FILE_NULL)
        MPI_File_close(&fh);
    if (bad)
        fprintf(c->err, "mst-bench: rank %d: redistribute failed\n", me);
    free(e);
    free(all);
    free(off);
    free(cnt);
    free(st);
    free(stage);
    free(h);
    return bad;
}

/* ---- checks ---- */

/* Every byte of the tensors i with i % size == rank in the single file. */
static int verify_file(const ctx *c, const char *path, int whole_of_mine_only)
{
    mst_reader *r = NULL;
    unsigned char *got = malloc(CHUNK), *want = malloc(CHUNK);
    int bad = 0;
    if (!got || !want || mst_reader_open(&r, path) != MST_OK) {
        fprintf(c->err, "mst-bench: rank %d: verify %s: %s\n", c->rank, path,
                r ? mst_reader_error(r) : "cannot open");
        bad = 1;
    } else if (!whole_of_mine_only && mst_reader_count(r) != c->o->tensors) {
        fprintf(c->err, "mst-bench: rank %d: verify: %zu tensors in the file, expected %" PRIu64
                        "\n", c->rank, mst_reader_count(r), c->o->tensors);
        bad = 1;
    }
    for (uint64_t i = (uint64_t)c->rank; !bad && i < c->o->tensors; i += (uint64_t)c->size) {
        tensor t;
        mst_tensor_info info;
        uint64_t key;
        describe(c->o, i, &t);
        key = name_key(c->o->seed, t.name);
        if (mst_reader_find(r, t.name, &info) != MST_OK || info.dtype != t.dtype ||
            info.ndim != t.ndim || info.end - info.begin != t.nbytes) {
            fprintf(c->err, "mst-bench: rank %d: verify: tensor %s missing or wrong in the "
                            "header\n", c->rank, t.name);
            bad = 1;
        }
        for (uint64_t off = 0; off < t.nbytes && !bad; off += CHUNK) {
            uint64_t len = t.nbytes - off < CHUNK ? t.nbytes - off : CHUNK;
            fill(want, off, len, key);
            if (mst_reader_read(r, t.name, off, got, len) != MST_OK ||
                memcmp(got, want, (size_t)len) != 0) {
                fprintf(c->err, "mst-bench: rank %d: verify: tensor %s differs near byte %"
                                PRIu64 "\n", c->rank, t.name, off);
                bad = 1;
            }
        }
    }
    free(got);
    free(want);
    mst_reader_free(&r);
    return bad;
}

/* raw: this rank's range of the shared file is its slab. */
static int verify_raw(const ctx *c)
{
    uint64_t off = 0;
    unsigned char *got = malloc(CHUNK);
    int fd = open(c->o->out, O_RDONLY), bad = !got || fd < 0;
    MPI_Exscan(&c->slab_bytes, &off, 1, MPI_UINT64_T, MPI_SUM, c->comm);
    if (c->rank == 0)
        off = 0;
    for (uint64_t done = 0; !bad && done < c->slab_bytes; done += CHUNK) {
        uint64_t len = c->slab_bytes - done < CHUNK ? c->slab_bytes - done : CHUNK;
        bad = pread(fd, got, (size_t)len, (off_t)(off + done)) != (ssize_t)len ||
              memcmp(got, c->slab + done, (size_t)len) != 0;
    }
    if (bad)
        fprintf(c->err, "mst-bench: rank %d: verify: raw bytes differ\n", c->rank);
    if (fd >= 0)
        close(fd);
    free(got);
    return bad;
}

static int verify_method(const ctx *c, int m)
{
    if (m == M_RAW)
        return verify_raw(c);
    if (m == M_PERRANK) {
        char *path;
        int bad;
        if (c->o->layout != L_WHOLE)
            return 0; /* boxes under their tensors' names: nothing to compare to */
        path = rank_path(c->o->out, c->rank);
        bad = !path || verify_file(c, path, 1);
        free(path);
        return bad;
    }
    return verify_file(c, c->o->out, 0);
}

static void remove_files(const ctx *c, int keep)
{
    char *p = rank_path(c->o->out, c->rank);
    if (keep) {
        free(p);
        return;
    }
    if (c->rank == 0)
        unlink(c->o->out);
    if (p)
        unlink(p);
    free(p);
}

/* ---- driver ---- */

/* Untimed: the first MPI_File_open of a process loads and selects Open MPI's
 * I/O components (about 0.3 s here), which would otherwise be charged to
 * whichever method runs first. Opens a scratch file once on the communicator
 * and once per rank, writes a byte, removes it. */
static void warm_up(const ctx *c)
{
    char *path = rank_path(c->o->out, -1);
    MPI_File fh;
    MPI_Status st;
    char b = 0;
    if (!path)
        return;
    if (MPI_File_open(c->comm, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &fh) ==
        MPI_SUCCESS) {
        MPI_File_write_at(fh, c->rank, &b, 1, MPI_BYTE, &st);
        MPI_File_close(&fh);
    }
    if (MPI_File_open(MPI_COMM_SELF, path, MPI_MODE_WRONLY, MPI_INFO_NULL, &fh) == MPI_SUCCESS) {
        MPI_File_write_at(fh, c->rank, &b, 1, MPI_BYTE, &st);
        MPI_File_close(&fh);
    }
    MPI_Barrier(c->comm);
    if (c->rank == 0)
        unlink(path);
    free(path);
}

static int one_run(const ctx *c, int m, int run, FILE *out, int quiet)
{
    double t0, t1, cpu0, marks[4] = {0, 0, 0, 0}, gmarks[4], mem[5], *all = NULL;
    int bad = 0, any = 0;
    const char *io = getenv("OMPI_MCA_io");

    /* untimed: no file in the way, nothing of an earlier run still dirty */
    remove_files(c, 0);
    if (c->rank == 0)
        sync();
    MPI_Barrier(c->comm);
    mem[0] = status_mib("VmRSS");
    reset_peak();
    MPI_Barrier(c->comm);
    cpu0 = cpu_seconds();
    t0 = MPI_Wtime();
    switch (m) {
    case M_MST: bad = run_mst(c, t0, marks); break;
    case M_RAW: bad = run_raw(c, t0, marks); break;
    case M_PERRANK: bad = run_per_rank(c, t0, marks); break;
    case M_GATHER: bad = run_gather(c, t0, marks); break;
    case M_REDIST: bad = run_redistribute(c, t0, marks); break;
    default: bad = run_consolidate(c, t0, marks); break;
    }
    MPI_Barrier(c->comm);
    t1 = MPI_Wtime();
    mem[1] = status_mib("VmHWM");
    mem[2] = mem[1] - mem[0];
    mem[3] = cpu_seconds() - cpu0;
    /* mst: CPU until the first file open, i.e. declarations, exchange, plan, header */
    mem[4] = m == M_MST && probe.cpu_at_open >= 0 ? probe.cpu_at_open - cpu0 : -1;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c->comm);
    MPI_Reduce(marks, gmarks, 4, MPI_DOUBLE, MPI_MAX, 0, c->comm);
    if (c->rank == 0)
        all = malloc((size_t)c->size * 5 * sizeof *all);
    MPI_Gather(mem, 5, MPI_DOUBLE, all, 5, MPI_DOUBLE, 0, c->comm);
    if (any) {
        free(all);
        return 1;
    }
    if (c->rank == 0 && all && !quiet) {
        /* each rank's marks count from its own t0, which the barrier makes
         * equal only to a few microseconds: clamp the last phase at 0 */
        double s = t1 - t0, end = m == M_CONSOLIDATE ? gmarks[3] : s;
        if (end < gmarks[2])
            end = gmarks[2];
        static const char *const keys[5] = {"rss_before_mib", "peak_mib", "extra_mib",
                                            "cpu_s", "cpu_plan_s"};
        fprintf(out,
                "{\"method\":\"%s\",\"ranks\":%d,\"bytes\":%" PRIu64 ",\"tensors\":%" PRIu64
                ",\"fsync\":%s,\"mix\":\"%s\",\"dtype\":\"%s\",\"layout\":\"%s\",\"io\":\"%s\","
                "\"run\":%d,\"seconds\":%.6f,\"gib_per_s\":%.4f,\"phases\":{\"plan\":%.6f,"
                "\"write\":%.6f,\"sync\":%.6f,\"commit\":%.6f",
                method_names[m], c->size, c->total, c->o->tensors, c->o->fsync ? "true" : "false",
                mix_names[c->o->mix], c->o->dtype >= 0 ? mst_dtype_name((mst_dtype)c->o->dtype)
                                                       : "mix",
                layout_names[c->o->layout], io ? io : "default", run, s,
                s > 0 ? (double)c->total / s / (1024.0 * 1024 * 1024) : 0.0, gmarks[0],
                gmarks[1] - gmarks[0], gmarks[2] - gmarks[1], end - gmarks[2]);
        if (m == M_CONSOLIDATE)
            fprintf(out, ",\"consolidate\":%.6f", s > end ? s - end : 0.0);
        fputc('}', out);
        if (m == M_MST && c->o->nhints) {
            fputs(",\"hints\":\"", out);
            for (int i = 0; i < c->o->nhints; i++) {
                if (i)
                    fputc(',', out);
                for (const char *h = c->o->hints[i]; *h; h++)
                    fputc(*h != '"' && *h != '\\' && (unsigned char)*h >= 0x20 ? *h : '_', out);
            }
            fputc('"', out);
        }
        for (int k = 0; k < (m == M_MST ? 5 : 4); k++) {
            fprintf(out, ",\"%s\":[", keys[k]);
            for (int r = 0; r < c->size; r++)
                fprintf(out, k >= 3 ? "%s%.3f" : "%s%.1f", r ? "," : "", all[5 * r + k]);
            fputc(']', out);
        }
        fputs("}\n", out);
        fflush(out);
    }
    free(all);
    return 0;
}

int bench_main(int argc, char **argv, MPI_Comm comm, FILE *out, FILE *err);

int bench_main(int argc, char **argv, MPI_Comm comm, FILE *out, FILE *err)
{
    options o;
    ctx c;
    int rc, status = 0, any = 0;
    memset(&c, 0, sizeof c);
    MPI_Comm_rank(comm, &c.rank);
    MPI_Comm_size(comm, &c.size);
    rc = parse_args(argc, argv, &o, err, c.rank);
    if (rc)
        return rc == 1 ? 0 : 2;
    c.o = &o;
    c.comm = comm;
    c.err = err;
    /* Whole elements per tensor: the bytes written can be a little under --size. */
    for (uint64_t i = 0; i < o.tensors; i++) {
        tensor t;
        describe(&o, i, &t);
        c.total += t.nbytes;
    }
    status = make_pieces(&o, c.rank, c.size, &c.pieces, &c.n, &c.slab, &c.slab_bytes) != 0;
    MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        if (status)
            fprintf(err, "mst-bench: rank %d: out of memory for its tensors\n", c.rank);
        status = 1;
        goto done;
    }

    warm_up(&c);
    for (int run = 0; run < o.warmup && !status; run++)
        for (int k = 0; k < o.nmethods && !status; k++)
            status = one_run(&c, o.methods[k], -1, out, 1);
    for (int run = 0; run < o.repeat && !status; run++)
        for (int k = 0; k < o.nmethods && !status; k++) {
            /* the order turns every round (A B C, B C A, C A B ...), so no method
             * always follows the removal of the largest file or runs first */
            int m = o.methods[(k + run) % o.nmethods];
            int last = run + 1 == o.repeat && k + 1 == o.nmethods;
            status = one_run(&c, m, run, out, 0);
            if (!status && o.verify) {
                int bad = verify_method(&c, m);
                MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
                status = any;
                if (c.rank == 0)
                    fprintf(status ? err : out, "verify %s: %s\n", method_names[m],
                            status ? "FAILED" : "every byte of every tensor matches");
            }
            MPI_Barrier(comm);
            /* the files of the last run stay unless --remove */
            if (!last || o.remove)
                remove_files(&c, 0);
            MPI_Barrier(comm);
        }

done:
    free(c.slab);
    free(c.pieces);
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

/* mst-bench: write a synthetic checkpoint from every rank, through mst and
 * through what users would do instead, and report time, throughput and
 * memory.
 *
 *   mpirun -np 4 mst-bench -o /scratch/ckpt.safetensors --size 4GiB --tensors 256 \
 *       --method mst,raw,per-rank --repeat 3 --verify
 *
 * The methods (mst, gather, per-rank, raw, per-rank+consolidate) are in
 * bench_methods.c, the synthetic tensors in bench_workload.c, the timing and
 * memory probes in bench_probes.c; this file parses the options, runs the
 * methods and reports. With several methods and --repeat R, the methods are
 * interleaved, the order turning every round: A B C, B C A, C A B ...
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
 * cpu_plan_s, until its first file open). The phases of the saves through mst
 * are taken without touching the library: bench_probes.c interposes
 * MPI_File_open, MPI_File_write_at, MPI_File_write_at_all, MPI_Wait,
 * MPI_File_sync and MPI_Gatherv (the MPI profiling interface) and notes when
 * each rank first opens the file, last writes and last syncs, and when rank
 * 0's gather of declarations ends (rank0_plan: declare, exchange, plan).
 *
 * "mst-bench train ..." is the training-loop stand-in of split-phase saves
 * (bench_train.c: mst_writer_commit against begin/end, with and without the
 * snapshot). */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "bench_load.h"
#include "bench_methods.h"
#include "bench_train.h"
#include "bench_probes.h"
#include "bench_workload.h"
#include "mst.h"

#define M_ALL M_MST_CRC /* what "all" runs (mst+crc only when named) */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mpirun -np N mst-bench -o FILE [options]\n"
            "       mpirun -np N mst-bench train -o FILE [--size B] [--steps S] [--every K]\n"
            "           [--compute-ms C] [--allreduce B] [--modes none,sync,split,snapshot]\n"
            "           [--no-fsync] [--host-copy]   (a training loop saving every K steps)\n"
            "  -o, --out FILE    target file (on the file system to measure)\n"
            "  --method LIST     comma-separated, interleaved per repeat (default mst):\n"
            "                    mst gather per-rank raw per-rank+consolidate, or all;\n"
            "                    or loads (not mixed with saves): load load-local\n"
            "                    load-scatter load-raw load-raw-file (every rank reads\n"
            "                    its part of the checkpoint back, as --layout splits it)\n"
            "  --no-save         load methods: read the existing FILE (written by mst-bench\n"
            "                    with the same --size --tensors --mix --dtype --seed)\n"
            "  --keep-cache      load methods: do not drop the page cache before each run\n"
            "                    (it is dropped when /proc/sys/vm/drop_caches is writable)\n"
            "  --settle S        load methods: wait S seconds after each drop (a virtual\n"
            "                    machine may hand the freed memory to its host meanwhile,\n"
            "                    after which page-cache pages cost a host fault each: every\n"
            "                    run then starts in the same state)\n"
            "  --size SIZE       total tensor bytes (default 256MiB); suffixes K M G (1000s)\n"
            "                    or KiB MiB GiB (1024s)\n"
            "  --tensors N       number of tensors (default 64)\n"
            "  --mix NAME        uniform (equal sizes, default) or transformer (every 7th\n"
            "                    tensor a big matrix of 1x-3x, 99%% of the bytes; the rest small)\n"
            "  --dtype NAME|mix  dtype of every tensor (default mix: F32 BF16 F16 I64 U8 ...)\n"
            "  --layout L        whole (tensor i on rank i %% N, default), rows or cols (every\n"
            "                    2-D tensor split over all ranks by row or column blocks)\n"
            "  --width W         last dimension of the 2-D tensors (default 1024): with\n"
            "                    --size 128MiB --tensors 8 --dtype BF16 --width 4096 the\n"
            "                    tensors are [2048, 4096]\n"
            "  --seed S          data seed (default 1)\n"
            "  --no-fsync        no fsync (mst: MPI_File_sync and the directory fsync)\n"
            "  --checksums       the method mst with checksums on (mst_writer_set_checksums);\n"
            "                    the method mst+crc is mst with them, to interleave with mst\n"
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

static int parse_methods(const char *v, bench_options *o)
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
            if (!strcmp(tok, bench_method_names[m]) && o->nmethods < M_COUNT * 4) {
                o->methods[o->nmethods++] = m;
                found = 1;
            }
        if (!found)
            return -1;
    }
    return o->nmethods ? 0 : -1;
}

static int parse_args(int argc, char **argv, bench_options *o, FILE *err, int rank)
{
    memset(o, 0, sizeof *o);
    bench_workload_defaults(&o->wl);
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
            bad = !v || parse_size(v, &o->wl.size);
            i++;
        } else if (!strcmp(a, "--tensors")) {
            bad = !v || parse_size(v, &o->wl.tensors) || o->wl.tensors == 0;
            i++;
        } else if (!strcmp(a, "--width")) {
            bad = !v || parse_size(v, &o->wl.width) || o->wl.width == 0;
            i++;
        } else if (!strcmp(a, "--seed")) {
            bad = !v || parse_size(v, &o->wl.seed);
            i++;
        } else if (!strcmp(a, "--method")) {
            bad = !v || parse_methods(v, o);
            i++;
        } else if (!strcmp(a, "--mix")) {
            if (v && !strcmp(v, "uniform"))
                o->wl.mix = MIX_UNIFORM;
            else if (v && !strcmp(v, "transformer"))
                o->wl.mix = MIX_TRANSFORMER;
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
                o->wl.layout = L_WHOLE;
            else if (v && !strcmp(v, "rows"))
                o->wl.layout = L_ROWS;
            else if (v && !strcmp(v, "cols"))
                o->wl.layout = L_COLS;
            else
                bad = 1;
            i++;
        } else if (!strcmp(a, "--dtype")) {
            mst_dtype d;
            if (v && !strcmp(v, "mix"))
                o->wl.dtype = -1;
            else if (v && mst_dtype_from_name(v, &d) == MST_OK && mst_dtype_bits(d) % 8 == 0)
                o->wl.dtype = (int)d;
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
        } else if (!strcmp(a, "--keep-cache")) {
            o->keep_cache = 1;
        } else if (!strcmp(a, "--settle")) {
            bad = !v || (o->settle = atof(v)) < 0;
            i++;
        } else if (!strcmp(a, "--no-save")) {
            o->no_save = 1;
        } else if (!strcmp(a, "--checksums")) {
            o->checksums = 1;
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
    for (int k = 1; k < o->nmethods; k++)
        if ((o->methods[k] >= M_LOAD) != (o->methods[0] >= M_LOAD)) {
            if (rank == 0)
                fprintf(err, "mst-bench: the load methods do not mix with the save methods\n");
            return 2;
        }
    if (o->wl.layout != L_WHOLE)
        for (int k = 0; k < o->nmethods; k++)
            if (o->methods[k] == M_GATHER || o->methods[k] == M_CONSOLIDATE) {
                if (rank == 0)
                    fprintf(err, "mst-bench: --layout %s is for the methods mst, raw and "
                                 "per-rank\n", bench_layout_names[o->wl.layout]);
                return 2;
            }
    bench_workload_init(&o->wl);
    return 0;
}

/* ---- driver ---- */

/* Untimed: the first MPI_File_open of a process loads and selects Open MPI's
 * I/O components (about 0.3 s here), which would otherwise be charged to
 * whichever method runs first. Opens a scratch file once on the communicator
 * and once per rank, writes a byte, removes it. */
static void warm_up(const bench_ctx *c)
{
    char *path = bench_rank_path(c->o->out, -1);
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

/* The JSON line of one run: t1 - t0 its seconds, gmarks the latest end of
 * each phase over the ranks, all[5 * r + k] rank r's memory and CPU figures. */
static void print_row(const bench_ctx *c, int m, int run, double t0, double t1,
                      const double gmarks[4], const double *all, const double *split,
                      FILE *out)
{
    static const char *const keys[5] = {"rss_before_mib", "peak_mib", "extra_mib", "cpu_s",
                                        "cpu_plan_s"};
    const bench_workload *wl = &c->o->wl;
    const char *io = getenv("OMPI_MCA_io");
    /* each rank's marks count from its own t0, which the barrier makes
     * equal only to a few microseconds: clamp the last phase at 0 */
    double s = t1 - t0, end = m == M_CONSOLIDATE ? gmarks[3] : s;
    if (end < gmarks[2])
        end = gmarks[2];
    fprintf(out,
            "{\"method\":\"%s\",\"ranks\":%d,\"bytes\":%" PRIu64 ",\"tensors\":%" PRIu64
            ",\"fsync\":%s,\"checksums\":%s,\"mix\":\"%s\",\"dtype\":\"%s\",\"layout\":\"%s\",\"io\":\"%s\","
            "\"run\":%d,\"seconds\":%.6f,\"gib_per_s\":%.4f,\"phases\":{\"plan\":%.6f,"
            "\"write\":%.6f,\"sync\":%.6f,\"commit\":%.6f",
            bench_method_names[m], c->size, c->total, wl->tensors, c->o->fsync ? "true" : "false",
            m == M_MST_CRC || (m == M_MST && c->o->checksums) ? "true" : "false",
            bench_mix_names[wl->mix], wl->dtype >= 0 ? mst_dtype_name((mst_dtype)wl->dtype) : "mix",
            bench_layout_names[wl->layout], io ? io : "default", run, s,
            s > 0 ? (double)c->total / s / (1024.0 * 1024 * 1024) : 0.0, gmarks[0],
            gmarks[1] - gmarks[0], gmarks[2] - gmarks[1], end - gmarks[2]);
    if (m == M_CONSOLIDATE)
        fprintf(out, ",\"consolidate\":%.6f", s > end ? s - end : 0.0);
    fputc('}', out);
    if (split)
        fprintf(out, ",\"rank0_plan\":{\"declare\":%.6f,\"exchange\":%.6f,\"plan\":%.6f}",
                split[0], split[1], split[2]);
    if ((m == M_MST || m == M_MST_CRC) && c->o->nhints) {
        fputs(",\"hints\":\"", out);
        for (int i = 0; i < c->o->nhints; i++) {
            if (i)
                fputc(',', out);
            for (const char *h = c->o->hints[i]; *h; h++)
                fputc(*h != '"' && *h != '\\' && (unsigned char)*h >= 0x20 ? *h : '_', out);
        }
        fputc('"', out);
    }
    for (int k = 0; k < (m == M_MST || m == M_MST_CRC ? 5 : 4); k++) {
        fprintf(out, ",\"%s\":[", keys[k]);
        for (int r = 0; r < c->size; r++)
            fprintf(out, k >= 3 ? "%s%.3f" : "%s%.1f", r ? "," : "", all[5 * r + k]);
        fputc(']', out);
    }
    fputs("}\n", out);
    fflush(out);
}

/* Collective. One run of method m, its line on rank 0's out unless quiet.
 * Nonzero (on every rank) if any rank failed. */
static int one_run(const bench_ctx *c, int m, int run, FILE *out, int quiet)
{
    double t0, t1, cpu0, marks[4] = {0, 0, 0, 0}, gmarks[4], mem[5], *all = NULL, split[3];
    int bad = 0, any = 0, have_split;

    /* untimed: no file in the way, nothing of an earlier run still dirty */
    bench_remove_files(c);
    if (c->rank == 0)
        sync();
    MPI_Barrier(c->comm);
    mem[0] = bench_status_mib("VmRSS");
    bench_reset_peak();
    MPI_Barrier(c->comm);
    cpu0 = bench_cpu_seconds();
    t0 = MPI_Wtime();
    bad = bench_run(c, m, t0, marks);
    MPI_Barrier(c->comm);
    t1 = MPI_Wtime();
    mem[1] = bench_status_mib("VmHWM");
    mem[2] = mem[1] - mem[0];
    mem[3] = bench_cpu_seconds() - cpu0;
    have_split = (m == M_MST || m == M_MST_CRC) && bench_probe_split(t0, split) == 0;
    /* mst: CPU until the first file open, i.e. declarations, exchange, plan, header */
    mem[4] = (m == M_MST || m == M_MST_CRC) && bench_probe_cpu_at_open() >= 0 ? bench_probe_cpu_at_open() - cpu0
                                                           : -1;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c->comm);
    MPI_Reduce(marks, gmarks, 4, MPI_DOUBLE, MPI_MAX, 0, c->comm);
    if (c->rank == 0)
        all = malloc((size_t)c->size * 5 * sizeof *all);
    MPI_Gather(mem, 5, MPI_DOUBLE, all, 5, MPI_DOUBLE, 0, c->comm);
    if (!any && c->rank == 0 && all && !quiet)
        print_row(c, m, run, t0, t1, gmarks, all, have_split ? split : NULL, out);
    free(all);
    return any != 0;
}

int bench_main(int argc, char **argv, MPI_Comm comm, FILE *out, FILE *err);

int bench_main(int argc, char **argv, MPI_Comm comm, FILE *out, FILE *err)
{
    bench_options o;
    bench_ctx c;
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
    for (uint64_t i = 0; i < o.wl.tensors; i++) {
        tensor t;
        bench_describe(&o.wl, i, &t);
        c.total += t.nbytes;
    }
    status = bench_make_pieces(&o.wl, c.rank, c.size, &c.pieces, &c.n, &c.slab,
                               &c.slab_bytes) != 0;
    MPI_Allreduce(&status, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        if (status)
            fprintf(err, "mst-bench: rank %d: out of memory for its tensors\n", c.rank);
        status = 1;
        goto done;
    }

    warm_up(&c);
    if (o.methods[0] >= M_LOAD) {
        status = bench_load_main(&c, out);
        goto done;
    }
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
                int bad = bench_verify(&c, m);
                MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
                status = any;
                if (c.rank == 0)
                    fprintf(status ? err : out, "verify %s: %s\n", bench_method_names[m],
                            status ? "FAILED" : "every byte of every tensor matches");
            }
            MPI_Barrier(comm);
            /* the files of the last run stay unless --remove */
            if (!last || o.remove)
                bench_remove_files(&c);
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
    if (argc > 1 && !strcmp(argv[1], "train")) /* the training-loop stand-in */
        rc = bench_train_main(argc - 1, argv + 1, MPI_COMM_WORLD, stdout, stderr);
    else
        rc = bench_main(argc, argv, MPI_COMM_WORLD, stdout, stderr);
    MPI_Finalize();
    return rc;
}

/* mst-bench's methods: the same tensors written through mst and through what
 * users would do instead, each with its check of the files it wrote. */
#ifndef BENCH_METHODS_H
#define BENCH_METHODS_H

#include <stdint.h>
#include <stdio.h>

#include <mpi.h>

#include "bench_workload.h"

/* M_MST_CRC: mst with checksums (mst_writer_set_checksums), to interleave with M_MST;
 * M_LOAD and after: the load methods (bench_load.c), not to mix with the saves */
enum { M_MST, M_GATHER, M_PERRANK, M_RAW, M_CONSOLIDATE, M_MST_CRC, M_LOAD, M_LOAD_LOCAL,
       M_LOAD_SCATTER, M_LOAD_RAW, M_LOAD_RAW_FILE, M_COUNT };
extern const char *const bench_method_names[M_COUNT];

typedef struct bench_options {
    const char *out;
    bench_workload wl;
    int methods[M_COUNT * 4];
    int nmethods;
    int verify, fsync, repeat, remove, warmup;
    int checksums; /* --checksums: the method mst with checksums on */
    int no_save;   /* --no-save: the load methods read the existing file */
    int keep_cache; /* --keep-cache: the load methods do not drop the page cache */
    double settle;  /* --settle S: seconds to wait after the drop, before the run */
    const char *hints[16]; /* --hint KEY=VALUE, for the mst method's MPI_Info */
    int nhints;
} bench_options;

/* One rank's view of a benchmark. */
typedef struct bench_ctx {
    const bench_options *o;
    MPI_Comm comm;
    int rank, size;
    piece *pieces; /* this rank's, see bench_make_pieces */
    size_t n;
    unsigned char *slab;
    uint64_t slab_bytes, total; /* this rank's bytes; all ranks' */
    FILE *err;
} bench_ctx;

/* Collective. Runs method m once from t0 and fills marks[] with the times
 * (from t0) at which this rank ended plan, write, sync and (consolidate) the
 * per-rank part. Nonzero if this rank failed (after saying why on c->err). */
int bench_run(const bench_ctx *c, int m, double t0, double marks[4]);

/* Collective. Reads back what method m wrote and checks every byte of this
 * rank's tensors. Nonzero if this rank found a difference. */
int bench_verify(const bench_ctx *c, int m);

/* Local. Removes the files this rank's methods write (rank 0: the shared
 * one; every rank: its per-rank file). */
void bench_remove_files(const bench_ctx *c);

/* "OUT.rankR"; NULL when out of memory. */
char *bench_rank_path(const char *out, int r);

#endif

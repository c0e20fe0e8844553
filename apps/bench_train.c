/* mst-bench train: a training-loop stand-in that saves a checkpoint every K
 * steps, synchronously or split phase, with and without the snapshot.
 *
 *   mpirun -np N mst-bench train -o FILE [--size BYTES] [--steps S] [--every K]
 *          [--compute-ms C] [--allreduce BYTES] [--modes LIST] [--no-fsync]
 *          [--host-copy] [--reserve] [--rounds R] [--hint KEY=VALUE]...
 *
 * Each rank holds --size / N bytes of F32 parameters in 8 tensors. A step is
 * a fixed amount of compute (calibrated once to about C ms on an idle core:
 * the fastest of 5 timings, the largest count over the ranks),
 * an MPI_Allreduce of --allreduce bytes (the gradients) and an optimizer
 * update that adds to every parameter. The modes (each a run of S steps):
 *   none      no save: the step time of reference;
 *   sync      mst_writer_commit after the update of every K-th step;
 *   split     mst_writer_commit_begin there; the parameters must stay as
 *             they are until end, so end comes before the next update: the
 *             writes overlap the next step's compute and allreduce;
 *   snapshot  begin with the snapshot; the updates go on at once; end as
 *             soon as test says done at a step's end (or before the next
 *             save, or after the last step).
 * --host-copy: the parameters stand for device memory; before each save
 * (every mode) the loop copies them into host buffers of its own (the
 * device-to-host copy, timed as copy_s, not counted as blocked in mst) and
 * saves those, which training does not touch until the next save: then split
 * without snapshot ends as soon as test says done (or before the next copy),
 * as snapshot does. The host buffers are touched once at start, as a real
 * loop's pinned buffers are. --rounds R: the modes R times in turn, each
 * round with its own reference ("round" in the JSON); --reserve: the
 * snapshot's memory reserved before the loop (mst_snapshot_reserve), so
 * that the first snapshot does not pay its first touch; --hint: an MPI_Info
 * key of the writers (e.g. mst_split_direct=0).
 * One JSON line per mode: blocked seconds per save (the caller inside mst:
 * commit, or begin + test + end), the save's span (begin to end returned),
 * the median step time with a save in flight against the median of "none"
 * (step_slowdown: every step with a save in it, the copy and the time in mst
 * included; work_slowdown: the steps begun while a save was in flight, less
 * the time in mst and the copy, which blocked_per_save_s and copy_s report:
 * what the writes cost the compute beside them; work_slowdown_vs_quiet: the
 * same against the median step of this run with no save in it, robust to a
 * load that changes between runs), the CPU seconds per save
 * of the process's threads other than the caller's (the library's writer,
 * MPI's: robust to the machine's load),
 * cpus_per_rank: the CPUs the rank's binding lets its threads use (fewest
 * over the ranks; 1 under Open MPI's default binding at 1-2 ranks: the
 * library's writer then shares the caller's core);
 * blocked_first_save_s: the first save's (slowest rank; a snapshot's first
 * one touches fresh memory unless --reserve);
 * blocked_critical_per_save_s: per save the least blocked time of the ranks
 * (that of the rank that came to begin last, which waits for no other: what
 * the save adds to the loop's critical path; the others' blocked time also
 * holds their wait for it, the skew of the update and copy between ranks
 * that the loop's next collective would hold without a save), median over
 * the saves;
 * the loop's total, the snapshot bytes of this rank and the peak RSS (the
 * snapshot mode's MPI_Allreduce of test's flag, which a real loop would fold
 * into its own, is not counted as blocked); all
 * medians over the saves, the maxima over the ranks. Saves are at steps
 * K/2, K/2 + K, ... while K steps are left, so that each ends inside the
 * loop. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/resource.h>
#include <time.h>

#include <mpi.h>

#include "bench_train.h"
#include "mst.h"

enum { T_NONE, T_SYNC, T_SPLIT, T_SNAPSHOT, T_MODES };
static const char *const mode_names[T_MODES] = {"none", "sync", "split", "snapshot"};

#define NT 8

typedef struct train {
    MPI_Comm comm;
    int rank, size;
    const char *out;
    uint64_t size_total, allreduce;
    int steps, every, fsync;
    double compute_ms;
    uint64_t iters; /* compute per step, calibrated */
    double ref_step; /* median step of mode none */
    float *params[NT];
    float *host[NT]; /* --host-copy: the host copies saved (params are "on the device") */
    int host_copy;
    int reserve; /* --reserve: mst_snapshot_reserve before the loop */
    int round;
    int cpus; /* the CPUs this process may run on (its binding), fewest of the ranks */
    MPI_Info hints; /* --hint KEY=VALUE: the writers' info */
    int64_t nparam; /* elements per tensor */
    float *grad;
} train;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile double sink;

static void compute(uint64_t iters)
{
    double x = 1.0;
    for (uint64_t i = 0; i < iters; i++)
        x = x * 1.0000001 + 1e-9;
    sink = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n == 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int open_save(train *t, mst_writer **w)
{
    char name[48];
    int rc = mst_writer_open(w, t->comm, t->out, t->hints);
    if (rc != MST_OK)
        return rc;
    mst_writer_set_fsync(*w, t->fsync);
    for (int k = 0; k < NT; k++) {
        snprintf(name, sizeof name, "layer%d.rank%d", k, t->rank);
        mst_writer_add(*w, name, MST_F32, 1, &t->nparam,
                       t->host_copy ? t->host[k] : t->params[k]);
    }
    return MST_OK;
}

static void update(train *t)
{
    for (int k = 0; k < NT; k++)
        for (int64_t i = 0; i < t->nparam; i++)
            t->params[k][i] += 1e-3f * t->grad[i % 1024];
}

/* CPU seconds of the process (RUSAGE_SELF) or of the calling thread. */
static double cpu_s(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* One run of the loop in `mode`; prints its JSON line (rank 0). */
static int run_mode(train *t, int mode, FILE *out, FILE *err, double ref_step)
{
    double *step_s = calloc((size_t)t->steps, sizeof *step_s), *flight = NULL, *blocked = NULL,
           *span = NULL, t_loop, t_begin = 0, blocked_now = 0;
    int nflight = 0, nsaves = 0, in_flight = 0, failed = 0;
    mst_writer *w = NULL;
    int ngrad = (int)(t->allreduce / sizeof(float));
    double *copy = calloc((size_t)t->steps, sizeof *copy);
    double *work = calloc((size_t)t->steps, sizeof *work); /* steps begun in flight */
    double *quiet = calloc((size_t)t->steps, sizeof *quiet); /* steps with no save in them */
    int nwork = 0, nquiet = 0;
    double *bbeg = calloc((size_t)t->steps, sizeof *bbeg);
    double *least = calloc((size_t)t->steps, sizeof *least); /* per save, the ranks' least */
    flight = calloc((size_t)t->steps, sizeof *flight);
    blocked = calloc((size_t)t->steps, sizeof *blocked);
    span = calloc((size_t)t->steps, sizeof *span);
    if (!step_s || !flight || !blocked || !span || !copy || !bbeg || !work || !quiet || !least)
        return 1;
    double cpu_others = 0;
    MPI_Barrier(t->comm);
    cpu_others = cpu_s(RUSAGE_SELF) - cpu_s(RUSAGE_THREAD);
    t_loop = now();
    for (int s = 0; s < t->steps && !failed; s++) {
        double t0 = now(), tb, aside = 0; /* aside: in mst, or the host copy */
        int began_in_flight = in_flight;
        /* a save every K steps, each with K steps to finish inside the loop */
        int save_now = s % t->every == t->every / 2 && s + t->every <= t->steps, done = 0;
        int touched = in_flight || (save_now && mode != T_NONE); /* a save in this step */
        compute(t->iters);
        MPI_Allreduce(MPI_IN_PLACE, t->grad, ngrad, MPI_FLOAT, MPI_SUM, t->comm);
        /* split without snapshot: end before the parameters change;
         * snapshot: end once done, or before the next save */
        if (in_flight) {
            tb = now();
            if (mode == T_SNAPSHOT || t->host_copy) {
                mst_writer_commit_test(w, &done);
                /* the loop's own agreement (a real one folds the flag into
                 * its gradient allreduce): not time blocked in mst */
                blocked_now += now() - tb;
                aside += now() - tb;
                MPI_Allreduce(MPI_IN_PLACE, &done, 1, MPI_INT, MPI_MIN, t->comm);
                tb = now();
            }
            if ((mode == T_SPLIT && !t->host_copy) || done || save_now || s == t->steps - 1) {
                int rc = mst_writer_commit_end(w);
                if (rc != MST_OK) {
                    fprintf(err, "rank %d: end: %s\n", t->rank, mst_writer_error(w));
                    failed = 1;
                }
                mst_writer_free(&w);
                in_flight = 0;
                span[nsaves - 1] = now() - t_begin;
            }
            blocked_now += now() - tb;
            aside += now() - tb;
            if (!in_flight)
                blocked[nsaves - 1] = blocked_now;
        }
        update(t);
        if (save_now && mode != T_NONE) {
            int rc;
            tb = now();
            if (t->host_copy) { /* the device-to-host copy every mode needs */
                for (int k = 0; k < NT; k++)
                    memcpy(t->host[k], t->params[k], (size_t)t->nparam * 4);
                copy[nsaves] = now() - tb;
                aside += copy[nsaves];
                tb = now();
            }
            if (open_save(t, &w) != MST_OK) {
                fprintf(err, "rank %d: open: %s\n", t->rank, mst_writer_error(w));
                failed = 1;
                break;
            }
            if (mode == T_SYNC) {
                rc = mst_writer_commit(w);
                mst_writer_free(&w);
                blocked[nsaves] = span[nsaves] = now() - tb;
            } else {
                mst_writer_set_snapshot(w, mode == T_SNAPSHOT);
                t_begin = tb;
                rc = mst_writer_commit_begin(w);
                blocked_now = bbeg[nsaves] = now() - tb;
                in_flight = rc == MST_OK;
                if (!in_flight)
                    mst_writer_free(&w);
            }
            nsaves++;
            if (rc != MST_OK) {
                fprintf(err, "rank %d: save: %s\n", t->rank, mst_strerror(rc));
                failed = 1;
            }
        }
        step_s[s] = now() - t0;
        if (touched)
            flight[nflight++] = step_s[s];
        if (began_in_flight) /* its compute ran beside the writes */
            work[nwork++] = step_s[s] - aside;
        else if (!touched)
            quiet[nquiet++] = step_s[s];
    }
    t_loop = now() - t_loop;
    if (w) {
        mst_writer_commit_end(w);
        mst_writer_free(&w);
    }
    /* the CPU of the process's other threads (the library's, MPI's) in the
     * loop: what the writes took from the cores, whatever the load */
    cpu_others = cpu_s(RUSAGE_SELF) - cpu_s(RUSAGE_THREAD) - cpu_others;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, t->comm);
    /* the first save's blocked time (the slowest rank: its snapshot's first
     * touch), and per save the least of the ranks' blocked times: the rank
     * that came to begin last waits for no other, so its time in mst is what
     * the save itself adds to the loop's critical path; the others' also
     * hold the wait for it, which the loop's next collective would hold
     * without a save (the skew of the update and the copy between ranks) */
    double first = nsaves ? blocked[0] : 0, critical = 0;
    memcpy(least, blocked, (size_t)nsaves * sizeof *least);
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_DOUBLE, MPI_MAX, t->comm);
    if (nsaves)
        MPI_Allreduce(MPI_IN_PLACE, least, nsaves, MPI_DOUBLE, MPI_MIN, t->comm);
    critical = median(least, nsaves);
    {
        double st_med = median(step_s, t->steps), fl_med = median(flight, nflight);
        double bl_med = median(blocked, nsaves), sp_med = median(span, nsaves);
        double cp_med = median(copy, nsaves), bb_med = median(bbeg, nsaves);
        double wk_med = median(work, nwork), qu_med = median(quiet, nquiet);
        double v[10] = {st_med, fl_med,  bl_med, sp_med,
                       t_loop, cp_med,  bb_med, wk_med,
                       nsaves ? cpu_others / nsaves : 0, qu_med};
        long rss = peak_rss_kib();
        uint64_t snap = mode == T_SNAPSHOT ? (uint64_t)NT * (uint64_t)t->nparam * 4 : 0;
        MPI_Allreduce(MPI_IN_PLACE, v, 10, MPI_DOUBLE, MPI_MAX, t->comm);
        MPI_Allreduce(MPI_IN_PLACE, &rss, 1, MPI_LONG, MPI_MAX, t->comm);
        if (t->rank == 0 && mode != T_NONE)
            fprintf(out,
                    "{\"bench\": \"train\", \"mode\": \"%s\", \"ranks\": %d, \"bytes\": %llu, "
                    "\"fsync\": %d, \"steps\": %d, \"every\": %d, \"saves\": %d, "
                    "\"step_ref_s\": %.4f, \"step_median_s\": %.4f, "
                    "\"step_in_flight_median_s\": %.4f, \"steps_in_flight\": %d, "
                    "\"step_slowdown\": %.4f, \"step_work_in_flight_median_s\": %.4f, "
                    "\"steps_work\": %d, \"work_slowdown\": %.4f, "
                    "\"blocked_per_save_s\": %.4f, \"begin_s\": %.4f, "
                    "\"save_span_s\": %.4f, \"total_s\": %.3f, \"snapshot_bytes_rank\": %llu, "
                    "\"host_copy\": %d, \"copy_s\": %.4f, \"peak_rss_kib\": %ld, "
                    "\"other_threads_cpu_per_save_s\": %.4f, \"step_quiet_median_s\": %.4f, "
                    "\"work_slowdown_vs_quiet\": %.4f, \"blocked_first_save_s\": %.4f, "
                    "\"blocked_critical_per_save_s\": %.4f, \"cpus_per_rank\": %d, "
                    "\"reserved\": %d, \"round\": %d, \"failed\": %d}\n",
                    mode_names[mode], t->size, (unsigned long long)t->size_total, t->fsync,
                    t->steps, t->every, nsaves, ref_step, v[0], v[1], nflight,
                    ref_step > 0 ? v[1] / ref_step - 1 : 0, v[7], nwork,
                    ref_step > 0 && nwork ? v[7] / ref_step - 1 : 0, v[2], v[6], v[3], v[4],
                    (unsigned long long)snap, t->host_copy, v[5], rss, v[8], v[9],
                    v[9] > 0 && nwork ? v[7] / v[9] - 1 : 0, first, critical, t->cpus,
                    t->reserve, t->round, failed);
        else if (t->rank == 0)
            fprintf(out,
                    "{\"bench\": \"train\", \"mode\": \"none\", \"ranks\": %d, \"steps\": %d, "
                    "\"step_median_s\": %.4f, \"total_s\": %.3f, \"peak_rss_kib\": %ld, "
                    "\"round\": %d}\n",
                    t->size, t->steps, v[0], v[4], rss, t->round);
        fflush(out);
        if (mode == T_NONE)
            t->ref_step = v[0]; /* the reference for the others */
    }
    free(step_s);
    free(flight);
    free(blocked);
    free(span);
    free(copy);
    free(bbeg);
    free(work);
    free(quiet);
    free(least);
    return failed;
}

static uint64_t parse_bytes(const char *s)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || end == s)
        return 0;
    if (*end == 'K' || *end == 'k')
        v *= 1024;
    else if (*end == 'M')
        v *= 1024 * 1024;
    else if (*end == 'G')
        v *= 1024.0 * 1024 * 1024;
    return (uint64_t)v;
}

int bench_train_main(int argc, char **argv, MPI_Comm comm, FILE *out, FILE *err)
{
    train t;
    int modes[T_MODES] = {1, 1, 1, 1}, failed = 0, rounds = 1;
    memset(&t, 0, sizeof t);
    t.comm = comm;
    MPI_Comm_rank(comm, &t.rank);
    MPI_Comm_size(comm, &t.size);
    {
        cpu_set_t set;
        CPU_ZERO(&set);
        t.cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
        MPI_Allreduce(MPI_IN_PLACE, &t.cpus, 1, MPI_INT, MPI_MIN, comm);
    }
    t.size_total = (uint64_t)256 << 20;
    t.allreduce = (uint64_t)1 << 20;
    t.steps = 40;
    t.every = 10;
    t.fsync = 1;
    t.compute_ms = 300;
    t.hints = MPI_INFO_NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && v)
            t.out = v, i++;
        else if (!strcmp(a, "--size") && v)
            t.size_total = parse_bytes(v), i++;
        else if (!strcmp(a, "--allreduce") && v)
            t.allreduce = parse_bytes(v), i++;
        else if (!strcmp(a, "--steps") && v)
            t.steps = atoi(v), i++;
        else if (!strcmp(a, "--every") && v)
            t.every = atoi(v), i++;
        else if (!strcmp(a, "--compute-ms") && v)
            t.compute_ms = atof(v), i++;
        else if (!strcmp(a, "--no-fsync"))
            t.fsync = 0;
        else if (!strcmp(a, "--host-copy"))
            t.host_copy = 1;
        else if (!strcmp(a, "--reserve"))
            t.reserve = 1;
        else if (!strcmp(a, "--rounds") && v)
            rounds = atoi(v), i++;
        else if (!strcmp(a, "--hint") && v && strchr(v, '=') && v[0] != '=') {
            char key[256];
            size_t kl = (size_t)(strchr(v, '=') - v);
            if (kl >= sizeof key)
                kl = sizeof key - 1;
            memcpy(key, v, kl);
            key[kl] = 0;
            if (t.hints == MPI_INFO_NULL)
                MPI_Info_create(&t.hints);
            MPI_Info_set(t.hints, key, strchr(v, '=') + 1);
            i++;
        }
        else if (!strcmp(a, "--modes") && v) {
            char buf[256], *tok, *save = NULL;
            memset(modes, 0, sizeof modes);
            snprintf(buf, sizeof buf, "%s", v);
            for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                for (int m = 0; m < T_MODES; m++)
                    if (!strcmp(tok, mode_names[m]))
                        modes[m] = 1;
            modes[T_NONE] = 1; /* the reference */
            i++;
        } else {
            if (t.rank == 0)
                fprintf(err, "mst-bench train: unknown or incomplete option %s\n", a);
            return 2;
        }
    }
    if (!t.out || t.steps < 2 || t.every < 1 || t.allreduce < sizeof(float) || rounds < 1) {
        if (t.rank == 0)
            fprintf(err, "usage: mst-bench train -o FILE [--size BYTES] [--steps S] [--every K] "
                         "[--compute-ms C] [--allreduce BYTES] [--modes none,sync,split,"
                         "snapshot] [--no-fsync] [--host-copy] [--reserve] [--rounds R]\n"
                         "       [--hint KEY=VALUE]...\n");
        return 2;
    }
    t.nparam = (int64_t)(t.size_total / (uint64_t)t.size / NT / 4);
    if (t.nparam < 1)
        t.nparam = 1;
    for (int k = 0; k < NT; k++) {
        t.params[k] = malloc((size_t)t.nparam * 4);
        t.host[k] = t.host_copy ? malloc((size_t)t.nparam * 4) : NULL;
        if (!t.params[k] || (t.host_copy && !t.host[k])) {
            fprintf(err, "rank %d: out of memory\n", t.rank);
            return 1;
        }
        if (t.host_copy) /* a real loop's host buffers are touched once, at start */
            memset(t.host[k], 0, (size_t)t.nparam * 4);
        for (int64_t i = 0; i < t.nparam; i++)
            t.params[k][i] = (float)(i % 977) * 0.5f + (float)k;
    }
    /* the snapshot's memory faulted in before the loop, as a real loop
     * would at start-up: this rank's bytes and room for the header */
    if (t.reserve &&
        mst_snapshot_reserve((uint64_t)NT * (uint64_t)t.nparam * 4 + ((uint64_t)1 << 20)) !=
            MST_OK) {
        fprintf(err, "rank %d: mst_snapshot_reserve failed\n", t.rank);
        return 1;
    }
    t.grad = calloc(t.allreduce / sizeof(float) + 1024, sizeof(float));
    if (!t.grad)
        return 1;
    { /* calibrate: iterations for compute_ms on an idle core: the fastest of
       * 5 timings of at least 0.1 s on this rank, the maximum over ranks (one
       * short timing under load used to give steps of half the length) */
        uint64_t n = 1 << 20;
        double dt, best;
        for (;;) {
            double t0 = now();
            compute(n);
            dt = now() - t0;
            if (dt > 0.1)
                break;
            n *= 2;
        }
        best = dt;
        for (int k = 0; k < 4; k++) {
            double t0 = now();
            compute(n);
            dt = now() - t0;
            if (dt < best)
                best = dt;
        }
        t.iters = (uint64_t)((double)n * t.compute_ms / 1000.0 / best);
        MPI_Allreduce(MPI_IN_PLACE, &t.iters, 1, MPI_UINT64_T, MPI_MAX, comm);
    }
    for (int r = 0; r < rounds && !failed; r++) { /* each round: its own reference */
        double ref = 0;
        t.round = r;
        for (int m = 0; m < T_MODES && !failed; m++) {
            if (!modes[m])
                continue;
            failed |= run_mode(&t, m, out, err, ref);
            if (m == T_NONE)
                ref = t.ref_step;
        }
    }
    if (t.rank == 0)
        remove(t.out);
    for (int k = 0; k < NT; k++) {
        free(t.params[k]);
        free(t.host[k]);
    }
    free(t.grad);
    if (t.hints != MPI_INFO_NULL)
        MPI_Info_free(&t.hints);
    return failed;
}

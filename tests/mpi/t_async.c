/* Split-phase saves (mst_writer_commit_begin / _test / _end), at any number
 * of ranks:
 *   mpirun -np N t_async cases DIR
 * - begin + end (snapshot off and on) writes the bytes mst_writer_commit
 *   writes for the same declarations (whole tensors, small ones, empty ones,
 *   replicas, row boxes, metadata);
 * - snapshot on, every tensor overwritten right after begin: the file holds
 *   the values at begin;
 * - two writers in flight at once on one communicator (begun in one order,
 *   ended in the other);
 * - a writer freed between begin and end: the previous file at the target
 *   unchanged, no temporary file left, no hang;
 * - what begin refuses (a strided box, a streamed tensor, checksums, a set,
 *   a snapshot over the hint mst_snapshot_limit, ranks that disagree on the
 *   snapshot) fails on every rank with the same code and message, nothing
 *   left on disk, end repeating it; a second begin, a commit after begin, a
 *   test or end without begin: MST_ERR_STATE;
 * - mst_writer_commit_test never blocks (each call timed).
 *   mpirun -np N t_async timing DIR
 * - with fsync on: a synchronous save of D bytes (D doubled until it takes
 *   at least 0.3 s, up to 2 GiB), then the same bytes split phase: the caller
 *   sleeps 3x the synchronous time with no mst call, test then says done on
 *   every rank, and end takes less than 0.5x the synchronous time.
 * A third argument "mt" initialises MPI with MPI_THREAD_MULTIPLE (and fails
 * if it is not given): the library's thread then writes with MPI-IO. The
 * test wraps MPI_File_open/write_at/sync/close (PMPI) and counts the calls
 * made on threads other than main's: "mt" requires writes (and syncs) from
 * the library's thread, without "mt" there must be no such call at all; and
 * in both modes no open or close off the main thread. Both modes also check
 * the hint mst_split_io (posix under "mt": no MPI call from the thread, the
 * same bytes; mpiio without "mt": refused on every rank). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "mst.h"
#include "t_util.h"

static int rank, size, last, mt;
static char dir[2048];

/* ---- MPI-IO calls off the main thread (PMPI wrappers) ---------------------- */

static pthread_t main_thread;
static atomic_int off_writes, off_syncs, off_opens; /* opens and closes */

static int off_main(void)
{
    return !pthread_equal(pthread_self(), main_thread);
}

int MPI_File_write_at(MPI_File fh, MPI_Offset offset, const void *buf, int count,
                      MPI_Datatype type, MPI_Status *st)
{
    if (off_main())
        atomic_fetch_add(&off_writes, 1);
    return PMPI_File_write_at(fh, offset, buf, count, type, st);
}

int MPI_File_sync(MPI_File fh)
{
    if (off_main())
        atomic_fetch_add(&off_syncs, 1);
    return PMPI_File_sync(fh);
}

int MPI_File_open(MPI_Comm comm, const char *name, int amode, MPI_Info info, MPI_File *fh)
{
    if (off_main())
        atomic_fetch_add(&off_opens, 1);
    return PMPI_File_open(comm, name, amode, info, fh);
}

int MPI_File_close(MPI_File *fh)
{
    if (off_main())
        atomic_fetch_add(&off_opens, 1);
    return PMPI_File_close(fh);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the declarations of one save ---------------------------------------- */

#define NSMALL 20
typedef struct decls {
    unsigned char *whole, *small[NSMALL], *rep, *rows;
    int64_t nwhole, nsmall[NSMALL], nrep, rows_g[2], rows_s[2], rows_c[2];
} decls;

static void make_decls(decls *d, const char *tag)
{
    char name[64];
    d->nwhole = 1000 + 37 * rank;
    d->whole = malloc((size_t)d->nwhole * 4);
    snprintf(name, sizeof name, "%s.w.%d", tag, rank);
    t_fill(d->whole, 0, (uint64_t)d->nwhole * 4, name);
    for (int k = 0; k < NSMALL; k++) {
        d->nsmall[k] = rank + k + 1;
        d->small[k] = malloc((size_t)d->nsmall[k]);
        snprintf(name, sizeof name, "%s.s.%d.%d", tag, rank, k);
        t_fill(d->small[k], 0, (uint64_t)d->nsmall[k], name);
    }
    d->nrep = 333;
    d->rep = malloc((size_t)d->nrep * 4);
    snprintf(name, sizeof name, "%s.rep", tag);
    t_fill(d->rep, 0, (uint64_t)d->nrep * 4, name);
    d->rows_g[0] = 4 * size;
    d->rows_g[1] = 10;
    d->rows_s[0] = 4 * rank;
    d->rows_s[1] = 0;
    d->rows_c[0] = 4;
    d->rows_c[1] = 10;
    d->rows = malloc(4 * 10 * 4);
    snprintf(name, sizeof name, "%s.rows", tag);
    t_fill(d->rows, (uint64_t)rank * 160, 160, name);
}

static void scribble(decls *d)
{
    memset(d->whole, 0xee, (size_t)d->nwhole * 4);
    for (int k = 0; k < NSMALL; k++)
        memset(d->small[k], 0xee, (size_t)d->nsmall[k]);
    memset(d->rep, 0xee, (size_t)d->nrep * 4);
    memset(d->rows, 0xee, 160);
}

static void free_decls(decls *d)
{
    free(d->whole);
    for (int k = 0; k < NSMALL; k++)
        free(d->small[k]);
    free(d->rep);
    free(d->rows);
}

static void add_decls(mst_writer *w, const decls *d, const char *tag)
{
    char name[64];
    const int64_t zero[1] = {0};
    snprintf(name, sizeof name, "%s.w.%d", tag, rank);
    CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 1, &d->nwhole, d->whole), MST_OK);
    for (int k = 0; k < NSMALL; k++) {
        snprintf(name, sizeof name, "%s.s.%d.%d", tag, rank, k);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_U8, 1, &d->nsmall[k], d->small[k]), MST_OK);
    }
    snprintf(name, sizeof name, "%s.z.%d", tag, rank);
    CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 1, zero, NULL), MST_OK);
    snprintf(name, sizeof name, "%s.rep", tag);
    CHECK_EQ_INT(mst_writer_add_replica(w, name, MST_F32, 1, &d->nrep, d->rep), MST_OK);
    snprintf(name, sizeof name, "%s.rows", tag);
    CHECK_EQ_INT(mst_writer_add_slice(w, name, MST_F32, 2, d->rows_g, d->rows_s, d->rows_c,
                                      d->rows),
                 MST_OK);
    CHECK_EQ_INT(mst_writer_add_metadata(w, "step", tag), MST_OK);
}

static mst_writer *open_writer(const char *target, MPI_Info hints)
{
    mst_writer *w = NULL;
    CHECK_EQ_INT(mst_writer_open(&w, MPI_COMM_WORLD, target, hints), MST_OK);
    return w;
}

/* Rank 0: the two files hold the same bytes. */
static void same_file(const char *a, const char *b)
{
    size_t la = 0, lb = 0;
    unsigned char *x, *y;
    if (rank != 0)
        return;
    x = t_read_file(a, &la);
    y = t_read_file(b, &lb);
    CHECK_MSG(x && y && la == lb && memcmp(x, y, la) == 0, "%s and %s differ (%zu, %zu bytes)",
              a, b, la, lb);
    free(x);
    free(y);
}

/* After a collective step: every rank's message is rank 0's. */
static void same_message(const char *msg)
{
    char mine[1024], root[1024];
    snprintf(mine, sizeof mine, "%s", msg);
    memcpy(root, mine, sizeof root);
    MPI_Bcast(root, (int)sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK_MSG(strcmp(mine, root) == 0, "rank %d says \"%s\", rank 0 \"%s\"", rank, mine, root);
}

static void no_temps(void)
{
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        CHECK_MSG(t_count_temps(dir) == 0, "a temporary file was left in %s", dir);
}

static double max_test_s; /* the longest mst_writer_commit_test */
static double t_begin;    /* timing: the last begin's seconds (max over ranks) */

static int timed_test(mst_writer *w)
{
    int done = -1;
    double t0 = now();
    CHECK_EQ_INT(mst_writer_commit_test(w, &done), MST_OK);
    t0 = now() - t0;
    if (t0 > max_test_s)
        max_test_s = t0;
    CHECK(done == 0 || done == 1);
    return done;
}

/* ---- cases ----------------------------------------------------------------- */

static void case_identical(void)
{
    char ref[4096], got[4096];
    decls d;
    mst_writer *w;
    make_decls(&d, "a");
    snprintf(ref, sizeof ref, "%s/ref.safetensors", dir);
    w = open_writer(ref, MPI_INFO_NULL);
    add_decls(w, &d, "a");
    CHECK_EQ_INT(mst_writer_commit(w), MST_OK);
    mst_writer_free(&w);
    for (int snap = 0; snap < 2; snap++) {
        int done = 0;
        double t0;
        snprintf(got, sizeof got, "%s/split%d.safetensors", dir, snap);
        w = open_writer(got, MPI_INFO_NULL);
        add_decls(w, &d, "a");
        CHECK_EQ_INT(mst_writer_set_snapshot(w, snap), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
        CHECK_EQ_INT(mst_writer_set_snapshot(w, 1), MST_ERR_STATE);
        /* until this rank's part is done (bounded: 60 s) */
        for (t0 = now(); !(done = timed_test(w)) && now() - t0 < 60;)
            usleep(1000);
        CHECK(done);
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_ERR_STATE);
        mst_writer_free(&w);
        same_file(ref, got);
    }
    /* snapshot: overwritten at once, the file holds the values at begin */
    snprintf(got, sizeof got, "%s/snap.safetensors", dir);
    w = open_writer(got, MPI_INFO_NULL);
    add_decls(w, &d, "a");
    CHECK_EQ_INT(mst_writer_set_snapshot(w, 1), MST_OK);
    CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
    scribble(&d);
    CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
    mst_writer_free(&w);
    same_file(ref, got);
    free_decls(&d);
    no_temps();
}

static void case_two_writers(void)
{
    char ra[4096], rb[4096], ga[4096], gb[4096];
    decls a, b;
    mst_writer *wa, *wb;
    make_decls(&a, "model");
    make_decls(&b, "optim");
    snprintf(ra, sizeof ra, "%s/model.ref", dir);
    snprintf(rb, sizeof rb, "%s/optim.ref", dir);
    snprintf(ga, sizeof ga, "%s/model.safetensors", dir);
    snprintf(gb, sizeof gb, "%s/optim.safetensors", dir);
    wa = open_writer(ra, MPI_INFO_NULL);
    add_decls(wa, &a, "model");
    CHECK_EQ_INT(mst_writer_commit(wa), MST_OK);
    mst_writer_free(&wa);
    wb = open_writer(rb, MPI_INFO_NULL);
    add_decls(wb, &b, "optim");
    CHECK_EQ_INT(mst_writer_commit(wb), MST_OK);
    mst_writer_free(&wb);

    wa = open_writer(ga, MPI_INFO_NULL);
    wb = open_writer(gb, MPI_INFO_NULL);
    add_decls(wa, &a, "model");
    add_decls(wb, &b, "optim");
    CHECK_EQ_INT(mst_writer_set_snapshot(wb, 1), MST_OK);
    CHECK_EQ_INT(mst_writer_commit_begin(wa), MST_OK);
    CHECK_EQ_INT(mst_writer_commit_begin(wb), MST_OK);
    scribble(&b);
    CHECK_EQ_INT(mst_writer_commit_end(wb), MST_OK);
    CHECK_EQ_INT(mst_writer_commit_end(wa), MST_OK);
    mst_writer_free(&wa);
    mst_writer_free(&wb);
    same_file(ra, ga);
    same_file(rb, gb);
    free_decls(&a);
    free_decls(&b);
    no_temps();
}

static const char previous[] = "the previous checkpoint, which must survive";

static void put_previous(const char *target)
{
    if (rank == 0)
        CHECK(t_write_file(target, previous, sizeof previous) == 0);
    MPI_Barrier(MPI_COMM_WORLD);
}

static void check_previous(const char *target)
{
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        size_t len = 0;
        unsigned char *got = t_read_file(target, &len);
        CHECK_MSG(got && len == sizeof previous && memcmp(got, previous, len) == 0,
                  "the previous file at %s changed", target);
        free(got);
    }
    no_temps();
}

static void case_free_in_flight(void)
{
    char target[4096], fresh[4096];
    decls d;
    mst_writer *w;
    make_decls(&d, "f");
    snprintf(target, sizeof target, "%s/freed.safetensors", dir);
    snprintf(fresh, sizeof fresh, "%s/never.safetensors", dir);
    for (int snap = 0; snap < 2; snap++) {
        put_previous(target);
        w = open_writer(target, MPI_INFO_NULL);
        add_decls(w, &d, "f");
        CHECK_EQ_INT(mst_writer_set_snapshot(w, snap), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
        mst_writer_free(&w);
        check_previous(target);
    }
    /* nothing before: nothing after */
    w = open_writer(fresh, MPI_INFO_NULL);
    add_decls(w, &d, "f");
    CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
    mst_writer_free(&w);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        CHECK_MSG(!t_file_exists(fresh), "%s appeared", fresh);
    no_temps();
    free_decls(&d);
}

static int fill_zero(void *ctx, uint64_t offset, void *buf, uint64_t len)
{
    (void)ctx;
    (void)offset;
    memset(buf, 0, (size_t)len);
    return 0;
}

/* begin fails with `code` and a message holding `needle` on every rank;
 * end repeats it; nothing changes on disk. */
static void refused(mst_writer *w, const char *target, int code, const char *needle)
{
    int rc = mst_writer_commit_begin(w), done = 0;
    CHECK_MSG(rc == code, "begin: code %d (%s), expected %d: %s", rc, mst_strerror(rc), code,
              mst_writer_error(w));
    same_message(mst_writer_error(w));
    CHECK_MSG(strstr(mst_writer_error(w), needle) != NULL, "message \"%s\" lacks \"%s\"",
              mst_writer_error(w), needle);
    CHECK_EQ_INT(mst_writer_commit_test(w, &done), MST_OK);
    CHECK_EQ_INT(done, 1);
    CHECK_EQ_INT(mst_writer_commit_end(w), code);
    mst_writer_free(&w);
    check_previous(target);
}

static void case_refused(void)
{
    char target[4096], needle[256];
    decls d;
    mst_writer *w;
    MPI_Info hints;
    make_decls(&d, "e");
    snprintf(target, sizeof target, "%s/refused.safetensors", dir);
    put_previous(target);

    { /* a column block on the last rank */
        const int64_t g[2] = {4, 6}, s[2] = {0, 2}, c[2] = {4, 2};
        static float cols[8];
        w = open_writer(target, MPI_INFO_NULL);
        add_decls(w, &d, "e");
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add_slice(w, "cols", MST_F32, 2, g, s, c, cols), MST_OK);
        snprintf(needle, sizeof needle,
                 "tensor \"cols\" on rank %d: box [0:4, 2:4] is strided in the file", last);
        refused(w, target, MST_ERR_INVALID_ARGUMENT, needle);
    }
    { /* a streamed tensor on the last rank */
        const int64_t n[1] = {10};
        w = open_writer(target, MPI_INFO_NULL);
        add_decls(w, &d, "e");
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add_stream(w, "streamed", MST_U8, 1, n, fill_zero, NULL),
                         MST_OK);
        snprintf(needle, sizeof needle,
                 "tensor \"streamed\" on rank %d is streamed; streamed tensors are not "
                 "split-phase",
                 last);
        refused(w, target, MST_ERR_INVALID_ARGUMENT, needle);
    }
    { /* checksums */
        w = open_writer(target, MPI_INFO_NULL);
        add_decls(w, &d, "e");
        CHECK_EQ_INT(mst_writer_set_checksums(w, 1), MST_OK);
        refused(w, target, MST_ERR_INVALID_ARGUMENT, "checksums");
    }
    { /* a multi-file set (into the directory) */
        mst_writer *ws = open_writer(dir, MPI_INFO_NULL);
        add_decls(ws, &d, "e");
        CHECK_EQ_INT(mst_writer_set_max_shard_size(ws, 1000), MST_OK);
        refused(ws, target, MST_ERR_INVALID_ARGUMENT, "a multi-file save");
        MPI_Barrier(MPI_COMM_WORLD);
        if (rank == 0) /* no shard, no index */
            CHECK_EQ_INT(t_count_prefix(dir, "model-") + t_count_prefix(dir, "model.safetensors.index"), 0);
    }
    { /* the snapshot setting differs on the last rank (at 1 rank: agreed) */
        w = open_writer(target, MPI_INFO_NULL);
        add_decls(w, &d, "e");
        CHECK_EQ_INT(mst_writer_set_snapshot(w, size > 1 && rank == last), MST_OK);
        if (size > 1)
            refused(w, target, MST_ERR_INVALID_ARGUMENT,
                    "ranks disagree on mst_writer_set_snapshot");
        else
            mst_writer_free(&w);
    }
    { /* the snapshot over the limit on the last rank only: it has a big tensor */
        const int64_t n[1] = {100000};
        unsigned char *big = calloc(100000, 1);
        MPI_Info_create(&hints);
        MPI_Info_set(hints, "mst_snapshot_limit", "50000");
        w = open_writer(target, hints);
        add_decls(w, &d, "e");
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add(w, "big", MST_U8, 1, n, big), MST_OK);
        CHECK_EQ_INT(mst_writer_set_snapshot(w, 1), MST_OK);
        snprintf(needle, sizeof needle, "rank %d: the snapshot needs ", last);
        refused(w, target, MST_ERR_NO_MEMORY, needle);
        /* the same save without the snapshot: the limit does not apply */
        w = open_writer(target, hints);
        add_decls(w, &d, "e");
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add(w, "big", MST_U8, 1, n, big), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
        mst_writer_free(&w);
        MPI_Info_free(&hints);
        free(big);
        put_previous(target);
    }
    { /* a bad value of the hint mst_snapshot_cache */
        MPI_Info_create(&hints);
        MPI_Info_set(hints, "mst_snapshot_cache", "yes");
        w = open_writer(target, hints);
        MPI_Info_free(&hints);
        add_decls(w, &d, "e");
        refused(w, target, MST_ERR_INVALID_ARGUMENT, "hint mst_snapshot_cache is \"yes\"");
    }
    { /* an invalid declaration on the last rank fails begin as it fails commit */
        const int64_t n[1] = {4};
        w = open_writer(target, MPI_INFO_NULL);
        add_decls(w, &d, "e");
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add(w, "nul", MST_F32, 1, n, NULL), MST_ERR_NULL_DATA);
        snprintf(needle, sizeof needle, "tensor \"nul\" on rank %d: data is NULL", last);
        refused(w, target, MST_ERR_NULL_DATA, needle);
    }
    { /* state: test/end without begin, commit or begin after begin */
        int done = 0;
        w = open_writer(target, MPI_INFO_NULL);
        add_decls(w, &d, "e");
        CHECK_EQ_INT(mst_writer_commit_test(w, &done), MST_ERR_STATE);
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_ERR_STATE);
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_ERR_STATE);
        CHECK_EQ_INT(mst_writer_commit(w), MST_ERR_STATE);
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_ERR_STATE);
        mst_writer_free(&w);
        CHECK_EQ_INT(mst_writer_commit_begin(NULL), MST_ERR_INVALID_ARGUMENT);
        CHECK_EQ_INT(mst_writer_commit_end(NULL), MST_ERR_INVALID_ARGUMENT);
        CHECK_EQ_INT(mst_writer_commit_test(NULL, &done), MST_ERR_INVALID_ARGUMENT);
        CHECK_EQ_INT(mst_writer_set_snapshot(NULL, 1), MST_ERR_INVALID_ARGUMENT);
        no_temps();
    }
    free_decls(&d);
}

/* This process's resident memory in bytes (/proc/self/statm). */
static long long rss_bytes(void)
{
    long long size_pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lld %lld", &size_pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

/* mst_snapshot_reserve: the memory is resident when it returns, a snapshot
 * that fits copies into it (begin adds no resident snapshot memory), 0 gives
 * it back; without it, begin maps and touches a snapshot of its own. The
 * saves take the posix data path whatever the thread level: under
 * MPI_THREAD_MULTIPLE the MPI-IO path's thread starts writing inside begin,
 * and ROMIO's buffers (with valgrind's shadow of them: +28-42 MiB) would be
 * counted with the snapshot's. */
static void case_reserve(void)
{
    const long long mib = 1 << 20;
    const int64_t n = 6 << 20; /* F32: 24 MiB */
    char ref[4096], got[4096], name[64];
    unsigned char *big = malloc((size_t)n * 4);
    long long r0, r1;
    mst_writer *w;
    MPI_Info posix;
    CHECK(big != NULL);
    MPI_Info_create(&posix);
    MPI_Info_set(posix, "mst_split_io", "posix");
    snprintf(name, sizeof name, "reserve.%d", rank);
    t_fill(big, 0, (uint64_t)n * 4, name);
    snprintf(ref, sizeof ref, "%s/reserve_ref.safetensors", dir);
    w = open_writer(ref, MPI_INFO_NULL);
    CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 1, &n, big), MST_OK);
    CHECK_EQ_INT(mst_writer_commit(w), MST_OK);
    mst_writer_free(&w);

    CHECK_EQ_INT(mst_snapshot_reserve(0), MST_OK); /* what earlier cases left */
    r0 = rss_bytes();
    CHECK_EQ_INT(mst_snapshot_reserve((uint64_t)32 << 20), MST_OK);
    r1 = rss_bytes();
    CHECK_MSG(r1 - r0 >= 31 * mib, "rank %d: reserve of 32 MiB: resident +%lld MiB", rank,
              (r1 - r0) / mib);
    CHECK_EQ_INT(mst_snapshot_reserve((uint64_t)8 << 20), MST_OK); /* the larger stays */
    r0 = rss_bytes();
    CHECK_MSG(llabs(r0 - r1) < 2 * mib, "rank %d: a smaller reserve changed resident memory "
              "by %lld MiB", rank, (r0 - r1) / mib);
    CHECK_EQ_INT(mst_snapshot_reserve(UINT64_MAX), MST_ERR_NO_MEMORY);

    for (int reserved = 1; reserved >= 0; reserved--) {
        long long before, grew;
        snprintf(got, sizeof got, "%s/reserve%d.safetensors", dir, reserved);
        if (!reserved) {
            before = rss_bytes();
            CHECK_EQ_INT(mst_snapshot_reserve(0), MST_OK);
            grew = before - rss_bytes();
            CHECK_MSG(grew >= 31 * mib, "rank %d: reserve(0) returned %lld MiB, not the 32 "
                      "MiB mapping", rank, grew / mib);
        }
        w = open_writer(got, posix);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 1, &n, big), MST_OK);
        CHECK_EQ_INT(mst_writer_set_snapshot(w, 1), MST_OK);
        before = rss_bytes();
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
        grew = rss_bytes() - before;
        /* the thread's aligned buffer (8 MiB, posix path) may be touched */
        if (reserved)
            CHECK_MSG(grew < 12 * mib, "rank %d: begin into the reserved memory: resident "
                      "+%lld MiB", rank, grew / mib);
        else
            CHECK_MSG(grew >= 23 * mib, "rank %d: begin without a reserve: resident +%lld "
                      "MiB, not the 24 MiB snapshot", rank, grew / mib);
        memset(big, 0xee, (size_t)n * 4); /* the snapshot holds the bytes at begin */
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
        mst_writer_free(&w);
        t_fill(big, 0, (uint64_t)n * 4, name);
        same_file(ref, got);
    }
    MPI_Info_free(&posix);
    free(big);
    no_temps();
}

/* The hint mst_split_io: posix takes no MPI call off the main thread and
 * writes the same bytes; mpiio without MPI_THREAD_MULTIPLE and a bad value
 * are refused on every rank. */
static void case_split_io_hint(void)
{
    char ref[4096], got[4096], target[4096];
    decls d;
    mst_writer *w;
    MPI_Info hints;
    int before = atomic_load(&off_writes) + atomic_load(&off_syncs);
    make_decls(&d, "h");
    snprintf(ref, sizeof ref, "%s/hint.ref", dir);
    snprintf(got, sizeof got, "%s/hint.safetensors", dir);
    snprintf(target, sizeof target, "%s/hint_refused.safetensors", dir);
    w = open_writer(ref, MPI_INFO_NULL);
    add_decls(w, &d, "h");
    CHECK_EQ_INT(mst_writer_commit(w), MST_OK);
    mst_writer_free(&w);
    MPI_Info_create(&hints);
    MPI_Info_set(hints, "mst_split_io", "posix");
    w = open_writer(got, hints);
    add_decls(w, &d, "h");
    CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
    CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
    mst_writer_free(&w);
    same_file(ref, got);
    CHECK_MSG(atomic_load(&off_writes) + atomic_load(&off_syncs) == before,
              "mst_split_io=posix: MPI-IO calls from the library's thread");
    put_previous(target);
    MPI_Info_set(hints, "mst_split_io", "mpiio");
    w = open_writer(mt ? got : target, hints);
    add_decls(w, &d, "h");
    if (mt) { /* asked for and allowed */
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
        mst_writer_free(&w);
        same_file(ref, got);
        CHECK_MSG(atomic_load(&off_writes) > before,
                  "mst_split_io=mpiio: no MPI_File_write_at from the library's thread");
    } else {
        char needle[160];
        snprintf(needle, sizeof needle,
                 "rank 0: hint mst_split_io=mpiio needs MPI initialised with "
                 "MPI_THREAD_MULTIPLE (MPI_Query_thread gives MPI_THREAD_SINGLE)");
        refused(w, target, MST_ERR_INVALID_ARGUMENT, needle);
    }
    MPI_Info_set(hints, "mst_split_io", "threads");
    w = open_writer(target, hints);
    add_decls(w, &d, "h");
    refused(w, target, MST_ERR_INVALID_ARGUMENT,
            "hint mst_split_io is \"threads\"; expected auto, mpiio or posix");
    MPI_Info_free(&hints);
    free_decls(&d);
    no_temps();
}

/* The hint mst_split_direct on the posix path: "1" (the default) writes the
 * pages of a rank's bytes with O_DIRECT, so they are not left in the page
 * cache (mincore, before anything reads the file); "0" writes through the
 * page cache; both the same bytes as the commit. A bad value is refused on
 * every rank. Where the directory refuses O_DIRECT (tmpfs), the default
 * falls back to buffered writes and only the bytes are checked. */
static void case_direct_hint(void)
{
    char ref[4096], got[4096], target[4096];
    int64_t n = (int64_t)4 << 20;
    unsigned char *buf = malloc((size_t)n);
    int can_direct = 0;
    MPI_Info hints;
    mst_writer *w;
    CHECK(buf != NULL);
    if (!buf)
        return;
    t_fill(buf, 0, (uint64_t)n, "direct");
    snprintf(ref, sizeof ref, "%s/direct.ref", dir);
    snprintf(target, sizeof target, "%s/direct_refused.safetensors", dir);
    if (rank == 0) {
        char probe[4096];
        int fd;
        snprintf(probe, sizeof probe, "%s/direct.probe", dir);
        fd = open(probe, O_WRONLY | O_CREAT | O_DIRECT, 0600);
        can_direct = fd >= 0;
        if (fd >= 0)
            close(fd);
        unlink(probe);
    }
    w = open_writer(ref, MPI_INFO_NULL);
    {
        char name[32];
        snprintf(name, sizeof name, "d.%d", rank);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_U8, 1, &n, buf), MST_OK);
    }
    CHECK_EQ_INT(mst_writer_commit(w), MST_OK);
    mst_writer_free(&w);
    MPI_Info_create(&hints);
    MPI_Info_set(hints, "mst_split_io", "posix");
    for (int direct = 0; direct < 2; direct++) {
        char name[32];
        size_t pages = 0, resident = 0;
        if (direct) /* the default */
            MPI_Info_delete(hints, "mst_split_direct");
        else
            MPI_Info_set(hints, "mst_split_direct", "0");
        snprintf(got, sizeof got, "%s/direct%d.safetensors", dir, direct);
        w = open_writer(got, hints);
        snprintf(name, sizeof name, "d.%d", rank);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_U8, 1, &n, buf), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
        mst_writer_free(&w);
        if (rank == 0) {
            int fd = open(got, O_RDONLY);
            struct stat st;
            void *m = MAP_FAILED;
            CHECK(fd >= 0 && fstat(fd, &st) == 0);
            if (fd >= 0 && st.st_size > 0)
                m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
            if (m != MAP_FAILED) {
                long pg = sysconf(_SC_PAGESIZE);
                unsigned char *vec;
                pages = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg;
                vec = malloc(pages);
                CHECK(vec && mincore(m, (size_t)st.st_size, vec) == 0);
                for (size_t i = 0; vec && i < pages; i++)
                    resident += vec[i] & 1;
                free(vec);
                munmap(m, (size_t)st.st_size);
            }
            if (fd >= 0)
                close(fd);
            if (direct && can_direct)
                CHECK_MSG(resident * 4 < pages, "mst_split_direct=1: %zu of %zu pages of the "
                          "file in the page cache after end", resident, pages);
            if (!direct)
                CHECK_MSG(resident * 4 > 3 * pages, "mst_split_direct=0: only %zu of %zu "
                          "pages of the file in the page cache after end", resident, pages);
            printf("t_async direct: mst_split_direct=%d: %zu of %zu pages in the page cache "
                   "after end (O_DIRECT %s here)\n",
                   direct, resident, pages, can_direct ? "accepted" : "refused");
        }
        same_file(ref, got);
    }
    put_previous(target);
    MPI_Info_set(hints, "mst_split_direct", "yes");
    w = open_writer(target, hints);
    {
        char name[32];
        snprintf(name, sizeof name, "d.%d", rank);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_U8, 1, &n, buf), MST_OK);
    }
    refused(w, target, MST_ERR_INVALID_ARGUMENT,
            "hint mst_split_direct is \"yes\"; expected 0 or 1");
    MPI_Info_free(&hints);
    free(buf);
    no_temps();
}

/* ---- timing ----------------------------------------------------------------- */

/* One save of `bytes` per rank (fsync on) to target; split or not. Returns
 * the seconds of the synchronous commit, or of end after `sleep_s`. */
static double timed_save(const char *target, unsigned char *buf, int64_t bytes, int split,
                         double sleep_s, int *done_before_end)
{
    mst_writer *w = open_writer(target, MPI_INFO_NULL);
    char name[32];
    double t0, t;
    snprintf(name, sizeof name, "t.%d", rank);
    CHECK_EQ_INT(mst_writer_add(w, name, MST_U8, 1, &bytes, buf), MST_OK);
    MPI_Barrier(MPI_COMM_WORLD);
    if (!split) {
        t0 = now();
        CHECK_EQ_INT(mst_writer_commit(w), MST_OK);
        t = now() - t0;
    } else {
        t0 = now();
        CHECK_EQ_INT(mst_writer_commit_begin(w), MST_OK);
        t_begin = now() - t0;
        usleep((useconds_t)(sleep_s * 1e6)); /* no mst call */
        *done_before_end = timed_test(w);
        t0 = now();
        CHECK_EQ_INT(mst_writer_commit_end(w), MST_OK);
        t = now() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &t_begin, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    mst_writer_free(&w);
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}

static void case_timing(void)
{
    char a[4096], b[4096];
    int64_t per_rank = (int64_t)32 << 20, cap = ((int64_t)2 << 30) / size;
    unsigned char *buf = NULL;
    double sync_s = 0, end_s;
    int done = 0, all_done = 0;
    snprintf(a, sizeof a, "%s/sync.safetensors", dir);
    snprintf(b, sizeof b, "%s/split.safetensors", dir);
    for (;;) {
        free(buf);
        buf = malloc((size_t)per_rank);
        if (!buf) {
            CHECK_MSG(0, "out of memory for %lld bytes", (long long)per_rank);
            return;
        }
        t_fill(buf, 0, (uint64_t)per_rank, "timing");
        sync_s = timed_save(a, buf, per_rank, 0, 0, NULL);
        if (sync_s >= 0.3 || per_rank * 2 > cap)
            break;
        per_rank *= 2;
    }
    end_s = timed_save(b, buf, per_rank, 1, 3 * sync_s + 0.5, &done);
    same_file(a, b);
    MPI_Allreduce(&done, &all_done, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rank == 0)
        printf("t_async timing: %d ranks, %lld MiB per rank: synchronous save %.3f s, end "
               "after the sleep %.4f s (%.3fx), begin %.4f s, (begin + end) / sync %.3f, test "
               "says done on every rank: %d\n",
               size, (long long)(per_rank >> 20), sync_s, end_s, end_s / sync_s, t_begin,
               (t_begin + end_s) / sync_s, all_done);
    CHECK_MSG(sync_s >= 0.3, "the synchronous save of 2 GiB took only %.3f s", sync_s);
    CHECK_MSG(all_done == 1, "the writes were not done after sleeping %.2f s",
              3 * sync_s + 0.5);
    CHECK_MSG(end_s < 0.5 * sync_s, "end took %.3f s, the synchronous save %.3f s", end_s,
              sync_s);
    free(buf);
    if (rank == 0) {
        unlink(a);
        unlink(b);
    }
}

int main(int argc, char **argv)
{
    int total = 0, provided = MPI_THREAD_SINGLE;
    main_thread = pthread_self();
    mt = argc == 4 && !strcmp(argv[3], "mt");
    if (mt)
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    else
        MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    t_rank = rank;
    last = size - 1;
    if (argc < 3 || argc > 4 || (argc == 4 && !mt) ||
        (strcmp(argv[1], "cases") != 0 && strcmp(argv[1], "timing") != 0)) {
        if (rank == 0)
            fprintf(stderr, "usage: t_async cases|timing DIR [mt]\n");
        MPI_Finalize();
        return 2;
    }
    if (mt && provided != MPI_THREAD_MULTIPLE) {
        fprintf(stderr, "rank %d: MPI_Init_thread gave level %d, not MPI_THREAD_MULTIPLE\n",
                rank, provided);
        MPI_Finalize();
        return 1;
    }
    snprintf(dir, sizeof dir, "%s", argv[2]);
    if (!strcmp(argv[1], "cases")) {
        case_identical();
        case_two_writers();
        case_free_in_flight();
        case_refused();
        case_split_io_hint();
        case_direct_hint();
        case_reserve();
        MPI_Allreduce(MPI_IN_PLACE, &max_test_s, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        CHECK_MSG(max_test_s < 0.25, "a call of mst_writer_commit_test took %.4f s",
                  max_test_s);
    } else {
        case_timing();
    }
    /* the data path taken: MPI-IO from the library's thread under "mt" (every
     * rank writes something), no MPI call from it otherwise */
    {
        int w = atomic_load(&off_writes), sy = atomic_load(&off_syncs),
            op = atomic_load(&off_opens);
        if (mt)
            CHECK_MSG(w > 0 && sy > 0, "rank %d: MPI_File_write_at %d, MPI_File_sync %d calls "
                      "from the library's thread under MPI_THREAD_MULTIPLE", rank, w, sy);
        else
            CHECK_MSG(w == 0 && sy == 0, "rank %d: %d MPI_File_write_at, %d MPI_File_sync "
                      "calls off the main thread without MPI_THREAD_MULTIPLE", rank, w, sy);
        CHECK_MSG(op == 0, "rank %d: %d MPI_File_open/close calls off the main thread", rank,
                  op);
        MPI_Allreduce(&t_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        if (rank == 0 && total == 0)
            printf("t_async %s%s: passed on %d ranks (longest test call %.6f s; MPI-IO calls "
                   "from the library's thread on rank 0: %d writes, %d syncs)\n",
                   argv[1], mt ? " mt" : "", size, max_test_s, w, sy);
    }
    MPI_Finalize();
    return total ? 1 : 0;
}

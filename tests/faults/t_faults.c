/* Faults and crashes during a save (driven by tests/faults/fault_sweep.py and
 * tests/faults/crash_trials.py).
 *
 *   mpirun -np N t_faults one DIR     with tests/faults/fault_shim.c preloaded: one save
 *        over DIR/ckpt.safetensors under the configured fault, then the checks:
 *        the same code and message on every rank, the message naming the
 *        operation and the rank the fault hit, no temporary file left, the
 *        previous file (DIR/prev.bin) byte-identical at the target, no hang
 *        (alarm). A save that succeeds despite the fault (a short write MPI-IO
 *        retried, a close error after a good sync) must have written exactly
 *        DIR/new.bin; a failed fsync must never be a success.
 *   mpirun -np N t_faults agree DIR   errors one rank finds before the exchange
 *        (bad dtype, NULL data, an allocation failure made by the shim) reach
 *        every rank with the same code and message; abandoning writers is quiet.
 *   mpirun -np N t_faults save PATH VARIANT KIB [nofsync]   one save (crash and
 *        concurrency tests; also makes prev.bin and new.bin); prints "saved".
 */
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <mpi.h>

#include "mst.h"
#include "t_util.h"

#define MST_MSG_MAX_T 1024 /* room for any message of the library */

static int rank, size;
enum { OP_OPEN, OP_WRITE, OP_SYNC, OP_RENAME, OP_CLOSE, OP_N };
static const char *const op_names[OP_N] = {"open", "write", "sync", "rename", "close"};
/* words a message about a failed operation of each class must contain */
static const char *const op_words[OP_N][3] = {
    {"open", "creat", NULL}, {"writ", NULL, NULL}, {"sync", NULL, NULL},
    {"rename", NULL, NULL},  {"clos", NULL, NULL}};

/* T_FAULTS_SPLIT=1 (or "snap": with the snapshot): every save is split phase
 * (mst_writer_commit_begin, test until done, end), without the strided box. */
static const char *split_mode(void)
{
    const char *s = getenv("T_FAULTS_SPLIT");
    return s && *s && strcmp(s, "0") != 0 ? s : NULL;
}

static void (*counts_of)(long *);
static int (*fired_of)(void);

typedef struct content {
    unsigned char *a, *b, *big, *col, *run;
    int64_t na, nb, nbig;
} content;

static void fill(unsigned char *buf, uint64_t len, const char *name, int variant)
{
    char seed[96];
    snprintf(seed, sizeof seed, "%s/%d", name, variant);
    t_fill(buf, 0, len, seed);
}

/* Rank r's share of variant v: two whole tensors, an optional big one, a
 * column block of a tensor split over all ranks (strided: redistributed in
 * chunks of 64 bytes, see save), and three small I64 tensors r<r>.c0..c2 that
 * are neighbours in the file (one batched write of the rank). */
static int add_content(mst_writer *w, content *c, int variant, long kib)
{
    char n[64];
    int64_t sa[1], sb[2], sbig[1];
    int64_t gshape[2] = {8, 4 * (int64_t)size}, start[2] = {0, 4 * (int64_t)rank},
            count[2] = {8, 4};
    int rc = 0;
    memset(c, 0, sizeof *c);
    c->na = 64 + 16 * variant + rank;
    c->nb = 1000 * (rank + 1);
    c->nbig = kib * 1024;
    c->a = malloc((size_t)c->na * 4);
    c->b = malloc((size_t)c->nb);
    c->big = malloc(c->nbig ? (size_t)c->nbig : 1);
    c->col = malloc(8 * 4 * 2);
    c->run = malloc(3 * 8 * 8);
    snprintf(n, sizeof n, "r%d.a", rank);
    fill(c->a, (uint64_t)c->na * 4, n, variant);
    sa[0] = c->na;
    rc |= mst_writer_add(w, n, MST_F32, 1, sa, c->a);
    snprintf(n, sizeof n, "r%d.b", rank);
    fill(c->b, (uint64_t)c->nb, n, variant);
    sb[0] = 10;
    sb[1] = c->nb / 10;
    rc |= mst_writer_add(w, n, MST_U8, 2, sb, c->b);
    if (kib > 0) {
        snprintf(n, sizeof n, "r%d.big", rank);
        fill(c->big, (uint64_t)c->nbig, n, variant);
        sbig[0] = c->nbig / 2;
        rc |= mst_writer_add(w, n, MST_BF16, 1, sbig, c->big);
    }
    for (int i = 0; i < 3; i++) {
        int64_t sc[1] = {i + 1};
        snprintf(n, sizeof n, "r%d.c%d", rank, i);
        fill(c->run + 64 * i, 8 * (uint64_t)sc[0], n, variant);
        rc |= mst_writer_add(w, n, MST_I64, 1, sc, c->run + 64 * i);
    }
    fill(c->col, 64, "col", variant * 100 + rank);
    if (!split_mode()) /* a strided box: refused by split-phase saves */
        rc |= mst_writer_add_slice(w, "col", MST_F16, 2, gshape, start, count, c->col);
    snprintf(n, sizeof n, "%d", variant);
    rc |= mst_writer_add_metadata(w, "variant", n);
    return rc;
}

static void free_content(content *c)
{
    free(c->a);
    free(c->b);
    free(c->big);
    free(c->col);
    free(c->run);
}

/* One save; the same code everywhere is the library's promise, checked by the caller. */
static int save(const char *path, int variant, long kib, int durable, char *msg, size_t cap)
{
    mst_writer *w = NULL;
    content c;
    MPI_Info hints;
    int rc;
    /* redistribution buffers of 2 x 64 bytes: the 256-byte column-split
     * tensor (at 4 ranks) is cut into 64-byte chunks, one per rank, so every
     * rank makes a write of redistributed bytes that the sweep can fail */
    MPI_Info_create(&hints);
    MPI_Info_set(hints, "mst_redist_buffer", "128");
    rc = mst_writer_open(&w, MPI_COMM_WORLD, path, hints);
    MPI_Info_free(&hints);
    if (rc == MST_OK) {
        if (!durable)
            mst_writer_set_fsync(w, 0);
        add_content(w, &c, variant, kib);
        if (rank == 0 && getenv("T_FAULTS_ANNOUNCE")) {
            printf("committing\n"); /* the crash trials time their kill from here */
            fflush(stdout);
        }
        if (split_mode()) {
            int done = 0;
            if (!strcmp(split_mode(), "snap"))
                mst_writer_set_snapshot(w, 1);
            rc = mst_writer_commit_begin(w);
            if (rc == MST_OK && !strcmp(split_mode(), "snap"))
                memset(c.a, 0xee, (size_t)c.na * 4); /* the snapshot holds the bytes */
            /* the caller computes; test until this rank's part is done */
            for (int i = 0; i < 10000 && rc == MST_OK && !done; i++) {
                usleep(1000);
                mst_writer_commit_test(w, &done);
            }
            rc = mst_writer_commit_end(w);
        } else {
            rc = mst_writer_commit(w);
        }
        if (rank == 0 && getenv("T_FAULTS_ANNOUNCE")) {
            printf("committed\n");
            fflush(stdout);
        }
        free_content(&c);
    }
    snprintf(msg, cap, "%s", w ? mst_writer_error(w) : "");
    mst_writer_free(&w);
    return rc;
}

static int same_bytes(const char *path, const unsigned char *want, size_t n)
{
    size_t len = 0;
    unsigned char *got = t_read_file(path, &len);
    int ok = got && len == n && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

static int has_word(const char *msg, int op)
{
    for (int i = 0; i < 3 && op_words[op][i]; i++)
        if (strcasestr(msg, op_words[op][i]))
            return 1;
    return 0;
}

static void on_alarm(int sig)
{
    static const char text[] = "t_faults: a save hung (alarm)\n";
    (void)sig;
    (void)!write(2, text, sizeof text - 1);
    _exit(3);
}

/* One save of variant 1 over DIR/ckpt.safetensors (which holds DIR/prev.bin),
 * under whatever fault the shim was configured with (MST_FAULT_* variables);
 * then the checks, on rank 0, against DIR/prev.bin and DIR/new.bin.
 * T_FAULT_RANK and T_FAULT_OP (the shim's names) tell what to expect; without
 * them the run only counts calls and prints "counts R open write sync rename close". */
static int one(const char *dir)
{
    char target[4096], path[4096], msg[MST_MSG_MAX_T], *all_msgs;
    unsigned char *prev = NULL, *next = NULL;
    size_t nprev = 0, nnext = 0;
    long my_counts[OP_N], *all_counts;
    int rc, fired, any_fired = 0, code0, codes_differ, bad = 0, fault_rank = -1, op = -1;
    const char *s;

    counts_of = (void (*)(long *))dlsym(RTLD_DEFAULT, "mst_fault_counts");
    fired_of = (int (*)(void))dlsym(RTLD_DEFAULT, "mst_fault_fired");
    if (!counts_of || !fired_of) {
        fprintf(stderr, "t_faults one needs LD_PRELOAD=fault_shim.so and MST_FAULT_DIR\n");
        return 1;
    }
    if ((s = getenv("MST_FAULT_RANK")) && *s)
        fault_rank = atoi(s);
    if ((s = getenv("MST_FAULT_OP")) && *s)
        for (int i = 0; i < OP_N; i++)
            if (!strcmp(s, op_names[i]))
                op = i;
    signal(SIGALRM, on_alarm);
    snprintf(target, sizeof target, "%s/ckpt.safetensors", dir);
    all_counts = calloc((size_t)size * OP_N, sizeof *all_counts);
    all_msgs = malloc((size_t)size * sizeof msg);

    alarm(15);
    rc = save(target, 1, 0, 1, msg, sizeof msg);
    alarm(0);
    counts_of(my_counts);
    fired = fired_of();

    MPI_Allgather(my_counts, OP_N, MPI_LONG, all_counts, OP_N, MPI_LONG, MPI_COMM_WORLD);
    MPI_Allreduce(&fired, &any_fired, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    code0 = rc;
    MPI_Bcast(&code0, 1, MPI_INT, 0, MPI_COMM_WORLD);
    codes_differ = code0 != rc;
    MPI_Allreduce(MPI_IN_PLACE, &codes_differ, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Gather(msg, (int)sizeof msg, MPI_CHAR, all_msgs, (int)sizeof msg, MPI_CHAR, 0,
               MPI_COMM_WORLD);
    if (rank == 0 && op < 0) {
        for (int r = 0; r < size; r++)
            printf("counts %d %ld %ld %ld %ld %ld\n", r, all_counts[r * OP_N],
                   all_counts[r * OP_N + 1], all_counts[r * OP_N + 2], all_counts[r * OP_N + 3],
                   all_counts[r * OP_N + 4]);
        if (rc != MST_OK)
            fprintf(stderr, "the counting save failed: %s\n", msg);
        bad = rc != MST_OK;
    } else if (rank == 0) {
        int temps = t_count_temps(dir);
        char needle[32];
        snprintf(path, sizeof path, "%s/prev.bin", dir);
        prev = t_read_file(path, &nprev);
        snprintf(path, sizeof path, "%s/new.bin", dir);
        next = t_read_file(path, &nnext);
        snprintf(needle, sizeof needle, "rank %d", fault_rank);
#define FAIL_IF(cond, ...)                                                                  \
    do {                                                                                    \
        if (cond) {                                                                         \
            printf("BAD: ");                                                                \
            printf(__VA_ARGS__);                                                            \
            printf("\n");                                                                   \
            bad = 1;                                                                        \
        }                                                                                   \
    } while (0)
        FAIL_IF(!prev || !next, "cannot read prev.bin / new.bin");
        FAIL_IF(!any_fired, "the fault was never reached (call counts changed?)");
        FAIL_IF(codes_differ, "ranks returned different codes");
        for (int k = 1; k < size; k++)
            FAIL_IF(strcmp(all_msgs, all_msgs + (size_t)k * sizeof msg) != 0,
                    "rank %d's message differs: %s", k, all_msgs + (size_t)k * sizeof msg);
        FAIL_IF(temps != 0, "%d temporary files left", temps);
        if (rc != MST_OK) {
            /* A collective write's pwritev runs on an aggregating rank for
             * others: the loss is found (by reading back) on the rank whose
             * bytes were lost, and the message says so. */
            FAIL_IF(!strstr(msg, needle) &&
                        !(op == OP_WRITE && strstr(msg, "collective write")),
                    "the message does not name %s", needle);
            FAIL_IF(!has_word(msg, op), "the message does not name the %s operation",
                    op_names[op]);
            /* a batched write names its first and last tensor and the count */
            FAIL_IF(strstr(msg, "tensors \"") &&
                        !(strstr(msg, " to \"") && strstr(msg, " tensors)")),
                    "a batched write's message does not name its tensors");
            if (strstr(msg, "in place"))
                /* only the directory's fsync after the rename may say this */
                FAIL_IF(op != OP_SYNC || !next || !same_bytes(target, next, nnext),
                        "\"in place\" but the target is not the new file");
            else
                FAIL_IF(!prev || !same_bytes(target, prev, nprev),
                        "the previous file at the target changed");
        } else {
            FAIL_IF(op == OP_SYNC, "a failed fsync was reported as success");
            FAIL_IF(!next || !same_bytes(target, next, nnext),
                    "success, but the target is not exactly the new file");
        }
        printf("%s rc %d: %s\n", bad ? "BAD " : "ok  ", rc, msg);
    }
    free(prev);
    free(next);
    free(all_counts);
    free(all_msgs);
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return bad || t_failures;
}

/* Errors one rank finds before the exchange reach every rank: the same code
 * and message, naming that rank; nothing on disk. */
static int agree_case(const char *dir, const char *name, int bad_rank, int expect,
                      void (*spoil)(mst_writer *w))
{
    char target[4096], msg[MST_MSG_MAX_T], msg0[MST_MSG_MAX_T], needle[32];
    mst_writer *w = NULL;
    content c;
    int rc, lo, hi, before = t_failures;
    snprintf(target, sizeof target, "%s/%s.safetensors", dir, name);
    CHECK_EQ_INT(mst_writer_open(&w, MPI_COMM_WORLD, target, MPI_INFO_NULL), MST_OK);
    add_content(w, &c, 0, 0);
    if (rank == bad_rank)
        spoil(w);
    alarm(15);
    rc = mst_writer_commit(w);
    alarm(0);
    snprintf(msg, sizeof msg, "%s", mst_writer_error(w));
    mst_writer_free(&w);
    free_content(&c);
    MPI_Allreduce(&rc, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&rc, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    CHECK_MSG(lo == expect && hi == expect, "%s: codes %d..%d, expected %d (%s)", name, lo, hi,
              expect, msg);
    memcpy(msg0, msg, sizeof msg);
    MPI_Bcast(msg0, (int)sizeof msg0, MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK_MSG(strcmp(msg, msg0) == 0, "%s: message differs from rank 0's: %s", name, msg);
    snprintf(needle, sizeof needle, "rank %d", bad_rank);
    CHECK_MSG(strstr(msg, needle) != NULL, "%s: message does not name %s: %s", name, needle, msg);
    if (rank == 0) {
        CHECK_MSG(!t_file_exists(target), "%s: a file appeared at the target", name);
        CHECK_MSG(t_count_temps(dir) == 0, "%s: temporary files left", name);
        if (t_failures == before)
            printf("ok   %s: every rank returned %d: %s\n", name, rc, msg);
    }
    return t_failures != before;
}

static void spoil_dtype(mst_writer *w)
{
    static const int64_t shape[1] = {2};
    static const float v[2] = {1, 2};
    mst_writer_add(w, "bad_dtype", (mst_dtype)99, 1, shape, v);
}

static void spoil_null(mst_writer *w)
{
    static const int64_t shape[1] = {2};
    mst_writer_add(w, "null_data", MST_F32, 1, shape, NULL);
}

/* The declaration's copy of shape and name is one malloc of
 * ndim * 8 + strlen(name) + 1 bytes: fail exactly that size, once. */
static void spoil_malloc(mst_writer *w)
{
    static const int64_t shape[1] = {2};
    static const float v[2] = {1, 2};
    char name[778];
    void (*fail_size)(size_t) = (void (*)(size_t))dlsym(RTLD_DEFAULT, "mst_fault_malloc");
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    if (!fail_size) {
        fprintf(stderr, "t_faults agree needs LD_PRELOAD=fault_shim.so\n");
        t_failures++;
        return;
    }
    fail_size(8 + strlen(name) + 1);
    mst_writer_add(w, name, MST_F32, 1, shape, v);
    fail_size(0);
}

static int agree(const char *dir)
{
    int bad = 0;
    mst_writer *w = NULL;
    char target[4096];
    signal(SIGALRM, on_alarm);
    bad |= agree_case(dir, "dtype", size - 1, MST_ERR_UNKNOWN_DTYPE, spoil_dtype);
    bad |= agree_case(dir, "null", size > 1 ? 1 : 0, MST_ERR_NULL_DATA, spoil_null);
    {
        /* Under ASan its runtime comes first and owns malloc: the shim cannot
         * fail allocations there, and the case is skipped (said, not hidden). */
        void (*fail_size)(size_t) = (void (*)(size_t))dlsym(RTLD_DEFAULT, "mst_fault_malloc");
        int can = 0, all_can = 0;
        if (fail_size) {
            void *p;
            fail_size(12345);
            p = malloc(12345);
            fail_size(0);
            can = p == NULL;
            free(p);
        }
        MPI_Allreduce(&can, &all_can, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (all_can)
            bad |= agree_case(dir, "nomem", size > 2 ? 2 : 0, MST_ERR_NO_MEMORY, spoil_malloc);
        else if (rank == 0)
            printf("skipped nomem: allocations cannot be failed here (sanitizer owns malloc)\n");
    }
    /* every rank abandons its writer: nothing on disk, nothing hangs */
    snprintf(target, sizeof target, "%s/abandoned.safetensors", dir);
    CHECK_EQ_INT(mst_writer_open(&w, MPI_COMM_WORLD, target, MPI_INFO_NULL), MST_OK);
    mst_writer_free(&w);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        CHECK(!t_file_exists(target));
        CHECK(t_count_temps(dir) == 0);
    }
    return bad || t_failures;
}

int main(int argc, char **argv)
{
    int ret = 2, provided = 0;
    /* T_FAULTS_MT=1: MPI_THREAD_MULTIPLE (split phase then writes with MPI-IO) */
    if (getenv("T_FAULTS_MT") && !strcmp(getenv("T_FAULTS_MT"), "1"))
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    else
        MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    t_rank = rank;
    if (argc >= 3 && !strcmp(argv[1], "one")) {
        ret = one(argv[2]);
    } else if (argc >= 3 && !strcmp(argv[1], "agree")) {
        ret = agree(argv[2]);
    } else if (argc >= 5 && !strcmp(argv[1], "save")) {
        char msg[MST_MSG_MAX_T];
        int rc = save(argv[2], atoi(argv[3]), atol(argv[4]), !(argc > 5 && !strcmp(argv[5], "nofsync")),
                      msg, sizeof msg);
        if (rank == 0)
            printf(rc == MST_OK ? "saved\n" : "failed %d: %s\n", rc, msg);
        ret = rc != MST_OK;
    } else {
        if (rank == 0)
            fprintf(stderr, "usage: t_faults one DIR | save PATH VARIANT KIB [nofsync]\n");
    }
    {
        int any = 0;
        MPI_Allreduce(&ret, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        ret = any;
    }
    MPI_Finalize();
    return ret;
}

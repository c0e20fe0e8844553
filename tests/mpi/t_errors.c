/* Every error class of a save, on every rank: the same code and the same
 * message everywhere, the message naming the tensor or key and the rank(s),
 * nothing at the target, no temporary file left, a previous file untouched.
 *
 *   mpirun -np N t_errors cases DIR       all cases, one save each, in DIR
 *   mpirun -np N t_errors fulldisk DIR    a real full disk: DIR is a small tmpfs
 *
 * MST_TEST_RO_DIR, when set, names a directory no one can write (a read-only
 * mount, prepared by tests/common/with_dirs.sh). */
#define _DEFAULT_SOURCE /* lstat, mknod, symlink, readlink in strict C11 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <mpi.h>

#include "mst.h"
#include "t_util.h"

#define MST_MSG_MAX_T 1024 /* room for any message of the library */

static int rank, size, last;
static const char *base_dir;
static int cases_run;

typedef void (*adder)(mst_writer *w);

/* Every rank also declares a tensor of its own, so the failing declaration
 * sits among valid ones. */
static void add_own(mst_writer *w)
{
    static float v[4] = {1, 2, 3, 4};
    static const int64_t shape[1] = {4};
    char name[32];
    snprintf(name, sizeof name, "own.%d", rank);
    CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 1, shape, v), MST_OK);
}

static const char previous[] = "the previous checkpoint, which must survive";

/* The hints of the next case's open, on this rank (MPI_INFO_NULL: none). */
static MPI_Info case_hints = MPI_INFO_NULL;

/* Runs one failing save and checks everything the library promises. */
static void expect_failure(const char *name, const char *target, int with_previous,
                           int fail_at_open, int code, adder add, const char *needle1,
                           const char *needle2)
{
    mst_writer *w = NULL;
    int rc;
    char msg[MST_MSG_MAX_T], msg0[MST_MSG_MAX_T];
    cases_run++;
    if (rank == 0 && with_previous)
        CHECK(t_write_file(target, previous, sizeof previous) == 0);
    MPI_Barrier(MPI_COMM_WORLD);

    rc = mst_writer_open(&w, MPI_COMM_WORLD, target, case_hints);
    if (!fail_at_open) {
        CHECK_MSG(rc == MST_OK, "%s: open: %s", name, w ? mst_writer_error(w) : "");
        add_own(w);
        if (add)
            add(w);
        rc = mst_writer_commit(w);
    } else if (add) {
        add(w);
    }
    CHECK_MSG(rc == code, "%s: code %d (%s), expected %d (%s): %s", name, rc, mst_strerror(rc),
              code, mst_strerror(code), w ? mst_writer_error(w) : "");
    snprintf(msg, sizeof msg, "%s", w ? mst_writer_error(w) : "");
    /* the same message on every rank */
    memcpy(msg0, msg, sizeof msg);
    MPI_Bcast(msg0, (int)sizeof msg0, MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK_MSG(strcmp(msg, msg0) == 0, "%s: rank %d says \"%s\", rank 0 says \"%s\"", name, rank,
              msg, msg0);
    CHECK_MSG(!needle1 || strstr(msg, needle1), "%s: message \"%s\" lacks \"%s\"", name, msg,
              needle1);
    CHECK_MSG(!needle2 || strstr(msg, needle2), "%s: message \"%s\" lacks \"%s\"", name, msg,
              needle2);
    if (rank == 0 && t_failures == 0 && getenv("T_ERRORS_VERBOSE"))
        printf("%-24s %-28s %s\n", name, mst_strerror(rc), msg);
    mst_writer_free(&w);
    MPI_Barrier(MPI_COMM_WORLD);

    if (rank == 0) {
        const char *slash = strrchr(target, '/');
        char dir[4096], prefix[4096];
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - target), target);
        snprintf(prefix, sizeof prefix, "%s.tmp-mst.", slash + 1);
        if (with_previous) {
            size_t len = 0;
            unsigned char *got = t_read_file(target, &len);
            CHECK_MSG(got && len == sizeof previous && memcmp(got, previous, len) == 0,
                      "%s: the previous file at the target changed", name);
            free(got);
        } else {
            struct stat st;
            CHECK_MSG(stat(target, &st) != 0 || !S_ISREG(st.st_mode),
                      "%s: a file appeared at the target", name);
        }
        CHECK_MSG(t_count_prefix(dir, prefix) <= 0, "%s: a temporary file was left in %s", name,
                  dir);
    }
}

/* A fresh directory per case. */
static const char *case_path(const char *name, const char *file)
{
    static char path[8192];
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", base_dir, name);
    if (rank == 0)
        mkdir(dir, 0755);
    MPI_Barrier(MPI_COMM_WORLD);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return path;
}

static char needle[1][256];

/* ---- the declarations of each case ------------------------------------ */

static const float four[4] = {0};
static const int64_t shape4[1] = {4};

static void add_dup_within(mst_writer *w)
{
    if (rank == 0) {
        CHECK_EQ_INT(mst_writer_add(w, "x", MST_F32, 1, shape4, four), MST_OK);
        CHECK_EQ_INT(mst_writer_add(w, "x", MST_F32, 1, shape4, four), MST_OK);
    }
}

static void add_dup_across(mst_writer *w)
{
    if (rank == 0 || rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "shared.weight", MST_F32, 1, shape4, four), MST_OK);
}

static void add_empty_name(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "", MST_F32, 1, shape4, four), MST_ERR_EMPTY_NAME);
}

static void add_reserved(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "__metadata__", MST_F32, 1, shape4, four),
                     MST_ERR_RESERVED_NAME);
}

static void add_bad_utf8_name(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "w\xc3(", MST_F32, 1, shape4, four), MST_ERR_INVALID_UTF8);
}

static void add_bad_utf8_key(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add_metadata(w, "k\xff", "v"), MST_ERR_INVALID_UTF8);
}

static void add_bad_utf8_value(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add_metadata(w, "key", "\xed\xa0\x80"), MST_ERR_INVALID_UTF8);
}

static void add_unknown_dtype(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "odd", (mst_dtype)99, 1, shape4, four),
                     MST_ERR_UNKNOWN_DTYPE);
}

static void add_negative(mst_writer *w)
{
    static const int64_t s[2] = {3, -5};
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "neg", MST_F32, 2, s, four), MST_ERR_NEGATIVE_DIM);
}

static void add_overflow_elements(mst_writer *w)
{
    static const int64_t s[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "wide", MST_U8, 2, s, four), MST_ERR_SIZE_OVERFLOW);
}

static void add_overflow_bytes(mst_writer *w)
{
    static const int64_t s[2] = {INT64_C(1) << 31, INT64_C(1) << 30};
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "long", MST_F64, 2, s, four), MST_ERR_SIZE_OVERFLOW);
}

/* A zero-size tensor whose other dimension passes 2^53: no bytes, but the
 * header could not say it exactly, and the reader rejects such a file. */
static void add_huge_dim(mst_writer *w)
{
    static const int64_t s[2] = {INT64_C(1) << 62, 0};
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "empty", MST_F32, 2, s, NULL), MST_ERR_SIZE_OVERFLOW);
}

/* Tensors that fit alone but not together: detected in the plan, before any
 * byte is written (the data pointer is never read). */
static void add_overflow_total(mst_writer *w)
{
    static const int64_t s[1] = {INT64_C(1) << 52};
    char name[32];
    for (int i = 0; i < (size == 1 ? 3 : 2); i++) {
        snprintf(name, sizeof name, "huge.%d.%d", rank, i);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_U8, 1, s, four), MST_OK);
    }
}

static void add_partial(mst_writer *w)
{
    static const int64_t s[1] = {3};
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "fp4", MST_F4, 1, s, four), MST_ERR_PARTIAL_BYTES);
}

static void add_null_data(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "nodata", MST_F32, 1, shape4, NULL), MST_ERR_NULL_DATA);
}

static void add_zero_size_null_ok(mst_writer *w)
{
    static const int64_t s[2] = {0, 4};
    char name[32];
    snprintf(name, sizeof name, "zero.%d", rank);
    CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 2, s, NULL), MST_OK);
}

static void add_header_too_large(mst_writer *w)
{
    /* 1001 names of 100,000 bytes spread over the ranks: > 100,000,000 bytes */
    static const int64_t zero[1] = {0};
    size_t len = 100000;
    char *name = malloc(len + 1);
    for (int i = rank; i < 1001; i += size) {
        memset(name, 'n', len);
        snprintf(name, 16, "%08d", i);
        name[8] = 'n';
        name[len] = '\0';
        CHECK_EQ_INT(mst_writer_add(w, name, MST_U8, 1, zero, NULL), MST_OK);
    }
    free(name);
}

static void add_meta_conflict_across(mst_writer *w)
{
    if (rank == 0)
        CHECK_EQ_INT(mst_writer_add_metadata(w, "step", "100"), MST_OK);
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add_metadata(w, "step", "200"), MST_OK);
    CHECK_EQ_INT(mst_writer_add_metadata(w, "format", "pt"), MST_OK);
}

static void add_meta_conflict_within(mst_writer *w)
{
    if (rank == last) {
        CHECK_EQ_INT(mst_writer_add_metadata(w, "step", "1"), MST_OK);
        CHECK_EQ_INT(mst_writer_add_metadata(w, "step", "2"), MST_OK);
    }
}

static void add_null_name(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, NULL, MST_F32, 1, shape4, four), MST_ERR_INVALID_ARGUMENT);
}

static void add_first_error_wins(mst_writer *w)
{
    static const int64_t s[1] = {-1};
    if (rank == last) {
        CHECK_EQ_INT(mst_writer_add(w, "first", MST_F32, 1, s, four), MST_ERR_NEGATIVE_DIM);
        CHECK_EQ_INT(mst_writer_add(w, "", MST_F32, 1, shape4, four), MST_ERR_EMPTY_NAME);
    }
}

static void add_lowest_rank_wins(mst_writer *w)
{
    static const int64_t s[1] = {-1};
    if (rank == 0)
        CHECK_EQ_INT(mst_writer_add(w, "", MST_F32, 1, shape4, four), MST_ERR_EMPTY_NAME);
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add(w, "neg", MST_F32, 1, s, four), MST_ERR_NEGATIVE_DIM);
}

static void add_fsync_mismatch(mst_writer *w)
{
    if (rank == last)
        CHECK_EQ_INT(mst_writer_set_fsync(w, 0), MST_OK);
}

/* ---- slices and replicas --------------------------------------------- */

static const float eight[8] = {0};
static const int64_t g42[2] = {4, 2};

static void slice_rows(mst_writer *w, int on_rank, int64_t r0, int64_t r1, mst_dtype dt,
                       const int64_t *global)
{
    int64_t start[2] = {r0, 0}, count[2] = {r1 - r0, global[1]};
    if (rank == on_rank)
        CHECK_EQ_INT(mst_writer_add_slice(w, "split", dt, 2, global, start, count, eight),
                     MST_OK);
}

static void add_slice_overlap(mst_writer *w)
{
    slice_rows(w, 0, 0, 3, MST_F32, g42);
    slice_rows(w, last, 2, 4, MST_F32, g42);
}

static void add_slice_gap(mst_writer *w)
{
    slice_rows(w, 0, 0, 1, MST_F32, g42);
    slice_rows(w, last, 2, 4, MST_F32, g42);
}

static void add_slice_bounds(mst_writer *w)
{
    static const int64_t g[1] = {4}, s[1] = {3}, c[1] = {2};
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add_slice(w, "split", MST_F32, 1, g, s, c, eight),
                     MST_ERR_SLICE_BOUNDS);
}

static void add_slice_dtype_mismatch(mst_writer *w)
{
    slice_rows(w, 0, 0, 2, MST_F32, g42);
    slice_rows(w, last, 2, 4, MST_F16, g42);
}

static void add_slice_shape_mismatch(mst_writer *w)
{
    static const int64_t g43[2] = {4, 3};
    slice_rows(w, 0, 0, 2, MST_F32, g42);
    slice_rows(w, last, 2, 4, MST_F32, g43);
}

static void add_whole_and_slice(mst_writer *w)
{
    if (rank == 0)
        CHECK_EQ_INT(mst_writer_add(w, "split", MST_F32, 2, g42, eight), MST_OK);
    slice_rows(w, last, 0, 4, MST_F32, g42);
}

static void add_slice_and_replica(mst_writer *w)
{
    slice_rows(w, 0, 0, 4, MST_F32, g42);
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add_replica(w, "split", MST_F32, 2, g42, eight), MST_OK);
}

static void add_replica_mismatch(mst_writer *w)
{
    static const int64_t s3[1] = {3};
    if (rank == 0)
        CHECK_EQ_INT(mst_writer_add_replica(w, "norm", MST_F32, 1, shape4, eight), MST_OK);
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add_replica(w, "norm", MST_F32, 1, s3, eight), MST_OK);
}

static void add_whole_and_replica(mst_writer *w)
{
    if (rank == 0)
        CHECK_EQ_INT(mst_writer_add(w, "norm", MST_F32, 1, shape4, eight), MST_OK);
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add_replica(w, "norm", MST_F32, 1, shape4, eight), MST_OK);
}

/* A [4, size] tensor split by columns: one strided column per rank. */
static void add_slice_cols(mst_writer *w)
{
    static float col[4];
    int64_t g[2] = {4, size}, st[2] = {0, rank}, ct[2] = {4, 1};
    CHECK_EQ_INT(mst_writer_add_slice(w, "cols", MST_F32, 2, g, st, ct, col), MST_OK);
}

static void add_slice_partial(mst_writer *w)
{
    static const int64_t g[2] = {2, 4}, s[2] = {0, 0}, c[2] = {2, 1};
    if (rank == last)
        CHECK_EQ_INT(mst_writer_add_slice(w, "fp4", MST_F4, 2, g, s, c, eight),
                     MST_ERR_PARTIAL_BYTES);
}

/* Hints of the last rank only: key=value. */
static void last_rank_hint(const char *key, const char *value)
{
    if (case_hints != MPI_INFO_NULL)
        MPI_Info_free(&case_hints);
    if (rank == last && key) {
        MPI_Info_create(&case_hints);
        MPI_Info_set(case_hints, key, value);
    }
}

static void run_hint_cases(void)
{
    const char *p;
    p = case_path("hint_strided_value", "m.safetensors");
    last_rank_hint("mst_strided_writes", "fast");
    snprintf(needle[0], sizeof needle[0], "rank %d: hint mst_strided_writes is \"fast\"", last);
    expect_failure("hint_strided_value", p, 1, 0, MST_ERR_INVALID_ARGUMENT, add_slice_cols,
                   needle[0], "expected \"redistribute\" or \"collective\"");
    p = case_path("hint_buffer_value", "m.safetensors");
    last_rank_hint("mst_redist_buffer", "0");
    snprintf(needle[0], sizeof needle[0], "rank %d: hint mst_redist_buffer is \"0\"", last);
    expect_failure("hint_buffer_value", p, 1, 0, MST_ERR_INVALID_ARGUMENT, add_slice_cols,
                   needle[0], "at least 1");
    if (size > 1) {
        p = case_path("hint_mismatch", "m.safetensors");
        last_rank_hint("mst_strided_writes", "collective");
        expect_failure("hint_mismatch", p, 1, 0, MST_ERR_INVALID_ARGUMENT, add_slice_cols,
                       "ranks disagree on hint mst_strided_writes", NULL);
    }
    last_rank_hint(NULL, NULL);
}

static void run_slice_cases(void)
{
    const char *p;
    char r[32];
    snprintf(r, sizeof r, "rank %d", last);
    p = case_path("slice_overlap", "m.safetensors");
    snprintf(needle[0], sizeof needle[0], "box [2:4, 0:2] of rank %d overlap", last);
    expect_failure("slice_overlap", p, 1, 0, MST_ERR_SLICE_OVERLAP, add_slice_overlap,
                   "tensor \"split\": box [0:3, 0:2] of rank 0 and", needle[0]);
    p = case_path("slice_gap", "m.safetensors");
    expect_failure("slice_gap", p, 1, 0, MST_ERR_SLICE_GAP, add_slice_gap, "\"split\"",
                   "cover 6 of its 8 elements");
    p = case_path("slice_bounds", "m.safetensors");
    expect_failure("slice_bounds", p, 1, 0, MST_ERR_SLICE_BOUNDS, add_slice_bounds, r,
                   "box [3:5] is outside the global shape");
    p = case_path("slice_dtype_mismatch", "m.safetensors");
    snprintf(needle[0], sizeof needle[0],
             "rank 0 declares as a slice F32 [4, 2] but rank %d declares F16 [4, 2]", last);
    expect_failure("slice_dtype_mismatch", p, 1, 0, MST_ERR_SLICE_MISMATCH,
                   add_slice_dtype_mismatch, "\"split\"", needle[0]);
    p = case_path("slice_shape_mismatch", "m.safetensors");
    snprintf(needle[0], sizeof needle[0], "but rank %d declares F32 [4, 3]", last);
    expect_failure("slice_shape_mismatch", p, 1, 0, MST_ERR_SLICE_MISMATCH,
                   add_slice_shape_mismatch, "\"split\"", needle[0]);
    p = case_path("whole_and_slice", "m.safetensors");
    snprintf(needle[0], sizeof needle[0],
             "declared whole (mst_writer_add) on rank 0 and as a slice on rank %d", last);
    expect_failure("whole_and_slice", p, 1, 0, MST_ERR_DUPLICATE_NAME, add_whole_and_slice,
                   "\"split\"", needle[0]);
    p = case_path("slice_and_replica", "m.safetensors");
    snprintf(needle[0], sizeof needle[0], "declared as a slice on rank 0 and as a replica on rank %d",
             last);
    expect_failure("slice_and_replica", p, 1, 0, MST_ERR_SLICE_MISMATCH, add_slice_and_replica,
                   "\"split\"", needle[0]);
    p = case_path("replica_mismatch", "m.safetensors");
    snprintf(needle[0], sizeof needle[0], "rank 0 declares as a replica F32 [4] but rank %d "
             "declares F32 [3]", last);
    expect_failure("replica_mismatch", p, 1, 0, MST_ERR_SLICE_MISMATCH, add_replica_mismatch,
                   "\"norm\"", needle[0]);
    p = case_path("whole_and_replica", "m.safetensors");
    snprintf(needle[0], sizeof needle[0],
             "declared whole (mst_writer_add) on rank 0 and as a replica on rank %d", last);
    expect_failure("whole_and_replica", p, 1, 0, MST_ERR_DUPLICATE_NAME, add_whole_and_replica,
                   "\"norm\"", needle[0]);
    p = case_path("slice_partial", "m.safetensors");
    expect_failure("slice_partial", p, 1, 0, MST_ERR_PARTIAL_BYTES, add_slice_partial, r,
                   "box [0:2, 0:1] of F4");
}

static void run_cases(void)
{
    const char *p;
    char r[32];
    snprintf(r, sizeof r, "rank %d", last);

    run_slice_cases();
    run_hint_cases();
    p = case_path("dup_within", "m.safetensors");
    expect_failure("dup_within", p, 1, 0, MST_ERR_DUPLICATE_NAME, add_dup_within, "\"x\"",
                   "declared twice on rank 0");
    if (size > 1) {
        p = case_path("dup_across", "m.safetensors");
        snprintf(needle[0], sizeof needle[0], "declared on rank 0 and on rank %d", last);
        expect_failure("dup_across", p, 1, 0, MST_ERR_DUPLICATE_NAME, add_dup_across, needle[0],
                       "\"shared.weight\"");
    }
    p = case_path("empty_name", "m.safetensors");
    expect_failure("empty_name", p, 1, 0, MST_ERR_EMPTY_NAME, add_empty_name, r, "empty name");
    p = case_path("reserved", "m.safetensors");
    expect_failure("reserved", p, 0, 0, MST_ERR_RESERVED_NAME, add_reserved, r,
                   "\"__metadata__\"");
    p = case_path("utf8_name", "m.safetensors");
    expect_failure("utf8_name", p, 1, 0, MST_ERR_INVALID_UTF8, add_bad_utf8_name, r,
                   "\"w\\xc3(\"");
    p = case_path("utf8_key", "m.safetensors");
    expect_failure("utf8_key", p, 1, 0, MST_ERR_INVALID_UTF8, add_bad_utf8_key, r,
                   "metadata key \"k\\xff\"");
    p = case_path("utf8_value", "m.safetensors");
    expect_failure("utf8_value", p, 1, 0, MST_ERR_INVALID_UTF8, add_bad_utf8_value, r,
                   "value of key \"key\"");
    p = case_path("unknown_dtype", "m.safetensors");
    expect_failure("unknown_dtype", p, 1, 0, MST_ERR_UNKNOWN_DTYPE, add_unknown_dtype, r,
                   "\"odd\"");
    p = case_path("negative_dim", "m.safetensors");
    expect_failure("negative_dim", p, 1, 0, MST_ERR_NEGATIVE_DIM, add_negative, r, "-5");
    p = case_path("overflow_elements", "m.safetensors");
    expect_failure("overflow_elements", p, 1, 0, MST_ERR_SIZE_OVERFLOW, add_overflow_elements, r,
                   "\"wide\"");
    p = case_path("overflow_bytes", "m.safetensors");
    expect_failure("overflow_bytes", p, 1, 0, MST_ERR_SIZE_OVERFLOW, add_overflow_bytes, r,
                   "\"long\"");
    p = case_path("huge_dim", "m.safetensors");
    expect_failure("huge_dim", p, 1, 0, MST_ERR_SIZE_OVERFLOW, add_huge_dim, r,
                   "dimension 0 of the shape is 4611686018427387904, above 2^53");
    p = case_path("overflow_total", "m.safetensors");
    expect_failure("overflow_total", p, 1, 0, MST_ERR_SIZE_OVERFLOW, add_overflow_total, "2^53",
                   "\"huge.");
    p = case_path("partial_bytes", "m.safetensors");
    expect_failure("partial_bytes", p, 1, 0, MST_ERR_PARTIAL_BYTES, add_partial, r, "\"fp4\"");
    p = case_path("null_data", "m.safetensors");
    expect_failure("null_data", p, 1, 0, MST_ERR_NULL_DATA, add_null_data, r, "\"nodata\"");
    p = case_path("null_name", "m.safetensors");
    expect_failure("null_name", p, 1, 0, MST_ERR_INVALID_ARGUMENT, add_null_name, r, "NULL name");
    p = case_path("header_too_large", "m.safetensors");
    expect_failure("header_too_large", p, 1, 0, MST_ERR_HEADER_TOO_LARGE, add_header_too_large,
                   "100000000", NULL);
    if (size > 1) {
        p = case_path("meta_conflict_across", "m.safetensors");
        snprintf(needle[0], sizeof needle[0], "rank 0 gives \"100\" but rank %d gives \"200\"",
                 last);
        expect_failure("meta_conflict_across", p, 1, 0, MST_ERR_METADATA_CONFLICT,
                       add_meta_conflict_across, "key \"step\"", needle[0]);
    }
    p = case_path("meta_conflict_within", "m.safetensors");
    snprintf(needle[0], sizeof needle[0], "rank %d gives two values", last);
    expect_failure("meta_conflict_within", p, 1, 0, MST_ERR_METADATA_CONFLICT,
                   add_meta_conflict_within, "key \"step\"", needle[0]);
    p = case_path("first_error_wins", "m.safetensors");
    expect_failure("first_error_wins", p, 1, 0, MST_ERR_NEGATIVE_DIM, add_first_error_wins, r,
                   "\"first\"");
    if (size > 1) {
        p = case_path("lowest_rank_wins", "m.safetensors");
        expect_failure("lowest_rank_wins", p, 1, 0, MST_ERR_EMPTY_NAME, add_lowest_rank_wins,
                       "rank 0", NULL);
        p = case_path("fsync_mismatch", "m.safetensors");
        expect_failure("fsync_mismatch", p, 1, 0, MST_ERR_INVALID_ARGUMENT, add_fsync_mismatch,
                       "mst_writer_set_fsync", NULL);
    }

    /* target problems */
    p = case_path("missing_dir", "no/such/dir/m.safetensors");
    expect_failure("missing_dir", p, 0, 0, MST_ERR_TARGET_DIR, NULL, "does not exist",
                   "no/such/dir");
    p = case_path("target_is_dir", "adir");
    if (rank == 0)
        mkdir(p, 0755);
    MPI_Barrier(MPI_COMM_WORLD);
    expect_failure("target_is_dir", p, 0, 0, MST_ERR_TARGET_DIR, NULL, "is a directory", NULL);
    if (getenv("MST_TEST_RO_DIR")) {
        static char ro[4096];
        snprintf(ro, sizeof ro, "%s/m.safetensors", getenv("MST_TEST_RO_DIR"));
        expect_failure("not_writable", ro, 0, 0, MST_ERR_TARGET_DIR, NULL, "not writable", NULL);
    } else if (rank == 0) {
        printf("note: MST_TEST_RO_DIR unset, the not-writable case did not run\n");
    }
    if (size > 1) {
        /* ranks disagree on the path: the open fails everywhere */
        static char other[4096];
        p = case_path("path_mismatch", "m.safetensors");
        snprintf(other, sizeof other, "%s", p);
        if (rank == last)
            snprintf(other, sizeof other, "%s/path_mismatch/other.safetensors", base_dir);
        snprintf(needle[0], sizeof needle[0], "rank %d was given path", last);
        expect_failure("path_mismatch", other, 0, 1, MST_ERR_INVALID_ARGUMENT, NULL, needle[0],
                       NULL);
    }
    {
        /* a zero-size tensor may have NULL data, and a failed save before it
         * did not disturb anything: this one succeeds */
        mst_writer *w = NULL;
        p = case_path("zero_size_ok", "m.safetensors");
        CHECK_EQ_INT(mst_writer_open(&w, MPI_COMM_WORLD, p, MPI_INFO_NULL), MST_OK);
        add_zero_size_null_ok(w);
        CHECK_EQ_INT(mst_writer_commit(w), MST_OK);
        mst_writer_free(&w);
    }
    {
        /* NULL arguments are local errors that need no communication */
        mst_writer *w = NULL;
        CHECK_EQ_INT(mst_writer_open(NULL, MPI_COMM_WORLD, "x", MPI_INFO_NULL),
                     MST_ERR_INVALID_ARGUMENT);
        CHECK_EQ_INT(mst_writer_open(&w, MPI_COMM_NULL, "x", MPI_INFO_NULL),
                     MST_ERR_INVALID_ARGUMENT);
        CHECK(w == NULL);
        CHECK_EQ_INT(mst_writer_add(NULL, "x", MST_F32, 1, shape4, four), MST_ERR_INVALID_ARGUMENT);
        CHECK_EQ_INT(mst_writer_commit(NULL), MST_ERR_INVALID_ARGUMENT);
        CHECK(strcmp(mst_writer_error(NULL), "NULL writer") == 0);
    }
}

/* ---- targets that are not plain new files ------------------------------ */

/* A save of every rank's own tensor to target that must succeed on every
 * rank; rank 0 then reads `check` (where the bytes must be) back. */
static void save_ok(const char *name, const char *target, const char *check)
{
    mst_writer *w = NULL;
    int rc = mst_writer_open(&w, MPI_COMM_WORLD, target, MPI_INFO_NULL);
    cases_run++;
    if (rc == MST_OK) {
        add_own(w);
        rc = mst_writer_commit(w);
    }
    CHECK_MSG(rc == MST_OK, "%s: save: %s: %s", name, mst_strerror(rc), w ? mst_writer_error(w) : "");
    mst_writer_free(&w);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0 && rc == MST_OK) {
        mst_reader *r = NULL;
        float got[4];
        CHECK_MSG(mst_reader_open(&r, check) == MST_OK, "%s: reading %s back: %s", name, check,
                  mst_reader_error(r));
        CHECK_MSG(mst_reader_count(r) == (size_t)size, "%s: %zu tensors, want %d", name,
                  mst_reader_count(r), size);
        for (int k = 0; k < size; k++) {
            char tn[32];
            snprintf(tn, sizeof tn, "own.%d", k);
            CHECK_MSG(mst_reader_read(r, tn, 0, got, sizeof got) == MST_OK && got[0] == 1.0f &&
                          got[3] == 4.0f,
                      "%s: tensor %s not read back", name, tn);
        }
        mst_reader_free(&r);
    }
}

static void run_target_cases(void)
{
    const char *p;
    char dir[4096];
    struct stat st;

    /* a FIFO (or a device) at the target is refused and stays what it is */
    p = case_path("fifo_target", "m.safetensors");
    if (rank == 0)
        CHECK(mkfifo(p, 0644) == 0);
    MPI_Barrier(MPI_COMM_WORLD);
    expect_failure("fifo_target", p, 0, 0, MST_ERR_TARGET_DIR, NULL, "rank 0: target",
                   "is a FIFO, not a regular file");
    if (rank == 0)
        CHECK_MSG(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode), "fifo_target: the FIFO is gone");
    /* a device node (the null device's numbers) needs root to make */
    p = case_path("device_target", "null");
    {
        int have = 0;
        if (rank == 0) {
            have = mknod(p, S_IFCHR | 0666, makedev(1, 3)) == 0;
            if (!have)
                printf("note: mknod failed (%s): the device case did not run\n",
                       strerror(errno));
        }
        MPI_Bcast(&have, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (have) {
            expect_failure("device_target", p, 0, 0, MST_ERR_TARGET_DIR, NULL, "rank 0: target",
                           "is a character device, not a regular file");
            if (rank == 0)
                CHECK_MSG(lstat(p, &st) == 0 && S_ISCHR(st.st_mode),
                          "device_target: the device was replaced");
        }
    }

    /* long paths: Open MPI's OMPIO aborts on names of 245 bytes or more;
     * targets of 215 and 244 bytes, one of 330 in nested directories, and a
     * 230-byte file name all save (the temporary's name is cut and, when
     * still too long, opened through /proc/self/fd) */
    {
        static const int lens[] = {215, 244};
        char path[8192];
        for (int i = 0; i < 2; i++) {
            int n;
            snprintf(dir, sizeof dir, "%s/long%d", base_dir, lens[i]);
            if (rank == 0)
                mkdir(dir, 0755);
            n = snprintf(path, sizeof path, "%s/", dir);
            while (n < lens[i] - (int)strlen(".safetensors"))
                path[n++] = 'n';
            snprintf(path + n, sizeof path - (size_t)n, ".safetensors");
            MPI_Barrier(MPI_COMM_WORLD);
            if (lens[i] != (int)strlen(path)) /* base_dir itself is long: not this case */
                continue;
            save_ok("long_path", path, path);
            if (rank == 0)
                CHECK_MSG(t_count_temps(dir) == 0, "long_path %d: a temporary was left", lens[i]);
        }
        snprintf(dir, sizeof dir, "%s/%0150d", base_dir, 0);
        if (rank == 0)
            mkdir(dir, 0755);
        snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "/%0150d", 1);
        if (rank == 0)
            mkdir(dir, 0755);
        snprintf(path, sizeof path, "%s/%0230d", dir, 2);
        MPI_Barrier(MPI_COMM_WORLD);
        save_ok("long_nested_path", path, path);
        if (rank == 0)
            CHECK_MSG(t_count_temps(dir) == 0, "long_nested_path: a temporary was left");
    }

    /* the mode, owner and group of the file replaced carry over (owner and
     * group as far as this process may set them: as root, any) */
    p = case_path("mode_carried", "m.safetensors");
    if (rank == 0) {
        CHECK(t_write_file(p, previous, sizeof previous) == 0);
        CHECK(chmod(p, 0640) == 0);
        if (geteuid() == 0)
            CHECK(chown(p, 65534, 65534) == 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    save_ok("mode_carried", p, p);
    if (rank == 0) {
        CHECK_MSG(stat(p, &st) == 0 && (st.st_mode & 07777) == 0640,
                  "mode_carried: mode %04o, want 0640", (unsigned)(st.st_mode & 07777));
        if (geteuid() == 0)
            CHECK_MSG(st.st_uid == 65534 && st.st_gid == 65534,
                      "mode_carried: owner %u:%u, want 65534:65534", (unsigned)st.st_uid,
                      (unsigned)st.st_gid);
    }

    /* a symbolic link at the target is followed: the link stays, the file it
     * leads to gets the new bytes; a dangling link makes its file; a loop is
     * refused */
    p = case_path("symlink", "latest");
    snprintf(dir, sizeof dir, "%s/symlink", base_dir);
    if (rank == 0) {
        char step[8192];
        snprintf(step, sizeof step, "%s/step_1000.safetensors", dir);
        CHECK(t_write_file(step, previous, sizeof previous) == 0);
        CHECK(symlink("step_1000.safetensors", p) == 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    {
        char step[8192], link[256];
        ssize_t n;
        snprintf(step, sizeof step, "%s/step_1000.safetensors", dir);
        save_ok("symlink", p, step);
        if (rank == 0) {
            n = readlink(p, link, sizeof link - 1);
            CHECK_MSG(n == (ssize_t)strlen("step_1000.safetensors") &&
                          memcmp(link, "step_1000.safetensors", (size_t)n) == 0,
                      "symlink: the link was replaced");
            CHECK_MSG(t_count_temps(dir) == 0, "symlink: a temporary was left");
        }
    }
    p = case_path("symlink_dangling", "latest");
    if (rank == 0)
        CHECK(symlink("step_2000.safetensors", p) == 0);
    MPI_Barrier(MPI_COMM_WORLD);
    {
        char step[8192];
        snprintf(step, sizeof step, "%s/symlink_dangling/step_2000.safetensors", base_dir);
        save_ok("symlink_dangling", p, step);
        if (rank == 0)
            CHECK_MSG(lstat(p, &st) == 0 && S_ISLNK(st.st_mode), "symlink_dangling: link gone");
    }
    p = case_path("symlink_loop", "a");
    if (rank == 0) {
        char b[8192];
        snprintf(b, sizeof b, "%s/symlink_loop/b", base_dir);
        CHECK(symlink("b", p) == 0 && symlink("a", b) == 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect_failure("symlink_loop", p, 0, 0, MST_ERR_TARGET_DIR, NULL, "rank 0: target",
                   "too many levels of symbolic links");
}

static void add_fill_disk(mst_writer *w)
{
    /* 4 MiB per rank into a 1 MiB file system */
    static unsigned char *big;
    static const int64_t s[1] = {4 << 20};
    char name[32];
    if (!big)
        big = calloc(1, 4 << 20);
    snprintf(name, sizeof name, "fill.%d", rank);
    CHECK_EQ_INT(mst_writer_add(w, name, MST_U8, 1, s, big), MST_OK);
}

int main(int argc, char **argv)
{
    int total = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    t_rank = rank;
    last = size - 1;
    if (argc != 3) {
        if (rank == 0)
            fprintf(stderr, "usage: t_errors cases|fulldisk DIR\n");
        MPI_Finalize();
        return 2;
    }
    base_dir = argv[2];
    if (!strcmp(argv[1], "cases")) {
        run_cases();
        run_target_cases();
    } else if (!strcmp(argv[1], "fulldisk")) {
        static char p[4096];
        char r[32];
        snprintf(p, sizeof p, "%s/m.safetensors", base_dir);
        snprintf(r, sizeof r, "rank ");
        expect_failure("full_disk", p, 1, 0, MST_ERR_IO, add_fill_disk, r, "file system is full");
    }
    MPI_Allreduce(&t_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("t_errors %s at %d ranks: %d cases, %s\n", argv[1], size, cases_run,
               total ? "FAILED" : "every rank agreed, nothing left behind");
    MPI_Finalize();
    return total ? 1 : 0;
}

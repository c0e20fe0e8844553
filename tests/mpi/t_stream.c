/* Failures of streamed tensors, at any number of ranks:
 *   mpirun -np N t_stream DIR
 * - a fill callback that fails on the last rank, after some pieces were
 *   written: MST_ERR_CALLBACK with the same message on every rank, naming the
 *   tensor, the rank, the callback's value and the byte range; the previous
 *   file at the target survives and no temporary file is left;
 * - a NULL callback: MST_ERR_NULL_DATA at the add and at the commit;
 * - a streamed box that is not one byte range (a column block):
 *   MST_ERR_INVALID_ARGUMENT at the add and at the commit;
 * - a staging size below 4096: refused locally, the save still works. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mst.h"
#include "t_util.h"

static int rank, size, last;

typedef struct fail_ctx {
    uint64_t fail_at; /* the piece starting here fails */
    int calls;
} fail_ctx;

static int fill_or_fail(void *ctx, uint64_t offset, void *buf, uint64_t len)
{
    fail_ctx *f = ctx;
    f->calls++;
    if (offset == f->fail_at)
        return 7;
    memset(buf, 0x5a, (size_t)len);
    return 0;
}

static const char previous[] = "the previous checkpoint, which must survive";

/* Commits w and checks the outcome everywhere; returns the message. */
static void expect(mst_writer *w, const char *target, int code, const char *needle)
{
    char msg[1024], msg0[1024];
    int rc = mst_writer_commit(w);
    CHECK_MSG(rc == code, "code %d (%s), expected %d: %s", rc, mst_strerror(rc), code,
              mst_writer_error(w));
    snprintf(msg, sizeof msg, "%s", mst_writer_error(w));
    memcpy(msg0, msg, sizeof msg);
    MPI_Bcast(msg0, (int)sizeof msg0, MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK_MSG(strcmp(msg, msg0) == 0, "rank %d says \"%s\", rank 0 \"%s\"", rank, msg, msg0);
    CHECK_MSG(strstr(msg, needle) != NULL, "message \"%s\" lacks \"%s\"", msg, needle);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        size_t len = 0;
        unsigned char *got = t_read_file(target, &len);
        const char *slash = strrchr(target, '/');
        char dir[4096], prefix[4096];
        CHECK_MSG(got && len == sizeof previous && memcmp(got, previous, len) == 0,
                  "the previous file at %s changed", target);
        free(got);
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - target), target);
        snprintf(prefix, sizeof prefix, "%s.tmp-mst.", slash + 1);
        CHECK_MSG(t_count_prefix(dir, prefix) == 0, "a temporary file was left in %s", dir);
    }
}

static mst_writer *start(const char *target)
{
    mst_writer *w = NULL;
    if (rank == 0)
        CHECK(t_write_file(target, previous, sizeof previous) == 0);
    MPI_Barrier(MPI_COMM_WORLD);
    CHECK_EQ_INT(mst_writer_open(&w, MPI_COMM_WORLD, target, MPI_INFO_NULL), MST_OK);
    return w;
}

int main(int argc, char **argv)
{
    static float own[1000];
    const int64_t big[1] = {5000}; /* 20000 bytes of F32: 5 pieces of 4096 */
    const int64_t small[1] = {1000};
    char target[4096], name[32], needle[256];
    int total = 0;
    mst_writer *w;

    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    t_rank = rank;
    last = size - 1;
    if (argc != 2) {
        if (rank == 0)
            fprintf(stderr, "usage: t_stream DIR\n");
        MPI_Finalize();
        return 2;
    }
    snprintf(target, sizeof target, "%s/stream.safetensors", argv[1]);
    snprintf(name, sizeof name, "own.%d", rank);

    {
        /* the third piece of the last rank's tensor fails */
        fail_ctx f = {2 * 4096, 0};
        w = start(target);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 1, small, own), MST_OK);
        CHECK_EQ_INT(mst_writer_set_staging(w, 4096), MST_OK);
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add_stream(w, "streamed", MST_F32, 1, big, fill_or_fail, &f),
                         MST_OK);
        snprintf(needle, sizeof needle,
                 "tensor \"streamed\" on rank %d: the fill callback returned 7 for bytes 8192 to "
                 "12288",
                 last);
        expect(w, target, MST_ERR_CALLBACK, needle);
        if (rank == last)
            CHECK_EQ_INT(f.calls, 3); /* it stopped at the failure */
        mst_writer_free(&w);
    }
    {
        w = start(target);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 1, small, own), MST_OK);
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add_stream(w, "nocb", MST_F32, 1, big, NULL, NULL),
                         MST_ERR_NULL_DATA);
        snprintf(needle, sizeof needle,
                 "tensor \"nocb\" on rank %d: the fill callback is NULL for 20000 bytes", last);
        expect(w, target, MST_ERR_NULL_DATA, needle);
        mst_writer_free(&w);
    }
    {
        /* a column block of a [4, 6] tensor is strided: not streamable */
        const int64_t g[2] = {4, 6}, s[2] = {0, 2}, c[2] = {4, 2};
        fail_ctx f = {UINT64_MAX, 0};
        w = start(target);
        CHECK_EQ_INT(mst_writer_add(w, name, MST_F32, 1, small, own), MST_OK);
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add_slice_stream(w, "cols", MST_F32, 2, g, s, c,
                                                     fill_or_fail, &f),
                         MST_ERR_INVALID_ARGUMENT);
        snprintf(needle, sizeof needle,
                 "tensor \"cols\" on rank %d: streamed box [0:4, 2:4] is not one contiguous "
                 "byte range",
                 last);
        expect(w, target, MST_ERR_INVALID_ARGUMENT, needle);
        CHECK_EQ_INT(f.calls, 0);
        mst_writer_free(&w);
    }
    {
        /* a refused staging size fails only that call */
        fail_ctx f = {UINT64_MAX, 0};
        mst_reader *r = NULL;
        mst_tensor_info info;
        unsigned char back[20000];
        w = start(target);
        CHECK_EQ_INT(mst_writer_set_staging(w, 4095), MST_ERR_INVALID_ARGUMENT);
        CHECK(strstr(mst_writer_error(w), "at least 4096") != NULL);
        if (rank == last)
            CHECK_EQ_INT(mst_writer_add_stream(w, "streamed", MST_F32, 1, big, fill_or_fail, &f),
                         MST_OK);
        CHECK_EQ_INT(mst_writer_commit(w), MST_OK);
        if (rank == last)
            CHECK_EQ_INT(f.calls, 1); /* 20000 bytes fit the default staging buffer */
        mst_writer_free(&w);
        CHECK_EQ_INT(mst_reader_open(&r, target), MST_OK);
        CHECK_EQ_INT(mst_reader_find(r, "streamed", &info), MST_OK);
        CHECK_EQ_INT(mst_reader_read(r, "streamed", 0, back, sizeof back), MST_OK);
        for (size_t i = 0; i < sizeof back; i++)
            if (back[i] != 0x5a) {
                CHECK_MSG(0, "byte %zu of \"streamed\" is %d", i, back[i]);
                break;
            }
        mst_reader_free(&r);
    }

    MPI_Allreduce(&t_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && total == 0)
        printf("t_stream: every streamed failure agreed on %d ranks\n", size);
    MPI_Finalize();
    return total ? 1 : 0;
}

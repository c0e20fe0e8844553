/* The parallel loader (mst_loader_*) against the local reader: every tensor
 * of a file or set (every dtype, sub-byte included) loaded in several
 * layouts (whole on every rank, rows, columns, 2-D blocks, fused boxes with
 * empty ones, a sparse column block on one rank, streamed columns), each box
 * compared byte for byte with the reader's bytes, and the bytes read from
 * storage checked against the union of the boxes asked for. Modes:
 *   t_load layouts <file|set dir|index.json> [buffer]
 *   t_load roundtrip <dir>        (writes a file with mst first, then layouts)
 *   t_load errors <file> <dir>    (errors on every rank, buffers untouched)
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "t_util.h"

static int nranks;
static const char *g_buffer; /* hint mst_load_buffer, or NULL */

#define MAXB 4

typedef struct tinfo {
    const char *name;
    mst_dtype dtype;
    int ndim;
    int64_t shape[8];
    unsigned char *whole; /* the reader's bytes */
    uint64_t bytes;
} tinfo;

/* elements per whole byte along the last dimension */
static int64_t unit_of(mst_dtype dt)
{
    int bits = mst_dtype_bits(dt);
    return bits == 4 ? 2 : bits == 6 ? 4 : 1;
}

/* [lo, hi) of part k of n over len units (uneven: part k weighs k + 1) */
static void split(int64_t len, int64_t unit, int n, int k, int64_t *lo, int64_t *cnt)
{
    int64_t units = len / unit, tot = (int64_t)n * (n + 1) / 2;
    int64_t a = units * ((int64_t)k * (k + 1) / 2) / tot;
    int64_t b = units * ((int64_t)(k + 1) * (k + 2) / 2) / tot;
    *lo = a * unit;
    *cnt = (b - a) * unit;
    if (k == n - 1)
        *cnt = len - *lo;
}

enum { L_WHOLE, L_ROWS, L_COLS, L_BLOCKS, L_FUSED, L_SPARSE, L_STREAM, L_COUNT };
static const char *lname[] = {"whole", "rows", "cols", "blocks", "fused", "sparse", "stream"};

/* Boxes of tensor t for rank r in layout L: returns how many (0..MAXB); a
 * box with whole[i] set is the whole tensor (mst_loader_read). */
static int boxes_of(int L, const tinfo *t, int r, int64_t st[MAXB][8], int64_t ct[MAXB][8],
                    int whole[MAXB])
{
    int n = t->ndim, last = n - 1;
    int64_t u = unit_of(t->dtype);
    memset(whole, 0, MAXB * sizeof *whole);
    for (int b = 0; b < MAXB; b++)
        for (int d = 0; d < n; d++) {
            st[b][d] = 0;
            ct[b][d] = t->shape[d];
        }
    if (L == L_WHOLE || ((L == L_STREAM || L == L_FUSED) && n == 0)) {
        whole[0] = 1;
        return 1;
    }
    if (n == 0)
        return 0;
    switch (L) {
    case L_ROWS:
        split(t->shape[0], last == 0 ? u : 1, nranks, r, &st[0][0], &ct[0][0]);
        return 1;
    case L_COLS:
    case L_STREAM:
        split(t->shape[last], u, nranks, r, &st[0][last], &ct[0][last]);
        return 1;
    case L_BLOCKS: {
        int pr = 1;
        for (int k = 1; k * k <= nranks; k++)
            if (nranks % k == 0)
                pr = k;
        split(t->shape[0], last == 0 ? u : 1, pr, r % pr, &st[0][0], &ct[0][0]);
        if (last > 0)
            split(t->shape[last], u, nranks / pr, r / pr, &st[0][last], &ct[0][last]);
        else if (r / pr > 0)
            ct[0][0] = 0; /* 1-d: the other column of ranks asks for nothing */
        return 1;
    }
    case L_FUSED: { /* this rank's column block as two row halves, an empty box,
                       and (rank 0) an overlap with the last rank's block */
        int64_t lo, cnt, h = t->shape[0] / 2;
        split(t->shape[last], u, nranks, r, &lo, &cnt);
        st[0][last] = st[1][last] = lo;
        ct[0][last] = ct[1][last] = cnt;
        if (n > 1) {
            ct[0][0] = h;
            st[1][0] = h;
            ct[1][0] = t->shape[0] - h;
        } else {
            split(cnt, u, 2, 0, &st[0][0], &ct[0][0]);
            st[0][0] += lo;
            split(cnt, u, 2, 1, &st[1][0], &ct[1][0]);
            st[1][0] += lo;
        }
        ct[2][0] = 0;
        if (r == 0 && nranks > 1) {
            split(t->shape[last], u, nranks, nranks - 1, &st[3][last], &ct[3][last]);
            return 4;
        }
        return 3;
    }
    case L_SPARSE:
        if (r != nranks - 1)
            return 0;
        ct[0][last] = t->shape[last] / u / 3 * u;
        return 1;
    }
    return 0;
}

static uint64_t box_bytes(const tinfo *t, const int64_t *c)
{
    uint64_t v = 1;
    for (int d = 0; d < t->ndim; d++)
        v *= (uint64_t)c[d];
    return v * (uint64_t)mst_dtype_bits(t->dtype) / 8;
}

/* byte dimensions */
static void bdims(const tinfo *t, const int64_t *s, const int64_t *c, uint64_t *gb, uint64_t *sb,
                  uint64_t *cb, int *nd)
{
    int n = t->ndim, bits = mst_dtype_bits(t->dtype);
    if (n == 0) {
        *nd = 1;
        gb[0] = cb[0] = t->bytes;
        sb[0] = 0;
        return;
    }
    *nd = n;
    for (int d = 0; d < n; d++) {
        gb[d] = (uint64_t)t->shape[d];
        sb[d] = (uint64_t)s[d];
        cb[d] = (uint64_t)c[d];
    }
    gb[n - 1] = gb[n - 1] * (uint64_t)bits / 8;
    sb[n - 1] = sb[n - 1] * (uint64_t)bits / 8;
    cb[n - 1] = cb[n - 1] * (uint64_t)bits / 8;
}

/* Calls f(byte offset in tensor, byte offset in box) for every byte of the box. */
static void each_byte(const tinfo *t, const int64_t *s, const int64_t *c,
                      void (*f)(void *, uint64_t, uint64_t), void *ctx)
{
    uint64_t gb[8], sb[8], cb[8], idx[8] = {0}, total = 1;
    int nd;
    bdims(t, s, c, gb, sb, cb, &nd);
    for (int d = 0; d < nd; d++)
        total *= cb[d];
    for (uint64_t k = 0; k < total; k++) {
        uint64_t off = 0;
        for (int d = 0; d < nd; d++)
            off = off * gb[d] + sb[d] + idx[d];
        f(ctx, off, k);
        for (int d = nd - 1; d >= 0; d--) {
            if (++idx[d] < cb[d])
                break;
            idx[d] = 0;
        }
    }
}

typedef struct cmpctx {
    const tinfo *t;
    const unsigned char *got;
    uint64_t bad;
} cmpctx;

static void cmp_byte(void *ctx, uint64_t toff, uint64_t boff)
{
    cmpctx *c = ctx;
    if (c->got[boff] != c->t->whole[toff])
        c->bad++;
}

static void mark_byte(void *ctx, uint64_t toff, uint64_t boff)
{
    (void)boff;
    ((unsigned char *)ctx)[toff] = 1;
}

typedef struct sinkctx {
    unsigned char *buf;
    uint64_t next, bytes;
    int bad;
} sinkctx;

static int sink(void *ctx, uint64_t offset, const void *buf, uint64_t len)
{
    sinkctx *s = ctx;
    if (offset != s->next || offset + len > s->bytes) {
        s->bad++;
        return 0;
    }
    memcpy(s->buf + offset, buf, len);
    s->next += len;
    return 0;
}

/* The tensors and their bytes, by the local reader. */
static tinfo *reference(const char *path, mst_loader *l, size_t *nt)
{
    size_t n = mst_loader_count(l);
    tinfo *ts = calloc(n ? n : 1, sizeof *ts);
    mst_shardset *set = NULL;
    int is_set = mst_shardset_open(&set, path) == MST_OK;
    for (size_t i = 0; i < n; i++) {
        mst_tensor_info info;
        mst_reader *r = NULL;
        const char *file = path;
        CHECK(mst_loader_tensor(l, i, &info) == MST_OK);
        ts[i].name = info.name;
        ts[i].dtype = info.dtype;
        ts[i].ndim = info.ndim;
        for (int d = 0; d < info.ndim; d++)
            ts[i].shape[d] = info.shape[d];
        ts[i].bytes = info.end - info.begin;
        if (is_set) {
            const char *shard;
            CHECK(mst_shardset_find(set, info.name, &shard) == MST_OK);
            for (size_t k = 0; k < mst_shardset_shard_count(set); k++)
                if (mst_shardset_shard(set, k) == shard)
                    file = mst_shardset_shard_path(set, k);
        }
        CHECK(mst_reader_open(&r, file) == MST_OK);
        ts[i].whole = malloc(ts[i].bytes + 1);
        CHECK(mst_reader_read(r, info.name, 0, ts[i].whole, ts[i].bytes) == MST_OK);
        mst_reader_free(&r);
    }
    mst_shardset_free(&set);
    *nt = n;
    return ts;
}

static int open_loader(mst_loader **l, const char *path)
{
    MPI_Info info = MPI_INFO_NULL;
    int rc;
    if (g_buffer) {
        MPI_Info_create(&info);
        MPI_Info_set(info, "mst_load_buffer", g_buffer);
    }
    rc = mst_loader_open(l, MPI_COMM_WORLD, path, info);
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    return rc;
}

static void layouts(const char *path)
{
    mst_loader *l = NULL;
    size_t nt;
    tinfo *ts;
    int rc = open_loader(&l, path);
    CHECK_MSG(rc == MST_OK, "open %s: %s", path, mst_loader_error(l));
    if (rc) {
        mst_loader_free(&l);
        return;
    }
    ts = reference(path, l, &nt);
    for (int L = 0; L < L_COUNT; L++) {
        unsigned char **bufs = calloc(nt * MAXB, sizeof *bufs);
        sinkctx *sc = calloc(nt, sizeof *sc);
        uint64_t distinct = 0, requested = 0;
        mst_load_stats stats;
        for (size_t i = 0; i < nt; i++) {
            int64_t st[MAXB][8], ct[MAXB][8];
            int whole[MAXB], nb = boxes_of(L, &ts[i], t_rank, st, ct, whole);
            for (int b = 0; b < nb; b++) {
                uint64_t bytes = whole[b] ? ts[i].bytes : box_bytes(&ts[i], ct[b]);
                unsigned char *buf = malloc(bytes + 1);
                memset(buf, 0xA5, bytes + 1);
                bufs[i * MAXB + (size_t)b] = buf;
                requested += bytes;
                if (L == L_STREAM) {
                    sc[i].buf = buf;
                    sc[i].bytes = bytes;
                    rc = mst_loader_read_stream(l, ts[i].name, whole[b] ? 0 : ts[i].ndim,
                                                whole[b] ? NULL : st[b], whole[b] ? NULL : ct[b],
                                                sink, &sc[i]);
                } else if (whole[b]) {
                    rc = mst_loader_read(l, ts[i].name, buf);
                } else {
                    rc = mst_loader_read_slice(l, ts[i].name, ts[i].ndim, st[b], ct[b], buf);
                }
                CHECK_MSG(rc == MST_OK, "%s %s: %s", lname[L], ts[i].name, mst_loader_error(l));
            }
            /* the union of every rank's boxes */
            {
                unsigned char *mask = calloc(ts[i].bytes + 1, 1);
                for (int r = 0; r < nranks; r++) {
                    int n2 = boxes_of(L, &ts[i], r, st, ct, whole);
                    for (int b = 0; b < n2; b++) {
                        if (whole[b])
                            memset(mask, 1, ts[i].bytes);
                        else
                            each_byte(&ts[i], st[b], ct[b], mark_byte, mask);
                    }
                }
                for (uint64_t k = 0; k < ts[i].bytes; k++)
                    distinct += mask[k];
                free(mask);
            }
        }
        rc = mst_loader_load(l);
        CHECK_MSG(rc == MST_OK, "%s: load: %s", lname[L], mst_loader_error(l));
        mst_loader_stats(l, &stats);
        CHECK_EQ_INT(stats.requested_rank, requested);
        CHECK_MSG(stats.read_all >= distinct && stats.read_all * 100 <= distinct * 102,
                  "%s: read %llu bytes for %llu distinct", lname[L],
                  (unsigned long long)stats.read_all, (unsigned long long)distinct);
        if (t_rank == 0)
            printf("%s: %s: read %llu, distinct %llu, requested %llu (all ranks), %llu rounds\n",
                   path, lname[L], (unsigned long long)stats.read_all,
                   (unsigned long long)distinct, (unsigned long long)stats.requested_all,
                   (unsigned long long)stats.rounds);
        for (size_t i = 0; i < nt; i++) {
            int64_t st[MAXB][8], ct[MAXB][8];
            int whole[MAXB], nb = boxes_of(L, &ts[i], t_rank, st, ct, whole);
            for (int b = 0; b < nb; b++) {
                unsigned char *buf = bufs[i * MAXB + (size_t)b];
                uint64_t bytes = whole[b] ? ts[i].bytes : box_bytes(&ts[i], ct[b]);
                if (whole[b]) {
                    CHECK_MSG(memcmp(buf, ts[i].whole, bytes) == 0, "%s %s: bytes differ",
                              lname[L], ts[i].name);
                } else {
                    cmpctx c = {&ts[i], buf, 0};
                    each_byte(&ts[i], st[b], ct[b], cmp_byte, &c);
                    CHECK_MSG(c.bad == 0, "%s %s box %d: %llu bytes differ", lname[L],
                              ts[i].name, b, (unsigned long long)c.bad);
                }
                CHECK_MSG(buf[bytes] == 0xA5, "%s %s: written past the box", lname[L],
                          ts[i].name);
                if (L == L_STREAM)
                    CHECK_MSG(sc[i].bad == 0 && sc[i].next == bytes,
                              "%s: sink saw %llu of %llu bytes, %d out of order", ts[i].name,
                              (unsigned long long)sc[i].next, (unsigned long long)bytes,
                              sc[i].bad);
                free(buf);
            }
        }
        free(bufs);
        free(sc);
    }
    for (size_t i = 0; i < nt; i++)
        free(ts[i].whole);
    free(ts);
    mst_loader_free(&l);
}

/* ---- errors ------------------------------------------------------------------ */

static int fail_sink(void *ctx, uint64_t offset, const void *buf, uint64_t len)
{
    (void)ctx;
    (void)offset;
    (void)buf;
    (void)len;
    return 7;
}

/* The same code on every rank, the same message as rank 0's, containing
 * every `want` string (NULL-terminated list). */
static void same_everywhere(int rc, int code, const char *msg, const char *const *want,
                            const char *what)
{
    char m0[1024];
    int all_ok, ok = rc == code;
    CHECK_MSG(rc == code, "%s: rc %d (%s), wanted %d: %s", what, rc, mst_strerror(rc), code, msg);
    snprintf(m0, sizeof m0, "%s", msg);
    MPI_Bcast(m0, sizeof m0, MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK_MSG(strcmp(m0, msg) == 0, "%s: rank 0 says \"%s\", this rank \"%s\"", what, m0, msg);
    for (const char *const *w = want; *w; w++)
        CHECK_MSG(strstr(msg, *w) != NULL, "%s: \"%s\" lacks \"%s\"", what, msg, *w);
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    CHECK(all_ok);
}

/* Every rank reads "embed.weight" rows into a sentinel-filled buffer; `bad`
 * declares something wrong on rank `who`. The load must fail everywhere
 * with `code` and leave every buffer untouched. */
static void one_error(mst_loader *l, int who, int code, const char *what,
                      int (*bad)(mst_loader *), const char *const *want)
{
    mst_tensor_info info;
    unsigned char *buf;
    int64_t st[2] = {0, 0}, ct[2];
    uint64_t bytes;
    int rc, untouched = 1;
    CHECK(mst_loader_find(l, "embed.weight", &info) == MST_OK);
    ct[0] = info.shape[0];
    ct[1] = info.shape[1];
    split(info.shape[0], 1, nranks, t_rank, &st[0], &ct[0]);
    bytes = (uint64_t)ct[0] * (uint64_t)ct[1] * 4;
    buf = malloc(bytes + 1);
    memset(buf, 0x5A, bytes + 1);
    CHECK(mst_loader_read_slice(l, "embed.weight", 2, st, ct, buf) == MST_OK);
    if (t_rank == who)
        CHECK_MSG(bad(l) == code, "%s: the declaration itself: %s", what, mst_loader_error(l));
    rc = mst_loader_load(l);
    same_everywhere(rc, code, mst_loader_error(l), want, what);
    for (uint64_t k = 0; k <= bytes; k++)
        untouched &= buf[k] == 0x5A;
    CHECK_MSG(untouched, "%s: a buffer was written before the error", what);
    free(buf);
}

static int bad_missing(mst_loader *l)
{
    static unsigned char b[16];
    return mst_loader_read(l, "no.such.tensor", b);
}
static int bad_outside(mst_loader *l)
{
    static unsigned char b[4096];
    int64_t st[2] = {298, 0}, ct[2] = {4, 2};
    return mst_loader_read_slice(l, "embed.weight", 2, st, ct, b);
}
static int bad_ndim(mst_loader *l)
{
    static unsigned char b[4096];
    int64_t st[1] = {0}, ct[1] = {2};
    return mst_loader_read_slice(l, "embed.weight", 1, st, ct, b);
}
static int bad_null(mst_loader *l)
{
    return mst_loader_read(l, "vec.F32", NULL);
}
static int bad_partial(mst_loader *l)
{
    static unsigned char b[64];
    int64_t st[2] = {0, 1}, ct[2] = {3, 2}; /* model.layers.1.F4 is 3 x 8 */
    return mst_loader_read_slice(l, "model.layers.1.F4", 2, st, ct, b);
}

static void errors(const char *file, const char *dir)
{
    mst_loader *l = NULL;
    char path[4096], who_s[32];
    int last = nranks - 1, rc;
    static const char *const none[] = {NULL};
    rc = mst_loader_open(&l, MPI_COMM_WORLD, file, MPI_INFO_NULL);
    CHECK_MSG(rc == MST_OK, "open: %s", mst_loader_error(l));
    snprintf(who_s, sizeof who_s, "rank %d", last);
    {
        const char *const w[] = {who_s, "\"no.such.tensor\"", NULL};
        one_error(l, last, MST_ERR_NOT_FOUND, "missing name", bad_missing, w);
    }
    {
        const char *const w[] = {"rank 0", "\"embed.weight\"", "[298:302, 0:2]", NULL};
        one_error(l, 0, MST_ERR_SLICE_BOUNDS, "box outside", bad_outside, w);
    }
    {
        const char *const w[] = {who_s, "\"embed.weight\"", NULL};
        one_error(l, last, MST_ERR_SLICE_MISMATCH, "ndim", bad_ndim, w);
    }
    {
        const char *const w[] = {who_s, "\"vec.F32\"", NULL};
        one_error(l, last, MST_ERR_NULL_DATA, "NULL buffer", bad_null, w);
    }
    {
        const char *const w[] = {"rank 0", "\"model.layers.1.F4\"", "[0:3, 1:3]", NULL};
        one_error(l, 0, MST_ERR_PARTIAL_BYTES, "F4 half byte", bad_partial, w);
    }
    /* a failing sink on the last rank */
    {
        int64_t st[1] = {0}, ct[1] = {7};
        unsigned char b[64];
        const char *const w[] = {who_s, "\"vec.F64\"", "returned 7", NULL};
        if (t_rank == last)
            CHECK(mst_loader_read_stream(l, "vec.F64", 1, st, ct, fail_sink, NULL) == MST_OK);
        else
            CHECK(mst_loader_read(l, "vec.F64", b) == MST_OK);
        rc = mst_loader_load(l);
        same_everywhere(rc, MST_ERR_CALLBACK, mst_loader_error(l), w, "sink");
    }
    /* the loader still works */
    {
        unsigned char b[7 * 8];
        mst_reader *r = NULL;
        unsigned char want[7 * 8];
        CHECK(mst_loader_read(l, "vec.F64", b) == MST_OK);
        rc = mst_loader_load(l);
        CHECK_MSG(rc == MST_OK, "load after errors: %s", mst_loader_error(l));
        CHECK(mst_reader_open(&r, file) == MST_OK);
        CHECK(mst_reader_read(r, "vec.F64", 0, want, sizeof want) == MST_OK);
        CHECK(memcmp(b, want, sizeof want) == 0);
        mst_reader_free(&r);
        /* an empty load */
        CHECK(mst_loader_load(l) == MST_OK);
    }
    mst_loader_free(&l);
    /* open errors: a missing file, a file that is not safetensors */
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    rc = mst_loader_open(&l, MPI_COMM_WORLD, path, MPI_INFO_NULL);
    same_everywhere(rc, MST_ERR_IO, mst_loader_error(l), none, "missing file");
    CHECK(mst_loader_load(l) == MST_ERR_STATE);
    mst_loader_free(&l);
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    if (t_rank == 0)
        t_write_file(path, "\x10\0\0\0\0\0\0\0{\"a\": 1}        ", 24);
    MPI_Barrier(MPI_COMM_WORLD);
    rc = mst_loader_open(&l, MPI_COMM_WORLD, path, MPI_INFO_NULL);
    same_everywhere(rc, MST_ERR_FORMAT, mst_loader_error(l), none, "bad header");
    mst_loader_free(&l);
    /* a bad hint */
    {
        MPI_Info info;
        MPI_Info_create(&info);
        MPI_Info_set(info, "mst_load_buffer", t_rank == last ? "12x" : "65536");
        rc = mst_loader_open(&l, MPI_COMM_WORLD, file, info);
        same_everywhere(rc, MST_ERR_INVALID_ARGUMENT, mst_loader_error(l), none, "bad hint");
        mst_loader_free(&l);
        MPI_Info_free(&info);
    }
}

/* ---- a file written by mst ---------------------------------------------------- */

static void roundtrip(const char *dir)
{
    char path[4096];
    mst_writer *w = NULL;
    int64_t shape[2] = {97, 61}, st[2], ct[2];
    static const mst_dtype dts[] = {MST_F32, MST_BF16, MST_F4, MST_F6_E2M3, MST_I64, MST_U8};
    unsigned char *data[6];
    snprintf(path, sizeof path, "%s/written.safetensors", dir);
    CHECK(mst_writer_open(&w, MPI_COMM_WORLD, path, MPI_INFO_NULL) == MST_OK);
    for (int i = 0; i < 6; i++) {
        char name[64];
        int64_t s2[2] = {shape[0], dts[i] == MST_F4 || dts[i] == MST_F6_E2M3 ? 64 : shape[1]};
        uint64_t bytes;
        snprintf(name, sizeof name, "w%d.%s", i, mst_dtype_name(dts[i]));
        /* column blocks over the ranks (whole bytes for the sub-byte ones) */
        st[0] = 0;
        ct[0] = s2[0];
        split(s2[1], unit_of(dts[i]), nranks, t_rank, &st[1], &ct[1]);
        bytes = (uint64_t)ct[0] * (uint64_t)ct[1] * (uint64_t)mst_dtype_bits(dts[i]) / 8;
        data[i] = malloc(bytes + 1);
        for (uint64_t k = 0; k < bytes; k++)
            data[i][k] = (unsigned char)(k * 31 + (uint64_t)t_rank * 7 + (uint64_t)i);
        CHECK(mst_writer_add_slice(w, name, dts[i], 2, s2, st, ct, data[i]) == MST_OK);
    }
    CHECK_MSG(mst_writer_commit(w) == MST_OK, "%s", mst_writer_error(w));
    mst_writer_free(&w);
    for (int i = 0; i < 6; i++)
        free(data[i]);
    layouts(path);
}

int main(int argc, char **argv)
{
    int all;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &t_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc >= 3 && !strcmp(argv[1], "layouts")) {
        g_buffer = argc > 3 ? argv[3] : NULL;
        layouts(argv[2]);
    } else if (argc == 3 && !strcmp(argv[1], "roundtrip")) {
        roundtrip(argv[2]);
    } else if (argc == 4 && !strcmp(argv[1], "errors")) {
        errors(argv[2], argv[3]);
    } else {
        if (t_rank == 0)
            fprintf(stderr, "usage: t_load layouts PATH [BUFFER] | roundtrip DIR | errors FILE DIR\n");
        MPI_Finalize();
        return 2;
    }
    MPI_Allreduce(&t_failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return all ? 1 : 0;
}

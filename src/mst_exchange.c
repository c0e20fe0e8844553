#include "mst_exchange.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mst.h"

static int mpi_fail(mst_err *err, MPI_Comm comm, const char *call, int rc)
{
    char text[MPI_MAX_ERROR_STRING + 32];
    int rank = -1;
    MPI_Comm_rank(comm, &rank);
    mst_mpi_errstr(rc, text, sizeof text);
    return mst_err_set(err, MST_ERR_MPI, "rank %d: %s failed: %s", rank, call, text);
}

/* seconds a wait spins before it sleeps */
#define MST_WAIT_SPIN 0.002

int mst_wait_idle(MPI_Request *req)
{
    struct timespec nap = {0, 0};
    int done = 0, rc;
    double start = MPI_Wtime();
    for (;;) {
        if ((rc = MPI_Test(req, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS || done)
            return rc;
        /* a short wait (the next round of a redistribution, another rank
         * a little behind) is spun, as MPI's own wait does: a sleep would
         * add its wake-up latency (50 us and more) to every round */
        if (MPI_Wtime() - start < MST_WAIT_SPIN)
            continue;
        /* a long wait (rank 0 planning or decoding): sleep between tests,
         * 20 us growing to 1 ms, so that waiting ranks leave the cores to
         * the rank that works (MPI's own wait spins) */
        nap.tv_nsec = nap.tv_nsec ? nap.tv_nsec * 2 : 20000;
        if (nap.tv_nsec > 1000000)
            nap.tv_nsec = 1000000;
        nanosleep(&nap, NULL);
    }
}

int mst_agree(MPI_Comm comm, const mst_err *mine, mst_err *out)
{
    int rank, size, me, first, rc;
    MPI_Request req;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    me = mine->code != MST_OK ? rank : size;
    rc = MPI_Iallreduce(&me, &first, 1, MPI_INT, MPI_MIN, comm, &req);
    if (rc == MPI_SUCCESS)
        rc = mst_wait_idle(&req);
    if (rc != MPI_SUCCESS)
        return mpi_fail(out, comm, "MPI_Allreduce (agreeing on an outcome)", rc);
    if (first == size) {
        mst_err_clear(out);
        return MST_OK;
    }
    if (rank == first && out != mine)
        memcpy(out, mine, sizeof *out);
    rc = MPI_Bcast(out, (int)sizeof *out, MPI_BYTE, first, comm);
    if (rc != MPI_SUCCESS)
        return mpi_fail(out, comm, "MPI_Bcast (sharing an error)", rc);
    out->msg[sizeof out->msg - 1] = '\0';
    return out->code;
}

/*
 * Packed layout, host byte order, every record padded with zeros to a
 * multiple of 8 bytes, so that on rank 0 the shapes are read where they were
 * received (aligned), not copied out:
 *   u64 ntensors, u64 nmeta
 *   per tensor: u32 name_len, u32 dtype, u32 ndim, u32 kind, i64 shape[ndim],
 *               and for slices i64 start[ndim], i64 count[ndim]; name bytes
 *   per entry:  u32 key_len, u32 value_len, key bytes, value bytes
 */
static void pad8(mst_buf *out)
{
    static const char zeros[8];
    mst_buf_put(out, zeros, (8 - out->len % 8) % 8);
}

void mst_pack_counts(mst_buf *out, size_t nt, size_t nkv)
{
    mst_buf_put_raw64(out, nt);
    mst_buf_put_raw64(out, nkv);
}

void mst_pack_tensor(mst_buf *out, const mst_tensor_desc *t, int kind, const int64_t *start,
                     const int64_t *count)
{
    mst_buf_put_raw32(out, t->name_len);
    mst_buf_put_raw32(out, t->dtype);
    mst_buf_put_raw32(out, t->ndim);
    mst_buf_put_raw32(out, (uint32_t)kind);
    mst_buf_put(out, t->shape, (size_t)t->ndim * sizeof(int64_t));
    if (kind == MST_DECL_SLICE) {
        mst_buf_put(out, start, (size_t)t->ndim * sizeof(int64_t));
        mst_buf_put(out, count, (size_t)t->ndim * sizeof(int64_t));
    }
    mst_buf_put(out, t->name, t->name_len);
    pad8(out);
}

void mst_pack_kv(mst_buf *out, const mst_kv *kv)
{
    mst_buf_put_raw32(out, kv->key_len);
    mst_buf_put_raw32(out, kv->value_len);
    mst_buf_put(out, kv->key, kv->key_len);
    mst_buf_put(out, kv->value, kv->value_len);
    pad8(out);
}

typedef struct reader {
    const char *p;
    size_t left;
    int bad;
} reader;

static const char *take(reader *r, size_t n)
{
    const char *p = r->p;
    if (r->bad || n > r->left) {
        r->bad = 1;
        return NULL;
    }
    r->p += n;
    r->left -= n;
    return p;
}

static uint64_t take64(reader *r)
{
    uint64_t v = 0;
    const char *p = take(r, 8);
    if (p)
        memcpy(&v, p, 8);
    return v;
}

static uint32_t take32(reader *r)
{
    uint32_t v = 0;
    const char *p = take(r, 4);
    if (p)
        memcpy(&v, p, 4);
    return v;
}

/* Zeros up to the next multiple of 8 (records start 8-aligned). */
static void take_pad(reader *r, size_t used)
{
    const char *p = take(r, (8 - used % 8) % 8);
    if (p && memcmp(p, "\0\0\0\0\0\0\0", (8 - used % 8) % 8) != 0)
        r->bad = 1;
}

/* Two passes over the blobs: count, then fill. Every rank's blob starts at a
 * multiple of 8 in g->blobs (their sizes are), so the shapes in it are
 * aligned. */
static int unpack(mst_gathered *g, const uint64_t *sizes, int nranks, const mst_own_decls *own,
                  mst_err *err)
{
    size_t nt = 0, nm = 0;
    const char *base = g->blobs;
    for (int pass = 0; pass < 2; pass++) {
        size_t ti = 0, mi = 0;
        const char *p = base + (own ? sizes[0] : 0);
        if (pass == 1) {
            g->decls = mst_malloc_big((nt ? nt : 1) * sizeof *g->decls);
            g->meta = malloc((nm ? nm : 1) * sizeof *g->meta);
            if (!g->decls || !g->meta)
                return mst_err_set(err, MST_ERR_NO_MEMORY,
                                   "rank 0: out of memory for the metadata of %zu tensors", nt);
        }
        if (own) {
            if (own->ntensors > INT_MAX)
                return mst_err_set(err, MST_ERR_MPI,
                                   "rank 0: the metadata received from rank %d is corrupt", 0);
            if (pass == 1) {
                g->counts[0] = (int)own->ntensors;
                for (size_t i = 0; i < own->ntensors; i++) {
                    mst_decl *d = &g->decls[i];
                    memset(d, 0, sizeof *d);
                    own->tensor(own->ctx, i, d);
                    d->rank = 0;
                    d->local = (uint32_t)i;
                }
                for (size_t i = 0; i < own->nmeta; i++) {
                    g->meta[i].kv = own->meta[i];
                    g->meta[i].rank = 0;
                }
            }
            ti = own->ntensors;
            mi = own->nmeta;
        }
        for (int r = own ? 1 : 0; r < nranks; r++) {
            reader rd = {p, (size_t)sizes[r], sizes[r] % 8 != 0};
            uint64_t t = take64(&rd), m = take64(&rd);
            if (pass == 1)
                g->counts[r] = (int)t;
            for (uint64_t i = 0; i < t && !rd.bad; i++) {
                uint32_t len = take32(&rd), dtype = take32(&rd), ndim = take32(&rd);
                uint32_t kind = take32(&rd);
                size_t ndims = (size_t)ndim * (kind == MST_DECL_SLICE ? 3 : 1);
                const char *dims = take(&rd, ndims * 8);
                const char *name = take(&rd, len);
                take_pad(&rd, len);
                if (rd.bad || kind > MST_DECL_REPLICA) {
                    rd.bad = 1;
                    break;
                }
                if (pass == 1) {
                    mst_decl *d = &g->decls[ti];
                    d->t.name = name;
                    d->t.name_len = len;
                    d->t.dtype = (uint8_t)dtype;
                    d->t.ndim = ndim;
                    d->t.shape = (const int64_t *)(const void *)dims;
                    d->kind = (uint8_t)kind;
                    d->rank = r;
                    d->local = (uint32_t)i;
                }
                ti++;
            }
            for (uint64_t i = 0; i < m && !rd.bad; i++) {
                uint32_t kl = take32(&rd), vl = take32(&rd);
                const char *k = take(&rd, kl), *v = take(&rd, vl);
                take_pad(&rd, (size_t)kl + vl);
                if (rd.bad)
                    break;
                if (pass == 1) {
                    mst_meta_decl *md = &g->meta[mi];
                    md->kv.key = k;
                    md->kv.key_len = kl;
                    md->kv.value = v;
                    md->kv.value_len = vl;
                    md->rank = r;
                }
                mi++;
            }
            if (rd.bad || rd.left != 0 || t > INT_MAX)
                return mst_err_set(err, MST_ERR_MPI,
                                   "rank 0: the metadata received from rank %d is corrupt", r);
            p += sizes[r];
        }
        nt = ti;
        nm = mi;
    }
    g->ndecls = nt;
    g->nmeta = nm;
    return MST_OK;
}

int mst_gather_decls(MPI_Comm comm, const mst_buf *mine, const mst_own_decls *own,
                     mst_gathered *g, mst_err *err)
{
    int rank, size, rc;
    uint64_t len = mine->len;
    uint64_t *sizes = NULL;
    int *icounts = NULL, *displs = NULL;
    mst_err local;

    memset(g, 0, sizeof *g);
    mst_err_clear(&local);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);

    if (rank == 0) {
        sizes = malloc((size_t)size * sizeof *sizes);
        icounts = malloc((size_t)size * sizeof *icounts);
        displs = malloc((size_t)size * sizeof *displs);
        g->counts = calloc((size_t)size, sizeof *g->counts);
    }
    /* Every rank must reach the gather even when rank 0 is out of memory. */
    rc = MPI_Gather(&len, 1, MPI_UINT64_T, sizes, 1, MPI_UINT64_T, 0, comm);
    if (rc != MPI_SUCCESS) {
        mpi_fail(&local, comm, "MPI_Gather (metadata sizes)", rc);
    } else if (rank == 0) {
        if (!sizes || !icounts || !displs || !g->counts) {
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank 0: out of memory gathering metadata");
        } else {
            uint64_t total = 0;
            for (int r = 0; r < size; r++) {
                icounts[r] = (int)sizes[r];
                displs[r] = (int)total;
                total += sizes[r];
                if (total > INT_MAX) {
                    mst_err_set(&local, MST_ERR_HEADER_TOO_LARGE,
                                "the tensor metadata of ranks 0 to %d is over 2 GiB: the header "
                                "would exceed the %u-byte limit of safetensors readers",
                                r, MST_MAX_HEADER_SIZE);
                    break;
                }
            }
            if (local.code == MST_OK && !(g->blobs = mst_malloc_big(total ? total : 1)))
                mst_err_set(&local, MST_ERR_NO_MEMORY,
                            "rank 0: out of memory for %llu bytes of metadata",
                            (unsigned long long)total);
        }
    }
    if (mst_agree(comm, &local, err))
        goto fail;
    rc = MPI_Gatherv(mine->data, (int)len, MPI_BYTE, g->blobs, icounts, displs, MPI_BYTE, 0,
                     comm);
    if (rc != MPI_SUCCESS)
        mpi_fail(&local, comm, "MPI_Gatherv (metadata)", rc);
    else if (rank == 0)
        unpack(g, sizes, size, own, &local);
    if (mst_agree(comm, &local, err))
        goto fail;
    free(sizes);
    free(icounts);
    free(displs);
    return MST_OK;
fail:
    free(sizes);
    free(icounts);
    free(displs);
    mst_gathered_free(g);
    return err->code;
}

void mst_gathered_free(mst_gathered *g)
{
    if (!g)
        return;
    free(g->blobs);
    free(g->decls);
    free(g->meta);
    free(g->counts);
    memset(g, 0, sizeof *g);
}

void mst_gathered_drop_decls(mst_gathered *g)
{
    free(g->blobs);
    free(g->decls);
    free(g->meta);
    g->blobs = NULL;
    g->decls = NULL;
    g->meta = NULL;
    g->nmeta = 0;
}

int mst_scatter_u64(MPI_Comm comm, const mst_gathered *g, const uint64_t *all, uint64_t *mine,
                    size_t nmine, mst_err *err)
{
    int rank, size, rc;
    int *displs = NULL;
    mst_err local;
    mst_err_clear(&local);
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (rank == 0) {
        displs = malloc((size_t)size * sizeof *displs);
        if (!displs) {
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank 0: out of memory scattering offsets");
        } else {
            int at = 0;
            for (int r = 0; r < size; r++) {
                displs[r] = at;
                at += g->counts[r];
            }
        }
    }
    if (mst_agree(comm, &local, err)) {
        free(displs);
        return err->code;
    }
    rc = MPI_Scatterv(all, rank == 0 ? g->counts : NULL, displs, MPI_UINT64_T, mine, (int)nmine,
                      MPI_UINT64_T, 0, comm);
    free(displs);
    if (rc != MPI_SUCCESS)
        mpi_fail(&local, comm, "MPI_Scatterv (offsets)", rc);
    return mst_agree(comm, &local, err);
}

int mst_bcast_string(MPI_Comm comm, char **s, mst_err *err)
{
    int rank, rc;
    uint64_t len = 0;
    mst_err local;
    mst_err_clear(&local);
    MPI_Comm_rank(comm, &rank);
    if (rank == 0)
        len = *s ? strlen(*s) : 0;
    rc = MPI_Bcast(&len, 1, MPI_UINT64_T, 0, comm);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, comm, "MPI_Bcast (string length)", rc);
    if (rank != 0) {
        *s = malloc(len + 1);
        if (!*s)
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory", rank);
    }
    if (mst_agree(comm, &local, err))
        return err->code;
    rc = MPI_Bcast(*s, (int)len, MPI_CHAR, 0, comm);
    if (rc != MPI_SUCCESS)
        mpi_fail(&local, comm, "MPI_Bcast (string)", rc);
    else if (rank != 0)
        (*s)[len] = '\0';
    return mst_agree(comm, &local, err);
}

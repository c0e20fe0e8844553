/*
 * The multi-file save (a Hugging Face set in directory w->path): one
 * exchange and one plan of the whole set, which validates everything and
 * gives every tensor its shard; then each shard's header and offsets from
 * the declarations already gathered, each shard written to a temporary file
 * (mst_save_write), and rank 0 switches sets (mst_set_commit).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_buf.h"
#include "mst_commit.h"
#include "mst_err.h"
#include "mst_exchange.h"
#include "mst_plan.h"
#include "mst_set.h"
#include "mst_writer_impl.h"

typedef struct name_ctx {
    const mst_plan *plan;
    const mst_gathered *g;
} name_ctx;

static int cmp_names(const mst_tensor_desc *x, const mst_tensor_desc *y)
{
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* tensor positions (in canonical order) by name */
static int cmp_pos_by_name(const void *a, const void *b, void *ctx)
{
    const name_ctx *c = ctx;
    return cmp_names(&c->g->decls[c->plan->order[*(const size_t *)a]].t,
                     &c->g->decls[c->plan->order[*(const size_t *)b]].t);
}

/*
 * Rank 0: the shard (from 1) of every declaration: tensors in the canonical
 * order of the plan, each shard filled greedily up to `max` bytes, a larger
 * tensor alone in its shard; and the index. Returns the number of shards, or
 * 0 if out of memory.
 */
static int assign_shards(const mst_plan *plan, const mst_gathered *g, uint64_t max,
                         uint64_t *shard_of_decl, mst_buf *index)
{
    size_t nt = plan->ntensors, cap = nt ? nt : 1;
    size_t *by_name = malloc(cap * sizeof *by_name);
    uint64_t *shard = malloc(cap * sizeof *shard), fill = 0, total = 0;
    mst_set_entry *entries = malloc(cap * sizeof *entries);
    name_ctx ctx = {plan, g};
    int nshards = 1;
    if (!by_name || !shard || !entries) {
        nshards = 0;
        goto out;
    }
    for (size_t k = 0; k < nt; k++) {
        const mst_decl *d = &g->decls[plan->order[k]];
        uint64_t nbytes = 0;
        mst_err ignored;
        mst_check_tensor(d->t.name, d->t.name_len, d->t.dtype, d->t.ndim, d->t.shape, 0, &nbytes,
                         &ignored);
        if (fill > 0 && fill + nbytes > max) {
            nshards++;
            fill = 0;
        }
        shard[k] = (uint64_t)nshards;
        fill += nbytes;
        total += nbytes;
        if (nbytes > max) /* alone in its shard */
            fill = max + 1;
        by_name[k] = k;
    }
    qsort_r(by_name, nt, sizeof *by_name, cmp_pos_by_name, &ctx);
    for (size_t i = 0; i < g->ndecls; i++) {
        size_t lo = 0, hi = nt;
        while (lo < hi) { /* every declaration's name is one of the tensors' */
            size_t mid = lo + (hi - lo) / 2;
            int c = cmp_names(&g->decls[plan->order[by_name[mid]]].t, &g->decls[i].t);
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        shard_of_decl[i] = lo < nt ? shard[by_name[lo]] : 1;
    }
    for (size_t k = 0; k < nt; k++) {
        const mst_decl *d = &g->decls[plan->order[k]];
        entries[k].name = d->t.name;
        entries[k].name_len = d->t.name_len;
        entries[k].shard = (int)shard[k];
    }
    if (nshards > 1 && mst_set_index_json(index, entries, nt, nshards, total) != MST_OK)
        nshards = 0;
out:
    free(by_name);
    free(shard);
    free(entries);
    return nshards;
}

/*
 * Rank 0: the metadata of every shard, as each rank gives it: its own
 * entries and, where it has no "format", "format": "pt" (transformers loads
 * a shard only with it). The gathered entries are rank-major.
 */
static mst_meta_decl *shard_meta(const mst_gathered *g, int nranks, size_t *n)
{
    mst_meta_decl *m = malloc((g->nmeta + (size_t)nranks) * sizeof *m);
    size_t j = 0;
    *n = 0;
    if (!m)
        return NULL;
    for (int r = 0; r < nranks; r++) {
        int has_format = 0;
        for (; j < g->nmeta && g->meta[j].rank == r; j++) {
            has_format |= g->meta[j].kv.key_len == 6 && !memcmp(g->meta[j].kv.key, "format", 6);
            m[(*n)++] = g->meta[j];
        }
        if (!has_format) {
            mst_meta_decl *f = &m[(*n)++];
            f->kv.key = "format";
            f->kv.key_len = 6;
            f->kv.value = "pt";
            f->kv.value_len = 2;
            f->rank = r;
        }
    }
    return m;
}

/*
 * Rank 0: the declarations of shard k (shard_of: per gathered declaration),
 * rank-major as gathered, each numbered by its position among its rank's
 * declarations of the shard; counts->counts: how many per rank. Returns how
 * many, or (size_t)-1 if out of memory.
 */
static size_t shard_decls(const mst_gathered *g, const uint64_t *shard_of, uint64_t k,
                          int nranks, mst_decl *out, mst_gathered *counts)
{
    size_t n = 0;
    memset(counts, 0, sizeof *counts);
    counts->counts = calloc((size_t)nranks, sizeof *counts->counts);
    if (!counts->counts)
        return (size_t)-1;
    for (size_t i = 0; i < g->ndecls; i++) {
        if (shard_of[i] != k)
            continue;
        out[n] = g->decls[i];
        out[n].local = (uint32_t)counts->counts[g->decls[i].rank]++;
        n++;
    }
    counts->ndecls = n;
    return n;
}

int mst_set_save(mst_writer *w)
{
    MPI_Comm comm = w->comm;
    mst_err local = w->first, *res = &w->last;
    mst_buf blob, index;
    mst_gathered g;
    mst_plan plan;
    mst_own_decls own;
    uint64_t *all = NULL, *mine = NULL;
    char **tmps = NULL;
    local_tensor *subset = NULL;
    mst_decl *decls = NULL;
    mst_meta_decl *meta = NULL;
    size_t nmeta = 0;
    int nshards = 0;

    memset(&g, 0, sizeof g);
    memset(&plan, 0, sizeof plan);
    mst_buf_init(&blob, 0);
    mst_buf_init(&index, 0);

    /* 1. Options must match. */
    mst_writer_agree_options(w, &local);

    /* 2. Exchange, once for the whole set. */
    mine = malloc((w->ntensors ? w->ntensors : 1) * sizeof *mine);
    subset = malloc((w->ntensors ? w->ntensors : 1) * sizeof *subset);
    if (local.code == MST_OK) {
        mst_save_pack(w, w->tensors, w->ntensors, &blob, w->meta, w->nmeta);
        if (!mst_buf_ok(&blob) || !mine || !subset)
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory packing metadata",
                        w->rank);
    }
    if (mst_agree(comm, &local, res))
        goto out;
    own = mst_save_own_decls(w->tensors, w->ntensors, w->meta, w->nmeta);
    if (mst_gather_decls(comm, &blob, &own, &g, res))
        goto out;
    mst_buf_free(&blob);

    /* 3. Plan the whole set once (rank 0): validation, the canonical order,
     * every tensor's shard, the index. */
    if (w->rank == 0 &&
        mst_plan_build(&plan, g.decls, g.ndecls, g.meta, g.nmeta, w->size, &local) == MST_OK &&
        mst_set_check_dir(w->path, &local) == MST_OK) {
        all = malloc((g.ndecls ? g.ndecls : 1) * sizeof *all);
        decls = malloc((g.ndecls ? g.ndecls : 1) * sizeof *decls);
        meta = shard_meta(&g, w->size, &nmeta);
        if (!all || !decls || !meta ||
            !(nshards = assign_shards(&plan, &g, w->max_shard, all, &index)))
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank 0: out of memory assigning shards");
    }
    if (mst_agree(comm, &local, res))
        goto out;
    if (MPI_Bcast(&nshards, 1, MPI_INT, 0, comm) != MPI_SUCCESS) {
        mst_err_set(res, MST_ERR_MPI, "rank %d: MPI_Bcast of the shard count failed", w->rank);
        goto out;
    }
    if (mst_scatter_u64(comm, &g, all, mine, w->ntensors, res))
        goto out;
    mst_plan_free(&plan);
    tmps = calloc((size_t)nshards, sizeof *tmps);
    if (!tmps)
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
    if (mst_agree(comm, &local, res))
        goto out;

    /* 4. Each shard: its plan from the gathered declarations (rank 0), then
     * all ranks write their tensors of it into a temporary file. */
    for (int k = 1; k <= nshards; k++) {
        char *path = mst_set_shard_path(w->path, k, nshards);
        mst_err shard;
        mst_gathered counts;
        mst_plan splan;
        uint64_t *offsets = NULL, *rtab = NULL, expected = 0;
        size_t n = 0, nd, rlen = 0;
        int rc;
        mst_err_clear(&shard);
        memset(&counts, 0, sizeof counts);
        memset(&splan, 0, sizeof splan);
        for (size_t i = 0; i < w->ntensors; i++)
            if (mine[i] == (uint64_t)k)
                subset[n++] = w->tensors[i];
        if (!path)
            mst_err_set(&shard, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
        else if (w->rank != 0 && !(offsets = malloc((n ? n : 1) * sizeof *offsets)))
            mst_err_set(&shard, MST_ERR_NO_MEMORY, "rank %d: out of memory packing metadata",
                        w->rank);
        if (w->rank == 0 && shard.code == MST_OK) {
            nd = shard_decls(&g, all, (uint64_t)k, w->size, decls, &counts);
            if (nd == (size_t)-1)
                mst_err_set(&shard, MST_ERR_NO_MEMORY, "rank 0: out of memory");
            else if (mst_plan_build_crc(&splan, decls, nd, meta, nmeta, w->size, w->checksums,
                                        &shard) == MST_OK)
                mst_save_finish_plan(w, decls, nd, &splan, &expected, &rtab, &rlen, &shard);
        }
        rc = mst_save_write(w, &shard, subset, n, &counts, &splan, offsets, expected, &rtab, rlen,
                            path ? path : w->path, &tmps[k - 1]);
        free(path);
        if (rc != MST_OK)
            goto discard;
    }

    /* 5. Rank 0 switches sets: the index, the journal, the renames. */
    if (w->rank == 0)
        mst_set_commit(w->path, nshards, tmps, &index, w->fsync, &local);
    if (mst_agree(comm, &local, res) == MST_OK)
        goto out;
discard:
    if (w->rank == 0 && res->code != MST_OK && tmps)
        for (int k = 0; k < nshards; k++)
            mst_commit_discard(tmps[k]);
out:
    if (tmps)
        for (int k = 0; k < nshards; k++)
            free(tmps[k]);
    free(tmps);
    free(all);
    free(mine);
    free(subset);
    free(decls);
    free(meta);
    mst_buf_free(&blob);
    mst_buf_free(&index);
    mst_gathered_free(&g);
    mst_plan_free(&plan);
    return res->code;
}

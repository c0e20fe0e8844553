/*
 * The single-file save, in the order of the data flow in DESIGN.md:
 *
 *   options agreed -> exchange (every rank's declarations to rank 0)
 *   -> plan (rank 0: order, offsets, header) -> agree
 *   -> temporary file (rank 0 creates, every rank opens) -> write
 *   -> sync, close -> commit (size check, rename, directory fsync).
 *
 * Every step that can fail on one rank is followed by an agreement, so all
 * ranks take the same path and return the same code and message. The steps
 * from the temporary file on (mst_save_write) also write each shard of a
 * multi-file save (mst_set_save.c); the commit protocol is mst_commit.h.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_buf.h"
#include "mst_commit.h"
#include "mst_crc.h"
#include "mst_err.h"
#include "mst_exchange.h"
#include "mst_io.h"
#include "mst_plan.h"
#include "mst_redist.h"
#include "mst_temp.h"
#include "mst_writer_impl.h"

void mst_save_pack(const mst_writer *w, const local_tensor *tensors, size_t ntensors,
                   mst_buf *blob, const mst_kv *meta, size_t nmeta)
{
    if (w->rank == 0)
        return;
    mst_pack_counts(blob, ntensors, nmeta);
    for (size_t i = 0; i < ntensors; i++)
        mst_pack_tensor(blob, &tensors[i].t, tensors[i].kind, box_start(&tensors[i]),
                        box_count(&tensors[i]));
    for (size_t i = 0; i < nmeta; i++)
        mst_pack_kv(blob, &meta[i]);
}

static void own_tensor(void *ctx, size_t i, mst_decl *out)
{
    const local_tensor *t = &((const local_tensor *)ctx)[i];
    out->t = t->t;
    out->kind = (uint8_t)t->kind;
}

mst_own_decls mst_save_own_decls(const local_tensor *tensors, size_t ntensors,
                                 const mst_kv *meta, size_t nmeta)
{
    mst_own_decls own;
    own.ntensors = ntensors;
    own.tensor = own_tensor;
    own.ctx = (void *)tensors;
    own.meta = meta;
    own.nmeta = nmeta;
    return own;
}

int mst_save_finish_plan(const mst_writer *w, const mst_decl *decls, size_t ndecls,
                         mst_plan *plan, uint64_t *expected, uint64_t **rtab, size_t *rlen,
                         mst_err *err)
{
    uint64_t data_start = 8 + plan->header.len;
    *expected = data_start + plan->data_len;
    if (!w->collective &&
        mst_redist_table(decls, ndecls, plan, data_start, rtab, rlen, err) != MST_OK)
        return err->code;
    free(plan->order);
    plan->order = NULL;
    for (size_t i = 0; i < ndecls; i++)
        if (plan->begin[i] != MST_PLAN_SKIP)
            plan->begin[i] += data_start;
    return MST_OK;
}

int mst_save_file(mst_writer *w, const mst_err *first, const local_tensor *tensors,
                  size_t ntensors, const mst_kv *meta, size_t nmeta, const char *path)
{
    MPI_Comm comm = w->comm;
    mst_err local = *first, *res = &w->last;
    mst_buf blob;
    mst_gathered g;
    mst_plan plan;
    mst_own_decls own;
    uint64_t *offsets = NULL, *rtab = NULL, expected = 0;
    size_t rlen = 0;
    char *target = NULL; /* rank 0: where a link at path leads */

    memset(&g, 0, sizeof g);
    memset(&plan, 0, sizeof plan);
    mst_buf_init(&blob, 0);

    /* 1. Options must match: the sync is done by every rank or by none. */
    mst_writer_agree_options(w, &local);

    /* 2. Exchange: every rank's declarations to rank 0. */
    if (local.code == MST_OK) {
        mst_save_pack(w, tensors, ntensors, &blob, meta, nmeta);
        /* rank 0's once its peak is past (mst_save_write) */
        if (w->rank != 0)
            offsets = malloc((ntensors ? ntensors : 1) * sizeof *offsets);
        if (!mst_buf_ok(&blob) || (w->rank != 0 && !offsets))
            mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory packing metadata",
                        w->rank);
    }
    if (mst_agree(comm, &local, res))
        goto fail;
    own = mst_save_own_decls(tensors, ntensors, meta, nmeta);
    if (mst_gather_decls(comm, &blob, &own, &g, res))
        goto fail;
    mst_buf_free(&blob);

    /* 3. Plan (rank 0): validation, canonical order, offsets, header bytes;
     * the target checked; the strided boxes to redistribute. Nothing after
     * needs the declarations (only their counts per rank): they go before
     * anything else is allocated. */
    if (w->rank == 0 &&
        mst_plan_build_crc(&plan, g.decls, g.ndecls, g.meta, g.nmeta, w->size, w->checksums,
                           &local) == MST_OK &&
        (target = mst_commit_resolve(path, &local)) != NULL &&
        mst_commit_check_target(target, &local) == MST_OK &&
        mst_save_finish_plan(w, g.decls, g.ndecls, &plan, &expected, &rtab, &rlen, &local) ==
            MST_OK)
        mst_gathered_drop_decls(&g);

    /* 4-8. Agree on the plan, then temporary file, writes, sync and close,
     * commit: each step agreed. Only rank 0 uses the target's name. */
    mst_save_write(w, &local, tensors, ntensors, &g, &plan, offsets, expected, &rtab, rlen,
                   target ? target : path, NULL);
    free(target);
    return res->code;

fail:
    free(offsets);
    mst_buf_free(&blob);
    mst_gathered_free(&g);
    return res->code;
}

/* Checksums: every rank's CRC records to rank 0, which combines them per
 * tensor, puts the digits into the header's placeholder and writes the
 * length and the header at offset 0: the last write of the file. Collective;
 * the caller agrees on *local. */
static void write_crc_header(mst_writer *w, MPI_File fh, const char *tmp, mst_plan *plan,
                             mst_crc_acc *crc, mst_err *local)
{
    int mine, *counts = NULL, *displs = NULL, rc;
    mst_crc_rec *all = NULL;
    uint64_t *begin = NULL, *covered = NULL;
    uint32_t *out = NULL;
    size_t total = 0, n = plan->ntensors, bad = 0;

    mst_crc_close(crc);
    mine = crc->no_memory ? -1
           : crc->n > (size_t)INT32_MAX / sizeof(mst_crc_rec) ? -2
                                                               : (int)(crc->n * sizeof(mst_crc_rec));
    if (w->rank == 0) {
        counts = calloc((size_t)w->size, sizeof *counts);
        displs = calloc((size_t)w->size, sizeof *displs);
    }
    rc = MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, w->comm);
    if (w->rank == 0 && rc == MPI_SUCCESS) {
        for (int r = 0; r < w->size; r++) {
            int c = counts ? counts[r] : 0;
            if (c < 0 && local->code == MST_OK)
                mst_err_set(local, c == -1 ? MST_ERR_NO_MEMORY : MST_ERR_SIZE_OVERFLOW,
                            "rank %d: %s", r,
                            c == -1 ? "out of memory for checksums"
                                    : "too many checksum records to send");
            if (r > 0 && counts) {
                displs[r] = (int)(total * sizeof(mst_crc_rec));
                total += c > 0 ? (size_t)c / sizeof(mst_crc_rec) : 0;
                if (c < 0)
                    counts[r] = 0;
            }
        }
        counts ? (void)(counts[0] = 0) : (void)0;
        all = malloc((total ? total : 1) * sizeof *all);
        if ((!counts || !displs || !all) && local->code == MST_OK)
            mst_err_set(local, MST_ERR_NO_MEMORY, "rank 0: out of memory for checksums");
        if (local->code != MST_OK) /* still gather: every rank sends */
            total = 0;
    } else if (rc != MPI_SUCCESS) {
        mst_err_set(local, MST_ERR_MPI, "rank %d: MPI_Gather of checksum counts failed",
                    w->rank);
    }
    rc = MPI_Gatherv(crc->r, w->rank == 0 || mine < 0 ? 0 : mine, MPI_BYTE, all, counts, displs,
                     MPI_BYTE, 0, w->comm);
    if (rc != MPI_SUCCESS && local->code == MST_OK)
        mst_err_set(local, MST_ERR_MPI, "rank %d: MPI_Gatherv of checksums failed", w->rank);
    if (w->rank != 0 || local->code != MST_OK)
        goto out;

    /* rank 0: its own records after the others', then every tensor's CRC */
    {
        mst_crc_rec *g = realloc(all, (total + crc->n + 1) * sizeof *all);
        begin = malloc((n ? n : 1) * sizeof *begin);
        covered = malloc((n ? n : 1) * sizeof *covered);
        out = malloc((n ? n : 1) * sizeof *out);
        if (g)
            all = g;
        if (!g || !begin || !covered || !out) {
            mst_err_set(local, MST_ERR_NO_MEMORY, "rank 0: out of memory for checksums");
            goto out;
        }
    }
    if (crc->n)
        memcpy(all + total, crc->r, crc->n * sizeof *all);
    total += crc->n;
    for (size_t k = 0, at = 8 + plan->header.len; k < n; at += plan->tlen[k], k++)
        begin[k] = at;
    if (mst_crc_resolve(all, total, begin, plan->tlen, n, out, covered, &bad) != 0) {
        mst_err_set(local, MST_ERR_MPI,
                    "rank 0: the checksums gathered do not cover tensor %zu exactly", bad);
        goto out;
    }
    for (size_t k = 0; k < n; k++)
        mst_crc_hex(plan->header.data + plan->crc_at + 8 * k, out[k]);
    {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)((uint64_t)plan->header.len >> (8 * i));
        if (mst_io_write(fh, tmp, 0, len8, 8, 0, "the header length", local) == MST_OK)
            mst_io_write(fh, tmp, 8, plan->header.data, plan->header.len, 0, "the header",
                         local);
    }
out:
    free(counts);
    free(displs);
    free(all);
    free(begin);
    free(covered);
    free(out);
}

int mst_save_write(mst_writer *w, mst_err *local, const local_tensor *tensors, size_t ntensors,
                   mst_gathered *counts, mst_plan *plan, uint64_t *offsets, uint64_t expected,
                   uint64_t **rtab, size_t rlen, const char *path, char **keep_tmp)
{
    MPI_Comm comm = w->comm;
    mst_err *res = &w->last;
    char *tmp = NULL;
    MPI_File fh = MPI_FILE_NULL;
    write_list writes;
    mst_crc_acc crc;
    int have_tmp = 0, lock_fd = -1;

    memset(&writes, 0, sizeof writes);
    mst_crc_acc_init(&crc);
    if (keep_tmp)
        *keep_tmp = NULL;

    /* 4. Rank 0 creates the temporary file beside the target: with the hints,
     * opened, and locked (the lock marks it as owned, for mst-clean). */
    if (w->rank == 0 && local->code == MST_OK) {
        offsets = malloc((ntensors ? ntensors : 1) * sizeof *offsets);
        if (!offsets)
            mst_err_set(local, MST_ERR_NO_MEMORY, "rank 0: out of memory");
        else if (mst_temp_create(path, w->hints, &tmp, &lock_fd, &fh, local) == MST_OK)
            have_tmp = 1;
    }
    if (mst_agree(comm, local, res))
        goto cleanup;
    /* its name, each rank's offsets, the table of strided boxes */
    if (mst_bcast_string(comm, &tmp, res))
        goto cleanup;
    if (mst_scatter_u64(comm, counts, plan->begin, offsets, ntensors, res))
        goto cleanup;
    mst_gathered_free(counts);
    free(plan->begin);
    plan->begin = NULL;
    if (!w->collective && mst_redist_share(comm, rtab, &rlen, res))
        goto cleanup;

    /* 5. Every other rank opens it. */
    if (w->rank != 0)
        mst_io_open(tmp, 0, w->hints, w->rank, &fh, NULL, local);
    if (mst_agree(comm, local, res))
        goto cleanup;

    /* 6. Writes: this rank's own (header, tensors, contiguous boxes), then
     * the strided boxes (redistributed, or collective with the hint). */
    if (mst_sched_plan(w, tensors, ntensors, offsets, &writes, local) == MST_OK) {
        free(offsets); /* the items hold them now */
        offsets = NULL;
        writes.crc = w->checksums ? &crc : NULL;
        mst_sched_write_own(w, fh, tmp, plan, &writes, local);
    }
    if (mst_agree(comm, local, res))
        goto cleanup;
    /* the small tensors of every rank, gathered into few writes */
    mst_sched_write_small(w, fh, tmp, plan, &writes, local);
    if (mst_agree(comm, local, res))
        goto cleanup;
    if (w->collective)
        mst_sched_write_strided(w, tmp, &writes, local);
    else
        mst_redist_write(comm, *rtab, rlen, mst_sched_tensor_data, (void *)tensors, fh, tmp,
                         mst_sched_redist_buffer(w), writes.crc, local);
    if (mst_agree(comm, local, res))
        goto cleanup;

    /* 6b. Checksums: the CRCs to rank 0, which writes the header last. */
    if (w->checksums) {
        write_crc_header(w, fh, tmp, plan, &crc, local);
        if (mst_agree(comm, local, res))
            goto cleanup;
    }

    /* 7. Sync and close on every rank. */
    mst_io_sync_close(&fh, w->fsync, w->collective, w->rank, local);
    if (mst_agree(comm, local, res))
        goto cleanup;

    /* 8. Commit (rank 0): the size checked, the rename, the directory's
     * fsync; or, for a shard of a set, the checked file kept for the switch. */
    if (keep_tmp) {
        if (w->rank == 0 && mst_commit_check_size(tmp, expected, local) == MST_OK) {
            *keep_tmp = tmp;
            tmp = NULL;
        } else if (w->rank == 0) {
            mst_commit_discard(tmp);
        }
    } else if (w->rank == 0 &&
               mst_commit_rename(tmp, path, expected, w->fsync, local) != MST_OK) {
        mst_commit_discard(tmp);
    }
    mst_agree(comm, local, res);
    goto out;

cleanup:
    /* Every rank is here, on the same failure: close, then rank 0 removes the
     * temporary file once no rank holds it open. */
    if (fh != MPI_FILE_NULL)
        mst_io_close(&fh);
    MPI_Barrier(comm);
    if (w->rank == 0 && have_tmp)
        mst_commit_discard(tmp);
out:
    mst_crc_acc_free(&crc);
    mst_sched_free(&writes);
    free(*rtab);
    *rtab = NULL;
    mst_gathered_free(counts);
    mst_plan_free(plan);
    free(offsets);
    mst_temp_release(&lock_fd); /* after the rename or the removal */
    free(tmp);
    return res->code;
}

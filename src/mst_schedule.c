/* Local write scheduling of a save: where each of this rank's declarations
 * goes in the file, in which order and how (runs of small tensors batched,
 * streamed tensors through the staging buffer, strided boxes in collective
 * rounds with the hint mst_strided_writes=collective; by default strided
 * boxes go through mst_redist). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mst.h"
#include "mst_box.h"
#include "mst_buf.h"
#include "mst_crc.h"
#include "mst_err.h"
#include "mst_exchange.h"
#include "mst_io.h"
#include "mst_plan.h"
#include "mst_redist.h"
#include "mst_writer_impl.h"

struct write_item {
    uint64_t offset; /* absolute file offset of the first byte */
    size_t index;
    int strided;
    int round;       /* strided boxes: which collective round */
};

/* A box's item: the layout only boxes need (24 bytes an item for a million
 * whole tensors, not 56). */
typedef struct box_item {
    write_item item;
    mst_box_layout layout;
    uint64_t dims[]; /* gb, sb, cb (3 * ndim) */
} box_item;

static const box_item *as_box(const write_item *it)
{
    return (const box_item *)it; /* only for the items of slices */
}

static int cmp_item(const void *a, const void *b)
{
    const write_item *x = *(const write_item *const *)a, *y = *(const write_item *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}


void mst_sched_free(write_list *l)
{
    free(l->block);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Where each of this rank's declarations goes: whole tensors and chosen
 * replicas at their offset, boxes at their first byte; strided boxes get a
 * collective round (the i-th strided box of a tensor on this rank goes in
 * round i, so within a round the boxes of this rank never interleave). */
static size_t item_size(const local_tensor *t)
{
    if (t->kind != MST_DECL_SLICE)
        return sizeof(write_item);
    return sizeof(box_item) + 3 * (size_t)t->t.ndim * sizeof(uint64_t);
}

int mst_sched_plan(const mst_writer *w, const local_tensor *tensors, size_t ntensors,
                   const uint64_t *offsets, write_list *l, mst_err *err)
{
    size_t bytes = 0;
    char *at;
    l->tensors = tensors;
    l->gather_small = w->size > 1;
    for (size_t i = 0; i < ntensors; i++)
        if (offsets[i] != MST_PLAN_SKIP && tensors[i].nbytes != 0)
            bytes += item_size(&tensors[i]);
    l->items = mst_malloc_big((ntensors ? ntensors : 1) * sizeof *l->items);
    l->block = mst_malloc_big(bytes ? bytes : 1);
    if (l->block)
        memset(l->block, 0, bytes ? bytes : 1);
    if (!l->items || !l->block)
        goto oom;
    at = l->block;
    for (size_t i = 0; i < ntensors; i++) {
        const local_tensor *t = &tensors[i];
        int ndim = (int)t->t.ndim;
        write_item *it;
        if (offsets[i] == MST_PLAN_SKIP || t->nbytes == 0)
            continue;
        it = (write_item *)at; /* sizes are multiples of 8 */
        at += item_size(t);
        it->index = i;
        it->offset = offsets[i];
        if (t->kind == MST_DECL_SLICE) {
            box_item *bi = (box_item *)it;
            uint64_t *gb = bi->dims, *sb = gb + ndim, *cb = sb + ndim;
            mst_box_bytes(ndim, t->t.shape, box_start(t), box_count(t),
                          mst_dtype_bits(t->t.dtype), gb, sb, cb);
            mst_box_layout_of(ndim, gb, sb, cb, &bi->layout);
            it->offset += bi->layout.first;
            it->strided = !bi->layout.contiguous;
        }
        l->items[l->n++] = it;
    }
    qsort(l->items, l->n, sizeof *l->items, cmp_item);
    /* rounds: tensors occupy disjoint byte ranges, so in file order the boxes
     * of one tensor are neighbours; number its strided ones 0, 1, ... */
    for (size_t i = 0, run = 0; i < l->n; i++) {
        write_item *it = l->items[i];
        if (i > 0 && offsets[l->items[i - 1]->index] != offsets[it->index])
            run = 0;
        if (!it->strided)
            continue;
        it->round = (int)run++;
        if (it->round + 1 > l->rounds)
            l->rounds = it->round + 1;
    }
    return MST_OK;
oom:
    return mst_err_set(err, MST_ERR_NO_MEMORY, "rank %d: out of memory ordering writes", w->rank);
}

static void describe_tensor(char *what, size_t cap, const local_tensor *t)
{
    char q[MST_QUOTE_MAX], box[160];
    mst_quote(q, sizeof q, t->t.name, t->t.name_len, MST_QUOTE_LIMIT);
    if (t->kind == MST_DECL_SLICE)
        snprintf(what, cap, "tensor %s box %s", q,
                 mst_box_format(box, sizeof box, (int)t->t.ndim, box_start(t), box_count(t)));
    else
        snprintf(what, cap, "tensor %s", q);
}

/* A message about a write names its tensor (describe_tensor), but formatting
 * that for every write costs more than many small writes: write_own passes
 * WHAT_MARK instead and, on a failure, puts the text in its place. The mark
 * is a control character, which no quoted name or path contains raw; the
 * text is never shorter than the mark, so the message is cut exactly where
 * formatting it with the text would have cut it. */
#define WHAT_MARK "\x1f"

static void name_in_message(mst_err *err, const char *what)
{
    char msg[MST_MSG_MAX];
    const char *at = strchr(err->msg, WHAT_MARK[0]);
    if (!at)
        return;
    snprintf(msg, sizeof msg, "%.*s%s%s", (int)(at - err->msg), err->msg, what, at + 1);
    memcpy(err->msg, msg, sizeof msg);
}

static void name_tensor_in_message(mst_err *err, const local_tensor *t)
{
    char what[MST_QUOTE_MAX + 200];
    describe_tensor(what, sizeof what, t);
    name_in_message(err, what);
}

/* Checksums: bytes [off, off + n) of item `it` (a whole tensor, a replica or
 * a box) as they are written; a box's bytes sit at its first byte within its
 * tensor. */
static uint64_t tensor_total(const write_item *it, const local_tensor *t)
{
    uint64_t n = 1;
    if (t->kind != MST_DECL_SLICE)
        return t->nbytes;
    for (int d = 0; d < (int)t->t.ndim; d++)
        n *= as_box(it)->dims[d];
    return n;
}

static void crc_item(const write_list *l, const write_item *it, const local_tensor *t,
                     uint64_t off, const void *data, uint64_t n)
{
    uint64_t first = t->kind == MST_DECL_SLICE ? as_box(it)->layout.first : 0;
    if (l->crc)
        mst_crc_add_piece(l->crc, it->offset - first, tensor_total(it, t), first + off, data,
                          n);
}

/* Checksums of a strided box (written by collective writes): its runs, each
 * at its place in the tensor, in file order. */
static void crc_strided_box(const write_list *l, const write_item *it, const local_tensor *t)
{
    const box_item *bi = as_box(it);
    int ndim = (int)t->t.ndim, k = bi->layout.k;
    const uint64_t *gb = bi->dims, *sb = gb + ndim, *cb = sb + ndim;
    uint64_t idx[64], stride[64], total = tensor_total(it, t), nruns = 1;
    const unsigned char *data = t->data;
    if (!l->crc || ndim > 64)
        return;
    stride[ndim - 1] = 1;
    for (int d = ndim - 2; d >= 0; d--)
        stride[d] = stride[d + 1] * gb[d + 1];
    for (int d = 0; d < k; d++)
        nruns *= cb[d];
    memset(idx, 0, sizeof idx);
    for (uint64_t r = 0; r < nruns; r++) {
        uint64_t pos = sb[k] * stride[k];
        for (int d = 0; d < k; d++)
            pos += (sb[d] + idx[d]) * stride[d];
        mst_crc_add_piece(l->crc, it->offset - bi->layout.first, total, pos,
                          data + r * bi->layout.run, bi->layout.run);
        for (int d = k - 1; d >= 0; d--) { /* next run: the odometer */
            if (++idx[d] < cb[d])
                break;
            idx[d] = 0;
        }
    }
}

/* A streamed tensor (or row box): pieces from its fill callback through the
 * staging buffer, each written at once. */
static int write_streamed(const mst_writer *w, const write_list *l, const local_tensor *t,
                          MPI_File fh, const char *tmp, const write_item *it,
                          unsigned char *stage, size_t cap, const char *what, mst_err *err)
{
    for (uint64_t off = 0; off < t->nbytes;) {
        uint64_t n = t->nbytes - off < cap ? t->nbytes - off : cap;
        int rc = t->fill(t->fill_ctx, off, stage, n);
        if (rc != 0)
            return mst_err_set(err, MST_ERR_CALLBACK,
                               "%s on rank %d: the fill callback returned %d for bytes %llu to "
                               "%llu",
                               what, w->rank, rc, (unsigned long long)off,
                               (unsigned long long)(off + n));
        crc_item(l, it, t, off, stage, n);
        if (mst_io_write(fh, tmp, it->offset + off, stage, n, w->rank, what, err))
            return err->code;
        off += n;
    }
    return MST_OK;
}

/* With checksums, a large tensor goes out in pieces of CRC_CHUNK bytes, each
 * written right after its CRC, while its bytes are still in the cache: a CRC
 * pass over the whole tensor first would read it from memory twice. */
#define CRC_CHUNK ((uint64_t)4 << 20)

static int write_checksummed(const mst_writer *w, const write_list *l, const local_tensor *t,
                             MPI_File fh, const char *tmp, const write_item *it, mst_err *err)
{
    const unsigned char *data = t->data;
    for (uint64_t off = 0; off < t->nbytes; off += CRC_CHUNK) {
        uint64_t n = t->nbytes - off < CRC_CHUNK ? t->nbytes - off : CRC_CHUNK;
        crc_item(l, it, t, off, data + off, n);
        if (mst_io_write(fh, tmp, it->offset + off, data + off, n, w->rank, WHAT_MARK, err))
            return err->code;
    }
    return MST_OK;
}

/* Small tensors go out in few writes: a million 8-byte tensors cost a
 * million MPI_File_write_at calls otherwise, and 100,000 small tensors dealt
 * round-robin over the ranks are never neighbours in the file. Tensors under
 * BATCH_SMALL bytes are copied into one buffer of at most BATCH_BYTES
 * (allocated when a second one joins), neighbours merged into runs; a batch
 * leaves in one call, through a file view of its runs when it has several
 * (mst_io_write_runs). A batch ends when the buffer is full or it has
 * BATCH_RUNS runs. Larger tensors are written from the caller's buffer as
 * they come: no byte of the batch is theirs, so the order does not matter.
 * Memory: BATCH_BYTES + 16 * BATCH_RUNS bytes per rank (6 MiB) at most, less
 * when the rank's small tensors are fewer. */
#define BATCH_SMALL MST_SCHED_SMALL
#define BATCH_BYTES ((uint64_t)4 << 20)
#define BATCH_RUNS ((size_t)1 << 16)

typedef struct batch {
    unsigned char *buf;
    size_t cap;          /* bytes of buf once allocated */
    uint64_t *off, *len; /* the runs: file offset and bytes */
    size_t nruns, rcap;  /* runs, and room for them */
    uint64_t bytes;      /* bytes in the batch */
    size_t first, last;  /* the batch's first and last item (positions in the write list) */
    size_t n;            /* tensors in the batch; 0: none */
    int header;          /* rank 0: the batch starts with the length and the header */
} batch;

/* `tensor "a"`, `tensors "a" to "z" (N tensors)`, with "the header and "
 * before them when the run starts with the header; boxes as describe_tensor
 * gives them. */
static void describe_run(char *what, size_t cap, const write_list *l,
                         const batch *b)
{
    char one[MST_QUOTE_MAX + 200], two[MST_QUOTE_MAX + 200];
    const char *head = b->header ? "the header and " : "";
    describe_tensor(one, sizeof one, &l->tensors[l->items[b->first]->index]);
    if (b->n == 1) {
        snprintf(what, cap, "%s%s", head, one);
        return;
    }
    describe_tensor(two, sizeof two, &l->tensors[l->items[b->last]->index]);
    /* "tensor X" twice becomes "tensors X to Y" */
    snprintf(what, cap, "%stensors %s to %s (%zu tensors)", head, one + 7, two + 7, b->n);
}

/* Writes the pending batch, if any, and empties it. A batch of one tensor
 * is written from the caller's buffer. */
static int flush_batch(const mst_writer *w, MPI_File fh, const char *tmp, const write_list *l,
                       batch *b, mst_err *err)
{
    const void *data;
    int rc;
    if (b->n == 0 && !b->header)
        return MST_OK;
    data = b->n == 1 && !b->header ? l->tensors[l->items[b->first]->index].data : b->buf;
    rc = mst_io_write_runs(fh, tmp, b->off, b->len, b->nruns, data, w->rank, WHAT_MARK, err);
    if (rc != MST_OK) {
        char what[2 * (MST_QUOTE_MAX + 200) + 64];
        if (b->n == 1 && !b->header)
            describe_tensor(what, sizeof what, &l->tensors[l->items[b->first]->index]);
        else
            describe_run(what, sizeof what, l, b);
        name_in_message(err, what);
    }
    b->n = 0;
    b->nruns = 0;
    b->bytes = 0;
    b->header = 0;
    return rc;
}

/* Allocates the batch buffer once: BATCH_BYTES, or less when this rank's
 * small tensors (`small_bytes`, with the header if folded) are fewer, so a
 * batch never outgrows it. */
static int batch_buffer(const mst_writer *w, batch *b, uint64_t small_bytes, mst_err *err)
{
    if (!b->buf) {
        b->cap = (size_t)(small_bytes < BATCH_BYTES ? small_bytes : BATCH_BYTES);
        if (!(b->buf = malloc(b->cap)))
            return mst_err_set(err, MST_ERR_NO_MEMORY,
                               "rank %d: out of memory for a write buffer of %zu bytes",
                               w->rank, b->cap);
    }
    return MST_OK;
}

/* Adds bytes [at, at + n) of the file to the batch's runs (room checked by
 * the caller). */
static void add_run(batch *b, uint64_t at, uint64_t n)
{
    if (b->nruns > 0 && b->off[b->nruns - 1] + b->len[b->nruns - 1] == at) {
        b->len[b->nruns - 1] += n;
    } else {
        b->off[b->nruns] = at;
        b->len[b->nruns++] = n;
    }
    b->bytes += n;
}

/* This rank's independent writes: the header on rank 0, then every whole
 * tensor, chosen replica and contiguous box, straight from the caller's
 * buffers, small ones batched. */
int mst_sched_write_own(const mst_writer *w, MPI_File fh, const char *tmp, const mst_plan *plan,
                        const write_list *l, mst_err *err)
{
    unsigned char *stage = NULL;
    size_t cap = 0, nsmall = 1;
    uint64_t small_bytes = 0;
    batch b;
    memset(&b, 0, sizeof b);
    for (size_t k = 0; k < l->n; k++) {
        const local_tensor *t = &l->tensors[l->items[k]->index];
        if (!l->items[k]->strided && !t->fill && t->nbytes < BATCH_SMALL) {
            small_bytes += t->nbytes;
            nsmall++;
        }
    }
    if (l->gather_small) /* mst_sched_write_small writes them */
        small_bytes = 0, nsmall = 1;
    b.rcap = nsmall < BATCH_RUNS ? nsmall : BATCH_RUNS;
    b.off = malloc(b.rcap * sizeof *b.off);
    b.len = malloc(b.rcap * sizeof *b.len);
    if (!b.off || !b.len) {
        mst_err_set(err, MST_ERR_NO_MEMORY, "rank %d: out of memory for a list of %zu writes",
                    w->rank, b.rcap);
        goto out;
    }
    /* with checksums, rank 0 writes the header last (mst_save_write) */
    if (w->rank == 0 && !l->crc) {
        unsigned char len8[8];
        uint64_t n = plan->header.len;
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)(n >> (8 * i));
        if (l->gather_small && 8 + n < BATCH_SMALL) {
            ; /* the first small piece of mst_sched_write_small */
        } else if (small_bytes > 0 && 8 + n < BATCH_SMALL) {
            /* a small header: the first run of the first batch */
            if (batch_buffer(w, &b, small_bytes + 8 + n, err))
                goto out;
            memcpy(b.buf, len8, 8);
            memcpy(b.buf + 8, plan->header.data, n);
            b.header = 1;
            add_run(&b, 0, 8 + n);
        } else if (mst_io_write(fh, tmp, 0, len8, 8, 0, "the header length", err) ||
                   mst_io_write(fh, tmp, 8, plan->header.data, n, 0, "the header", err)) {
            goto out;
        }
    }
    for (size_t k = 0; k < l->n; k++) {
        const write_item *it = l->items[k];
        const local_tensor *t = &l->tensors[it->index];
        if (it->strided)
            continue;
        if (!t->fill && (!l->crc || t->nbytes < BATCH_SMALL))
            crc_item(l, it, t, 0, t->data, t->nbytes);
        if (!t->fill && t->nbytes < BATCH_SMALL && l->gather_small)
            continue;
        if (!t->fill && t->nbytes < BATCH_SMALL) {
            int adjacent = b.nruns > 0 && b.off[b.nruns - 1] + b.len[b.nruns - 1] == it->offset;
            int fits = b.bytes + t->nbytes <= (b.buf ? b.cap : BATCH_BYTES) &&
                       (adjacent || b.nruns < b.rcap);
            if (!fits && flush_batch(w, fh, tmp, l, &b, err))
                break;
            if (b.n == 1 && !b.header) {
                /* a second tensor: the first goes into the buffer too */
                if (batch_buffer(w, &b, small_bytes, err))
                    break;
                memcpy(b.buf, l->tensors[l->items[b.first]->index].data, b.bytes);
            }
            if (b.n > 0 || b.header)
                memcpy(b.buf + b.bytes, t->data, t->nbytes);
            if (b.n == 0)
                b.first = k;
            b.last = k;
            b.n++;
            add_run(&b, it->offset, t->nbytes);
            continue;
        }
        if (t->fill) {
            if (!stage) {
                /* one buffer for all streamed tensors: the staging size, or
                 * the largest of them if smaller */
                for (size_t j = 0; j < l->n; j++) {
                    const local_tensor *u = &l->tensors[l->items[j]->index];
                    if (u->fill && u->nbytes > cap)
                        cap = u->nbytes < w->staging ? (size_t)u->nbytes : w->staging;
                }
                if (!(stage = malloc(cap))) {
                    mst_err_set(err, MST_ERR_NO_MEMORY,
                                "rank %d: out of memory for a staging buffer of %zu bytes",
                                w->rank, cap);
                    break;
                }
            }
            if (write_streamed(w, l, t, fh, tmp, it, stage, cap, WHAT_MARK, err)) {
                name_tensor_in_message(err, t);
                break;
            }
        } else if (l->crc) {
            if (write_checksummed(w, l, t, fh, tmp, it, err)) {
                name_tensor_in_message(err, t);
                break;
            }
        } else if (mst_io_write(fh, tmp, it->offset, t->data, t->nbytes, w->rank, WHAT_MARK,
                                err)) {
            name_tensor_in_message(err, t);
            break;
        }
    }
    if (err->code == MST_OK)
        flush_batch(w, fh, tmp, l, &b, err);
out:
    free(b.buf);
    free(b.off);
    free(b.len);
    free(stage);
    return err->code;
}

int mst_sched_small_pieces(const mst_writer *w, const mst_plan *plan, const write_list *l,
                           unsigned char len8[8], mst_piece **out, size_t *n, mst_err *err)
{
    size_t count = 2;
    mst_piece *p;
    *n = 0;
    for (size_t k = 0; k < l->n; k++) {
        const local_tensor *t = &l->tensors[l->items[k]->index];
        if (!l->items[k]->strided && !t->fill && t->nbytes < BATCH_SMALL)
            count++;
    }
    if (!(p = malloc(count * sizeof *p)))
        return mst_err_set(err, MST_ERR_NO_MEMORY,
                           "rank %d: out of memory for a list of %zu small tensors", w->rank,
                           count);
    *out = p;
    /* the same test as mst_sched_write_own's: the header is small and not last */
    if (w->rank == 0 && !l->crc && 8 + plan->header.len < BATCH_SMALL) {
        for (int i = 0; i < 8; i++)
            len8[i] = (unsigned char)((uint64_t)plan->header.len >> (8 * i));
        p[(*n)++] = (mst_piece){0, 8, len8};
        p[(*n)++] = (mst_piece){8, plan->header.len,
                                (const unsigned char *)plan->header.data};
    }
    for (size_t k = 0; k < l->n; k++) {
        const write_item *it = l->items[k];
        const local_tensor *t = &l->tensors[it->index];
        if (!it->strided && !t->fill && t->nbytes < BATCH_SMALL) {
            if (*n > 0 && p[*n - 1].offset + p[*n - 1].len == it->offset &&
                p[*n - 1].len + t->nbytes <= BATCH_SMALL &&
                p[*n - 1].data + p[*n - 1].len == (const unsigned char *)t->data)
                p[*n - 1].len += t->nbytes; /* neighbours in memory too */
            else
                p[(*n)++] = (mst_piece){it->offset, t->nbytes, t->data};
        }
    }
    return MST_OK;
}

/* The strided boxes of collective round r, in file order; returns how many. */
static size_t round_boxes(const write_list *l, int r, mst_io_box *boxes,
                          char (*what)[MST_QUOTE_MAX + 200])
{
    size_t n = 0;
    for (size_t k = 0; k < l->n; k++) {
        const write_item *it = l->items[k];
        const local_tensor *t = &l->tensors[it->index];
        int ndim = (int)t->t.ndim;
        mst_io_box *b;
        if (!it->strided || it->round != r)
            continue;
        b = &boxes[n];
        b->offset = it->offset;
        b->ndim = ndim;
        b->gb = as_box(it)->dims;
        b->cb = as_box(it)->dims + 2 * (size_t)ndim;
        b->k = as_box(it)->layout.k;
        b->run = as_box(it)->layout.run;
        b->bytes = as_box(it)->layout.bytes;
        b->data = t->data;
        describe_tensor(what[n], sizeof what[n], t);
        b->what = what[n];
        n++;
    }
    return n;
}

const void *mst_sched_tensor_data(void *ctx, size_t local)
{
    return ((const local_tensor *)ctx)[local].data;
}

uint64_t mst_sched_redist_buffer(const mst_writer *w)
{
    if (w->redist_buffer)
        return w->redist_buffer;
    return w->staging < MST_REDIST_BUFFER ? (uint64_t)w->staging : MST_REDIST_BUFFER;
}

int mst_sched_write_strided(const mst_writer *w, const char *tmp, const write_list *l,
                            mst_err *err)
{
    int rounds = 0, rc;
    MPI_File fh = MPI_FILE_NULL;
    mst_io_box *boxes = NULL;
    char (*what)[MST_QUOTE_MAX + 200] = NULL;
    mst_err local, agreed;
    mst_err_clear(&local);
    rc = MPI_Allreduce(&l->rounds, &rounds, 1, MPI_INT, MPI_MAX, w->comm);
    if (rc != MPI_SUCCESS)
        return mst_err_set(err, MST_ERR_MPI, "rank %d: MPI_Allreduce of write rounds failed",
                           w->rank);
    if (rounds == 0)
        return MST_OK;
    boxes = malloc((l->n ? l->n : 1) * sizeof *boxes);
    what = malloc((l->n ? l->n : 1) * sizeof *what);
    if (!boxes || !what)
        mst_err_set(&local, MST_ERR_NO_MEMORY, "rank %d: out of memory", w->rank);
    else
        mst_io_open_shared(w->comm, tmp, w->hints, w->rank, &fh, &local);
    if (mst_agree(w->comm, &local, &agreed)) {
        if (fh != MPI_FILE_NULL)
            MPI_File_close(&fh);
        free(boxes);
        free(what);
        *err = agreed;
        return err->code;
    }
    for (size_t k = 0; k < l->n && local.code == MST_OK; k++)
        if (l->items[k]->strided)
            crc_strided_box(l, l->items[k], &l->tensors[l->items[k]->index]);
    for (int r = 0; r < rounds; r++) {
        size_t n = round_boxes(l, r, boxes, what);
        /* after a failure, keep taking part with nothing to write */
        mst_io_write_boxes(w->comm, fh, tmp, boxes, local.code ? 0 : n, w->rank, &local);
    }
    /* No MPI_File_sync on this shared handle: OMPIO 4.1's vulcan swallows a
     * failed pwritev on an aggregator (success, full count) but leaves a
     * request pending, and MPI_File_sync then fails on that rank alone before
     * its barrier, so the other ranks hang in theirs. Closing is one barrier
     * on every rank, whatever happened; the data is flushed by the per-rank
     * handle's sync in the commit (fsync covers every descriptor of the
     * file), which is where such a hidden failure surfaces. */
    rc = MPI_File_close(&fh);
    if (rc != MPI_SUCCESS && local.code == MST_OK)
        mst_err_set(&local, MST_ERR_IO, "rank %d: MPI_File_close of the shared handle failed",
                    w->rank);
    /* Trust the bytes, not the count: read this rank's boxes back. */
    for (int r = 0; r < rounds && local.code == MST_OK; r++) {
        size_t n = round_boxes(l, r, boxes, what);
        mst_io_verify_boxes(tmp, w->hints, boxes, n, w->rank, &local);
    }
    free(boxes);
    free(what);
    *err = local;
    return err->code;
}

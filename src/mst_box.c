#include "mst_box.h"

#include <stdio.h>

#include "mst_reader.h"

char *mst_box_format(char *out, size_t cap, int ndim, const int64_t *start, const int64_t *count)
{
    size_t o = 0;
    if (cap == 0)
        return out;
    o += (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < ndim && o < cap; d++)
        o += (size_t)snprintf(out + o, cap - o, "%s%lld:%lld", d ? ", " : "",
                              (long long)start[d], (long long)(start[d] + count[d]));
    if (o < cap)
        snprintf(out + o, cap - o, "]");
    return out;
}

int mst_check_box(const char *name, size_t name_len, int dtype, int ndim, const int64_t *shape,
                  const int64_t *start, const int64_t *count, int rank, uint64_t *nbytes,
                  mst_err *err)
{
    char q[MST_QUOTE_MAX], box[160];
    int bits = mst_dtype_bits((mst_dtype)dtype);
    mst_quote(q, sizeof q, name, name_len, MST_QUOTE_LIMIT);
    if (ndim > 0 && (!start || !count))
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT, "tensor %s on rank %d: NULL %s", q,
                           rank, !start ? "start" : "count");
    for (int d = 0; d < ndim; d++) {
        if (start[d] < 0 || count[d] < 0 || start[d] > shape[d] || count[d] > shape[d] - start[d])
            return mst_err_set(err, MST_ERR_SLICE_BOUNDS,
                               "tensor %s on rank %d: box %s is outside the global shape "
                               "(dimension %d has %lld elements)",
                               q, rank, mst_box_format(box, sizeof box, ndim, start, count), d,
                               (long long)shape[d]);
    }
    /* sub-byte boxes must be byte ranges along the last dimension (an empty
     * box has no bytes to place) */
    if (ndim > 0 && bits % 8 && mst_box_volume(ndim, count) > 0) {
        int last = ndim - 1;
        if ((shape[last] * bits) % 8 || (start[last] * bits) % 8 || (count[last] * bits) % 8)
            return mst_err_set(err, MST_ERR_PARTIAL_BYTES,
                               "tensor %s on rank %d: box %s of %s does not start and end on "
                               "whole bytes along the last dimension",
                               q, rank, mst_box_format(box, sizeof box, ndim, start, count),
                               mst_dtype_name((mst_dtype)dtype));
    }
    *nbytes = mst_box_volume(ndim, count) * (uint64_t)bits / 8;
    return MST_OK;
}

uint64_t mst_box_volume(int ndim, const int64_t *count)
{
    uint64_t v = 1;
    for (int d = 0; d < ndim; d++)
        v *= (uint64_t)count[d];
    return v;
}

void mst_box_bytes(int ndim, const int64_t *shape, const int64_t *start, const int64_t *count,
                   int bits, uint64_t *gb, uint64_t *sb, uint64_t *cb)
{
    for (int d = 0; d < ndim; d++) {
        gb[d] = (uint64_t)shape[d];
        sb[d] = (uint64_t)start[d];
        cb[d] = (uint64_t)count[d];
    }
    if (ndim > 0) {
        gb[ndim - 1] = gb[ndim - 1] * (uint64_t)bits / 8;
        sb[ndim - 1] = sb[ndim - 1] * (uint64_t)bits / 8;
        cb[ndim - 1] = cb[ndim - 1] * (uint64_t)bits / 8;
    }
}

void mst_box_layout_of(int ndim, const uint64_t *gb, const uint64_t *sb, const uint64_t *cb,
                       mst_box_layout *out)
{
    uint64_t stride = 1, first = 0, bytes = 1;
    int k = ndim - 1;
    /* first byte: the linear offset of start; total bytes: the volume */
    for (int d = ndim - 1; d >= 0; d--) {
        first += sb[d] * stride;
        stride *= gb[d];
        bytes *= cb[d];
    }
    /* k: the first dimension after which everything is whole */
    while (k > 0 && cb[k] == gb[k])
        k--;
    out->first = first;
    out->bytes = bytes;
    out->k = k < 0 ? 0 : k;
    out->run = 1;
    for (int d = ndim - 1; d >= 0 && d >= out->k; d--)
        out->run *= cb[d];
    out->contiguous = 1;
    for (int d = 0; d < out->k; d++)
        if (cb[d] != 1)
            out->contiguous = 0;
    if (bytes == 0) {
        out->contiguous = 1;
        out->run = 0;
    }
}

int mst_box_overlap(int ndim, const int64_t *s1, const int64_t *c1, const int64_t *s2,
                    const int64_t *c2)
{
    for (int d = 0; d < ndim; d++)
        if (c1[d] == 0 || c2[d] == 0)
            return 0;
    for (int d = 0; d < ndim; d++)
        if (s1[d] + c1[d] <= s2[d] || s2[d] + c2[d] <= s1[d])
            return 0;
    return 1;
}

/* CRC-32 of a save's bytes: the implementation (ISA-L or zlib), the GF(2)
 * arithmetic to shift and combine CRCs (as zlib 1.2.12+ does it), a rank's
 * records and rank 0's resolution of them. See mst_crc.h. */
#include <stdlib.h>
#include <string.h>

#include "mst_crc.h"

#ifdef MST_HAVE_ISAL
#include <isa-l/crc.h>
#else
#include <zlib.h>
#endif

#define POLY 0xedb88320u

uint32_t mst_crc32(uint32_t crc, const void *buf, size_t len)
{
#ifdef MST_HAVE_ISAL
    /* one call at most 2^32 - 1 bytes (its length is an unsigned int) */
    while (len > 0) {
        unsigned int n = len > 0x40000000u ? 0x40000000u : (unsigned int)len;
        crc = crc32_gzip_refl(crc, buf, n);
        buf = (const unsigned char *)buf + n;
        len -= n;
    }
    return crc;
#else
    while (len > 0) {
        uInt n = len > 0x40000000u ? 0x40000000u : (uInt)len;
        crc = (uint32_t)crc32(crc, buf, n);
        buf = (const unsigned char *)buf + n;
        len -= n;
    }
    return crc;
#endif
}

const char *mst_crc_impl(void)
{
#ifdef MST_HAVE_ISAL
    return "isa-l";
#else
    return "zlib";
#endif
}

/* x^(2^k) mod P(x), k = 0..31, reflected (zlib's x2n_table). */
static const uint32_t x2n[32] = {
    0x40000000u, 0x20000000u, 0x08000000u, 0x00800000u,
    0x00008000u, 0xedb88320u, 0xb1e6b092u, 0xa06a2517u,
    0xed627daeu, 0x88d14467u, 0xd7bbfe6au, 0xec447f11u,
    0x8e7ea170u, 0x6427800eu, 0x4d47bae0u, 0x09fe548fu,
    0x83852d0fu, 0x30362f1au, 0x7b5a9cc3u, 0x31fec169u,
    0x9fec022au, 0x6c8dedc4u, 0x15d6874du, 0x5fde7a4eu,
    0xbad90e37u, 0x2e4e5eefu, 0x4eaba214u, 0xa8a472c0u,
    0x429a969eu, 0x148d302au, 0xc40ba6d0u, 0xc4e22c3cu};

/* a * b mod P(x), reflected */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t m = 1u << 31, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
    }
    return p;
}

/* x^(8 n) mod P(x): the operator of n zero bytes */
static uint32_t x8nmodp(uint64_t n)
{
    uint32_t p = 1u << 31; /* x^0 */
    unsigned k = 3;
    while (n) {
        if (n & 1)
            p = multmodp(x2n[k & 31], p);
        n >>= 1;
        k++;
    }
    return p;
}

uint32_t mst_crc_shift(uint32_t reg, uint64_t n)
{
    return n ? multmodp(x8nmodp(n), reg) : reg;
}

uint32_t mst_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
    return mst_crc_shift(crc_a, len_b) ^ crc_b;
}

uint32_t mst_crc_zeros(uint64_t n)
{
    return mst_crc_shift(0xffffffffu, n) ^ 0xffffffffu;
}

void mst_crc_hex(char *out, uint32_t crc)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++)
        out[i] = hex[(crc >> (28 - 4 * i)) & 0xf];
}

void mst_crc_acc_init(mst_crc_acc *a)
{
    memset(a, 0, sizeof *a);
}

void mst_crc_acc_free(mst_crc_acc *a)
{
    free(a->r);
    memset(a, 0, sizeof *a);
}

static void push(mst_crc_acc *a, uint64_t begin, uint64_t covered, uint32_t value, int whole)
{
    if (a->n == a->cap) {
        size_t ncap = a->cap ? 2 * a->cap : 64;
        mst_crc_rec *g = realloc(a->r, ncap * sizeof *g);
        if (!g) {
            a->no_memory = 1;
            return;
        }
        a->r = g;
        a->cap = ncap;
    }
    a->r[a->n].begin = begin;
    a->r[a->n].covered = covered;
    a->r[a->n].value = value;
    a->r[a->n].whole = (uint32_t)whole;
    a->n++;
}

void mst_crc_close(mst_crc_acc *a)
{
    uint32_t reg;
    if (!a->open)
        return;
    a->open = 0;
    if (a->running && a->end == a->len) {
        push(a, a->begin, a->covered, ~a->reg, 1);
        return;
    }
    reg = a->reg;
    if (a->running) /* the linear part: the register as if run from 0 */
        reg ^= mst_crc_shift(0xffffffffu, a->end);
    push(a, a->begin, a->covered, mst_crc_shift(reg, a->len - a->end), 0);
}

void mst_crc_add_whole(mst_crc_acc *a, uint64_t begin, const void *data, uint64_t len)
{
    mst_crc_close(a);
    push(a, begin, len, mst_crc32(0, data, (size_t)len), 1);
}

void mst_crc_add_piece(mst_crc_acc *a, uint64_t begin, uint64_t tlen, uint64_t pos,
                       const void *data, uint64_t n)
{
    if (n == 0)
        return;
    if (a->open && (a->begin != begin || pos < a->end))
        mst_crc_close(a);
    if (!a->open) {
        a->open = 1;
        a->begin = begin;
        a->len = tlen;
        a->covered = 0;
        a->running = pos == 0;
        a->reg = a->running ? 0xffffffffu : 0;
        a->end = pos;
    } else if (pos > a->end) {
        uint64_t gap = pos - a->end;
        if (a->running) {
            a->reg ^= mst_crc_shift(0xffffffffu, a->end);
            a->running = 0;
        }
        if (gap != a->op_n) { /* boxes: the same gap row after row */
            a->op_n = gap;
            a->op = x8nmodp(gap);
        }
        a->reg = multmodp(a->op, a->reg);
    }
    a->reg = ~mst_crc32(~a->reg, data, (size_t)n);
    a->end = pos + n;
    a->covered += n;
}

static size_t find_tensor(const uint64_t *begin, const uint64_t *len, size_t n, uint64_t at)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (begin[mid] < at)
            lo = mid + 1;
        else
            hi = mid;
    }
    while (lo < n && begin[lo] == at && len[lo] == 0)
        lo++;
    return lo < n && begin[lo] == at ? lo : (size_t)-1;
}

int mst_crc_resolve(const mst_crc_rec *recs, size_t nrecs, const uint64_t *begin,
                    const uint64_t *len, size_t ntensors, uint32_t *out, uint64_t *covered,
                    size_t *bad)
{
    /* out: XOR of the values; covered: bytes; the low bit of the number of
     * whole records kept in covered's place would be obscure: count in
     * parity[] instead, reusing out's neighbour array */
    unsigned char *parity = calloc(ntensors ? ntensors : 1, 1);
    if (!parity) {
        *bad = (size_t)-1;
        return -1;
    }
    memset(out, 0, ntensors * sizeof *out);
    memset(covered, 0, ntensors * sizeof *covered);
    for (size_t i = 0; i < nrecs; i++) {
        size_t k = find_tensor(begin, len, ntensors, recs[i].begin);
        if (k == (size_t)-1) {
            free(parity);
            *bad = (size_t)-1;
            return -1;
        }
        out[k] ^= recs[i].value;
        covered[k] += recs[i].covered;
        parity[k] ^= (unsigned char)(recs[i].whole & 1);
    }
    for (size_t k = 0; k < ntensors; k++) {
        if (covered[k] != len[k]) {
            free(parity);
            *bad = k;
            return -1;
        }
        if (len[k] > 0 && !parity[k])
            out[k] ^= mst_crc_zeros(len[k]);
    }
    free(parity);
    return 0;
}

/* CRC-32 (the value of zlib's crc32, Python's zlib.crc32) of the bytes a
 * save writes, for the "mst.crc32" metadata entry (see mst.h, "Checksums").
 *
 * Each rank keeps one record per tensor it writes bytes of. A whole tensor
 * (or a streamed one, or a box written by one rank from its first byte to
 * its last) gives its CRC; anything else (boxes, the chunks of strided boxes
 * written after their redistribution) gives the "linear part" of the CRC of
 * the tensor with this rank's bytes in place and zeros everywhere else: the
 * CRC register run from 0 over the tensor's whole length. CRC-32 is linear
 * over GF(2), so rank 0 gets a tensor's CRC from the parts of all ranks by
 * XOR and one correction for the length (mst_crc_zeros). Pieces in file order
 * are folded as they come (shift the register over the gap, run it over the
 * bytes); no rank sends more than one record per tensor and piece group.
 *
 * The CRC runs at memory speed with Intel's ISA-L (crc32_gzip_refl) when mst
 * is built with it, else with zlib's crc32. The GF(2) arithmetic (shifts,
 * combine) is here, as in zlib 1.2.12+, so it needs neither. */
#ifndef MST_CRC_H
#define MST_CRC_H

#include <stddef.h>
#include <stdint.h>

#include "mst_reader.h" /* mst_crc32, public: zlib's crc32(crc, buf, len) */

/* The implementation compiled in: "isa-l" or "zlib". */
const char *mst_crc_impl(void);

/* CRC of A then B, from crc(A), crc(B) and B's length (zlib's crc32_combine). */
uint32_t mst_crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* The raw register `reg` (no pre/post inversion) after `n` zero bytes. */
uint32_t mst_crc_shift(uint32_t reg, uint64_t n);

/* crc32 of n zero bytes. */
uint32_t mst_crc_zeros(uint64_t n);

/* One rank's record of a tensor, sent to rank 0 (24 bytes). */
typedef struct mst_crc_rec {
    uint64_t begin;   /* absolute file offset of the tensor's first byte */
    uint64_t covered; /* bytes of the tensor this record covers */
    uint32_t value;   /* whole: the CRC; else the linear part (above) */
    uint32_t whole;   /* 1: value is the tensor's CRC */
} mst_crc_rec;

/* A rank's records, and the tensor it is folding pieces of. */
typedef struct mst_crc_acc {
    mst_crc_rec *r;
    size_t n, cap;
    int no_memory;
    /* the open record (pieces of one tensor in file order) */
    int open;
    uint64_t begin, len, end, covered;
    uint32_t reg;     /* register: from ~0 (running, no gap yet) or from 0 */
    int running;
    uint64_t op_n;    /* the cached shift operator: x^(8 op_n) */
    uint32_t op;
} mst_crc_acc;

void mst_crc_acc_init(mst_crc_acc *a);
void mst_crc_acc_free(mst_crc_acc *a);

/* A whole tensor at file offset `begin`: its CRC. */
void mst_crc_add_whole(mst_crc_acc *a, uint64_t begin, const void *data, uint64_t len);

/* Bytes [pos, pos + n) of the tensor at `begin` of `tlen` bytes. Pieces of
 * one tensor given in increasing pos fold into one record; anything else
 * starts another (rank 0 XORs them). */
void mst_crc_add_piece(mst_crc_acc *a, uint64_t begin, uint64_t tlen, uint64_t pos,
                       const void *data, uint64_t n);

/* Closes the open record (done before the records are sent). */
void mst_crc_close(mst_crc_acc *a);

/* Rank 0: the CRCs of a file's tensors from every rank's records.
 * begin/len: the tensors in data-offset order (absolute offsets); out gets
 * one CRC each. Returns 0, or -1 (with *bad the index of the tensor) when
 * the records do not cover a tensor exactly or name no tensor. */
int mst_crc_resolve(const mst_crc_rec *recs, size_t nrecs, const uint64_t *begin,
                    const uint64_t *len, size_t ntensors, uint32_t *out, uint64_t *covered,
                    size_t *bad);

/* The 8 lowercase hexadecimal digits of crc into out[0..8). */
void mst_crc_hex(char *out, uint32_t crc);

#endif

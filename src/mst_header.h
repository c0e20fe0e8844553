/* Safetensors header JSON: the canonical encoder (the reference writer's exact
 * bytes) and a strict decoder with the reference reader's rules. Pure: no MPI,
 * no I/O.
 *
 * The decoder is a purpose-built parser rather than cJSON: the rules need the
 * raw text of every integer (cJSON stores numbers as doubles, so 1e3, 1000.0
 * and 2^53+1 would be indistinguishable from valid integers), duplicate keys,
 * byte positions for messages, and a hard bound on memory and nesting.
 *
 * Files: mst_header_encode.c (the encoder); mst_header_json.c (JSON values)
 * and mst_header_parse.c (the document) behind mst_header_parse.h; and
 * mst_header.c (validation, the length field, lookup). */
#ifndef MST_HEADER_H
#define MST_HEADER_H

#include <stddef.h>
#include <stdint.h>

#include "mst_reader.h"
#include "mst_buf.h"
#include "mst_err.h"

/* One tensor as the encoder sees it. */
typedef struct mst_tensor_desc {
    const char *name;
    uint32_t name_len;
    uint8_t dtype;
    uint32_t ndim;
    const int64_t *shape;
} mst_tensor_desc;

typedef struct mst_kv {
    const char *key;
    uint32_t key_len;
    const char *value;
    uint32_t value_len;
} mst_kv;

/* JSON string with the reference's escapes: \" \\ \b \f \n \r \t, other
 * control characters as \u00xx, everything else (0x7f, UTF-8) raw. */
void mst_json_put_string(mst_buf *b, const char *s, size_t len);

/*
 * Appends the canonical header to `out` (which must be empty): "__metadata__"
 * first when nmeta > 0 (entries in the order given), then tensors[i] with
 * data_offsets [pos[i], pos[i+1]], then spaces up to a multiple of 8.
 * MST_ERR_HEADER_TOO_LARGE past MST_MAX_HEADER_SIZE bytes.
 */
int mst_header_encode(mst_buf *out, const mst_kv *meta, size_t nmeta,
                      const mst_tensor_desc *const *tensors, const uint64_t *pos,
                      size_t ntensors, mst_err *err);

/* The same, asking `next` for the tensors in order, i = 0, 1, ...: it
 * returns tensor i and sets its data offsets. The plan uses it to encode
 * straight from its declarations, without arrays of pointers and offsets. */
typedef const mst_tensor_desc *(*mst_header_next_fn)(void *ctx, size_t i, uint64_t *begin,
                                                     uint64_t *end);
int mst_header_encode_each(mst_buf *out, const mst_kv *meta, size_t nmeta,
                           mst_header_next_fn next, void *ctx, size_t ntensors, mst_err *err);

/* Decoded header. Strings are NUL-terminated copies (they may contain NUL
 * from \u0000 escapes; the _len fields are authoritative). */
typedef struct mst_header_tensor {
    char *name;
    size_t name_len;
    mst_dtype dtype;
    uint32_t ndim;
    int64_t *shape;
    uint64_t begin, end;
    size_t pos; /* byte position of the name in the header, for messages */
} mst_header_tensor;

typedef struct mst_header_meta {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
} mst_header_meta;

typedef struct mst_header {
    mst_header_tensor *tensors; /* sorted by (begin, end) after validation */
    size_t ntensors;
    mst_header_meta *meta;      /* sorted by key */
    size_t nmeta;
    uint64_t data_len;          /* end of the last tensor */
    /* storage */
    char *strings;
    int64_t *dims;
    size_t *by_name;            /* tensor indices sorted by name */
} mst_header;

/*
 * Parses and validates header bytes json[0..n) (n = the length field N) for a
 * file whose data buffer is data_len bytes (pass UINT64_MAX to skip the check
 * that the last tensor ends exactly at the end of the file). Every rule of
 * the reference reader after the length checks, plus duplicate names and
 * keys and integers above MST_MAX_OFFSET. It accepts what serde accepts
 * where the reference does: an entry as the array [dtype, shape, offsets], a
 * dtype as {"F32": null} or {"F32": {}}, unknown fields, any key order, 127
 * levels of nesting. Messages start with the rule and give file offsets
 * (8 + index into json). On failure *h is freed and zeroed.
 */
int mst_header_decode(mst_header *h, const char *json, size_t n, uint64_t data_len,
                      mst_err *err);
void mst_header_free(mst_header *h);

/*
 * The reader's checks on the first 8 bytes of a file of file_size bytes (the
 * reference's order: too small, too large, past the end). On success *n is
 * the header length N and the data buffer is file_size - 8 - N bytes.
 * `len8` may be NULL when file_size < 8.
 */
int mst_header_check_length(uint64_t file_size, const unsigned char *len8, uint64_t *n,
                            mst_err *err);
/* A decoded header as flat bytes appended to b (0, or -1 out of memory), so
 * that one rank decodes and validates a header and the others take the
 * result without parsing JSON again (the parallel loader). unpack reads one
 * from *p (bounded by end), moving *p past it; -1 on malformed bytes or no
 * memory, with h emptied. */
int mst_header_pack(mst_buf *b, const mst_header *h);
int mst_header_unpack(mst_header *h, const char **p, const char *end);

/* The CRC-32 the "mst.crc32" entry records for tensor i (< ntensors, in
 * data offset order; format in mst.h): MST_OK, MST_ERR_NOT_FOUND (no entry)
 * or MST_ERR_CHECKSUM (the entry is malformed), with a message in *err. */
int mst_header_crc(const mst_header *h, size_t i, uint32_t *crc, mst_err *err);

/* Index of tensor `name`, or (size_t)-1. */
size_t mst_header_find(const mst_header *h, const char *name, size_t len);

/* The public description of a decoded tensor (pointers into the header). */
void mst_header_tensor_info(const mst_header_tensor *t, mst_tensor_info *out);

#endif

/* libFuzzer target over the reader's checks: the input is a whole file image
 * (8-byte length, header, data buffer). It runs the length checks and the
 * strict decoder and validator exactly as mst_reader_open does, then checks
 * invariants of every accepted header and that the canonical encoder's
 * re-encoding of it decodes to the same tensors. A violated invariant traps.
 *
 * Built with clang -fsanitize=fuzzer,address,undefined (MST_ENABLE_FUZZING),
 * and without libFuzzer by tests/unit/fuzz_replay.c, which feeds it saved inputs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mst_buf.h"
#include "mst_header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static void check_accepted(const mst_header *h, uint64_t data_len)
{
    uint64_t at = 0;
    REQUIRE(h->data_len == data_len);
    for (size_t i = 0; i < h->ntensors; i++) {
        const mst_header_tensor *t = &h->tensors[i];
        uint64_t nel = 1;
        REQUIRE(t->begin == at && t->end >= t->begin && t->end <= MST_MAX_OFFSET);
        REQUIRE(mst_dtype_bits(t->dtype) > 0);
        for (uint32_t d = 0; d < t->ndim; d++) {
            REQUIRE(t->shape[d] >= 0);
            nel *= (uint64_t)t->shape[d]; /* validated: no overflow */
        }
        REQUIRE(nel * (uint64_t)mst_dtype_bits(t->dtype) == (t->end - t->begin) * 8);
        REQUIRE(strlen(t->name) <= t->name_len);
        REQUIRE(mst_header_find(h, t->name, t->name_len) == i);
        at = t->end;
    }
    REQUIRE(at == data_len);
    for (size_t i = 1; i < h->nmeta; i++) {
        const mst_header_meta *a = &h->meta[i - 1], *b = &h->meta[i];
        size_t m = a->key_len < b->key_len ? a->key_len : b->key_len;
        int c = memcmp(a->key, b->key, m);
        REQUIRE(c < 0 || (c == 0 && a->key_len < b->key_len));
    }
}

/* The flat form another rank receives (mst_header_pack, the parallel
 * loader) must unpack to the same header, and every cut of it must be
 * refused without reading past its end. */
static void check_pack(const mst_header *h)
{
    mst_buf b;
    mst_header u;
    const char *p;
    mst_buf_init(&b, 0);
    REQUIRE(mst_header_pack(&b, h) == 0);
    p = b.data;
    REQUIRE(mst_header_unpack(&u, &p, b.data + b.len) == 0 && p == b.data + b.len);
    REQUIRE(u.ntensors == h->ntensors && u.nmeta == h->nmeta && u.data_len == h->data_len);
    for (size_t i = 0; i < h->ntensors; i++) {
        const mst_header_tensor *a = &h->tensors[i], *c = &u.tensors[i];
        REQUIRE(a->name_len == c->name_len && memcmp(a->name, c->name, a->name_len) == 0);
        REQUIRE(a->dtype == c->dtype && a->ndim == c->ndim && a->begin == c->begin &&
                a->end == c->end && a->pos == c->pos && u.by_name[i] == h->by_name[i]);
        for (uint32_t d = 0; d < a->ndim; d++)
            REQUIRE(a->shape[d] == c->shape[d]);
        REQUIRE(mst_header_find(&u, a->name, a->name_len) == i);
    }
    for (size_t i = 0; i < h->nmeta; i++) {
        const mst_header_meta *a = &h->meta[i], *c = &u.meta[i];
        REQUIRE(a->key_len == c->key_len && memcmp(a->key, c->key, a->key_len) == 0);
        REQUIRE(a->value_len == c->value_len && memcmp(a->value, c->value, a->value_len) == 0);
    }
    mst_header_free(&u);
    for (size_t cut = 0; cut < b.len; cut += 1 + cut / 16) {
        char *copy = malloc(cut ? cut : 1);
        REQUIRE(copy);
        memcpy(copy, b.data, cut);
        p = copy;
        REQUIRE(mst_header_unpack(&u, &p, copy + cut) != 0);
        free(copy);
    }
    mst_buf_free(&b);
}

/* The canonical encoding of an accepted header must decode to the same
 * tensors and metadata. */
static void check_roundtrip(const mst_header *h)
{
    mst_tensor_desc *desc = calloc(h->ntensors + 1, sizeof *desc);
    const mst_tensor_desc **ptr = calloc(h->ntensors + 1, sizeof *ptr);
    uint64_t *pos = calloc(h->ntensors + 1, sizeof *pos);
    mst_kv *kv = calloc(h->nmeta + 1, sizeof *kv);
    mst_buf out;
    mst_err err;
    mst_header back;
    mst_buf_init(&out, 0);
    if (!desc || !ptr || !pos || !kv)
        goto done;
    for (size_t i = 0; i < h->ntensors; i++) {
        const mst_header_tensor *t = &h->tensors[i];
        if (t->name_len > UINT32_MAX)
            goto done;
        desc[i].name = t->name;
        desc[i].name_len = (uint32_t)t->name_len;
        desc[i].dtype = (uint8_t)t->dtype;
        desc[i].ndim = t->ndim;
        desc[i].shape = t->shape;
        ptr[i] = &desc[i];
        pos[i] = t->begin;
        pos[i + 1] = t->end;
    }
    for (size_t i = 0; i < h->nmeta; i++) {
        if (h->meta[i].key_len > UINT32_MAX || h->meta[i].value_len > UINT32_MAX)
            goto done;
        kv[i].key = h->meta[i].key;
        kv[i].key_len = (uint32_t)h->meta[i].key_len;
        kv[i].value = h->meta[i].value;
        kv[i].value_len = (uint32_t)h->meta[i].value_len;
    }
    if (mst_header_encode(&out, kv, h->nmeta, ptr, pos, h->ntensors, &err) != MST_OK)
        goto done; /* only "too large" or out of memory can happen */
    REQUIRE(out.len % 8 == 0);
    REQUIRE(mst_header_decode(&back, out.data, out.len, h->data_len, &err) == MST_OK);
    REQUIRE(back.ntensors == h->ntensors && back.nmeta == h->nmeta);
    for (size_t i = 0; i < h->ntensors; i++) {
        const mst_header_tensor *a = &h->tensors[i], *b = &back.tensors[i];
        REQUIRE(a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0);
        REQUIRE(a->dtype == b->dtype && a->ndim == b->ndim && a->begin == b->begin &&
                a->end == b->end);
        REQUIRE(a->ndim == 0 || memcmp(a->shape, b->shape, a->ndim * sizeof *a->shape) == 0);
    }
    for (size_t i = 0; i < h->nmeta; i++) {
        REQUIRE(h->meta[i].key_len == back.meta[i].key_len &&
                h->meta[i].value_len == back.meta[i].value_len);
        REQUIRE(memcmp(h->meta[i].value, back.meta[i].value, h->meta[i].value_len) == 0);
    }
    mst_header_free(&back);
done:
    mst_buf_free(&out);
    free(desc);
    free(ptr);
    free(pos);
    free(kv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mst_err err;
    mst_header h;
    uint64_t n = 0;
    if (mst_header_check_length(size, size >= 8 ? data : NULL, &n, &err) != MST_OK) {
        REQUIRE(err.code != MST_OK && err.msg[0] != '\0');
        return 0;
    }
    if (mst_header_decode(&h, (const char *)data + 8, (size_t)n, size - 8 - n, &err) != MST_OK) {
        REQUIRE(err.code != MST_OK && err.msg[0] != '\0' && h.tensors == NULL);
        return 0;
    }
    check_accepted(&h, size - 8 - n);
    check_roundtrip(&h);
    check_pack(&h);
    mst_header_free(&h);
    return 0;
}

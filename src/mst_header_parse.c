/* The safetensors document in the header JSON: the top-level object of
 * tensor entries and "__metadata__", each entry's dtype, shape and
 * data_offsets, in the forms serde accepts (see mst_header_decode). Builds
 * the mst_header the validation in mst_header.c then checks. */
#include "mst_header_parse.h"
#include "mst_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int push_dim(mst_header_parser *p, uint64_t v)
{
    if (p->ndims == p->dcap) {
        size_t cap = p->dcap ? p->dcap * 2 : 64;
        int64_t *d = mst_realloc_big(p->h->dims, cap * sizeof *d);
        if (!d)
            return mst_json_no_memory(p);
        p->h->dims = d;
        p->dcap = cap;
    }
    p->h->dims[p->ndims++] = (int64_t)v;
    return MST_OK;
}

static const char *tensor_q(mst_header_parser *p, const mst_header_tensor *t)
{
    return mst_quote(p->q, sizeof p->q, t->name, t->name_len, MST_QUOTE_LIMIT);
}

/* mst_json_fail() with "tensor NAME: " in front of the reason. */
static int fail_tensor(mst_header_parser *p, int code, const mst_header_tensor *t, const char *what)
{
    char msg[MST_QUOTE_MAX + 160];
    snprintf(msg, sizeof msg, "tensor %s: %s", tensor_q(p, t), what);
    return mst_json_fail(p, code, msg);
}

/* "dtype": a variant name, or the single-key map {"F32": null} that serde
 * also accepts for a unit enum variant. */
static int parse_dtype(mst_header_parser *p, mst_header_tensor *t)
{
    char *dt;
    size_t dlen, at, mark = p->str_used;
    int as_map = 0;
    mst_dtype d;
    mst_json_skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '{') {
        as_map = 1;
        p->i++;
        mst_json_skip_ws(p);
    }
    at = p->i;
    if (p->i >= p->n || p->s[p->i] != '"')
        return fail_tensor(p, MST_ERR_FORMAT, t, "\"dtype\": expected a string");
    if (mst_json_string(p, 1, &dt, &dlen))
        return p->err->code;
    p->str_used = mark;
    if (strlen(dt) != dlen || mst_dtype_from_name(dt, &d) != MST_OK) {
        char qd[64], what[128];
        p->i = at;
        snprintf(what, sizeof what, "unknown dtype %s", mst_quote(qd, sizeof qd, dt, dlen, 32));
        return fail_tensor(p, MST_ERR_UNKNOWN_DTYPE, t, what);
    }
    t->dtype = d;
    if (!as_map)
        return MST_OK;
    /* serde reads a unit variant's value as (): null, or an empty map */
    if (mst_json_expect(p, ':', "\"dtype\": expected ':'"))
        return p->err->code;
    mst_json_skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '{') {
        p->i++;
        if (mst_json_expect(p, '}', "\"dtype\": a unit variant's value must be null or {}"))
            return p->err->code;
    } else if (p->n - p->i < 4 || memcmp(p->s + p->i, "null", 4) != 0) {
        return fail_tensor(p, MST_ERR_FORMAT, t,
                           "\"dtype\": a unit variant's value must be null or {}");
    } else {
        p->i += 4;
    }
    if (mst_json_expect(p, '}', "\"dtype\": expected '}' after a one-entry variant map"))
        return p->err->code;
    return MST_OK;
}

static int parse_shape(mst_header_parser *p, mst_header_tensor *t, size_t *dim_off)
{
    if (mst_json_expect(p, '[', "\"shape\": expected an array"))
        return p->err->code;
    *dim_off = p->ndims;
    t->ndim = 0;
    mst_json_skip_ws(p);
    if (p->i < p->n && p->s[p->i] == ']') {
        p->i++;
        return MST_OK;
    }
    for (;;) {
        uint64_t v;
        if (mst_json_uint(p, "shape", &v) || push_dim(p, v))
            return p->err->code;
        if (t->ndim == UINT32_MAX)
            return fail_tensor(p, MST_ERR_FORMAT, t, "\"shape\": too many dimensions");
        t->ndim++;
        mst_json_skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        return mst_json_expect(p, ']', "\"shape\": expected ',' or ']'");
    }
}

static int parse_offsets(mst_header_parser *p, mst_header_tensor *t)
{
    if (mst_json_expect(p, '[', "\"data_offsets\": expected an array of two integers") ||
        mst_json_uint(p, "data_offsets", &t->begin) ||
        mst_json_expect(p, ',', "\"data_offsets\": expected two integers") ||
        mst_json_uint(p, "data_offsets", &t->end) ||
        mst_json_expect(p, ']', "\"data_offsets\": expected exactly two integers"))
        return p->err->code;
    return MST_OK;
}

/* A tensor entry: an object with dtype, shape, data_offsets (in any order,
 * unknown fields ignored, each field once), or, as serde also accepts for a
 * struct, an array of exactly those three values in that order. */
static int parse_entry(mst_header_parser *p, mst_header_tensor *t, size_t *dim_off, int depth)
{
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    mst_json_skip_ws(p);
    if (p->i >= p->n || (p->s[p->i] != '{' && p->s[p->i] != '['))
        return fail_tensor(p, MST_ERR_FORMAT, t, "expected an object");
    if (depth <= 0)
        return mst_json_too_deep(p);
    if (p->s[p->i] == '[') {
        p->i++;
        if (parse_dtype(p, t) ||
            mst_json_expect(p, ',', "tensor array: expected 3 elements") ||
            parse_shape(p, t, dim_off) ||
            mst_json_expect(p, ',', "tensor array: expected 3 elements") ||
            parse_offsets(p, t) ||
            mst_json_expect(p, ']', "tensor array: expected exactly 3 elements"))
            return p->err->code;
        return MST_OK;
    }
    p->i++;
    mst_json_skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            size_t key_at;
            char *key = NULL;
            size_t klen = 0;
            /* keys go to the arena and are dropped again: only three matter */
            size_t mark = p->str_used;
            mst_json_skip_ws(p);
            key_at = p->i;
            if (mst_json_string(p, 1, &key, &klen) || mst_json_expect(p, ':', "expected ':'"))
                return p->err->code;
            p->str_used = mark;
            if (klen == 5 && memcmp(key, "dtype", 5) == 0) {
                if (have_dtype++) {
                    p->i = key_at;
                    return fail_tensor(p, MST_ERR_FORMAT, t, "duplicate field \"dtype\"");
                }
                if (parse_dtype(p, t))
                    return p->err->code;
            } else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
                if (have_shape++) {
                    p->i = key_at;
                    return fail_tensor(p, MST_ERR_FORMAT, t, "duplicate field \"shape\"");
                }
                if (parse_shape(p, t, dim_off))
                    return p->err->code;
            } else if (klen == 12 && memcmp(key, "data_offsets", 12) == 0) {
                if (have_offsets++) {
                    p->i = key_at;
                    return fail_tensor(p, MST_ERR_FORMAT, t, "duplicate field \"data_offsets\"");
                }
                if (parse_offsets(p, t))
                    return p->err->code;
            } else if (mst_json_skip_value(p, depth - 1)) {
                return p->err->code;
            }
            mst_json_skip_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (mst_json_expect(p, '}', "expected ',' or '}' in a tensor entry"))
                return p->err->code;
            break;
        }
    }
    if (!have_dtype || !have_shape || !have_offsets) {
        char what[64];
        snprintf(what, sizeof what, "missing field \"%s\"",
                 !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
        return fail_tensor(p, MST_ERR_FORMAT, t, what);
    }
    return MST_OK;
}

static int parse_metadata(mst_header_parser *p, int depth)
{
    mst_header *h = p->h;
    mst_json_skip_ws(p);
    if (p->i < p->n && p->s[p->i] == 'n')
        return mst_json_literal(p, "null"); /* the reference reads null as "no metadata" */
    if (p->i >= p->n || p->s[p->i] != '{')
        return mst_json_fail(p, MST_ERR_FORMAT, "\"__metadata__\" must be an object of strings");
    if (depth <= 0)
        return mst_json_too_deep(p);
    p->i++;
    mst_json_skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
        return MST_OK;
    }
    for (;;) {
        mst_header_meta *m;
        if (h->nmeta == p->mcap) {
            size_t cap = p->mcap ? p->mcap * 2 : 8;
            mst_header_meta *nm = realloc(h->meta, cap * sizeof *nm);
            if (!nm)
                return mst_json_no_memory(p);
            h->meta = nm;
            p->mcap = cap;
        }
        m = &h->meta[h->nmeta];
        if (mst_json_string(p, 1, &m->key, &m->key_len) || mst_json_expect(p, ':', "expected ':'"))
            return p->err->code;
        mst_json_skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != '"') {
            char q[MST_QUOTE_MAX], what[MST_QUOTE_MAX + 64];
            snprintf(what, sizeof what, "\"__metadata__\" value of key %s is not a string",
                     mst_quote(q, sizeof q, m->key, m->key_len, MST_QUOTE_LIMIT));
            return mst_json_fail(p, MST_ERR_FORMAT, what);
        }
        if (mst_json_string(p, 1, &m->value, &m->value_len))
            return p->err->code;
        h->nmeta++;
        mst_json_skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
            p->i++;
            continue;
        }
        return mst_json_expect(p, '}', "expected ',' or '}' in \"__metadata__\"");
    }
}

static int parse_top(mst_header_parser *p)
{
    mst_header *h = p->h;
    int have_meta = 0;
    if (mst_json_expect(p, '{', "the header must be a JSON object"))
        return p->err->code;
    mst_json_skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            char *name;
            size_t len, at;
            mst_json_skip_ws(p);
            at = p->i;
            if (mst_json_string(p, 1, &name, &len) || mst_json_expect(p, ':', "expected ':'"))
                return p->err->code;
            if (len == 12 && memcmp(name, "__metadata__", 12) == 0) {
                p->str_used -= len + 1;
                if (have_meta++) {
                    p->i = at;
                    return mst_json_fail(p, MST_ERR_FORMAT, "duplicate \"__metadata__\"");
                }
                if (parse_metadata(p, MST_JSON_MAX_DEPTH - 1))
                    return p->err->code;
            } else {
                mst_header_tensor *t;
                if (h->ntensors == p->tcap) {
                    size_t cap = p->tcap ? p->tcap * 2 : 64;
                    mst_header_tensor *nt = mst_realloc_big(h->tensors, cap * sizeof *nt);
                    size_t *nd = mst_realloc_big(p->dim_off, cap * sizeof *nd);
                    if (nt)
                        h->tensors = nt;
                    if (nd)
                        p->dim_off = nd;
                    if (!nt || !nd)
                        return mst_json_no_memory(p);
                    p->tcap = cap;
                }
                t = &h->tensors[h->ntensors];
                memset(t, 0, sizeof *t);
                t->name = name;
                t->name_len = len;
                t->pos = 8 + at;
                p->dim_off[h->ntensors] = 0;
                if (parse_entry(p, t, &p->dim_off[h->ntensors], MST_JSON_MAX_DEPTH - 1))
                    return p->err->code;
                h->ntensors++;
            }
            mst_json_skip_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (mst_json_expect(p, '}', "expected ',' or '}'"))
                return p->err->code;
            break;
        }
    }
    mst_json_skip_ws(p);
    if (p->i != p->n)
        return mst_json_fail(p, MST_ERR_FORMAT,
                    "trailing characters after the JSON object (padding must be spaces)");
    return MST_OK;
}

int mst_header_parse(mst_header *h, const char *json, size_t n, mst_err *err)
{
    mst_header_parser p;
    int rc;
    memset(&p, 0, sizeof p);
    p.s = json;
    p.n = n;
    p.err = err;
    p.h = h;
    h->strings = malloc(n + 1);
    if (!h->strings)
        return mst_json_no_memory(&p);
    rc = parse_top(&p);
    if (rc == MST_OK)
        for (size_t i = 0; i < h->ntensors; i++)
            h->tensors[i].shape = h->dims ? h->dims + p.dim_off[i] : NULL;
    free(p.dim_off);
    return rc;
}

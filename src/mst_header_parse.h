/* The header decoder's internals, shared by its two layers: the JSON values
 * (mst_header_json.c: strings, numbers, literals, skipping unknown values,
 * with serde_json's rules) and the safetensors document built from them
 * (mst_header_parse.c: tensor entries and "__metadata__"). The rules that
 * need the whole header (offsets, sizes, duplicate names) are in
 * mst_header.c. Pure: no MPI, no I/O. Not for use outside these files. */
#ifndef MST_HEADER_PARSE_H
#define MST_HEADER_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "mst_err.h"
#include "mst_header.h"

/* serde_json's recursion limit: 128, counted down on entering each array or
 * object and failing when it reaches 0, so 127 levels parse and the 128th
 * (the top-level object counts) is "recursion limit exceeded". */
#define MST_JSON_MAX_DEPTH 127

typedef struct mst_header_parser {
    const char *s;
    size_t n;
    size_t i;
    mst_err *err;
    mst_header *h;
    size_t str_used;  /* bytes used in h->strings */
    size_t tcap, mcap, dcap, ndims;
    size_t *dim_off;  /* per tensor: index of its shape in h->dims */
    char q[MST_QUOTE_MAX]; /* scratch for quoted names in messages */
} mst_header_parser;

/* ---- JSON values (mst_header_json.c) ---------------------------------- */

/* Sets p->err to "invalid header at file offset 8 + p->i: what" and returns
 * its code. */
int mst_json_fail(mst_header_parser *p, int code, const char *what);
int mst_json_no_memory(mst_header_parser *p);
/* "recursion limit exceeded", serde_json's message past MST_JSON_MAX_DEPTH. */
int mst_json_too_deep(mst_header_parser *p);

static inline void mst_json_skip_ws(mst_header_parser *p)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->i++;
    }
}

/* Whitespace, then the character c, else the failure `what`. */
int mst_json_expect(mst_header_parser *p, char c, const char *what);
/* A string at p->i (after whitespace). With `keep`, its unescaped bytes go
 * to the string arena h->strings (*out, *len, NUL-terminated). */
int mst_json_string(mst_header_parser *p, int keep, char **out, size_t *len);
/* An integer where the format wants one (shape, data_offsets): no sign,
 * fraction or exponent, at most MST_MAX_OFFSET; `field` names it in
 * messages. */
int mst_json_uint(mst_header_parser *p, const char *field, uint64_t *v);
/* The literal `lit` (true, false, null) at p->i. */
int mst_json_literal(mst_header_parser *p, const char *lit);
/* Any JSON value, checked and dropped, at most `depth` levels deep. */
int mst_json_skip_value(mst_header_parser *p, int depth);

/* ---- the document (mst_header_parse.c) --------------------------------- */

/* Parses json[0..n) into *h (zeroed by the caller): tensors in file order
 * with their shapes, metadata in file order, the string arena. The syntax
 * rules only: validation is the caller's. On failure err is set and *h holds
 * what was allocated so far (mst_header_free releases it). */
int mst_header_parse(mst_header *h, const char *json, size_t n, mst_err *err);

#endif

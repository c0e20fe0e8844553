/* The JSON layer of the header decoder: strings (escapes, surrogate pairs,
 * into the string arena), numbers with the raw text's integer rules, literals
 * and unknown values skipped with serde_json's nesting limit. Positions in
 * messages are file offsets (8 + index into the header). */
#include "mst_header_parse.h"

#include <stdio.h>
#include <string.h>

int mst_json_fail(mst_header_parser *p, int code, const char *what)
{
    return mst_err_set(p->err, code, "invalid header at file offset %zu: %s", 8 + p->i, what);
}

int mst_json_no_memory(mst_header_parser *p)
{
    return mst_err_set(p->err, MST_ERR_NO_MEMORY, "out of memory decoding the header");
}

int mst_json_too_deep(mst_header_parser *p)
{
    return mst_json_fail(p, MST_ERR_FORMAT, "recursion limit exceeded (128 nesting levels)");
}

int mst_json_expect(mst_header_parser *p, char c, const char *what)
{
    mst_json_skip_ws(p);
    if (p->i >= p->n || p->s[p->i] != c)
        return mst_json_fail(p, MST_ERR_FORMAT, what);
    p->i++;
    return MST_OK;
}

static int hex4(mst_header_parser *p, unsigned *out)
{
    unsigned v = 0;
    if (p->n - p->i < 4)
        return mst_json_fail(p, MST_ERR_FORMAT, "truncated \\u escape");
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i++];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return mst_json_fail(p, MST_ERR_FORMAT, "invalid \\u escape");
    }
    *out = v;
    return MST_OK;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Parses a string at p->i (after whitespace). With `keep`, its unescaped
 * bytes go to the string arena (*out, *len); the arena never overflows
 * because an unescaped string plus its NUL is never longer than its quoted
 * source. */
int mst_json_string(mst_header_parser *p, int keep, char **out, size_t *len)
{
    char *o = keep ? p->h->strings + p->str_used : NULL;
    size_t olen = 0;
    mst_json_skip_ws(p);
    if (p->i >= p->n || p->s[p->i] != '"')
        return mst_json_fail(p, MST_ERR_FORMAT, "expected a string");
    p->i++;
    for (;;) {
        unsigned char c;
        if (p->i >= p->n)
            return mst_json_fail(p, MST_ERR_FORMAT, "unterminated string");
        c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20)
            return mst_json_fail(p, MST_ERR_FORMAT, "control character in a string");
        if (c != '\\') {
            if (o)
                o[olen] = (char)c;
            olen++;
            p->i++;
            continue;
        }
        p->i++;
        if (p->i >= p->n)
            return mst_json_fail(p, MST_ERR_FORMAT, "unterminated escape");
        c = (unsigned char)p->s[p->i++];
        switch (c) {
        case '"': case '\\': case '/':
            break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            char tmp[4];
            size_t k;
            if (hex4(p, &cp))
                return p->err->code;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return mst_json_fail(p, MST_ERR_FORMAT, "lone trailing surrogate in \\u escape");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (p->n - p->i < 2 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
                    return mst_json_fail(p, MST_ERR_FORMAT, "lone leading surrogate in \\u escape");
                p->i += 2;
                if (hex4(p, &lo))
                    return p->err->code;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return mst_json_fail(p, MST_ERR_FORMAT, "invalid surrogate pair in \\u escape");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            k = put_utf8(tmp, cp);
            if (o)
                memcpy(o + olen, tmp, k);
            olen += k;
            continue;
        }
        default:
            p->i--;
            return mst_json_fail(p, MST_ERR_FORMAT, "invalid escape in a string");
        }
        if (o)
            o[olen] = (char)c;
        olen++;
    }
    if (o) {
        o[olen] = '\0';
        p->str_used += olen + 1;
        *out = o;
        *len = olen;
    }
    return MST_OK;
}

/* A JSON number per RFC 8259; `*is_uint` tells whether it is a plain
 * non-negative integer (no sign, fraction or exponent), then in *v
 * (saturated at UINT64_MAX). */
static int parse_number(mst_header_parser *p, int *is_uint, uint64_t *v)
{
    size_t start = p->i;
    uint64_t val = 0;
    int plain = 1;
    if (p->i < p->n && p->s[p->i] == '-') {
        plain = 0;
        p->i++;
    }
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') {
        p->i = start;
        return mst_json_fail(p, MST_ERR_FORMAT, "invalid number");
    }
    if (p->s[p->i] == '0' && p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') {
        p->i = start;
        return mst_json_fail(p, MST_ERR_FORMAT, "number with a leading zero");
    }
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = (unsigned)(p->s[p->i] - '0');
        val = (val > (UINT64_MAX - d) / 10) ? UINT64_MAX : val * 10 + d;
        p->i++;
    }
    if (p->i < p->n && p->s[p->i] == '.') {
        plain = 0;
        p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
            return mst_json_fail(p, MST_ERR_FORMAT, "invalid number: no digit after '.'");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        plain = 0;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
            p->i++;
        if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
            return mst_json_fail(p, MST_ERR_FORMAT, "invalid number: no digit in exponent");
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    }
    *is_uint = plain;
    *v = val;
    return MST_OK;
}

/* An integer where the format wants one (shape, data_offsets). */
int mst_json_uint(mst_header_parser *p, const char *field, uint64_t *v)
{
    int is_uint;
    size_t at;
    char what[96];
    mst_json_skip_ws(p);
    at = p->i;
    if (p->i >= p->n || (p->s[p->i] != '-' && (p->s[p->i] < '0' || p->s[p->i] > '9'))) {
        snprintf(what, sizeof what, "%s: expected a non-negative integer", field);
        return mst_json_fail(p, MST_ERR_FORMAT, what);
    }
    if (parse_number(p, &is_uint, v))
        return p->err->code;
    if (!is_uint) {
        p->i = at;
        snprintf(what, sizeof what,
                 "%s: expected a non-negative integer without sign, fraction or exponent", field);
        return mst_json_fail(p, MST_ERR_FORMAT, what);
    }
    if (*v > MST_MAX_OFFSET) {
        p->i = at;
        snprintf(what, sizeof what, "%s: integer above 2^53", field);
        return mst_json_fail(p, MST_ERR_FORMAT, what);
    }
    return MST_OK;
}

int mst_json_literal(mst_header_parser *p, const char *lit)
{
    size_t k = strlen(lit);
    if (p->n - p->i < k || memcmp(p->s + p->i, lit, k) != 0)
        return mst_json_fail(p, MST_ERR_FORMAT, "invalid literal");
    p->i += k;
    return MST_OK;
}

/* Any JSON value, checked and dropped (unknown fields of an entry). */
int mst_json_skip_value(mst_header_parser *p, int depth)
{
    char c;
    mst_json_skip_ws(p);
    if (p->i >= p->n)
        return mst_json_fail(p, MST_ERR_FORMAT, "expected a value");
    c = p->s[p->i];
    if (c == '"')
        return mst_json_string(p, 0, NULL, NULL);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        if (depth <= 0)
            return mst_json_too_deep(p);
        p->i++;
        mst_json_skip_ws(p);
        if (p->i < p->n && p->s[p->i] == close) {
            p->i++;
            return MST_OK;
        }
        for (;;) {
            if (c == '{') {
                if (mst_json_string(p, 0, NULL, NULL) || mst_json_expect(p, ':', "expected ':'"))
                    return p->err->code;
            }
            if (mst_json_skip_value(p, depth - 1))
                return p->err->code;
            mst_json_skip_ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            return mst_json_expect(p, close,
                                   c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == 't')
        return mst_json_literal(p, "true");
    if (c == 'f')
        return mst_json_literal(p, "false");
    if (c == 'n')
        return mst_json_literal(p, "null");
    if (c == '-' || (c >= '0' && c <= '9')) {
        int is_uint;
        uint64_t v;
        return parse_number(p, &is_uint, &v);
    }
    return mst_json_fail(p, MST_ERR_FORMAT, "expected a value");
}

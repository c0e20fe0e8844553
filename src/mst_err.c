#include "mst_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mst_reader.h"
#include "mst_utf8.h"

int mst_err_set(mst_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

void mst_err_clear(mst_err *e)
{
    e->code = MST_OK;
    e->msg[0] = '\0';
}

char *mst_quote(char *out, size_t cap, const char *s, size_t len, size_t limit)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i = 0;
    /* Worst case per source byte is 6 output bytes ("\u00XX"); keep room for
     * the closing quote, "..." and the terminator. */
    if (cap < 8) {
        if (cap)
            out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    while (i < len && i < limit && o + 6 + 5 < cap) {
        unsigned char c = (unsigned char)s[i];
        size_t n;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
            i++;
        } else if (c < 0x80) {
            out[o++] = (char)c;
            i++;
        } else if ((n = mst_utf8_seq_len(s + i, len - i)) > 0 && o + n + 5 < cap) {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        } else {
            if (n > 0) /* valid, but no room left */
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
            i++;
        }
    }
    if (i < len) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

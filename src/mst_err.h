/* Error values inside the library: a code plus a message that names the
 * tensor, key, rank and system error. Fixed size so it can be broadcast as
 * bytes when ranks agree on an outcome. */
#ifndef MST_ERR_H
#define MST_ERR_H

#include <stddef.h>

#define MST_MSG_MAX 1024

typedef struct mst_err {
    int code;
    char msg[MST_MSG_MAX];
} mst_err;

/* Sets code and a printf-style message; returns code. */
int mst_err_set(mst_err *e, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

void mst_err_clear(mst_err *e);

/* Text of an MPI error code and its class: "MPI_ERR_IO: input/output error
 * (MPI error class 32)". In mst_err_mpi.c: the library links MPI, the pure
 * core (mst_core: unit tests, fuzzing) does not. */
void mst_mpi_errstr(int mpi_code, char *buf, size_t cap);

/* Writes `s` (len bytes, any content) into out as a double-quoted, printable
 * string: JSON-style escapes, invalid UTF-8 bytes as \xNN, cut to at most
 * `limit` source bytes with "..." appended. Always NUL-terminates. Returns out. */
char *mst_quote(char *out, size_t cap, const char *s, size_t len, size_t limit);

/* Quote buffer size for names in messages. */
#define MST_QUOTE_MAX 300
#define MST_QUOTE_LIMIT 200

#endif

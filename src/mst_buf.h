/* A growable byte buffer with a size limit and a sticky failure flag, so
 * encoders can append without checking every call. */
#ifndef MST_BUF_H
#define MST_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct mst_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t limit;     /* 0: no limit */
    int no_memory;    /* an allocation failed */
    int over_limit;   /* an append would have passed limit */
} mst_buf;

void mst_buf_init(mst_buf *b, size_t limit);
void mst_buf_free(mst_buf *b);
int mst_buf_ok(const mst_buf *b);
/* Makes room for `extra` more bytes; 0 on success. */
int mst_buf_reserve(mst_buf *b, size_t extra);
void mst_buf_put(mst_buf *b, const void *p, size_t n);

/* Large arrays (a million tensors' records, headers of tens of MiB): the
 * kernel is asked for huge pages (madvise MADV_HUGEPAGE, where transparent
 * huge pages are "madvise"), so filling them costs hundreds of page faults
 * instead of tens of thousands; a 10^6-tensor save took half the time, a
 * 10^6-tensor load (decoded headers, the loader's plan) 27% less.
 * mst_advise_huge advises the 2 MiB-aligned part of [p, p + n) (from 4 MiB
 * on); mst_malloc_big, mst_calloc_big and mst_realloc_big are malloc,
 * calloc and realloc, then the advice for what they return. */
void mst_advise_huge(void *p, size_t n);
void *mst_malloc_big(size_t n);
void *mst_calloc_big(size_t count, size_t size);
void *mst_realloc_big(void *p, size_t n);
void mst_buf_putc(mst_buf *b, char c);
void mst_buf_puts(mst_buf *b, const char *s);
/* Decimal, never an exponent. */
void mst_buf_put_u64(mst_buf *b, uint64_t v);
/* The decimal digits of v written at p (at most 20); returns their end. */
char *mst_u64_digits(char *p, uint64_t v);
/* Fixed-width values in host byte order, for the metadata exchange between
 * ranks of one job (all ranks share one architecture). */
void mst_buf_put_raw32(mst_buf *b, uint32_t v);
void mst_buf_put_raw64(mst_buf *b, uint64_t v);

#endif

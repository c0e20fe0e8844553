#define _DEFAULT_SOURCE /* madvise */
#include "mst_buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void mst_advise_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + n) & ~(huge - 1);
    if (n >= 2 * huge && e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE); /* advice: a failure changes nothing */
#else
    (void)p;
    (void)n;
#endif
}

void *mst_malloc_big(size_t n)
{
    void *p = malloc(n);
    if (p)
        mst_advise_huge(p, n);
    return p;
}

void *mst_calloc_big(size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (p) /* calloc checked count * size */
        mst_advise_huge(p, count * size);
    return p;
}

void *mst_realloc_big(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q)
        mst_advise_huge(q, n);
    return q;
}

void mst_buf_init(mst_buf *b, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit;
}

void mst_buf_free(mst_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

int mst_buf_ok(const mst_buf *b)
{
    return !b->no_memory && !b->over_limit;
}

int mst_buf_reserve(mst_buf *b, size_t extra)
{
    size_t need, cap;
    char *p;
    if (!mst_buf_ok(b))
        return -1;
    if (extra > SIZE_MAX - b->len || (b->limit && b->len + extra > b->limit)) {
        b->over_limit = 1;
        return -1;
    }
    need = b->len + extra;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->limit && cap > b->limit)
        cap = b->limit;
    p = mst_realloc_big(b->data, cap);
    if (!p) {
        b->no_memory = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void mst_buf_put(mst_buf *b, const void *p, size_t n)
{
    if (n == 0 || mst_buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void mst_buf_putc(mst_buf *b, char c)
{
    mst_buf_put(b, &c, 1);
}

void mst_buf_puts(mst_buf *b, const char *s)
{
    mst_buf_put(b, s, strlen(s));
}

char *mst_u64_digits(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(p, tmp + sizeof tmp - n, n);
    return p + n;
}

void mst_buf_put_u64(mst_buf *b, uint64_t v)
{
    char tmp[20];
    mst_buf_put(b, tmp, (size_t)(mst_u64_digits(tmp, v) - tmp));
}

void mst_buf_put_raw32(mst_buf *b, uint32_t v)
{
    mst_buf_put(b, &v, sizeof v);
}

void mst_buf_put_raw64(mst_buf *b, uint64_t v)
{
    mst_buf_put(b, &v, sizeof v);
}

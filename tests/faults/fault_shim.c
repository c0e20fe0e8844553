/* LD_PRELOAD fault injection for the file operations of a save.
 *
 * Counts, per process, the calls of five classes on files under a directory
 * (MST_FAULT_DIR; paths by prefix, descriptors tracked from their open) and
 * makes the Nth call of one class fail, on one rank:
 *   open    open, open64, openat, openat64, __open_2, __open64_2, creat, creat64
 *   write   write, writev, pwrite, pwrite64, pwritev, pwritev64, pwritev2, pwritev64v2,
 *           aio_write, aio_write64 (OMPIO's MPI_File_iwrite_at: the write itself then
 *           runs in glibc's own thread, which calls pwrite inside libc, out of reach
 *           of this shim; a fault fails the submission, or shortens the request)
 *   sync    fsync, fdatasync
 *   rename  rename, renameat, renameat2
 *   close   close (the descriptor is released anyway, as Linux does)
 * Calls on other files (shared memory, PMIx, sockets) are never counted, so
 * MPI's own machinery is untouched.
 *
 * Configuration, read at the first call:
 *   MST_FAULT_DIR    directory prefix (required for anything to be counted)
 *   MST_FAULT_RANK   rank that fails (compared with OMPI_COMM_WORLD_RANK; default any)
 *   MST_FAULT_OP     open|write|sync|rename|close
 *   MST_FAULT_NTH    1-based call number within that class
 *   MST_FAULT_ERRNO  ENOSPC|EIO|EDQUOT|EACCES (default EIO)
 *   MST_FAULT_SHORT  1: a write returns short (half, at least one byte less) instead
 *   MST_FAULT_MALLOC_SIZE  malloc/calloc/realloc of exactly this many bytes return NULL
 *   MST_FAULT_TRACE  1: one line per counted call on stderr
 * A test linked against nothing may also drive it in-process (dlsym):
 *   void mst_fault_arm(int op, long nth, int err, int short_write); op -1: count only
 *   void mst_fault_counts(long out[5]); int mst_fault_fired(void);
 *   void mst_fault_malloc(size_t size);  0 disarms
 */
#define _GNU_SOURCE
#include <aio.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { OP_OPEN, OP_WRITE, OP_SYNC, OP_RENAME, OP_CLOSE, OP_N };
static const char *const op_names[OP_N] = {"open", "write", "sync", "rename", "close"};

#define MAX_FD 65536
static unsigned char tracked[MAX_FD];
static char dir[4096];
static size_t dir_len;
static int inited, my_rank = -1, fault_rank = -1, fault_op = -1, fault_err = EIO, fault_short,
                  trace;
static long fault_nth, counts[OP_N];
static int fired;
static size_t malloc_size;

static int parse_errno(const char *s)
{
    if (!s || !*s) return EIO;
    if (!strcmp(s, "ENOSPC")) return ENOSPC;
    if (!strcmp(s, "EDQUOT")) return EDQUOT;
    if (!strcmp(s, "EACCES")) return EACCES;
    if (!strcmp(s, "EIO")) return EIO;
    return atoi(s);
}

static void init(void)
{
    const char *s;
    if (inited)
        return;
    inited = 1;
    if ((s = getenv("MST_FAULT_DIR")) && *s && strlen(s) < sizeof dir) {
        strcpy(dir, s);
        dir_len = strlen(dir);
        while (dir_len > 1 && dir[dir_len - 1] == '/')
            dir[--dir_len] = '\0';
    }
    if ((s = getenv("OMPI_COMM_WORLD_RANK")) || (s = getenv("PMI_RANK"))) my_rank = atoi(s); /* Open MPI, MPICH */
    if ((s = getenv("MST_FAULT_RANK")) && *s) fault_rank = atoi(s);
    if ((s = getenv("MST_FAULT_OP")))
        for (int i = 0; i < OP_N; i++)
            if (!strcmp(s, op_names[i])) fault_op = i;
    if ((s = getenv("MST_FAULT_NTH"))) fault_nth = atol(s);
    fault_err = parse_errno(getenv("MST_FAULT_ERRNO"));
    if ((s = getenv("MST_FAULT_SHORT"))) fault_short = atoi(s);
    if ((s = getenv("MST_FAULT_MALLOC_SIZE"))) malloc_size = (size_t)atoll(s);
    if ((s = getenv("MST_FAULT_TRACE"))) trace = atoi(s);
}

static int under_dir(const char *path)
{
    init();
    return dir_len && path && strncmp(path, dir, dir_len) == 0 &&
           (path[dir_len] == '/' || path[dir_len] == '\0');
}

static int is_tracked(int fd)
{
    init();
    return fd >= 0 && fd < MAX_FD && tracked[fd];
}

/* Counts a call; returns 1 when this one must fail. */
static int hit(int op, const char *what)
{
    long n = ++counts[op];
    int fail = fault_op == op && n == fault_nth && (fault_rank < 0 || fault_rank == my_rank);
    if (trace) {
        char line[256];
        int len = snprintf(line, sizeof line, "[fault-shim rank %d] %s #%ld %s%s\n", my_rank,
                           op_names[op], n, what, fail ? " <- FAULT" : "");
        if (len > 0) {
            ssize_t (*w)(int, const void *, size_t) =
                (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
            w(2, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
        }
    }
    if (fail)
        fired = 1;
    return fail;
}

#define REAL(name, type) static __typeof__(type) real_##name; if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

/* ---- in-process control ---- */
__attribute__((visibility("default"))) void mst_fault_arm(int op, long nth, int err, int short_write)
{
    init();
    memset(counts, 0, sizeof counts);
    fired = 0;
    fault_op = op;
    fault_nth = nth;
    fault_err = err ? err : EIO;
    fault_short = short_write;
    fault_rank = -1; /* the caller arms only the rank that must fail */
}
__attribute__((visibility("default"))) void mst_fault_counts(long out[OP_N])
{
    memcpy(out, counts, sizeof counts);
}
__attribute__((visibility("default"))) int mst_fault_fired(void) { return fired; }
__attribute__((visibility("default"))) void mst_fault_malloc(size_t size) { malloc_size = size; }

/* ---- open ---- */
/* A descriptor opened with O_PATH is not tracked: the library opens the file
 * a save replaces that way only to hold it across the rename, and closes it
 * on a detached thread (mst_commit_rename), whose close may come before or
 * after the process's exit and whose result is ignored. Its open is counted
 * (and failed in turn) like any other. */
static int after_open(int fd, const char *path, int flags)
{
    if (fd >= 0 && fd < MAX_FD && !(flags & O_PATH))
        tracked[fd] = 1;
    (void)path;
    return fd;
}

#define OPEN_BODY(call)                                                     \
    mode_t mode = 0;                                                        \
    if (flags & (O_CREAT | __O_TMPFILE)) {                                  \
        va_list ap;                                                         \
        va_start(ap, flags);                                                \
        mode = (mode_t)va_arg(ap, int);                                     \
        va_end(ap);                                                         \
    }                                                                       \
    if (under_dir(path)) {                                                  \
        char desc_[4200];                                                   \
        snprintf(desc_, sizeof desc_, "%s%s", path,                         \
                 (flags & O_ACCMODE) == O_RDONLY ? " rdonly" : "");         \
        if (hit(OP_OPEN, desc_)) {                                          \
            errno = fault_err;                                              \
            return -1;                                                      \
        }                                                                   \
        return after_open(call, path, flags);                               \
    }                                                                       \
    return call;

int open(const char *path, int flags, ...)
{
    REAL(open, int (*)(const char *, int, ...));
    OPEN_BODY(real_open(path, flags, mode))
}
int open64(const char *path, int flags, ...)
{
    REAL(open64, int (*)(const char *, int, ...));
    OPEN_BODY(real_open64(path, flags, mode))
}
int openat(int dfd, const char *path, int flags, ...)
{
    REAL(openat, int (*)(int, const char *, int, ...));
    OPEN_BODY(real_openat(dfd, path, flags, mode))
}
int openat64(int dfd, const char *path, int flags, ...)
{
    REAL(openat64, int (*)(int, const char *, int, ...));
    OPEN_BODY(real_openat64(dfd, path, flags, mode))
}
int __open_2(const char *path, int flags)
{
    REAL(open, int (*)(const char *, int, ...));
    mode_t mode = 0;
    (void)mode;
    if (under_dir(path)) {
        if (hit(OP_OPEN, path)) { errno = fault_err; return -1; }
        return after_open(real_open(path, flags), path, flags);
    }
    return real_open(path, flags);
}
int __open64_2(const char *path, int flags)
{
    return __open_2(path, flags);
}
int creat(const char *path, mode_t mode)
{
    return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}
int creat64(const char *path, mode_t mode)
{
    return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* ---- writes ---- */
static size_t shorten(size_t len) { return len > 1 ? len / 2 : 0; }

ssize_t write(int fd, const void *buf, size_t len)
{
    REAL(write, ssize_t (*)(int, const void *, size_t));
    if (is_tracked(fd) && hit(OP_WRITE, "write")) {
        if (fault_short) return real_write(fd, buf, shorten(len));
        errno = fault_err;
        return -1;
    }
    return real_write(fd, buf, len);
}
#define PWRITE(name)                                                                   \
    ssize_t name(int fd, const void *buf, size_t len, off_t off)                       \
    {                                                                                  \
        REAL(name, ssize_t (*)(int, const void *, size_t, off_t));                     \
        if (is_tracked(fd) && hit(OP_WRITE, #name)) {                                  \
            if (fault_short) return real_##name(fd, buf, shorten(len), off);           \
            errno = fault_err;                                                         \
            return -1;                                                                 \
        }                                                                              \
        return real_##name(fd, buf, len, off);                                         \
    }
PWRITE(pwrite)
PWRITE(pwrite64)

/* vector writes: short = the first half of the first buffer only */
#define VEC_FAULT(name, ...)                                                           \
    if (is_tracked(fd) && hit(OP_WRITE, name)) {                                       \
        if (fault_short && cnt > 0) {                                                  \
            REAL(pwrite, ssize_t (*)(int, const void *, size_t, off_t));               \
            REAL(write, ssize_t (*)(int, const void *, size_t));                       \
            __VA_ARGS__;                                                               \
        }                                                                              \
        errno = fault_err;                                                             \
        return -1;                                                                     \
    }
ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev, ssize_t (*)(int, const struct iovec *, int));
    VEC_FAULT("writev", return real_write(fd, iov[0].iov_base, shorten(iov[0].iov_len)))
    return real_writev(fd, iov, cnt);
}
#define PWRITEV(name)                                                                  \
    ssize_t name(int fd, const struct iovec *iov, int cnt, off_t off)                  \
    {                                                                                  \
        REAL(name, ssize_t (*)(int, const struct iovec *, int, off_t));                \
        VEC_FAULT(#name, return real_pwrite(fd, iov[0].iov_base, shorten(iov[0].iov_len), off)) \
        return real_##name(fd, iov, cnt, off);                                         \
    }
PWRITEV(pwritev)
PWRITEV(pwritev64)
#define PWRITEV2(name)                                                                 \
    ssize_t name(int fd, const struct iovec *iov, int cnt, off_t off, int fl)          \
    {                                                                                  \
        REAL(name, ssize_t (*)(int, const struct iovec *, int, off_t, int));           \
        VEC_FAULT(#name, return real_pwrite(fd, iov[0].iov_base, shorten(iov[0].iov_len), off)) \
        return real_##name(fd, iov, cnt, off, fl);                                     \
    }
PWRITEV2(pwritev2)
PWRITEV2(pwritev64v2)

#define AIO_WRITE(name, cbtype)                                                        \
    int name(cbtype *cb)                                                               \
    {                                                                                  \
        REAL(name, int (*)(cbtype *));                                                 \
        if (cb && is_tracked(cb->aio_fildes) && hit(OP_WRITE, #name)) {                \
            if (fault_short) {                                                         \
                cb->aio_nbytes = shorten(cb->aio_nbytes);                              \
                return real_##name(cb);                                                \
            }                                                                          \
            errno = fault_err;                                                         \
            return -1;                                                                 \
        }                                                                              \
        return real_##name(cb);                                                        \
    }
AIO_WRITE(aio_write, struct aiocb)
AIO_WRITE(aio_write64, struct aiocb64)

/* ---- sync, rename, close ---- */
#define SYNC(name)                                                                     \
    int name(int fd)                                                                   \
    {                                                                                  \
        REAL(name, int (*)(int));                                                      \
        if (is_tracked(fd) && hit(OP_SYNC, #name)) {                                   \
            errno = fault_err;                                                         \
            return -1;                                                                 \
        }                                                                              \
        return real_##name(fd);                                                        \
    }
SYNC(fsync)
SYNC(fdatasync)

int rename(const char *a, const char *b)
{
    REAL(rename, int (*)(const char *, const char *));
    if (under_dir(a) && hit(OP_RENAME, a)) {
        errno = fault_err;
        return -1;
    }
    return real_rename(a, b);
}
int renameat(int da, const char *a, int db, const char *b)
{
    REAL(renameat, int (*)(int, const char *, int, const char *));
    if (under_dir(a) && hit(OP_RENAME, a)) {
        errno = fault_err;
        return -1;
    }
    return real_renameat(da, a, db, b);
}
int renameat2(int da, const char *a, int db, const char *b, unsigned fl)
{
    REAL(renameat2, int (*)(int, const char *, int, const char *, unsigned));
    if (under_dir(a) && hit(OP_RENAME, a)) {
        errno = fault_err;
        return -1;
    }
    return real_renameat2(da, a, db, b, fl);
}

int close(int fd)
{
    REAL(close, int (*)(int));
    if (is_tracked(fd)) {
        int fail = hit(OP_CLOSE, "close");
        tracked[fd] = 0;
        if (fail) {
            real_close(fd); /* Linux releases the descriptor even when close fails */
            errno = fault_err;
            return -1;
        }
    }
    return real_close(fd);
}

/* ---- allocation failures ---- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
void *malloc(size_t n)
{
    if (malloc_size && n == malloc_size) { errno = ENOMEM; return NULL; }
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    if (malloc_size && a * b == malloc_size) { errno = ENOMEM; return NULL; }
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    if (malloc_size && n == malloc_size) { errno = ENOMEM; return NULL; }
    return __libc_realloc(p, n);
}

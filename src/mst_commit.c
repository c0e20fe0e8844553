/* The commit protocol of a save: see mst_commit.h and "Guarantees" in
 * README.md. Rank 0 only; POSIX, no MPI. */
#include "mst_commit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mst.h" /* MST_TEMP_MARK; no MPI call here */

#define PATH_QUOTE 512

/* The directory part of path ("." when there is none); malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *d;
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    d = malloc((size_t)(slash - path) + 1);
    if (d) {
        memcpy(d, path, (size_t)(slash - path));
        d[slash - path] = '\0';
    }
    return d;
}

static const char *qpath(char *buf, size_t cap, const char *path)
{
    return mst_quote(buf, cap, path, strlen(path), 400);
}

void mst_commit_random_id(char id[17])
{
    unsigned long long rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        rnd = ((unsigned long long)ts.tv_nsec << 20) ^ (unsigned long long)ts.tv_sec ^
              ((unsigned long long)getpid() << 40) ^ (unsigned long long)(uintptr_t)&ts;
    }
    snprintf(id, 17, "%016llx", rnd);
}

void mst_commit_host(char *host, size_t cap)
{
    if (gethostname(host, cap) != 0)
        snprintf(host, cap, "host");
    host[cap - 1] = '\0';
    for (char *c = host; *c; c++) {
        if (*c == '.') {
            *c = '\0';
            break;
        }
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            *c = '_';
    }
}

char *mst_commit_temp_name(const char *path)
{
    char host[64], id[17], *name;
    const char *slash = strrchr(path, '/');
    size_t keep = strlen(path), base = slash ? keep - (size_t)(slash + 1 - path) : keep, n;
    /* The file name part is cut to MST_COMMIT_TEMP_BASE bytes (not inside a
     * UTF-8 sequence), so that the temporary's own name stays short enough for
     * MPI-IO whatever the target's (see mst_io_open). */
    if (base > MST_COMMIT_TEMP_BASE) {
        keep -= base - MST_COMMIT_TEMP_BASE;
        while (keep > 0 && ((unsigned char)path[keep] & 0xC0) == 0x80)
            keep--;
    }
    mst_commit_host(host, sizeof host);
    mst_commit_random_id(id);
    n = keep + strlen(host) + 64;
    name = malloc(n);
    if (name)
        snprintf(name, n, "%.*s%s%s.%ld.%s", (int)keep, path, MST_TEMP_MARK, host, (long)getpid(),
                 id);
    return name;
}

int mst_commit_check_target(const char *path, mst_err *err)
{
    char qd[PATH_QUOTE], qp[PATH_QUOTE];
    struct stat st;
    char *dir = dir_of(path);
    if (!dir)
        return mst_err_set(err, MST_ERR_NO_MEMORY, "rank 0: out of memory");
    qpath(qd, sizeof qd, dir);
    qpath(qp, sizeof qp, path);
    if (stat(dir, &st) != 0) {
        int e = errno;
        free(dir);
        return mst_err_set(err, MST_ERR_TARGET_DIR,
                           "rank 0: directory %s of target %s %s", qd, qp,
                           e == ENOENT ? "does not exist" : strerror(e));
    }
    if (!S_ISDIR(st.st_mode)) {
        free(dir);
        return mst_err_set(err, MST_ERR_TARGET_DIR, "rank 0: %s (of target %s) is not a directory",
                           qd, qp);
    }
    if (access(dir, W_OK | X_OK) != 0) {
        int e = errno;
        free(dir);
        return mst_err_set(err, MST_ERR_TARGET_DIR,
                           "rank 0: directory %s of target %s is not writable: %s", qd, qp,
                           strerror(e));
    }
    free(dir);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return mst_err_set(err, MST_ERR_TARGET_DIR, "rank 0: target %s is a directory", qp);
    /* a FIFO or a device stays what it is: a save would replace it with a
     * regular file (mst-merge -o /dev/null as root) */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return mst_err_set(err, MST_ERR_TARGET_DIR,
                           "rank 0: target %s is %s, not a regular file: mst replaces only "
                           "regular files",
                           qp,
                           S_ISFIFO(st.st_mode)  ? "a FIFO"
                           : S_ISCHR(st.st_mode) ? "a character device"
                           : S_ISBLK(st.st_mode) ? "a block device"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                                                  : "a special file");
    return MST_OK;
}

char *mst_commit_resolve(const char *path, mst_err *err)
{
    char qp[PATH_QUOTE];
    char *cur = strdup(path);
    for (int hops = 0; cur; hops++) {
        struct stat st;
        char *link, *next, *dir;
        ssize_t n;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode))
            return cur; /* a file, nothing yet, or an error check_target names */
        if (hops == 40) {
            free(cur);
            mst_err_set(err, MST_ERR_TARGET_DIR,
                        "rank 0: target %s: too many levels of symbolic links",
                        qpath(qp, sizeof qp, path));
            return NULL;
        }
        link = malloc((size_t)st.st_size + 2);
        n = link ? readlink(cur, link, (size_t)st.st_size + 1) : -1;
        if (n < 0 || n > st.st_size) {
            /* changed under us or unreadable: let the save go to the link itself */
            free(link);
            return cur;
        }
        link[n] = '\0';
        if (link[0] == '/' || !strchr(cur, '/')) {
            next = link;
        } else {
            dir = dir_of(cur);
            next = dir ? malloc(strlen(dir) + strlen(link) + 2) : NULL;
            if (next)
                sprintf(next, "%s/%s", dir, link);
            free(dir);
            free(link);
        }
        free(cur);
        cur = next;
    }
    mst_err_set(err, MST_ERR_NO_MEMORY, "rank 0: out of memory");
    return NULL;
}

int mst_commit_check_size(const char *tmp, uint64_t expected_size, mst_err *err)
{
    char qt[PATH_QUOTE];
    struct stat st;
    qpath(qt, sizeof qt, tmp);
    if (stat(tmp, &st) != 0)
        return mst_err_set(err, MST_ERR_IO, "rank 0: stat of temporary file %s failed: %s", qt,
                           strerror(errno));
    if ((uint64_t)st.st_size != expected_size)
        return mst_err_set(err, MST_ERR_IO,
                           "rank 0: temporary file %s has %llu bytes, expected %llu", qt,
                           (unsigned long long)st.st_size, (unsigned long long)expected_size);
    return MST_OK;
}

static int open_dir(const char *dir)
{
    return open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

int mst_commit_sync_dir(const char *dir)
{
    int fd = open_dir(dir), rc, e;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int rename_durable(const char *tmp, const char *path, uint64_t expected_size,
                          int durable, mst_err *err)
{
    char qt[PATH_QUOTE], qp[PATH_QUOTE], qd[PATH_QUOTE];
    char *dir;
    struct stat st;
    int fd;
    qpath(qt, sizeof qt, tmp);
    qpath(qp, sizeof qp, path);
    if (mst_commit_check_size(tmp, expected_size, err) != MST_OK)
        return err->code;
    /* the mode of the file it replaces, exactly (mst_temp_create gave it that
     * plus the owner's read and write, for the writes) */
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && chmod(tmp, st.st_mode & 07777) != 0)
        return mst_err_set(err, MST_ERR_IO, "rank 0: setting the mode of %s to %04o failed: %s",
                           qt, (unsigned)(st.st_mode & 07777), strerror(errno));
    /* Everything that can fail without touching the target comes first: the
     * directory is opened before the rename, so only its fsync can fail after. */
    fd = -1;
    if (durable) {
        dir = dir_of(path);
        if (!dir)
            return mst_err_set(err, MST_ERR_NO_MEMORY, "rank 0: out of memory");
        qpath(qd, sizeof qd, dir);
        fd = open_dir(dir);
        free(dir);
        if (fd < 0)
            return mst_err_set(err, MST_ERR_IO,
                               "rank 0: opening directory %s (to fsync it after the rename) "
                               "failed: %s",
                               qd, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return mst_err_set(err, MST_ERR_IO, "rank 0: rename of %s to %s failed: %s", qt, qp,
                           strerror(e));
    }
    if (!durable)
        return MST_OK;
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return mst_err_set(err, MST_ERR_IO,
                           "rank 0: %s is complete and in place, but fsync of directory %s "
                           "failed (%s): the rename may not survive a crash",
                           qp, qd, strerror(e));
    }
    /* The fsync succeeded, so the rename is durable; a failing close of a
     * read-only directory descriptor loses nothing and is not a failed save. */
    (void)close(fd);
    return MST_OK;
}

/* The file a save replaces is freed by whoever drops its last reference:
 * without a descriptor of it, the rename does, on the caller's thread. On
 * ext4 here that took 0.09 s for a 256 MiB file (its blocks returned). So it
 * is held open (O_PATH: no read permission needed, no access time) across the
 * rename and the directory's fsync, and a detached thread of the library,
 * which takes no signal and makes no MPI call, closes that descriptor; when
 * no thread starts, it is closed here. */
static void *release_main(void *arg)
{
    (void)close((int)(intptr_t)arg); /* a descriptor of nothing to write */
    return NULL;
}

static void release_later(int fd)
{
    pthread_attr_t at;
    pthread_t t;
    sigset_t all, old;
    int ok = 0;
    if (fd < 0)
        return;
    if (pthread_attr_init(&at) == 0) {
        (void)pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        (void)pthread_attr_setstacksize(&at, (size_t)64 << 10);
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        ok = pthread_create(&t, &at, release_main, (void *)(intptr_t)fd) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&at);
    }
    if (!ok)
        (void)close(fd);
}

int mst_commit_rename(const char *tmp, const char *path, uint64_t expected_size, int durable,
                      mst_err *err)
{
#ifdef O_PATH
    int old = open(path, O_PATH | O_CLOEXEC), rc;
#else
    int old = -1, rc;
#endif
    rc = rename_durable(tmp, path, expected_size, durable, err);
    release_later(old);
    return rc;
}

void mst_commit_discard(const char *tmp)
{
    if (tmp)
        unlink(tmp);
}

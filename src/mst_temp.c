/* Ownership of temporary files: the writer's lock and the cleaner's probe.
 * See mst_temp.h and "Guarantees" in README.md. */
#include "mst_temp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mst.h"
#include "mst_commit.h"
#include "mst_io.h"

static int lock_byte(int fd, short type)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)MST_TEMP_LOCK_OFFSET;
    fl.l_len = 1;
    return fcntl(fd, F_OFD_SETLK, &fl);
}

static int no_locks_here(int e)
{
    return e == ENOLCK || e == EOPNOTSUPP || e == ENOSYS || e == EINVAL;
}

/* The new file takes the place of the one at path: it gets its mode (plus
 * the owner's read and write until mst_commit_rename sets it exactly) and, as
 * far as this process may set them, its owner and group, before any byte is
 * written: a private checkpoint is never readable by others, not even while
 * it is written. Nothing to do when there is no file yet. */
static int carry_mode(const char *path, int fd, const char *tmp, mst_err *err)
{
    struct stat st;
    char q[512];
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return MST_OK;
    /* owner and group: root may set both, the owner only a group it is in;
     * what is refused stays as created (the documented limit) */
    if (fchown(fd, st.st_uid, st.st_gid) != 0)
        (void)!fchown(fd, (uid_t)-1, st.st_gid);
    /* after the chown, which may clear set-id bits; the owner may still
     * write and read it back until the commit gives it the exact mode */
    if (fchmod(fd, (st.st_mode & 07777) | S_IRUSR | S_IWUSR) != 0)
        return mst_err_set(err, MST_ERR_IO,
                           "rank 0: giving temporary file %s the mode %04o of the target failed: %s",
                           mst_quote(q, sizeof q, tmp, strlen(tmp), 400),
                           (unsigned)(st.st_mode & 07777), strerror(errno));
    return MST_OK;
}

int mst_temp_create(const char *path, MPI_Info hints, char **tmp_out, int *lock_fd,
                    MPI_File *fh, mst_err *err)
{
    char q[512];
    *tmp_out = NULL;
    *lock_fd = -1;
    *fh = MPI_FILE_NULL;
    for (int attempt = 0; attempt < 8; attempt++) {
        struct stat a, b;
        char *tmp = mst_commit_temp_name(path);
        MPI_File f = MPI_FILE_NULL;
        mst_err e2;
        int fd, taken = 0;
        if (!tmp)
            return mst_err_set(err, MST_ERR_NO_MEMORY, "rank 0: out of memory");
        /* created by MPI-IO with the caller's hints: striping and the like
         * only take effect when a file is created */
        if (mst_io_open(tmp, 1, hints, 0, &f, &taken, &e2) != MST_OK) {
            if (taken) { /* the name was taken (exclusive create): next name */
                free(tmp);
                continue;
            }
            /* a failure after the create itself (a close inside MPI-IO, say)
             * may leave the file: ours, the name is fresh and random */
            unlink(tmp);
            *err = e2;
            free(tmp);
            return err->code;
        }
        fd = open(tmp, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            mst_io_close(&f);
            unlink(tmp);
            mst_err_set(err, e == EACCES || e == EROFS || e == ENOENT ? MST_ERR_TARGET_DIR
                                                                        : MST_ERR_IO,
                        "rank 0: opening temporary file %s failed: %s",
                        mst_quote(q, sizeof q, tmp, strlen(tmp), 400), strerror(e));
            free(tmp);
            return err->code;
        }
        if (lock_byte(fd, F_WRLCK) != 0) {
            int e = errno;
            if (!no_locks_here(e)) {
                /* a cleaner holds it and is about to remove it: next name */
                close(fd);
                mst_io_close(&f);
                free(tmp);
                continue;
            }
            /* no locks on this file system: ownership falls back to host+pid */
        } else if (fstat(fd, &a) != 0 || stat(tmp, &b) != 0 || a.st_ino != b.st_ino ||
                   a.st_dev != b.st_dev) {
            close(fd); /* removed by a cleaner before we locked it */
            mst_io_close(&f);
            free(tmp);
            continue;
        }
        if (carry_mode(path, fd, tmp, err) != MST_OK) {
            close(fd);
            mst_io_close(&f);
            unlink(tmp);
            free(tmp);
            return err->code;
        }
        *tmp_out = tmp;
        *lock_fd = fd;
        *fh = f;
        return MST_OK;
    }
    return mst_err_set(err, MST_ERR_IO,
                       "rank 0: creating temporary file beside %s failed: no free name after 8 "
                       "tries",
                       mst_quote(q, sizeof q, path, strlen(path), 400));
}

void mst_temp_release(int *lock_fd)
{
    if (lock_fd && *lock_fd >= 0) {
        close(*lock_fd);
        *lock_fd = -1;
    }
}

/* Is s (what follows a temporary's name) a file OMPIO makes beside a file
 * it opens? Its sharedfp component keeps "<file>-<jobid>-<pid>.lock" while
 * the file is open and, during MPI_File_open itself, tests locking with
 * "<file>.locktest.<rank>" (open, fcntl, unlink). A rank killed at the wrong
 * moment leaves either behind. */
static int is_ompio_artifact(const char *s)
{
    if (strncmp(s, ".locktest.", 10) == 0) {
        size_t n = strspn(s + 10, "0123456789");
        return n > 0 && s[10 + n] == '\0';
    }
    for (int part = 0; part < 2; part++) {
        size_t n;
        if (*s++ != '-')
            return 0;
        n = strspn(s, "0123456789");
        if (n == 0)
            return 0;
        s += n;
    }
    return strcmp(s, ".lock") == 0;
}

/* "<anything>.tmp-mst.<host>.<pid>.<16 hex>" (*artifact 0), or that name
 * followed by one of OMPIO's artifacts (*artifact: the length of the
 * temporary's own name within path): host and pid, or -1. */
static int parse_name(const char *path, char *host, size_t cap, long *pid, size_t *artifact)
{
    const char *base = strrchr(path, '/'), *m, *p, *dot;
    char *end;
    base = base ? base + 1 : path;
    m = strstr(base, MST_TEMP_MARK);
    if (!m)
        return -1;
    /* the mark's last occurrence: a target name may itself contain it */
    while ((p = strstr(m + 1, MST_TEMP_MARK)) != NULL)
        m = p;
    p = m + strlen(MST_TEMP_MARK);
    dot = strchr(p, '.');
    if (!dot || dot == p || (size_t)(dot - p) >= cap)
        return -1;
    memcpy(host, p, (size_t)(dot - p));
    host[dot - p] = '\0';
    errno = 0;
    *pid = strtol(dot + 1, &end, 10);
    if (errno || end == dot + 1 || *pid <= 0 || *end != '.' ||
        strspn(end + 1, "0123456789abcdef") != 16)
        return -1;
    *artifact = end[17] != '\0' ? (size_t)(end + 17 - path) : 0;
    if (*artifact && !is_ompio_artifact(end + 17))
        return -1;
    return 0;
}

/* Removes OMPIO's files beside the temporary `path` (see above). */
static void remove_artifacts(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0, blen = strlen(base);
    char *dir = strndup(path, dlen ? dlen : 0);
    DIR *d = dir ? opendir(dlen ? dir : ".") : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *p;
        if (strncmp(e->d_name, base, blen) != 0 || !is_ompio_artifact(e->d_name + blen))
            continue;
        if (asprintf(&p, "%s%s%s", dlen ? dir : "", dlen ? "/" : "", e->d_name) >= 0) {
            unlink(p);
            free(p);
        }
    }
    if (d)
        closedir(d);
    free(dir);
}

/* Whether process pid exists on this host and has not ended: a zombie (ended,
 * not yet reaped; common in containers whose init does not reap) counts as
 * ended. /proc where it exists, else kill(pid, 0). */
static int process_alive(long pid)
{
    char path[64], buf[512];
    FILE *f;
    if (kill((pid_t)pid, 0) != 0 && errno != EPERM)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        const char *paren;
        fclose(f);
        buf[n] = '\0';
        paren = strrchr(buf, ')'); /* "pid (comm) S ..." where comm may hold spaces */
        if (paren && (paren[1] == ' ') && (paren[2] == 'Z' || paren[2] == 'X'))
            return 0;
    }
    return 1;
}

int mst_temp_clean(const char *path, int min_age_s, int dry_run, int *verdict)
{
    char host[64], me[64];
    long pid;
    struct stat a, b;
    int fd, locked = 0, same_host, alive = 0;
    size_t artifact = 0;
    if (!path || !verdict)
        return MST_ERR_INVALID_ARGUMENT;
    *verdict = MST_TEMP_NOT_TEMP;
    if (parse_name(path, host, sizeof host, &pid, &artifact) != 0)
        return MST_OK;
    if (artifact) {
        /* OMPIO's file beside a temporary: it goes with its temporary (and
         * is removed with it, below); alone, by the host and pid rules */
        char *tmp = strndup(path, artifact);
        int base_exists;
        if (!tmp)
            return MST_ERR_NO_MEMORY;
        base_exists = lstat(tmp, &b) == 0;
        free(tmp);
        if (lstat(path, &a) != 0 || !S_ISREG(a.st_mode))
            return MST_OK;
        mst_commit_host(me, sizeof me);
        same_host = strcmp(host, me) == 0;
        if (base_exists || (same_host && process_alive(pid)) ||
            (!same_host && time(NULL) - a.st_mtime < (time_t)min_age_s)) {
            *verdict = MST_TEMP_IN_USE;
            return MST_OK;
        }
        *verdict = MST_TEMP_ABANDONED;
        if (!dry_run && unlink(path) != 0 && errno != ENOENT)
            return MST_ERR_IO;
        return MST_OK;
    }
    if (lstat(path, &a) != 0)
        return errno == ENOENT ? MST_OK : MST_ERR_IO;
    if (!S_ISREG(a.st_mode))
        return MST_OK;
    mst_commit_host(me, sizeof me);
    same_host = strcmp(host, me) == 0;
    if (same_host)
        alive = process_alive(pid);
    fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? MST_OK : MST_ERR_IO;
    if (lock_byte(fd, F_WRLCK) == 0) {
        locked = 1;
    } else if (!no_locks_here(errno)) {
        close(fd);
        *verdict = MST_TEMP_IN_USE; /* a running save holds it */
        return MST_OK;
    }
    /* Without a lock to go by, only a dead process on this host proves the
     * file abandoned. With one, a live pid on this host still keeps it (a
     * save between creating and locking its file), and a file from another
     * host must also be older than min_age_s (node-local locks on some
     * parallel file systems cannot see that host's lock). */
    if ((same_host && alive) || (!locked && !same_host) ||
        (!same_host && time(NULL) - a.st_mtime < (time_t)min_age_s)) {
        close(fd);
        *verdict = MST_TEMP_IN_USE;
        return MST_OK;
    }
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino ||
        a.st_dev != b.st_dev) {
        close(fd);
        return MST_OK; /* gone or replaced meanwhile: not ours to judge */
    }
    *verdict = MST_TEMP_ABANDONED;
    if (!dry_run && unlink(path) != 0) {
        int e = errno;
        close(fd);
        return e == ENOENT ? MST_OK : MST_ERR_IO;
    }
    close(fd); /* unlinked while locked: a racing writer sees its name gone */
    if (!dry_run)
        remove_artifacts(path);
    return MST_OK;
}

/* Multi-file sets: names, the index, the journaled switch, recovery. */
#include "mst_set.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mst.h"
#include "mst_commit.h"

char *mst_set_shard_path(const char *dir, int k, int n)
{
    size_t cap = strlen(dir) + 64;
    char *p = malloc(cap);
    if (!p)
        return NULL;
    if (n == 1)
        snprintf(p, cap, "%s/%s", dir, MST_SET_SINGLE);
    else
        snprintf(p, cap, "%s/model-%05d-of-%05d.safetensors", dir, k, n);
    return p;
}

/* ---- the index ------------------------------------------------------------ */

static int cmp_entry(const void *a, const void *b)
{
    const mst_set_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Python's json.dumps string with ensure_ascii=True. Names are valid UTF-8
 * (the plan checked them). */
static void put_py_string(mst_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    char u[6] = {'\\', 'u', 0, 0, 0, 0};
    mst_buf_putc(b, '"');
    while (p < end) {
        uint32_t c = *p;
        int extra = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
        if (extra) {
            c &= 0x3fu >> extra;
            for (int i = 1; i <= extra && p + i < end; i++)
                c = (c << 6) | (p[i] & 0x3fu);
        }
        p += 1 + extra;
        switch (c) {
        case '"': mst_buf_puts(b, "\\\""); continue;
        case '\\': mst_buf_puts(b, "\\\\"); continue;
        case '\n': mst_buf_puts(b, "\\n"); continue;
        case '\r': mst_buf_puts(b, "\\r"); continue;
        case '\t': mst_buf_puts(b, "\\t"); continue;
        case '\b': mst_buf_puts(b, "\\b"); continue;
        case '\f': mst_buf_puts(b, "\\f"); continue;
        default: break;
        }
        if (c >= 0x20 && c < 0x7f) {
            mst_buf_putc(b, (char)c);
            continue;
        }
        if (c > 0xffff) { /* a surrogate pair */
            uint32_t v = c - 0x10000, hi = 0xd800 + (v >> 10), lo = 0xdc00 + (v & 0x3ff);
            for (int i = 0; i < 4; i++)
                u[2 + i] = hex[(hi >> (12 - 4 * i)) & 0xf];
            mst_buf_put(b, u, 6);
            c = lo;
        }
        for (int i = 0; i < 4; i++)
            u[2 + i] = hex[(c >> (12 - 4 * i)) & 0xf];
        mst_buf_put(b, u, 6);
    }
    mst_buf_putc(b, '"');
}

int mst_set_index_json(mst_buf *out, mst_set_entry *entries, size_t n, int nshards,
                       uint64_t total_size)
{
    qsort(entries, n, sizeof *entries, cmp_entry);
    mst_buf_puts(out, "{\n  \"metadata\": {\n    \"total_size\": ");
    mst_buf_put_u64(out, total_size);
    mst_buf_puts(out, "\n  },\n  \"weight_map\": {");
    for (size_t i = 0; i < n; i++) {
        char file[64];
        mst_buf_puts(out, i ? ",\n    " : "\n    ");
        put_py_string(out, entries[i].name, entries[i].name_len);
        snprintf(file, sizeof file, ": \"model-%05d-of-%05d.safetensors\"", entries[i].shard,
                 nshards);
        mst_buf_puts(out, file);
    }
    mst_buf_puts(out, n ? "\n  }\n}\n" : "}\n}\n");
    return mst_buf_ok(out) ? MST_OK : MST_ERR_NO_MEMORY;
}

/* ---- journal ---------------------------------------------------------------- */

typedef struct journal {
    char id[17];
    char **tmp, **fin; /* new files: temporary and final basenames; commit file last */
    int nnew;
    char **old;        /* previous set's basenames, moved to .mst-old.<id>.<name> */
    int nold, oldcap;
} journal;

static void journal_free(journal *j)
{
    for (int i = 0; i < j->nnew; i++) {
        free(j->tmp[i]);
        free(j->fin[i]);
    }
    for (int i = 0; i < j->nold; i++)
        free(j->old[i]);
    free(j->tmp);
    free(j->fin);
    free(j->old);
    memset(j, 0, sizeof *j);
}

static const char *base_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static char *join(const char *dir, const char *a, const char *b)
{
    size_t cap = strlen(dir) + strlen(a) + (b ? strlen(b) : 0) + 2;
    char *p = malloc(cap);
    if (p)
        snprintf(p, cap, "%s/%s%s", dir, a, b ? b : "");
    return p;
}

static int exists(const char *dir, const char *a, const char *b)
{
    char *p = join(dir, a, b);
    struct stat st;
    int r = p && lstat(p, &st) == 0;
    free(p);
    return r;
}

/* Is name a file of a Hugging Face set (what a new set replaces)? */
static int is_set_file(const char *name)
{
    const char *p;
    if (!strcmp(name, MST_SET_SINGLE) || !strcmp(name, MST_SET_INDEX))
        return 1;
    if (strncmp(name, "model-", 6) != 0)
        return 0;
    p = name + 6;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (strncmp(p, "-of-", 4) != 0)
        return 0;
    p += 4;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    return !strcmp(p, ".safetensors");
}

static char *journal_path(const char *dir, const char *id, const char *suffix)
{
    char name[80];
    snprintf(name, sizeof name, ".mst-set.%s.journal%s", id, suffix);
    return join(dir, name, NULL);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes a file whole under a temporary name, syncs it, renames it. */
static int write_file(const char *path, const char *tmp, const char *data, size_t n,
                      int durable)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), e;
    if (fd < 0)
        return -1;
    if (write_all(fd, data, n) != 0 || (durable && fsync(fd) != 0)) {
        e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    if (close(fd) != 0 || (path && rename(tmp, path) != 0)) {
        e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

static int journal_write(const char *dir, const journal *j, int durable)
{
    mst_buf b;
    char *path = journal_path(dir, j->id, ""), *tmp = journal_path(dir, j->id, ".tmp");
    int rc = -1;
    mst_buf_init(&b, 0);
    mst_buf_puts(&b, "mst-set-journal 1\n");
    for (int i = 0; i < j->nnew; i++) {
        mst_buf_puts(&b, "new ");
        mst_buf_puts(&b, j->tmp[i]);
        mst_buf_putc(&b, ' ');
        mst_buf_puts(&b, j->fin[i]);
        mst_buf_putc(&b, '\n');
    }
    for (int i = 0; i < j->nold; i++) {
        mst_buf_puts(&b, "old ");
        mst_buf_puts(&b, j->old[i]);
        mst_buf_putc(&b, '\n');
    }
    if (path && tmp && mst_buf_ok(&b) && write_file(path, tmp, b.data, b.len, durable) == 0 &&
        (!durable || mst_commit_sync_dir(dir) == 0))
        rc = 0;
    mst_buf_free(&b);
    free(path);
    free(tmp);
    return rc;
}

/*
 * Finishes (committed) or undoes an interrupted switch. The switch point is
 * the rename of the commit file (the last new file): once its temporary name
 * is gone and its final name exists, the new set is in place.
 */
static int journal_settle(const char *dir, const journal *j, char *report, size_t cap)
{
    int committed, bad = 0, left = 0;
    const char *ctmp = j->tmp[j->nnew - 1], *cfin = j->fin[j->nnew - 1];
    char prefix[64], *jp;
    snprintf(prefix, sizeof prefix, ".mst-old.%s.", j->id);
    committed = !exists(dir, ctmp, NULL) && exists(dir, cfin, NULL);
    if (committed) {
        /* The new set is in place: an old file that cannot be removed stays
         * under its ".mst-old." name, which blocks nothing, and the journal
         * goes all the same, so that recovery always converges. */
        for (int i = 0; i < j->nold; i++) {
            char *p = join(dir, prefix, j->old[i]);
            if (!p) {
                bad = 1;
            } else if (unlink(p) != 0 && errno != ENOENT && rmdir(p) != 0 && errno != ENOENT) {
                left++;
                if (report) {
                    size_t used = strlen(report);
                    if (used < cap)
                        snprintf(report + used, cap - used, "%s: left %s%s: %s\n", dir, prefix,
                                 j->old[i], strerror(errno));
                }
            }
            free(p);
        }
    } else {
        /* new files out (their temporaries, or what the switch renamed into
         * place), then the old ones back */
        for (int i = 0; i < j->nnew; i++) {
            char *t = join(dir, j->tmp[i], NULL), *f = join(dir, j->fin[i], NULL);
            int old_in_place = 0;
            for (int k = 0; k < j->nold; k++)
                old_in_place |= !strcmp(j->old[k], j->fin[i]) && !exists(dir, prefix, j->old[k]);
            if (!t || !f)
                bad = 1;
            else if (unlink(t) == 0 || errno != ENOENT)
                ; /* still under its temporary name */
            else if (i < j->nnew - 1 && !old_in_place && unlink(f) != 0 && errno != ENOENT)
                bad = 1;
            free(t);
            free(f);
        }
        for (int i = 0; i < j->nold; i++) {
            char *from = join(dir, prefix, j->old[i]), *to = join(dir, j->old[i], NULL);
            struct stat st;
            if (!from || !to)
                bad = 1;
            else if (lstat(from, &st) == 0 && rename(from, to) != 0)
                bad = 1;
            free(from);
            free(to);
        }
    }
    mst_commit_sync_dir(dir);
    jp = journal_path(dir, j->id, "");
    if (!bad && jp && unlink(jp) != 0 && errno != ENOENT)
        bad = 1;
    free(jp);
    mst_commit_sync_dir(dir);
    if (report) {
        size_t used = strlen(report);
        if (used < cap)
            snprintf(report + used, cap - used, "%s: %s the save of %s%s\n", dir,
                     committed ? "finished" : "rolled back", cfin,
                     bad    ? " (some files could not be handled)"
                     : left ? " (old files left, listed above)"
                            : "");
    }
    return bad ? -1 : 0;
}

/* ---- switch ------------------------------------------------------------------ */

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

int mst_set_check_dir(const char *dir, mst_err *err)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char q[520];
    mst_quote(q, sizeof q, dir, strlen(dir), 400);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return mst_err_set(err, MST_ERR_TARGET_DIR,
                           "rank 0: the multi-file target %s is not an existing directory", q);
    if (access(dir, W_OK | X_OK) != 0)
        return mst_err_set(err, MST_ERR_TARGET_DIR, "rank 0: directory %s is not writable: %s",
                           q, strerror(errno));
    if (!(d = opendir(dir)))
        return mst_err_set(err, MST_ERR_TARGET_DIR, "rank 0: cannot list %s: %s", q,
                           strerror(errno));
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        struct stat est;
        /* A save moves every set file aside and removes it after the switch:
         * one it could rename but never remove (a directory, a FIFO) would
         * leave a journal behind for ever. Refused before anything changes. */
        if (is_set_file(e->d_name) && fstatat(dirfd(d), e->d_name, &est, AT_SYMLINK_NOFOLLOW) == 0 &&
            !S_ISREG(est.st_mode) && !S_ISLNK(est.st_mode)) {
            mst_err_set(err, MST_ERR_TARGET_DIR,
                        "rank 0: %s/%s is %s, not a regular file: a set save replaces every "
                        "file of that name; move it away first",
                        q, e->d_name, S_ISDIR(est.st_mode) ? "a directory" : "a special file");
            closedir(d);
            return err->code;
        }
        if (!strncmp(e->d_name, ".mst-set.", 9) && n > 8 && !strcmp(e->d_name + n - 8, ".journal")) {
            /* the message first: e points into d */
            mst_err_set(err, MST_ERR_STATE,
                        "rank 0: an interrupted save left %s/%s; run mst-merge --recover %s "
                        "(mst_shardset_recover) first",
                        q, e->d_name, q);
            closedir(d);
            return err->code;
        }
    }
    closedir(d);
    return MST_OK;
}

/* Two saves into one directory must not interleave their switches: rank 0
 * holds a POSIX record lock on "<dir>/.mst-set.lock" around it (fcntl locks
 * work across nodes on NFSv4 and on Lustre mounted with flock). */
static int lock_dir(const char *dir)
{
    char *p = join(dir, ".mst-set.lock", NULL);
    struct flock fl;
    int fd = p ? open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
    free(p);
    if (fd < 0)
        return -1;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    while (fcntl(fd, F_SETLKW, &fl) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    return fd;
}

static int set_commit_locked(const char *dir, int n, char **tmps, const mst_buf *index,
                             int durable, mst_err *err);

int mst_set_commit(const char *dir, int n, char **tmps, const mst_buf *index, int durable,
                   mst_err *err)
{
    char q[520];
    int fd = lock_dir(dir), rc;
    mst_quote(q, sizeof q, dir, strlen(dir), 400);
    if (fd < 0)
        return mst_err_set(err, MST_ERR_IO, "rank 0: locking %s/.mst-set.lock failed: %s", q,
                           strerror(errno));
    /* a journal now is one a crashed save left while we were writing */
    if (mst_set_check_dir(dir, err) != MST_OK)
        rc = err->code;
    else
        rc = set_commit_locked(dir, n, tmps, index, durable, err);
    close(fd); /* releases the lock */
    return rc;
}

static int set_commit_locked(const char *dir, int n, char **tmps, const mst_buf *index,
                             int durable, mst_err *err)
{
    journal j;
    char *index_path = NULL, *index_tmp = NULL, q[520];
    DIR *d;
    struct dirent *e;
    int step_failed = 0, saved = 0;
    const char *what = "";
    memset(&j, 0, sizeof j);
    mst_quote(q, sizeof q, dir, strlen(dir), 400);

    mst_commit_random_id(j.id);

    /* the index under a temporary name */
    if (n > 1) {
        index_path = join(dir, MST_SET_INDEX, NULL);
        index_tmp = index_path ? mst_commit_temp_name(index_path) : NULL;
        if (!index_tmp) {
            free(index_path);
            return mst_err_set(err, MST_ERR_NO_MEMORY, "rank 0: out of memory");
        }
        if (write_file(NULL, index_tmp, index->data, index->len, durable) != 0) {
            int e2 = errno;
            free(index_path);
            free(index_tmp);
            return mst_err_set(err, MST_ERR_IO, "rank 0: writing the index in %s failed: %s", q,
                               strerror(e2));
        }
    }
    /* the journal's content: new files, the commit file last; the old set */
    j.nnew = n + (n > 1);
    j.tmp = calloc((size_t)j.nnew, sizeof *j.tmp);
    j.fin = calloc((size_t)j.nnew, sizeof *j.fin);
    if (!j.tmp || !j.fin)
        goto oom;
    for (int k = 0; k < n; k++) {
        char *fin = mst_set_shard_path(dir, k + 1, n);
        j.tmp[k] = dup_str(base_of(tmps[k]));
        j.fin[k] = fin ? dup_str(base_of(fin)) : NULL;
        free(fin);
        if (!j.tmp[k] || !j.fin[k])
            goto oom;
    }
    if (n > 1 && (!(j.tmp[n] = dup_str(base_of(index_tmp))) || !(j.fin[n] = strdup(MST_SET_INDEX))))
        goto oom;
    if (!(d = opendir(dir))) {
        mst_err_set(err, MST_ERR_IO, "rank 0: cannot list %s: %s", q, strerror(errno));
        goto undo_new;
    }
    while ((e = readdir(d))) {
        if (!is_set_file(e->d_name))
            continue;
        if (j.nold == j.oldcap) {
            int c = j.oldcap ? 2 * j.oldcap : 16;
            char **o = realloc(j.old, (size_t)c * sizeof *o);
            if (!o) {
                closedir(d);
                goto oom;
            }
            j.old = o;
            j.oldcap = c;
        }
        if (!(j.old[j.nold] = strdup(e->d_name))) {
            closedir(d);
            goto oom;
        }
        j.nold++;
    }
    closedir(d);
    /* the files that make a set loadable move first */
    for (int i = 0; i < j.nold; i++) {
        if (!strcmp(j.old[i], MST_SET_INDEX) || !strcmp(j.old[i], MST_SET_SINGLE)) {
            char *t = j.old[i];
            memmove(j.old + 1, j.old, (size_t)i * sizeof *j.old);
            j.old[0] = t;
        }
    }

    if (journal_write(dir, &j, durable) != 0) {
        mst_err_set(err, MST_ERR_IO, "rank 0: writing the journal in %s failed: %s", q,
                    strerror(errno));
        goto undo_new;
    }
    /* the previous set aside */
    for (int i = 0; i < j.nold && !step_failed; i++) {
        char prefix[64], *from = join(dir, j.old[i], NULL), *to;
        snprintf(prefix, sizeof prefix, ".mst-old.%s.", j.id);
        to = join(dir, prefix, j.old[i]);
        if (!from || !to || rename(from, to) != 0) {
            saved = errno;
            step_failed = 1;
            what = "moving the previous set aside";
        }
        free(from);
        free(to);
    }
    if (!step_failed && durable && mst_commit_sync_dir(dir) != 0) {
        saved = errno;
        step_failed = 1;
        what = "syncing the directory";
    }
    /* the new set in, the commit file last */
    for (int i = 0; i < j.nnew && !step_failed; i++) {
        char *from = join(dir, j.tmp[i], NULL), *to = join(dir, j.fin[i], NULL);
        if (!from || !to || rename(from, to) != 0) {
            saved = errno;
            step_failed = 1;
            what = "renaming the new shards into place";
        }
        free(from);
        free(to);
    }
    if (step_failed) {
        journal_settle(dir, &j, NULL, 0);
        mst_err_set(err, MST_ERR_IO, "rank 0: %s in %s failed (%s); the previous set was restored",
                    what, q, strerror(saved));
        goto out;
    }
    if (durable && mst_commit_sync_dir(dir) != 0) {
        mst_err_set(err, MST_ERR_IO,
                    "rank 0: the new set is in place in %s, but fsync of the directory failed "
                    "(%s): the switch may not survive a crash",
                    q, strerror(errno));
    }
    /* committed: the old files and the journal go; a journal left behind
     * would stop the next save, so that is a failure to report */
    if (journal_settle(dir, &j, NULL, 0) != 0 && err->code == MST_OK)
        mst_err_set(err, MST_ERR_IO,
                    "rank 0: the new set is in place in %s, but its journal .mst-set.%s.journal "
                    "could not be removed: run mst-merge --recover %s",
                    q, j.id, q);
    goto out;

oom:
    mst_err_set(err, MST_ERR_NO_MEMORY, "rank 0: out of memory switching sets in %s", q);
undo_new:
    if (index_tmp)
        unlink(index_tmp);
out:
    journal_free(&j);
    free(index_path);
    free(index_tmp);
    return err->code;
}

static int read_journal(const char *path, const char *id, journal *j)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    memset(j, 0, sizeof *j);
    snprintf(j->id, sizeof j->id, "%s", id);
    if (!f)
        return -1;
    if (!fgets(line, sizeof line, f) || strcmp(line, "mst-set-journal 1\n") != 0) {
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        char *nl = strchr(line, '\n'), *sp;
        if (!nl)
            break;
        *nl = '\0';
        if (!strncmp(line, "new ", 4) && (sp = strchr(line + 4, ' '))) {
            char **t = realloc(j->tmp, (size_t)(j->nnew + 1) * sizeof *t), **fn;
            if (!t)
                break;
            j->tmp = t;
            fn = realloc(j->fin, (size_t)(j->nnew + 1) * sizeof *fn);
            if (!fn)
                break;
            j->fin = fn;
            *sp = '\0';
            j->tmp[j->nnew] = strdup(line + 4);
            j->fin[j->nnew] = strdup(sp + 1);
            j->nnew++;
        } else if (!strncmp(line, "old ", 4)) {
            char **o = realloc(j->old, (size_t)(j->nold + 1) * sizeof *o);
            if (!o)
                break;
            j->old = o;
            j->old[j->nold++] = strdup(line + 4);
        }
    }
    fclose(f);
    for (int i = 0; i < j->nnew; i++)
        if (!j->tmp[i] || !j->fin[i] || strchr(j->tmp[i], '/') || strchr(j->fin[i], '/'))
            return -1;
    for (int i = 0; i < j->nold; i++)
        if (!j->old[i] || strchr(j->old[i], '/'))
            return -1;
    return j->nnew > 0 ? 0 : -1;
}

int mst_shardset_recover(const char *dir, char *report, size_t report_cap)
{
    DIR *d;
    struct dirent *e;
    int bad = 0;
    if (report && report_cap)
        report[0] = '\0';
    if (!dir)
        return MST_ERR_INVALID_ARGUMENT;
    if (!(d = opendir(dir))) {
        if (report)
            snprintf(report, report_cap, "cannot list %s: %s\n", dir, strerror(errno));
        return MST_ERR_IO;
    }
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        char id[17], *path;
        journal j;
        if (strncmp(e->d_name, ".mst-set.", 9) != 0 || n != 9 + 16 + 8 ||
            strcmp(e->d_name + 25, ".journal") != 0)
            continue;
        memcpy(id, e->d_name + 9, 16);
        id[16] = '\0';
        path = join(dir, e->d_name, NULL);
        if (!path || read_journal(path, id, &j) != 0) {
            if (report) {
                size_t used = strlen(report);
                snprintf(report + used, report_cap - used, "%s/%s: unreadable journal\n", dir,
                         e->d_name);
            }
            bad = 1;
        } else if (journal_settle(dir, &j, report, report_cap) != 0) {
            bad = 1;
        }
        journal_free(&j);
        free(path);
    }
    closedir(d);
    return bad ? MST_ERR_IO : MST_OK;
}

/* Deprecated name of mst_shardset_recover, kept for existing programs. */
int mst_set_recover(const char *dir, char *report, size_t report_cap)
{
    return mst_shardset_recover(dir, report, report_cap);
}

#include "mst_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "mst.h"
#include "mst_exchange.h"

#define PATH_QUOTE 512

static const char *qpath(char *buf, size_t cap, const char *path)
{
    return mst_quote(buf, cap, path, strlen(path), 400);
}

/* The MPI error text, plus errno when the call left one behind: ROMIO keeps
 * only the class, and OMPIO's short writes come with no error at all. */
static void describe(int rc, int saved_errno, char *buf, size_t cap)
{
    char text[MPI_MAX_ERROR_STRING + 32];
    if (rc != MPI_SUCCESS)
        mst_mpi_errstr(rc, text, sizeof text);
    else
        snprintf(text, sizeof text, "no MPI error reported");
    if (saved_errno)
        snprintf(buf, cap, "%s; last system error: %s", text, strerror(saved_errno));
    else
        snprintf(buf, cap, "%s", text);
}

/*
 * Long names. Open MPI 4.1's OMPIO formats "<name>.locktest.<rank>" into a
 * 256-byte buffer (sharedfp/lockedfile) while it opens any file: a name of 245
 * bytes or more aborts the process ("buffer overflow detected"). mst opens
 * files on MPI_COMM_SELF (rank 0 there), so a name of up to MST_IO_NAME_MAX
 * bytes passes as it is; a longer one is handed to MPI-IO as
 * "/proc/self/fd/<directory>/<base name>", with the directory held open until
 * the file is closed (MPI-IO may use the name again at the close).
 */
#define MST_IO_NAME_MAX 244
#define MST_IO_LONG_SLOTS 16

static struct {
    MPI_File fh;
    int dirfd1; /* the directory's descriptor + 1; 0: a free slot */
} long_names[MST_IO_LONG_SLOTS];
static pthread_mutex_t long_names_lock = PTHREAD_MUTEX_INITIALIZER;

/* The name to give MPI_File_open for `name`: `name` itself (*dfd -1), or a
 * short form in buf through an open descriptor of its directory (*dfd);
 * NULL with errno when neither fits. */
static const char *mpi_name(const char *name, char *buf, size_t cap, int *dfd)
{
    const char *slash = strrchr(name, '/');
    char *dir;
    int fd, n;
    *dfd = -1;
    if (strlen(name) <= MST_IO_NAME_MAX)
        return name;
    if (!slash || strlen(slash + 1) + sizeof "/proc/self/fd/2147483647/" > MST_IO_NAME_MAX + 1) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    dir = slash == name ? strdup("/") : strndup(name, (size_t)(slash - name));
    if (!dir)
        return NULL;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return NULL;
    n = snprintf(buf, cap, "/proc/self/fd/%d/%s", fd, slash + 1);
    if (n < 0 || (size_t)n >= cap || access("/proc/self/fd", X_OK) != 0) {
        close(fd);
        errno = ENAMETOOLONG;
        return NULL;
    }
    *dfd = fd;
    return buf;
}

/* Keeps dfd open while fh is; 0, or -1 when every slot is taken. */
static int hold_dir(MPI_File fh, int dfd)
{
    int rc = -1;
    pthread_mutex_lock(&long_names_lock);
    for (int i = 0; i < MST_IO_LONG_SLOTS && rc; i++)
        if (long_names[i].dirfd1 == 0) {
            long_names[i].fh = fh;
            long_names[i].dirfd1 = dfd + 1;
            rc = 0;
        }
    pthread_mutex_unlock(&long_names_lock);
    return rc;
}

static void release_dir(MPI_File fh)
{
    pthread_mutex_lock(&long_names_lock);
    for (int i = 0; i < MST_IO_LONG_SLOTS; i++)
        if (long_names[i].dirfd1 && long_names[i].fh == fh) {
            close(long_names[i].dirfd1 - 1);
            long_names[i].dirfd1 = 0;
            long_names[i].fh = MPI_FILE_NULL;
            break;
        }
    pthread_mutex_unlock(&long_names_lock);
}

int mst_io_close(MPI_File *fh)
{
    MPI_File was = *fh;
    int rc;
    if (was == MPI_FILE_NULL)
        return MPI_SUCCESS;
    rc = MPI_File_close(fh);
    release_dir(was);
    *fh = MPI_FILE_NULL;
    return rc;
}

/* MPI_File_open on MPI_COMM_SELF, whatever the name's length; MPI's code,
 * or MST_IO_NAME_TOO_LONG with errno set when the name cannot be given. */
#define MST_IO_NAME_TOO_LONG (-1)
static int open_self(const char *name, int amode, MPI_Info hints, MPI_File *fh)
{
    char buf[MST_IO_NAME_MAX + 1];
    int dfd, rc;
    const char *use = mpi_name(name, buf, sizeof buf, &dfd);
    *fh = MPI_FILE_NULL;
    if (!use)
        return MST_IO_NAME_TOO_LONG;
    errno = 0;
    rc = MPI_File_open(MPI_COMM_SELF, use, amode, hints, fh);
    if (dfd >= 0) {
        int e = errno;
        if (rc != MPI_SUCCESS) {
            close(dfd);
        } else if (hold_dir(*fh, dfd) != 0) {
            MPI_File_close(fh);
            close(dfd);
            errno = EMFILE;
            return MST_IO_NAME_TOO_LONG;
        }
        errno = e;
    }
    return rc;
}

static int name_too_long(mst_err *err, int rank, const char *what, const char *name)
{
    char qp[PATH_QUOTE];
    int e = errno;
    return mst_err_set(err, e == ENAMETOOLONG ? MST_ERR_INVALID_ARGUMENT : MST_ERR_IO,
                       "rank %d: %s %s failed: %s (Open MPI's MPI-IO aborts on file names of "
                       "%d bytes or more; this one has %zu%s)",
                       rank, what, qpath(qp, sizeof qp, name), strerror(e), MST_IO_NAME_MAX + 1,
                       strlen(name),
                       e == ENAMETOOLONG ? ", and its last component is too long to shorten: "
                                           "choose a shorter file name"
                                         : "");
}

int mst_io_open(const char *tmp, int create, MPI_Info hints, int rank, MPI_File *fh,
                int *exists, mst_err *err)
{
    char qp[PATH_QUOTE], why[MPI_MAX_ERROR_STRING + 128];
    int amode = MPI_MODE_WRONLY | (create ? MPI_MODE_CREATE | MPI_MODE_EXCL : 0);
    int rc, e, cls = 0, code = MST_ERR_IO;
    if (exists)
        *exists = 0;
    rc = open_self(tmp, amode, hints, fh);
    e = errno;
    if (rc == MST_IO_NAME_TOO_LONG)
        return name_too_long(err, rank, create ? "creating temporary file" : "opening temporary file",
                             tmp);
    if (rc == MPI_SUCCESS) {
        MPI_File_set_errhandler(*fh, MPI_ERRORS_RETURN);
        return MST_OK;
    }
    *fh = MPI_FILE_NULL;
    MPI_Error_class(rc, &cls);
    if (exists)
        *exists = cls == MPI_ERR_FILE_EXISTS;
    if (cls == MPI_ERR_ACCESS || cls == MPI_ERR_NO_SUCH_FILE || cls == MPI_ERR_READ_ONLY ||
        cls == MPI_ERR_BAD_FILE)
        code = MST_ERR_TARGET_DIR;
    describe(rc, e, why, sizeof why);
    /* ROMIO creates a file by creating it, closing it and opening it again:
     * a failure of any of the three ends here */
    return mst_err_set(err, code, "rank %d: %s temporary file %s failed%s: %s", rank,
                       create ? "creating" : "opening", qpath(qp, sizeof qp, tmp),
                       create ? " (MPI_File_open creates, closes and reopens it)" : "", why);
}

int mst_io_open_read(const char *path, MPI_Info hints, int rank, MPI_File *fh, mst_err *err)
{
    char qp[PATH_QUOTE], why[MPI_MAX_ERROR_STRING + 128];
    int rc = open_self(path, MPI_MODE_RDONLY, hints, fh), e = errno;
    if (rc == MST_IO_NAME_TOO_LONG)
        return name_too_long(err, rank, "opening", path);
    if (rc == MPI_SUCCESS) {
        MPI_File_set_errhandler(*fh, MPI_ERRORS_RETURN);
        return MST_OK;
    }
    *fh = MPI_FILE_NULL;
    describe(rc, e, why, sizeof why);
    return mst_err_set(err, MST_ERR_IO, "rank %d: cannot open %s: %s", rank,
                       qpath(qp, sizeof qp, path), why);
}

/* OMPIO reports a failed pwrite as success with a short count and no errno:
 * look at the file system to say why. */
static const char *space_hint(const char *path)
{
    struct statvfs vfs;
    if (path && statvfs(path, &vfs) == 0 && vfs.f_bavail == 0)
        return "; the file system is full";
    return "";
}

/* The message of a failed write: an MPI error, or (rc MPI_SUCCESS) a short
 * count: `got` of `asked` bytes at file offset `at`. */
static int write_failed(mst_err *err, int rc, int e, int rank, const char *what, uint64_t len,
                        uint64_t offset, long long got, uint64_t asked, uint64_t at,
                        const char *path)
{
    char why[MPI_MAX_ERROR_STRING + 128];
    describe(rc, e, why, sizeof why);
    if (rc == MPI_SUCCESS)
        return mst_err_set(err, MST_ERR_IO,
                           "rank %d: writing %s (%llu bytes at file offset %llu) failed: "
                           "short write, %lld of %llu bytes at file offset %llu (%s)%s",
                           rank, what, (unsigned long long)len, (unsigned long long)offset, got,
                           (unsigned long long)asked, (unsigned long long)at, why,
                           space_hint(path));
    return mst_err_set(err, MST_ERR_IO,
                       "rank %d: writing %s (%llu bytes at file offset %llu) failed: %s%s", rank,
                       what, (unsigned long long)len, (unsigned long long)offset, why,
                       space_hint(path));
}

int mst_io_write(MPI_File fh, const char *path, uint64_t offset, const void *buf, uint64_t len,
                 int rank, const char *what, mst_err *err)
{
    const char *p = buf;
    uint64_t done = 0;
    while (done < len) {
        uint64_t left = len - done;
        int n = (int)(left < MST_IO_CHUNK ? left : MST_IO_CHUNK);
        MPI_Status st;
        MPI_Count got = 0;
        int rc, e;
        errno = 0;
        rc = MPI_File_write_at(fh, (MPI_Offset)(offset + done), p + done, n, MPI_BYTE, &st);
        e = errno;
        if (rc == MPI_SUCCESS && MPI_Get_elements_x(&st, MPI_BYTE, &got) == MPI_SUCCESS &&
            got == n) {
            done += (uint64_t)n;
            continue;
        }
        return write_failed(err, rc, e, rank, what, len, offset, (long long)got, (uint64_t)n,
                            offset + done, path);
    }
    return MST_OK;
}

int mst_io_write_runs(MPI_File fh, const char *path, const uint64_t *off, const uint64_t *len,
                      size_t n, const void *buf, int rank, const char *what, mst_err *err)
{
    char why[MPI_MAX_ERROR_STRING + 128];
    MPI_Datatype view = MPI_DATATYPE_NULL;
    MPI_Info info = MPI_INFO_NULL;
    MPI_Aint *disp;
    int *blen, rc, e = 0, reset;
    uint64_t total = 0;
    MPI_Status st;
    MPI_Count got = 0;
    if (n == 1)
        return mst_io_write(fh, path, off[0], buf, len[0], rank, what, err);
    if (n == 0)
        return MST_OK;
    if (n > (size_t)INT32_MAX)
        return mst_err_set(err, MST_ERR_SIZE_OVERFLOW, "rank %d: writing %s: too many runs",
                           rank, what);
    disp = malloc(n * sizeof *disp);
    blen = malloc(n * sizeof *blen);
    if (!disp || !blen) {
        free(disp);
        free(blen);
        return mst_err_set(err, MST_ERR_NO_MEMORY,
                           "rank %d: out of memory for the file view of %s (%zu runs)", rank,
                           what, n);
    }
    for (size_t i = 0; i < n; i++) {
        disp[i] = (MPI_Aint)off[i];
        blen[i] = (int)len[i];
        total += len[i];
    }
    rc = MPI_Type_create_hindexed((int)n, blen, disp, MPI_BYTE, &view);
    free(disp);
    free(blen);
    if (rc == MPI_SUCCESS)
        rc = MPI_Type_commit(&view);
    if (rc != MPI_SUCCESS) {
        if (view != MPI_DATATYPE_NULL)
            MPI_Type_free(&view);
        describe(rc, 0, why, sizeof why);
        return mst_err_set(err, MST_ERR_MPI,
                           "rank %d: building the file view of %s (%zu runs) failed: %s", rank,
                           what, n, why);
    }
    /* No data sieving (ROMIO's read-modify-write of the whole extent): the
     * gaps between the runs hold other ranks' bytes, which this rank must
     * never write back, whatever the file system's caching and locks. */
    if (MPI_Info_create(&info) == MPI_SUCCESS)
        MPI_Info_set(info, "romio_ds_write", "disable");
    errno = 0;
    rc = MPI_File_set_view(fh, 0, MPI_BYTE, view, "native", info);
    if (info != MPI_INFO_NULL)
        MPI_Info_free(&info);
    if (rc == MPI_SUCCESS) {
        errno = 0;
        rc = MPI_File_write_at(fh, 0, buf, (int)total, MPI_BYTE, &st);
        e = errno;
        /* back to plain bytes, whatever happened: the other writes use offsets */
        reset = MPI_File_set_view(fh, 0, MPI_BYTE, MPI_BYTE, "native", MPI_INFO_NULL);
        if (rc == MPI_SUCCESS && reset != MPI_SUCCESS)
            rc = reset;
    } else {
        e = errno;
    }
    MPI_Type_free(&view);
    if (rc == MPI_SUCCESS && MPI_Get_elements_x(&st, MPI_BYTE, &got) == MPI_SUCCESS &&
        (uint64_t)got == total)
        return MST_OK;
    return write_failed(err, rc, e, rank, what, total, off[0], (long long)got, total, off[0],
                        path);
}

int mst_io_open_shared(MPI_Comm comm, const char *tmp, MPI_Info hints, int rank, MPI_File *fh,
                       mst_err *err)
{
    char qp[PATH_QUOTE], why[MPI_MAX_ERROR_STRING + 128];
    int rc, e;
    /* a collective open needs the same name on every rank: no short form
     * (and OMPIO's limit shrinks with the digits of the rank) */
    if (strlen(tmp) > MST_IO_NAME_MAX - 10) {
        *fh = MPI_FILE_NULL;
        return mst_err_set(err, MST_ERR_INVALID_ARGUMENT,
                           "rank %d: with mst_strided_writes=collective the temporary file's "
                           "name must be under %d bytes (Open MPI's MPI-IO aborts on longer "
                           "ones); %s has %zu: choose a shorter target path",
                           rank, MST_IO_NAME_MAX - 10, qpath(qp, sizeof qp, tmp), strlen(tmp));
    }
    errno = 0;
    rc = MPI_File_open(comm, tmp, MPI_MODE_WRONLY, hints, fh);
    e = errno;
    if (rc == MPI_SUCCESS) {
        MPI_File_set_errhandler(*fh, MPI_ERRORS_RETURN);
        return MST_OK;
    }
    *fh = MPI_FILE_NULL;
    describe(rc, e, why, sizeof why);
    return mst_err_set(err, MST_ERR_IO,
                       "rank %d: opening temporary file %s for collective writes failed: %s",
                       rank, qpath(qp, sizeof qp, tmp), why);
}

/* `len` contiguous bytes, whatever len (MPI counts are int). */
static int byte_run_type(uint64_t len, MPI_Datatype *t)
{
    const uint64_t unit = (uint64_t)1 << 30;
    MPI_Datatype chunk, body, rest, parts[2];
    int bl[2] = {1, 1}, rc;
    MPI_Aint disp[2];
    uint64_t q = len / unit, r = len % unit;
    if (len <= INT_MAX)
        return MPI_Type_contiguous((int)len, MPI_BYTE, t);
    if ((rc = MPI_Type_contiguous((int)unit, MPI_BYTE, &chunk)) != MPI_SUCCESS)
        return rc;
    rc = MPI_Type_contiguous((int)q, chunk, &body);
    MPI_Type_free(&chunk);
    if (rc != MPI_SUCCESS || r == 0) {
        *t = body;
        return rc;
    }
    if ((rc = MPI_Type_contiguous((int)r, MPI_BYTE, &rest)) != MPI_SUCCESS) {
        MPI_Type_free(&body);
        return rc;
    }
    parts[0] = body;
    parts[1] = rest;
    disp[0] = 0;
    disp[1] = (MPI_Aint)(q * unit);
    rc = MPI_Type_create_struct(2, bl, disp, parts, t);
    MPI_Type_free(&body);
    MPI_Type_free(&rest);
    return rc;
}

/* `count` copies of `inner`, `stride` bytes apart, whatever count. */
static int strided_type(uint64_t count, uint64_t stride, MPI_Datatype inner, MPI_Datatype *t)
{
    const uint64_t unit = (uint64_t)1 << 30;
    MPI_Datatype block, body, rest, parts[2];
    int bl[2] = {1, 1}, rc;
    MPI_Aint disp[2];
    uint64_t q = count / unit, r = count % unit;
    if (count <= INT_MAX)
        return MPI_Type_create_hvector((int)count, 1, (MPI_Aint)stride, inner, t);
    if ((rc = MPI_Type_create_hvector((int)unit, 1, (MPI_Aint)stride, inner, &block)) !=
        MPI_SUCCESS)
        return rc;
    rc = MPI_Type_create_hvector((int)q, 1, (MPI_Aint)(stride * unit), block, &body);
    MPI_Type_free(&block);
    if (rc != MPI_SUCCESS || r == 0) {
        *t = body;
        return rc;
    }
    if ((rc = MPI_Type_create_hvector((int)r, 1, (MPI_Aint)stride, inner, &rest)) !=
        MPI_SUCCESS) {
        MPI_Type_free(&body);
        return rc;
    }
    parts[0] = body;
    parts[1] = rest;
    disp[0] = 0;
    disp[1] = (MPI_Aint)(q * unit * stride);
    rc = MPI_Type_create_struct(2, bl, disp, parts, t);
    MPI_Type_free(&body);
    MPI_Type_free(&rest);
    return rc;
}

/* The file bytes of one box, relative to its first byte. */
static int box_type(const mst_io_box *b, MPI_Datatype *t)
{
    MPI_Datatype cur, next;
    uint64_t stride = 1;
    int rc = byte_run_type(b->run, &cur);
    if (rc != MPI_SUCCESS)
        return rc;
    for (int d = b->ndim - 1; d >= 0; d--) {
        if (d < b->k && b->cb[d] > 1) {
            rc = strided_type(b->cb[d], stride, cur, &next);
            MPI_Type_free(&cur);
            if (rc != MPI_SUCCESS)
                return rc;
            cur = next;
        }
        stride *= b->gb[d];
    }
    *t = cur;
    return MPI_SUCCESS;
}

/* The file view of this rank: every box at its offset. */
static int view_type(const mst_io_box *boxes, size_t n, MPI_Datatype *t)
{
    MPI_Datatype *types = calloc(n ? n : 1, sizeof *types);
    MPI_Aint *disp = calloc(n ? n : 1, sizeof *disp);
    int *bl = calloc(n ? n : 1, sizeof *bl);
    size_t made = 0;
    int rc = MPI_ERR_NO_MEM;
    if (types && disp && bl) {
        rc = MPI_SUCCESS;
        for (; made < n && rc == MPI_SUCCESS; made++) {
            rc = box_type(&boxes[made], &types[made]);
            disp[made] = (MPI_Aint)boxes[made].offset;
            bl[made] = 1;
        }
        if (rc != MPI_SUCCESS)
            made--;
        else
            rc = MPI_Type_create_struct((int)n, bl, disp, types, t);
        if (rc == MPI_SUCCESS)
            rc = MPI_Type_commit(t);
    }
    for (size_t i = 0; i < made; i++)
        MPI_Type_free(&types[i]);
    free(types);
    free(disp);
    free(bl);
    return rc;
}

/* Memory for bytes [a, b) of the concatenated boxes: their buffers, in order. */
static int memory_type(const mst_io_box *boxes, size_t n, uint64_t a, uint64_t b,
                       MPI_Datatype *t)
{
    int *len = malloc(n * sizeof *len);
    MPI_Aint *addr = malloc(n * sizeof *addr);
    int pieces = 0, rc = MPI_ERR_NO_MEM;
    uint64_t at = 0;
    if (len && addr) {
        for (size_t i = 0; i < n && at < b; i++) {
            uint64_t lo = a > at ? a - at : 0, hi = boxes[i].bytes;
            if (at + hi > b)
                hi = b - at;
            if (lo < hi) {
                MPI_Get_address((const char *)boxes[i].data + lo, &addr[pieces]);
                len[pieces++] = (int)(hi - lo);
            }
            at += boxes[i].bytes;
        }
        rc = MPI_Type_create_hindexed(pieces, len, addr, MPI_BYTE, t);
        if (rc == MPI_SUCCESS)
            rc = MPI_Type_commit(t);
    }
    free(len);
    free(addr);
    return rc;
}

int mst_io_write_boxes(MPI_Comm comm, MPI_File fh, const char *path, const mst_io_box *boxes,
                       size_t n, int rank, mst_err *err)
{
    char why[MPI_MAX_ERROR_STRING + 160];
    MPI_Datatype view = MPI_BYTE;
    uint64_t total = 0, rounds = 0, all_rounds = 0;
    int rc, failed = 0;
    for (size_t i = 0; i < n; i++)
        total += boxes[i].bytes;
    if (n > 0 && (rc = view_type(boxes, n, &view)) != MPI_SUCCESS) {
        describe(rc, 0, why, sizeof why);
        mst_err_set(err, MST_ERR_MPI, "rank %d: building the file view of %zu boxes failed: %s",
                    rank, n, why);
        view = MPI_BYTE;
        failed = 1;
    }
    rounds = failed ? 0 : (total + MST_IO_CHUNK - 1) / MST_IO_CHUNK;
    rc = MPI_Allreduce(&rounds, &all_rounds, 1, MPI_UINT64_T, MPI_MAX, comm);
    if (rc != MPI_SUCCESS) {
        if (view != MPI_BYTE)
            MPI_Type_free(&view);
        describe(rc, 0, why, sizeof why);
        return mst_err_set(err, MST_ERR_MPI, "rank %d: MPI_Allreduce failed: %s", rank, why);
    }
    rc = MPI_File_set_view(fh, 0, MPI_BYTE, view, "native", MPI_INFO_NULL);
    if (rc != MPI_SUCCESS && !failed) {
        describe(rc, errno, why, sizeof why);
        mst_err_set(err, MST_ERR_IO, "rank %d: MPI_File_set_view for strided boxes failed: %s",
                    rank, why);
        failed = 1;
    }
    for (uint64_t r = 0; r < all_rounds; r++) {
        uint64_t a = r * MST_IO_CHUNK, b = a + MST_IO_CHUNK > total ? total : a + MST_IO_CHUNK;
        MPI_Datatype mem = MPI_BYTE;
        MPI_Status st;
        MPI_Count got = 0;
        int count = 0, e;
        if (!failed && a < b) {
            if ((rc = memory_type(boxes, n, a, b, &mem)) != MPI_SUCCESS) {
                describe(rc, 0, why, sizeof why);
                mst_err_set(err, MST_ERR_MPI, "rank %d: building a memory type failed: %s", rank,
                            why);
                failed = 1;
                mem = MPI_BYTE;
            } else {
                count = 1;
            }
        }
        errno = 0;
        rc = MPI_File_write_at_all(fh, (MPI_Offset)(count ? a : 0), count ? MPI_BOTTOM : NULL,
                                   count, mem, &st);
        e = errno;
        if (mem != MPI_BYTE)
            MPI_Type_free(&mem);
        if (!count || failed)
            continue;
        if (rc != MPI_SUCCESS || MPI_Get_elements_x(&st, MPI_BYTE, &got) != MPI_SUCCESS ||
            (uint64_t)got != b - a) {
            describe(rc, e, why, sizeof why);
            mst_err_set(err, MST_ERR_IO,
                        "rank %d: collective write of %llu bytes of strided boxes (%s%s) "
                        "failed: %s%s%s",
                        rank, (unsigned long long)(b - a), boxes[0].what,
                        n > 1 ? " and others" : "", rc == MPI_SUCCESS ? "short write; " : "",
                        why, space_hint(path));
            failed = 1;
        }
    }
    if (view != MPI_BYTE)
        MPI_Type_free(&view);
    return failed ? err->code : MST_OK;
}

int mst_io_verify_boxes(const char *path, MPI_Info hints, const mst_io_box *boxes, size_t n,
                        int rank, mst_err *err)
{
    char why[MPI_MAX_ERROR_STRING + 160], qp[PATH_QUOTE];
    MPI_File fh = MPI_FILE_NULL;
    MPI_Datatype view = MPI_BYTE;
    uint64_t total = 0, at = 0;
    size_t box = 0;
    uint64_t in_box = 0;
    unsigned char *buf = NULL;
    int rc;
    for (size_t i = 0; i < n; i++)
        total += boxes[i].bytes;
    if (total == 0)
        return MST_OK;
    rc = open_self(path, MPI_MODE_RDONLY, hints, &fh);
    if (rc == MST_IO_NAME_TOO_LONG)
        return name_too_long(err, rank, "opening temporary file to read back its strided boxes",
                             path);
    if (rc != MPI_SUCCESS) {
        describe(rc, errno, why, sizeof why);
        fh = MPI_FILE_NULL;
        return mst_err_set(err, MST_ERR_IO,
                           "rank %d: opening temporary file %s to read back its strided boxes "
                           "failed: %s",
                           rank, qpath(qp, sizeof qp, path), why);
    }
    MPI_File_set_errhandler(fh, MPI_ERRORS_RETURN);
    rc = view_type(boxes, n, &view);
    if (rc == MPI_SUCCESS)
        rc = MPI_File_set_view(fh, 0, MPI_BYTE, view, "native", MPI_INFO_NULL);
    /* a small buffer: the read-back must not double the memory a save needs */
    buf = rc == MPI_SUCCESS ? malloc(total < MST_IO_VERIFY_CHUNK ? total : MST_IO_VERIFY_CHUNK)
                            : NULL;
    if (rc != MPI_SUCCESS || !buf) {
        describe(rc, 0, why, sizeof why);
        mst_err_set(err, buf || rc != MPI_SUCCESS ? MST_ERR_IO : MST_ERR_NO_MEMORY,
                    "rank %d: reading back the strided boxes of %s failed: %s", rank,
                    qpath(qp, sizeof qp, path), rc != MPI_SUCCESS ? why : "out of memory");
        goto out;
    }
    while (at < total) {
        int len = (int)(total - at < MST_IO_VERIFY_CHUNK ? total - at : MST_IO_VERIFY_CHUNK);
        MPI_Status st;
        MPI_Count got = 0;
        rc = MPI_File_read_at(fh, (MPI_Offset)at, buf, len, MPI_BYTE, &st);
        if (rc != MPI_SUCCESS || MPI_Get_elements_x(&st, MPI_BYTE, &got) != MPI_SUCCESS ||
            got != len) {
            describe(rc, 0, why, sizeof why);
            mst_err_set(err, MST_ERR_IO,
                        "rank %d: reading back the strided boxes of %s failed: %s%s", rank,
                        qpath(qp, sizeof qp, path), rc == MPI_SUCCESS ? "short read; " : "", why);
            goto out;
        }
        for (int k = 0; k < len;) {
            uint64_t take = boxes[box].bytes - in_box;
            if (take > (uint64_t)(len - k))
                take = (uint64_t)(len - k);
            if (memcmp(buf + k, (const char *)boxes[box].data + in_box, take) != 0) {
                mst_err_set(err, MST_ERR_IO,
                            "rank %d: the collective write of %s lost data (MPI-IO reported "
                            "success, but the bytes read back differ; a write on the "
                            "aggregating rank failed or came up short)",
                            rank, boxes[box].what);
                goto out;
            }
            k += (int)take;
            in_box += take;
            if (in_box == boxes[box].bytes) {
                box++;
                in_box = 0;
            }
        }
        at += (uint64_t)len;
    }
out:
    free(buf);
    if (view != MPI_BYTE)
        MPI_Type_free(&view);
    mst_io_close(&fh);
    return err->code;
}

int mst_io_sync_close(MPI_File *fh, int sync, int collective, int rank, mst_err *err)
{
    char why[MPI_MAX_ERROR_STRING + 128];
    int rc, e;
    if (*fh == MPI_FILE_NULL)
        return MST_OK;
    if (sync) {
        errno = 0;
        rc = MPI_File_sync(*fh);
        e = errno;
        if (rc != MPI_SUCCESS) {
            int cls = 0;
            describe(rc, e, why, sizeof why);
            MPI_Error_class(rc, &cls);
            /* OMPIO 4.1 answers a sync with MPI_ERR_OTHER when a collective
             * write on this rank failed earlier but was reported as success
             * (only with the hint mst_strided_writes=collective) */
            mst_err_set(err, MST_ERR_IO,
                        "rank %d: MPI_File_sync of the temporary file failed: %s%s", rank, why,
                        collective && cls == MPI_ERR_OTHER
                            ? " (an earlier collective write on this rank may have failed "
                              "unreported)"
                            : "");
            mst_io_close(fh);
            return err->code;
        }
    }
    errno = 0;
    rc = mst_io_close(fh);
    e = errno;
    if (rc != MPI_SUCCESS) {
        describe(rc, e, why, sizeof why);
        return mst_err_set(err, MST_ERR_IO,
                           "rank %d: MPI_File_close of the temporary file failed: %s", rank,
                           why);
    }
    return MST_OK;
}

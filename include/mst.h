/*
 * mst: every rank of an MPI job writes its own tensors into one shared
 * safetensors file.
 *
 * The file written is byte-identical to what the reference writer
 * (safetensors.torch.save_file) produces for the same tensors, whatever the
 * number of ranks and whichever rank holds which tensor.
 *
 * Conventions
 * - Every function returning int returns MST_OK (0) or one of the stable error
 *   codes below; mst_strerror() names a code, the handle's *_error() function
 *   gives the detail (which tensor, which rank, which system error).
 * - Each function says whether it is "collective over the writer's
 *   communicator" (every rank must call it, in the same order, and every rank
 *   gets the same return value and the same message) or "local".
 * - The library never aborts, exits or prints; it never calls MPI_Init.
 *
 * Memory: who frees what
 * - Handles are created by *_open and released by *_free, which accept NULL.
 * - Tensor data passed to mst_writer_add() stays owned by the caller and must
 *   stay valid and unchanged until mst_writer_commit() returns; nothing is
 *   copied. Names, shapes, metadata keys and values are copied at the call.
 * - Strings returned by the library (error texts, names, dtype names) belong
 *   to the library: do not free them. Texts from a handle stay valid until the
 *   next call on that handle or its free.
 */
#ifndef MST_H
#define MST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(MST_STATIC)
#define MST_API __attribute__((visibility("default")))
#else
#define MST_API
#endif

#define MST_VERSION_MAJOR 0
#define MST_VERSION_MINOR 1
#define MST_VERSION_PATCH 0
#define MST_VERSION_NUMBER \
    (MST_VERSION_MAJOR * 10000 + MST_VERSION_MINOR * 100 + MST_VERSION_PATCH)

/* Local. The version of the library actually linked (MST_VERSION_NUMBER form). */
MST_API unsigned mst_version_number(void);
/* Local. "MAJOR.MINOR.PATCH". */
MST_API const char *mst_version_string(void);

/* Limits of the format as its readers enforce them. */
#define MST_MAX_HEADER_SIZE 100000000u /* bytes of JSON header, padding included */
/* Offsets and sizes above 2^53 cannot be represented exactly by JSON readers
 * that use doubles; mst neither writes nor accepts them. */
#define MST_MAX_OFFSET (UINT64_C(1) << 53)

/*
 * The safetensors dtypes. The numbers are the reference implementation's enum
 * order, which also decides the canonical tensor order in a file (descending).
 */
typedef enum mst_dtype {
    MST_BOOL = 0,
    MST_F4 = 1,          /* 4 bits; torch float4_e2m1fn_x2 packs two */
    MST_F6_E2M3 = 2,     /* 6 bits */
    MST_F6_E3M2 = 3,     /* 6 bits */
    MST_U8 = 4,
    MST_I8 = 5,
    MST_F8_E5M2 = 6,
    MST_F8_E4M3 = 7,     /* torch float8_e4m3fn */
    MST_F8_E8M0 = 8,     /* torch float8_e8m0fnu */
    MST_F8_E4M3FNUZ = 9,
    MST_F8_E5M2FNUZ = 10,
    MST_I16 = 11,
    MST_U16 = 12,
    MST_F16 = 13,
    MST_BF16 = 14,
    MST_I32 = 15,
    MST_U32 = 16,
    MST_F32 = 17,
    MST_C64 = 18,
    MST_F64 = 19,
    MST_I64 = 20,
    MST_U64 = 21
} mst_dtype;
#define MST_DTYPE_COUNT 22

/* Local. The safetensors name ("BF16"), or NULL for a value outside the enum. */
MST_API const char *mst_dtype_name(mst_dtype dtype);
/* Local. Exact, case-sensitive lookup of a safetensors name. Returns MST_OK and
 * sets *out, or MST_ERR_UNKNOWN_DTYPE (MST_ERR_INVALID_ARGUMENT for NULLs). */
MST_API int mst_dtype_from_name(const char *name, mst_dtype *out);
/* Local. Bits per element (4, 6, 8, 16, 32 or 64), or 0 outside the enum. */
MST_API int mst_dtype_bits(mst_dtype dtype);

/* Error codes. The numbers are stable; new codes get new numbers. */
enum mst_error_code {
    MST_OK = 0,
    MST_ERR_INVALID_ARGUMENT = 1,  /* NULL handle or path, ndim < 0, NULL shape, ranks disagree on path or options */
    MST_ERR_NO_MEMORY = 2,         /* an allocation failed */
    MST_ERR_STATE = 3,             /* call not allowed now: add after commit, commit twice, use after a failed open */
    MST_ERR_MPI = 4,               /* an MPI call outside file I/O failed */
    MST_ERR_EMPTY_NAME = 10,       /* a tensor name is "" */
    MST_ERR_RESERVED_NAME = 11,    /* a tensor is named "__metadata__" */
    MST_ERR_INVALID_UTF8 = 12,     /* a tensor name, metadata key or value is not valid UTF-8 */
    MST_ERR_DUPLICATE_NAME = 13,   /* one tensor name declared twice (same rank or two ranks) */
    MST_ERR_UNKNOWN_DTYPE = 14,    /* dtype outside mst_dtype, or an unknown dtype name */
    MST_ERR_NEGATIVE_DIM = 15,     /* a dimension of a shape is negative */
    MST_ERR_SIZE_OVERFLOW = 16,    /* element count, bits, bytes or total data size overflow 64 bits, or exceed MST_MAX_OFFSET */
    MST_ERR_PARTIAL_BYTES = 17,    /* a sub-byte (F4, F6) tensor is not a whole number of bytes */
    MST_ERR_NULL_DATA = 18,        /* NULL data for a tensor with bytes */
    MST_ERR_HEADER_TOO_LARGE = 19, /* header above MST_MAX_HEADER_SIZE bytes */
    MST_ERR_METADATA_CONFLICT = 20,/* one metadata key given two different values */
    MST_ERR_SLICE_MISMATCH = 21,   /* slices or replicas of one tensor disagree on dtype or shape, or mix the two */
    MST_ERR_SLICE_BOUNDS = 22,     /* a slice's box is outside its tensor's global shape */
    MST_ERR_SLICE_OVERLAP = 23,    /* two boxes of one tensor overlap */
    MST_ERR_SLICE_GAP = 24,        /* the boxes of a tensor leave elements uncovered */
    MST_ERR_CALLBACK = 25,         /* a fill callback of a streamed tensor reported an error */
    MST_ERR_TARGET_DIR = 30,       /* target's directory missing, not a directory or not writable; target is a directory */
    MST_ERR_IO = 31,               /* a file operation failed: open, write (short writes included), sync, close, rename */
    MST_ERR_FORMAT = 40,           /* a file is not valid safetensors: header length, UTF-8, JSON, types, fields */
    MST_ERR_OFFSETS = 41,          /* a file's data_offsets are invalid: not from 0, holes, overlaps, size mismatch, trailing bytes */
    MST_ERR_NOT_FOUND = 42,        /* no tensor of that name in the file */
    MST_ERR_RANGE = 43             /* a read outside a tensor's bytes */
};

/* Local. A short, constant description of a code ("duplicate tensor name"). */
MST_API const char *mst_strerror(int code);

/* ------------------------------------------------------------------------ */
/* Writer: one save of one safetensors file from all ranks of a communicator */

typedef struct mst_writer mst_writer;

/*
 * Collective over comm. Starts a save to `path` (the same path on every rank;
 * rank 0's is used and the others are checked against it). `comm` is
 * duplicated, so the caller may free it after this call; `hints` (or
 * MPI_INFO_NULL) is duplicated and passed to MPI_File_open, so striping_factor,
 * striping_unit, cb_nodes and the like reach the MPI-IO layer.
 * Nothing is created on disk before mst_writer_commit().
 * On success *w is a new handle. On failure the return value is the same on
 * every rank and *w is, where memory allowed, a handle that holds only the
 * message (mst_writer_error) and must still be freed; otherwise NULL.
 */
MST_API int mst_writer_open(mst_writer **w, MPI_Comm comm, const char *path, MPI_Info hints);

/*
 * Local. Durability: when enabled (the default) the commit calls
 * MPI_File_sync on every rank before the rename and fsyncs the target's
 * directory after it, so the new file survives a power loss once commit
 * returns. Disabled, the file is complete and atomically in place for every
 * reader, but its bytes may still sit in the page cache. Every rank must give
 * the same setting; the commit checks it (MST_ERR_INVALID_ARGUMENT).
 */
MST_API int mst_writer_set_fsync(mst_writer *w, int enabled);

/*
 * Local. Declares one tensor this rank owns: `shape` has `ndim` dimensions
 * (ndim 0 is a scalar, one element), `data` holds the tensor's bytes in C
 * (row-major) order, little-endian, product(shape) * bits / 8 bytes. The data
 * is not copied; it is written from this buffer during the commit.
 * An invalid declaration returns its error here and is also kept: the commit
 * then fails with it on every rank (the first error of each rank; the lowest
 * failing rank's error is what all ranks return).
 */
MST_API int mst_writer_add(mst_writer *w, const char *name, mst_dtype dtype,
                   int ndim, const int64_t *shape, const void *data);

/*
 * Local. Declares this rank's box of a tensor that is split over ranks (tensor
 * parallelism: a row block, a column block, any N-d box). The tensor has
 * `ndim` dimensions `global_shape`; this rank holds the elements with
 * start[d] <= i_d < start[d] + count[d], in C order in `data`
 * (product(count) elements, not copied). A rank may declare several boxes of
 * one tensor (fused layouts). At the commit the boxes from all ranks must
 * tile the global shape exactly: one dtype and global shape, inside the
 * bounds, no overlap, no gap (MST_ERR_SLICE_*). Boxes that are one
 * contiguous byte range in the file (row splits) are written with
 * MPI_File_write_at; strided ones through a file view and collective writes,
 * so MPI-IO aggregates them. No rank ever holds more than its own boxes.
 * F4/F6 boxes must start and end on whole bytes along the last dimension.
 */
MST_API int mst_writer_add_slice(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                                 const int64_t *global_shape, const int64_t *start,
                                 const int64_t *count, const void *data);

/*
 * Local. Declares a tensor this rank holds in full while other ranks hold it
 * too (layer norms and biases under tensor parallelism, everything under data
 * parallelism). It is written once, by one of its holders, chosen to balance
 * the bytes each rank writes. The holders must agree on dtype and shape
 * (MST_ERR_SLICE_MISMATCH); the bytes themselves are not compared. Every
 * holder's `data` must stay valid until the commit returns.
 */
MST_API int mst_writer_add_replica(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                                   const int64_t *shape, const void *data);

/*
 * Fill callback of a streamed tensor: copy `len` bytes of the tensor (or of
 * the box, for mst_writer_add_slice_stream), starting `offset` bytes into it,
 * into `buf`. Called during the commit, on the declaring rank, with ranges in
 * increasing order that cover the bytes exactly once, each at most the
 * staging size (mst_writer_set_staging). Return 0 on success; any other value
 * fails the save with MST_ERR_CALLBACK on every rank (the value is quoted in
 * the message).
 */
typedef int (*mst_fill_fn)(void *ctx, uint64_t offset, void *buf, uint64_t len);

/*
 * Local. Declares a tensor this rank owns whose bytes are not in one buffer
 * (on a GPU, produced on the fly, read from another file): during the commit
 * the library asks `fill` for them piece by piece through a staging buffer of
 * its own, so the memory a save needs stays flat whatever the tensor sizes.
 * Otherwise like mst_writer_add.
 */
MST_API int mst_writer_add_stream(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                                  const int64_t *shape, mst_fill_fn fill, void *ctx);

/*
 * Local. A streamed box of a split tensor (see mst_writer_add_slice): `fill`
 * is asked for the box's bytes in C order. The box must be one contiguous
 * byte range of the tensor (a block of whole rows along the first dimension
 * that is not 1, e.g. a row split), else MST_ERR_INVALID_ARGUMENT.
 */
MST_API int mst_writer_add_slice_stream(mst_writer *w, const char *name, mst_dtype dtype,
                                        int ndim, const int64_t *global_shape,
                                        const int64_t *start, const int64_t *count,
                                        mst_fill_fn fill, void *ctx);

/*
 * Local. Bytes of the staging buffer that streamed tensors pass through
 * (default MST_DEFAULT_STAGING, 64 MiB; at least 4096). It is allocated at the
 * commit only when this rank streams, and never larger than its largest
 * streamed tensor. Ranks may use different sizes.
 */
#define MST_DEFAULT_STAGING ((size_t)64 << 20)
MST_API int mst_writer_set_staging(mst_writer *w, size_t bytes);

/*
 * Local. Makes the save a Hugging Face multi-file checkpoint: `path` given to
 * mst_writer_open is then a directory (it must exist), and the commit writes
 * there "model-00001-of-0000N.safetensors" ... and
 * "model.safetensors.index.json" ({"metadata": {"total_size": ...},
 * "weight_map": {...}}, as transformers writes it), or one
 * "model.safetensors" and no index when everything fits in one shard.
 * Tensors go to shards in the canonical order, each shard filled greedily up
 * to `max_bytes` of tensor data; a tensor larger than that is alone in its
 * shard. Every shard is a canonical file whose "__metadata__" holds
 * "format": "pt" (unless the caller gives "format") and the caller's entries.
 * All ranks write into every shard. 0 (the default) is a single-file save.
 * Every rank must give the same value (checked at the commit).
 *
 * The set is replaced atomically for loaders: the new shards are written and
 * synced under temporary names; then rank 0 records the switch in a journal
 * ("<dir>/.mst-set.<id>.journal"), moves the previous set's files
 * ("model.safetensors", "model.safetensors.index.json",
 * "model-NNNNN-of-NNNNN.safetensors") aside as "<dir>/.mst-old.<id>.<name>",
 * renames the new shards into place and the index last, and removes the old
 * files and the journal. A crash in between leaves no loadable set (never a
 * mix of old and new shards); mst_set_recover() (or `mst-merge --recover DIR`)
 * then restores the previous set or finishes the new one. A save refuses to
 * start while a journal is left (MST_ERR_STATE). Two saves into one directory
 * switch one after the other: rank 0 holds an fcntl lock on
 * "<dir>/.mst-set.lock" (left in place) during the switch.
 */
MST_API int mst_writer_set_max_shard_size(mst_writer *w, uint64_t max_bytes);

/*
 * Local (no MPI). Finishes or rolls back what an interrupted multi-file save
 * left in `dir` (see mst_writer_set_max_shard_size): a save whose index (or
 * single file) was renamed into place is completed (the old files removed);
 * any other is rolled back (its new files removed, the previous set moved
 * back). Writes what it did into `report` (may be NULL). MST_OK when nothing
 * was left or everything was repaired; MST_ERR_IO otherwise.
 */
MST_API int mst_set_recover(const char *dir, char *report, size_t report_cap);

/*
 * Local. Adds one "__metadata__" entry (string to string). Several ranks may
 * give the same key with the same value; two different values for one key,
 * on one rank or on two, fail the commit with MST_ERR_METADATA_CONFLICT.
 * Entries are written sorted by key (byte order), so the output is
 * deterministic; without any entry the header has no "__metadata__".
 */
MST_API int mst_writer_add_metadata(mst_writer *w, const char *key, const char *value);

/*
 * Collective over the writer's communicator. Performs the save: metadata to
 * rank 0, plan, offsets back, every rank writes its own tensors into
 * "<path>.tmp-mst.<host>.<pid>.<random>" with MPI-IO, rank 0 writes the
 * header, sync (see mst_writer_set_fsync), close, rename over `path`.
 * Returns the same value on every rank, with the same message. On any error no
 * file appears at `path`, the temporary file is removed, and whatever was at
 * `path` before is untouched. A writer commits once; afterwards only
 * mst_writer_error and mst_writer_free are meaningful.
 * Errors a rank found in its own declarations (bad dtype, NULL data, an
 * allocation failure in mst_writer_add...) fail the commit on every rank,
 * before any file is created.
 * Every rank of the communicator must call the commit, or none: if one rank
 * commits while another frees its writer or never commits, the committing
 * ranks wait in their first collective call until the job is killed (MPI
 * cannot tell a late rank from one that will never come, and the library sets
 * no timeouts). Caught at once on every rank instead: a second commit, a
 * commit after a failed open (MST_ERR_STATE), ranks that disagree on the path
 * (at open) or on mst_writer_set_fsync (MST_ERR_INVALID_ARGUMENT).
 * Crashes: if any process dies during the commit, the target is still either
 * the previous file or the complete new one; a temporary file may remain,
 * which mst_temp_clean / the mst-clean tool removes. See "Guarantees" in README.md.
 */
MST_API int mst_writer_commit(mst_writer *w);

/* Local. NULL-safe; sets *w to NULL. Freeing an uncommitted writer abandons
 * the save (nothing was written); do it on every rank, since ranks that
 * commit instead would wait for this one (see mst_writer_commit). The
 * duplicated communicator is freed. */
MST_API void mst_writer_free(mst_writer **w);

/* Local. The detail of the last error on this handle ("" if none). */
MST_API const char *mst_writer_error(const mst_writer *w);

/* ------------------------------------------------------------------------ */
/* Temporary files left by crashed saves                                      */

/* Every temporary file of a save is named "<target>" MST_TEMP_MARK
 * "<host>.<pid>.<16 hex digits>" (host: the short host name of rank 0, pid:
 * its process id). While the save runs, rank 0 holds an fcntl
 * open-file-description write lock on byte 2^62 of it; the kernel drops the
 * lock when the process ends, however it ends (kill -9 included). */
#define MST_TEMP_MARK ".tmp-mst."

enum mst_temp_verdict {
    MST_TEMP_NOT_TEMP = 0,  /* not a regular file named like a temporary file */
    MST_TEMP_IN_USE = 1,    /* a running save may own it: kept */
    MST_TEMP_ABANDONED = 2  /* no save owns it: removed (unless dry_run) */
};

/*
 * Local, no MPI. Decides whether `path` is a temporary file that no running
 * save owns and, unless dry_run, removes it. It is abandoned when its lock
 * can be taken and either (a) it was made on this host by a process that no
 * longer exists, or (b) it was made on another host and was last modified
 * more than min_age_s seconds ago (some parallel file systems keep locks
 * node-local). On a file system without fcntl locks only (a) applies. The
 * file is removed while the cleaner holds its lock, and a writer checks
 * after locking that its name still refers to its file, so a save starting
 * at that moment picks a new name instead of losing its file.
 * Returns MST_OK (verdict in *verdict) or MST_ERR_IO / MST_ERR_INVALID_ARGUMENT.
 */
MST_API int mst_temp_clean(const char *path, int min_age_s, int dry_run, int *verdict);

/* ------------------------------------------------------------------------ */
/* Reader: validate a safetensors file and read tensors back (local, no MPI)  */

typedef struct mst_reader mst_reader;

typedef struct mst_tensor_info {
    const char *name;      /* NUL-terminated; may contain "\0" escapes, see name_len */
    size_t name_len;       /* bytes of name, without the terminator */
    mst_dtype dtype;
    int ndim;
    const int64_t *shape;  /* ndim entries */
    uint64_t begin;        /* data_offsets, relative to the data buffer */
    uint64_t end;
} mst_tensor_info;

/*
 * Local. Opens `path`, reads its header (never its data) and validates the
 * file by every rule of the reference reader, plus: duplicate tensor names,
 * duplicate metadata keys, and integers above MST_MAX_OFFSET are rejected.
 * Only regular files are read (a FIFO or device is MST_ERR_IO, never a hang).
 * Codes: MST_ERR_IO, MST_ERR_FORMAT (length, JSON, types, fields),
 * MST_ERR_HEADER_TOO_LARGE, MST_ERR_INVALID_UTF8, MST_ERR_UNKNOWN_DTYPE,
 * MST_ERR_DUPLICATE_NAME, MST_ERR_SIZE_OVERFLOW, MST_ERR_PARTIAL_BYTES,
 * MST_ERR_OFFSETS, MST_ERR_NO_MEMORY. The message names the rule, the tensor
 * and the file offset.
 * On success *r is a new handle. On failure *r is, where memory allowed, a
 * handle holding only the message (mst_reader_error) and must still be freed;
 * otherwise NULL.
 */
MST_API int mst_reader_open(mst_reader **r, const char *path);
/* Local. NULL-safe; sets *r to NULL. */
MST_API void mst_reader_free(mst_reader **r);
/* Local. Detail of the last error ("" if none). */
MST_API const char *mst_reader_error(const mst_reader *r);

/* Local. Number of tensors; tensor i (in data offset order) into *out. */
MST_API size_t mst_reader_count(const mst_reader *r);
MST_API int mst_reader_tensor(const mst_reader *r, size_t i, mst_tensor_info *out);
/* Local. Looks a tensor up by name: MST_OK, or MST_ERR_NOT_FOUND. The _len
 * form takes the name's length, for names with "\u0000" escapes. The
 * strings in *out belong to the reader (valid until mst_reader_free). */
MST_API int mst_reader_find(const mst_reader *r, const char *name, mst_tensor_info *out);
MST_API int mst_reader_find_len(const mst_reader *r, const char *name, size_t name_len,
                                mst_tensor_info *out);
/* Local. "__metadata__" entries, sorted by key. */
MST_API size_t mst_reader_metadata_count(const mst_reader *r);
MST_API int mst_reader_metadata(const mst_reader *r, size_t i, const char **key, const char **value);
/* Local. The same with lengths (keys and values may contain NUL bytes). */
MST_API int mst_reader_metadata_len(const mst_reader *r, size_t i, const char **key,
                                    size_t *key_len, const char **value, size_t *value_len);
/* Local. Header length N (padding included) and the file offset where the
 * data buffer starts (8 + N); total bytes of the data buffer. */
MST_API uint64_t mst_reader_header_size(const mst_reader *r);
MST_API uint64_t mst_reader_data_start(const mst_reader *r);
MST_API uint64_t mst_reader_data_size(const mst_reader *r);
/*
 * Local. Reads `len` bytes of tensor `name` starting `offset` bytes into the
 * tensor into `buf`. MST_ERR_RANGE if the range leaves the tensor,
 * MST_ERR_IO if the file is shorter than its header says or a read fails.
 */
MST_API int mst_reader_read(mst_reader *r, const char *name, uint64_t offset, void *buf, uint64_t len);
/* Local. The same for a name of name_len bytes, and for tensor number i (in
 * data offset order, as mst_reader_tensor). A whole tensor is offset 0 and
 * len = end - begin. An unknown name or index is MST_ERR_NOT_FOUND. */
MST_API int mst_reader_read_len(mst_reader *r, const char *name, size_t name_len,
                                uint64_t offset, void *buf, uint64_t len);
MST_API int mst_reader_read_index(mst_reader *r, size_t i, uint64_t offset, void *buf,
                                  uint64_t len);

#ifdef __cplusplus
}
#endif

/* ------------------------------------------------------------------------ */
/* Hugging Face sets: reading an index (local, no MPI)                       */
/* (appended block; a later change moves these into a reader-only header)    */

#ifdef __cplusplus
extern "C" {
#endif

/* Every public function for multi-file sets is named mst_shardset_*. */
typedef struct mst_shardset mst_shardset;

/*
 * Local. Reads and validates the index of a set: `path` is the index file
 * (model.safetensors.index.json) or the set's directory. Valid: JSON with a
 * "weight_map" object whose values are shard file names (plain names in the
 * index's directory: no '/', not "." or ".."), and, if present,
 * "metadata": {"total_size": N} with N a non-negative integer. The shards
 * themselves are not opened. Returns MST_OK, MST_ERR_IO (cannot open or
 * read), MST_ERR_FORMAT (not a valid index), MST_ERR_NO_MEMORY or
 * MST_ERR_INVALID_ARGUMENT (NULL). On failure *s is still set (NULL only if
 * out of memory) so that mst_shardset_error can tell why; free it in every
 * case with mst_shardset_free.
 */
MST_API int mst_shardset_open(mst_shardset **s, const char *path);
/* Local. The message of a failed open ("" after a successful one). */
MST_API const char *mst_shardset_error(const mst_shardset *s);
/* Local. The shard files the weight_map names, sorted (strcmp), each once:
 * the name as in the index, and its path (the index's directory + name). */
MST_API size_t mst_shardset_shard_count(const mst_shardset *s);
MST_API const char *mst_shardset_shard(const mst_shardset *s, size_t i);
MST_API const char *mst_shardset_shard_path(const mst_shardset *s, size_t i);
/* Local. The weight_map's entries in the index's order: tensor name and its
 * shard file (the same pointer as mst_shardset_shard gives). A name given
 * twice is listed twice. MST_ERR_NOT_FOUND past the end. */
MST_API size_t mst_shardset_tensor_count(const mst_shardset *s);
MST_API int mst_shardset_tensor(const mst_shardset *s, size_t i, const char **name,
                                const char **shard);
/* Local. The shard of tensor `name` (of a name given twice, the first);
 * MST_ERR_NOT_FOUND if the weight_map lacks it. */
MST_API int mst_shardset_find(const mst_shardset *s, const char *name, const char **shard);
/* Local. metadata.total_size: *present 0 when the index has none. */
MST_API int mst_shardset_total_size(const mst_shardset *s, uint64_t *out, int *present);
/* Local. NULL-safe; sets *s to NULL. */
MST_API void mst_shardset_free(mst_shardset **s);

/* Local. Finishes or undoes interrupted set saves in `dir` (see the
 * multi-file save above). mst_set_recover is its former name, deprecated and
 * kept for existing programs. */
MST_API int mst_shardset_recover(const char *dir, char *report, size_t report_cap);

#ifdef __cplusplus
}
#endif

#endif /* MST_H */

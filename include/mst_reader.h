/*
 * mst, the part that needs no MPI: version, limits, error codes, the dtype
 * table and the reader (validate a safetensors file, read tensors back).
 *
 * A program that only reads includes this header alone and links libmst; no
 * MPI header is needed to compile it, and the reader makes no MPI call
 * (MPI_Init is not needed). A shared libmst still brings its MPI library
 * along as a dependency. <mst.h> includes this header and adds the writer, which
 * needs <mpi.h>.
 *
 * Conventions
 * - Every function returning int returns MST_OK (0) or one of the stable error
 *   codes below, except mst_dtype_bits (a number of bits). mst_strerror()
 *   names a code; a handle's *_error() function gives the detail (which
 *   tensor, which rank, which system error).
 * - The library never aborts, exits or prints.
 *
 * Memory: handles are created by *_open and released by *_free, which accept
 * NULL. Strings returned by the library (error texts, names, dtype names)
 * belong to the library: do not free them. A handle's error text stays valid
 * until the next call on that handle or its free; the strings of a
 * mst_tensor_info and of the metadata stay valid until the reader is freed.
 *
 * Threads: the library starts no threads and keeps no mutable global state.
 * mst_version_*, mst_strerror and the mst_dtype_* functions may be called
 * from any thread at any time. Different reader handles are independent and
 * may be used concurrently from different threads. One handle is used by one
 * thread at a time: the functions taking a `const mst_reader *` may run
 * concurrently on one handle, but the read functions store a failure's text
 * in the handle, so threads that read concurrently each open their own reader
 * (opening reads only the header).
 */
#ifndef MST_READER_H
#define MST_READER_H

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
/* Local. Bits per element (4, 6, 8, 16, 32 or 64), or 0 outside the enum.
 * Not an error code: the one int-returning function that is not. */
MST_API int mst_dtype_bits(mst_dtype dtype);

/* Error codes. The numbers are stable; new codes get new numbers. */
enum mst_error_code {
    MST_OK = 0,
    MST_ERR_INVALID_ARGUMENT = 1,  /* NULL handle, name or path, ndim < 0, NULL shape, staging < 4096, a bad
                                      hint value, a streamed box that is not one byte range, MPI not
                                      initialized; ranks disagree on path, options or hint mst_strided_writes */
    MST_ERR_NO_MEMORY = 2,         /* an allocation failed */
    MST_ERR_STATE = 3,             /* call not allowed now: add or set after commit, commit twice, use after a
                                      failed open, a multi-file save into a directory holding a journal */
    MST_ERR_MPI = 4,               /* an MPI call outside file I/O failed */
    MST_ERR_EMPTY_NAME = 10,       /* a tensor name is "" */
    MST_ERR_RESERVED_NAME = 11,    /* a tensor is named "__metadata__" */
    MST_ERR_INVALID_UTF8 = 12,     /* a tensor name, metadata key or value is not valid UTF-8 */
    MST_ERR_DUPLICATE_NAME = 13,   /* one tensor name declared twice (same rank or two ranks) */
    MST_ERR_UNKNOWN_DTYPE = 14,    /* dtype outside mst_dtype, or an unknown dtype name */
    MST_ERR_NEGATIVE_DIM = 15,     /* a dimension of a shape is negative */
    MST_ERR_SIZE_OVERFLOW = 16,    /* element count, bits, bytes or total data size overflow 64 bits, or exceed MST_MAX_OFFSET */
    MST_ERR_PARTIAL_BYTES = 17,    /* a sub-byte (F4, F6) tensor or box is not a whole number of bytes */
    MST_ERR_NULL_DATA = 18,        /* NULL data (or fill callback) for a tensor with bytes */
    MST_ERR_HEADER_TOO_LARGE = 19, /* header above MST_MAX_HEADER_SIZE bytes */
    MST_ERR_METADATA_CONFLICT = 20,/* one metadata key given two different values */
    MST_ERR_SLICE_MISMATCH = 21,   /* slices or replicas of one tensor disagree on dtype or shape, or mix the two */
    MST_ERR_SLICE_BOUNDS = 22,     /* a slice's box is outside its tensor's global shape */
    MST_ERR_SLICE_OVERLAP = 23,    /* two boxes of one tensor overlap */
    MST_ERR_SLICE_GAP = 24,        /* the boxes of a tensor leave elements uncovered */
    MST_ERR_CALLBACK = 25,         /* a fill callback of a streamed tensor reported an error */
    MST_ERR_TARGET_DIR = 30,       /* target's directory missing, not a directory or not writable; target not a regular file (directory, FIFO, device), a loop of links */
    MST_ERR_IO = 31,               /* a file operation failed: open, write (short writes included), sync, close,
                                      rename, directory fsync, size check, read-back */
    MST_ERR_FORMAT = 40,           /* a file is not valid safetensors: header length, UTF-8, JSON, types, fields */
    MST_ERR_OFFSETS = 41,          /* a file's data_offsets are invalid: not from 0, holes, overlaps, size mismatch, trailing bytes */
    MST_ERR_NOT_FOUND = 42,        /* no tensor of that name (or number) in the file */
    MST_ERR_RANGE = 43,            /* a read outside a tensor's bytes */
    MST_ERR_CHECKSUM = 44          /* a tensor's bytes do not match its "mst.crc32" checksum, or the
                                      entry is malformed (see mst_reader_verify) */
};

/* Local. A short, constant description of a code ("duplicate tensor name");
 * "unknown error code" for any other value. */
MST_API const char *mst_strerror(int code);

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
 * Only regular files are read (a directory, FIFO or device is MST_ERR_IO,
 * never a hang). The file stays open (one descriptor) until mst_reader_free.
 * Codes: MST_ERR_IO, MST_ERR_FORMAT (length, JSON, types, fields),
 * MST_ERR_HEADER_TOO_LARGE, MST_ERR_INVALID_UTF8, MST_ERR_UNKNOWN_DTYPE,
 * MST_ERR_DUPLICATE_NAME, MST_ERR_SIZE_OVERFLOW, MST_ERR_PARTIAL_BYTES,
 * MST_ERR_OFFSETS, MST_ERR_NO_MEMORY; MST_ERR_INVALID_ARGUMENT for a NULL
 * path or r. The message names the rule, the tensor and the file offset.
 * On success *r is a new handle. On failure *r is, where memory allowed (and
 * r is not NULL), a handle holding only the message (mst_reader_error) and
 * must still be freed; otherwise NULL. Reads on such a handle return
 * MST_ERR_STATE; it has no tensors and no metadata.
 */
MST_API int mst_reader_open(mst_reader **r, const char *path);
/* Local. NULL-safe; sets *r to NULL; closes the file. */
MST_API void mst_reader_free(mst_reader **r);
/* Local. Detail of the last error ("" if none; "NULL reader" for NULL). */
MST_API const char *mst_reader_error(const mst_reader *r);

/* Local. Number of tensors; tensor i (in data offset order) into *out
 * (MST_ERR_INVALID_ARGUMENT when i is out of range). */
MST_API size_t mst_reader_count(const mst_reader *r);
MST_API int mst_reader_tensor(const mst_reader *r, size_t i, mst_tensor_info *out);
/* Local. Looks a tensor up by name: MST_OK, or MST_ERR_NOT_FOUND. The _len
 * form takes the name's length, for names with "\u0000" escapes. The
 * strings in *out belong to the reader (valid until mst_reader_free). */
MST_API int mst_reader_find(const mst_reader *r, const char *name, mst_tensor_info *out);
MST_API int mst_reader_find_len(const mst_reader *r, const char *name, size_t name_len,
                                mst_tensor_info *out);
/* Local. "__metadata__" entries, sorted by key (MST_ERR_INVALID_ARGUMENT when
 * i is out of range). */
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
 * tensor into `buf` (pread on the reader's descriptor). MST_ERR_RANGE if the
 * range leaves the tensor, MST_ERR_IO if the file is shorter than its header
 * says or a read fails, MST_ERR_STATE after a failed open.
 */
MST_API int mst_reader_read(mst_reader *r, const char *name, uint64_t offset, void *buf, uint64_t len);
/* Local. The same for a name of name_len bytes, and for tensor number i (in
 * data offset order, as mst_reader_tensor). A whole tensor is offset 0 and
 * len = end - begin. An unknown name or index is MST_ERR_NOT_FOUND. */
MST_API int mst_reader_read_len(mst_reader *r, const char *name, size_t name_len,
                                uint64_t offset, void *buf, uint64_t len);
MST_API int mst_reader_read_index(mst_reader *r, size_t i, uint64_t offset, void *buf,
                                  uint64_t len);

/* ------------------------------------------------------------------------ */
/* Hugging Face multi-file sets (local, no MPI). Every public function for  */
/* sets is named mst_shardset_*.                                            */

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

/*
 * Local (no MPI). Finishes or rolls back what an interrupted multi-file save
 * left in `dir` (see mst_writer_set_max_shard_size in mst.h): a save whose index (or
 * single file) was renamed into place is completed (the old files removed);
 * any other is rolled back (its new files removed, the previous set moved
 * back). Writes what it did into `report` (may be NULL). MST_OK when nothing
 * was left or everything was repaired; MST_ERR_IO otherwise;
 * MST_ERR_INVALID_ARGUMENT for a NULL dir. It takes no lock and cannot tell
 * a crashed save's journal from a running one's: run it only while no save
 * into `dir` is running.
 */
MST_API int mst_shardset_recover(const char *dir, char *report, size_t report_cap);


/* ---- Checksums (the "mst.crc32" metadata entry; format in mst.h) ----------
 * Local, no MPI. Tensor i is in data offset order, as mst_reader_tensor. */

/* The CRC-32 (zlib's crc32) the file records for tensor i. MST_ERR_NOT_FOUND
 * when the file has no "mst.crc32" entry (the message says so) or no tensor
 * i; MST_ERR_CHECKSUM when the entry is malformed (not 8 lowercase hex
 * digits per tensor). */
MST_API int mst_reader_checksum(mst_reader *r, size_t i, uint32_t *crc);
/* Reads tensor i (or `name`) whole, in 8 MiB pieces, and compares the CRC-32
 * of its bytes with the recorded one: MST_OK, MST_ERR_CHECKSUM on a mismatch
 * (the message names the tensor and both values), or the codes of
 * mst_reader_checksum and mst_reader_read. */
MST_API int mst_reader_verify_index(mst_reader *r, size_t i);
MST_API int mst_reader_verify(mst_reader *r, const char *name);
/* Checks a whole tensor the caller has read already (buf, len = its size;
 * MST_ERR_RANGE otherwise) against the recorded CRC-32, without reading
 * again: MST_OK or MST_ERR_CHECKSUM (or the codes of mst_reader_checksum). */
MST_API int mst_reader_check_index(mst_reader *r, size_t i, const void *buf, uint64_t len);
/* The CRC-32 of these checksums, as zlib's crc32(crc, buf, len): crc is the
 * value of the bytes before buf (0 to start). Thread-safe, no state. Runs on
 * ISA-L when libmst was built with it, else on zlib. */
MST_API uint32_t mst_crc32(uint32_t crc, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* MST_READER_H */

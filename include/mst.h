/*
 * mst: every rank of an MPI job writes its own tensors into one shared
 * safetensors file.
 *
 * The file written is byte-identical to what the reference writer
 * (safetensors.torch.save_file) produces for the same tensors, whatever the
 * number of ranks and whichever rank holds which tensor.
 *
 * This header is the writer; it includes <mpi.h> and <mst_reader.h> (version,
 * limits, error codes, dtypes and the reader, which need no MPI: a program
 * that only reads may include <mst_reader.h> alone).
 *
 * Conventions
 * - Every function returning int returns MST_OK (0) or one of the stable error
 *   codes of mst_reader.h, except mst_dtype_bits (a number of bits).
 *   mst_strerror() names a code, the handle's *_error() function gives the
 *   detail (which tensor, which rank, which system error).
 * - Each function says whether it is "collective over the writer's
 *   communicator" (every rank must call it, in the same order, and every rank
 *   gets the same return value and the same message) or "local".
 * - The library never aborts, exits or prints; it never calls MPI_Init. (Open
 *   MPI 4.1's OMPIO aborts inside MPI_File_open for names of 245 bytes or
 *   more: mst never gives it one; see mst_writer_open's "Target".)
 * - MPI errors: mst sets MPI_ERRORS_RETURN on its own duplicated communicator
 *   and on every file handle it opens, and turns failures into codes. It does
 *   not change the caller's communicator or the default file error handler
 *   (the one of MPI_FILE_NULL), which therefore decide what happens when
 *   MPI_Comm_dup in mst_writer_open or an MPI_File_open fails (by default:
 *   MPI_ERRORS_ARE_FATAL on MPI_COMM_WORLD, MPI_ERRORS_RETURN for files).
 *
 * Memory: who frees what
 * - Handles are created by *_open and released by *_free, which accept NULL.
 * - Tensor data passed to mst_writer_add() stays owned by the caller and must
 *   stay valid and unchanged until mst_writer_commit() returns (or, for a
 *   split-phase save, until mst_writer_commit_end returns, unless the
 *   snapshot is on: then until mst_writer_commit_begin returns); it is not
 *   copied at the call. (During the commit, runs of small neighbouring tensors,
 *   each under 64 KiB, are copied into one write buffer of at most 4 MiB per
 *   rank; streamed tensors pass through the staging buffer and strided boxes
 *   through the redistribution buffer, see mst_writer_add_slice; everything
 *   else is written from the caller's buffers.) Names, shapes, boxes,
 *   metadata keys and values are copied at the call.
 * - Strings returned by the library (error texts, names, dtype names) belong
 *   to the library: do not free them. Texts from a handle stay valid until the
 *   next call on that handle or its free.
 *
 * Options of a save, all with their defaults (details at each function):
 *   mst_writer_set_fsync           on: data and directory fsynced (durable)
 *   mst_writer_set_staging         MST_DEFAULT_STAGING (64 MiB) for streamed
 *                                  tensors; also caps the default
 *                                  redistribution buffer
 *   mst_writer_set_max_shard_size  0: one file; > 0: a Hugging Face set
 *   mst_writer_set_checksums       off; on: "mst.crc32" in the header (see
 *                                  "Checksums" at the end)
 *   MPI_Info key mst_strided_writes  "redistribute" (default) or "collective"
 *   MPI_Info key mst_redist_buffer   bytes; default min(staging, 1 MiB)
 *   mst_writer_set_snapshot        off; split-phase saves only (see there)
 *   MPI_Info key mst_snapshot_limit  bytes per rank; default none
 *   MPI_Info key mst_snapshot_cache  1 (default): the snapshot's memory is
 *                                  kept for the next one; 0: unmapped at end
 *   MPI_Info key mst_split_io      split phase's data path: auto (default:
 *                                  mpiio at MPI_THREAD_MULTIPLE, else posix),
 *                                  mpiio or posix (see the split-phase save)
 *   MPI_Info key mst_split_direct  1 (default): the posix path writes whole
 *                                  pages with O_DIRECT; 0: through the page
 *                                  cache (see the split-phase save)
 *   the whole MPI_Info object      passed to MPI_File_open (see mst_writer_open)
 *
 * Threads
 * - mst starts no threads, except one per split-phase save in flight
 *   (mst_writer_commit_begin to _end), and, at the end of a save that
 *   replaced a file, a short detached one on rank 0 that only closes a
 *   descriptor of the replaced file (see mst_writer_commit); the first
 *   calls MPI (MPI_File_write_at, MPI_File_sync on a handle of its own)
 *   only when MPI_Query_thread says MPI_THREAD_MULTIPLE, and no MPI
 *   function at all below that level; its only mutable global state is
 *   the cached snapshot memory (see mst_writer_set_snapshot), guarded by a
 *   mutex;
 *   mst_version_*, mst_strerror, mst_dtype_* and mst_snapshot_reserve are
 *   safe from any thread at any time. Reader handles are independent of
 *   each other and of MPI (see mst_reader.h).
 * - A writer handle is used by one thread at a time; its error text belongs to
 *   the handle. Fill callbacks run on the thread that calls the commit.
 * - The writer calls MPI only inside mst_writer_open, mst_writer_commit (and
 *   mst_writer_commit_begin, mst_writer_commit_end) and mst_writer_free; the
 *   add, set, test and error functions make no MPI call, and
 *   mst_temp_clean and mst_shardset_recover none at all. mst never asks for a
 *   thread level (no MPI_Init_thread); it reads it (MPI_Query_thread) only in
 *   mst_writer_commit_begin, to choose split phase's data path. The
 *   application's level must cover how it calls those three functions:
 *   MPI_THREAD_FUNNELED from the thread that initialized MPI,
 *   MPI_THREAD_SERIALIZED from several threads one at a time,
 *   MPI_THREAD_MULTIPLE from several threads at once.
 * - With MPI_THREAD_MULTIPLE, commits of different writers may run at the same
 *   time on different threads: each writer's collective calls run on its own
 *   duplicated communicator (its files are opened on MPI_COMM_SELF, or on that
 *   communicator with mst_strided_writes=collective), so they never match
 *   another writer's. mst_writer_open, however, duplicates the caller's
 *   communicator, a collective call on it: opens on one communicator must not
 *   run concurrently (open writers one after another, in the same order on
 *   every rank, or on different communicators). Concurrent saves are not
 *   exercised by the tests.
 */
#ifndef MST_H
#define MST_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "mst_reader.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Writer: one save of one safetensors file from all ranks of a communicator */

typedef struct mst_writer mst_writer;

/*
 * Collective over comm. Starts a save to `path` (the same path on every rank;
 * rank 0's is used and the others are checked against it). `comm` is
 * duplicated, so the caller may free it after this call. Nothing is created
 * on disk before mst_writer_commit().
 *
 * `hints` (or MPI_INFO_NULL) is duplicated here and read at the commit:
 * - "mst_strided_writes": how strided boxes (mst_writer_add_slice) reach the
 *   file. "redistribute" (the default): mst's own redistribution, every file
 *   opened on MPI_COMM_SELF and written with independent, count-checked
 *   writes. "collective": a file view and MPI_File_write_at_all on a handle
 *   opened collectively on the writer's communicator, then every rank reads
 *   its strided boxes back and compares them (Open MPI 4.1's OMPIO can lose a
 *   failed collective write silently, and hangs in the collective open when
 *   it fails on one rank only; see README "Guarantees"). Every rank must give
 *   the same value (else MST_ERR_INVALID_ARGUMENT on every rank).
 * - "mst_redist_buffer": bytes (decimal digits, at least 1) of the buffer
 *   through which a rank receives, then writes, other ranks' parts of
 *   strided boxes, one round at a time. Default: the staging size
 *   (mst_writer_set_staging) up to 1 MiB. Ranks may differ: the smallest
 *   value over the ranks is used, at most 1 GiB. Unused with "collective".
 *   Set, it is also the bytes per round in which the small tensors (under
 *   64 KiB) of several ranks are gathered to their writers (default 8 MiB).
 * Any other value of these two keys fails the commit with
 * MST_ERR_INVALID_ARGUMENT on every rank.
 * - The whole object, these keys included (MPI-IO ignores keys it does not
 *   know), is passed to every MPI_File_open of the save: rank 0's exclusive
 *   create of the temporary file, where file-creation hints such as
 *   striping_factor and striping_unit take effect; every other rank's open of
 *   it, on MPI_COMM_SELF; and, with "collective" only, the collective open and
 *   each rank's read-back; collective-buffering hints (cb_nodes,
 *   cb_buffer_size) matter only there. On the default path all writes are
 *   independent, so collective-buffering hints have no effect there. The
 *   index and journal of a multi-file save are written with plain POSIX calls.
 *
 * Target (checked by rank 0 at the commit). `path` is a regular file or
 * nothing yet; a directory, FIFO, device or socket is refused
 * (MST_ERR_TARGET_DIR) and left as it is. A symbolic link is followed to the
 * file it leads to (relative links from their own directory; a loop is
 * refused), which gets the new bytes while the link stays. The replaced file's
 * mode, and its owner and group as far as the process may set them, carry over
 * to the new file before any byte is written. The temporary file is
 * "<target>.tmp-mst.<host>.<pid>.<16 hex digits>" (the target's file name cut
 * to 100 bytes); a name of 245 bytes or more is opened through
 * /proc/self/fd/<directory>/<name>, so any path the file system accepts saves
 * (with mst_strided_writes=collective, a temporary path over 234 bytes is
 * MST_ERR_INVALID_ARGUMENT).
 *
 * On success *w is a new handle. On failure the return value is the same on
 * every rank and *w is, where memory allowed, a handle that holds only the
 * message (mst_writer_error) and must still be freed; otherwise NULL.
 * Exceptions, found before any collective call of mst and returned by the
 * ranks concerned alone: w NULL, MPI not initialized or already finalized,
 * comm MPI_COMM_NULL (MST_ERR_INVALID_ARGUMENT, *w NULL); a failing
 * MPI_Comm_dup (MST_ERR_MPI with a handle as above, if comm's error handler
 * returns at all).
 */
MST_API int mst_writer_open(mst_writer **w, MPI_Comm comm, const char *path, MPI_Info hints);

/*
 * Local. Durability: when enabled (the default) the commit calls
 * MPI_File_sync on every rank before the rename and fsyncs the target's
 * directory after it (a multi-file save also fsyncs the index, the journal
 * and the directory at each step of its switch), so the new file survives a
 * power loss once commit returns MST_OK. Disabled, the file is complete and
 * atomically in place for every reader, but its bytes may still sit in the
 * page cache. Every rank must give the same setting; the commit checks it
 * (MST_ERR_INVALID_ARGUMENT). MST_ERR_STATE after the commit.
 */
MST_API int mst_writer_set_fsync(mst_writer *w, int enabled);

/*
 * Local. Declares one tensor this rank owns: `shape` has `ndim` dimensions
 * (ndim 0 is a scalar, one element), `data` holds the tensor's bytes in C
 * (row-major) order, little-endian, product(shape) * bits / 8 bytes. The data
 * is not copied at the call; it is written from this buffer during the commit
 * (see "Memory" above for small tensors).
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
 * one tensor (fused layouts). A box outside the global shape fails here
 * (MST_ERR_SLICE_BOUNDS); at the commit the boxes from all ranks must tile the
 * global shape exactly: one dtype and global shape, no overlap, no gap
 * (MST_ERR_SLICE_*).
 * Boxes that are one contiguous byte range in the file (row splits) are
 * written by their owner with MPI_File_write_at, from `data` (small ones
 * batched, see "Memory" above). Strided boxes (column blocks, 2-D blocks)
 * are by default redistributed by mst: each tensor that has one is cut into
 * chunks, each one contiguous range of the file; in rounds, MPI_Alltoallw
 * moves the boxes' parts of each chunk from their owners into the buffer of
 * the chunk's rank, which writes it with independent writes. A rank then
 * holds its own boxes, its redistribution buffer (hint mst_redist_buffer) and
 * a table of the strided boxes of the tensors concerned, never a full tensor
 * it did not declare. With the hint mst_strided_writes=collective they go
 * through a file view and MPI_File_write_at_all instead (see
 * mst_writer_open), and MPI-IO's collective buffering decides the memory.
 * F4/F6 boxes must start and end on whole bytes along the last dimension
 * (MST_ERR_PARTIAL_BYTES).
 */
MST_API int mst_writer_add_slice(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                                 const int64_t *global_shape, const int64_t *start,
                                 const int64_t *count, const void *data);

/*
 * Local. Declares a tensor this rank holds in full while other ranks hold it
 * too (layer norms and biases under tensor parallelism, everything under data
 * parallelism). It is written once, by one of its holders: each replica goes
 * to the holder with the fewest bytes to write so far, which balances the
 * ranks' writes. The holders must agree on dtype and shape
 * (MST_ERR_SLICE_MISMATCH); the bytes themselves are not compared. Every
 * holder's `data` must stay valid until the commit returns.
 */
MST_API int mst_writer_add_replica(mst_writer *w, const char *name, mst_dtype dtype, int ndim,
                                   const int64_t *shape, const void *data);

/*
 * Fill callback of a streamed tensor: copy `len` bytes of the tensor (or of
 * the box, for mst_writer_add_slice_stream), starting `offset` bytes into it,
 * into `buf`. Called during the commit, on the declaring rank and the thread
 * that called the commit, with ranges in increasing order that cover the
 * bytes exactly once, each at most the staging size
 * (mst_writer_set_staging). Return 0 on success; any other value fails the
 * save with MST_ERR_CALLBACK on every rank (the value is quoted in the
 * message) and the callback is not called again.
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
 * (default MST_DEFAULT_STAGING, 64 MiB; at least 4096, else
 * MST_ERR_INVALID_ARGUMENT and the size is unchanged). It is allocated at the
 * commit only when this rank streams, and never larger than its largest
 * streamed tensor. It also caps this rank's default redistribution buffer
 * (hint mst_redist_buffer): min(staging, 1 MiB). Ranks may use different
 * sizes. MST_ERR_STATE after the commit.
 */
#define MST_DEFAULT_STAGING ((size_t)64 << 20)
MST_API int mst_writer_set_staging(mst_writer *w, size_t bytes);

/*
 * Local. Makes the save a Hugging Face multi-file checkpoint: `path` given to
 * mst_writer_open is then a directory (it must exist and be writable, else
 * the commit fails with MST_ERR_TARGET_DIR), and the commit writes there
 * "model-00001-of-0000N.safetensors" ... and
 * "model.safetensors.index.json" ({"metadata": {"total_size": ...},
 * "weight_map": {...}}, as transformers writes it), or one
 * "model.safetensors" and no index when everything fits in one shard.
 * Tensors go to shards in the canonical order, each shard filled greedily up
 * to `max_bytes` of tensor data; a tensor larger than that is alone in its
 * shard. Every shard is a canonical file whose "__metadata__" holds
 * "format": "pt" (unless the caller gives "format") and the caller's entries.
 * All ranks write into every shard. 0 (the default) is a single-file save.
 * Every rank must give the same value (checked at the commit).
 * MST_ERR_STATE after the commit.
 *
 * The set is replaced atomically for loaders: the new shards are written and
 * synced under temporary names (unlocked once written: see MST_TEMP_MARK);
 * then rank 0 records the switch in a journal
 * ("<dir>/.mst-set.<id>.journal"), moves the previous set's files
 * ("model.safetensors", "model.safetensors.index.json",
 * "model-NNNNN-of-NNNNN.safetensors") aside as "<dir>/.mst-old.<id>.<name>",
 * renames the new shards into place and the index last, and removes the old
 * files and the journal. A failure before the index (or single file) is in
 * place removes the new files and moves the previous set back. A crash in
 * between leaves no loadable set (never a mix of old and new shards);
 * mst_shardset_recover() (or `mst-merge --recover DIR`) then restores the previous
 * set or finishes the new one. A save refuses to start while a journal is
 * left (MST_ERR_STATE). Two saves into one directory switch one after the
 * other: rank 0 holds an fcntl lock on "<dir>/.mst-set.lock" (left in place)
 * during the switch.
 * After the switch, two outcomes differ from "all or nothing": if the
 * directory's fsync fails (fsync on), the commit returns MST_ERR_IO with the
 * new set complete and in place (the switch may not survive a power loss);
 * if removing the journal fails, the commit returns MST_ERR_IO with the new
 * set in place and says to run mst_shardset_recover() (the journal would stop
 * the next save with MST_ERR_STATE). An old file that cannot be removed stays
 * under its ".mst-old.<id>." name, which blocks nothing. A directory or
 * special file named like a set file in `dir` is refused before anything
 * changes (MST_ERR_TARGET_DIR).
 */
MST_API int mst_writer_set_max_shard_size(mst_writer *w, uint64_t max_bytes);

/* Deprecated: the former name of mst_shardset_recover (mst_reader.h), kept
 * so that existing programs compile and link unchanged. */
MST_API int mst_set_recover(const char *dir, char *report, size_t report_cap);

/*
 * Local. Adds one "__metadata__" entry (string to string). Several ranks may
 * give the same key with the same value; two different values for one key,
 * on one rank or on two, fail the commit with MST_ERR_METADATA_CONFLICT.
 * Entries are written sorted by key (byte order), so the output is
 * deterministic; without any entry the header has no "__metadata__" (a
 * multi-file save always has "format").
 */
MST_API int mst_writer_add_metadata(mst_writer *w, const char *key, const char *value);

/*
 * Collective over the writer's communicator. Performs the save: metadata to
 * rank 0, plan, offsets back, every rank writes its own tensors into
 * "<path>.tmp-mst.<host>.<pid>.<16 hex digits>" with MPI-IO (strided boxes
 * as mst_writer_add_slice says), rank 0 writes the header, sync (see
 * mst_writer_set_fsync), close; rank 0 checks the file's size and renames it
 * over `path`. A file it replaces is held open (O_PATH) across the rename and
 * the directory's fsync, then closed by a short detached thread of the
 * library (no MPI call, every signal blocked): that last close frees the old
 * file's blocks (0.09 s for 256 MiB on ext4 here), which the rename would
 * otherwise do on the caller's thread. Its space may therefore come back
 * just after the call returns.
 * Returns the same value on every rank, with the same message. On an error,
 * the temporary file is removed and no file appears at `path`: whatever was
 * there before is untouched. One exception, after the rename: when fsync is
 * on and the fsync of the target's directory fails, the commit returns
 * MST_ERR_IO ("... is complete and in place, but fsync of directory ...
 * failed"): the new file is complete at `path`, the previous one is gone,
 * and the rename may not survive a power loss. (Everything else that can
 * fail, opening the directory included, happens before the rename.) For a
 * multi-file save see mst_writer_set_max_shard_size.
 * A writer commits once; afterwards only mst_writer_error and
 * mst_writer_free are meaningful.
 * Errors a rank found in its own declarations (bad dtype, NULL data, an
 * allocation failure in mst_writer_add...) fail the commit on every rank,
 * before any file is created.
 * Every rank of the communicator must call the commit, or none: if one rank
 * commits while another frees its writer or never commits, the committing
 * ranks wait in their first collective call until the job is killed (MPI
 * cannot tell a late rank from one that will never come, and the library sets
 * no timeouts). Caught at once on every rank instead: a second commit, a
 * commit after a failed open (MST_ERR_STATE); ranks that disagree on the path
 * (at open), on mst_writer_set_fsync, mst_writer_set_checksums, mst_writer_set_max_shard_size or
 * the hint mst_strided_writes, and bad values of the mst_* hints
 * (MST_ERR_INVALID_ARGUMENT).
 * Crashes: if any process dies during the commit, the target is still either
 * the previous file or the complete new one; a temporary file may remain,
 * which mst_temp_clean / the mst-clean tool removes. See "Guarantees" in README.md.
 */
MST_API int mst_writer_commit(mst_writer *w);

/* ---- Split-phase save: training goes on while the checkpoint is written ----
 *
 *     mst_writer_set_snapshot(w, 1);          // optional: copy at begin
 *     rc = mst_writer_commit_begin(w);        // collective, short
 *     ... compute, allreduce, optimizer step: no mst call needed ...
 *     mst_writer_commit_test(w, &done);       // optional, local, never blocks
 *     rc = mst_writer_commit_end(w);          // collective: same rc everywhere
 *
 * The file is byte-identical to mst_writer_commit's for the same declarations
 * (mst_writer_commit itself is unchanged: begin + end in one call), with the
 * same guarantees: at `path` the previous file or the complete new one, never
 * a partial file; on any error the temporary file is removed.
 *
 * The data path: each rank chooses at begin, from MPI_Query_thread and the
 * MPI_Info key "mst_split_io":
 * - mpiio: the default when MPI was initialised with MPI_THREAD_MULTIPLE
 *   (MPI_Init_thread gave it), with either of Open MPI's MPI-IO components
 *   (ompio, romio321; both tested). The rank's writes go through MPI-IO, on
 *   a handle of its own (MPI_COMM_SELF, the writer's hints). (Open MPI's
 *   romio321 serialises a process's MPI-IO calls under one lock: an MPI-IO
 *   call of the caller's, e.g. another writer's commit, may wait for the
 *   thread's current write, at most 64 MiB, and the thread for it.)
 * - posix: below MPI_THREAD_MULTIPLE (MPI_Init, or SINGLE, FUNNELED,
 *   SERIALIZED), or when the key says "posix". The rank's writes go through
 *   a POSIX descriptor, and the library's thread makes NO MPI call. (Data
 *   then bypasses MPI-IO; on file systems where POSIX writes from several
 *   nodes into one file are not coherent, use mst_writer_commit or
 *   MPI_THREAD_MULTIPLE.)
 *   Direct writes, MPI_Info key "mst_split_direct": "1" (the default) opens
 *   a second descriptor with O_DIRECT and writes every whole page (4096
 *   bytes) of the rank's ranges through it, copied 8 MiB at a time into an
 *   aligned buffer of the thread's own (8 MiB per save in flight); the
 *   partial pages at a range's ends go through the page cache. Same bytes,
 *   same fsync; the rank's bytes are not left in the page cache. On this
 *   project's virtual machine, writing through the page cache took 0.33 s
 *   of the thread's CPU per 128 MiB (fresh page-cache pages), direct writes
 *   0.01 s: CPU the application's compute no longer loses while the save is
 *   in flight. Where the file system refuses O_DIRECT (at the open, or
 *   EINVAL at a write), the writes go through the page cache. "0": through
 *   the page cache only. Any other value: MST_ERR_INVALID_ARGUMENT from
 *   begin on every rank. The mpiio path ignores the key.
 * "auto" (or no key) is the default; "mpiio" below MPI_THREAD_MULTIPLE, or
 * any other value, makes begin fail with MST_ERR_INVALID_ARGUMENT on every
 * rank, before anything is created.
 *
 * What progresses when (on both paths, at every thread level):
 * - begin, on the calling thread: the options agreed, the declarations
 *   exchanged, the plan, rank 0 creates the temporary file (MPI_File_open with
 *   the writer's hints, so file-creation hints such as striping apply) and
 *   closes that handle, every rank opens its own handle of it (mpiio:
 *   MPI_File_open on MPI_COMM_SELF with the writer's hints; posix: open(2)),
 *   the snapshot (if on) is copied; each step agreed. Then this rank starts
 *   one thread of the library and returns.
 * - that thread: this rank's writes on its own handle (rank 0's header
 *   first, then its pieces in file order, at most 64 MiB per call; mpiio:
 *   MPI_File_write_at, posix: pwrite, a short count continued; a failure ends
 *   the thread with the error kept for end), then, with fsync on, the sync
 *   of that handle (mpiio: MPI_File_sync, posix: fsync): the data is durable
 *   when the thread ends. The thread blocks every signal (handlers run on
 *   the application's threads). The caller may compute, communicate and call
 *   MPI freely meanwhile, and the writes and the data's sync advance without
 *   any mst call, on either path. The thread runs on the CPUs the rank is
 *   bound to: with a single core (Open MPI's default at 1-2 ranks) it takes
 *   its time from the caller's; bind ranks with a core to spare (README).
 * - test: reads a flag, nothing else.
 * - end, on the calling thread: waits for the thread (nothing to wait for
 *   when it finished: then end costs two agreements, the size check, the
 *   rename and, with fsync on, the directory's fsync), closes the handle
 *   (mpiio: MPI_File_close), agrees; rank 0 renames; agreed again. The
 *   file the save replaces is let go off the caller's thread, as in
 *   mst_writer_commit.
 * - If the thread cannot be started (pthread_create fails), end does the
 *   writes and the sync itself, on the calling thread; test then reports done.
 * The handle is opened (begin) and closed (end, mst_writer_free) on the
 * calling thread; the library's thread only writes and syncs it. On the
 * posix path MPI calls happen in begin, end and mst_writer_free only, on the
 * calling thread: the application's thread level must cover those calls as
 * for mst_writer_commit (see "Threads" above).
 *
 * What split phase takes: whole tensors (mst_writer_add), replicas, and boxes
 * that are one contiguous byte range of the file (row blocks), with
 * metadata, fsync on or off, and any MPI_Info hints (passed to rank 0's
 * create of the temporary file). What it refuses, at begin, before anything
 * is created, with MST_ERR_INVALID_ARGUMENT and the same message on every
 * rank (the lowest rank's that has one): strided boxes (column and 2-D
 * blocks: they need communication while the bytes are written), streamed
 * tensors (their callbacks would run on the library's thread), checksums
 * (a gather before the header) and multi-file sets. Use mst_writer_commit
 * for those.
 *
 * Several writers may be in flight at once, on the same communicator or not
 * (each has its own duplicated communicator and its own thread): e.g. begin
 * the model's writer, begin the optimizer's, end both, in the same order on
 * every rank.
 */

/*
 * Local. Snapshot on (on != 0) or off (the default). On: begin copies the
 * bytes this rank will write (its whole tensors, the replicas it was chosen
 * for, its boxes) into one buffer of the library's own, so the tensors may
 * be overwritten or freed as soon as begin returns. Off: the caller's buffers
 * are written from directly and must stay valid and unchanged until end
 * returns (or the writer is freed).
 * Memory: exactly those bytes (sum over this rank's written tensors), held
 * from begin to end, plus, on rank 0, the header. The bound: the MPI_Info key
 * "mst_snapshot_limit" (decimal bytes per rank; 0 or absent: no limit but
 * the allocator's); a snapshot over the limit, or an allocation that fails,
 * makes begin return MST_ERR_NO_MEMORY on every rank (the message names the
 * rank and the bytes) before any byte is written; the temporary file is
 * removed. (Under Linux overcommit an allocation rarely fails; set the limit.)
 * The buffer is an anonymous mapping of its own (2 MiB aligned, marked for
 * transparent huge pages). At end (or the free) it is not returned to the
 * system but kept for the next snapshot of the process, which then copies
 * into memory touched before (first-touch page faults made a copy into fresh
 * memory 20-50 times slower on the machines measured): one mapping per
 * process, the largest seen, held until exit or mst_snapshot_reserve(0);
 * mst_snapshot_reserve fills it ahead of the first save. The MPI_Info key
 * "mst_snapshot_cache" = "0" returns a writer's mapping at its end instead
 * ("1", the default, keeps it; any other value: MST_ERR_INVALID_ARGUMENT
 * from begin).
 * Every rank must give the same setting (checked by begin:
 * MST_ERR_INVALID_ARGUMENT). MST_ERR_STATE after begin or the commit.
 */
MST_API int mst_writer_set_snapshot(mst_writer *w, int on);

/*
 * Local, any thread, no MPI call. Makes the process's cached snapshot memory
 * (see mst_writer_set_snapshot) hold at least `bytes` and touches every page
 * of it now, so that the first snapshot of a training loop copies into
 * memory already faulted in instead of paying the first touch inside begin
 * (on the virtual machine measured, 0.3-0.4 s per 128 MiB; a later begin of
 * the same size copies in 0.015 s). Call it once at start-up, before the
 * loop, with the largest snapshot a rank will take (the bytes it writes,
 * plus the header on rank 0): a smaller cached mapping is replaced, a larger
 * one kept. The memory is resident until exit or mst_snapshot_reserve(0),
 * which returns the cached mapping to the system (a snapshot in flight
 * keeps its own until its end). A writer with the hint mst_snapshot_cache=0
 * does not use it. MST_OK, or MST_ERR_NO_MEMORY when the mapping fails
 * (under Linux overcommit a touch may instead wake the OOM killer: bound
 * `bytes` as the snapshot's limit is bounded).
 */
MST_API int mst_snapshot_reserve(uint64_t bytes);

/*
 * Collective over the writer's communicator. Starts the save (see above);
 * returns the same value and message on every rank. On an error nothing is
 * left on disk and end returns the same error again (on every rank). Instead
 * of mst_writer_commit, never with it: MST_ERR_STATE after begin or commit.
 */
MST_API int mst_writer_commit_begin(mst_writer *w);

/*
 * Local; never blocks, makes no MPI call. *done = 1 once this rank's writes
 * and data sync are finished (or begin failed, or no thread could be
 * started), so that end has nothing of this rank's to wait for; else 0.
 * MST_ERR_STATE without a begin.
 */
MST_API int mst_writer_commit_test(mst_writer *w, int *done);

/*
 * Collective over the writer's communicator. Finishes the save begun by
 * mst_writer_commit_begin: every rank's writes and sync, the size check, the
 * rename, the directory's fsync; the same value and message on every rank,
 * with mst_writer_commit's guarantees and its one exception (the directory's
 * fsync after the rename). Errors of the writes (ENOSPC, EIO, a short write
 * that cannot continue) and of the data's sync are found here. MST_ERR_STATE
 * without a begin.
 */
MST_API int mst_writer_commit_end(mst_writer *w);

/* Local in effect. NULL-safe; sets *w to NULL. Freeing an uncommitted writer
 * abandons the save (nothing was written); do it on every rank, since ranks
 * that commit instead would wait for this one (see mst_writer_commit).
 * Between mst_writer_commit_begin and _end it abandons the save in flight
 * without any collective call: this rank's thread stops after its current
 * write (at most 64 MiB) and is joined, its handle closed (on the calling
 * thread), and rank 0
 * removes the temporary file; nothing appears at the target. Free it on every
 * rank then too: a rank that calls end instead waits for the others. The
 * duplicated communicator is freed with MPI_Comm_free, which the MPI
 * standard calls collective (Open MPI and MPICH do not wait in it), and the
 * duplicated hints with MPI_Info_free; after MPI_Finalize only the memory is
 * freed. */
MST_API void mst_writer_free(mst_writer **w);

/* Local. The detail of the last error on this handle ("" if none; "NULL
 * writer" for NULL). */
MST_API const char *mst_writer_error(const mst_writer *w);

/* ------------------------------------------------------------------------ */
/* Loader: every rank reads its own tensors or boxes of one safetensors file  */
/* (or a Hugging Face set), each byte read from storage once                  */
/*
 * The dual of the writer: declare locally, then one collective call.
 *
 *     mst_loader *l;
 *     if (mst_loader_open(&l, MPI_COMM_WORLD, "model.safetensors", MPI_INFO_NULL) == MST_OK) {
 *         mst_loader_read(l, "norm.weight", norm);                    // whole tensor
 *         mst_loader_read_slice(l, "mlp.w1", 2, start, count, w1);    // this rank's box
 *         rc = mst_loader_load(l);                                    // same rc on every rank
 *     }
 *     mst_loader_free(&l);
 *
 * How: rank 0 reads the header(s) (and a set's index) and broadcasts the raw
 * bytes; every rank decodes them from memory with the reader's rules. At the
 * load every rank's requests are gathered (every rank sees every request);
 * the bytes that some rank needs are cut into chunks of contiguous file bytes
 * (a tensor is cut along its first dimensions, as the writer's
 * redistribution does), each chunk is read once by one rank (round robin,
 * only the byte ranges some box needs: at most what was asked, union over
 * the ranks) with MPI_File_read_at on a handle opened on MPI_COMM_SELF, and
 * in rounds one MPI_Alltoallw moves each box's part of each chunk straight
 * into the requester's buffer (derived datatypes on both sides). A tensor
 * every rank wants is read once and sent to all; column blocks are read as
 * whole rows and redistributed. A box of at least 256 KiB (or a sixteenth of
 * the read buffer) whose bytes are one contiguous range of the file, that no
 * other rank's or its own other boxes overlap and that is not streamed (row
 * blocks, whole tensors read by one rank) is read by its own rank straight
 * into its buffer, neighbours in one call: no read buffer, copy or exchange.
 *
 * Memory beyond the caller's buffers: the read buffer of each rank (MPI_Info
 * key "mst_load_buffer", bytes, default MST_LOAD_BUFFER = 4 MiB, the
 * smallest value over the ranks is used), per round the datatypes of the
 * pieces moved (O(pieces)), for streamed boxes a receive buffer of at most
 * the read buffer's size, and the table of every rank's requests (about
 * 8 * (6 + 2 * ndim) bytes per request, on every rank), plus the decoded
 * header(s) on every rank.
 *
 * Threads and MPI: a loader is used by one thread at a time; MPI is called in
 * mst_loader_open, mst_loader_load and mst_loader_free only.
 */
typedef struct mst_loader mst_loader;

/* Default read buffer per rank (MPI_Info key "mst_load_buffer"). */
#define MST_LOAD_BUFFER ((uint64_t)4 << 20)

/*
 * Collective over comm. Opens `path` (rank 0's is used; the same on every
 * rank): a safetensors file, or a Hugging Face set given as its directory or
 * its model.safetensors.index.json. Rank 0 alone reads the header(s) and the
 * index, decodes and validates them; the other ranks receive the decoded
 * result (no rank parses JSON again). Validation: the
 * reader's rules (mst_reader_open) for each file; for a set, the index's
 * (mst_shardset_open) and those of mst-inspect: every weight_map entry is in
 * the shard it names, every tensor of every shard is in the weight_map
 * under that shard, once (MST_ERR_FORMAT). `comm` is duplicated. `hints`
 * (or MPI_INFO_NULL) is read now: "mst_load_buffer" (decimal bytes, at
 * least 4096; else MST_ERR_INVALID_ARGUMENT) and passed whole to every
 * MPI_File_open. Same return value and message on every rank. On failure *l
 * is, where memory allowed, a handle holding only the message
 * (mst_loader_error), to be freed; l NULL, MPI not initialized or comm
 * MPI_COMM_NULL are MST_ERR_INVALID_ARGUMENT returned locally with *l NULL.
 */
MST_API int mst_loader_open(mst_loader **l, MPI_Comm comm, const char *path, MPI_Info hints);

/* Local. The tensor `name`: dtype, ndim, shape, and data_offsets as in its
 * own file (the shard, for a set). MST_ERR_NOT_FOUND, MST_ERR_STATE after a
 * failed open. The strings belong to the loader (valid until its free). */
MST_API int mst_loader_find(const mst_loader *l, const char *name, mst_tensor_info *out);
/* Local. Number of tensors (all files) and tensor i: a set's shards in
 * sorted order, each in data offset order. */
MST_API size_t mst_loader_count(const mst_loader *l);
MST_API int mst_loader_tensor(const mst_loader *l, size_t i, mst_tensor_info *out);

/*
 * Local. Declares a read of the whole tensor `name` into `buf` (its bytes,
 * C order, as in the file), done by the next mst_loader_load. `buf` must
 * stay valid until then; nothing is written before it.
 * Errors (returned here and kept: the next load fails with the first one of
 * each rank, the lowest failing rank's on every rank, and writes no buffer):
 * MST_ERR_NOT_FOUND (no such tensor), MST_ERR_NULL_DATA (NULL buf for a
 * tensor with bytes), MST_ERR_INVALID_ARGUMENT (NULL name), MST_ERR_STATE
 * (after a failed open). Messages name the rank and the tensor.
 */
MST_API int mst_loader_read(mst_loader *l, const char *name, void *buf);

/*
 * Local. Declares a read of a box of tensor `name`: the elements with
 * start[d] <= i_d < start[d] + count[d], into `buf`, dense, C order
 * (product(count) * bits / 8 bytes). Any dimensions, uneven, empty boxes
 * (nothing is read) and several boxes of one tensor on one rank (fused
 * layouts; they may overlap) are allowed. Errors as mst_loader_read, plus
 * MST_ERR_SLICE_MISMATCH (ndim is not the tensor's), MST_ERR_SLICE_BOUNDS
 * (the box leaves the tensor), MST_ERR_PARTIAL_BYTES (F4/F6: the box does
 * not start and end on whole bytes along the last dimension); the messages
 * give the rank, the tensor and the box.
 */
MST_API int mst_loader_read_slice(mst_loader *l, const char *name, int ndim,
                                  const int64_t *start, const int64_t *count, void *buf);

/*
 * Receiver of a streamed read: `len` bytes that belong `offset` bytes into
 * the box's dense C-order bytes. Called during mst_loader_load, on the
 * requesting rank, with increasing offsets covering the box exactly once, in
 * pieces of at most the read buffer's size. `buf` is valid during the call
 * only. Return 0 to go on; any other value fails the load with
 * MST_ERR_CALLBACK on every rank, and the sink is not called again.
 */
typedef int (*mst_sink_fn)(void *ctx, uint64_t offset, const void *buf, uint64_t len);

/*
 * Local. Like mst_loader_read_slice (ndim 0 or start/count NULL: the whole
 * tensor; then ndim is ignored), but the bytes go to `sink` instead of one
 * buffer, through a receive buffer of the loader's own (at most the read
 * buffer's size): a rank can load more than fits in its memory at once.
 * MST_ERR_NULL_DATA for a NULL sink.
 */
MST_API int mst_loader_read_stream(mst_loader *l, const char *name, int ndim,
                                   const int64_t *start, const int64_t *count, mst_sink_fn sink,
                                   void *ctx);

/*
 * Collective over the loader's communicator. Performs every read declared
 * since the open or the previous load, then forgets them (a loader can load
 * several batches). Same return value and message on every rank:
 * - a declaration error on any rank (see mst_loader_read): that error, before
 *   any buffer is written and before any byte of data is read;
 * - MST_ERR_IO (a read failed or a file is shorter than its header says),
 *   MST_ERR_NO_MEMORY, MST_ERR_MPI, MST_ERR_CALLBACK: found during the
 *   rounds; every rank stops at the same round; buffers may then hold part
 *   of their bytes.
 */
MST_API int mst_loader_load(mst_loader *l);

/*
 * Local. Checksums on (on != 0) or off (the default) for the following
 * loads: every tensor this rank reads whole into a buffer (mst_loader_read,
 * or a box that is the whole tensor) is checked against the CRC-32 its
 * file's "mst.crc32" entry records (see "Checksums" below) once its bytes
 * are in the buffer; the load then fails on every rank with
 * MST_ERR_CHECKSUM naming the tensor and the rank (buffers hold the bytes
 * read). A file without the entry (or with a malformed one) fails the load
 * before anything is read (MST_ERR_NOT_FOUND / MST_ERR_CHECKSUM). Parts of
 * tensors and streamed reads are not checked. Ranks may differ.
 */
MST_API int mst_loader_set_verify(mst_loader *l, int on);

/* Bytes of the last mst_loader_load, local (this rank) and over all ranks.
 * read_*: data bytes read from storage (headers not counted); requested_*:
 * bytes of the boxes declared (a tensor two ranks ask for counts twice).
 * mst reads exactly the union of every rank's boxes: each byte some rank
 * asked for, once. header_bytes: bytes of the files' headers (8 + N each)
 * read at the open by rank 0 (the same figure on every rank). rounds: the
 * load's exchange rounds. */
typedef struct mst_load_stats {
    uint64_t read_rank, requested_rank;
    uint64_t read_all, requested_all;
    uint64_t header_bytes;
    uint64_t rounds;
} mst_load_stats;

/* Local. The figures of the last load (zeros before the first). */
MST_API int mst_loader_stats(const mst_loader *l, mst_load_stats *out);

/* Local in effect (MPI_Comm_free of the duplicated communicator, as
 * mst_writer_free). NULL-safe; sets *l to NULL. */
MST_API void mst_loader_free(mst_loader **l);

/* Local. The detail of the last error ("" if none; "NULL loader" for NULL). */
MST_API const char *mst_loader_error(const mst_loader *l);

/* ------------------------------------------------------------------------ */
/* Temporary files left by crashed saves                                      */

/* Every temporary file of a save is named "<target>" MST_TEMP_MARK
 * "<host>.<pid>.<16 hex digits>" (host: the host name of rank 0 up to its
 * first '.', characters other than letters, digits, '-' and '_' as '_'; pid:
 * rank 0's process id). While a file is written, rank 0 holds an fcntl
 * open-file-description write lock on byte 2^62 of it; the kernel drops the
 * lock when the process ends, however it ends (kill -9 included). The shards
 * of a multi-file save, once written, and its index wait unlocked under such
 * names until the switch. */
#define MST_TEMP_MARK ".tmp-mst."

enum mst_temp_verdict {
    MST_TEMP_NOT_TEMP = 0,  /* not a regular file named like a temporary (or its OMPIO files) */
    MST_TEMP_IN_USE = 1,    /* a running save may own it: kept */
    MST_TEMP_ABANDONED = 2  /* no save owns it: removed (unless dry_run) */
};

/*
 * Local, no MPI. Decides whether `path` is a temporary file that no running
 * save owns and, unless dry_run, removes it. It is abandoned when its lock
 * can be taken and either (a) it was made on this host by a process that no
 * longer exists (or is a zombie), or (b) it was made on another host and was
 * last modified more than min_age_s seconds ago (some parallel file systems
 * keep locks node-local). On a file system without fcntl locks only (a)
 * applies. The file is removed while the cleaner holds its lock, and a writer
 * checks after locking that its name still refers to its file, so a save
 * starting at that moment picks a new name instead of losing its file.
 * Removing a temporary also removes the files OMPIO's shared-file-pointer
 * component makes beside it: "<temporary>-<jobid>-<pid>.lock" (kept while the
 * file is open) and "<temporary>.locktest.<rank>" (made and unlinked inside
 * MPI_File_open; a rank killed there leaves it). Such a file given as `path`
 * is judged with its temporary (in use while the temporary exists) or,
 * alone, by rules (a) and (b) without a lock.
 * Returns MST_OK (verdict in *verdict) or MST_ERR_IO / MST_ERR_NO_MEMORY /
 * MST_ERR_INVALID_ARGUMENT.
 */
MST_API int mst_temp_clean(const char *path, int min_age_s, int dry_run, int *verdict);

/* ---- Checksums (integrity of the data) ------------------------------------
 *
 * Format: the "__metadata__" entry "mst.crc32" holds, for every tensor in the
 * order of its data offsets, the 8 lowercase hexadecimal digits of the CRC-32
 * of its bytes (the value of zlib's crc32 / Python's zlib.crc32; zero-size
 * tensors "00000000"), concatenated with nothing between: 8 * (number of
 * tensors) characters. The header stays canonical (metadata keys sorted) and
 * loads in every safetensors reader. Checking a file in Python:
 *   crcs = meta["mst.crc32"]; tensors sorted by data_offsets;
 *   crcs[8*i:8*i+8] == "%08x" % zlib.crc32(data[begin_i:end_i])
 * In a multi-file save every shard carries the entry for its own tensors.
 * Tools: mst-inspect --verify FILE|DIR; mst_reader_verify (mst_reader.h).
 *
 * Each rank computes the CRC of the bytes it writes as it writes them (whole
 * tensors, streamed pieces, boxes, the redistributed chunks of strided
 * boxes); rank 0 gathers one record per rank and tensor, combines them
 * (CRC-32 is linear: parts of a tensor combine without its bytes) and writes
 * the header last. The value has a known width, so every offset is planned
 * exactly as without it.
 */

/*
 * Local. Checksums on (enabled != 0) or off (the default: the file is
 * byte-identical to the reference writer's for the same tensors and
 * metadata). Every rank must give the same setting; the commit checks it
 * (MST_ERR_INVALID_ARGUMENT on every rank). While on, a metadata entry
 * "mst.crc32" of the caller is an error at the commit (MST_ERR_INVALID_ARGUMENT);
 * while off it is ordinary metadata, written as given. MST_ERR_STATE after
 * the commit.
 */
MST_API int mst_writer_set_checksums(mst_writer *w, int enabled);

#ifdef __cplusplus
}
#endif

#endif /* MST_H */

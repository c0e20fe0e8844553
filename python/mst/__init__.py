"""mst: every rank of an MPI job saves its tensors into one shared safetensors file.

    import mst
    mst.save({"w": array}, "model.safetensors")          # collective over COMM_WORLD
    h = mst.save_async({"w": array}, "step.safetensors")  # returns at once; training goes on
    h.wait()                                              # collective: the file is in place

A thin ctypes binding over libmst (see include/mst.h); nothing to compile.
The file is byte-identical to what safetensors.torch.save_file writes for the
same tensors, whatever the number of ranks and whichever rank holds what.

Values in the `tensors` map of save():
  - a NumPy array (or NumPy scalar), or a CPU torch tensor: the whole tensor,
    held by this rank only;
  - Slice(array, global_shape, start): this rank's box of a tensor split over
    ranks (tensor parallelism); a list of Slices for several boxes of one
    tensor on this rank (fused layouts);
  - Replica(array): a tensor several ranks hold in full (written once);
  - Tensor(array, dtype=..., shape=...): an array's bytes under an explicit
    safetensors dtype, for dtypes NumPy cannot express (BF16, F8_*, F4, F6).
Slice and Replica take the same dtype= and shape=/count= overrides.

Memory: data is written from the arrays' own memory, with no copy, except for
(a) arrays that are not C-contiguous, which are copied into a contiguous
array first (the file always holds C order), (b) big-endian NumPy arrays,
converted to little-endian copies, and (c) torch tensors with a pending
conjugate or negative bit, which are resolved. The copies live until the save
returns.
"""
import operator
import os

import numpy as np

from . import _lib
from ._lib import MPI, LibraryNotFound, MPIMismatch

__all__ = ["save", "save_async", "snapshot_reserve", "AsyncSave", "load", "load_distributed", "read_header", "Slice", "Replica", "Tensor", "Error",
           "LibraryNotFound", "MPIMismatch", "DTYPES", "version"]

# Error codes: the stable numbers of include/mst.h.
OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_NO_MEMORY = 2
ERR_STATE = 3
ERR_MPI = 4
ERR_EMPTY_NAME = 10
ERR_RESERVED_NAME = 11
ERR_INVALID_UTF8 = 12
ERR_DUPLICATE_NAME = 13
ERR_UNKNOWN_DTYPE = 14
ERR_NEGATIVE_DIM = 15
ERR_SIZE_OVERFLOW = 16
ERR_PARTIAL_BYTES = 17
ERR_NULL_DATA = 18
ERR_HEADER_TOO_LARGE = 19
ERR_METADATA_CONFLICT = 20
ERR_SLICE_MISMATCH = 21
ERR_SLICE_BOUNDS = 22
ERR_SLICE_OVERLAP = 23
ERR_SLICE_GAP = 24
ERR_CALLBACK = 25
ERR_TARGET_DIR = 30
ERR_IO = 31
ERR_FORMAT = 40
ERR_OFFSETS = 41
ERR_NOT_FOUND = 42
ERR_RANGE = 43
ERR_CHECKSUM = 44

# The safetensors dtypes in the reference enum order (mst_dtype's numbers).
DTYPES = tuple(_lib.lib.mst_dtype_name(i).decode() for i in range(22))
_CODE = {name: i for i, name in enumerate(DTYPES)}
_BITS = {name: _lib.lib.mst_dtype_bits(i) for i, name in enumerate(DTYPES)}

_NUMPY = {np.dtype(t): n for t, n in [
    (np.bool_, "BOOL"), (np.uint8, "U8"), (np.int8, "I8"), (np.int16, "I16"),
    (np.uint16, "U16"), (np.float16, "F16"), (np.int32, "I32"), (np.uint32, "U32"),
    (np.float32, "F32"), (np.complex64, "C64"), (np.float64, "F64"), (np.int64, "I64"),
    (np.uint64, "U64")]}
_NUMPY_OF = {n: t for t, n in _NUMPY.items()}
# What load() returns for dtypes NumPy has no type for: the raw bits.
_NUMPY_RAW = {"BF16": np.dtype(np.uint16), "F8_E5M2": np.dtype(np.uint8),
              "F8_E4M3": np.dtype(np.uint8), "F8_E8M0": np.dtype(np.uint8),
              "F8_E4M3FNUZ": np.dtype(np.uint8), "F8_E5M2FNUZ": np.dtype(np.uint8)}
# torch dtype attribute -> safetensors name; those this torch lacks are skipped.
_TORCH_NAMES = {"bool": "BOOL", "uint8": "U8", "int8": "I8", "int16": "I16", "uint16": "U16",
                "float16": "F16", "bfloat16": "BF16", "int32": "I32", "uint32": "U32",
                "float32": "F32", "complex64": "C64", "float64": "F64", "int64": "I64",
                "uint64": "U64", "float8_e5m2": "F8_E5M2", "float8_e4m3fn": "F8_E4M3",
                "float8_e8m0fnu": "F8_E8M0", "float8_e4m3fnuz": "F8_E4M3FNUZ",
                "float8_e5m2fnuz": "F8_E5M2FNUZ"}


def version():
    """The version of the libmst actually loaded ("MAJOR.MINOR.PATCH")."""
    return _lib.lib.mst_version_string().decode()


class Error(Exception):
    """A failed save or read. `code` is the C library's stable error code
    (mst.ERR_*), `message` its detail. A failed save raises the same code and
    message on every rank of the communicator."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.message} [{strerror(self.code)}, code {self.code}]"


def strerror(code):
    """The C library's short text for an error code."""
    return _lib.lib.mst_strerror(code).decode()


class _LocalError(Exception):
    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message


class Tensor:
    """A whole tensor held by this rank, with optional overrides: `dtype`, a
    safetensors name ("BF16", "F8_E4M3", "F4", ...), takes the array's bytes
    as that dtype; `shape` is then the tensor's logical shape (default: the
    array's shape), and the array must hold exactly its bytes."""

    def __init__(self, array, dtype=None, shape=None):
        self.array, self.dtype, self.shape = array, dtype, shape


class Slice:
    """This rank's box of a tensor split over ranks: the tensor has shape
    `global_shape`; `array` holds the elements from index `start` (one entry
    per dimension), its shape being the box's extent (or `count`, with an
    explicit `dtype`). The boxes of all ranks must tile the tensor exactly."""

    def __init__(self, array, global_shape, start, dtype=None, count=None):
        self.array, self.global_shape, self.start = array, global_shape, start
        self.dtype, self.count = dtype, count


class Replica:
    """A tensor this rank holds in full while other ranks hold it too (norms,
    biases under tensor parallelism): written once, by one of its holders.
    The holders must agree on dtype and shape; the bytes are not compared."""

    def __init__(self, array, dtype=None, shape=None):
        self.array, self.dtype, self.shape = array, dtype, shape


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _buffer(array, what):
    """(safetensors dtype, shape, address, nbytes, object keeping the memory alive)."""
    if _is_torch(array):
        import torch
        if not isinstance(array, torch.Tensor):
            raise _LocalError(ERR_INVALID_ARGUMENT, f"{what}: {type(array).__name__} is not a tensor")
        t = array.detach()
        if t.device.type != "cpu":
            raise _LocalError(ERR_INVALID_ARGUMENT,
                              f"{what}: torch tensor on {t.device}; move it to the CPU first")
        if t.layout != torch.strided:
            raise _LocalError(ERR_INVALID_ARGUMENT, f"{what}: torch layout {t.layout} is not strided")
        tname = str(t.dtype).split(".")[-1]
        if tname not in _TORCH_NAMES:
            raise _LocalError(ERR_UNKNOWN_DTYPE,
                              f"{what}: torch dtype {t.dtype} has no safetensors dtype")
        # lazy conjugate/negative views (torch >= 1.10) would be written unresolved
        if getattr(t, "is_conj", lambda: False)():
            t = t.resolve_conj()
        if getattr(t, "is_neg", lambda: False)():
            t = t.resolve_neg()
        if not t.is_contiguous():
            t = t.contiguous()
        return (_TORCH_NAMES[tname], tuple(t.shape), t.data_ptr(), t.numel() * t.element_size(), t)
    if isinstance(array, np.generic):
        array = np.asarray(array)
    if not isinstance(array, np.ndarray):
        raise _LocalError(ERR_INVALID_ARGUMENT,
                          f"{what}: {type(array).__name__} is neither a NumPy array nor a torch tensor")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    key = array.dtype.newbyteorder("=") if array.dtype.byteorder == "<" else array.dtype
    if key not in _NUMPY:
        raise _LocalError(ERR_UNKNOWN_DTYPE,
                          f"{what}: NumPy dtype {array.dtype} has no safetensors dtype "
                          "(give one with mst.Tensor(array, dtype=...) for raw bits)")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return (_NUMPY[key], array.shape, array.ctypes.data, array.nbytes, array)


def _override(st, shape, ptr, nbytes, dtype, logical, what):
    """Applies an explicit dtype and logical shape, checking the byte count."""
    if dtype is not None:
        if dtype not in _CODE:
            raise _LocalError(ERR_UNKNOWN_DTYPE, f"{what}: unknown safetensors dtype {dtype!r}")
        st = dtype
    if logical is not None:
        shape = _dims(logical, what, "shape")
    n = _prod(shape)
    # A negative dimension or a sub-byte tensor of partial bytes is the C library's to report.
    if min(shape, default=0) >= 0 and (n * _BITS[st]) % 8 == 0 and n * _BITS[st] // 8 != nbytes:
        raise _LocalError(ERR_INVALID_ARGUMENT,
                          f"{what}: shape {list(shape)} of {st} needs {n * _BITS[st] // 8} bytes, "
                          f"the array has {nbytes}")
    return st, shape


def _dims(values, what, label):
    """A shape, start or count as a tuple of ints that fit in int64."""
    try:
        dims = tuple(operator.index(d) for d in values)
    except TypeError:
        raise _LocalError(ERR_INVALID_ARGUMENT,
                          f"{what}: {label} {values!r} is not a sequence of integers") from None
    for d in dims:
        if not -2**63 <= d < 2**63:
            raise _LocalError(ERR_SIZE_OVERFLOW, f"{what}: {label} {list(dims)} does not fit in 64 bits")
    return dims


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _c_string(s, what):
    """A str (or bytes) as the bytes of a C string: no NUL inside, which C would cut at."""
    if isinstance(s, str):
        # lone surrogates pass through, for the C library to reject as invalid UTF-8
        s = s.encode("utf-8", "surrogatepass")
    elif not isinstance(s, bytes):
        raise _LocalError(ERR_INVALID_ARGUMENT, f"{what} {s!r} is not a string")
    if b"\0" in s:
        raise _LocalError(ERR_INVALID_ARGUMENT, f"{what} {s!r} contains a NUL character")
    return s


def _declare(name, value, rank):
    """The add calls for one value: [(kind, name, dtype code, shape, start, count, address, keep)]."""
    what = f"tensor {name!r} on rank {rank}"
    cname = _c_string(name, f"rank {rank}: tensor name")
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Slice) for v in value):
        return [_declare(name, v, rank)[0] for v in value]
    if isinstance(value, Slice):
        st, shape, ptr, nbytes, keep = _buffer(value.array, what)
        st, count = _override(st, shape, ptr, nbytes, value.dtype, value.count, what)
        gshape = _dims(value.global_shape, what, "global shape")
        start = _dims(value.start, what, "start")
        if not (len(gshape) == len(start) == len(count)):
            raise _LocalError(ERR_INVALID_ARGUMENT,
                              f"{what}: global shape {list(gshape)}, start {list(start)} and "
                              f"box {list(count)} differ in length")
        return [("slice", cname, _CODE[st], gshape, start, count, ptr, keep)]
    if isinstance(value, (Replica, Tensor)):
        st, shape, ptr, nbytes, keep = _buffer(value.array, what)
        st, shape = _override(st, shape, ptr, nbytes, value.dtype, value.shape, what)
        kind = "replica" if isinstance(value, Replica) else "whole"
        return [(kind, cname, _CODE[st], shape, None, None, ptr, keep)]
    st, shape, ptr, nbytes, keep = _buffer(value, what)
    return [("whole", cname, _CODE[st], shape, None, None, ptr, keep)]


def _raise_writer(code, w):
    msg = _lib.lib.mst_writer_error(w) if w else None
    raise Error(code, msg.decode("utf-8", "replace") if msg else strerror(code))


def save(tensors, path, comm=None, metadata=None, fsync=True, hints=None, checksums=False):
    """Saves every rank's tensors into one safetensors file at `path`.

    Collective over `comm` (an mpi4py intracommunicator, default
    MPI.COMM_WORLD): every rank calls it with the same path and options and
    its own `tensors`, a map from names to NumPy arrays, CPU torch tensors,
    Slice, Replica or Tensor values (see the module docstring). `metadata` is
    a map of strings to strings for "__metadata__" (ranks may repeat a key
    with the same value). `fsync=False` skips the sync to stable storage.
    `hints` (a map of strings) reaches MPI_File_open as MPI_Info hints.
    `checksums=True` records every tensor's CRC-32 in the metadata entry
    "mst.crc32" (mst_writer_set_checksums; every rank must pass the same).

    Data is written from the arrays' memory without a copy; arrays that are
    not C-contiguous are first copied into contiguous ones, and big-endian
    NumPy arrays into little-endian ones. The arrays must not change until
    save() returns.

    Raises mst.Error on every rank, with the same code and message, if any
    rank's declaration or the save fails; then no file appears at `path` and
    whatever was there is untouched.

    As with safetensors' save_file(tensors, filename, metadata), a mapping
    given as the third positional argument is the metadata:
    save(d, path, {"format": "pt"}) is save(d, path, metadata={"format": "pt"}).
    """
    comm, cpath, decls, meta, info = _prepare("mst.save", tensors, path, comm, metadata, hints)
    w = _lib.ctypes.c_void_p()
    try:
        _open_declare(w, comm, cpath, decls, meta, info, fsync, checksums)
        rc = _lib.lib.mst_writer_commit(w)
        if rc != OK:
            _raise_writer(rc, w)
    finally:
        _lib.lib.mst_writer_free(_lib.ctypes.byref(w))
        if info != MPI.INFO_NULL:
            info.Free()
        del decls  # the arrays (and any contiguous copies) live until here


def _prepare(fn, tensors, path, comm, metadata, hints):
    """The checks and conversions of save() and save_async() in Python, agreed
    over comm: (comm, cpath, decls, meta, info), or mst.Error on every rank."""
    if comm is not None and not isinstance(comm, MPI.Comm):
        if hasattr(comm, "items") and metadata is None:
            comm, metadata = None, comm  # the safetensors save_file(tensors, filename, metadata) order
        elif hasattr(comm, "items"):
            raise TypeError(f"{fn}: a mapping in the comm position and metadata= as well; "
                            "pass the metadata once, as metadata=")
        else:
            raise TypeError(f"{fn}: comm must be an mpi4py communicator (MPI.Comm), "
                            f"not {type(comm).__name__}")
    comm = MPI.COMM_WORLD if comm is None else comm
    rank = comm.Get_rank()
    decls, meta, local, info = [], [], None, MPI.INFO_NULL
    try:
        cpath = _c_string(os.fsencode(path), f"rank {rank}: path")
        items = tensors.items() if hasattr(tensors, "items") else None
        if items is None:
            raise _LocalError(ERR_INVALID_ARGUMENT,
                              f"rank {rank}: tensors is a {type(tensors).__name__}, not a mapping")
        for name, value in items:
            decls.extend(_declare(name, value, rank))
        for key, value in (metadata or {}).items():
            meta.append((_c_string(key, f"rank {rank}: metadata key"),
                         _c_string(value, f"rank {rank}: metadata value")))
        if hints:
            info = MPI.Info.Create()
            for k, v in hints.items():
                info.Set(str(k), str(v))
    except _LocalError as e:
        local = (e.code, e.message)
    except Exception as e:  # anything else still fails on every rank, not just here
        local = (ERR_INVALID_ARGUMENT, f"rank {rank}: {type(e).__name__}: {e}")
    # Errors found here in Python must reach every rank, as the C library's own do:
    # the lowest failing rank's error wins.
    failed = [e for e in comm.allgather(local) if e is not None]
    if failed:
        if info != MPI.INFO_NULL:
            info.Free()
        raise Error(*failed[0])

    return comm, cpath, decls, meta, info


def _open_declare(w, comm, cpath, decls, meta, info, fsync, checksums):
    """Opens the writer into w (freed by the caller) and declares everything."""
    rc = _lib.lib.mst_writer_open(_lib.ctypes.byref(w), _lib.comm_handle(comm), cpath,
                                  _lib.info_handle(info))
    if rc != OK:
        _raise_writer(rc, w)
    _lib.lib.mst_writer_set_fsync(w, 1 if fsync else 0)
    _lib.lib.mst_writer_set_checksums(w, 1 if checksums else 0)
    i64 = _lib.int64_array
    # Errors of the adds are kept by the writer and returned by the commit on every rank.
    for kind, cname, code, shape, start, count, ptr, _keep in decls:
        if kind == "slice":
            _lib.lib.mst_writer_add_slice(w, cname, code, len(shape), i64(shape), i64(start),
                                          i64(count), ptr)
        elif kind == "replica":
            _lib.lib.mst_writer_add_replica(w, cname, code, len(shape), i64(shape), ptr)
        else:
            _lib.lib.mst_writer_add(w, cname, code, len(shape), i64(shape), ptr)
    for k, v in meta:
        _lib.lib.mst_writer_add_metadata(w, k, v)


def save_async(tensors, path, comm=None, metadata=None, snapshot=True, fsync=True, hints=None):
    """Starts a split-phase save and returns an AsyncSave handle at once.

    Collective over `comm`, like save() (same arguments, same file, byte for
    byte): mst_writer_commit_begin agrees the options, exchanges the
    declarations, plans the file and opens its temporary; then a thread of
    the library writes this rank's bytes and syncs them while the caller goes
    on (with MPI-IO when MPI runs at MPI_THREAD_MULTIPLE, mpi4py's default;
    below that level with POSIX calls and no MPI call). h.done() tells (locally, without blocking)
    whether this rank's part is written; h.wait() (collective) finishes the
    save: the rename over `path`, with save()'s guarantees.

    With snapshot=True (the default) this rank's bytes are copied at the
    call, so the arrays may change as soon as save_async returns (the
    optimizer step); the copy costs as much memory as those bytes (bounded
    with hints={"mst_snapshot_limit": bytes}). With snapshot=False the arrays
    must not change until wait() returns; the handle keeps them alive.

    Refused on every rank with mst.Error (ERR_INVALID_ARGUMENT), before
    anything is written: strided Slices (column or 2-D blocks); use save()
    for those (and for checksums=True). Raises mst.Error on every rank if the
    start fails; errors of the writes come from wait(), on every rank.
    Dropping the handle without wait() abandons the save on this rank (no
    file at `path`, the temporary removed): do it on every rank.
    """
    comm, cpath, decls, meta, info = _prepare("mst.save_async", tensors, path, comm, metadata,
                                              hints)
    w = _lib.ctypes.c_void_p()
    try:
        _open_declare(w, comm, cpath, decls, meta, info, fsync, False)
        _lib.lib.mst_writer_set_snapshot(w, 1 if snapshot else 0)
        rc = _lib.lib.mst_writer_commit_begin(w)
        if rc != OK:
            _raise_writer(rc, w)
    except BaseException:
        _lib.lib.mst_writer_free(_lib.ctypes.byref(w))
        raise
    finally:
        if info != MPI.INFO_NULL:
            info.Free()  # the writer holds its own copy
    return AsyncSave(w, None if snapshot else decls)


def snapshot_reserve(nbytes):
    """Local. Makes the process's cached snapshot memory hold at least nbytes
    and touches it now, so that the first save_async(snapshot=True) of a
    training loop copies into memory already faulted in (call it once before
    the loop with the largest snapshot a rank takes: the bytes it writes).
    snapshot_reserve(0) returns that memory to the system. Raises mst.Error
    (ERR_NO_MEMORY) when the memory cannot be mapped. See
    mst_snapshot_reserve in mst.h."""
    n = int(nbytes)
    if n < 0 or n >= 1 << 64:
        raise ValueError(f"mst.snapshot_reserve: {nbytes!r} is not a byte count")
    rc = _lib.lib.mst_snapshot_reserve(n)
    if rc != 0:
        raise Error(rc, f"mst.snapshot_reserve: cannot map {n} bytes")


class AsyncSave:
    """A save in flight (from save_async). done(): local, never blocks.
    wait(): collective over the save's communicator; returns None or raises
    mst.Error, the same on every rank; later calls repeat the outcome. Also a
    context manager: leaving the block waits (or abandons, on an exception)."""

    def __init__(self, w, keep):
        self._w = w
        self._keep = keep  # the arrays written from, without a snapshot
        self._result = None
        self._finished = False

    def done(self):
        """True once this rank's bytes are written and synced (wait() then has
        nothing of this rank's to wait for)."""
        if self._finished:
            return True
        d = _lib.ctypes.c_int(0)
        rc = _lib.lib.mst_writer_commit_test(self._w, _lib.ctypes.byref(d))
        if rc != OK:
            _raise_writer(rc, self._w)
        return bool(d.value)

    def wait(self):
        """Finishes the save (mst_writer_commit_end): collective."""
        if not self._finished:
            rc = _lib.lib.mst_writer_commit_end(self._w)
            if rc != OK:
                msg = _lib.lib.mst_writer_error(self._w)
                self._result = Error(rc, msg.decode("utf-8", "replace") if msg else strerror(rc))
            _lib.lib.mst_writer_free(_lib.ctypes.byref(self._w))
            self._finished = True
            self._keep = None
        if self._result is not None:
            raise self._result

    def abandon(self):
        """Drops the save on this rank (local): no file at the target."""
        if not self._finished:
            _lib.lib.mst_writer_free(_lib.ctypes.byref(self._w))
            self._finished = True
            self._keep = None
            self._result = Error(ERR_STATE, "the save was abandoned")

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            self.wait()
        else:
            self.abandon()
        return False

    def __del__(self):
        try:
            self.abandon()
        except Exception:
            pass


class _Reader:
    def __init__(self, path):
        self.r = _lib.ctypes.c_void_p()
        rc = _lib.lib.mst_reader_open(_lib.ctypes.byref(self.r), os.fsencode(path))
        if rc != OK:
            self._raise(rc)

    def _raise(self, rc):
        msg = _lib.lib.mst_reader_error(self.r) if self.r else None
        err = Error(rc, msg.decode("utf-8", "replace") if msg else strerror(rc))
        self.close()
        raise err

    def close(self):
        _lib.lib.mst_reader_free(_lib.ctypes.byref(self.r))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def tensors(self):
        info = _lib.TensorInfo()
        out = []
        for i in range(_lib.lib.mst_reader_count(self.r)):
            rc = _lib.lib.mst_reader_tensor(self.r, i, _lib.ctypes.byref(info))
            if rc != OK:
                self._raise(rc)
            raw = _lib.ctypes.string_at(info.name, info.name_len)
            out.append((raw.decode("utf-8", "surrogateescape"), raw, DTYPES[info.dtype],
                        [info.shape[d] for d in range(info.ndim)], info.begin, info.end))
        return out

    def metadata(self):
        # the forms with lengths: a key or value may hold "\u0000", which C strings cut
        ct = _lib.ctypes
        k, v, klen, vlen = ct.c_void_p(), ct.c_void_p(), ct.c_size_t(), ct.c_size_t()
        out = {}
        for i in range(_lib.lib.mst_reader_metadata_count(self.r)):
            rc = _lib.lib.mst_reader_metadata_len(self.r, i, ct.byref(k), ct.byref(klen),
                                                  ct.byref(v), ct.byref(vlen))
            if rc != OK:
                self._raise(rc)
            key = ct.string_at(k.value, klen.value) if klen.value else b""
            value = ct.string_at(v.value, vlen.value) if vlen.value else b""
            out[key.decode("utf-8")] = value.decode("utf-8")
        return out

    def read(self, raw_name, nbytes):
        buf = np.empty(nbytes, dtype=np.uint8)
        # by length: a name may hold NUL bytes
        rc = _lib.lib.mst_reader_read_len(self.r, raw_name, len(raw_name), 0, buf.ctypes.data,
                                          nbytes)
        if rc != OK:
            self._raise(rc)
        return buf


def read_header(path):
    """The header of the safetensors file at `path`, validated by the C reader,
    as a dict in the file's own form: "__metadata__" (if any) first, then one
    {"dtype", "shape", "data_offsets"} entry per tensor in offset order.
    Local (no MPI). Raises mst.Error (ERR_FORMAT, ERR_OFFSETS, ERR_IO...)."""
    with _Reader(path) as r:
        header = {}
        meta = r.metadata()
        if meta:
            header["__metadata__"] = meta
        for name, _raw, dtype, shape, begin, end in r.tensors():
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        return header


def load(path, names=None, framework="numpy", verify=False):
    """Reads tensors of the file at `path` (all, or those in `names`) into a
    dict of name -> array, through the C reader. Local (no MPI).

    framework="numpy": NumPy arrays; dtypes NumPy has no type for come back as
    their raw bits: BF16 as uint16, F8_* as uint8 (same shape), F4/F6 as a
    flat uint8 array of the tensor's bytes.
    framework="torch": torch tensors of the matching torch dtype; raises
    mst.Error(ERR_UNKNOWN_DTYPE) for a dtype this torch lacks.
    A missing name raises mst.Error(ERR_NOT_FOUND).
    verify=True checks each tensor read against the file's "mst.crc32"
    checksums: mst.Error(ERR_CHECKSUM) names a tensor whose bytes differ;
    a file without checksums raises mst.Error(ERR_NOT_FOUND)."""
    if framework not in ("numpy", "torch"):
        raise ValueError(f"framework must be 'numpy' or 'torch', not {framework!r}")
    with _Reader(path) as r:
        entries = {name: [i] + e for i, (name, *e) in enumerate(r.tensors())}
        wanted = list(entries) if names is None else list(names)
        out = {}
        for name in wanted:
            if name not in entries:
                raise Error(ERR_NOT_FOUND, f"no tensor {name!r} in {os.fsdecode(path)}")
            index, raw, dtype, shape, begin, end = entries[name]
            buf = r.read(raw, end - begin)
            if verify:
                rc = _lib.lib.mst_reader_check_index(r.r, index, buf.ctypes.data, end - begin)
                if rc != OK:
                    r._raise(rc)
            out[name] = _as_torch(buf, dtype, shape) if framework == "torch" else \
                _as_numpy(buf, dtype, shape)
        return out


def _as_numpy(buf, dtype, shape):
    t = _NUMPY_OF.get(dtype) or _NUMPY_RAW.get(dtype)
    if t is None:  # F4, F6: sub-byte, no element type at all
        return buf
    return buf.view(t.newbyteorder("<")).reshape(shape)


def _as_torch(buf, dtype, shape):
    import torch
    names = {v: k for k, v in _TORCH_NAMES.items()}
    tdtype = getattr(torch, names.get(dtype, ""), None) if dtype in names else None
    if tdtype is None:
        raise Error(ERR_UNKNOWN_DTYPE, f"torch {torch.__version__} has no type for {dtype}")
    if buf.size == 0:
        return torch.empty(shape, dtype=tdtype)
    return torch.from_numpy(buf).view(tdtype).reshape(shape)


from ._loader import load_distributed  # noqa: E402  (the parallel loader)

"""mst.load_distributed: the parallel loader (mst_loader_* in include/mst.h)."""
import ctypes
import operator
import os

import numpy as np

from . import _lib

_p = ctypes.c_void_p
_i64p = ctypes.POINTER(ctypes.c_int64)


class LoadStats(ctypes.Structure):
    _fields_ = [("read_rank", ctypes.c_uint64), ("requested_rank", ctypes.c_uint64),
                ("read_all", ctypes.c_uint64), ("requested_all", ctypes.c_uint64),
                ("header_bytes", ctypes.c_uint64), ("rounds", ctypes.c_uint64)]


for _name, (_res, _args) in {
    "mst_loader_open": (ctypes.c_int, [ctypes.POINTER(_p), _lib._comm_t, ctypes.c_char_p,
                                       _lib._info_t]),
    "mst_loader_find": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.POINTER(_lib.TensorInfo)]),
    "mst_loader_read": (ctypes.c_int, [_p, ctypes.c_char_p, _p]),
    "mst_loader_read_slice": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int, _i64p, _i64p,
                                             _p]),
    "mst_loader_load": (ctypes.c_int, [_p]),
    "mst_loader_set_verify": (ctypes.c_int, [_p, ctypes.c_int]),
    "mst_loader_stats": (ctypes.c_int, [_p, ctypes.POINTER(LoadStats)]),
    "mst_loader_free": (None, [ctypes.POINTER(_p)]),
    "mst_loader_error": (ctypes.c_char_p, [_p]),
}.items():
    _f = getattr(_lib.lib, _name)
    _f.restype = _res
    _f.argtypes = _args


def _normalize(requests, rank):
    """[(name, name as bytes, single, [None or (start, count)])] from the
    caller's requests; ValueError/TypeError naming the rank and tensor."""
    if not hasattr(requests, "items"):
        raise TypeError(f"rank {rank}: requests is a {type(requests).__name__}, not a mapping")
    out = []
    for name, req in requests.items():
        if not isinstance(name, str):
            raise TypeError(f"rank {rank}: request name {name!r} is a {type(name).__name__}, "
                            f"not a str")
        try:
            cname = name.encode()
        except UnicodeEncodeError as e:
            raise ValueError(f"rank {rank}: request name {name!r}: {e}") from None
        if b"\0" in cname:
            raise ValueError(f"rank {rank}: request name {name!r} holds a NUL byte")
        single = not isinstance(req, list)
        boxes = []
        for box in ([req] if single else req):
            if box is None:
                boxes.append(None)
                continue
            try:
                start, count = box
                start = tuple(_index(x) for x in start)
                count = tuple(_index(x) for x in count)
            except (TypeError, ValueError) as e:
                raise ValueError(f"rank {rank}: tensor \"{name}\": request {box!r} is not None or "
                                 f"a (start, count) pair of integer sequences ({e})") from None
            if len(start) != len(count):
                raise ValueError(f"rank {rank}: tensor \"{name}\": box start has {len(start)} "
                                 f"entries, count {len(count)}")
            boxes.append((start, count))
        out.append((name, cname, single, boxes))
    return out


def _index(x):
    """An integer from an int-like value (NumPy integers included), never a float."""
    return operator.index(x)


def load_distributed(path, requests, comm=None, framework="numpy", hints=None, stats=None,
                     verify=False):
    """Collective over `comm` (default MPI.COMM_WORLD): every rank loads its
    own `requests` from the safetensors file or Hugging Face set at `path`
    (a file, the set's directory or its model.safetensors.index.json), each
    byte read from storage once over all ranks (see mst_loader_load).

    `requests` maps a tensor name to None (the whole tensor), a box
    (start, count) (one entry per dimension), or a list of boxes. Returns a
    dict name -> array (framework="numpy") or torch tensor ("torch"), and
    name -> list of arrays where a list of boxes was given. Arrays have the
    box's shape; dtypes NumPy lacks come back as in mst.load (BF16 as uint16
    bits, F8 as uint8, F4/F6 as flat uint8 bytes).
    Errors raise mst.Error with the same code and message on every rank,
    before any array is filled; that includes a malformed request on one
    rank (not None, a (start, count) pair of integer sequences or a list of
    such pairs; a name that is not a str), reported as mst.ERR_INVALID_ARGUMENT
    naming the lowest such rank and its tensor. `hints`: dict of MPI_Info keys
    ("mst_load_buffer"). `stats`: a dict, filled with the load's figures.
    `verify=True` checks every tensor this rank loads whole against the
    file's "mst.crc32" checksums (mst_loader_set_verify): a mismatch raises
    mst.Error (ERR_CHECKSUM) on every rank, naming the tensor and the rank;
    a file without checksums raises ERR_NOT_FOUND before anything is read."""
    from . import Error, _as_numpy, _as_torch, _BITS, DTYPES, ERR_INVALID_ARGUMENT
    MPI = _lib.MPI
    comm = MPI.COMM_WORLD if comm is None else comm
    rank = comm.Get_rank()
    local, norm = None, []
    try:
        if framework not in ("numpy", "torch"):
            raise ValueError(f"framework must be 'numpy' or 'torch', not {framework!r}")
        norm = _normalize(requests, rank)
    except Exception as e:  # found here, on this rank: still fails on every rank
        local = str(e) if str(e).startswith(f"rank {rank}:") else f"rank {rank}: {e}"
    # the lowest failing rank's message, on every rank, before the collective open
    failed = [m for m in comm.allgather(local) if m is not None]
    if failed:
        raise Error(ERR_INVALID_ARGUMENT, failed[0])
    info = MPI.INFO_NULL
    if hints:
        info = MPI.Info.Create()
        for k, v in hints.items():
            info.Set(str(k), str(v))
    lo = _p()
    try:
        rc = _lib.lib.mst_loader_open(ctypes.byref(lo), _lib.comm_handle(comm),
                                      os.fsencode(path), _lib.info_handle(info))
        if rc:
            raise Error(rc, (_lib.lib.mst_loader_error(lo) or b"").decode(errors="replace"))
        _lib.lib.mst_loader_set_verify(lo, 1 if verify else 0)
        plan, keep = [], []
        first = None
        for name, cname, single, boxes in norm:
            info_t = _lib.TensorInfo()
            rc = _lib.lib.mst_loader_find(lo, cname, ctypes.byref(info_t))
            shape = tuple(info_t.shape[d] for d in range(info_t.ndim)) if rc == 0 else ()
            dtype = DTYPES[info_t.dtype] if rc == 0 else None
            outs = []
            for box in boxes:
                if box is None:
                    count = shape
                else:
                    start, count = box
                n = 1
                for c in count:
                    n *= c
                nbytes = n * (_BITS[dtype] if dtype else 8) // 8
                buf = np.empty(nbytes, dtype=np.uint8)
                ptr = buf.ctypes.data if nbytes else None
                if box is None:
                    rc2 = _lib.lib.mst_loader_read(lo, cname, ptr)
                else:
                    st = _lib.int64_array(start)
                    ct = _lib.int64_array(count)
                    keep.append((st, ct))
                    rc2 = _lib.lib.mst_loader_read_slice(lo, cname, len(start), st, ct,
                                                         ptr if nbytes else buf.ctypes.data)
                if rc2 and first is None:
                    first = rc2
                outs.append((buf, dtype, count))
            plan.append((name, single, outs))
        rc = _lib.lib.mst_loader_load(lo)  # agreed: declaration errors included
        if rc:
            raise Error(rc, (_lib.lib.mst_loader_error(lo) or b"").decode(errors="replace"))
        if stats is not None:
            s = LoadStats()
            _lib.lib.mst_loader_stats(lo, ctypes.byref(s))
            stats.update({f: getattr(s, f) for f, _ in LoadStats._fields_})
        result = {}
        for name, single, outs in plan:
            conv = [(_as_torch if framework == "torch" else _as_numpy)(b, d, c)
                    for b, d, c in outs]
            result[name] = conv[0] if single else conv
        return result
    finally:
        _lib.lib.mst_loader_free(ctypes.byref(lo))
        if info != MPI.INFO_NULL:
            info.Free()

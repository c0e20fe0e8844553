"""Finds and loads libmst with ctypes, and declares the C prototypes.

Where libmst is looked for, first match wins:
  1. the file named by the MST_LIBRARY environment variable (nothing else is
     tried when it is set, so a wrong value is an error, not a silent fallback);
  2. the library installed with this package by `cmake --install` (the path
     recorded in _install.py, relative to this directory);
  3. a build tree: $MST_BUILD/src, then <source>/build/src when this package
     is used from the source tree (PYTHONPATH=python);
  4. the dynamic linker's search path (LD_LIBRARY_PATH, ld.so.cache).
"""
import ctypes
import ctypes.util
import os

import sys

# mpi4py initialises MPI (MPI_Init_thread) on import and loads libmpi with
# RTLD_GLOBAL, so libmst binds to that same libmpi; import it first.
try:
    from mpi4py import MPI
except ImportError as e:
    raise ImportError(f"mst needs mpi4py, which {sys.executable} cannot import ({e}); on Debian "
                      "install python3-mpi4py and run /usr/bin/python3") from None

_HERE = os.path.dirname(os.path.abspath(__file__))
_SONAME = "libmst.so.0"


class LibraryNotFound(ImportError):
    """libmst could not be found or loaded."""


def _candidates():
    try:
        from . import _install  # written by cmake --install only
        yield os.path.normpath(os.path.join(_HERE, _install.LIBDIR, _SONAME))
    except ImportError:
        pass
    build = os.environ.get("MST_BUILD")
    if build:
        yield os.path.join(build, "src", _SONAME)
    yield os.path.normpath(os.path.join(_HERE, "..", "..", "build", "src", _SONAME))


def _load():
    mode = getattr(os, "RTLD_GLOBAL", 0)
    explicit = os.environ.get("MST_LIBRARY")
    if explicit:
        try:
            return ctypes.CDLL(explicit, mode=mode), explicit
        except OSError as e:
            raise LibraryNotFound(f"mst: MST_LIBRARY={explicit!r} cannot be loaded: {e}") from None
    tried = []
    for path in _candidates():
        tried.append(path)
        if os.path.exists(path):
            try:
                return ctypes.CDLL(path, mode=mode), path
            except OSError as e:
                raise LibraryNotFound(f"mst: {path} cannot be loaded: {e}") from None
    name = ctypes.util.find_library("mst") or _SONAME
    tried.append(name + " on the library path")
    try:
        return ctypes.CDLL(name, mode=mode), name
    except OSError:
        pass
    raise LibraryNotFound(
        "mst: libmst not found; tried " + ", ".join(tried) +
        ". Build it (scripts/build.sh), install it (cmake --install), or set MST_LIBRARY "
        "to the path of libmst.so")


lib, path = _load()

# MPI handle types: Open MPI's MPI_Comm and MPI_Info are pointers, MPICH's are ints.
_comm_t = ctypes.c_void_p if MPI._sizeof(MPI.Comm) == ctypes.sizeof(ctypes.c_void_p) else ctypes.c_int
_info_t = ctypes.c_void_p if MPI._sizeof(MPI.Info) == ctypes.sizeof(ctypes.c_void_p) else ctypes.c_int


def comm_handle(comm):
    return _comm_t(MPI._handleof(comm))


def info_handle(info):
    return _info_t(MPI._handleof(info))


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("name_len", ctypes.c_size_t),
                ("dtype", ctypes.c_int), ("ndim", ctypes.c_int),
                ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("begin", ctypes.c_uint64), ("end", ctypes.c_uint64)]


_p = ctypes.c_void_p
_i64p = ctypes.POINTER(ctypes.c_int64)
_PROTOS = {
    "mst_version_string": (ctypes.c_char_p, []),
    "mst_dtype_name": (ctypes.c_char_p, [ctypes.c_int]),
    "mst_dtype_bits": (ctypes.c_int, [ctypes.c_int]),
    "mst_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "mst_writer_open": (ctypes.c_int, [ctypes.POINTER(_p), _comm_t, ctypes.c_char_p, _info_t]),
    "mst_writer_set_fsync": (ctypes.c_int, [_p, ctypes.c_int]),
    "mst_writer_add": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, _i64p, _p]),
    "mst_writer_add_slice": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                            _i64p, _i64p, _i64p, _p]),
    "mst_writer_add_replica": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                              _i64p, _p]),
    "mst_writer_add_metadata": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_char_p]),
    "mst_writer_commit": (ctypes.c_int, [_p]),
    "mst_writer_free": (None, [ctypes.POINTER(_p)]),
    "mst_writer_error": (ctypes.c_char_p, [_p]),
    "mst_reader_open": (ctypes.c_int, [ctypes.POINTER(_p), ctypes.c_char_p]),
    "mst_reader_free": (None, [ctypes.POINTER(_p)]),
    "mst_reader_error": (ctypes.c_char_p, [_p]),
    "mst_reader_count": (ctypes.c_size_t, [_p]),
    "mst_reader_tensor": (ctypes.c_int, [_p, ctypes.c_size_t, ctypes.POINTER(TensorInfo)]),
    "mst_reader_metadata_count": (ctypes.c_size_t, [_p]),
    "mst_reader_metadata": (ctypes.c_int, [_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_char_p),
                                           ctypes.POINTER(ctypes.c_char_p)]),
    "mst_reader_metadata_len": (ctypes.c_int, [_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p),
                                               ctypes.POINTER(ctypes.c_size_t),
                                               ctypes.POINTER(ctypes.c_void_p),
                                               ctypes.POINTER(ctypes.c_size_t)]),
    "mst_reader_data_start": (ctypes.c_uint64, [_p]),
    "mst_reader_read": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_uint64, _p, ctypes.c_uint64]),
    "mst_reader_read_len": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64, _p,
                                           ctypes.c_uint64]),
}
for _name, (_res, _args) in _PROTOS.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    _f.argtypes = _args


def int64_array(values):
    values = list(values)
    return (ctypes.c_int64 * max(len(values), 1))(*values)

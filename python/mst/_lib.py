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


# ---- libmst and mpi4py must use the same MPI library --------------------------
# A libmst built for MPICH loaded into a process whose mpi4py uses Open MPI (or
# the reverse) binds its MPI calls to the other library's symbols and crashes
# at the first one (MPI_Comm_dup). Told apart here, before any MPI call.

class MPIMismatch(ImportError):
    """libmst and mpi4py were built for different MPI libraries."""


def mpi_flavour(text):
    """'Open MPI', 'MPICH' (the MPICH ABI family: MPICH, Cray MPICH, Intel MPI,
    MVAPICH) or None, from an MPI_Get_library_version string or a library
    file name (soname)."""
    t = text or ""
    if "Open MPI" in t or "OpenMPI" in t:
        return "Open MPI"
    if any(k in t for k in ("MPICH", "Intel(R) MPI", "MVAPICH")):
        return "MPICH"
    base = os.path.basename(t)
    if base.startswith(("libmpich", "libmpi_cray", "libmpi_intel")):
        return "MPICH"
    # libmpi.so.40 (Open MPI 3-5), .20 (Open MPI 2); libmpi.so.12 is shared by
    # Open MPI 1.10, Intel MPI and MVAPICH: not told apart by its name
    if base.startswith(("libmpi.so.40", "libmpi.so.20", "libopen-rte", "libopen-pal")):
        return "Open MPI"
    return None


def mpi_describe(text):
    """A short name of an MPI library from its version string: 'Open MPI 4.1.4',
    'MPICH 4.0.2', or the first line of the string."""
    import re
    t = text or ""
    m = re.search(r"Open MPI v?([0-9][0-9.]*[0-9a-z]*)", t)
    if m:
        return "Open MPI " + m.group(1)
    m = re.search(r"CRAY MPICH version ([0-9][0-9.]*)", t)
    if m:
        return "Cray MPICH " + m.group(1)
    m = re.search(r"MPICH Version:\s*([0-9][0-9.]*\w*)", t)
    if m:
        return "MPICH " + m.group(1)
    first = t.strip().splitlines()[0].strip() if t.strip() else "an unknown MPI"
    return first[:80]


def elf_needed(path):
    """The DT_NEEDED entries (sonames) of the ELF shared object at `path`;
    [] when it is not an ELF file this code can read."""
    import struct
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return []
    is64, end = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if is64:
            shoff, = struct.unpack_from(end + "Q", data, 0x28)
            shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
            shfmt, dynfmt = end + "IIQQQQIIQQ", end + "qQ"
        else:
            shoff, = struct.unpack_from(end + "I", data, 0x20)
            shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
            shfmt, dynfmt = end + "IIIIIIIIII", end + "iI"
        sections = [struct.unpack_from(shfmt, data, shoff + i * shentsize) for i in range(shnum)]
        needed = []
        for sec in sections:
            if sec[1] != 6:  # SHT_DYNAMIC
                continue
            strtab = sections[sec[6]]  # sh_link: its string table
            size, entsize = sec[5], struct.calcsize(dynfmt)
            for off in range(sec[4], sec[4] + size, entsize):
                tag, val = struct.unpack_from(dynfmt, data, off)
                if tag == 0:  # DT_NULL
                    break
                if tag == 1:  # DT_NEEDED
                    start = strtab[4] + val
                    needed.append(data[start:data.index(b"\0", start)].decode("utf-8", "replace"))
        return needed
    except (struct.error, IndexError, ValueError):
        return []


def _lib_mpi_version(soname):
    """MPI_Get_library_version of the already loaded library `soname` (callable
    before MPI_Init), or None."""
    try:
        handle = ctypes.CDLL(soname, mode=getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LOCAL", 0))
        fn = handle.MPI_Get_library_version
    except (OSError, AttributeError):
        return None
    buf = ctypes.create_string_buffer(16384)  # MPI_MAX_LIBRARY_VERSION_STRING: 256 to 8192
    n = ctypes.c_int(0)
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    fn.restype = ctypes.c_int
    if fn(buf, ctypes.byref(n)) != 0:
        return None
    return buf.raw[:max(0, min(n.value, len(buf)))].split(b"\0")[0].decode("utf-8", "replace")


def check_mpi_match(lib_path, lib_needed, lib_version, py_version):
    """Raises MPIMismatch when libmst (at lib_path, whose DT_NEEDED MPI entry is
    lib_needed, whose MPI reports lib_version) and mpi4py (whose MPI reports
    py_version) use MPIs of different flavours. Unknown flavours pass."""
    mine = mpi_flavour(lib_version) or mpi_flavour(lib_needed)
    theirs = mpi_flavour(py_version)
    if mine is None or theirs is None or mine == theirs:
        return
    built = mpi_describe(lib_version) if mpi_flavour(lib_version) else mine
    if lib_needed:
        built += f" ({lib_needed})"
    raise MPIMismatch(
        f"mst: libmst ({lib_path}) was built with {built} but mpi4py uses "
        f"{mpi_describe(py_version)}; one process cannot use both (it would crash at the "
        f"first MPI call). Use a libmst built for {theirs} (cmake -DMPI_C_COMPILER=<its mpicc>, "
        f"or MST_LIBRARY=<that libmst.so>) or an mpi4py built for {mine}.")


def _loaded_file(name):
    """The file of the loaded library `name` (a path, or a soname found on the
    library path: looked up in /proc/self/maps)."""
    if os.path.sep in name and os.path.exists(name):
        return name
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split(None, 5)[-1].strip()
                if os.path.basename(p).startswith(os.path.basename(name)):
                    return p
    except OSError:
        pass
    return name


def _check_mpi():
    needed = [n for n in elf_needed(_loaded_file(path)) if n.startswith("libmpi")]
    lib_needed = needed[0] if needed else None
    lib_version = _lib_mpi_version(lib_needed) if lib_needed else None
    try:
        py_version = MPI.Get_library_version()
    except Exception:  # an mpi4py without it: nothing to compare
        return
    check_mpi_match(path, lib_needed, lib_version, py_version)


_check_mpi()

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
    "mst_writer_set_checksums": (ctypes.c_int, [_p, ctypes.c_int]),
    "mst_writer_add": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, _i64p, _p]),
    "mst_writer_add_slice": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                            _i64p, _i64p, _i64p, _p]),
    "mst_writer_add_replica": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                              _i64p, _p]),
    "mst_writer_add_metadata": (ctypes.c_int, [_p, ctypes.c_char_p, ctypes.c_char_p]),
    "mst_writer_commit": (ctypes.c_int, [_p]),
    "mst_writer_set_snapshot": (ctypes.c_int, [_p, ctypes.c_int]),
    "mst_snapshot_reserve": (ctypes.c_int, [ctypes.c_uint64]),
    "mst_writer_commit_begin": (ctypes.c_int, [_p]),
    "mst_writer_commit_test": (ctypes.c_int, [_p, ctypes.POINTER(ctypes.c_int)]),
    "mst_writer_commit_end": (ctypes.c_int, [_p]),
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
    "mst_reader_check_index": (ctypes.c_int, [_p, ctypes.c_size_t, _p, ctypes.c_uint64]),
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

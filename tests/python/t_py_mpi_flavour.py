"""The binding tells a libmst and an mpi4py built for different MPI libraries
apart (mst._lib.check_mpi_match) and raises mst.MPIMismatch, an ImportError,
with a clear message instead of crashing at the first MPI call. Checked with
fake inputs (version strings and sonames of Open MPI, MPICH, Cray MPICH,
Intel MPI, MVAPICH), so no second MPI is needed; plus the ELF reader on the
libmst just built (environment: MST_LIBRARY) and on files that are not ELF.

  t_py_mpi_flavour.py WORK_DIR
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import mst  # noqa: E402  (the import itself runs the check against the real mpi4py)
from mst import _lib  # noqa: E402

work = sys.argv[1]
os.makedirs(work, exist_ok=True)
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"CHECK failed: {what}", file=sys.stderr, flush=True)


OMPI = ("Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, "
        "May 26, 2022")
MPICH = ("MPICH Version:      4.0.2\nMPICH Release date: Thu May 19 10:49:19 CDT 2022\n"
         "MPICH ABI:          14:2:2\nMPICH Device:       ch4:ofi\n")
CRAY = "MPI VERSION    : CRAY MPICH version 8.1.25.17 (ANL base 3.4a2)\nMPI BUILD INFO : ..."
INTEL = "Intel(R) MPI Library 2021.6 for Linux* OS\n"
MVAPICH = "MVAPICH2 Version      :\t2.3.7\nMVAPICH2 Release date :\tWed March 02 22:00:00 EST 2022"

# flavours from version strings and sonames
for text, want in [(OMPI, "Open MPI"), (MPICH, "MPICH"), (CRAY, "MPICH"), (INTEL, "MPICH"),
                   (MVAPICH, "MPICH"), ("libmpi.so.40", "Open MPI"), ("libmpi.so.20", "Open MPI"),
                   ("libmpich.so.12", "MPICH"), ("/opt/cray/lib/libmpi_cray.so.12", "MPICH"),
                   ("libmpi.so.12", None), ("", None), (None, None), ("Some MPI 1.0", None)]:
    check(_lib.mpi_flavour(text) == want, f"mpi_flavour({text!r}) = {_lib.mpi_flavour(text)!r}, "
                                          f"want {want!r}")
for text, want in [(OMPI, "Open MPI 4.1.4"), (MPICH, "MPICH 4.0.2"), (CRAY, "Cray MPICH 8.1.25.17"),
                   (INTEL, "Intel(R) MPI Library 2021.6 for Linux* OS")]:
    check(_lib.mpi_describe(text) == want, f"mpi_describe: {_lib.mpi_describe(text)!r}, want {want!r}")

# a mismatch: libmst for MPICH, mpi4py for Open MPI, and the reverse
try:
    _lib.check_mpi_match("/x/libmst.so.0", "libmpich.so.12", MPICH, OMPI)
    check(False, "MPICH libmst under an Open MPI mpi4py: no error")
except mst.MPIMismatch as e:
    msg = str(e)
    check(isinstance(e, ImportError), "MPIMismatch is an ImportError")
    check("libmst (/x/libmst.so.0) was built with MPICH 4.0.2 (libmpich.so.12) but mpi4py uses "
          "Open MPI 4.1.4" in msg, f"message: {msg}")
    check("Use a libmst built for Open MPI" in msg and "or an mpi4py built for MPICH" in msg,
          f"message says what to do: {msg}")
try:
    _lib.check_mpi_match("/y/libmst.so.0", "libmpi.so.40", OMPI, CRAY)
    check(False, "Open MPI libmst under a Cray MPICH mpi4py: no error")
except mst.MPIMismatch as e:
    check("built with Open MPI 4.1.4 (libmpi.so.40) but mpi4py uses Cray MPICH 8.1.25.17" in str(e),
          f"message: {e}")
# the version of libmst's MPI unknown: its soname decides
try:
    _lib.check_mpi_match("/z/libmst.so.0", "libmpich.so.12", None, OMPI)
    check(False, "libmpich.so.12 libmst, no version, under Open MPI: no error")
except mst.MPIMismatch as e:
    check("built with MPICH (libmpich.so.12) but mpi4py uses Open MPI 4.1.4" in str(e),
          f"message: {e}")

# no error: the same flavour, one ABI family, or something that cannot be told
for args in [("l", "libmpi.so.40", OMPI, OMPI), ("l", "libmpich.so.12", MPICH, MPICH),
             ("l", "libmpi.so.12", INTEL, MPICH), ("l", "libmpi_cray.so.12", CRAY, MPICH),
             ("l", "libmpi.so.12", None, OMPI), ("l", None, None, MPICH),
             ("l", "libmpi.so.40", OMPI, "Some MPI 1.0")]:
    try:
        _lib.check_mpi_match(*args)
    except mst.MPIMismatch as e:
        check(False, f"check_mpi_match{args[1:3]} vs {args[3][:20]!r}: unexpected {e}")

# the ELF reader: the real libmst needs this process's MPI library
needed = _lib.elf_needed(_lib._loaded_file(_lib.path))
mpi_needed = [n for n in needed if n.startswith("libmpi")]
check(len(mpi_needed) == 1, f"libmst's DT_NEEDED names one MPI library: {needed}")
from mpi4py import MPI  # noqa: E402
if mpi_needed:
    check(_lib.mpi_flavour(mpi_needed[0]) in (None, _lib.mpi_flavour(MPI.Get_library_version())),
          f"{mpi_needed[0]} against mpi4py's {MPI.Get_library_version()[:40]!r}")
    v = _lib._lib_mpi_version(mpi_needed[0])
    check(v is not None and _lib.mpi_flavour(v) == _lib.mpi_flavour(MPI.Get_library_version()),
          f"MPI_Get_library_version of {mpi_needed[0]}: {v!r}")
for name, data in [("text", b"not an ELF file\n"), ("short", b"\x7fELF\x02\x01"),
                   ("truncated", open(_lib._loaded_file(_lib.path), "rb").read()[:200])]:
    p = os.path.join(work, name)
    with open(p, "wb") as f:
        f.write(data)
    check(_lib.elf_needed(p) == [], f"elf_needed({name}) = {_lib.elf_needed(p)}")
check(_lib.elf_needed(os.path.join(work, "absent")) == [], "elf_needed(absent file)")

if failures:
    print(f"t_py_mpi_flavour: {failures} check(s) failed", file=sys.stderr)
    sys.exit(1)
print("t_py_mpi_flavour: mismatched MPIs raise MPIMismatch with a clear message; "
      "matching ones and unknown ones pass")

"""Shared by the Python binding's tests: import paths, the oracle, checks.

The expected bytes come from tests/oracle/reference_writer.py (header_bytes), which
implements the reference writer's canonical layout independently of mst; the
tensor bytes are the arrays' own little-endian C-order bytes.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "oracle"))
if not os.environ.get("MST_TEST_INSTALLED"):
    sys.path.insert(0, os.path.join(SRC, "python"))

import numpy as np  # noqa: E402
import reference_writer  # noqa: E402
from mpi4py import MPI  # noqa: E402

import mst  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"[rank {rank}] CHECK failed: {what}", file=sys.stderr, flush=True)
    return cond


def finish():
    """Exit status: non-zero on every rank if any rank failed a check."""
    total = comm.allreduce(failures)
    if rank == 0:
        print(f"{'FAILED' if total else 'passed'}: {total} failed checks at {size} ranks", flush=True)
    sys.exit(1 if total else 0)


def expected_bytes(full, metadata=None):
    """Canonical file bytes for `full`: name -> (safetensors dtype, shape, data bytes)."""
    spec = {"metadata": list((metadata or {}).items()),
            "tensors": [{"name": n, "dtype": d, "shape": list(s)} for n, (d, s, _) in full.items()]}
    text, order = reference_writer.header_bytes(spec)
    return struct.pack("<Q", len(text)) + text + b"".join(full[t["name"]][2] for t in order)


def le_bytes(a):
    """An array's little-endian C-order bytes (independent of the binding)."""
    a = np.asarray(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).tobytes()


def check_file(path, want, what):
    """On rank 0: the file at path equals `want`, byte for byte."""
    if rank != 0:
        return
    with open(path, "rb") as f:
        got = f.read()
    if not check(got == want, f"{what}: {path} differs from the canonical bytes "
                              f"({len(got)} vs {len(want)} bytes)"):
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                print(f"  first difference at byte {i}: got {got[max(0, i - 40):i + 40]!r}\n"
                      f"  expected {want[max(0, i - 40):i + 40]!r}", file=sys.stderr)
                break


def rng_for(name):
    return np.random.default_rng(reference_writer.name_hash(name))


def expect_error(fn, code, contains, what):
    """fn() must raise mst.Error with `code` and a message containing `contains`
    on this rank, and every rank must get the same code and message."""
    got = None
    try:
        fn()
        check(False, f"{what}: no error raised")
    except mst.Error as e:
        got = (e.code, e.message)
        check(e.code == code, f"{what}: code {e.code} ({e.message}), expected {code}")
        check(contains in e.message, f"{what}: message {e.message!r} lacks {contains!r}")
        check(str(e).startswith(e.message) and f"code {code}" in str(e), f"{what}: str {e}")
    allgot = comm.allgather(got)
    check(all(g == allgot[0] for g in allgot), f"{what}: ranks disagree: {allgot}")
    return got

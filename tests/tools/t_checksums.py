#!/usr/bin/env python3
"""Checksums ("mst.crc32"), checked independently of mst: every CRC is
recomputed here with Python's zlib over the bytes this script's own parser
finds in the file, and the files are compared with the oracle
(tests/oracle/reference_writer.py).

  t_checksums.py NP T_CHECKSUMS   at NP ranks:
    - t_checksums (tests/mpi/t_checksums.c) writes whole, batched, empty,
      streamed, row/column/block-sliced and replicated tensors, with strided
      boxes redistributed and with collective writes, and as a multi-file set;
      each file with checksums must be byte-identical to the oracle's file
      with "mst.crc32" = the zlib CRCs of the oracle's tensor bytes; the file
      with checksums off byte-identical to the oracle without it
    - mst-inspect --verify: exit 0 on them, exit 3 on a file without
      checksums, exit 1 naming exactly the tensor of a flipped bit (files, sets)
    - mst-merge --checksums: correct CRCs from an input without them, the same
      file from an input with them, a corrupt input refused naming the tensor
    - Python: save(checksums=True) at NP ranks (slices, replicas), load(verify=True)
Environment (CTest): MPIEXEC, MST_INSPECT, MST_MERGE, MST_LIBRARY, WORK.
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "oracle"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import reference_writer as ref  # noqa: E402

MPIEXEC = os.environ.get("MPIEXEC", "mpiexec")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr, flush=True)
    return cond


def parse(path):
    """(metadata, [(name, begin, end)] in (begin, end) order, data bytes)"""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", {})
    ts = sorted(((k, v["data_offsets"][0], v["data_offsets"][1]) for k, v in h.items()),
                key=lambda t: (t[1], t[2]))
    return meta, ts, b[8 + n:]


def crcs_ok(path):
    """Every tensor's digits equal zlib.crc32 of its bytes; returns the count."""
    meta, ts, data = parse(path)
    value = meta.get("mst.crc32", "")
    check(len(value) == 8 * len(ts), f"{path}: mst.crc32 has {len(value)} characters")
    for i, (name, b, e) in enumerate(ts):
        check(value[8 * i:8 * i + 8] == "%08x" % zlib.crc32(data[b:e]),
              f"{path}: tensor {name}: recorded {value[8 * i:8 * i + 8]}, "
              f"zlib {zlib.crc32(data[b:e]):08x}")
    return len(ts)


def oracle(spec, crc):
    """The oracle's file bytes; with crc, "mst.crc32" of its own tensor bytes."""
    spec = dict(spec)
    _, order = ref.header_bytes(spec)
    datas = [b"".join(ref.data_chunks(t["name"], ref.nbytes_of(t))) for t in order]
    if crc:
        spec["metadata"] = list(spec["metadata"]) + [
            ["mst.crc32", "".join("%08x" % zlib.crc32(d) for d in datas)]]
    text, _ = ref.header_bytes(spec)
    return struct.pack("<Q", len(text)) + text + b"".join(datas)


def run(*cmd, timeout=600):
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def inspect(*args):
    return run(os.environ["MST_INSPECT"], *args)


def flip_tests(path, label, rnd):
    """Flip one bit at random data bytes (one per tensor with bytes, plus the
    first and last data byte): --verify names exactly that tensor."""
    meta, ts, data = parse(path)
    start = os.path.getsize(path) - len(data)
    targets = [(name, rnd.randrange(b, e)) for name, b, e in ts if e > b]
    targets += [(next(n for n, b, e in ts if e > b), 0),
                (next(n for n, b, e in reversed(ts) if e > b), len(data) - 1)]
    bad = path + ".flipped"
    for name, pos in targets:
        shutil.copyfile(path, bad)
        with open(bad, "r+b") as f:
            f.seek(start + pos)
            byte = f.read(1)[0]
            f.seek(start + pos)
            f.write(bytes([byte ^ (1 << rnd.randrange(8))]))
        r = inspect("--verify", bad)
        named = [n for n, _, _ in ts if f'tensor "{n}": checksum mismatch' in r.stderr]
        check(r.returncode == 1 and named == [name],
              f"{label}: bit flipped in {name} at {pos}: exit {r.returncode}, named {named}: "
              f"{r.stderr[-300:]}")
    os.remove(bad)


def pysave(out):
    """Under mpiexec: mst.save(checksums=True) of slices and replicas."""
    import numpy as np
    from mpi4py import MPI
    import mst
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    rows = np.arange(6 * size * 70, dtype=np.float32).reshape(6 * size, 70)
    cols = (np.arange(33 * 5 * size, dtype=np.int16).reshape(33, 5 * size) * 7)
    tensors = {
        f"own.{rank}": np.full(100 + rank, rank, dtype=np.uint8),
        "rows": mst.Slice(rows[6 * rank:6 * rank + 6], rows.shape, (6 * rank, 0)),
        "cols": mst.Slice(np.ascontiguousarray(cols[:, 5 * rank:5 * rank + 5]), cols.shape,
                          (0, 5 * rank)),
        "rep": mst.Replica(np.arange(999, dtype=np.float64)),
    }
    mst.save(tensors, out, metadata={"k": "v"}, fsync=False, checksums=True)
    comm.Barrier()
    if rank == 0:
        got = mst.load(out, verify=True)
        ok = np.array_equal(got["rows"], rows) and np.array_equal(got["cols"], cols)
        print("pysave", "ok" if ok else "WRONG DATA", flush=True)
    MPI.Finalize()


def main():
    if sys.argv[1] == "pysave":
        return pysave(sys.argv[2])
    np_, prog = int(sys.argv[1]), sys.argv[2]
    work = os.environ["WORK"]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rnd = random.Random(17 * np_)

    r = run(MPIEXEC, "-n", str(np_), prog, work)
    check(r.returncode == 0, f"t_checksums: exit {r.returncode}: {r.stdout}{r.stderr[-2000:]}")
    with open(os.path.join(work, "spec.json")) as f:
        spec = json.load(f)

    # files: byte-identical to the oracle, with and without checksums
    want = oracle(spec, True)
    for name in ("redist", "collective"):
        p = os.path.join(work, name + ".safetensors")
        with open(p, "rb") as f:
            check(f.read() == want, f"{name}: not the oracle's file with its zlib CRCs")
        crcs_ok(p)
    with open(os.path.join(work, "off.safetensors"), "rb") as f:
        check(f.read() == oracle(spec, False), "checksums off: not the oracle's file")
    meta, _, _ = parse(os.path.join(work, "userkey.safetensors"))
    check(meta.get("mst.crc32") == "user value", "off: a user's mst.crc32 is kept as given")
    check(not os.path.exists(os.path.join(work, "reserved.safetensors")),
          "the reserved key while on leaves no file")

    # the set: every shard's CRCs, every tensor once
    setdir = os.path.join(work, "set")
    shards = sorted(n for n in os.listdir(setdir) if n.endswith(".safetensors"))
    check(len(shards) > 1, f"the set has {len(shards)} shards")
    total = sum(crcs_ok(os.path.join(setdir, n)) for n in shards)
    check(total == len(spec["tensors"]), f"the set has {total} tensors")

    # mst-inspect --verify
    for p in ("redist.safetensors", "collective.safetensors"):
        r = inspect("--verify", os.path.join(work, p))
        check(r.returncode == 0 and f"{len(spec['tensors'])} tensors verified" in r.stdout,
              f"--verify {p}: exit {r.returncode}: {r.stdout} {r.stderr}")
    r = inspect("--verify", setdir)
    check(r.returncode == 0 and f"{len(shards)} files, {total} tensors verified" in r.stdout,
          f"--verify set: exit {r.returncode}: {r.stdout} {r.stderr}")
    r = inspect("--verify", os.path.join(work, "off.safetensors"))
    check(r.returncode == 3 and "no checksums" in r.stderr,
          f"--verify without checksums: exit {r.returncode}: {r.stderr}")
    r = inspect("--verify", os.path.join(work, "userkey.safetensors"))
    check(r.returncode == 1 and "mst.crc32" in r.stderr,
          f"--verify of a malformed mst.crc32: exit {r.returncode}: {r.stderr}")
    flip_tests(os.path.join(work, "redist.safetensors"), "file", rnd)
    shard = os.path.join(setdir, max(shards, key=lambda n: len(parse(os.path.join(setdir, n))[1])))
    flip_tests(shard, "shard", rnd)
    # a flipped shard inside its set: --verify DIR names it too
    meta, ts, data = parse(shard)
    name, b, e = next(t for t in ts if t[2] > t[1])
    saved = open(shard, "rb").read()
    with open(shard, "r+b") as f:
        f.seek(len(saved) - len(data) + b)
        f.write(bytes([saved[len(saved) - len(data) + b] ^ 0x80]))
    r = inspect("--verify", setdir)
    check(r.returncode == 1 and f'tensor "{name}": checksum mismatch' in r.stderr,
          f"--verify of a set with a flipped bit: exit {r.returncode}: {r.stderr}")
    with open(shard, "wb") as f:
        f.write(saved)

    # mst-merge --checksums
    merge = os.environ["MST_MERGE"]

    def mst_merge(*args):
        return run(MPIEXEC, "-n", str(np_), merge, "--quiet", "--no-fsync", *args)
    out = os.path.join(work, "merged.safetensors")
    r = mst_merge("--checksums", "-o", out, os.path.join(work, "off.safetensors"))
    check(r.returncode == 0, f"merge --checksums: {r.stderr[-500:]}")
    with open(out, "rb") as f:
        check(f.read() == want, "merge --checksums of a file without: not the oracle's file")
    r = mst_merge("--checksums", "-o", out, os.path.join(work, "redist.safetensors"))
    check(r.returncode == 0, f"merge --checksums of a file with them: {r.stderr[-500:]}")
    with open(out, "rb") as f:
        check(f.read() == want, "merge --checksums of a file with them: not the same file")
    r = mst_merge("-o", out, os.path.join(work, "redist.safetensors"))
    with open(out, "rb") as f:
        check(r.returncode == 0 and f.read() == oracle(spec, False),
              "merge without --checksums drops the input's entry")
    bad = os.path.join(work, "corrupt.safetensors")
    meta, ts, data = parse(os.path.join(work, "redist.safetensors"))
    name, b, e = max(ts, key=lambda t: t[2] - t[1])
    blob = bytearray(open(os.path.join(work, "redist.safetensors"), "rb").read())
    blob[len(blob) - len(data) + (b + e) // 2] ^= 0x10
    with open(bad, "wb") as f:
        f.write(blob)
    before = open(out, "rb").read()
    r = mst_merge("--checksums", "-o", out, bad)
    check(r.returncode == 1 and f'tensor "{name}"' in r.stderr and "checksum mismatch" in r.stderr,
          f"merge --checksums of a corrupt input: exit {r.returncode}: {r.stderr[-500:]}")
    check(open(out, "rb").read() == before, "a refused merge leaves the output untouched")

    # Python: save(checksums=True) at NP ranks, load(verify=True)
    if os.environ.get("MST_CHECKSUMS_NO_BINDING"):
        print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed checks at {np_} "
              "ranks (binding not tested here)")
        return 1 if failures else 0
    py = os.path.join(work, "py.safetensors")
    r = run(MPIEXEC, "-n", str(np_), sys.executable, os.path.abspath(__file__), "pysave", py)
    check(r.returncode == 0 and "pysave ok" in r.stdout,
          f"python save: exit {r.returncode}: {r.stdout} {r.stderr[-1500:]}")
    if os.path.exists(py):
        crcs_ok(py)
        import mst
        meta, ts, data = parse(py)
        blob = bytearray(open(py, "rb").read())
        name, b, e = next(t for t in ts if t[0] == "rep")
        blob[len(blob) - len(data) + b + 5] ^= 1
        with open(py + ".bad", "wb") as f:
            f.write(blob)
        mst.load(py + ".bad", names=["rows"], verify=True)  # other tensors still load
        try:
            mst.load(py + ".bad", verify=True)
            check(False, "load(verify=True) of a corrupt tensor raised nothing")
        except mst.Error as e:
            check(e.code == mst.ERR_CHECKSUM and '"rep"' in str(e), f"load verify: {e}")
        try:
            mst.load(os.path.join(work, "off.safetensors"), verify=True)
            check(False, "load(verify=True) without checksums raised nothing")
        except mst.Error as e:
            check(e.code == mst.ERR_NOT_FOUND and "no checksums" in str(e), f"no checksums: {e}")
        check(len(mst.load(py + ".bad", verify=False)) == len(ts), "verify=False loads anyway")

    print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failed checks at {np_} ranks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Tests of mst-merge at NP ranks, against the canonical bytes of the oracle
(tests/oracle/reference_writer.py) for the union of the inputs' tensors.

  t_merge.py NP merges   many files with every dtype, a huge tensor shared by
                         all ranks, index files, filters, metadata, progress
  t_merge.py NP errors   every error case: exit status, message, nothing at
                         the output, an old output and the inputs untouched
  t_merge.py NP big FILE a file with a tensor over 2 GiB merged into a copy of
                         itself (byte-identical)

Environment (set by CTest): MST_MERGE, MPIEXEC, WORK, and OMPI_MCA_io.
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
import reference_writer as ref  # noqa: E402

MERGE = os.environ["MST_MERGE"]
MPIEXEC = os.environ.get("MPIEXEC", "mpiexec")
# a command put in front of mst-merge inside mpirun (valgrind in the memory checks)
LAUNCHER = os.environ.get("MST_TOOL_LAUNCHER", "").split()
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def merge(np, *args, timeout=600):
    cmd = [MPIEXEC, "-n", str(np)] + LAUNCHER + [MERGE] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def spec(tensors, metadata=None):
    return {"metadata": sorted((metadata or {}).items()), "tensors": tensors}


def write_input(path, tensors, metadata=None):
    ref.write(spec(tensors, metadata), path)


def expect_same(got, tensors, metadata, what, work):
    want = os.path.join(work, "want.safetensors")
    ref.write(spec(tensors, metadata), want)
    check(os.path.exists(got) and digest(got) == digest(want),
          "%s: output differs from the canonical bytes" % what)
    os.remove(want)


def random_tensors(rng, prefix, count):
    out = []
    for i in range(count):
        dtype = rng.choice(ref.DTYPES)
        bits = ref.BITS[dtype]
        ndim = rng.choice([0, 1, 2, 2, 3])
        shape = [rng.randint(0, 40) for _ in range(ndim)]
        if bits < 8:
            shape = shape or [0]
            shape[-1] = 4 * rng.randint(0, 10)  # whole bytes for F4 and F6
        out.append({"name": "%s.%d.%s" % (prefix, i, dtype.lower()), "dtype": dtype,
                    "shape": shape})
    return out


def case_merges(np, work):
    rng = random.Random(20261123)
    inputs, union = [], []
    # twelve files of every dtype and shape, "format": "pt" in each
    for f in range(12):
        ts = random_tensors(rng, "model.layers.%d" % f, rng.randint(0, 14))
        p = os.path.join(work, "in%02d.safetensors" % f)
        write_input(p, ts, {"format": "pt"})
        inputs.append(p)
        union += ts
    # one file that is mostly one tensor of 4 MiB: every rank takes rows of it
    huge = [{"name": "embed_tokens.weight", "dtype": "F32", "shape": [1021, 1027]},
            {"name": "norm.weight", "dtype": "BF16", "shape": [1027]}]
    p = os.path.join(work, "huge.safetensors")
    write_input(p, huge, {"format": "pt", "note": "one big input"})
    inputs.append(p)
    union += huge
    before = {p: digest(p) for p in inputs}
    out = os.path.join(work, "merged.safetensors")
    meta = {"format": "pt", "note": "one big input"}

    r = merge(np, "-o", out, "--staging", "4096", "--quiet", *inputs)
    check(r.returncode == 0, "merge: exit %d: %s" % (r.returncode, r.stderr))
    check(r.stderr == "", "merge --quiet printed: %r" % r.stderr)
    expect_same(out, union, meta, "merge of 13 files", work)
    check(all(digest(p) == before[p] for p in inputs), "an input changed")

    # the same from a Hugging Face index: shards plus one plain file
    shard_dir = os.path.join(work, "set")
    os.makedirs(shard_dir, exist_ok=True)
    weight_map = {}
    pieces = [union[0:20], union[20:45], union[45:]]
    for k, part in enumerate(pieces[:2]):
        name = "model-%05d-of-%05d.safetensors" % (k + 1, 2)
        write_input(os.path.join(shard_dir, name), part, {"format": "pt"})
        for t in part:
            weight_map[t["name"]] = name
    index = os.path.join(shard_dir, "model.safetensors.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2,
                  sort_keys=True)
    rest = os.path.join(work, "rest.safetensors")
    write_input(rest, pieces[2], meta)
    os.remove(out)
    r = merge(np, "-o", out, "--quiet", index, rest)
    check(r.returncode == 0, "merge of an index: exit %d: %s" % (r.returncode, r.stderr))
    expect_same(out, union, meta, "merge of an index and a file", work)

    # filters: tensors of layers 1x, without the f32 ones, and no "huge" input
    kept = [t for t in union
            if t["name"].startswith("model.layers.1") and not t["name"].endswith(".f32")]
    r = merge(np, "-o", out, "--quiet", "--include", "model.layers.1*",
              "--exclude", "*.f32", *inputs)
    check(r.returncode == 0, "filtered merge: exit %d: %s" % (r.returncode, r.stderr))
    check(len(kept) > 3, "the filter case keeps some tensors")
    expect_same(out, kept, meta, "filtered merge", work)

    # --metadata resolves a conflict and adds keys
    a = os.path.join(work, "meta_a.safetensors")
    b = os.path.join(work, "meta_b.safetensors")
    write_input(a, union[:3], {"format": "pt", "step": "100"})
    write_input(b, union[3:6], {"format": "pt", "step": "200"})
    r = merge(np, "-o", out, "--quiet", "--metadata", "step=300", "--metadata", "by=mst", a, b)
    check(r.returncode == 0, "metadata merge: exit %d: %s" % (r.returncode, r.stderr))
    expect_same(out, union[:6], {"format": "pt", "step": "300", "by": "mst"},
                "merge with --metadata", work)

    # progress: forced on, on rank 0 only
    r = merge(np, "-o", out, "--progress", "--metadata", "step=1", a, b)
    check(r.returncode == 0, "merge --progress: exit %d" % r.returncode)
    check(r.stderr.count("mst-merge: ") >= 1 and "(100%)" in r.stderr and "/s" in r.stderr,
          "progress line missing: %r" % r.stderr)
    check(r.stderr.count("\n") == 1, "progress ends with one newline: %r" % r.stderr)


def case_errors(np, work):
    ts = [{"name": "w", "dtype": "F32", "shape": [4, 4]},
          {"name": "b", "dtype": "F16", "shape": [4]}]
    a = os.path.join(work, "a.safetensors")
    b = os.path.join(work, "b.safetensors")
    c = os.path.join(work, "c.safetensors")
    write_input(a, ts, {"format": "pt", "step": "1"})
    write_input(b, [{"name": "w", "dtype": "F32", "shape": [2]}], {"format": "pt"})
    write_input(c, [{"name": "x", "dtype": "I8", "shape": [3]}], {"step": "2"})
    bad = os.path.join(work, "truncated.safetensors")
    with open(a, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[:-3])
    out = os.path.join(work, "out.safetensors")
    old = b"the previous output, which must survive"
    before = {p: digest(p) for p in (a, b, c, bad)}

    def failing(what, args, needles, status=1):
        with open(out, "wb") as f:
            f.write(old)
        r = merge(np, *args)
        check(r.returncode == status, "%s: exit %d, expected %d: %s" %
              (what, r.returncode, status, r.stderr))
        for n in needles:
            check(n in r.stderr, "%s: message %r lacks %r" % (what, r.stderr, n))
        # printed once, by rank 0
        check(r.stderr.count("mst-merge:") == 1, "%s: %r" % (what, r.stderr))
        with open(out, "rb") as f:
            check(f.read() == old, "%s: the previous output changed" % what)
        leftovers = [n for n in os.listdir(work) if ".tmp-mst." in n]
        check(not leftovers, "%s: temporaries left: %s" % (what, leftovers))

    failing("duplicate", ["-o", out, a, b], ['tensor "w" is in both', a, b])
    failing("metadata conflict", ["-o", out, a, c],
            ['metadata key "step" is "1" in ' + a, '"2" in ' + c, "--metadata step=VALUE"])
    failing("invalid input", ["-o", out, bad], [bad + ": "])
    failing("missing input", ["-o", out, os.path.join(work, "nope.safetensors")],
            ["nope.safetensors", "No such file"])
    failing("output is an input", ["-o", a, a, c], ["the output " + a + " is also an input"])
    failing("output via another name", ["-o", os.path.join(work, ".", "c.safetensors"), a, c],
            ["is also an input"])
    failing("missing output directory",
            ["-o", os.path.join(work, "no", "such", "dir", "m.safetensors"), a],
            ["does not exist"])
    index = os.path.join(work, "model.safetensors.index.json")
    with open(index, "w") as f:
        json.dump({"weight_map": {"w": "a.safetensors", "ghost": "a.safetensors"}}, f)
    failing("index names a missing tensor", ["-o", out, index],
            ['tensor "ghost" to ' + a + ", which does not hold it"])
    with open(index, "w") as f:
        json.dump({"weight_map": {"w": "a.safetensors"}}, f)
    failing("shard tensor not in the index", ["-o", out, index],
            ['tensor "b" of shard ' + a + " is not in its index"])
    with open(index, "w") as f:
        f.write("{not json")
    failing("index not JSON", ["-o", out, index], [index + " is not valid JSON"])
    failing("usage: no input", ["-o", out], ["no input"], status=2)
    failing("usage: bad option", ["-o", out, "--bogus", a], ["bad option --bogus"], status=2)
    check(all(digest(p) == before[p] for p in before), "an input changed")


def case_big(np, work, big):
    out = os.path.join(work, "big.merged.safetensors")
    r = merge(np, "-o", out, "--no-fsync", "--quiet", big, timeout=1200)
    check(r.returncode == 0, "big merge: exit %d: %s" % (r.returncode, r.stderr))
    check(os.path.exists(out) and digest(out) == digest(big),
          "big merge differs from its input")
    if os.path.exists(out):
        os.remove(out)


def main():
    np, what = int(sys.argv[1]), sys.argv[2]
    work = os.environ["WORK"]  # this test's own directory
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    if what == "merges":
        case_merges(np, work)
    elif what == "errors":
        case_errors(np, work)
    elif what == "big":
        case_big(np, work, sys.argv[3])
    else:
        print("unknown case", what, file=sys.stderr)
        return 2
    if failures:
        print("%d failures" % len(failures), file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("t_merge %s at %d ranks: ok" % (what, np))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Tests of the command-line tools: mst-inspect (table, --json, --check, exit
codes), mst-bench (every method, verified; files compared byte for byte), every
tool's --version and the messages a user reads (save_example's, mst-merge's
summary line and --recover errors). Tool paths come from the environment
(set by CTest): MST_INSPECT, MST_BENCH, MST_EXAMPLE, MPIEXEC, WORK; mst-merge
and mst-clean are next to mst-inspect unless MST_MERGE / MST_CLEAN say otherwise."""
import json
import os
import re
import struct
import subprocess
import sys

INSPECT = os.environ["MST_INSPECT"]
BENCH = os.environ["MST_BENCH"]
EXAMPLE = os.environ["MST_EXAMPLE"]
MERGE = os.environ.get("MST_MERGE") or os.path.join(os.path.dirname(INSPECT), "mst-merge")
CLEAN = os.environ.get("MST_CLEAN") or os.path.join(os.path.dirname(INSPECT), "mst-clean")
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MPIEXEC = os.environ.get("MPIEXEC", "mpiexec")
# the launcher's own options, per MPI (Open MPI: --oversubscribe; MPICH: none)
FLAGS = os.environ.get("MST_MPIEXEC_FLAGS", "--oversubscribe").split()
WORK = os.environ["WORK"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300)


def mpirun(np, *args):
    return run(MPIEXEC, "-n", str(np), *FLAGS, *args)


def project_version():
    with open(os.path.join(SRC, "CMakeLists.txt")) as f:
        return re.search(r"project\(mst\s+VERSION\s+([0-9.]+)", f.read()).group(1)


def check_messages(model):
    """--version, and the messages of the fixes for a new user's trips (issue 14)."""
    version = project_version()
    for tool, path in (("mst-inspect", INSPECT), ("mst-merge", MERGE), ("mst-clean", CLEAN),
                       ("mst-bench", BENCH)):
        r = run(path, "--version")
        check(r.returncode == 0 and r.stdout == "%s %s\n" % (tool, version) and r.stderr == "",
              "%s --version: %d %r %r" % (tool, r.returncode, r.stdout, r.stderr))
    # a missing file cannot be opened; it is not an "invalid" file (exit 1 for both)
    missing = os.path.join(WORK, "does-not-exist")
    r = run(INSPECT, missing)
    check(r.returncode == 1 and
          r.stderr == "mst-inspect: %s: cannot open: No such file or directory\n" % missing,
          "missing file: %d %r" % (r.returncode, r.stderr))
    r = run(INSPECT, WORK)
    check(r.returncode == 1 and r.stderr.startswith("mst-inspect: %s: cannot read (I/O error): "
                                                    % WORK) and "is a directory" in r.stderr,
          "directory: %d %r" % (r.returncode, r.stderr))
    # mst-merge: one summary line on stdout on success, none with --quiet
    merged = os.path.join(WORK, "merged.safetensors")
    r = mpirun(2, MERGE, "-o", merged, "--no-fsync", model)
    want = r"mst-merge: wrote %s: 6 tensors, 432 bytes of data from 1 input file in [0-9]+\.[0-9]{2} s\n"
    check(r.returncode == 0 and re.fullmatch(want % re.escape(merged), r.stdout) and r.stderr == "",
          "merge summary: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    check(open(merged, "rb").read() == open(model, "rb").read(), "merge of one file is a copy")
    r = mpirun(2, MERGE, "-o", merged, "--no-fsync", "--quiet", model)
    check(r.returncode == 0 and r.stdout == "" and r.stderr == "",
          "merge --quiet: %d %r %r" % (r.returncode, r.stdout, r.stderr))
    # mst-merge --recover: its messages carry the tool's name, exit 1 on failure
    r = run(MERGE, "--recover", "/nonexistent-mst-dir")
    check(r.returncode == 1 and r.stdout == "" and r.stderr ==
          "mst-merge: cannot list /nonexistent-mst-dir: No such file or directory\n",
          "merge --recover missing dir: %d %r" % (r.returncode, r.stderr))
    r = run(MERGE, "--recover", WORK)
    check(r.returncode == 0 and r.stdout == "mst-merge: %s: nothing to recover\n" % WORK,
          "merge --recover, nothing to do: %d %r" % (r.returncode, r.stdout))
    # save_example: --help prints usage (no file named "--help"), other '-' names are refused
    for args, status, stream in ((["--help"], 0, "stdout"), (["-h"], 0, "stdout"),
                                 (["-o"], 2, "stderr"), ([], 2, "stderr")):
        r = subprocess.run([EXAMPLE] + args, capture_output=True, text=True, timeout=300, cwd=WORK)
        check(r.returncode == status and getattr(r, stream).startswith("usage: mpirun -np N "),
              "save_example %r: %d %r %r" % (args, r.returncode, r.stdout, r.stderr))
        check(not args or not os.path.exists(os.path.join(WORK, args[0])),
              "save_example %r created a file" % args)
    one = os.path.join(WORK, "one.safetensors")
    r = mpirun(1, EXAMPLE, one)
    check(r.returncode == 0 and r.stdout == "saved 1 layer from 1 rank to %s\n" % one,
          "save_example at 1 rank: %r" % r.stdout)


def main():
    os.makedirs(WORK, exist_ok=True)
    model = os.path.join(WORK, "example.safetensors")
    if os.path.exists(model):
        os.remove(model)

    # the README's example program, from 3 ranks
    r = mpirun(3, EXAMPLE, model)
    check(r.returncode == 0, "save_example at 3 ranks: %s %s" % (r.stdout, r.stderr))
    check("saved 3 layers from 3 ranks" in r.stdout, "save_example output: " + r.stdout)

    # table
    r = run(INSPECT, model)
    check(r.returncode == 0, "inspect exit %d: %s" % (r.returncode, r.stderr))
    lines = r.stdout.splitlines()
    check(lines[0] == 'metadata "format" = "pt"', "metadata line: %r" % lines[:1])
    check(lines[2].split()[:3] == ["F32", "128", "[0,"] and '"layers.0.weight" [4, 8]' in lines[2],
          "first row: %r" % lines[2:3])
    check(any('"layers.2.bias" [8]' in l and l.startswith("BF16") for l in lines),
          "bias row missing")
    check(lines[-1].endswith("(8-byte aligned)") and "6 tensors, 432 bytes of data" in lines[-1]
          and "F32 x3, BF16 x3" in lines[-1], "summary: %r" % lines[-1])

    # --json: every field, numbers as integers
    r = run(INSPECT, "--json", model)
    check(r.returncode == 0, "inspect --json exit %d" % r.returncode)
    doc = json.loads(r.stdout)
    check(doc["valid"] is True and doc["tensor_count"] == 6 and doc["data_size"] == 432,
          "json summary: %r" % {k: doc.get(k) for k in ("valid", "tensor_count", "data_size")})
    check(doc["metadata"] == {"format": "pt"}, "json metadata")
    with open(model, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
    check(doc["header_size"] == n and doc["data_start"] == 8 + n, "json header size")
    first = doc["tensors"][0]
    check(first == {"name": "layers.0.weight", "dtype": "F32", "shape": [4, 8], "elements": 32,
                    "data_offsets": [0, 128], "bytes": 128}, "json first tensor: %r" % first)
    check([t["name"] for t in doc["tensors"]][3:] ==
          ["layers.0.bias", "layers.1.bias", "layers.2.bias"], "json order")

    # --check: silent success
    r = run(INSPECT, "--check", model)
    check(r.returncode == 0 and r.stdout == "" and r.stderr == "", "inspect --check on valid")

    # invalid files: exit 1 and the reason
    data = open(model, "rb").read()
    truncated = os.path.join(WORK, "truncated.safetensors")
    open(truncated, "wb").write(data[:-1])
    r = run(INSPECT, truncated)
    check(r.returncode == 1 and "invalid" in r.stderr and "data buffer" in r.stderr,
          "truncated: %d %s" % (r.returncode, r.stderr))
    r = run(INSPECT, "--json", truncated)
    check(r.returncode == 1 and json.loads(r.stdout)["valid"] is False, "truncated --json")
    tiny = os.path.join(WORK, "tiny.safetensors")
    open(tiny, "wb").write(b"\x01\x00")
    r = run(INSPECT, "--check", tiny)
    check(r.returncode == 1 and "header too small" in r.stderr, "tiny: %s" % r.stderr)
    check_messages(model)

    # usage errors: exit 2
    for args in ([], ["--bogus", model], [model, model], ["--json", "--check", model]):
        r = run(INSPECT, *args)
        check(r.returncode == 2 and "usage" in r.stderr, "usage %r: %d" % (args, r.returncode))
    r = run(INSPECT, "--help")
    check(r.returncode == 0 and "usage" in r.stdout, "--help")

    # mst-bench: a verified save at 2 ranks, and its JSON line
    out = os.path.join(WORK, "bench.safetensors")
    r = mpirun(2, BENCH, "-o", out, "--size", "3MiB", "--tensors", "7", "--verify",
               "--no-fsync")
    check(r.returncode == 0, "bench exit %d: %s" % (r.returncode, r.stderr))
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    check(len(rows) == 1 and rows[0]["method"] == "mst" and rows[0]["ranks"] == 2 and
          (3 << 20) - 7 * 8 < rows[0]["bytes"] <= 3 << 20 and rows[0]["tensors"] == 7 and
          rows[0]["fsync"] is False,
          "bench row: %r" % rows)
    check("verify mst: every byte of every tensor matches" in r.stdout, "bench verify line")
    r = run(INSPECT, "--json", out)
    doc = json.loads(r.stdout)
    check(doc["tensor_count"] == 7 and rows and doc["data_size"] == rows[0]["bytes"],
          "bench file inspected")
    mst_bytes = open(out, "rb").read()

    # every method once, interleaved, verified; fields of each line; the single
    # files of gather and per-rank+consolidate are byte-identical to mst's
    methods = ["mst", "gather", "per-rank", "raw", "per-rank+consolidate"]
    for fs in ([], ["--no-fsync"]):
        r = mpirun(3, BENCH, "-o", out, "--size", "3MiB", "--tensors", "7", "--verify",
                   "--method", "all", "--remove", "--warmup", "0", *fs)
        check(r.returncode == 0, "bench all %r exit %d: %s" % (fs, r.returncode, r.stderr))
        rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        check([x["method"] for x in rows] == methods, "bench all methods: %r" % rows)
        for x in rows:
            ph = x.get("phases", {})
            check(x["ranks"] == 3 and x["tensors"] == 7 and x["fsync"] is (not fs) and
                  x["bytes"] == len(mst_bytes) - 8 - struct.unpack("<Q", mst_bytes[:8])[0] and
                  x["seconds"] > 0 and x["gib_per_s"] > 0 and
                  all(ph.get(k, -1) >= 0 for k in ("plan", "write", "sync", "commit")) and
                  len(x["peak_mib"]) == 3 and len(x["rss_before_mib"]) == 3 and
                  len(x["extra_mib"]) == 3 and all(v > 0 for v in x["peak_mib"]),
                  "bench all row: %r" % x)
            check((x["method"] == "per-rank+consolidate") == ("consolidate" in ph),
                  "consolidate phase: %r" % x)
        for m in methods:
            check("verify %s: every byte of every tensor matches" % m in r.stdout,
                  "bench verify %s %r" % (m, fs))
        check(not os.path.exists(out) and not os.path.exists(out + ".rank0"), "--remove")
    for m in ("gather", "per-rank+consolidate"):
        r = mpirun(3, BENCH, "-o", out, "--size", "3MiB", "--tensors", "7", "--method", m,
                   "--no-fsync")
        check(r.returncode == 0 and open(out, "rb").read() == mst_bytes,
              "bench %s file differs from mst's: %s" % (m, r.stderr))
    # raw: the ranks' bytes back to back, no header
    r = mpirun(3, BENCH, "-o", out, "--size", "3MiB", "--tensors", "7", "--method", "raw",
               "--no-fsync")
    check(r.returncode == 0 and os.path.getsize(out) == rows[0]["bytes"], "bench raw size")
    # per-rank: one safetensors file per rank holding that rank's tensors
    r = mpirun(3, BENCH, "-o", out, "--size", "3MiB", "--tensors", "7", "--method", "per-rank",
               "--no-fsync")
    counts = []
    for k in range(3):
        d = json.loads(run(INSPECT, "--json", "%s.rank%d" % (out, k)).stdout)
        counts.append(d["tensor_count"])
        os.remove("%s.rank%d" % (out, k))
    check(r.returncode == 0 and counts == [3, 2, 2], "bench per-rank files: %r" % counts)
    # row and column splits through add_slice: the same file as whole tensors
    r = mpirun(1, BENCH, "-o", out, "--size", "1MiB", "--tensors", "5", "--dtype", "BF16",
               "--no-fsync")
    whole = open(out, "rb").read()
    for layout in ("rows", "cols"):
        r = mpirun(3, BENCH, "-o", out, "--size", "1MiB", "--tensors", "5", "--dtype", "BF16",
                   "--layout", layout, "--verify", "--no-fsync")
        rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        check(r.returncode == 0 and rows and rows[0]["layout"] == layout and
              open(out, "rb").read() == whole, "bench --layout %s: %s" % (layout, r.stderr))
    # the redistribute prototype was removed (the library redistributes strided boxes)
    r = mpirun(2, BENCH, "-o", out, "--layout", "cols", "--method", "redistribute")
    check(r.returncode == 2 and "bad or incomplete option --method" in r.stderr,
          "bench redistribute removed: %d %s" % (r.returncode, r.stderr))
    r = mpirun(2, BENCH, "-o", out, "--layout", "cols", "--method", "gather")
    check(r.returncode == 2 and "--layout cols is for the methods" in r.stderr,
          "bench layout with gather")
    # the transformer-like mix
    r = mpirun(2, BENCH, "-o", out, "--size", "2MiB", "--tensors", "40", "--mix", "transformer",
               "--verify", "--no-fsync", "--remove")
    rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    check(r.returncode == 0 and rows and rows[0]["mix"] == "transformer" and
          rows[0]["tensors"] == 40, "bench transformer mix: %s" % r.stderr)
    # the load methods at 2 ranks (the parallel loader and its baselines), verified
    loads = ["load", "load-local", "load-scatter", "load-raw", "load-raw-file"]
    for layout, extra in (("cols", []), ("rows", ["--no-save"]), ("whole", ["--no-save"])):
        r = mpirun(2, BENCH, "-o", out, "--size", "2MiB", "--tensors", "9", "--dtype", "BF16",
                   "--layout", layout, "--method", ",".join(loads), "--verify", "--no-fsync",
                   "--warmup", "0", "--keep-cache", *extra)
        check(r.returncode == 0, "bench load %s exit %d: %s" % (layout, r.returncode, r.stderr))
        rows = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
        check([x["method"] for x in rows] == loads, "bench load methods: %r" % rows)
        for x in rows:
            check(x["layout"] == layout and x["ranks"] == 2 and x["seconds"] > 0 and
                  x["bytes_requested"] == x["bytes"] and x["bytes_read"] == x["bytes"] and
                  x["cache_dropped"] is False and len(x["extra_mib"]) == 2,
                  "bench load row: %r" % x)
        for m in loads:
            check("verify %s: every byte of every rank's boxes matches" % m in r.stdout,
                  "bench verify %s %s" % (m, layout))
    r = mpirun(2, BENCH, "-o", out, "--method", "load,mst")
    check(r.returncode == 2 and "do not mix" in r.stderr, "bench load with a save method")
    os.remove(out)
    r = mpirun(2, BENCH, "--size", "12XB", "-o", out)
    check(r.returncode != 0 and "bad or incomplete option --size" in r.stderr, "bench bad size")
    r = mpirun(1, BENCH)
    check(r.returncode != 0 and "-o FILE is required" in r.stderr, "bench without -o")

    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("tools: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

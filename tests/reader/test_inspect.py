#!/usr/bin/env python3
"""mst-inspect over the reader corpus and on large inputs.

    test_inspect.py MST_INSPECT CORPUS_DIR WORK_DIR

- every corpus file: --check exits 0 (valid, silent) or 1 with the expected
  message on stderr; --json parses and says valid true/false with the message;
  the table of a valid file ends with the summary line
- a FIFO and a device are refused at once (no hang)
- a 100 GB sparse file is checked without reading its data (timed)
- a header of exactly 100,000,000 bytes (1.6 million tensors) is checked and
  listed (timed, peak memory reported); one byte more is refused
"""
import json
import os
import resource
import struct
import subprocess
import sys
import time

INSPECT, CORPUS, WORK = sys.argv[1:4]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def run(*args, timeout=120, stdout=subprocess.PIPE):
    return subprocess.run([INSPECT] + list(args), stdout=stdout, stderr=subprocess.PIPE,
                          timeout=timeout)


def timed(*args, **kw):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = run(*args, **kw)
    dt = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r, dt, after.ru_maxrss, after.ru_inblock - before.ru_inblock


def corpus():
    n = 0
    with open(os.path.join(CORPUS, "manifest.tsv"), encoding="utf-8") as m:
        rows = [line.rstrip("\n").split("\t") for line in m]
    for name, expect, message, _reference in rows:
        path = os.path.join(CORPUS, name)
        r = run("--check", path)
        err = r.stderr.decode("utf-8", "replace")
        if expect == "ok":
            check(r.returncode == 0 and r.stdout == b"" and err == "",
                  "%s: --check exit %d %s" % (name, r.returncode, err))
            t = run(path)
            lines = t.stdout.decode("utf-8").splitlines()
            last = lines[-1] if lines else ""
            check(t.returncode == 0 and " tensors, " in last and "data starts at byte" in last,
                  "%s: table summary %r" % (name, last))
        else:
            check(r.returncode == 1 and ("invalid (" in err) and message in err,
                  "%s: --check exit %d, stderr %r lacks %r" % (name, r.returncode, err, message))
        j = run("--json", path)
        try:
            doc = json.loads(j.stdout.decode("utf-8"))
        except ValueError as e:
            check(False, "%s: --json output is not JSON: %s" % (name, e))
            continue
        check(doc["valid"] is (expect == "ok") and j.returncode == (0 if expect == "ok" else 1),
              "%s: --json valid %r exit %d" % (name, doc["valid"], j.returncode))
        if expect != "ok":
            check(message in doc["error"], "%s: --json error %r" % (name, doc["error"]))
        else:
            check(doc["tensor_count"] == len(doc["tensors"]), "%s: tensor_count" % name)
        n += 1
    print("corpus: %d files through mst-inspect" % n)


def not_regular():
    fifo = os.path.join(WORK, "fifo")
    if os.path.exists(fifo):
        os.remove(fifo)
    os.mkfifo(fifo)
    r = run("--check", fifo, timeout=20)
    check(r.returncode == 1 and b"not a regular file" in r.stderr, "fifo: %r" % r.stderr)
    r = run("--check", "/dev/zero", timeout=20)
    check(r.returncode == 1 and b"not a regular file" in r.stderr, "/dev/zero: %r" % r.stderr)
    os.remove(fifo)


def sparse_100gb():
    size = 100 * 10**9
    header = ('{"__metadata__":{"format":"pt"},"big":{"dtype":"U8","shape":[%d],'
              '"data_offsets":[0,%d]}}' % (size, size)).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    path = os.path.join(WORK, "sparse-100GB.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + size)
    r, dt, _, blocks = timed("--check", path)
    check(r.returncode == 0, "100 GB sparse: exit %d %r" % (r.returncode, r.stderr))
    check(dt < 5, "100 GB sparse took %.2f s" % dt)
    r = run(path)
    check(r.returncode == 0 and b"1 tensors, 100000000000 bytes of data" in r.stdout,
          "100 GB sparse table: %r" % r.stdout)
    print("100 GB sparse file: --check in %.3f s, %d blocks read" % (dt, blocks))
    os.remove(path)


def big_header():
    """Exactly 100,000,000 bytes of header: 1-byte U8 tensors back to back."""
    limit = 100_000_000
    parts, at, used = [], 0, 1
    while True:
        e = '"t%07d":{"dtype":"U8","shape":[1],"data_offsets":[%d,%d]}' % (len(parts), at, at + 1)
        if used + len(e) + 2 > limit - 64:
            break
        parts.append(e)
        used += len(e) + 1
        at += 1
    text = ("{" + ",".join(parts) + "}").encode()
    text += b" " * (limit - len(text))
    assert len(text) == limit
    path = os.path.join(WORK, "header-100MB.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", limit) + text)
        f.truncate(8 + limit + at)
    r, dt, rss, _ = timed("--check", path, timeout=300)
    check(r.returncode == 0, "100 MB header: exit %d %r" % (r.returncode, r.stderr[:300]))
    print("100,000,000-byte header, %d tensors: --check in %.2f s, peak RSS %d MiB"
          % (len(parts), dt, rss // 1024))
    r, dt, rss, _ = timed("--json", path, timeout=300, stdout=subprocess.DEVNULL)
    check(r.returncode == 0, "100 MB header --json: exit %d" % r.returncode)
    print("  --json to /dev/null in %.2f s" % dt)
    # one byte more is refused before anything is read
    with open(path, "r+b") as f:
        f.write(struct.pack("<Q", limit + 1))
        f.seek(0, 2)
        f.write(b"\0")
    r = run("--check", path)
    check(r.returncode == 1 and b"header too large" in r.stderr, "100,000,001: %r" % r.stderr)
    os.remove(path)


def main():
    os.makedirs(WORK, exist_ok=True)
    corpus()
    not_regular()
    sparse_100gb()
    if os.environ.get("MST_SKIP_BIG_HEADER") != "1":
        big_header()
    if failures:
        print("%d failure(s)" % len(failures), file=sys.stderr)
        return 1
    print("inspect: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

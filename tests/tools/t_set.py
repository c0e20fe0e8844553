#!/usr/bin/env python3
"""Multi-file sets through mst-merge, at NP ranks:

  t_set.py NP roundtrip   one file -> sets of 1, 2 and many shards (against
                          tests/oracle/reference_set.py) -> one file, byte-identical;
                          a set replacing a previous set of more shards
  t_set.py NP failures    a set save that fails (full file system, a journal
                          left behind) keeps the previous set byte-identical;
                          the journal states of an interrupted switch, each
                          settled by `mst-merge --recover` into exactly the old
                          or exactly the new set
Environment (set by CTest): MST_MERGE, MPIEXEC, WORK (the failures case runs
inside tests/common/with_dirs.sh, which provides WORK/full, a 1 MiB tmpfs).
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "oracle"))
import reference_set as rset  # noqa: E402
import reference_writer as ref  # noqa: E402
# mst-merge's runner and the failure list are t_merge.py's (same environment)
from t_merge import check, failures, merge  # noqa: E402

INSPECT = os.environ["MST_INSPECT"]


def snapshot(d):
    """{name: sha256} of every file in d (hidden ones included, but the lock
    file that set switches keep)."""
    out = {}
    for n in sorted(os.listdir(d)):
        if n == ".mst-set.lock":
            continue
        with open(os.path.join(d, n), "rb") as f:
            out[n] = hashlib.sha256(f.read()).hexdigest()
    return out


def expected_set(spec, limit, work):
    d = os.path.join(work, "expected.%d" % limit)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    rset.write_set(spec, limit, d)
    return snapshot(d)


def make_spec(seed, count):
    rng = random.Random(seed)
    tensors = []
    for i in range(count):
        dtype = rng.choice(["F32", "BF16", "F16", "I64", "U8", "F8_E4M3", "BOOL", "F4"])
        shape = [rng.randint(1, 64), rng.randint(1, 33)]
        if dtype == "F4":
            shape[-1] = 2 * shape[-1]
        tensors.append({"name": "model.layers.%d.w%d%s" % (i // 3, i % 3, "\u00e9" * (i % 2)),
                        "dtype": dtype, "shape": shape})
    tensors.append({"name": "lm_head.weight", "dtype": "F32", "shape": [300, 200]})
    return {"metadata": [["format", "pt"], ["step", "7"]], "tensors": tensors}


def case_roundtrip(np, work):
    spec = make_spec(11, 40)
    one = os.path.join(work, "one.safetensors")
    ref.write(spec, one)
    total = sum(ref.nbytes_of(t) for t in spec["tensors"])
    for limit, want_shards in ((10 ** 9, 1), (total - 1, 2), (4000, None)):
        out = os.path.join(work, "set.%d" % limit)
        r = merge(np, "--quiet", "--max-shard-size", str(limit), "-o", out, one)
        check(r.returncode == 0, "set %d: exit %d: %s" % (limit, r.returncode, r.stderr))
        want = expected_set(spec, limit, work)
        got = snapshot(out) if os.path.isdir(out) else {}
        check(got == want, "set %d: files differ from the oracle: %s vs %s" %
              (limit, sorted(got), sorted(want)))
        nshards = len([n for n in want if n.endswith(".safetensors")])
        if want_shards:
            check(nshards == want_shards, "limit %d gives %d shards" % (limit, nshards))
        else:
            check(nshards > 10, "limit %d gives many shards (%d)" % (limit, nshards))
        # and back to one file
        back = os.path.join(work, "back.safetensors")
        src = os.path.join(out, "model.safetensors.index.json" if nshards > 1
                           else "model.safetensors")
        r = merge(np, "--quiet", "-o", back, src)
        check(r.returncode == 0, "back from %d: exit %d: %s" % (limit, r.returncode, r.stderr))
        with open(back, "rb") as a, open(one, "rb") as b:
            check(a.read() == b.read(), "round trip through %d shards differs" % nshards)

    # a set of 2 shards replaces one of many: exactly the new files remain
    many = os.path.join(work, "set.4000")
    r = merge(np, "--quiet", "--max-shard-size", str(total - 1), "-o", many, one)
    check(r.returncode == 0, "replace: exit %d: %s" % (r.returncode, r.stderr))
    check(snapshot(many) == expected_set(spec, total - 1, work),
          "the replaced set is not exactly the new one: %s" % sorted(os.listdir(many)))
    # sizes as the Hub writes them
    r = merge(np, "--quiet", "--max-shard-size", "5GB", "-o", many, one)
    check(r.returncode == 0 and list(snapshot(many)) == ["model.safetensors"],
          "5GB: %s %s" % (r.stderr, os.listdir(many)))
    r = merge(np, "--quiet", "--max-shard-size", "5XB", "-o", many, one)
    check(r.returncode == 2 and "bad option --max-shard-size" in r.stderr,
          "a bad size is a usage error: %r" % r.stderr)
    # the set's own files cannot be the input of a merge into the same directory
    r = merge(np, "--quiet", "--max-shard-size", "4000", "-o", many,
              os.path.join(many, "model.safetensors"))
    check(r.returncode == 1 and "part of the set in the output directory" in r.stderr,
          "merging a set into its own directory: %r" % r.stderr)


def inspect(*args):
    return subprocess.run([INSPECT] + list(args), capture_output=True, text=True, timeout=300)


def case_validate(work):
    """mst-inspect on an index checks the whole set."""
    spec = make_spec(14, 30)
    d = os.path.join(work, "valid")
    os.makedirs(d)
    names = rset.write_set(spec, 3000, d)
    index = os.path.join(d, "model.safetensors.index.json")
    r = inspect(index)
    check(r.returncode == 0 and "%d shards" % (len(names) - 1) in r.stdout and "valid" in r.stdout,
          "a valid set: exit %d: %s %s" % (r.returncode, r.stdout, r.stderr))
    r = inspect("--check", index)
    check(r.returncode == 0 and r.stdout == "", "--check of a valid set: %r" % r.stdout)
    with open(index) as f:
        good = json.load(f)

    def broken(what, edit, needle):
        bad = os.path.join(work, what.replace(" ", "_"))
        shutil.copytree(d, bad)
        edit(bad)
        r = inspect(os.path.join(bad, "model.safetensors.index.json"))
        check(r.returncode == 1 and needle in r.stderr and "invalid set" in r.stderr,
              "%s: exit %d: %s" % (what, r.returncode, r.stderr))

    def set_index(bad, data):
        with open(os.path.join(bad, "model.safetensors.index.json"), "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)

    broken("missing shard", lambda b: os.remove(os.path.join(b, names[1])),
           "shard %s: " % names[1])
    wrong = json.loads(json.dumps(good))
    wrong["metadata"]["total_size"] += 1
    broken("wrong total", lambda b: set_index(b, wrong),
           "metadata.total_size is %d" % wrong["metadata"]["total_size"])
    # a tensor of a shard of several tensors, also written into the next shard
    k = [i for i in range(len(names) - 2)
         if list(good["weight_map"].values()).count(names[i]) >= 2][0]
    first = [t for t in spec["tensors"] if good["weight_map"][t["name"]] == names[k]][0]
    second = [t for t in spec["tensors"] if good["weight_map"][t["name"]] == names[k + 1]]

    def two_shards(b):
        ref.write({"metadata": [["format", "pt"]], "tensors": second + [first]},
                  os.path.join(b, names[k + 1]))
    broken("tensor in two shards", two_shards,
           'tensor "%s" is in both %s and %s' % (first["name"], names[k + 1], names[k]))
    ghost = json.loads(json.dumps(good))
    ghost["weight_map"]["ghost"] = names[0]
    broken("entry not in its shard", lambda b: set_index(b, ghost),
           'tensor "ghost" is not in %s' % names[0])
    lost = json.loads(json.dumps(good))
    del lost["weight_map"][first["name"]]
    broken("tensor missing from the weight map", lambda b: set_index(b, lost),
           'tensor "%s" of %s is missing from the weight_map' % (first["name"], names[k]))


def write_files(d, files):
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def case_failures(np, work):
    spec = make_spec(12, 12)
    one = os.path.join(work, "one.safetensors")
    ref.write(spec, one)
    total = sum(ref.nbytes_of(t) for t in spec["tensors"])

    # a full file system: the previous set survives, nothing else is left
    full = os.path.join(work, "full")
    if os.path.ismount(full):
        small = {"metadata": [], "tensors": spec["tensors"][:3]}
        rset.write_set(small, 100, full)
        before = snapshot(full)
        big = os.path.join(work, "big.safetensors")
        ref.write({"metadata": [], "tensors": [
            {"name": "huge", "dtype": "U8", "shape": [3 << 20]}]}, big)
        r = merge(np, "--quiet", "--max-shard-size", "1000000", "-o", full, big)
        check(r.returncode == 1 and "full" in r.stderr,
              "full disk: exit %d: %s" % (r.returncode, r.stderr))
        check(snapshot(full) == before, "full disk: the previous set changed: %s" %
              sorted(os.listdir(full)))
    else:
        print("no tmpfs at %s (not root): full-disk case not run" % full)

    # a directory (or FIFO) named like a set file: refused before anything
    # changes, no journal left, and the next save works once it is gone
    for kind in ("model-00003-of-00009.safetensors", "model.safetensors",
                 "model.safetensors.index.json", "fifo:model-00001-of-00002.safetensors"):
        d = os.path.join(work, "blocked")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        rset.write_set(make_spec(14, 6), 2000, d)
        name = kind.split(":")[-1]
        if kind.startswith("fifo:"):
            os.mkfifo(os.path.join(d, name))
        else:
            shutil.rmtree(os.path.join(d, name), ignore_errors=True)
            if os.path.exists(os.path.join(d, name)):
                os.remove(os.path.join(d, name))
            os.makedirs(os.path.join(d, name, "inside"))
        before = sorted(os.listdir(d))
        r = merge(np, "--quiet", "--max-shard-size", "4000", "-o", d, one)
        what = "a special file" if kind.startswith("fifo:") else "a directory"
        check(r.returncode == 1 and ("%s is %s, not a regular file" % (name, what)) in r.stderr,
              "%s in the set directory: exit %d: %s" % (kind, r.returncode, r.stderr))
        check(sorted(os.listdir(d)) == before,
              "%s: the directory changed: %s" % (kind, sorted(os.listdir(d))))
        if kind.startswith("fifo:"):
            os.remove(os.path.join(d, name))
        else:
            shutil.rmtree(os.path.join(d, name))
        r = merge(np, "--quiet", "--max-shard-size", "4000", "-o", d, one)
        check(r.returncode == 0, "%s removed, the save: exit %d: %s" % (kind, r.returncode,
                                                                       r.stderr))
        check(not [n for n in os.listdir(d) if n.startswith(".mst-")
                   and n != ".mst-set.lock"],
              "%s: leftovers after the save: %s" % (kind, sorted(os.listdir(d))))
        r = merge(1, "--recover", d)
        check(r.returncode == 0 and "nothing to recover" in r.stdout,
              "%s: --recover after the save: %s %s" % (kind, r.stdout, r.stderr))

    # a finished switch whose old file cannot be removed (a directory moved
    # aside by an older mst): recovery finishes it, and converges
    d = os.path.join(work, "stuck")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    ref.write(make_spec(15, 3), os.path.join(d, "model.safetensors"))
    jid = "00112233445566ff"
    os.makedirs(os.path.join(d, ".mst-old.%s.model-00003-of-00009.safetensors" % jid, "x"))
    with open(os.path.join(d, ".mst-set.%s.journal" % jid), "w") as f:
        f.write("mst-set-journal 1\nnew model.safetensors.tmp-mst.h.1.%s model.safetensors\n"
                "old model-00003-of-00009.safetensors\n" % jid)
    r = merge(1, "--recover", d)
    check(r.returncode == 0 and "finished the save of model.safetensors (old files left" in r.stdout
          and "left .mst-old.%s.model-00003-of-00009.safetensors" % jid in r.stdout,
          "stuck old directory: exit %d: %s %s" % (r.returncode, r.stdout, r.stderr))
    r = merge(1, "--recover", d)
    check(r.returncode == 0 and "nothing to recover" in r.stdout,
          "stuck old directory: a second --recover: %s %s" % (r.stdout, r.stderr))
    r = merge(np, "--quiet", "--max-shard-size", "4000", "-o", d, one)
    check(r.returncode == 0, "stuck old directory: the next save: exit %d: %s" %
          (r.returncode, r.stderr))

    # states of an interrupted switch, settled by --recover
    old_spec = make_spec(13, 9)
    new_spec = spec
    limit = total // 3
    d_old = os.path.join(work, "old")
    d_new = os.path.join(work, "new")
    for d in (d_old, d_new):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    rset.write_set(old_spec, 2000, d_old)
    rset.write_set(new_spec, limit, d_new)
    old_files = {n: open(os.path.join(d_old, n), "rb").read() for n in os.listdir(d_old)}
    new_files = {n: open(os.path.join(d_new, n), "rb").read() for n in os.listdir(d_new)}
    jid = "0123456789abcdef"
    news = [n for n in sorted(new_files) if n != "model.safetensors.index.json"]
    news.append("model.safetensors.index.json")
    tmp = {n: n + ".tmp-mst.host.1.fedcba9876543210" for n in news}
    olds = ["model.safetensors.index.json"] + sorted(
        n for n in old_files if n != "model.safetensors.index.json")
    journal = "mst-set-journal 1\n" + "".join(
        "new %s %s\n" % (tmp[n], n) for n in news) + "".join("old %s\n" % n for n in olds)
    steps = len(olds) + len(news) + 2
    settled = {"old": 0, "new": 0}
    for step in range(steps + 1):
        d = os.path.join(work, "state")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        write_files(d, old_files)
        write_files(d, {tmp[n]: new_files[n] for n in news})
        with open(os.path.join(d, ".mst-set.%s.journal" % jid), "w") as f:
            f.write(journal)
        k = 0
        for n in olds:  # the previous set aside
            if k < step:
                os.rename(os.path.join(d, n), os.path.join(d, ".mst-old.%s.%s" % (jid, n)))
            k += 1
        for n in news:  # the new set in, the index last
            if k < step:
                os.rename(os.path.join(d, tmp[n]), os.path.join(d, n))
            k += 1
        if k < step:  # the old files partly removed
            os.remove(os.path.join(d, ".mst-old.%s.%s" % (jid, olds[0])))
        k += 1
        if step == 0:
            # a save refuses to start over an unsettled journal
            r = merge(np, "--quiet", "--max-shard-size", "4000", "-o", d, one)
            check(r.returncode == 1 and "mst-merge --recover" in r.stderr,
                  "a journal left: exit %d: %s" % (r.returncode, r.stderr))
        r = merge(1, "--recover", d)
        check(r.returncode == 0, "recover at step %d: exit %d: %s %s" %
              (step, r.returncode, r.stdout, r.stderr))
        got = snapshot(d)
        is_old = got == snapshot(d_old)
        is_new = got == snapshot(d_new)
        check(is_old or is_new, "step %d: after --recover the directory is neither set: %s" %
              (step, sorted(got)))
        want_new = step >= len(olds) + len(news)
        check(is_new == want_new, "step %d: expected the %s set" %
              (step, "new" if want_new else "old"))
        settled["new" if is_new else "old"] += 1
        r = merge(1, "--recover", d)
        check(r.returncode == 0 and "nothing to recover" in r.stdout,
              "a second --recover has nothing to do: %s" % r.stdout)
    print("switch states settled: %s" % settled)


def main():
    np, what = int(sys.argv[1]), sys.argv[2]
    work = os.environ["WORK"]
    os.makedirs(work, exist_ok=True)
    if what == "roundtrip":
        case_roundtrip(np, work)
    elif what == "failures":
        case_failures(np, work)
        case_validate(work)
    else:
        return 2
    if failures:
        print("%d failures" % len(failures), file=sys.stderr)
        return 1
    print("t_set %s at %d ranks: ok" % (what, np))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""kill -9 at random moments of a save; concurrent saves; mst-clean (issue 5).

  crash_trials.py MPIEXEC T_FAULTS MST_CLEAN WORKDIR TRIALS [SEED]

1. mst-clean cases: it removes a temporary whose writer is dead, keeps one
   whose owner holds the lock, one whose pid is alive, a fresh one from another
   host, and every file that is not a temporary.
2. TRIALS saves of 4 ranks, each killed with SIGKILL at a random moment (one
   random rank, or every rank in every third trial): afterwards the target is
   byte-identical to the file before the save or to the new one, never
   anything else; mst-clean then removes every temporary left and nothing else.
3. Two jobs save different contents to one target at once, three times: both
   succeed, the target is exactly one of the two, no temporary is left.
The MPI-IO component comes from OMPI_MCA_io. With T_FAULTS_SPLIT=1 (or
"snap") in the environment every save is split phase (t_faults: begin, test
until done, end), so the kills land in begin, in the library's thread and in
end.
"""
import fcntl
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

MARK = ".tmp-mst."
KIB = 512  # per rank: a save of ~2 MiB plus fsync


def short_host():
    h = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", h)


def children(pid, name):
    """The processes called name below pid: the ranks, children of Open MPI's
    mpirun or grandchildren of MPICH's mpiexec (through hydra_pmi_proxy)."""
    out = []
    kids = []
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    for k in kids:
        try:
            with open("/proc/%d/comm" % k) as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == name[:15]:
            out.append(k)
        else:
            out += children(k, name)
    return out


def main():
    sys.stdout.reconfigure(line_buffering=True)  # lines survive a kill at the time limit
    mpiexec, tfaults, clean, work, trials = sys.argv[1:6]
    trials = int(trials)
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else int(time.time())
    rng = random.Random(seed)
    io = os.environ.get("OMPI_MCA_io", "default")
    if os.environ.get("T_FAULTS_SPLIT", "0") != "0":
        io += ", split phase"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    work = os.path.realpath(work)
    target = os.path.join(work, "ckpt.safetensors")
    failures = []

    def fail(msg):
        print("FAIL: " + msg)
        failures.append(msg)

    def read(p):
        with open(p, "rb") as f:
            return f.read()

    def temps():
        return sorted(f for f in os.listdir(work) if MARK in f)

    def run_clean(*args):
        r = subprocess.run([clean, "--min-age", "0"] + list(args) + [work],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return r.returncode, r.stdout

    # ---- 1. mst-clean decides by lock, pid and host -----------------------
    host = short_host()
    dead = subprocess.Popen(["true"])
    dead.wait()
    names = {
        "dead": "x.safetensors%s%s.%d.%016x" % (MARK, host, dead.pid, 1),
        "locked": "x.safetensors%s%s.%d.%016x" % (MARK, host, dead.pid, 2),
        "alive": "x.safetensors%s%s.%d.%016x" % (MARK, host, os.getpid(), 3),
        "other_fresh": "x.safetensors%s%s.%d.%016x" % (MARK, "elsewhere-" + host, 4242, 4),
        "other_old": "x.safetensors%s%s.%d.%016x" % (MARK, "elsewhere-" + host, 4242, 5),
        "other_old_locked": "x.safetensors%s%s.%d.%016x" % (MARK, "elsewhere-" + host, 4242, 6),
        "not_temp1": "x.safetensors",
        "not_temp2": "y%sbad" % MARK,
    }
    # OMPIO's files beside a temporary (sharedfp's lock, and the locking test
    # file a rank killed inside MPI_File_open leaves): they go with an
    # abandoned temporary, stay with a live one, and alone follow the pid rule
    orphan = "x.safetensors%s%s.%d.%016x" % (MARK, host, dead.pid, 7)
    orphan_alive = "x.safetensors%s%s.%d.%016x" % (MARK, host, os.getpid(), 8)
    for key, base, suffix in (("dead_lock", "dead", "-1234-99.lock"),
                              ("dead_locktest", "dead", ".locktest.0"),
                              ("dead_locktest3", "dead", ".locktest.3"),
                              ("alive_locktest", "alive", ".locktest.1"),
                              ("alive_lock", "alive", "-1234-99.lock")):
        names[key] = names[base] + suffix
    names["orphan_locktest"] = orphan + ".locktest.2"
    names["orphan_lock"] = orphan + "-77-88.lock"
    names["orphan_alive_locktest"] = orphan_alive + ".locktest.0"
    names["not_temp3"] = names["dead"] + ".locktest."
    names["not_temp4"] = names["dead"] + ".locktest.1x"
    for n in names.values():
        with open(os.path.join(work, n), "wb") as f:
            f.write(b"data")
    old = time.time() - 7200
    for n in ("other_old", "other_old_locked"):
        os.utime(os.path.join(work, names[n]), (old, old))
    held = []
    for n in ("locked", "other_old_locked"):
        fd = os.open(os.path.join(work, names[n]), os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 1 << 62, os.SEEK_SET)
        held.append(fd)
    rc, out = subprocess.run([clean, "--min-age", "3600", work], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True).returncode, None
    left = set(os.listdir(work))
    expect_gone = {names[n] for n in ("dead", "other_old", "dead_lock", "dead_locktest",
                                      "dead_locktest3", "orphan_locktest", "orphan_lock")}
    expect_kept = set(names.values()) - expect_gone
    if rc != 0:
        fail("mst-clean exited %d" % rc)
    if left & expect_gone:
        fail("mst-clean kept abandoned temporaries: %s" % sorted(left & expect_gone))
    if expect_kept - left:
        fail("mst-clean removed files it must keep: %s" % sorted(expect_kept - left))
    for fd in held:
        os.close(fd)  # the owner is gone now: the lock is released
    rc, out = run_clean()
    left = set(os.listdir(work))
    # locks released, --min-age 0: "locked" (dead pid) and both files of the
    # other host go; "alive" (our own, live pid) stays.
    for n in ("locked", "other_old_locked", "other_fresh"):
        if names[n] in left:
            fail("after its lock was released, %s was kept:\n%s" % (n, out))
    for n in ("alive", "not_temp1", "not_temp2", "not_temp3", "not_temp4",
              "alive_locktest", "alive_lock", "orphan_alive_locktest"):
        if names[n] not in left:
            fail("mst-clean removed %s" % n)
    for n in os.listdir(work):
        os.unlink(os.path.join(work, n))
    print("[%s] mst-clean cases: %s" % (io, "ok" if not failures else "FAILED"))

    # ---- 2. kill -9 at random moments -------------------------------------
    def save_cmd(path, variant):
        return [mpiexec, "-np", "4", tfaults, "save", path, str(variant), str(KIB)]

    def read_until(p, buf, token, limit):
        """Reads the job's output (raw, unbuffered) until token or EOF or limit."""
        fd = p.stdout.fileno()
        end = time.time() + limit
        while token not in buf:
            left = end - time.time()
            if left <= 0:
                return buf, False
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return buf, token in buf
            buf += chunk
        return buf, True

    def start(path, variant):
        """Starts a save; returns once rank 0 announces its commit."""
        env = dict(os.environ, T_FAULTS_ANNOUNCE="1")
        p = subprocess.Popen(save_cmd(path, variant), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True, env=env)
        buf, ok = read_until(p, b"", b"committing\n", 120)
        return p, buf

    def finish(p, buf, limit):
        """The rest of the output and the exit status; None if it outlives limit."""
        buf, _ = read_until(p, buf, b"\0never\0", limit)
        try:
            p.wait(timeout=max(1, limit / 4))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return None, buf.decode(errors="replace")
        return p.returncode, buf.decode(errors="replace")

    def plain_save(path, variant):
        p, buf = start(path, variant)
        t0 = time.time()
        buf, _ = read_until(p, buf, b"committed\n", 120)
        dur = time.time() - t0
        rc, out = finish(p, buf, 120)
        if rc != 0 or "saved" not in out:
            sys.exit("setup save failed:\n" + out)
        return dur

    contents = {}
    for v in (0, 1):
        p = os.path.join(work, "v%d.bin" % v)
        dur = plain_save(p, v)
        contents[v] = read(p)
        os.unlink(p)
    with open(target, "wb") as f:
        f.write(contents[0])
    window = dur * 1.3  # the commit, and a little after it
    tally = {"previous": 0, "new": 0, "killed_all": 0, "killed_one": 0, "temps_cleaned": 0,
             "completed_before_kill": 0}
    t_start = time.time()
    for i in range(trials):
        before = read(target)
        variant = 1 if before == contents[0] else 0
        kill_all = i % 3 == 2
        p, head = start(target, variant)
        kids = children(p.pid, os.path.basename(tfaults))
        time.sleep(rng.uniform(0, window))
        victims = kids if kill_all else (rng.sample(kids, 1) if kids else [])
        for k in victims:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        tally["killed_all" if kill_all else "killed_one"] += 1
        rc, out = finish(p, head, 60)
        if rc is None:
            fail("trial %d: mpirun did not end within 60 s after the kill" % i)
        # every process of the job is gone now
        for k in kids:
            try:
                os.kill(k, 0)
                time.sleep(0.5)
            except ProcessLookupError:
                pass
        after = read(target) if os.path.exists(target) else None
        if rc == 0 and "saved" in out:
            tally["completed_before_kill"] += 1
            if after != contents[variant]:
                fail("trial %d: the save reported success but the target is not the new file" % i)
        if after == before:
            tally["previous"] += 1
        elif after == contents[variant]:
            tally["new"] += 1
        else:
            fail("trial %d (%s, variant %d): the target is neither the previous nor the new "
                 "file (%s bytes)" % (i, "all ranks" if kill_all else "one rank", variant,
                                      None if after is None else len(after)))
            if after is None:
                with open(target, "wb") as f:
                    f.write(before)
        left = temps()
        if left:
            rc, cout = run_clean()
            if rc != 0 or temps():
                fail("trial %d: mst-clean left %s:\n%s" % (i, temps(), cout))
            tally["temps_cleaned"] += len(left)
        others = set(os.listdir(work)) - {"ckpt.safetensors"}
        if others:
            fail("trial %d: unexpected files %s" % (i, sorted(others)))
    print("[%s] %d kill -9 trials in %.0f s (seed %d, window %.2f s): %s" % (
        io, trials, time.time() - t_start, seed, window,
        ", ".join("%s %d" % kv for kv in tally.items())))

    # ---- 3. two jobs, one target, at once ---------------------------------
    for rnd in range(3):
        ps = [subprocess.Popen([mpiexec, "-np", "2", tfaults, "save", target, str(v), "256"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for v in (2, 3)]
        outs = [q.communicate(timeout=120)[0] for q in ps]
        for q, o in zip(ps, outs):
            if q.returncode != 0 or "saved" not in o:
                fail("concurrent round %d: a job failed:\n%s" % (rnd, o))
        if rnd == 0:
            refs = {}
            for v in (2, 3):
                rp = os.path.join(work, "ref%d.bin" % v)
                r = subprocess.run([mpiexec, "-np", "2", tfaults, "save", rp, str(v), "256"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                refs[v] = read(rp)
                os.unlink(rp)
        got = read(target)
        if got not in refs.values():
            fail("concurrent round %d: the target is not one complete file" % rnd)
        if temps():
            fail("concurrent round %d: temporaries left: %s" % (rnd, temps()))
    print("[%s] concurrent saves to one target: %s" % (io, "ok" if not failures else "see above"))
    if not failures:
        shutil.rmtree(work, ignore_errors=True)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

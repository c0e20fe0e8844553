#!/usr/bin/env python3
"""Fails every file operation of a 4-rank save in turn (issue 5).

Counts the open/write/sync/rename/close calls each rank makes on the test
directory during one save (tests/faults/fault_shim.c), then runs one mpirun per
call, failing exactly that call on exactly that rank: with ENOSPC, EIO,
EDQUOT and EACCES in turn, and for writes also with a short count. Each run
checks itself (t_faults one); this script adds a hang limit per run and the
tally. The MPI-IO component comes from OMPI_MCA_io. With T_FAULTS_SPLIT=1 (or
"snap") in the environment every save is split phase (begin, test until
done, end; t_faults leaves out its strided box, which split phase refuses):
the same checks then cover the writes and the fsync of the library's thread.

  fault_sweep.py MPIEXEC T_FAULTS SHIM WORKDIR [NP]
"""
import os
import shutil
import subprocess
import sys
import time

ERRNOS = ["ENOSPC", "EIO", "EDQUOT", "EACCES"]
OPS = ["open", "write", "sync", "rename", "close"]
RUN_LIMIT = 40  # seconds; a save of a few KiB takes well under one (t_faults alarms at 15)


def main():
    sys.stdout.reconfigure(line_buffering=True)  # lines survive a kill at the time limit
    mpiexec, tfaults, shim, work = sys.argv[1:5]
    np_ = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    io = os.environ.get("OMPI_MCA_io", "default")
    if os.environ.get("T_FAULTS_SPLIT", "0") != "0":
        io += ", split phase" + (" with snapshot" if os.environ["T_FAULTS_SPLIT"] == "snap" else "")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    work = os.path.realpath(work)
    preload = shim
    if os.environ.get("MST_ASAN_RUNTIME"):
        preload = os.environ["MST_ASAN_RUNTIME"] + ":" + shim

    def mpirun(args, fault=None, limit=RUN_LIMIT):
        env = {"MST_FAULT_DIR": work, "LD_PRELOAD": preload,
               "T_FAULTS_SPLIT": os.environ.get("T_FAULTS_SPLIT", "0"),
               "T_FAULTS_MT": os.environ.get("T_FAULTS_MT", "0")}
        if fault:
            env.update(fault)
        cmd = [mpiexec, "-np", str(np_)]
        for k, v in env.items():
            # to the ranks only (not to mpiexec): Open MPI's -x, MPICH's -genv
            if os.environ.get("MST_MPI_FLAVOUR", "openmpi") == "openmpi":
                cmd += ["-x", "%s=%s" % (k, v)]
            else:
                cmd += ["-genv", k, v]
        cmd += [tfaults] + args
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            out, _ = p.communicate()
            return None, out
        return p.returncode, out

    def plain(args):
        r = subprocess.run([mpiexec, "-np", str(np_), tfaults] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=RUN_LIMIT)
        if r.returncode != 0:
            sys.exit("setup failed: %s\n%s" % (" ".join(args), r.stdout))

    target = os.path.join(work, "ckpt.safetensors")
    plain(["save", os.path.join(work, "prev.bin"), "0", "0"])
    plain(["save", os.path.join(work, "new.bin"), "1", "0"])
    assert open(os.path.join(work, "prev.bin"), "rb").read() != \
        open(os.path.join(work, "new.bin"), "rb").read()

    def reset():
        for f in os.listdir(work):
            if f not in ("prev.bin", "new.bin"):
                os.unlink(os.path.join(work, f))
        shutil.copyfile(os.path.join(work, "prev.bin"), target)

    reset()
    rc, out = mpirun(["one", work], {"MST_FAULT_TRACE": "1"})
    counts = {}
    for line in out.splitlines():
        if line.startswith("counts "):
            f = line.split()
            counts[int(f[1])] = [int(x) for x in f[2:7]]
    if rc != 0 or len(counts) != np_:
        sys.exit("counting run failed (rc %s):\n%s" % (rc, out))
    print("[%s] calls of one %d-rank save on the target directory:" % (io, np_))
    for r in range(np_):
        print("  rank %d: %s" % (r, ", ".join("%s %d" % (o, c)
                                            for o, c in zip(OPS, counts[r]))))
    if sum(c[OPS.index("write")] for c in counts.values()) == 0 or \
            counts[0][OPS.index("rename")] == 0:
        sys.exit("no writes or no rename counted: the shim does not see the save")

    trials, bad, ok_fail, ok_success, k = 0, 0, 0, 0, 0
    t0 = time.time()
    only = os.environ.get("FAULT_SWEEP_RANKS")  # e.g. "0": a quicker subset (sanitizer runs)
    for r in range(np_):
        if only and str(r) not in only.split(","):
            continue
        for oi, op in enumerate(OPS):
            for nth in range(1, counts[r][oi] + 1):
                for short in ([False, True] if op == "write" else [False]):
                    err = ERRNOS[k % len(ERRNOS)]
                    k += 1
                    what = "rank %d %s #%d %s" % (r, op, nth, "short" if short else err)
                    fault = {"MST_FAULT_RANK": str(r), "MST_FAULT_OP": op,
                             "MST_FAULT_NTH": str(nth), "MST_FAULT_ERRNO": err,
                             "MST_FAULT_SHORT": "1" if short else "0"}
                    reset()
                    rc, out = mpirun(["one", work], fault)
                    trials += 1
                    verdict = [l for l in out.splitlines() if l.startswith(("ok  ", "BAD"))]
                    if rc is None:
                        bad += 1
                        print("HANG %s (killed after %d s)\n%s" % (what, RUN_LIMIT, out))
                    elif rc != 0 or not verdict or not verdict[-1].startswith("ok"):
                        bad += 1
                        print("FAIL %s (exit %s)\n%s" % (what, rc, out))
                    else:
                        if " rc 0:" in verdict[-1]:
                            ok_success += 1
                        else:
                            ok_fail += 1
                        if os.environ.get("T_FAULTS_VERBOSE"):
                            print("%-28s %s" % (what, verdict[-1]))
    print("[%s] %d faults injected in %.0f s: %d failed cleanly, %d succeeded with exact "
          "bytes, %d broken or hung" % (io, trials, time.time() - t0, ok_fail, ok_success, bad))
    shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

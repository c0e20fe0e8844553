#!/usr/bin/env python3
"""The batch scripts of examples/slurm under a SLURM of the test's own (issue 18).

  slurm_tier.py EXAMPLES_DIR ORACLE_DIR WORKDIR

As root: installs Debian's slurm-wlm and munge when missing (apt-get), writes a
single-node slurm.conf (this host, 4 CPUs, select/cons_tres, proctrack/linuxproc,
no cgroups, free ports, state and spool directories under WORKDIR), starts
munged, slurmctld and slurmd of its own in the foreground (killed at the end,
whatever happens), then submits with `sbatch --wait`:
1. train_save.sbatch launched by srun (--mpi=pmix: Open MPI's ranks get
   SLURM's PMIx), 2 steps of save_example at 4 ranks; each checkpoint checked
   with mst-inspect --check and compared with the file the same program writes
   under plain mpirun;
2. train_save.sbatch launched by mpirun inside the allocation (LAUNCHER=mpirun);
3. merge.sbatch: three per-rank files merged into one file, byte-identical to
   the oracle's canonical file of all their tensors, and into a multi-file set
   (MAX_SHARD_SIZE), identical to the oracle's set;
4. recover.sbatch over an interrupted set switch (its journal, half the files
   renamed) and a directory holding a temporary of a save that died: the set is
   settled into the old set, the temporary removed, the checkpoint kept.
Each job's exit status and output are checked. Needs root (else exit 77,
skipped). Environment: MST_INSPECT, MST_MERGE, MST_CLEAN, MST_EXAMPLE, MPIEXEC.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_host():
    return socket.gethostname().split(".")[0]


def ensure_packages():
    need = []
    for p in ("slurm-wlm", "munge"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            need.append(p)
    if need:
        print("installing %s" % " ".join(need), flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + need,
                       env=env, check=True)


class Daemons:
    """munged, slurmctld and slurmd in the foreground, stopped by stop()."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, cmd, log):
        f = open(log, "w")
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                             env=self.env)
        self.procs.append((name, p, f))
        return p

    def stop(self):
        for name, p, f in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
            f.close()
        self.procs = []


def write_conf(work, node, ctld_port, d_port, munge_socket):
    conf = os.path.join(work, "slurm.conf")
    with open(conf, "w") as f:
        f.write("""# written by tests/slurm/slurm_tier.py: one node, this host
ClusterName=msttest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldLogFile={work}/slurmctld.log
SlurmdLogFile={work}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 NodeHostname={node} CPUs=4 State=UNKNOWN
PartitionName=mst Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
""".format(**locals()))
    return conf


def main():
    if os.geteuid() != 0:
        print("skipped: needs root (installs slurm-wlm and munge, runs slurmctld and slurmd)")
        return 77
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    examples, oracle, work = sys.argv[1:4]
    ensure_packages()
    stop_stale(work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    work = os.path.realpath(work)
    for d in ("state", "spool", "munge", "jobs"):
        os.makedirs(os.path.join(work, d))
    os.chmod(os.path.join(work, "munge"), 0o700)
    node = short_host()
    munge_socket = os.path.join(work, "munge", "munge.socket")
    conf = write_conf(work, node, free_port(), free_port(), munge_socket)

    d = Daemons(work)
    d.env = dict(os.environ, SLURM_CONF=conf)

    def on_signal(sig, _frame):
        raise SystemExit("stopped by signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        key = os.path.join(work, "munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        d.start("munged", ["munged", "-F", "--force", "--key-file", key, "--socket", munge_socket,
                           "--pid-file", os.path.join(work, "munge", "munged.pid"),
                           "--seed-file", os.path.join(work, "munge", "munged.seed"),
                           "--log-file", os.path.join(work, "munge", "munged.log")],
                os.path.join(work, "munged.out"))
        for _ in range(100):
            if os.path.exists(munge_socket):
                break
            time.sleep(0.1)
        else:
            fail("munged did not create its socket:\n" + read(os.path.join(work, "munged.out"))
                 + read(os.path.join(work, "munge", "munged.log")))
            return 1
        d.start("slurmctld", ["slurmctld", "-D", "-i", "-f", conf],
                os.path.join(work, "slurmctld.out"))
        d.start("slurmd", ["slurmd", "-D", "-f", conf, "-N", node], os.path.join(work, "slurmd.out"))
        if not wait_idle(d.env, node, work):
            return 1
        return run_jobs(d.env, examples, oracle, work)
    finally:
        d.stop()
        print("daemons stopped", flush=True)


def stop_stale(work):
    """Daemons of an earlier run killed before it could stop them (their pid files)."""
    for name, pidfile in (("slurmd", "slurmd.pid"), ("slurmctld", "slurmctld.pid"),
                          ("munged", "munge/munged.pid")):
        try:
            pid = int(read(os.path.join(work, pidfile)).split()[0])
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() != name:
                    continue
            os.kill(pid, signal.SIGKILL)
            print("stopped a stale %s (pid %d)" % (name, pid))
        except (ValueError, IndexError, OSError):
            pass


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def wait_idle(env, node, work):
    t0 = time.time()
    state = ""
    while time.time() - t0 < 90:
        r = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True,
                           text=True, env=env)
        state = (r.stdout + r.stderr).strip()
        if state == "idle":
            print("slurm: node %s idle after %.1f s" % (node, time.time() - t0), flush=True)
            return True
        time.sleep(1)
    fail("the node did not become idle within 90 s (sinfo: %r)\n--- slurmctld.log\n%s\n"
         "--- slurmd.log\n%s\n--- slurmd.out\n%s" % (
             state, read(os.path.join(work, "slurmctld.log"))[-3000:],
             read(os.path.join(work, "slurmd.log"))[-3000:],
             read(os.path.join(work, "slurmd.out"))[-2000:]))
    return False


def run_jobs(env, examples, oracle, work):
    sys.path.insert(0, oracle)
    import reference_set as rset
    import reference_writer as ref

    inspect = os.environ["MST_INSPECT"]
    bindir = os.path.dirname(inspect)
    example = os.environ["MST_EXAMPLE"]
    mpirun = os.environ.get("MPIEXEC", "mpirun")
    jobs = os.path.join(work, "jobs")
    # the tools' directory (mst-merge, mst-clean, mst-inspect are built side by side)
    for t in ("MST_MERGE", "MST_CLEAN"):
        if os.path.dirname(os.environ[t]) != bindir:
            print("note: %s is not beside mst-inspect" % t)
    base = dict(env, MST_BIN=bindir, OMPI_ALLOW_RUN_AS_ROOT="1",
                OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")

    def sbatch(name, script, opts, extra, args=()):
        out = os.path.join(jobs, name + ".out")
        e = dict(base, **extra)
        t0 = time.time()
        r = subprocess.run(["sbatch", "--wait", "-o", out, "-J", "mst-" + name, "-D", jobs]
                           + opts + [os.path.join(examples, script)] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=e, timeout=600)
        log = read(out)
        print("[%s] sbatch %s: exit %d in %.1f s" % (name, script, r.returncode,
                                                     time.time() - t0), flush=True)
        return r.returncode, r.stdout + "\n--- job output\n" + log

    # Reference bytes of save_example at 4 ranks, under plain mpirun.
    ref_ck = os.path.join(work, "reference.safetensors")
    r = subprocess.run([mpirun, "-n", "4", "--oversubscribe", example, ref_ck], env=base,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if r.returncode != 0:
        fail("save_example under mpirun: exit %d\n%s" % (r.returncode, r.stdout))
        return 1
    ref_bytes = open(ref_ck, "rb").read()

    # 1, 2: train_save through srun (SLURM's PMIx) and through mpirun in the allocation
    pmix = subprocess.run(["srun", "--mpi=list"], capture_output=True, text=True, env=env)
    mpi_list = pmix.stdout + pmix.stderr
    launchers = []
    if re.search(r"\bpmix\b", mpi_list):
        launchers.append(("srun", "srun --mpi=pmix"))
    else:
        fail("srun --mpi=list offers no pmix (Open MPI's ranks need it):\n" + mpi_list)
    launchers.append(("mpirun", "mpirun"))
    for tag, launcher in launchers:
        ck = os.path.join(work, "ckpt-" + tag)
        rc, log = sbatch("train-" + tag, "train_save.sbatch", ["--nodes=1", "--ntasks=4"],
                         {"LAUNCHER": launcher, "SAVE_CMD": example, "CKPT_DIR": ck,
                          "STEPS": "2"})
        if rc != 0:
            fail("train_save.sbatch with %s: exit %d\n%s" % (launcher, rc, log))
            continue
        for step in (1, 2):
            f = os.path.join(ck, "step%d.safetensors" % step)
            if "train_save: step %d saved to %s" % (step, f) not in log:
                fail("train_save (%s): no line for step %d:\n%s" % (tag, step, log))
            c = subprocess.run([inspect, "--check", f], capture_output=True, text=True)
            if c.returncode != 0:
                fail("mst-inspect --check %s: exit %d %s" % (f, c.returncode, c.stderr))
            elif open(f, "rb").read() != ref_bytes:
                fail("%s differs from save_example's file under plain mpirun" % f)
        print("[train-%s] 2 checkpoints checked, identical to mpirun's" % tag, flush=True)

    # 3. merge.sbatch: per-rank files into one file and into a set
    spec = {"metadata": [], "tensors": [
        {"name": "layers.%d.%s" % (i // 2, "weight" if i % 2 else "bias"),
         "dtype": ["F32", "BF16", "I64", "U8"][i % 4], "shape": [17 + i, 9 + 3 * i]}
        for i in range(12)]}
    parts = []
    for r_ in range(3):
        p = os.path.join(work, "rank%d.safetensors" % r_)
        ref.write({"metadata": [], "tensors": spec["tensors"][r_::3]}, p)
        parts.append(p)
    canonical = os.path.join(work, "canonical.safetensors")
    ref.write(spec, canonical)
    merged = os.path.join(work, "merged.safetensors")
    rc, log = sbatch("merge", "merge.sbatch", ["--nodes=1", "--ntasks=3"],
                     {"OUT": merged, "LAUNCHER": "srun --mpi=pmix"}, parts)
    if rc != 0 or "merge: %s written and checked" % merged not in log:
        fail("merge.sbatch: exit %d\n%s" % (rc, log))
    elif open(merged, "rb").read() != open(canonical, "rb").read():
        fail("the merged file is not the oracle's canonical file")
    else:
        print("[merge] merged file identical to the oracle's", flush=True)
    total = sum(ref.nbytes_of(t) for t in spec["tensors"])
    limit = total // 3
    set_dir = os.path.join(work, "merged-set")
    want_set = os.path.join(work, "expected-set")
    os.makedirs(want_set)
    rset.write_set(spec, limit, want_set)
    rc, log = sbatch("merge-set", "merge.sbatch", ["--nodes=1", "--ntasks=2"],
                     {"OUT": set_dir, "MAX_SHARD_SIZE": str(limit), "LAUNCHER": "srun --mpi=pmix"},
                     parts)
    if rc != 0 or "merge: %s written and checked" % set_dir not in log:
        fail("merge.sbatch with MAX_SHARD_SIZE: exit %d\n%s" % (rc, log))
    elif snapshot(set_dir) != snapshot(want_set):
        fail("the merged set differs from the oracle's: %s vs %s"
             % (sorted(os.listdir(set_dir)), sorted(os.listdir(want_set))))
    else:
        print("[merge-set] %d shards identical to the oracle's set" % (len(os.listdir(set_dir)) - 1),
              flush=True)

    # 4. recover.sbatch: an interrupted set switch and a dead save's temporary
    old_set = snapshot(want_set)
    new_dir = os.path.join(work, "new-set")
    new_spec = {"metadata": [["step", "8"]], "tensors": spec["tensors"][:7]}
    os.makedirs(new_dir)
    rset.write_set(new_spec, limit, new_dir)
    new_set = snapshot(new_dir)
    state = os.path.join(work, "interrupted")
    os.makedirs(state)
    jid = "0123456789abcdef"
    news = sorted(n for n in new_set if n != "model.safetensors.index.json")
    news.append("model.safetensors.index.json")
    tmp = {n: n + ".tmp-mst.%s.1.fedcba9876543210" % node_label() for n in news}
    olds = ["model.safetensors.index.json"] + sorted(n for n in old_set
                                                     if n != "model.safetensors.index.json")
    for n, b in old_set.items():
        write(os.path.join(state, n), b)
    for n in news:
        write(os.path.join(state, tmp[n]), new_set[n])
    write(os.path.join(state, ".mst-set.%s.journal" % jid), (
        "mst-set-journal 1\n" + "".join("new %s %s\n" % (tmp[n], n) for n in news)
        + "".join("old %s\n" % n for n in olds)).encode())
    # killed while setting the old set aside: half of it renamed, nothing new in
    for n in olds[:len(olds) // 2 + 1]:
        os.rename(os.path.join(state, n), os.path.join(state, ".mst-old.%s.%s" % (jid, n)))
    ckdir = os.path.join(work, "dead-save")
    os.makedirs(ckdir)
    write(os.path.join(ckdir, "ckpt.safetensors"), ref_bytes)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = "ckpt.safetensors.tmp-mst.%s.%d.00112233445566aa" % (node_label(), dead.pid)
    write(os.path.join(ckdir, stale), ref_bytes[:1000])
    rc, log = sbatch("recover", "recover.sbatch", ["--nodes=1", "--ntasks=1"],
                     {"SET_DIRS": state, "CKPT_DIRS": ckdir})
    if rc != 0:
        fail("recover.sbatch: exit %d\n%s" % (rc, log))
    got = snapshot(state)
    if got != old_set:
        fail("after recover.sbatch the interrupted set is not the old set: %s" % sorted(got))
    if sorted(os.listdir(ckdir)) != ["ckpt.safetensors"] or \
            open(os.path.join(ckdir, "ckpt.safetensors"), "rb").read() != ref_bytes:
        fail("after recover.sbatch the checkpoint directory holds %s" % sorted(os.listdir(ckdir)))
    if rc == 0 and got == old_set:
        print("[recover] interrupted set settled into the old set; dead temporary removed",
              flush=True)

    # a failing job is reported as failed by sbatch --wait (its exit status):
    # a save into a "directory" that is a file
    rc, log = sbatch("fail", "train_save.sbatch", ["--nodes=1", "--ntasks=2"],
                     {"LAUNCHER": "srun --mpi=pmix", "SAVE_CMD": example, "STEPS": "1",
                      "CKPT_DIR": os.path.join(ckdir, "ckpt.safetensors")})
    if rc == 0 or "File exists" not in log:
        fail("train_save.sbatch into a CKPT_DIR that is a file: sbatch --wait exit %d\n%s"
             % (rc, log))
    else:
        print("[fail] a failing job: sbatch --wait exit %d" % rc, flush=True)

    print("%d failures" % len(failures))
    return 1 if failures else 0


def node_label():
    return re.sub(r"[^A-Za-z0-9_-]", "_", short_host())


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def snapshot(d):
    """The files of a directory, but the set's lock file (kept by design)."""
    out = {}
    for n in os.listdir(d):
        if n == ".mst-set.lock":
            continue
        with open(os.path.join(d, n), "rb") as f:
            out[n] = f.read()
    return out


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Saves across two simulated hosts, and one host lost mid-save (issue 18).

  multihost.py T_SAVE T_SLICES T_FAULTS T_SET_PY EXPECTED_DIR WORKDIR

Two network namespaces made here (mstmh<pid>h1, mstmh<pid>h2) joined by a
veth pair, 10.231.0.1/24 and 10.231.0.2/24: addresses exist only inside
them. Open MPI's mpirun runs in h1 and starts its daemons (orted) through a
launcher of its own (plm_rsh_agent: agent.sh, which enters the host's
namespace with `ip netns exec` and gives it its own host name with
`unshare --uts`), so no sshd is needed. TCP only: the shared-memory transport
is off (--mca btl tcp,self), since the namespaces share /dev/shm; both
out-of-band and MPI traffic go over the veth subnet. Ranks are placed round
robin (rank 0 on h1, rank 1 on h2, ...).

Under the MPI-IO component of OMPI_MCA_io:
1. Saves at 4 ranks (2 per host), each compared byte for byte with the
   oracle's file in EXPECTED_DIR: mixed tensors (t_save), tensor-parallel
   slices (t_slices), a set of shards (t_save --shards), and sets through
   mst-merge (tests/tools/t_set.py roundtrip, its mpiexec being this job's).
2. A save of 256 MiB over an older file; once its temporary exists, every
   process of host h2 (its orted and ranks) is killed with SIGKILL: mpirun
   ends within 60 s with a failure and nothing of the job lives on on h1, the
   old file is intact at the target, mst-clean in the root namespace (another
   host name) keeps the fresh temporary, and mst-clean on h1 removes it.
The namespaces are removed at the end whatever happens (and stale ones of a
killed run at the start). Needs root (else exit 77, skipped) and Open MPI.
Environment: MST_CLEAN, MST_MERGE, MST_INSPECT, MPIEXEC (Open MPI's).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

SUBNET = "10.231.0.0/24"
MARK = ".tmp-mst."
failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def sh(*cmd, check=True):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d\n%s" % (" ".join(cmd), r.returncode, r.stdout))
    return r


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def ns_pids(ns):
    r = sh("ip", "netns", "pids", ns, check=False)
    return [int(x) for x in r.stdout.split()] if r.returncode == 0 else []


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def remove_ns(ns):
    for p in ns_pids(ns):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    sh("ip", "netns", "del", ns, check=False)  # takes its end of the veth pair along


def remove_stale():
    """Namespaces of an earlier run that was killed before its teardown."""
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        m = re.match(r"(mstmh(\d+)h\d)\b", line)
        if m and not pid_alive(int(m.group(2))):
            remove_ns(m.group(1))


def main():
    if os.geteuid() != 0:
        print("skipped: needs root (creates network namespaces with ip netns)")
        return 77
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    t_save, t_slices, t_faults, t_set_py, expected, work = sys.argv[1:7]
    io = os.environ.get("OMPI_MCA_io", "default")
    mpirun = os.environ.get("MPIEXEC", "mpirun")
    ver = sh(mpirun, "--version", check=False).stdout
    if "Open MPI" not in ver and "OpenRTE" not in ver:
        print("FAIL: %s is not Open MPI's mpirun (this tier drives Open MPI's launcher): %s"
              % (mpirun, ver.strip()[:200]))
        return 1
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    work = os.path.realpath(work)
    remove_stale()

    pid = os.getpid()
    ns = {h: "mstmh%d%s" % (pid, h) for h in ("h1", "h2")}
    veth = {"h1": "mh%da" % pid, "h2": "mh%db" % pid}
    addr = {"h1": "10.231.0.1/24", "h2": "10.231.0.2/24"}

    def on_signal(sig, _frame):
        raise SystemExit("stopped by signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        for h in ns:
            sh("ip", "netns", "add", ns[h])
        sh("ip", "link", "add", veth["h1"], "type", "veth", "peer", "name", veth["h2"])
        for h in ns:
            sh("ip", "link", "set", veth[h], "netns", ns[h])
            sh("ip", "-n", ns[h], "addr", "add", addr[h], "dev", veth[h])
            sh("ip", "-n", ns[h], "link", "set", "lo", "up")
            sh("ip", "-n", ns[h], "link", "set", veth[h], "up")
        return run(ns, work, mpirun, io, t_save, t_slices, t_faults, t_set_py, expected)
    finally:
        for h in ns:
            remove_ns(ns[h])
        left = [n for n in ns.values() if n in sh("ip", "netns", "list", check=False).stdout]
        if left:
            print("FAIL: namespaces left: %s" % left)


def run(ns, work, mpirun, io, t_save, t_slices, t_faults, t_set_py, expected):
    # The launcher: "agent.sh HOST COMMAND" runs COMMAND as a shell command
    # line (as ssh would) inside HOST's namespace, under HOST as host name.
    agent = os.path.join(work, "agent.sh")
    with open(agent, "w") as f:
        f.write("#!/bin/sh\n"
                "# plm_rsh_agent of the multihost test: HOST COMMAND (as ssh host command)\n"
                "while [ \"${1#-}\" != \"$1\" ]; do shift; done\n"
                "host=$1; shift\n"
                "case \"$host\" in\n"
                "  h1) ns=%s ;;\n"
                "  h2) ns=%s ;;\n"
                "  *) echo \"agent.sh: unknown host $host\" >&2; exit 255 ;;\n"
                "esac\n"
                "exec ip netns exec \"$ns\" unshare --uts sh -c "
                "'hostname \"$0\" && exec sh -c \"$*\"' \"$host\" \"$@\"\n"
                % (ns["h1"], ns["h2"]))
    os.chmod(agent, 0o755)
    # mpiexec of this job, also for t_set.py (through MPIEXEC)
    launcher = os.path.join(work, "mpirun.sh")
    with open(launcher, "w") as f:
        f.write("#!/bin/sh\n"
                "exec ip netns exec %s %s --host h1:2,h2:2 --map-by node "
                "--mca plm_rsh_agent %s --mca btl tcp,self "
                "--mca btl_tcp_if_include %s --mca oob_tcp_if_include %s "
                "-x OMPI_MCA_io=%s \"$@\"\n" % (ns["h1"], mpirun, agent, SUBNET, SUBNET, io))
    os.chmod(launcher, 0o755)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_io=io)

    def job(*args, np_=4, limit=300, extra_env=None):
        e = dict(env, **(extra_env or {}))
        p = subprocess.Popen([launcher, "-np", str(np_)] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=e,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            return None, out
        return p.returncode, out

    # Where the ranks run: two per simulated host.
    rc, out = job("sh", "-c", "echo $(hostname) $OMPI_COMM_WORLD_RANK", limit=120)
    where = sorted(out.split("\n")) if rc == 0 else []
    where = [w for w in where if re.match(r"^h[12] \d$", w)]
    if where != ["h1 0", "h1 2", "h2 1", "h2 3"]:
        fail("ranks are not 0,2 on h1 and 1,3 on h2 (rc %s):\n%s" % (rc, out))
        return 1
    print("[%s] 4 ranks on 2 hosts (namespaces %s, %s), TCP only" % (io, ns["h1"], ns["h2"]),
          flush=True)

    # 1. Saves against the oracle's bytes.
    t0 = time.time()
    cases = [
        ("mixed", [t_save, "save", "mixed", os.path.join(work, "mixed.safetensors"),
                   os.path.join(expected, "mixed.expected.safetensors")]),
        ("slices", [t_slices, "save", os.path.join(work, "slices.safetensors"),
                    os.path.join(expected, "slices.expected.safetensors"), "400", "12"]),
        ("slices_collective", [t_slices, "save", os.path.join(work, "slicesc.safetensors"),
                               os.path.join(expected, "slices.expected.safetensors"), "470",
                               "8", "collective"]),
        ("set", [t_save, "save", "mixed", os.path.join(work, "set"),
                 os.path.join(expected, "set.200000.expected"), "--shards=200000"]),
    ]
    for name, args in cases:
        rc, out = job(*args)
        if rc != 0:
            fail("%s across hosts: exit %s\n%s" % (name, rc, out))
        else:
            print("[%s] %s: %s" % (io, name, out.strip().splitlines()[-1]), flush=True)
    set_work = os.path.join(work, "t_set")
    r = subprocess.run([sys.executable, t_set_py, "4", "roundtrip"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=600,
                       env=dict(env, MPIEXEC=launcher, WORK=set_work))
    if r.returncode != 0:
        fail("t_set.py roundtrip (mst-merge sets) across hosts: exit %d\n%s"
             % (r.returncode, r.stdout))
    else:
        print("[%s] sets through mst-merge (t_set.py roundtrip 4): ok" % io, flush=True)
    print("[%s] saves across hosts: %.0f s" % (io, time.time() - t0), flush=True)

    # 2. Host h2 lost in the middle of a save.
    kdir = os.path.join(work, "kill")
    os.makedirs(kdir)
    target = os.path.join(kdir, "ckpt.safetensors")
    rc, out = job(t_faults, "save", target, "0", "256")
    if rc != 0 or "saved" not in out:
        fail("the first (small) save across hosts: exit %s\n%s" % (rc, out))
        return 1
    with open(target, "rb") as f:
        old = f.read()
    kib = 65536  # per rank: 256 MiB in all, written for well over the moment of the kill
    for attempt in range(2):
        t0 = time.time()
        p = subprocess.Popen([launcher, "-np", "4", t_faults, "save", target, "1", str(kib)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env, start_new_session=True)
        temps = []
        while time.time() - t0 < 300 and p.poll() is None:
            temps = [n for n in os.listdir(kdir) if MARK in n]
            if temps:
                break
            time.sleep(0.02)
        if not temps:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            fail("no temporary appeared during the big save (exit %s):\n%s" % (p.returncode, out))
            return 1
        victims = ns_pids(ns["h2"])
        names = sorted(comm(v) for v in victims)
        for v in victims:
            try:
                os.kill(v, signal.SIGKILL)
            except ProcessLookupError:
                pass
        t_kill = time.time()
        try:
            out, _ = p.communicate(timeout=60)
            ended = time.time() - t_kill
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            ended = None
        if p.returncode == 0 and "saved" in out:
            print("[%s] the save ended before the kill; again with twice the size" % io)
            with open(target, "wb") as f:
                f.write(old)
            kib *= 2
            continue
        break
    print("[%s] killed on h2 after %.1f s (temporary %s): %s" % (
        io, t_kill - t0, temps[0], ", ".join(names)), flush=True)
    if "t_faults" not in names or "orted" not in names:
        fail("h2 held no orted or no rank at the kill: %s" % names)
    if ended is None:
        fail("mpirun did not end within 60 s after h2's processes were killed:\n%s" % out)
    elif p.returncode == 0:
        fail("mpirun reported success after h2 was killed:\n%s" % out)
    else:
        print("[%s] mpirun ended %.1f s after the kill with exit %d" % (io, ended, p.returncode),
              flush=True)
    # mpirun has ended; its ranks on h1 may take a moment to die (a core dump)
    for _ in range(60):
        left = [(v, comm(v)) for v in ns_pids(ns["h1"]) + ns_pids(ns["h2"])]
        if not left:
            break
        time.sleep(0.5)
    if left:
        fail("processes of the job still alive on the hosts 30 s after mpirun ended: %s\n%s"
             % (left, out))
    with open(target, "rb") as f:
        if f.read() != old:
            fail("the old file at the target changed")
    temps = sorted(n for n in os.listdir(kdir) if MARK in n)
    if len(temps) != 1 or ".tmp-mst.h1." not in temps[0]:
        fail("expected one temporary of host h1, found %s" % temps)
    clean = os.environ["MST_CLEAN"]
    r = subprocess.run([clean, kdir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0 or sorted(n for n in os.listdir(kdir) if MARK in n) != temps:
        fail("mst-clean on another host (the root namespace) did not keep h1's fresh "
             "temporary: exit %d\n%s" % (r.returncode, r.stdout))
    r = subprocess.run([os.path.join(work, "agent.sh"), "h1", "%s %s" % (clean, kdir)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0 or os.listdir(kdir) != ["ckpt.safetensors"]:
        fail("mst-clean on h1: exit %d, left %s\n%s" % (r.returncode, os.listdir(kdir), r.stdout))
    else:
        print("[%s] old file intact; mst-clean on h1: %s" % (io, r.stdout.strip()), flush=True)
    print("%d failures" % len(failures))
    if not failures:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

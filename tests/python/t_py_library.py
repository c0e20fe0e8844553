"""How the binding finds libmst: the package installed by cmake --install finds
the installed library (no environment needed, from any directory), then saves
from 2 ranks; MST_LIBRARY overrides; a missing library is a clear ImportError.

  t_py_library.py BUILD_DIR WORK_DIR
  environment: CMAKE_COMMAND, MPIEXEC, MST_LIBRARY_BUILT (the built libmst)
"""
import glob
import os
import shutil
import subprocess
import sys

build, work = sys.argv[1], sys.argv[2]
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print(f"CHECK failed: {what}", file=sys.stderr, flush=True)


def run(code, env_extra, argv0=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MST_LIBRARY", "MST_BUILD", "PYTHONPATH", "LD_LIBRARY_PATH")}
    env.update(env_extra)
    cmd = (argv0 or []) + [sys.executable, "-c", code]
    p = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
prefix = os.path.join(work, "prefix")
subprocess.run([os.environ["CMAKE_COMMAND"], "--install", build, "--prefix", prefix],
               check=True, stdout=subprocess.DEVNULL)
pkgdir = os.path.join(prefix, "lib", "python3", "dist-packages")
check(os.path.isfile(os.path.join(pkgdir, "mst", "__init__.py")), "package installed")
py = {"PYTHONPATH": pkgdir}

# 1. the installed package loads the installed library
rc, out, err = run("import mst, mst._lib as l; print(l.path); print(mst.__file__); print(mst.version())", py)
lines = out.split()
check(rc == 0 and len(lines) == 3, f"installed import: rc {rc} {err}")
if rc == 0 and len(lines) == 3:
    check(os.path.realpath(lines[0]).startswith(os.path.realpath(prefix)), f"library {lines[0]}")
    check(lines[1].startswith(pkgdir), f"package {lines[1]}")
    check(lines[2] == "0.1.0" or lines[2].count(".") == 2, f"version {lines[2]}")

# 2. a save through the installed package at 2 ranks, read back by it
target = os.path.join(work, "installed.safetensors")
code = ("import numpy as np, mst\nfrom mpi4py import MPI\nr = MPI.COMM_WORLD.Get_rank()\n"
        f"mst.save({{f'r{{r}}': np.full(3, r, np.int16)}}, {target!r})\n"
        f"h = mst.read_header({target!r})\nassert list(h) == ['r0', 'r1'], h\n"
        f"assert mst.load({target!r})['r1'].tolist() == [1, 1, 1]\n")
rc, out, err = run(code, py, [os.environ["MPIEXEC"], "-n", "2"])
check(rc == 0, f"installed save at 2 ranks: rc {rc}\n{out}{err}")

# 3. MST_LIBRARY wins over the installed library
built = os.environ["MST_LIBRARY_BUILT"]
rc, out, err = run("import mst._lib as l; print(l.path)", dict(py, MST_LIBRARY=built))
check(rc == 0 and out.strip() == built, f"MST_LIBRARY: {out} {err}")

# 4. a wrong MST_LIBRARY: a clear ImportError naming it, nothing else tried
rc, out, err = run("import mst", dict(py, MST_LIBRARY="/nonexistent/libmst.so"))
check(rc != 0 and "LibraryNotFound" in err and "MST_LIBRARY='/nonexistent/libmst.so' cannot be loaded"
      in err, f"wrong MST_LIBRARY: rc {rc} {err}")

# 5. no library at all: the error lists the places tried and says what to do
for f in glob.glob(os.path.join(prefix, "lib*", "libmst.so*")):
    os.remove(f)
system = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
if "libmst.so" in system:
    print("a libmst is installed system-wide: the not-found case is not checked", flush=True)
else:
    rc, out, err = run("import mst", dict(py, MST_BUILD=os.path.join(work, "nowhere")))
    check(rc != 0 and "libmst not found; tried" in err and os.path.join(work, "nowhere") in err
          and "set MST_LIBRARY" in err, f"no library: rc {rc} {err}")

print("FAILED" if failures else "passed", f"({failures} failed checks)")
sys.exit(1 if failures else 0)

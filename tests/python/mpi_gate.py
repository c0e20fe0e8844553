"""Runs a Python test's command, unless the libmst it would load and Debian's
mpi4py were built for different MPIs (libmst built against MPICH, mpi4py for
Open MPI): then the binding's own check (mst.MPIMismatch) says why, and the
test is skipped (exit 77). Used in front of mpiexec by the Python tests of a
build whose MPI is not Open MPI; an MPICH mpi4py lets them run.

  mpi_gate.py LIBMST -- COMMAND...
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "python"))
if len(sys.argv) < 4 or sys.argv[2] != "--":
    sys.exit("usage: mpi_gate.py LIBMST -- COMMAND...")
lib, cmd = sys.argv[1], sys.argv[3:]
env = dict(os.environ)  # the command's environment, untouched by the check
try:
    import mpi4py
except ImportError as e:
    print(f"skipped: mpi4py cannot be imported ({e})")
    sys.exit(77)
mpi4py.rc.initialize = False  # the check needs MPI_Get_library_version only
mpi4py.rc.finalize = False
os.environ["MST_LIBRARY"] = lib
try:
    import mst  # noqa: F401  (its import runs the check)
except ImportError as e:
    if type(e).__name__ != "MPIMismatch":
        raise
    print(f"skipped: {e}")
    sys.exit(77)
sys.stdout.flush()
os.execvpe(cmd[0], cmd, env)

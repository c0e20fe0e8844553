#!/bin/sh
# Configures and builds into $MST_BUILD (default: build/, or build-mpich/ with
# --mpi mpich). Extra arguments go to cmake's configure step (e.g.
# -DMST_ENABLE_SANITIZERS=ON).
#   scripts/build.sh [--mpi openmpi|mpich] [cmake options...]
set -eu
if [ "${1:-}" = "--mpi" ]; then
    # shellcheck disable=SC2034  # read by env.sh
    MST_MPI=${2:?--mpi needs openmpi or mpich}
    shift 2
fi
. "$(dirname -- "$0")/env.sh"
# shellcheck disable=SC2086  # MST_MPI_CMAKE is empty or whole words
cmake -S "$MST_ROOT" -B "$MST_BUILD" -DMST_WERROR=ON $MST_MPI_CMAKE "$@"
cmake --build "$MST_BUILD" -j "$JOBS"

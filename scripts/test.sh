#!/bin/sh
# The test suite: install, build, run the tests with CTest.
#   scripts/test.sh            every test (slow ones included) under both MPI-IO
#                              components (OMPIO and ROMIO): what CI runs; as
#                              root also the multihost.* (network namespaces)
#                              and slurm.* (a SLURM of its own) tiers
#   scripts/test.sh --quick    the quick tier (ctest -L quick): the unit tests and
#                              each group once, at 2 ranks under OMPIO
#   scripts/test.sh --mpi mpich [--quick]
#                              the same against Debian's MPICH (libmpich-dev),
#                              built in build-mpich/; its one MPI-IO component
#                              is ROMIO
# Further arguments go to ctest (e.g. -LE slow, -R errors, -L python).
set -eu
tier=""
deps=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) tier="-L quick"; shift ;;
        --mpi) MST_MPI=${2:?--mpi needs openmpi or mpich}; shift 2 ;;
        *) break ;;
    esac
done
. "$(dirname -- "$0")/env.sh"
[ "$MST_MPI" = mpich ] && deps="--mpi mpich"
# the whole suite as root runs the slurm.* and multihost.* tiers: slurm-wlm, munge, ip
[ -z "$tier" ] && [ "$(id -u)" = 0 ] && deps="$deps --cluster"
# shellcheck disable=SC2086  # $deps and $tier are empty or whole words
"$MST_ROOT/scripts/setup-deps.sh" $deps
"$MST_ROOT/scripts/build.sh" --mpi "$MST_MPI" >/dev/null
cd "$MST_BUILD"
# shellcheck disable=SC2086
ctest --output-on-failure -j "$JOBS" $tier "$@"

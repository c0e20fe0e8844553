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
# MPICH and Open MPI write the same bytes: the suite compares each save with the
# oracle's file; here, also one save of the same program built against each
# (when an Open MPI build is at hand: $MST_ROOT/build, made by scripts/build.sh).
ompi_example=$MST_ROOT/build/examples/save_example
if [ "$MST_MPI" = mpich ] && [ -x "$ompi_example" ]; then
    x=$(mktemp -d)
    trap 'rm -rf "$x"' EXIT
    mpiexec.mpich -n 3 "$MST_BUILD/examples/save_example" "$x/mpich.safetensors" >/dev/null
    mpiexec.openmpi -n 3 --oversubscribe "$ompi_example" "$x/openmpi.safetensors" >/dev/null
    if ! cmp "$x/mpich.safetensors" "$x/openmpi.safetensors"; then
        echo "save_example at 3 ranks: MPICH's and Open MPI's files differ" >&2
        exit 1
    fi
    echo "save_example at 3 ranks: MPICH's file is byte-identical to Open MPI's"
fi

#!/bin/sh
# The test suite under AddressSanitizer + UndefinedBehaviorSanitizer (every
# test, slow ones included, but the install test, whose plain consumers cannot
# load a sanitized libmst; as root the multihost and SLURM tiers too), then
# under valgrind memcheck (every test but the slow 2 GiB ones, the tools', and
# the multihost and SLURM tiers, which would run their programs without it). Leaks and errors inside Open MPI itself are suppressed
# (tests/common/lsan.supp, tests/common/valgrind.supp, Open MPI's own suppression file);
# anything in mst's frames fails the run.
#   scripts/check-memory.sh [asan|valgrind]   (default: both)
set -eu
. "$(dirname -- "$0")/env.sh"
"$MST_ROOT/scripts/setup-deps.sh" --memcheck
what=${1:-both}
# Keep Open MPI's components loaded until exit, so reports can name their frames.
export OMPI_MCA_mca_base_component_disable_dlclose=1

if [ "$what" != valgrind ]; then
    MST_BUILD="$MST_ROOT/build-asan" "$MST_ROOT/scripts/build.sh" \
        -DMST_ENABLE_SANITIZERS=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
    ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
    LSAN_OPTIONS="suppressions=$MST_ROOT/tests/common/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0" \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir "$MST_ROOT/build-asan" --output-on-failure -j "$JOBS" -LE install
fi

if [ "$what" != asan ]; then
    supp=/usr/share/openmpi/openmpi-valgrind.supp
    vg="valgrind;--error-exitcode=99;--leak-check=full;--show-leak-kinds=definite;--errors-for-leak-kinds=definite;--track-origins=yes;--num-callers=40;--suppressions=$supp;--suppressions=$MST_ROOT/tests/common/valgrind.supp;--gen-suppressions=all"
    MST_BUILD="$MST_ROOT/build-valgrind" "$MST_ROOT/scripts/build.sh" \
        -DCMAKE_BUILD_TYPE=Debug "-DMST_TEST_LAUNCHER=$vg" >/dev/null
    ctest --test-dir "$MST_ROOT/build-valgrind" --output-on-failure -j "$JOBS" -LE "slow|tools|install|multihost|slurm" \
        --timeout 1800
fi
echo "memory checks passed ($what)"

#!/bin/sh
# The test suite: install, build, run the tests with CTest.
#   scripts/test.sh            every test (slow ones included) under both MPI-IO
#                              components (OMPIO and ROMIO): what CI runs
#   scripts/test.sh --quick    the quick tier (ctest -L quick): the unit tests and
#                              each group once, at 2 ranks under OMPIO
# Further arguments go to ctest (e.g. -LE slow, -R errors, -L python).
set -eu
. "$(dirname -- "$0")/env.sh"
tier=""
if [ "${1:-}" = "--quick" ]; then
    shift
    tier="-L quick"
fi
"$MST_ROOT/scripts/setup-deps.sh"
"$MST_ROOT/scripts/build.sh" >/dev/null
cd "$MST_BUILD"
# shellcheck disable=SC2086  # $tier is empty or two words
ctest --output-on-failure -j "$JOBS" $tier "$@"

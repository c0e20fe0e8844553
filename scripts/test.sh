#!/bin/sh
# The whole test suite: install, build, run every test (slow ones included)
# under both MPI-IO components (OMPIO and ROMIO). Extra arguments go to ctest
# (e.g. -L unit, -LE slow, -R errors).
set -eu
. "$(dirname -- "$0")/env.sh"
"$MST_ROOT/scripts/setup-deps.sh"
"$MST_ROOT/scripts/build.sh" >/dev/null
cd "$MST_BUILD"
ctest --output-on-failure -j "$JOBS" "$@"

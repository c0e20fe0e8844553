#!/bin/sh
# Configures and builds into $MST_BUILD (default: build/). Extra arguments go
# to cmake's configure step (e.g. -DMST_ENABLE_SANITIZERS=ON).
set -eu
. "$(dirname -- "$0")/env.sh"
cmake -S "$MST_ROOT" -B "$MST_BUILD" -DMST_WERROR=ON "$@"
cmake --build "$MST_BUILD" -j "$JOBS"

#!/bin/sh
# The main job: install, build, save a checkpoint from 4 ranks, check it.
#   1. a synthetic 256 MiB checkpoint of 64 tensors (mixed dtypes) written by
#      4 ranks into one file, then every byte read back and compared;
#   2. mst-inspect on the result (table and validation);
#   3. the README's example program at 4 ranks, inspected too.
set -eu
. "$(dirname -- "$0")/env.sh"
"$MST_ROOT/scripts/setup-deps.sh"
"$MST_ROOT/scripts/build.sh" >/dev/null
out="$MST_ROOT/demo"
mkdir -p "$out"
mpiexec -n 4 "$MST_BUILD/apps/mst-bench" -o "$out/checkpoint.safetensors" \
    --size 256MiB --tensors 64 --verify
"$MST_BUILD/apps/mst-inspect" "$out/checkpoint.safetensors" | tail -n 5
mpiexec -n 4 "$MST_BUILD/examples/save_example" "$out/example.safetensors"
"$MST_BUILD/apps/mst-inspect" "$out/example.safetensors"

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
echo "== 1. mst-bench: 4 ranks save 256 MiB (64 tensors, mixed dtypes) into one file, then"
echo "      read every byte back"
mpiexec -n 4 "$MST_BUILD/apps/mst-bench" -o "$out/checkpoint.safetensors" \
    --size 256MiB --tensors 64 --verify >"$out/bench.out"
# mst-bench prints one JSON line per run (kept in demo/bench.json) and the verification
grep '^{' "$out/bench.out" >"$out/bench.json"
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" "$out/bench.json"; }
echo "saved $(field bytes) bytes from $(field ranks) ranks in $(field seconds) s" \
    "($(field gib_per_s) GiB/s, fsync included); the measurement: $out/bench.json"
grep -v '^{' "$out/bench.out"
echo "== 2. mst-inspect: the file's last table rows and its summary"
"$MST_BUILD/apps/mst-inspect" "$out/checkpoint.safetensors" | tail -n 5
echo "== 3. the README's example program at 4 ranks, and mst-inspect on its file"
mpiexec -n 4 "$MST_BUILD/examples/save_example" "$out/example.safetensors"
"$MST_BUILD/apps/mst-inspect" "$out/example.safetensors"

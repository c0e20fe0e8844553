#!/bin/sh
# Peak resident memory of every rank of mst-merge, and its throughput next to
# plain `cat` of the same bytes (issue 4's measurement).
#   scripts/merge-memory.sh [SIZES_GIB...]     (default: 1 8)
# Each size: an input of that many GiB (one 3/4 tensor and many small ones),
# merged by 1 and 4 ranks with the default 64 MiB staging buffer, 3 runs each,
# interleaved with `cat IN > OUT`; the page cache is dropped before each run
# when we may (root). Prints one line per run. The baseline is
# the same merge of a 1 MiB input. Needs 3x the largest size free in $DIR.
set -eu
. "$(dirname -- "$0")/env.sh"
[ -x /usr/bin/time ] || { "$(dirname -- "$0")/setup-deps.sh"; apt-get install -y -q time >/dev/null; }
DIR=${DIR:-$MST_BUILD/merge-memory}
MERGE=$MST_BUILD/apps/mst-merge
[ -x "$MERGE" ] || "$MST_ROOT/scripts/build.sh" >/dev/null
sizes=${*:-"1 8"}
mkdir -p "$DIR"
drop() { sync; [ "$(id -u)" = 0 ] && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

make_input() { # PATH BYTES
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, os, struct, sys
path, total = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, os.path.join(os.environ["MST_ROOT"], "tests", "oracle"))
import reference_writer as ref
big = total * 3 // 4 // 4096 // 4 * 4
small = (total - big * 4096) // 4 // 1000
tensors = [{"name": "embed.weight", "dtype": "F32", "shape": [big, 1024]}]
tensors += [{"name": "layers.%d.w" % i, "dtype": "F32", "shape": [small]} for i in range(1000)]
text, order = ref.header_bytes({"metadata": [["format", "pt"]], "tensors": tensors})
block = os.urandom(1 << 24)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    left = sum(ref.nbytes_of(t) for t in order)
    while left:
        n = min(left, len(block))
        f.write(block[:n])
        left -= n
PY
}

rss() { # the peak RSS of every rank, KiB, from /usr/bin/time -v outputs
    grep -h "Maximum resident" "$@" | awk '{print $6}' | sort -n | tr '\n' ' '
}

export MST_ROOT
make_input "$DIR/base.safetensors" $((1 << 20))
for np in 1 4; do
    rm -f "$DIR"/time.*
    mpirun -n $np sh -c '/usr/bin/time -v -o "$0/time.$OMPI_COMM_WORLD_RANK" "$1" -o "$0/out.safetensors" --quiet --no-fsync "$0/base.safetensors"' "$DIR" "$MERGE"
    echo "baseline np=$np (1 MiB input): peak RSS KiB per rank: $(rss "$DIR"/time.*)"
done
for g in $sizes; do
    in=$DIR/in.$g.safetensors
    bytes=$((g << 30))
    [ -f "$in" ] && [ "$(stat -c %s "$in")" -ge "$bytes" ] || make_input "$in" "$bytes"
    size=$(stat -c %s "$in")
    for run in 1 2 3; do
        for np in 1 4; do
            rm -f "$DIR"/time.* "$DIR/out.safetensors"
            drop
            t0=$(date +%s.%N)
            mpirun -n $np sh -c '/usr/bin/time -v -o "$0/time.$OMPI_COMM_WORLD_RANK" "$1" -o "$0/out.safetensors" --quiet "$2"' "$DIR" "$MERGE" "$in"
            t1=$(date +%s.%N)
            cmp -s "$in" "$DIR/out.safetensors" || { echo "merge output differs from its input"; exit 1; }
            echo "merge ${g}GiB np=$np run=$run $(awk -v a="$t0" -v b="$t1" -v n="$size" 'BEGIN { printf "seconds=%.2f GiB/s=%.3f", b - a, n / (b - a) / 1073741824 }') peakRSS_KiB=[ $(rss "$DIR"/time.*)]"
        done
        rm -f "$DIR/out.safetensors"
        drop
        t0=$(date +%s.%N)
        cat "$in" > "$DIR/out.safetensors" && sync "$DIR/out.safetensors"
        t1=$(date +%s.%N)
        echo "cat   ${g}GiB run=$run $(awk -v a="$t0" -v b="$t1" -v n="$size" 'BEGIN { printf "seconds=%.2f GiB/s=%.3f", b - a, n / (b - a) / 1073741824 }')"
    done
    rm -f "$DIR/out.safetensors" "$in"
done

#!/bin/sh
# Benchmarks mst against what users would do instead (issue 9) and column
# against row splits (issue 6), from a fresh build:
#   scripts/bench.sh [--quick] [--dir DIR] [--results DIR] [--ranks "1 2 4"]
#                    [--size 1GiB] [--repeat 3] [--sections "scaling workloads ..."]
# (workloads and rows/cols use 256 MiB, the memory section 64 MiB boxes)
# Sections, each written as JSON lines (one per run) to RESULTS/<section>.jsonl:
#   scaling    every method at each rank count, with and without fsync, the
#              methods interleaved inside one job, the order turning every round
#              (A B C D E, B C D E A, ...), after one untimed warm-up round;
#   workloads  at the largest rank count: a transformer-like mix, 100,000 tiny
#              tensors (25.6 MB), one dtype (F32) against the dtype mix;
#   layout     mst with every 2-D tensor split by row blocks, then by column
#              blocks (strided: redistributed into contiguous chunks by
#              MPI_Alltoallw), jobs alternated;
#   memory     column splits with the same box per rank at 1, 2, 4, 8 ranks: the
#              global tensors grow with the ranks, a rank's memory must not;
#   planning   1,000,000 tiny tensors over 1 and 16 ranks (100,000 over 1 and
#              4 in --quick); 1 rank is the plan alone, without the exchange;
#   small      (issue 19) under each MPI-IO component (ompio, romio321), at each
#              rank count from 2: 100,000 tensors of 256 bytes, tensor i on rank
#              i % N, mst against gather (to rank 0, which saves alone) and raw
#              (each rank's bytes contiguous), interleaved, 5 runs, no fsync;
#              then 1,000,000 tensors of 8 bytes at the largest rank count
#              (mst alone, 3 runs; 100,000 in --quick); then column against row
#              splits of 8 BF16 [2048, 4096] tensors, jobs alternated, 5 each
#              (small.jsonl, small1m.jsonl, smallsplit.jsonl);
#   load       (only when named in --sections) the parallel loader against
#              load-raw, load-raw-file (the same reads in file order), load-local
#              and load-scatter, rows and cols, at each rank
#              count, methods interleaved, the page cache dropped before each run
#              where /proc/sys/vm/drop_caches is writable; then the header of
#              1,000,000 tiny tensors (100,000 in --quick) loaded at the largest
#              rank count (loadheader.jsonl, open_s).
#   checksums  (only when named in --sections) mst against mst+crc (checksums
#              on), both method orders, page cache and fsync, at each rank
#              count (checksums.jsonl; paired ratios by run).
#   train      (only when named in --sections) split-phase saves: mst-bench
#              train (a loop of compute, allreduce and update, saving every 10
#              steps, 4 saves) in its modes none, sync, split, snapshot, with
#              fsync, at each rank count, then again with --host-copy; at 1
#              rank also with --bind-to none, so that the library's writer has
#              a core of its own (train.jsonl).
# Then scripts/bench_summary.py writes RESULTS/summary.md (medians, spread,
# ratios) and gnuplot draws RESULTS/throughput-fsync.png and -nofsync.png.
# DIR (default: bench-tmp/ in the repository, on its disk) holds the files
# written; it is emptied at the end. --quick: small sizes, one repeat, about
# 2.5 minutes here with the build; its results go to $MST_BUILD/bench-quick.
set -eu
. "$(dirname -- "$0")/env.sh"
quick=0
dir="$MST_ROOT/bench-tmp"
results=""
ranks="1 2 4"
size=1GiB
repeat=3
sections="scaling workloads layout memory planning small"
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --dir) dir=$2; shift ;;
    --results) results=$2; shift ;;
    --ranks) ranks=$2; shift ;;
    --size) size=$2; shift ;;
    --repeat) repeat=$2; shift ;;
    --sections) sections=$2; shift ;;
    *) echo "usage: $0 [--quick] [--dir DIR] [--results DIR] [--ranks LIST] [--size S] [--repeat R] [--sections LIST]" >&2
       exit 2 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    size=64MiB repeat=1
    plan_tensors=100000 plan_ranks="1 4" box=8MiB small=16MiB
    results=${results:-$MST_BUILD/bench-quick}
else
    plan_tensors=1000000 plan_ranks="1 16" box=64MiB small=256MiB
    results=${results:-$MST_ROOT/docs/bench}
fi
"$MST_ROOT/scripts/setup-deps.sh"
"$MST_ROOT/scripts/build.sh" >/dev/null
command -v gnuplot >/dev/null || echo "bench.sh: gnuplot not found (apt-get install gnuplot-nox): no plots" >&2
bench="$MST_BUILD/apps/mst-bench"
mkdir -p "$dir" "$results"
target="$dir/bench.safetensors"
max_ranks=$(echo $ranks | tr ' ' '\n' | sort -n | tail -n 1)

want() { case " $sections " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

mb() { # ranks, then mst-bench options; JSON lines to stdout
    n=$1; shift
    mpiexec -n "$n" "$bench" -o "$target" --remove "$@"
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git -C "$MST_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "mode: $([ $quick = 1 ] && echo quick || echo full) size=$size repeat=$repeat ranks=$ranks"
    echo "dir: $dir ($(df -hT "$dir" | awk 'NR==2 {print $2 ", " $1 ", " $5 " used"}'))"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
    echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
    echo "kernel: $(uname -r)"
    echo "mpi: $(mpirun --version 2>/dev/null | head -n 1)"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$results/machine.txt"

if want scaling; then
: > "$results/scaling.jsonl"
for fs in "" --no-fsync; do
    for n in $ranks; do
        echo "scaling: $n ranks ${fs:-fsync}" >&2
        mb "$n" --size "$size" --tensors 64 --method all --repeat "$repeat" $fs \
            >> "$results/scaling.jsonl"
    done
done
fi

if want workloads; then
: > "$results/workloads.jsonl"
n=$max_ranks
for fs in "" --no-fsync; do
    echo "workloads: $n ranks ${fs:-fsync}" >&2
    mb "$n" --size "$small" --tensors 256 --mix transformer --method all --repeat "$repeat" $fs \
        >> "$results/workloads.jsonl"
    mb "$n" --size 25600000 --tensors 100000 --method all --repeat "$repeat" $fs \
        >> "$results/workloads.jsonl"
    mb "$n" --size "$small" --tensors 64 --dtype F32 --method all --repeat "$repeat" $fs \
        >> "$results/workloads.jsonl"
done
fi

if want layout; then
: > "$results/layout.jsonl"
for fs in "" --no-fsync; do
    for n in $ranks; do
        [ "$n" -ge 2 ] || continue
        echo "layout: $n ranks ${fs:-fsync}" >&2
        i=0
        while [ $i -lt "$repeat" ]; do
            mb "$n" --size "$small" --tensors 64 --dtype BF16 --layout rows $fs \
                >> "$results/layout.jsonl"
            mb "$n" --size "$small" --tensors 64 --dtype BF16 --layout cols $fs \
                >> "$results/layout.jsonl"
            i=$((i + 1))
        done
    done
done
fi

if want memory; then
: > "$results/memory.jsonl"
for n in 1 2 4 8; do
    echo "memory: $n ranks, $box per rank" >&2
    total=$(( $(echo $box | sed 's/MiB//') * n ))MiB
    # a fresh process: first-run peaks
    mb "$n" --size "$total" --tensors 8 --dtype BF16 --layout cols --no-fsync --warmup 0 \
        >> "$results/memory.jsonl"
done

: > "$results/planning.jsonl"
fi

if want planning; then
for n in $plan_ranks; do
    echo "planning: $plan_tensors tensors over $n ranks" >&2
    mb "$n" --size $((plan_tensors * 8)) --tensors $plan_tensors --dtype F32 --no-fsync \
        --warmup 0 --repeat 2 >> "$results/planning.jsonl"
done
fi

if want small; then
: > "$results/small.jsonl"
: > "$results/small1m.jsonl"
: > "$results/smallsplit.jsonl"
small_repeat=5 big_tensors=1000000
[ "$quick" = 1 ] && small_repeat=2 big_tensors=100000
for io in ompio romio321; do
    for n in $ranks; do
        [ "$n" -ge 2 ] || continue
        echo "small: $n ranks $io, 100,000 tensors of 256 bytes" >&2
        OMPI_MCA_io=$io mb "$n" --size 25600000 --tensors 100000 --dtype U8 --no-fsync \
            --method mst,gather,raw --repeat "$small_repeat" >> "$results/small.jsonl"
    done
done
echo "small: $big_tensors tensors over $max_ranks ranks" >&2
mb "$max_ranks" --size $((big_tensors * 8)) --tensors $big_tensors --dtype U8 --no-fsync \
    --repeat 3 >> "$results/small1m.jsonl"
for n in $ranks; do
    [ "$n" -ge 2 ] || continue
    echo "small: column against row splits, $n ranks" >&2
    i=0
    while [ $i -lt "$small_repeat" ]; do
        for lay in rows cols; do
            mb "$n" --size 134217728 --tensors 8 --dtype BF16 --width 4096 --layout "$lay" \
                --no-fsync >> "$results/smallsplit.jsonl"
        done
        i=$((i + 1))
    done
done
fi

if want load; then
settle=5
[ "$quick" = 1 ] && settle=0
: > "$results/load.jsonl"
: > "$results/loadheader.jsonl"
for n in $ranks; do
    for lay in rows cols; do
        echo "load: $n ranks $lay" >&2
        # --settle: every run starts after the VM has taken back the memory
        # the drop freed (docs/BENCHMARKS.md, "The cold-cache bimodality")
        mb "$n" --size "$small" --tensors 32 --dtype BF16 --layout "$lay" --no-fsync \
            --method load,load-raw,load-raw-file,load-local,load-scatter --repeat "$repeat" \
            --settle "$settle" >> "$results/load.jsonl"
    done
done
echo "load: header of $plan_tensors tensors over $max_ranks ranks" >&2
mb "$max_ranks" --size $((plan_tensors * 64)) --tensors $plan_tensors --dtype U8 --no-fsync \
    --method load,load-local --warmup 0 --repeat "$repeat" >> "$results/loadheader.jsonl"
fi

if want checksums; then
: > "$results/checksums.jsonl"
for n in $ranks; do
    for sync in --no-fsync ""; do
        for order in mst,mst+crc mst+crc,mst; do
            echo "checksums: $n ranks $order ${sync:-fsync}" >&2
            # shellcheck disable=SC2086
            mb "$n" --size "$size" --method "$order" $sync --repeat "$repeat" \
                >> "$results/checksums.jsonl"
        done
    done
done
fi

if want train; then
: > "$results/train.jsonl"
for n in $ranks; do
    for r in $(seq "$repeat"); do
        # at 1 rank also unbound: Open MPI binds 1-2 ranks to a core each,
        # where the library's writer thread shares the caller's core
        # (cpus_per_rank in the JSON says which)
        for bind in "" $([ "$n" = 1 ] && echo unbound); do
            for hc in "" --host-copy; do
                echo "train: $n ranks $hc $bind (round $r)" >&2
                mpiexec ${bind:+--bind-to none} -n "$n" "$bench" train -o "$target" \
                    --size "$small" --steps 50 --every 10 --compute-ms 400 $hc \
                    >> "$results/train.jsonl"
            done
        done
    done
done
fi

rm -rf "$dir"
python3 "$MST_ROOT/scripts/bench_summary.py" "$results"
if command -v gnuplot >/dev/null; then
    for fs in fsync nofsync; do
        [ -f "$results/throughput-$fs.dat" ] || continue
        gnuplot -e "dat='$results/throughput-$fs.dat'; png='$results/throughput-$fs.png'; title='$([ $fs = fsync ] && echo with || echo without) fsync'" \
            "$MST_ROOT/scripts/bench_plot.gp"
    done
fi
echo "results in $results (summary.md)" >&2

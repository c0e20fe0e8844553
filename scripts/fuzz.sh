#!/bin/sh
# Fuzzes the header parser and validator (tests/unit/fuzz_header.c) with libFuzzer.
#
#   scripts/fuzz.sh [SECONDS [libFuzzer options...]]     (default: 600 seconds)
#
# Builds build-fuzz/ with clang (-fsanitize=fuzzer,address,undefined), starts
# from tests/unit/fuzz/corpus and the reader corpus (tests/reader/make_corpus.py), writes new
# inputs to build-fuzz/fuzz-work/corpus and crashes to build-fuzz/fuzz-work/.
# At the end it merges what is new into tests/unit/fuzz/corpus (minimized: only
# inputs that add coverage) and prints a line-coverage report of the decoder.
set -eu
. "$(dirname -- "$0")/env.sh"
SECONDS_TO_RUN=${1:-600}
[ $# -gt 0 ] && shift
FUZZ_BUILD=${MST_FUZZ_BUILD:-$MST_ROOT/build-fuzz}
CLANG=${CLANG:-clang-14}
LLVM_PROFDATA=${LLVM_PROFDATA:-llvm-profdata-14}
LLVM_COV=${LLVM_COV:-llvm-cov-14}
cmake -S "$MST_ROOT" -B "$FUZZ_BUILD" -DCMAKE_C_COMPILER="$CLANG" -DMST_ENABLE_FUZZING=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$FUZZ_BUILD" --target fuzz_header -j "$JOBS"
work=$FUZZ_BUILD/fuzz-work
mkdir -p "$work/corpus" "$work/seeds" "$MST_ROOT/tests/unit/fuzz/corpus"
# Seeds: the reader corpus, generated fresh.
"${MST_PYTHON:-/usr/bin/python3}" "$MST_ROOT/tests/reader/make_corpus.py" "$work/seeds" >/dev/null
bin=$FUZZ_BUILD/tests/unit/fuzz_header
export LLVM_PROFILE_FILE="$work/fuzz-%p.profraw"
"$bin" -max_total_time="$SECONDS_TO_RUN" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
       -max_len=4096 -dict="$MST_ROOT/tests/unit/fuzz/header.dict" -artifact_prefix="$work/" "$@" \
       "$work/corpus" "$MST_ROOT/tests/unit/fuzz/corpus" "$work/seeds" 2>&1 | tee "$work/fuzz.log"
# Keep only inputs that add coverage to the saved corpus.
"$bin" -merge=1 "$MST_ROOT/tests/unit/fuzz/corpus" "$work/corpus" "$work/seeds" >"$work/merge.log" 2>&1
# Coverage of the saved corpus.
rm -f "$work"/*.profraw
LLVM_PROFILE_FILE="$work/cov.profraw" "$bin" -runs=0 "$MST_ROOT/tests/unit/fuzz/corpus" >/dev/null 2>&1
"$LLVM_PROFDATA" merge -sparse "$work/cov.profraw" -o "$work/cov.profdata"
"$LLVM_COV" report "$bin" -instr-profile="$work/cov.profdata" \
    "$MST_ROOT"/src/mst_header*.c "$MST_ROOT/src/mst_utf8.c" | tee "$work/coverage.txt"
echo "saved corpus: $(ls "$MST_ROOT/tests/unit/fuzz/corpus" | wc -l) inputs in tests/unit/fuzz/corpus"

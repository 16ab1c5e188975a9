#!/bin/sh
# Builds fuzz_TARGET with clang and libFuzzer and fuzzes it for SECONDS.
#
#   tests/fuzz/run.sh safetensors 300
#
# The session starts from the seed corpus in tests/fuzz/corpus/TARGET/ but
# writes new inputs to build-fuzz/corpus/TARGET/, so the committed seeds
# stay small. Crashing inputs go to build-fuzz/artifacts/; to keep one as
# a regression seed, copy it into tests/fuzz/corpus/TARGET/ (the replay
# test then runs it in every build). Extra arguments go to libFuzzer.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [libFuzzer options]" >&2
    echo "example: $0 safetensors 300" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2

root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-fuzz"
seeds="$root/tests/fuzz/corpus/$target"
if [ ! -f "$root/tests/fuzz/fuzz_$target.c" ]; then
    echo "$0: no fuzz target tests/fuzz/fuzz_$target.c" >&2
    exit 2
fi
if ! grep -q 'add_subdirectory(tests/fuzz)' "$root/CMakeLists.txt"; then
    echo "$0: the top-level CMakeLists.txt lacks 'add_subdirectory(tests/fuzz)'" >&2
    exit 2
fi

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMR_FUZZ=ON -DMR_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target "fuzz_$target"

mkdir -p "$build/corpus/$target" "$build/artifacts"
dictionary=""
if [ -f "$root/tests/fuzz/$target.dict" ]; then
    dictionary="-dict=$root/tests/fuzz/$target.dict"
fi
# -max_len bounds inputs at 64 KiB, well above every seed; the parser's
# limits (a 100 MB header) are checked by the unit tests instead.
"$build/tests/fuzz/fuzz_$target" \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$build/artifacts/" -print_final_stats=1 $dictionary "$@" \
    "$build/corpus/$target" "$seeds"

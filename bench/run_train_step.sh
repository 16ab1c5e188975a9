#!/bin/sh
# Runs the engine's and PyTorch's training-step benchmarks one after the
# other on this machine with the same thread count and prints the ratio.
#
#   bench/run_train_step.sh [BUILD_DIR] [THREADS]
#
# BUILD_DIR defaults to build (a Release build with benchmarks), THREADS
# to the number of cores. PyTorch comes from Debian's /usr/bin/python3.
# Both programs inherit the environment, so OMP_WAIT_POLICY=passive (idle
# OpenMP threads sleep instead of spinning) applies to both when set.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$root/build"}
threads=${2:-$(nproc)}

if [ ! -x "$build/bench/bench_train_step" ]; then
    echo "run_train_step.sh: $build/bench/bench_train_step not found; build with" \
         "cmake -S . -B build -G Ninja && cmake --build build" >&2
    exit 1
fi

# The load average before the runs shows how busy the machine was.
echo "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
engine=$("$build/bench/bench_train_step" --threads "$threads")
torch=$(/usr/bin/python3 "$root/bench/torch_train_step.py" --threads "$threads")
echo "$engine"
echo "$torch"

engine_ms=$(echo "$engine" | awk '/ms_per_step/ {print $3}')
torch_ms=$(echo "$torch" | awk '/ms_per_step/ {print $3}')
awk -v e="$engine_ms" -v t="$torch_ms" -v n="$threads" 'BEGIN {
    printf "threads %d: engine %.2f ms/step, torch %.2f ms/step, engine speed / torch speed = %.2f\n",
           n, e, t, t / e
}'

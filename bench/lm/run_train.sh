#!/bin/sh
# Training throughput of the same Llama model, engine against PyTorch.
#
#     sh bench/lm/run_train.sh [BUILD_DIR] [BATCH] [LENGTH] [STEPS] [PRESET] [ROUNDS] [THREADS]
#
# Writes the preset's weights once as a Hugging Face folder (F32), then
# times STEPS training steps (loss, backward, AdamW) after one untimed
# step, with bench_lm --train and torch_lm.py --train, for each thread
# count in THREADS, ROUNDS times in turn, PyTorch first in each pair. Both
# start from the same weights and batch, so their first losses should
# agree to about 1e-5. Prints the load average before each run and one
# table row per round and thread count:
#
#     | round | threads | engine tok/s | torch tok/s | engine / torch |
#       engine CPU ms | torch CPU ms | torch / engine CPU | first losses |
#
# (one line). Tokens/s use wall time; CPU ms is the least process CPU
# time of one step, which waiting for a core on a loaded machine does not
# inflate.
#
# Defaults: build, batch 4, length 64, 3 steps, preset 34m, 1 round,
# threads "1 2".
set -eu
build=${1:-build}
batch=${2:-4}
length=${3:-64}
steps=${4:-3}
preset=${5:-34m}
rounds=${6:-1}
thread_counts=${7:-1 2}
here=$(dirname "$0")
folder=$(mktemp -d "${TMPDIR:-/tmp}/mr_bench_train_XXXXXX")
trap 'rm -rf "$folder"' EXIT

"$build/bench/bench_lm" --preset "$preset" --save-hf "$folder/hf" >/dev/null 2>&1
round=1
while [ "$round" -le "$rounds" ]; do
    for threads in $thread_counts; do
        echo "load average before torch, $threads threads: $(cut -d' ' -f1-3 /proc/loadavg)"
        torch_line=$(/usr/bin/python3 "$here/torch_lm.py" "$folder/hf" --train --threads "$threads" \
                     --batch "$batch" --length "$length" --steps "$steps" | tail -n 1)
        echo "$torch_line"
        echo "load average before engine, $threads threads: $(cut -d' ' -f1-3 /proc/loadavg)"
        line=$("$build/bench/bench_lm" --train --preset "$preset" --threads "$threads" \
               --batch "$batch" --length "$length" --steps "$steps" | tail -n 1)
        echo "$line"
        # After the round number come the engine line's 12 fields, so its
        # threads, tok/s, first loss and CPU ms are $5, $7, $9 and $11, and
        # then torch's line, with tok/s, first loss and CPU ms at $19, $21
        # and $23.
        echo "$round $line $torch_line" | awk '{
            printf "| %s | %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %s, %s |\n",
                   $1, $5, $7, $19, $7 / $19, $11, $23, $23 / $11, $9, $21 }'
    done
    round=$((round + 1))
done

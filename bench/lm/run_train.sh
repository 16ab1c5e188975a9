#!/bin/sh
# Training throughput of the same Llama model, engine against PyTorch.
#
#     sh bench/lm/run_train.sh [BUILD_DIR] [BATCH] [LENGTH] [STEPS] [PRESET]
#
# Writes the preset's weights once as a Hugging Face folder (F32), then
# times STEPS training steps (loss, backward, AdamW) after one untimed
# step, with bench_lm --train and torch_lm.py --train on 1 and 2
# threads. Both start from the same weights and batch, so their first
# losses should agree to about 1e-5. Prints the load average before each
# run and one table row per thread count:
#
#     | threads | engine tok/s | torch tok/s | engine / torch | first losses |
#
# Defaults: build, batch 4, length 64, 3 steps, preset 34m.
set -eu
build=${1:-build}
batch=${2:-4}
length=${3:-64}
steps=${4:-3}
preset=${5:-34m}
here=$(dirname "$0")
folder=$(mktemp -d "${TMPDIR:-/tmp}/mr_bench_train_XXXXXX")
trap 'rm -rf "$folder"' EXIT

"$build/bench/bench_lm" --preset "$preset" --save-hf "$folder/hf" >/dev/null 2>&1
for threads in 1 2; do
    echo "load average before torch, $threads threads: $(cut -d' ' -f1-3 /proc/loadavg)"
    torch_line=$(/usr/bin/python3 "$here/torch_lm.py" "$folder/hf" --train --threads "$threads" \
                 --batch "$batch" --length "$length" --steps "$steps" | tail -n 1)
    echo "$torch_line"
    echo "load average before engine, $threads threads: $(cut -d' ' -f1-3 /proc/loadavg)"
    line=$("$build/bench/bench_lm" --train --preset "$preset" --threads "$threads" \
           --batch "$batch" --length "$length" --steps "$steps" | tail -n 1)
    echo "$line"
    echo "$line $torch_line" | awk '{
        printf "| %s | %.1f | %.1f | %.2f | %s, %s |\n", $4, $6, $14, $6 / $14, $8, $16 }'
done

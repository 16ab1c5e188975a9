#!/bin/sh
# Llama prompt processing and greedy generation, engine against PyTorch.
#
#     sh bench/lm/run_bench.sh [BUILD_DIR] [PROMPT] [GEN]
#
# Writes the model once as a Hugging Face folder (F32), then runs
# bench_lm for F32, F16, Q8_0 and Q4_0 and torch_lm.py on F32, each with
# 1 and 2 threads and 3 repeats (medians reported), and prints the load
# average before each run. Defaults: build, 128 prompt tokens, 64 output
# tokens. The last column is the engine's tokens/s over PyTorch's F32
# tokens/s in the same run.
set -eu
build=${1:-build}
prompt=${2:-128}
gen=${3:-64}
here=$(dirname "$0")
folder=$(mktemp -d "${TMPDIR:-/tmp}/mr_bench_lm_XXXXXX")
trap 'rm -rf "$folder"' EXIT

"$build/bench/bench_lm" --save-hf "$folder/hf" >/dev/null
for threads in 1 2; do
    echo "load average before torch, $threads threads: $(cut -d' ' -f1-3 /proc/loadavg)"
    torch_line=$(/usr/bin/python3 "$here/torch_lm.py" "$folder/hf" --threads "$threads" \
                 --prompt "$prompt" --gen "$gen" --repeats 3 | tail -n 1)
    echo "$torch_line"
    torch_prompt=$(echo "$torch_line" | awk '{print $7}')
    torch_gen=$(echo "$torch_line" | awk '{print $9}')
    torch_ids=$(echo "$torch_line" | awk '{print $11}')
    for type in f32 f16 q8_0 q4_0; do
        echo "load average before $type, $threads threads: $(cut -d' ' -f1-3 /proc/loadavg)"
        line=$("$build/bench/bench_lm" --type "$type" --threads "$threads" --prompt "$prompt" \
               --gen "$gen" --repeats 3 | tail -n 1)
        echo "$line"
        echo "$line" | awk -v tp="$torch_prompt" -v tg="$torch_gen" -v ti="$torch_ids" '{
            same = ($11 == ti) ? "same" : "different";
            printf "| %s | %s | %.1f | %.1f | %.2f | %.2f | %s |\n",
                   $3, $5, $7, $9, $7 / tp, $9 / tg, same }'
    done
done

#!/bin/sh
# Decode speed against the memory-bandwidth roofline.
#
#     sh bench/lm/run_roofline.sh [BUILD_DIR] [PROMPT] [GEN] [PRESETS] [TYPES]
#
# Measures read bandwidth with bench_bandwidth (1 and 2 threads, best of
# 20 passes), then runs bench_lm for each preset in PRESETS (default
# "135m 500m") in each type of TYPES on 1 and 2 threads, 3 repeats each
# (medians reported),
# passing the bandwidth of the same thread count. Each bench_lm run is a
# separate process, so the memory of one model (about 0.5 GB for 135m
# and 1.9 GB for 500m in F32) is freed before the next. Prints the load
# average before each run and one table row per run:
#
#     | preset | type | threads | prompt tok/s | decode tok/s | MB/token | GB/s | roofline |
#
# Defaults: build, 32 prompt tokens, 16 generated tokens, TYPES
# "f32 f16 q8_0".
set -eu
build=${1:-build}
prompt=${2:-32}
gen=${3:-16}
presets=${4:-135m 500m}
types=${5:-f32 f16 q8_0}

echo "load average before bandwidth: $(cut -d' ' -f1-3 /proc/loadavg)"
bandwidth=$("$build/bench/bench_bandwidth" --repeats 20)
echo "$bandwidth"
for preset in $presets; do
    for threads in 1 2; do
        gb_s=$(echo "$bandwidth" | awk -v t="$threads" '$1 == "bandwidth" && $3 == t {print $5}')
        for type in $types; do
            echo "load average before $preset $type, $threads threads: $(cut -d' ' -f1-3 /proc/loadavg)"
            line=$("$build/bench/bench_lm" --preset "$preset" --type "$type" --threads "$threads" \
                   --prompt "$prompt" --gen "$gen" --repeats 3 --bandwidth "$gb_s" | tail -n 1)
            echo "$line"
            echo "$line" | awk -v p="$preset" '{
                printf "| %s | %s | %s | %.1f | %.1f | %s | %s | %s |\n",
                       p, $3, $5, $7, $9, $13, $15, $17 }'
        done
    done
done

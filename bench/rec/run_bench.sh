#!/bin/sh
# Benchmarks SASRec training and full-ranking evaluation on Beauty: the
# PyTorch peer (bench/rec/torch_rec.py) and `multiround rec bench`, one
# after the other on the same machine, then prints their ratios.
#
# Usage: bench/rec/run_bench.sh [THREADS [DATA]]
#   THREADS  threads for both implementations (default: 2)
#   DATA     dataset file (default: data/rec/Beauty.txt)
# Environment: MR_BUILD (build folder, default build), MR_BENCH_OUT (folder
# for the JSON results, default bench/rec/results).
#
# Prints JSON lines on stdout, one for the host and one per implementation,
# and keeps a copy in MR_BENCH_OUT/rec-bench-<UTC time>.jsonl.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
threads=${1:-2}
data=${2:-$root/data/rec/Beauty.txt}
build=${MR_BUILD:-$root/build}
out_dir=${MR_BENCH_OUT:-$root/bench/rec/results}
steps=30
warmup=3

if [ ! -f "$data" ]; then
    echo "run_bench: dataset $data not found; pass its path as the second argument" >&2
    exit 1
fi
mkdir -p "$out_dir"
out="$out_dir/rec-bench-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

# Each side sets its own threads from --threads. Exporting OMP_NUM_THREADS
# and BLIS_NUM_THREADS as well made Debian's PyTorch 1.13 up to 10 times
# slower on a 2-core machine, probably because BLIS then starts threads
# inside PyTorch's OpenMP threads.

# The machine may be shared: record what else was running.
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
read -r load1 load5 load15 _ < /proc/loadavg
printf '{"impl": "host", "cpu": "%s", "cores": %s, "loadavg": [%s, %s, %s]}\n' \
    "$cpu" "$(nproc)" "$load1" "$load5" "$load15" | tee "$out"

/usr/bin/python3 "$root/bench/rec/torch_rec.py" --bench --threads "$threads" \
    --data "$data" --steps "$steps" --warmup-steps "$warmup" | tee -a "$out"

"$build/multiround" rec bench --data "$data" --threads "$threads" \
    --steps "$steps" --warmup-steps "$warmup" | tee -a "$out"

# Ratios of the two lines just written: throughput C / PyTorch, and
# evaluation time and peak memory PyTorch / C.
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = {r["impl"]: r for r in map(json.loads, open(sys.argv[1]))}
c, t = rows["multiround"], rows["torch"]
print(json.dumps({
    "impl": "ratio",
    "train_examples_per_second": c["train_examples_per_second"] / t["train_examples_per_second"],
    "eval_seconds": t["eval_seconds"] / c["eval_seconds"],
    "peak_rss_mib": t["peak_rss_mib"] / c["peak_rss_mib"],
}))
PY
echo "run_bench: results in $out" >&2

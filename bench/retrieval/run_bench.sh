#!/bin/sh
# Benchmarks BM25 retrieval on SQLite FTS5: index build throughput and
# query latency, on the 2WikiMultihopQA corpus in data/qa/ and on a
# synthetic corpus (bench/retrieval/make_synthetic_corpus.py), both
# queried with the 1,192 real 2Wiki questions.
#
# Usage: bench/retrieval/run_bench.sh [RUNS [SYNTHETIC_RUNS]]
#   RUNS            builds of the 2Wiki index, each followed by one pass over
#                   all 1,192 questions (default 5)
#   SYNTHETIC_RUNS  query passes on the synthetic index, which is built once
#                   (default 3; 0 skips the synthetic corpus)
# Environment:
#   MR_BUILD                build folder with the multiround tool (default build)
#   MR_BENCH_DIR            scratch folder for corpora and indexes
#                           (default /tmp/mr-retrieval-bench)
#   MR_SYNTHETIC_PASSAGES   passages in the synthetic corpus (default 1000000)
#   MR_SYNTHETIC_QUESTIONS  the first N questions are run on the synthetic
#                           index (default 100), because a query there
#                           scores far more passages
#
# Prints one JSON line per measurement, then the medians per corpus, and
# keeps a copy in MR_BENCH_DIR/retrieval-bench-<UTC time>.jsonl. Every
# build starts from an empty index. Each query pass directly follows its
# build, so the index is warm in the page cache.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-5}
synthetic_runs=${2:-3}
build=${MR_BUILD:-$root/build}
scratch=${MR_BENCH_DIR:-/tmp/mr-retrieval-bench}
synthetic_passages=${MR_SYNTHETIC_PASSAGES:-1000000}
synthetic_questions=${MR_SYNTHETIC_QUESTIONS:-100}
tool="$build/multiround"
questions="$root/data/qa/2wikimultihopqa_dev_closedcorpus.jsonl"

if [ ! -x "$tool" ]; then
    echo "run_bench: $tool not found; build first or set MR_BUILD" >&2
    exit 1
fi
mkdir -p "$scratch"
out="$scratch/retrieval-bench-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

# The machine may be shared: record what else was running.
host_line() {
    cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
    read -r load1 load5 load15 _ < /proc/loadavg
    printf '{"kind": "host", "when": "%s", "cpu": "%s", "cores": %s, "loadavg": [%s, %s, %s]}\n' \
        "$1" "$cpu" "$(nproc)" "$load1" "$load5" "$load15"
}

# build_index NAME CORPUS RUN: builds the index NAME.db from scratch and
# prints its build time and throughput.
build_index() {
    db="$scratch/$1.db"
    log="$scratch/$1-build.log"
    rm -f "$db" "$db-journal"
    "$tool" index build "$2" -o "$db" --progress-seconds 30 2> "$log"
    # The last line ends with "; 12.3 s, 4567 passages/s".
    pattern='s/.*; \([0-9.]*\) s, \([0-9]*\) passages\/s$/'
    seconds=$(tail -n 1 "$log" | sed -n "${pattern}\\1/p")
    rate=$(tail -n 1 "$log" | sed -n "${pattern}\\2/p")
    printf '{"kind": "build", "corpus": "%s", "run": %d, "seconds": %s, "passages_per_second": %s, "index_bytes": %s}\n' \
        "$1" "$3" "$seconds" "$rate" "$(stat -c %s "$db")" | tee -a "$out"
}

# query_index NAME QUESTIONS RUN: runs the questions on NAME.db and prints
# recall and latency.
query_index() {
    "$tool" search "$scratch/$1.db" --questions "$2" --json |
        sed "s/^{/{\"kind\": \"query\", \"corpus\": \"$1\", \"run\": $3, /" | tee -a "$out"
}

host_line start | tee "$out"
run=1
while [ "$run" -le "$runs" ]; do
    build_index 2wiki "$root/data/qa/2wikimultihopqa_corpus_hipporag.jsonl" "$run"
    query_index 2wiki "$questions" "$run"
    run=$((run + 1))
done

if [ "$synthetic_runs" -gt 0 ]; then
    name="synthetic_$synthetic_passages"
    synthetic="$scratch/$name.jsonl"
    if [ ! -f "$synthetic" ]; then
        /usr/bin/python3 "$root/bench/retrieval/make_synthetic_corpus.py" "$synthetic" \
            --passages "$synthetic_passages"
    fi
    subset="$scratch/questions_$synthetic_questions.jsonl"
    head -n "$synthetic_questions" "$questions" > "$subset"
    build_index "$name" "$synthetic" 1
    run=1
    while [ "$run" -le "$synthetic_runs" ]; do
        query_index "$name" "$subset" "$run"
        run=$((run + 1))
    done
fi
host_line end | tee -a "$out"

# Medians over the runs of each corpus.
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for corpus in dict.fromkeys(r["corpus"] for r in rows if "corpus" in r):
    builds = [r for r in rows if r.get("corpus") == corpus and r["kind"] == "build"]
    queries = [r for r in rows if r.get("corpus") == corpus and r["kind"] == "query"]
    median = lambda key, group: statistics.median(r[key] for r in group)
    print(json.dumps({
        "kind": "median", "corpus": corpus, "builds": len(builds),
        "query_passes": len(queries), "questions": queries[-1]["questions"],
        "passages_per_second": median("passages_per_second", builds),
        "build_seconds": median("seconds", builds),
        "index_bytes": builds[-1]["index_bytes"],
        "latency_p50_ms": round(median("latency_p50_ms", queries), 3),
        "latency_p99_ms": round(median("latency_p99_ms", queries), 3),
        "queries_per_second": round(median("queries_per_second", queries), 1),
        "recall@2": queries[-1]["recall@2"], "recall@5": queries[-1]["recall@5"],
        "recall@10": queries[-1]["recall@10"],
    }))
PY

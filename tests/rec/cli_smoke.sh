#!/bin/sh
# Smoke test of `multiround rec`: trains one epoch on a tiny synthetic
# dataset, checks the run folder's files, then runs eval and recommend on
# the result, times a short benchmark and checks the help of each command.
#
# usage: cli_smoke.sh PATH_TO_MULTIROUND [BACKBONE]
set -eu

binary=${1:?usage: cli_smoke.sh PATH_TO_MULTIROUND [BACKBONE]}
backbone=${2:-sasrec}
work=$(mktemp -d "${TMPDIR:-/tmp}/mr_rec_cli_XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
    echo "cli_smoke: $*" >&2
    exit 1
}

# 50 users of 6 consecutive item ids out of 60.
awk 'BEGIN {
    for (u = 1; u <= 50; u++) {
        line = u
        for (j = 0; j < 6; j++) line = line " " (1 + (u * 7 + j) % 60)
        print line
    }
}' > "$work/data.txt"

"$binary" rec train --data "$work/data.txt" --backbone "$backbone" --out "$work/run" \
    --epochs 1 --dim 16 --max-len 5 --negatives 5 --batch-size 64 --threads 2 \
    > "$work/train.out" 2> "$work/train.err" || {
    cat "$work/train.err" >&2
    fail "rec train failed"
}
for file in config.json metrics.json model.safetensors checkpoint.safetensors done; do
    [ -s "$work/run/$file" ] || fail "rec train did not write $file"
done
grep -q '"hit@50"' "$work/train.out" || fail "rec train printed no test metrics"
grep -q '"max_len":[[:space:]]*5' "$work/run/config.json" || fail "config.json lacks max_len 5"

# A finished run prints its metrics again without training.
"$binary" rec train --data "$work/data.txt" --backbone "$backbone" --out "$work/run" \
    --epochs 1 --dim 16 --max-len 5 --negatives 5 --batch-size 64 \
    > "$work/rerun.out" 2> /dev/null || fail "rerunning a finished run failed"
cmp -s "$work/train.out" "$work/rerun.out" || fail "a finished run printed other metrics"

# Without --epochs a rerun keeps the run's limit of 1 instead of extending
# it to the default 200, and its note gives the way to train on.
"$binary" rec train --data "$work/data.txt" --backbone "$backbone" --out "$work/run" \
    --dim 16 --max-len 5 --negatives 5 --batch-size 64 \
    > "$work/rerun.out" 2> "$work/rerun.err" || fail "a rerun without --epochs failed"
cmp -s "$work/train.out" "$work/rerun.out" || fail "a rerun without --epochs trained on"
grep -q "has reached its limit of 1 epochs; rerun with a larger --epochs" "$work/rerun.err" ||
    fail "the finished-run note is unclear: $(cat "$work/rerun.err")"

# --init from a run of another backbone names both, and the failed run
# leaves no folder behind.
other=sasrec
[ "$backbone" = sasrec ] && other=gru4rec
if "$binary" rec train --data "$work/data.txt" --backbone "$other" --init "$work/run" \
    --out "$work/other" --epochs 1 --dim 16 --max-len 5 --negatives 5 > /dev/null \
    2> "$work/other.err"; then
    fail "rec train initialised $other from a $backbone run"
fi
grep -q "has the $backbone backbone but this run has $other" "$work/other.err" ||
    fail "the backbone mismatch is unclear: $(cat "$work/other.err")"
[ ! -e "$work/other" ] || fail "the failed run left its folder behind"

# A changed setting is rejected.
if "$binary" rec train --data "$work/data.txt" --backbone "$backbone" --out "$work/run" \
    --epochs 1 --dim 8 --max-len 5 --negatives 5 --batch-size 64 > /dev/null 2>&1; then
    fail "rec train resumed a run with another --dim"
fi

# A changed checkpoint interval only changes when the state is saved.
"$binary" rec train --data "$work/data.txt" --backbone "$backbone" --out "$work/run" \
    --epochs 1 --dim 16 --max-len 5 --negatives 5 --batch-size 64 --checkpoint-minutes 0.5 \
    > "$work/rerun.out" 2> /dev/null || fail "rec train refused another --checkpoint-minutes"
if "$binary" rec train --data "$work/data.txt" --backbone "$backbone" --out "$work/bad" \
    --checkpoint-minutes -1 > /dev/null 2> "$work/bad.err"; then
    fail "rec train took --checkpoint-minutes -1"
fi
grep -q "checkpoint-minutes" "$work/bad.err" || fail "no message names --checkpoint-minutes"

"$binary" rec eval --data "$work/data.txt" --model "$work/run" --split valid \
    > "$work/eval.out" || fail "rec eval failed"
grep -q '"split":[[:space:]]*"valid"' "$work/eval.out" || fail "rec eval printed no split"
grep -q '"users":[[:space:]]*50' "$work/eval.out" || fail "rec eval did not evaluate 50 users"

"$binary" rec recommend --data "$work/data.txt" --model "$work/run" --user 3 -k 4 \
    > "$work/recommend.out" || fail "rec recommend failed"
[ "$(wc -l < "$work/recommend.out")" -eq 5 ] || fail "rec recommend did not list 4 items"
# User 3 viewed items 22..27; none of them may be recommended.
awk 'NR > 1 && $2 >= 22 && $2 <= 27 { exit 1 }' "$work/recommend.out" ||
    fail "rec recommend listed an item from the user's history"

"$binary" rec bench --data "$work/data.txt" --backbone "$backbone" --steps 2 \
    --warmup-steps 1 --batch-size 64 --threads 2 > "$work/bench.out" 2> /dev/null ||
    fail "rec bench failed"
for field in train_examples_per_second train_step_ms eval_seconds peak_rss_mib; do
    grep -q "\"$field\":[0-9]" "$work/bench.out" || fail "rec bench printed no $field"
done
grep -q '"eval_users":50,' "$work/bench.out" || fail "rec bench did not evaluate 50 users"

for command in train eval recommend bench; do
    "$binary" rec "$command" --help > "$work/help.out" || fail "rec $command --help failed"
    grep -q -- "--data" "$work/help.out" || fail "rec $command --help lacks --data"
    grep -q "default" "$work/help.out" || fail "rec $command --help names no defaults"
done
echo "cli_smoke: ok"

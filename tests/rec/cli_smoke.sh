#!/bin/sh
# Smoke test of `multiround rec`: trains one epoch on a tiny synthetic
# dataset, checks the run folder's files, stops a longer run with SIGTERM
# and resumes it, then runs eval and recommend on the first result, times
# a short benchmark and checks the help of each command.
#
# usage: cli_smoke.sh PATH_TO_MULTIROUND [BACKBONE]
# KEEP_WORK=1 keeps the temporary folder for a look at the logs.
set -eu

binary=${1:?usage: cli_smoke.sh PATH_TO_MULTIROUND [BACKBONE]}
backbone=${2:-sasrec}
work=$(mktemp -d "${TMPDIR:-/tmp}/mr_rec_cli_XXXXXX")
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT

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

# A long run: 1,500 users of 12 items out of 300, in batches of 16.
awk 'BEGIN {
    for (u = 1; u <= 1500; u++) {
        line = u
        for (j = 0; j < 12; j++) line = line " " (1 + (u * 13 + j * 7) % 300)
        print line
    }
}' > "$work/long.txt"
"$binary" rec train --data "$work/long.txt" --backbone "$backbone" --out "$work/long" \
    --epochs 100 --dim 16 --max-len 5 --negatives 5 --batch-size 16 --threads 1 \
    > /dev/null 2> "$work/long.err" &
pid=$!
waited=0
until grep -q "epoch 0 valid" "$work/long.err"; do
    waited=$((waited + 1))
    if [ "$waited" -gt 1200 ] || ! kill -0 "$pid" 2> /dev/null; then
        kill -KILL "$pid" 2> /dev/null || true
        fail "the long run did not start training: $(cat "$work/long.err")"
    fi
    sleep 0.1
done

# While it trains, a second run in its folder is rejected and names it.
if "$binary" rec train --data "$work/long.txt" --backbone "$backbone" --out "$work/long" \
    --epochs 100 --dim 16 --max-len 5 --negatives 5 --batch-size 16 --threads 1 \
    > /dev/null 2> "$work/second.err"; then
    kill -KILL "$pid"
    fail "a second run trained in a folder that a running one uses"
fi
grep -q "is in use by process $pid" "$work/second.err" ||
    fail "the in-use message is unclear: $(cat "$work/second.err")"

# SIGTERM stops the run after the current batch with its checkpoint saved,
# and the exit status is 128 + 15.
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 143 ] || fail "a run stopped by SIGTERM exited with $status, not 143"
grep -q "stopped on request .* rerun the same command to resume" "$work/long.err" ||
    fail "the stop message is unclear: $(tail -n 3 "$work/long.err")"
[ -s "$work/long/checkpoint.safetensors" ] || fail "the stopped run saved no checkpoint"
[ ! -e "$work/long/done" ] || fail "the stopped run counts as finished"

# The rerun resumes the checkpoint; a limit of 1 epoch lets it finish.
"$binary" rec train --data "$work/long.txt" --backbone "$backbone" --out "$work/long" \
    --epochs 1 --dim 16 --max-len 5 --negatives 5 --batch-size 16 --threads 1 \
    > /dev/null 2> "$work/resume.err" || fail "resuming the stopped run failed"
grep -q "resuming the run in" "$work/resume.err" || fail "the rerun did not resume"
[ -e "$work/long/done" ] || fail "the resumed run did not finish"

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

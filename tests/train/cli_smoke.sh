#!/bin/sh
# Smoke test of `multiround train`, `multiround plot` and `multiround
# rounds status`. It trains a tiny random model for a step or two to check
# the run folder rules and the config errors. It draws a hand-written
# metrics.jsonl with a NaN and a partial last line, and checks the SVG
# with xmllint when that is installed. It checks the errors for an empty
# log and an unknown metric, and prints a hand-written manifest and the
# example manifest under examples/rounds.
#
# usage: cli_smoke.sh PATH_TO_MULTIROUND
set -eu

binary=${1:?usage: cli_smoke.sh PATH_TO_MULTIROUND}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/mr_train_cli_XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
    echo "cli_smoke: $*" >&2
    exit 1
}

mkdir -p "$work/run" "$work/other" "$work/empty"
printf '%s\n' \
    '{"step":0,"elapsed_s":0.1,"loss":3.2,"lr":0.0001}' \
    '{"step":10,"elapsed_s":1.1,"loss":"NaN","lr":0.0002}' \
    '{"step":20,"elapsed_s":2.1,"loss":2.1,"lr":0.0003}' \
    '{"step":30,"elapsed_s":3.1,"loss":1.7,"lr":0.0003}' > "$work/run/metrics.jsonl"
printf '{"step":40,"elapsed_s":4.1,"lo' >> "$work/run/metrics.jsonl"
printf '%s\n' '{"step":0,"loss":3.0}' '{"step":50,"loss":1.0}' > "$work/other/metrics.jsonl"
: > "$work/empty/metrics.jsonl"

"$binary" plot "$work/run" > "$work/plot.out" 2> "$work/plot.err" || {
    cat "$work/plot.err" >&2
    fail "plot of one run failed"
}
[ -s "$work/run/metrics.svg" ] || fail "plot did not write RUN_DIR/metrics.svg"
grep -q "2 panels, 7 points, 1 NaN or infinite value left out" "$work/plot.out" ||
    fail "plot did not report the NaN: $(cat "$work/plot.out")"
grep -q "left out a partial last line" "$work/plot.err" || fail "plot did not report the partial line"
grep -q '<svg xmlns="http://www.w3.org/2000/svg"' "$work/run/metrics.svg" || fail "no <svg> root"
if command -v xmllint > /dev/null 2>&1; then
    xmllint --noout "$work/run/metrics.svg" || fail "xmllint rejects the SVG"
fi

"$binary" plot "$work/run" "$work/other" -o "$work/cmp.svg" --metrics loss --smooth 2 \
    > /dev/null 2>&1 || fail "plot of two runs failed"
[ "$(grep -c '<polyline' "$work/cmp.svg")" -ge 2 ] || fail "the overlay has fewer than 2 lines"

if "$binary" plot "$work/run" "$work/other" > /dev/null 2>&1; then
    fail "plot of two runs without -o succeeded"
fi
if "$binary" plot "$work/empty" 2> "$work/empty.err"; then
    fail "plot of an empty log succeeded"
fi
grep -q "has no lines" "$work/empty.err" || fail "the empty-log error is unclear: $(cat "$work/empty.err")"
if "$binary" plot "$work/run" --metrics accuracy 2> "$work/unknown.err"; then
    fail "plot of an unknown metric succeeded"
fi
grep -q "no run has the metric 'accuracy'" "$work/unknown.err" || fail "the unknown-metric error is unclear"

mkdir -p "$work/rounds"
cat > "$work/rounds/manifest.json" << 'JSON'
{
  "format": "multiround-rounds",
  "version": 1,
  "stages": ["generate", "train"],
  "initial_model": "models/base",
  "lora": true,
  "rounds": [
    {"round": 0, "folder": "round-000", "state": "done", "start_model": "models/base",
     "merge_lora": false, "output_model": "round-000/model",
     "stages": [
       {"name": "generate", "done": true, "attempts": 1,
        "inputs": [{"path": "/data/prompts.txt",
                    "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}],
        "outputs": []},
       {"name": "train", "done": true, "attempts": 2, "inputs": [], "outputs": []}]},
    {"round": 1, "folder": "round-001", "state": "running", "start_model": "round-000/model",
     "merge_lora": true, "output_model": null,
     "stages": [
       {"name": "generate", "done": false, "attempts": 1, "inputs": [], "outputs": []},
       {"name": "train", "done": false, "attempts": 0, "inputs": [], "outputs": []}]}
  ]
}
JSON
"$binary" rounds status "$work/rounds" --files > "$work/status.out" || fail "rounds status failed"
grep -q "^round-000  done     done         done (2)" "$work/status.out" ||
    fail "rounds status lacks round 0: $(cat "$work/status.out")"
grep -q "^round-001  running  started      -            round-000/model (merge LoRA) -> -" \
    "$work/status.out" || fail "rounds status lacks round 1: $(cat "$work/status.out")"
grep -q "input  ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  /data/prompts.txt" \
    "$work/status.out" || fail "rounds status --files lacks the input"
# The example manifest shows a failed stage with its message.
"$binary" rounds status "$root/examples/rounds" > "$work/example_status.out" ||
    fail "rounds status of examples/rounds failed"
grep -q "^round-001  failed   done         failed       -" "$work/example_status.out" ||
    fail "the example's failed round is not shown: $(cat "$work/example_status.out")"
grep -q "^round-001 stage judge failed: judge: 127.0.0.1:8080: connection refused" \
    "$work/example_status.out" || fail "the example's failure message is not shown"
if "$binary" rounds status "$work/empty" 2> "$work/status.err"; then
    fail "rounds status of a folder without a manifest succeeded"
fi
grep -q "manifest.json" "$work/status.err" || fail "the missing-manifest error names no file"

# ---- multiround train: run folder rules and config errors ----
for i in 1 2 3 4 5 6 7 8 9 10; do
    printf '{"prompt": "Once upon a time, Tom", "completion": " went home."}\n'
done > "$work/sft.jsonl"
# A random model of Hugging Face config.json keys, without head_dim.
init='{"vocab_size": 512, "hidden_size": 16, "num_hidden_layers": 1,
       "num_attention_heads": 2, "intermediate_size": 32}'
write_config() { # FILE OUT MAX_STEPS [EXTRA_KEYS]
    cat > "$1" << JSON
{"tokenizer": "$root/tests/data/lm/stories260K.gguf", "init": ${init_value:-$init},
 "data": "$work/sft.jsonl", "out": "$2", "max_steps": $3, "batch_size": 2,
 "max_length": 32, "eval_every_nth": 5 ${4:-}}
JSON
}
train() { # CONFIG [OPTIONS] -> $work/train.out, $work/train.err
    "$binary" train sft --config "$@" > "$work/train.out" 2> "$work/train.err"
}

# Two steps and the default warm-up of 10 steps, which shrinks to fit.
write_config "$work/t2.json" "$work/trun" 2
train "$work/t2.json" || fail "a 2-step run failed: $(cat "$work/train.err")"
grep -q '"warmup_steps": 2,' "$work/trun/config.json" || fail "the warm-up is not 2 steps"
grep -q '"hidden_size": 16, .*"head_dim": 8,' "$work/trun/config.json" ||
    fail "config.json lacks the init with head_dim 8: $(grep init "$work/trun/config.json")"
grep -q "eval loss" "$work/train.err" || fail "no eval line: $(cat "$work/train.err")"
if grep -q "accuracy" "$work/train.err"; then
    fail "the SFT log shows an accuracy: $(grep accuracy "$work/train.err")"
fi
grep -q "8 training and 2 held-out examples" "$work/train.err" ||
    fail "the data line lacks the counts: $(cat "$work/train.err")"

# A new run over a finished run is rejected; --resume may raise max_steps.
if train "$work/t2.json"; then
    fail "a second run into a finished run's folder succeeded"
fi
grep -q "$work/trun already contains a finished run (done); pass --resume" "$work/train.err" ||
    fail "the finished-run error is unclear: $(cat "$work/train.err")"
write_config "$work/t3lr.json" "$work/trun" 3 ', "lr": 0.01'
if train "$work/t3lr.json" --resume; then
    fail "a resume with another lr succeeded"
fi
grep -q "differs in lr (stored 0.0001, now 0.01)" "$work/train.err" ||
    fail "the changed-setting error is unclear: $(cat "$work/train.err")"
write_config "$work/t3.json" "$work/trun" 3 ', "log_every": 2'
train "$work/t3.json" --resume || fail "a resume to 3 steps failed: $(cat "$work/train.err")"
grep -q '"steps": 3' "$work/train.out" || fail "the resumed run did not reach step 3"

# init as the path of a Hugging Face config.json gives the same model.
printf '{"model_type": "llama", %s\n' "${init#\{}" > "$work/hf_config.json"
init_value="\"$work/hf_config.json\"" write_config "$work/tpath.json" "$work/tpath" 2
train "$work/tpath.json" || fail "init as a path failed: $(cat "$work/train.err")"
[ "$(grep '"init"' "$work/tpath/config.json")" = "$(grep '"init"' "$work/trun/config.json")" ] ||
    fail "init as a path gives another model"

# Config errors name the key, its expected type, or the line and column.
printf '{"lr": "0.1"}' > "$work/bad_type.json"
if train "$work/bad_type.json"; then fail "a string lr was accepted"; fi
grep -q "config key 'lr' must be a number, got a string" "$work/train.err" ||
    fail "the type error is unclear: $(cat "$work/train.err")"
printf '{"init": {"dim": 16}}' > "$work/old_init.json"
if train "$work/old_init.json"; then fail "init.dim was accepted"; fi
grep -q "config key 'init.dim' is not a Hugging Face config.json key; use 'hidden_size'" \
    "$work/train.err" || fail "the init key error is unclear: $(cat "$work/train.err")"
printf '{"data": "x.jsonl",\n "lr": 0.1,' > "$work/cut.json"
if train "$work/cut.json"; then fail "a cut config was accepted"; fi
grep -q "cut.json:2:.*: invalid JSON" "$work/train.err" ||
    fail "the invalid-JSON error has no position: $(cat "$work/train.err")"
if grep -q "not a JSON object" "$work/train.err"; then
    fail "invalid JSON is reported as not a JSON object"
fi
printf '[1]' > "$work/array.json"
if train "$work/array.json"; then fail "an array config was accepted"; fi
grep -q "array.json: not a JSON object" "$work/train.err" || fail "the array error is unclear"

# A bad data row names its line and column, and the run removes the
# folders it created.
printf '{"prompt": "a", "completion": "b"}\n{"prompt": "a", "compl\n' > "$work/cut.jsonl"
write_config "$work/tbad.json" "$work/new/run" 2
sed -i "s#$work/sft.jsonl#$work/cut.jsonl#" "$work/tbad.json"
if train "$work/tbad.json"; then fail "a cut data row was accepted"; fi
grep -q "cut.jsonl:2:18: invalid JSON near 'compl'" "$work/train.err" ||
    fail "the data error has no position: $(cat "$work/train.err")"
[ ! -e "$work/new" ] || fail "the failed run left $work/new behind"

# The SFT example trains on the chosen side of the shipped pairs; here
# for one step on 20 of them.
head -n 20 "$root/data/pref/hh_harmless_pairs.jsonl" > "$work/pairs.jsonl"
sed -e "s#data/pref/hh_harmless_pairs.jsonl#$work/pairs.jsonl#" \
    -e "s#tests/data/lm/stories260K.gguf#$root/tests/data/lm/stories260K.gguf#" \
    -e "s#runs/harmless-sft#$work/example#" -e 's#"max_steps": [0-9]*#"max_steps": 1#' \
    "$root/examples/train/harmless_sft.json" > "$work/example.json"
train "$work/example.json" || fail "the SFT example failed: $(cat "$work/train.err")"
[ -e "$work/example/done" ] || fail "the SFT example wrote no done marker"

for command in plot "rounds"; do
    "$binary" $command --help > "$work/help.out" || fail "$command --help failed"
    grep -q "usage: multiround $command" "$work/help.out" || fail "$command --help has no usage"
done
echo "cli_smoke: ok"

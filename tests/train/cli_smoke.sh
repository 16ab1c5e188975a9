#!/bin/sh
# Smoke test of `multiround train`, `multiround plot` and `multiround
# rounds status`. It trains a tiny random model for a step or two to check
# the run folder rules and the config errors, and runs GRPO and PPO for a
# step or two from stories260K to check their config, checkpoints and
# resume. It draws a hand-written
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

# A resume of the finished run to the same max_steps logs that it is finished and leaves its files alone.
cp "$work/trun/metrics.jsonl" "$work/trun_metrics_before.jsonl"
touch -d '2000-01-01' "$work/trun/model.gguf"
train "$work/t3.json" --resume ||
    fail "the resume of a finished SFT run failed: $(cat "$work/train.err")"
grep -q "$work/trun already contains a finished run of 3 steps (done); nothing to do" \
    "$work/train.err" || fail "the finished-run note is missing: $(cat "$work/train.err")"
cmp -s "$work/trun/metrics.jsonl" "$work/trun_metrics_before.jsonl" ||
    fail "the resume of a finished SFT run changed metrics.jsonl"
[ "$(find "$work/trun/model.gguf" -newermt '2001-01-01')" = "" ] ||
    fail "the resume of a finished SFT run rewrote model.gguf"

# SIGTERM ends a long run after the current step with a checkpoint of it,
# exit status 128 + 15, and a second run in the folder is rejected while
# the first one trains.
write_config "$work/tlong.json" "$work/tlong" 1000000 ', "checkpoint_every": 0'
"$binary" train sft --config "$work/tlong.json" --threads 1 > /dev/null 2> "$work/long.err" &
pid=$!
waited=0
until grep -q "full training of" "$work/long.err"; do
    waited=$((waited + 1))
    if [ "$waited" -gt 1200 ] || ! kill -0 "$pid" 2> /dev/null; then
        kill -KILL "$pid" 2> /dev/null || true
        fail "the long run did not start: $(cat "$work/long.err")"
    fi
    sleep 0.1
done
if train "$work/tlong.json" --resume; then
    kill -KILL "$pid"
    fail "a second run trained in a folder that a running one uses"
fi
grep -q "is in use by process $pid" "$work/train.err" ||
    fail "the in-use message is unclear: $(cat "$work/train.err")"
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 143 ] || fail "a run stopped by SIGTERM exited with $status, not 143"
grep -q "stopped on request after step [0-9]* of 1000000; .*--resume" "$work/long.err" ||
    fail "the stop message is unclear: $(tail -n 3 "$work/long.err")"
[ -s "$work/tlong/checkpoint.json" ] || fail "the stopped run saved no checkpoint"

# init as the path of a Hugging Face config.json gives the same model.
printf '{"model_type": "llama", %s\n' "${init#\{}" > "$work/hf_config.json"
init_value="\"$work/hf_config.json\"" write_config "$work/tpath.json" "$work/tpath" 2
train "$work/tpath.json" || fail "init as a path failed: $(cat "$work/train.err")"
[ "$(grep '"init"' "$work/tpath/config.json")" = "$(grep '"init"' "$work/trun/config.json")" ] ||
    fail "init as a path gives another model"

# --KEY VALUE options set config keys: alone, or over a file's keys.
"$binary" train sft --tokenizer "$root/tests/data/lm/stories260K.gguf" --init "$init" \
    --data "$work/sft.jsonl" --out "$work/topts" --max-steps 1 --batch-size 2 \
    --max-length 32 --add-eos off > "$work/train.out" 2> "$work/train.err" ||
    fail "a run set by options alone failed: $(cat "$work/train.err")"
grep -q '"max_steps": 1,' "$work/topts/config.json" || fail "--max-steps 1 was not applied"
grep -q '"add_eos": false,' "$work/topts/config.json" || fail "--add-eos off was not applied"
write_config "$work/tover.json" "$work/tover" 2
train "$work/tover.json" --lr 0.002 --out "$work/tover2" ||
    fail "a run with options over a file failed: $(cat "$work/train.err")"
grep -q '"lr": 0.002,' "$work/tover2/config.json" || fail "--lr did not override the file"
[ ! -e "$work/tover" ] || fail "--out did not override the file's out"
# A run folder's config.json trains the same settings again.
train "$work/tover2/config.json" --out "$work/tcopy" ||
    fail "a run from a run folder's config.json failed: $(cat "$work/train.err")"
[ "$(grep -v '"out"' "$work/tcopy/config.json")" = "$(grep -v '"out"' "$work/tover2/config.json")" ] ||
    fail "a run from a run folder's config.json has other settings"
"$binary" train dpo --config "$work/tover2/config.json" --out "$work/tdpo" > /dev/null \
    2> "$work/train.err" && fail "train dpo took an SFT run's config.json"
grep -q "config key 'kind' is 'sft', but this is 'train dpo'" "$work/train.err" ||
    fail "the kind mismatch is unclear: $(cat "$work/train.err")"
(cd "$work" && "$binary" train sft --config tover.json --out 2024 > /dev/null 2>&1) ||
    fail "--out 2024 was not taken as a folder name"
[ -s "$work/2024/config.json" ] || fail "--out 2024 wrote no run folder"
if train "$work/tover.json" --max-steps; then
    fail "an option without its value was accepted"
fi
grep -q -- "--max-steps needs a value" "$work/train.err" ||
    fail "the missing-value error is unclear: $(cat "$work/train.err")"

# Config errors name the key, its expected type, or the line and column.
printf '{"lr": "0.1"}' > "$work/bad_type.json"
if train "$work/bad_type.json"; then fail "a string lr was accepted"; fi
grep -q "config key 'lr' must be a number, got a string" "$work/train.err" ||
    fail "the type error is unclear: $(cat "$work/train.err")"
printf '{"init": {"dim": 16}}' > "$work/old_init.json"
# Range errors name every bad key, each as a config key.
write_config "$work/ranges.json" "$work/ranges" 0 ', "lr": -1, "warmup_steps": 50, "batch_size": 0'
if train "$work/ranges.json"; then fail "a config of bad ranges was accepted"; fi
for want in "config key 'batch_size' is 0; it must be in \[1, 4096\]" \
    "config key 'max_steps' is 0; it must be >= 1" \
    "config key 'lr' is -1; it must be finite and >= 0"; do
    grep -q "$want" "$work/train.err" || fail "no '$want' in: $(cat "$work/train.err")"
done
write_config "$work/frac.json" "$work/frac" 2.5
if train "$work/frac.json"; then fail "2.5 steps were accepted"; fi
grep -q "config key 'max_steps' must be an integer, got 2.5" "$work/train.err" ||
    fail "the fraction error is unclear: $(cat "$work/train.err")"
init_value='null' write_config "$work/noinit.json" "$work/noinit" 2
sed -i 's/"init": null,//' "$work/noinit.json"
if train "$work/noinit.json"; then fail "a tokenizer without model or init was accepted"; fi
grep -q "config key 'tokenizer' is set but neither 'model' nor 'init' is" "$work/train.err" ||
    fail "the missing-model error is unclear: $(cat "$work/train.err")"
if train "$work/absent.json"; then fail "a missing config file was accepted"; fi
grep -q "cannot read the config file: " "$work/train.err" ||
    fail "the missing-config error is unclear: $(cat "$work/train.err")"
if "$binary" train foo --config "$work/t2.json" 2> "$work/train.err"; then
    fail "the trainer foo was accepted"
fi
grep -q "unknown trainer 'foo'; use sft, rm, classify, dpo, grpo or ppo" "$work/train.err" ||
    fail "the unknown-trainer error is unclear: $(cat "$work/train.err")"
if "$binary" train > /dev/null 2> "$work/train.err"; then fail "train without KIND passed"; fi
grep -q "train needs a KIND" "$work/train.err" || fail "no KIND error: $(cat "$work/train.err")"

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

# ---- multiround train grpo|ppo: config, options, checkpoints and resume ----
head -n 20 "$root/data/calc/train.jsonl" > "$work/calc.jsonl"
write_rl_config() { # FILE OUT [EXTRA_KEYS]
    cat > "$1" << JSON
{"model": "$root/tests/data/lm/stories260K.gguf", "train": "$work/calc.jsonl",
 "eval": "$work/calc.jsonl", "out": "$2", "steps": 2, "prompts": 2, "group": 2,
 "minibatch": 4, "eval_every": 1, "eval_episodes": 2, "turn_tokens": 8, "max_tokens": 48,
 "checkpoint_every": 1 ${3:-}}
JSON
}
train_rl() { # KIND [OPTIONS] -> $work/train.out, $work/train.err
    rl_kind=$1
    shift
    "$binary" train "$rl_kind" "$@" > "$work/train.out" 2> "$work/train.err"
}

# A run stopped after step 1 leaves a checkpoint and no done marker.
write_rl_config "$work/grpo.json" "$work/grpo"
train_rl grpo --config "$work/grpo.json" --stop-after 1 ||
    fail "a stopped GRPO run failed: $(cat "$work/train.err")"
[ -e "$work/grpo/checkpoints/step-00000001/model.safetensors" ] ||
    fail "the GRPO run wrote no checkpoint"
[ ! -e "$work/grpo/done" ] || fail "the stopped GRPO run wrote done"
grep -q '"stop_after"' "$work/grpo/config.json" && fail "config.json records stop_after"
grep -q '"eval_episodes": 2,' "$work/grpo/config.json" ||
    fail "config.json lacks eval_episodes: $(cat "$work/grpo/config.json")"

# Its folder needs --resume, which rejects a changed setting.
if train_rl grpo --config "$work/grpo.json"; then
    fail "a second GRPO run into a started run's folder succeeded"
fi
grep -q "$work/grpo already contains a started run (checkpoint.json); pass --resume" \
    "$work/train.err" || fail "the started-run error is unclear: $(cat "$work/train.err")"
if train_rl grpo --config "$work/grpo.json" --resume --lr 0.01; then
    fail "a GRPO resume with another lr succeeded"
fi
grep -q "differs in lr (stored 0.0001, now 0.01)" "$work/train.err" ||
    fail "the changed-setting error is unclear: $(cat "$work/train.err")"
train_rl grpo --config "$work/grpo.json" --resume ||
    fail "the GRPO resume failed: $(cat "$work/train.err")"
grep -q "^grpo: step 2 of 2, .* s in this session" "$work/train.out" ||
    fail "the GRPO summary: $(cat "$work/train.out")"
grep -q "resuming from $work/grpo/checkpoints/step-00000001" "$work/train.err" ||
    fail "the GRPO run did not resume from step 1: $(cat "$work/train.err")"
[ -e "$work/grpo/done" ] && [ -e "$work/grpo/model.gguf" ] || fail "the resumed GRPO run did not finish"
[ "$(grep -c '"step":' "$work/grpo/metrics.jsonl")" -eq 3 ] ||
    fail "metrics.jsonl does not have one line for each of steps 0 to 2"

# A resume of the finished run says so and leaves its files alone.
cp "$work/grpo/metrics.jsonl" "$work/grpo_metrics_before.jsonl"
touch -d '2000-01-01' "$work/grpo/model.gguf"
train_rl grpo --config "$work/grpo.json" --resume ||
    fail "the resume of a finished GRPO run failed: $(cat "$work/train.err")"
grep -q "$work/grpo already contains a finished run of 2 steps (done); nothing to do" \
    "$work/train.err" || fail "the finished-run note is missing: $(cat "$work/train.err")"
grep -q "^grpo: step 2 of 2, " "$work/train.out" || fail "the summary: $(cat "$work/train.out")"
cmp -s "$work/grpo/metrics.jsonl" "$work/grpo_metrics_before.jsonl" ||
    fail "the resume of a finished run changed metrics.jsonl"
[ "$(find "$work/grpo/model.gguf" -newermt '2001-01-01')" = "" ] ||
    fail "the resume of a finished run rewrote model.gguf"

# PPO writes its value head; an option overrides the config file.
write_rl_config "$work/ppo.json" "$work/ppo"
train_rl ppo --config "$work/ppo.json" --group 1 --steps 1 ||
    fail "a PPO run failed: $(cat "$work/train.err")"
[ -e "$work/ppo/value_head.safetensors" ] || fail "the PPO run wrote no value head"
grep -q '"group": 1,' "$work/ppo/config.json" || fail "--group did not override the config"
grep -q '"steps": 1,' "$work/ppo/config.json" || fail "--steps did not override the config"

# Config errors name every bad key with its expected type or range.
write_rl_config "$work/bad_rl.json" "$work/bad" ', "whiten": "on", "clip": 2, "epoch": 1'
if train_rl ppo --config "$work/bad_rl.json"; then fail "a bad PPO config was accepted"; fi
grep -q "config key 'whiten' must be true or false (on or off as an option), got a string" "$work/train.err" ||
    fail "the switch error is unclear: $(cat "$work/train.err")"
grep -q "config key 'clip' must be a number in \[0, 0.99\], got 2" "$work/train.err" ||
    fail "the range error is unclear: $(cat "$work/train.err")"
grep -q "config key 'epoch' is unknown; run 'multiround train ppo --help'" "$work/train.err" ||
    fail "the unknown-key error is unclear: $(cat "$work/train.err")"
[ ! -e "$work/bad" ] || fail "a rejected config created its out folder"

# The example configs parse and start; here for one small step each, with
# every path of the example replaced. The GRPO example filters groups,
# which needs at least 2 episodes per group.
for kind in grpo ppo; do
    group=1
    [ "$kind" = grpo ] && group=2
    train_rl $kind --config "$root/examples/train/calc_$kind.json" \
        --model "$root/tests/data/lm/stories260K.gguf" --train "$work/calc.jsonl" \
        --eval "$work/calc.jsonl" --out "$work/example_$kind" --steps 1 --prompts 2 \
        --group $group --minibatch 2 --eval-episodes 1 --max-tokens 48 ||
        fail "examples/train/calc_$kind.json failed: $(cat "$work/train.err")"
    grep -q '"temperature": 0.7,' "$work/example_$kind/config.json" ||
        fail "the $kind example's temperature is not in config.json"
done
grep -q '"filter_groups": true,' "$work/example_grpo/config.json" ||
    fail "the grpo example's filter_groups is not in config.json"
"$binary" train grpo --help > "$work/help.out" || fail "train grpo --help failed"
grep -q "^  checkpoint_every  steps between checkpoints; also after the last \[10\]" \
    "$work/help.out" || fail "train grpo --help lacks checkpoint_every"
grep -q "^  kl                KL coefficient, 0 for no KL term \[0.04\]" "$work/help.out" ||
    fail "train grpo --help lacks the GRPO default of kl"

for command in plot "rounds"; do
    "$binary" $command --help > "$work/help.out" || fail "$command --help failed"
    grep -q "usage: multiround $command" "$work/help.out" || fail "$command --help has no usage"
done
echo "cli_smoke: ok"

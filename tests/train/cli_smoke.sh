#!/bin/sh
# Smoke test of `multiround plot` and `multiround rounds status`. It draws
# a hand-written metrics.jsonl with a NaN and a partial last line, and
# checks the SVG with xmllint when that is installed. It checks the errors
# for an empty log and an unknown metric, and prints a hand-written
# manifest.
#
# usage: cli_smoke.sh PATH_TO_MULTIROUND
set -eu

binary=${1:?usage: cli_smoke.sh PATH_TO_MULTIROUND}
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
if "$binary" rounds status "$work/empty" 2> "$work/status.err"; then
    fail "rounds status of a folder without a manifest succeeded"
fi
grep -q "manifest.json" "$work/status.err" || fail "the missing-manifest error names no file"

for command in plot "rounds"; do
    "$binary" $command --help > "$work/help.out" || fail "$command --help failed"
    grep -q "usage: multiround $command" "$work/help.out" || fail "$command --help has no usage"
done
echo "cli_smoke: ok"

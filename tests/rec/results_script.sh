#!/bin/sh
# Runs scripts/rec-results against a stand-in for the multiround binary,
# in a copy of the repository layout under a temporary folder, and checks
# the commands it runs, the records it keeps and the table it prints.
# Usage: sh tests/rec/results_script.sh (from the repository root).
set -eu

repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# The script finds data/ and results/ next to its own folder, so a copy
# in $work writes its records there and never into the repository.
mkdir -p "$work/scripts" "$work/data/rec"
cp "$repo/scripts/rec-results" "$work/scripts/"
: > "$work/data/rec/Beauty.txt"

# The stand-in logs its arguments and writes a finished run into --out:
# config.json, metrics.json with test figures, done and best weights.
cat > "$work/stub" <<'EOF'
#!/bin/sh
echo "$*" >> "$STUB_CALLS"
out=""
while [ $# -gt 0 ]; do
    if [ "$1" = "--out" ]; then
        out=$2
    fi
    shift
done
mkdir -p "$out"
echo '{}' > "$out/config.json"
echo '{"best_epoch": 3, "test": {"hit@50": 0.25, "hit@100": 0.5, "ndcg@50": 0.125, "ndcg@100": 0.0625}}' \
    > "$out/metrics.json"
echo '{}' > "$out/done"
echo weights > "$out/model.safetensors"
EOF
chmod +x "$work/stub"
export MULTIROUND="$work/stub" STUB_CALLS="$work/calls"
export DATASETS=Beauty BACKBONES=sasrec THREADS=1

# 1. A fresh tree: the base, then Ada-Retrieval from the base run folder
#    with the requested epoch cap, patience and thread count.
ADA_PATIENCE=5 ADA_EPOCHS=7 bash "$work/scripts/rec-results" "$work/runs" > "$work/table" 2> /dev/null
[ "$(wc -l < "$work/calls")" -eq 2 ] || fail "expected 2 runs, got: $(cat "$work/calls")"
base_call=$(sed -n 1p "$work/calls")
ada_call=$(sed -n 2p "$work/calls")
case $base_call in
    *"--ada"*) fail "the base run got --ada: $base_call" ;;
    *"--backbone sasrec --out $work/runs/sasrec-beauty-base --seed 366849 --threads 1") ;;
    *) fail "unexpected base command: $base_call" ;;
esac
case $ada_call in
    *"--ada --init $work/runs/sasrec-beauty-base --out $work/runs/sasrec-beauty-ada "*) ;;
    *) fail "unexpected Ada-Retrieval command: $ada_call" ;;
esac
case $ada_call in
    *"--epochs 7 --patience 5 --threads 1") ;;
    *) fail "Ada-Retrieval options missing: $ada_call" ;;
esac

# 2. Records: a base keeps its weights, an Ada-Retrieval run does not.
[ -f "$work/results/rec/sasrec-beauty-base/model.safetensors" ] || fail "base weights not recorded"
[ -f "$work/results/rec/sasrec-beauty-ada/done" ] || fail "Ada-Retrieval run not recorded"
[ ! -f "$work/results/rec/sasrec-beauty-ada/model.safetensors" ] ||
    fail "Ada-Retrieval weights were recorded"

# 3. The table: one row per finished run, four decimals.
grep -qx '| Beauty | sasrec | base | 3 | 0.2500 | 0.5000 | 0.1250 | 0.0625 |' "$work/table" ||
    fail "base row missing from: $(cat "$work/table")"
grep -qx '| Beauty | sasrec | Ada-Retrieval | 3 | 0.2500 | 0.5000 | 0.1250 | 0.0625 |' "$work/table" ||
    fail "Ada-Retrieval row missing from: $(cat "$work/table")"

# 4. A pair with a finished record is skipped.
: > "$work/calls"
bash "$work/scripts/rec-results" "$work/runs" > /dev/null 2> "$work/log"
[ ! -s "$work/calls" ] || fail "a recorded pair ran again: $(cat "$work/calls")"
grep -q "has a record, skipped" "$work/log" || fail "no skip message: $(cat "$work/log")"

# 5. Without run folders, Ada-Retrieval starts from the recorded base
#    weights, the default patience is the protocol's 10, and the
#    zero-padding variant gets its own folder.
rm -rf "$work/runs"
ADA_ZERO_PADDING=1 bash "$work/scripts/rec-results" "$work/runs" > /dev/null 2> /dev/null
[ "$(wc -l < "$work/calls")" -eq 1 ] || fail "expected 1 run, got: $(cat "$work/calls")"
case $(cat "$work/calls") in
    *"--ada --ada-zero-padding --init $work/results/rec/sasrec-beauty-base --out $work/runs/sasrec-beauty-ada-zero "*"--patience 10 "*) ;;
    *) fail "unexpected zero-padding command: $(cat "$work/calls")" ;;
esac

# 6. An invalid ADA_ZERO_PADDING is rejected before anything runs.
: > "$work/calls"
status=0
ADA_ZERO_PADDING=yes bash "$work/scripts/rec-results" "$work/runs" > /dev/null 2> "$work/log" ||
    status=$?
[ "$status" -eq 2 ] || fail "ADA_ZERO_PADDING=yes exited with $status, expected 2"
grep -q "ADA_ZERO_PADDING must be 0 or 1" "$work/log" || fail "no error message: $(cat "$work/log")"
[ ! -s "$work/calls" ] || fail "a run started despite the error"

echo "rec-results script: all checks passed"

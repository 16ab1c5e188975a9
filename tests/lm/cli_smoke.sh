#!/bin/sh
# Smoke test of the language-model commands on stories260K: info, greedy
# generation, conversion GGUF -> Hugging Face folder -> GGUF with the same
# greedy text, a quantised conversion, lm init and lm score.
#
# usage: cli_smoke.sh PATH_TO_MULTIROUND (run from the tests/ folder)
set -eu

binary=${1:?usage: cli_smoke.sh PATH_TO_MULTIROUND}
model=data/lm/stories260K.gguf
work=$(mktemp -d "${TMPDIR:-/tmp}/mr_lm_cli_XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
    echo "cli_smoke: $*" >&2
    exit 1
}

"$binary" lm info "$model" > "$work/info.out" 2> /dev/null || fail "lm info failed"
grep -q "vocabulary: 512" "$work/info.out" || fail "lm info did not report 512 tokens"

# Greedy from BOS continues the known story.
"$binary" generate -m "$model" -p "Once upon a time" -n 12 --temp 0 \
    > "$work/greedy.out" 2> /dev/null || fail "generate failed"
grep -q "there was a little girl named Lily" "$work/greedy.out" ||
    fail "greedy text is not the known story: $(cat "$work/greedy.out")"

"$binary" lm convert "$model" "$work/hf" > /dev/null 2>&1 || fail "lm convert to a folder failed"
[ -s "$work/hf/config.json" ] || fail "the folder has no config.json"
"$binary" lm convert "$work/hf" "$work/back.gguf" > /dev/null 2>&1 ||
    fail "lm convert back to GGUF failed"
"$binary" generate -m "$work/back.gguf" -p "Once upon a time" -n 12 --temp 0 \
    > "$work/back.out" 2> /dev/null || fail "generate on the converted model failed"
cmp -s "$work/greedy.out" "$work/back.out" || fail "the round trip changed the greedy text"

"$binary" lm convert "$model" "$work/q8.gguf" --type q8_0 > /dev/null 2>&1 ||
    fail "lm convert --type q8_0 failed"
"$binary" lm info "$work/q8.gguf" 2> /dev/null | grep -q "q8_0" || fail "no q8_0 tensors"

cat > "$work/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
 "vocab_size": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
 "max_position_embeddings": 128, "tie_word_embeddings": false}
JSON
"$binary" lm init --config "$work/config.json" --out "$work/init.gguf" --seed 3 \
    > /dev/null 2>&1 || fail "lm init failed"
"$binary" lm info "$work/init.gguf" 2> /dev/null | grep -q "layers: 2" ||
    fail "lm init did not write 2 layers"

# A likely continuation scores higher than an unlikely one.
printf '%s\n' '{"prompt": "Once upon a time", "completion": " there was a little girl"}' \
    '{"prompt": "Once upon a time", "completion": " zebra quantum"}' > "$work/score.jsonl"
"$binary" lm score -m "$model" --data "$work/score.jsonl" > "$work/score.out" 2> /dev/null ||
    fail "lm score failed"
[ "$(wc -l < "$work/score.out")" -eq 2 ] || fail "lm score did not print 2 lines"
awk -F'"logprob":' 'NR == 1 { split($2, a, ","); first = a[1] }
    NR == 2 { split($2, b, ","); if (!(first > b[1])) exit 1 }' "$work/score.out" ||
    fail "the story continuation did not score higher: $(cat "$work/score.out")"

echo "cli_smoke: ok"

#!/bin/sh
# Smoke test of the language-model commands on stories260K: info, greedy
# generation, conversion GGUF -> Hugging Face folder -> GGUF with the same
# greedy text, a quantised conversion, lm init and lm score, and the
# errors for unreadable inputs, unknown options and bad score lines.
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

# Every line is scored; a bad line is named by its number and fails the run.
printf '%s\n' '{"prompt": "Once upon a time", "completion": " there"}' 'not json' \
    '{"prompt": "Once", "completion": " upon"}' > "$work/mixed.jsonl"
if "$binary" lm score -m "$model" --data "$work/mixed.jsonl" > "$work/mixed.out" \
    2> "$work/mixed.err"; then
    fail "lm score with a bad line exited 0"
fi
grep -q '"line":1,' "$work/mixed.out" || fail "lm score printed no result for line 1"
grep -q '"line":3,' "$work/mixed.out" || fail "lm score printed no result for line 3"
grep -q "mixed.jsonl:2:" "$work/mixed.err" || fail "lm score did not name line 2"

# A line that cannot be scored (longer than the 2048-token context) is
# named by its input line, not by its index in a batch.
long=$(awk 'BEGIN { for (i = 0; i < 2100; i++) printf "a b "; }')
printf '%s\n' '{"prompt": "Once", "completion": " upon"}' \
    "{\"prompt\": \"$long\", \"completion\": \" x\"}" > "$work/long.jsonl"
if "$binary" lm score -m "$model" --data "$work/long.jsonl" > "$work/long.out" \
    2> "$work/long.err"; then
    fail "lm score of a too-long line exited 0"
fi
grep -q "long.jsonl:2: scoring failed" "$work/long.err" ||
    fail "lm score did not name line 2: $(cat "$work/long.err")"
grep -q '"line":1,' "$work/long.out" || fail "lm score printed no result for the good line"

# Unreadable inputs fail with the path and the reason.
if "$binary" lm score -m "$model" --data "$work" > "$work/dir.out" 2> "$work/dir.err"; then
    fail "lm score on a directory exited 0"
fi
grep -q "cannot open the data file $work: Is a directory" "$work/dir.err" ||
    fail "lm score on a directory gave an unclear error: $(cat "$work/dir.err")"
if "$binary" generate -m "$work/missing.gguf" -p x 2> "$work/missing.err"; then
    fail "generate with a missing model exited 0"
fi
grep -q "cannot open model $work/missing.gguf: No such file or directory" "$work/missing.err" ||
    fail "a missing model gave an unclear error: $(cat "$work/missing.err")"

# An unknown option in last position is unknown, not missing a value.
for command in "lm score" generate serve chat "lm info" "index embed"; do
    # shellcheck disable=SC2086
    if "$binary" $command --bogus > /dev/null 2> "$work/bogus.err"; then
        fail "$command accepted --bogus"
    fi
    grep -q "unknown option '--bogus'" "$work/bogus.err" ||
        fail "$command: $(cat "$work/bogus.err")"
done

# Temperature ranges agree across generate, chat and serve.
if "$binary" generate -m "$model" -p x --temp 3 2> "$work/temp.err"; then
    fail "generate accepted --temp 3"
fi
grep -q "\[0, 2\]" "$work/temp.err" || fail "generate --temp range is not [0, 2]"

# generate and chat parse their common sampling options with one parser,
# so their help lines and their messages for invalid values are the same.
"$binary" generate --help > "$work/generate.help"
"$binary" chat --help > "$work/chat.help"
for option in "-n, --max-tokens N" "--temp T" "--top-p P" "--stop TEXT"; do
    grep -F -e "  $option " "$work/generate.help" > "$work/generate.line" ||
        fail "generate --help has no line for $option"
    grep -F -e "  $option " "$work/chat.help" > "$work/chat.line" ||
        fail "chat --help has no line for $option"
    if [ "$option" = "-n, --max-tokens N" ]; then
        # The default differs: 128 for generate, 256 for chat -m.
        sed -i 's/(default: [0-9]*)//' "$work/generate.line" "$work/chat.line"
    fi
    cmp -s "$work/generate.line" "$work/chat.line" ||
        fail "generate and chat differ on $option: $(cat "$work/generate.line" "$work/chat.line")"
done
for option in -n --temp --top-p --seed; do
    if "$binary" generate -m "$model" -p x "$option" 1e99 2> "$work/generate.err"; then
        fail "generate accepted $option 1e99"
    fi
    if echo x | "$binary" chat -m "$model" "$option" 1e99 > /dev/null 2> "$work/chat.err"; then
        fail "chat accepted $option 1e99"
    fi
    cmp -s "$work/generate.err" "$work/chat.err" ||
        fail "generate and chat reject $option 1e99 differently: $(cat "$work/generate.err" "$work/chat.err")"
done

# A model without a chat template: the error names the option.
if echo hello | "$binary" chat -m "$model" > /dev/null 2> "$work/template.err"; then
    fail "chat without a template exited 0"
fi
grep -q -- "--chat-template chatml|llama3|llama2" "$work/template.err" ||
    fail "chat without a template did not name the option: $(cat "$work/template.err")"

# Converting with --type f16 keeps 1-D weights in f32 and says so.
"$binary" lm convert "$model" "$work/hf16" --type f16 > /dev/null 2> "$work/f16.err" ||
    fail "lm convert --type f16 failed"
grep -q "48 tensors (37 f16, 11 f32)" "$work/f16.err" ||
    fail "lm convert did not log per-type counts: $(cat "$work/f16.err")"

# hidden_size 60 with 7 heads has no head width unless head_dim is set.
sed -e 's/"hidden_size": 32/"hidden_size": 60/' -e 's/"num_attention_heads": 4/"num_attention_heads": 7/' \
    -e 's/"num_key_value_heads": 2/"num_key_value_heads": 7/' "$work/config.json" > "$work/odd.json"
if "$binary" lm init --config "$work/odd.json" --out "$work/odd.gguf" 2> "$work/odd.err"; then
    fail "lm init accepted hidden_size 60 with 7 heads"
fi
grep -q '"hidden_size" 60 is not a multiple of "num_attention_heads" 7' "$work/odd.err" ||
    fail "lm init gave an unclear error: $(cat "$work/odd.err")"
[ ! -e "$work/odd.gguf" ] || fail "a failed lm init left $work/odd.gguf behind"
sed -e 's/"hidden_size": 60/"hidden_size": 60, "head_dim": 8/' "$work/odd.json" > "$work/odd_hd.json"
"$binary" lm init --config "$work/odd_hd.json" --out "$work/odd_hd.gguf" > /dev/null 2>&1 ||
    fail "lm init with an explicit head_dim failed"

echo "cli_smoke: ok"

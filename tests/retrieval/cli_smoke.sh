#!/bin/sh
# Smoke test of `multiround index build`, `index embed` and `search`:
# indexes a four-passage corpus, searches it as text and JSON, re-indexes
# it, checks that FTS5 syntax in a query is harmless, then embeds it with
# the story model and runs dense and hybrid searches. It also checks the
# errors for a directory given as a file, a corpus given as an index and
# question files with bad or no gold titles.
#
# usage: cli_smoke.sh PATH_TO_MULTIROUND
set -eu

binary=${1:?usage: cli_smoke.sh PATH_TO_MULTIROUND}
work=$(mktemp -d "${TMPDIR:-/tmp}/mr_retrieval_cli_XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
    echo "cli_smoke: $*" >&2
    exit 1
}

cat > "$work/corpus.jsonl" <<'JSONL'
{"id": 1, "title": "Apples", "text": "Apples grow on trees in orchards."}
{"id": 2, "title": "Pears", "text": "Pears are sweet fruit that grow on trees."}
{"id": "three", "title": "Rivers", "text": "The river flows to the sea."}
{"id": 4, "title": "Orchards", "text": "An orchard of apple trees and apple blossoms.", "year": 1900}
JSONL

"$binary" index build "$work/corpus.jsonl" -o "$work/corpus.db" > "$work/build.out" 2>&1 ||
    fail "index build failed: $(cat "$work/build.out")"
[ -s "$work/corpus.db" ] || fail "index build wrote no database"

# "apple" stems to the same term in passages 1 and 4 only.
"$binary" search "$work/corpus.db" "apple" -k 3 --json > "$work/search.out" 2> /dev/null ||
    fail "search failed"
[ "$(wc -l < "$work/search.out")" -eq 2 ] || fail "search for apple did not find 2 passages"
"$binary" search "$work/corpus.db" "river" --json > "$work/river.out" 2> /dev/null ||
    fail "search for river failed"
grep -q '"id":"three"' "$work/river.out" || fail "search for river did not find passage three"

"$binary" search "$work/corpus.db" 'apple" OR title:(NEAR* ^' -k 5 > /dev/null 2>&1 ||
    fail "a query with FTS5 syntax failed"

# A directory as the corpus fails with the reason, and leaves no database.
mkdir "$work/folder"
if "$binary" index build "$work/folder" -o "$work/folder.db" 2> "$work/dir.err"; then
    fail "index build of a directory succeeded"
fi
grep -q "cannot open $work/folder: Is a directory" "$work/dir.err" ||
    fail "index build of a directory gave an unclear error: $(cat "$work/dir.err")"
[ ! -e "$work/folder.db" ] || fail "index build of a directory left $work/folder.db behind"

# A corpus whose first line is bad leaves no empty database either.
printf 'not json\n' > "$work/bad.jsonl"
if "$binary" index build "$work/bad.jsonl" -o "$work/bad.db" 2> /dev/null; then
    fail "index build of a bad corpus succeeded"
fi
[ ! -e "$work/bad.db" ] || fail "a failed index build left an empty $work/bad.db behind"

if "$binary" index build "$work/corpus.jsonl" --bogus 2> "$work/bogus.err"; then
    fail "index build accepted --bogus"
fi
grep -q "unknown option '--bogus'" "$work/bogus.err" ||
    fail "an unknown last option was not reported as unknown: $(cat "$work/bogus.err")"

if "$binary" search "$work/folder" apple 2> "$work/search_dir.err"; then
    fail "search on a directory succeeded"
fi
grep -q "cannot open $work/folder: Is a directory" "$work/search_dir.err" ||
    fail "search on a directory gave an unclear error: $(cat "$work/search_dir.err")"

# A corpus given as the index: the hint names a .db path beside it.
if "$binary" search "$work/corpus.jsonl" apple 2> "$work/not_index.err"; then
    fail "search on a JSONL corpus succeeded"
fi
grep -q "index build $work/corpus.jsonl -o $work/corpus.db'" "$work/not_index.err" ||
    fail "the hint does not name a .db path: $(cat "$work/not_index.err")"

# supporting_titles as a string is rejected with its line number.
printf '%s\n' '{"question": "apple trees", "supporting_titles": ["Apples"]}' \
    '{"question": "who", "supporting_titles": "Lothair II"}' > "$work/bad_gold.jsonl"
if "$binary" search "$work/corpus.db" --questions "$work/bad_gold.jsonl" 2> "$work/gold.err" \
    > /dev/null; then
    fail "search accepted a string as supporting_titles"
fi
grep -q "bad_gold.jsonl:2: \"supporting_titles\" must be an array" "$work/gold.err" ||
    fail "the supporting_titles error is unclear: $(cat "$work/gold.err")"

# Without gold titles, recall is n/a rather than 0.
printf '%s\n' '{"question": "apple trees"}' > "$work/no_gold.jsonl"
"$binary" search "$work/corpus.db" --questions "$work/no_gold.jsonl" > "$work/no_gold.out" \
    2> /dev/null || fail "search --questions without gold titles failed"
grep -q "recall: n/a" "$work/no_gold.out" || fail "recall without gold is not n/a"
if grep -q "0.0000" "$work/no_gold.out"; then
    fail "recall without gold titles printed 0: $(cat "$work/no_gold.out")"
fi
"$binary" search "$work/corpus.db" --questions "$work/no_gold.jsonl" --json \
    > "$work/no_gold.json" 2> /dev/null || fail "search --questions --json failed"
grep -q '"recall@2":null' "$work/no_gold.json" || fail "JSON recall without gold is not null"

"$binary" search "$work/corpus.db" "apple" --exclude 4 -k 5 --json > "$work/exclude.out" \
    2> /dev/null || fail "search --exclude failed"
grep -q '"id":[[:space:]]*"*4' "$work/exclude.out" && fail "--exclude 4 still listed passage 4"

# Indexing the same file again adds nothing.
"$binary" index build "$work/corpus.jsonl" -o "$work/corpus.db" > "$work/rebuild.out" 2>&1 ||
    fail "re-indexing failed"
grep -q "0 added, 4 skipped" "$work/rebuild.out" ||
    fail "re-indexing did not skip the 4 existing passages"

# Dense vectors from the story model: embed, resume, search, and reject a
# query model that did not embed the index.
model=data/lm/stories260K.gguf
"$binary" index embed "$work/corpus.db" -m "$model" --batch 3 > "$work/embed.out" 2>&1 ||
    fail "index embed failed: $(cat "$work/embed.out")"
grep -q "4 passages embedded, 0 already" "$work/embed.out" ||
    fail "index embed did not embed the 4 passages: $(cat "$work/embed.out")"
"$binary" index embed "$work/corpus.db" -m "$model" > "$work/reembed.out" 2>&1 ||
    fail "re-embedding failed"
grep -q "0 passages embedded, 4 already" "$work/reembed.out" ||
    fail "re-embedding did not skip the 4 embedded passages"

"$binary" search "$work/corpus.db" "Pears
Pears are sweet fruit that grow on trees." --dense -m "$model" -k 4 --json \
    > "$work/dense.out" 2> /dev/null || fail "dense search failed"
[ "$(wc -l < "$work/dense.out")" -eq 4 ] || fail "dense search did not rank all 4 passages"
head -n 1 "$work/dense.out" | grep -q '"id":2,' ||
    fail "dense search for passage 2's own text did not rank it first"
"$binary" search "$work/corpus.db" "apple" --hybrid -m "$model" -k 4 --exclude 4 --json \
    > "$work/hybrid.out" 2> /dev/null || fail "hybrid search failed"
[ "$(wc -l < "$work/hybrid.out")" -eq 3 ] || fail "hybrid search with --exclude 4 did not give 3"
grep -q '"id":4,' "$work/hybrid.out" && fail "hybrid --exclude 4 still listed passage 4"
"$binary" search "$work/corpus.db" "apple" --dense > /dev/null 2>&1 &&
    fail "dense search without -m did not fail"

"$binary" lm convert "$model" "$work/other.gguf" --type f16 > /dev/null 2>&1 ||
    fail "converting the model failed"
"$binary" search "$work/corpus.db" "apple" --dense -m "$work/other.gguf" > /dev/null \
    2> "$work/other.err" && fail "dense search with another model did not fail"
grep -q "other.gguf" "$work/other.err" && grep -q "stories260K.gguf" "$work/other.err" ||
    fail "the wrong-model error does not name both models: $(cat "$work/other.err")"

for command in "index build" "index embed" search; do
    # shellcheck disable=SC2086
    "$binary" $command --help > "$work/help.out" || fail "$command --help failed"
done
echo "cli_smoke: ok"

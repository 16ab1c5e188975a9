#!/bin/sh
# Smoke test of `multiround index build`, `index embed` and `search`:
# indexes a four-passage corpus, searches it as text and JSON, re-indexes
# it, checks that FTS5 syntax in a query is harmless, then embeds it with
# the story model and runs dense and hybrid searches.
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

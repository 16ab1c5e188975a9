#!/bin/sh
# Smoke test of `multiround index build` and `multiround search`: indexes a
# four-passage corpus, searches it as text and JSON, re-indexes it, and
# checks that FTS5 syntax in a query is harmless.
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

for command in "index build" search; do
    # shellcheck disable=SC2086
    "$binary" $command --help > "$work/help.out" || fail "$command --help failed"
done
echo "cli_smoke: ok"

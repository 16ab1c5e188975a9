/*
 * SentencePiece-style BPE encoding, as SentencePiece's BPE model and
 * llama.cpp's "llama" vocabularies run it.
 *
 * Spaces become U+2581, optionally with one U+2581 prepended. The initial
 * symbols are the UTF-8 characters of that text, and each byte that is not
 * part of a valid UTF-8 sequence is a symbol of its own. A priority queue
 * contains every adjacent pair whose concatenation is a token; the pair with
 * the highest score merges first (the leftmost among equal scores), and
 * the pairs around the merged symbol join the queue. Stale entries are
 * skipped when popped. A final symbol that is not an output token splits
 * back into the pieces it was merged from (SentencePiece does this for
 * unused pieces), and a character without a token falls back to its
 * <0xNN> byte tokens.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* Returns whether tokens of this type may be the result of a merge; the
 * same set SentencePiece merges into (normal, user-defined, unused). */
static bool mergeable(int type) {
    return type == MR_TOKEN_NORMAL || type == MR_TOKEN_USER_DEFINED || type == MR_TOKEN_UNUSED;
}

/* Queues the merge of adjacent symbols left and right when their text is
 * a mergeable token. */
static bool try_add_bigram(const mr_tokenizer *tok, mr_tok_scratch *scratch, int32_t left,
                           int32_t right) {
    if (left < 0 || right < 0) {
        return true;
    }
    const mr_tok_symbol *l = &scratch->symbols[left];
    const mr_tok_symbol *r = &scratch->symbols[right];
    size_t len = (size_t)(r->start + r->len - l->start);
    if (len > tok->max_token_len) {
        return true;
    }

    int32_t id = mr_tok_map_get_string(&tok->by_text, scratch->text + l->start, len);
    if (id < 0 || !mergeable(tok->types[id])) {
        return true;
    }
    mr_tok_bigram bigram = {
        .priority = -(double)tok->scores[id], .left = left, .right = right,
        .check = (int32_t)len, .result = id};
    return mr_tok_heap_push(&scratch->heap, bigram);
}

/* Appends the ids of text[start, start + len): the token itself when it is
 * an output token, else the two pieces it was merged from, else byte
 * fallback, else the unknown token. */
static mr_status resegment(const mr_tokenizer *tok, mr_tok_scratch *scratch, int32_t start,
                           int32_t len, mr_tok_ids *ids, mr_error *err) {
    const char *text = scratch->text + start;
    int32_t id = mr_tok_map_get_string(&tok->by_text, text, (size_t)len);
    if (id >= 0 && (tok->types[id] == MR_TOKEN_NORMAL || tok->types[id] == MR_TOKEN_USER_DEFINED)) {
        return mr_tok_ids_push(ids, id) ? MR_OK : MR_ERR_NO_MEMORY;
    }

    /* NOTE: neither test vocabulary has unused tokens, so no test runs this
     * split path. */
    if (tok->has_unused) {
        uint64_t key = ((uint64_t)(uint32_t)start << 32) | (uint32_t)len;
        int32_t left_len = mr_tok_map_get_u64(&scratch->splits, key);
        if (left_len > 0) {
            mr_status status = resegment(tok, scratch, start, left_len, ids, err);
            if (status == MR_OK) {
                status = resegment(tok, scratch, start + left_len, len - left_len, ids, err);
            }
            return status;
        }
    }

    bool all_bytes = true;
    for (int32_t i = 0; i < len; i++) {
        all_bytes = all_bytes && tok->byte_ids[(unsigned char)text[i]] >= 0;
    }
    if (all_bytes) {
        for (int32_t i = 0; i < len; i++) {
            if (!mr_tok_ids_push(ids, tok->byte_ids[(unsigned char)text[i]])) {
                return MR_ERR_NO_MEMORY;
            }
        }
        return MR_OK;
    }
    if (tok->unk_id >= 0) {
        return mr_tok_ids_push(ids, tok->unk_id) ? MR_OK : MR_ERR_NO_MEMORY;
    }
    return mr_error_set(err, MR_ERR_UNSUPPORTED,
                        "tokenizer: \"%.*s\" has no token, and the vocabulary has neither its "
                        "<0xNN> byte tokens nor an unknown token",
                        (int)(len < 32 ? len : 32), text);
}

/* Writes the escaped text into scratch: an optional U+2581 first, then
 * the input with every space replaced by U+2581. Returns its length. */
static size_t escape_spaces(const char *text, size_t len, bool space_prefix, char *out) {
    size_t n = 0;
    if (space_prefix) {
        memcpy(out, "\xE2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(out + n, "\xE2\x96\x81", 3);
            n += 3;
        } else {
            out[n++] = text[i];
        }
    }
    return n;
}

/* Merges the queued pair at the top of the heap if it is still current.
 * Returns false when memory runs out. */
static bool apply_merge(const mr_tokenizer *tok, mr_tok_scratch *scratch,
                        const mr_tok_bigram *bigram) {
    mr_tok_symbol *symbols = scratch->symbols;
    mr_tok_symbol *l = &symbols[bigram->left];
    mr_tok_symbol *r = &symbols[bigram->right];

    /* Symbols only grow, so an unchanged total length means both sides
     * are still the ones this entry was queued for. */
    if (l->len == 0 || r->len == 0 || l->len + r->len != bigram->check) {
        return true;
    }

    if (tok->has_unused) {
        uint64_t key = ((uint64_t)(uint32_t)l->start << 32) | (uint32_t)bigram->check;
        if (mr_tok_map_put_u64(&scratch->splits, key, l->len) < 0) {
            return false;
        }
    }
    l->len += r->len;
    r->len = 0;
    l->next = r->next;
    if (r->next >= 0) {
        symbols[r->next].prev = bigram->left;
    }

    return try_add_bigram(tok, scratch, l->prev, bigram->left) &&
           try_add_bigram(tok, scratch, bigram->left, l->next);
}

mr_status mr_tok_encode_spm(const mr_tokenizer *tok, const char *text, size_t len,
                            bool space_prefix, mr_tok_scratch *scratch, mr_tok_ids *ids,
                            mr_error *err) {
    size_t bound = 3 * len + 3;
    if (!mr_tok_scratch_reserve(scratch, bound, bound)) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for %zu bytes of text",
                            len);
    }
    if (tok->has_unused) {
        /* Offsets restart with each fragment, so the splits do too. */
        if (scratch->splits.slots != NULL) {
            mr_tok_map_free(&scratch->splits);
        }
        if (!mr_tok_map_init(&scratch->splits, 1024, false)) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory");
        }
    }
    size_t n_bytes = escape_spaces(text, len, space_prefix, scratch->text);

    /* One symbol per UTF-8 character, or per invalid byte. */
    int32_t n_symbols = 0;
    for (size_t i = 0; i < n_bytes;) {
        int32_t cp;
        int n = mr_tok_utf8_decode((const unsigned char *)scratch->text + i, n_bytes - i, &cp);
        scratch->symbols[n_symbols] = (mr_tok_symbol){
            .prev = n_symbols - 1, .next = -1, .start = (int32_t)i, .len = n, .id = -1};
        if (n_symbols > 0) {
            scratch->symbols[n_symbols - 1].next = n_symbols;
        }
        n_symbols++;
        i += (size_t)n;
    }

    scratch->heap.count = 0;
    bool ok = true;
    for (int32_t i = 0; ok && i + 1 < n_symbols; i++) {
        ok = try_add_bigram(tok, scratch, i, i + 1);
    }
    mr_tok_bigram bigram;
    while (ok && mr_tok_heap_pop(&scratch->heap, &bigram)) {
        ok = apply_merge(tok, scratch, &bigram);
    }
    if (!ok) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory while merging");
    }

    mr_status status = MR_OK;
    for (int32_t i = n_symbols > 0 ? 0 : -1; status == MR_OK && i >= 0; i = scratch->symbols[i].next) {
        status = resegment(tok, scratch, scratch->symbols[i].start, scratch->symbols[i].len, ids, err);
    }
    if (status == MR_ERR_NO_MEMORY) {
        return mr_error_set(err, status, "tokenizer: out of memory for ids");
    }
    return status;
}

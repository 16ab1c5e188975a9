/*
 * GPT-2 byte-level BPE: the byte alphabet, the merge table and the merge
 * loop. tokenizer_pre.c splits the text into the pieces that the loop
 * encodes one at a time.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ------------------------------------------------------------------------
 * The byte alphabet: GPT-2 gives each byte a printable character. Bytes
 * '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves (as code
 * points); the other 68 bytes, in increasing order, take U+0100..U+0143.
 * ------------------------------------------------------------------------ */

static bool byte_is_printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* Returns the code point of byte b in the GPT-2 alphabet. */
static uint32_t byte_to_codepoint(int b) {
    if (byte_is_printable(b)) {
        return (uint32_t)b;
    }
    uint32_t k = 0;
    for (int i = 0; i < b; i++) {
        k += !byte_is_printable(i);
    }
    return 256 + k;
}

/* Returns the byte that code point cp stands for, or -1 if cp is not in the
 * alphabet. */
static int codepoint_to_byte(int32_t cp) {
    if (cp < 0 || cp > 0x143) {
        return -1;
    }
    if (cp < 256) {
        return byte_is_printable(cp) ? cp : -1;
    }
    int32_t k = 256;
    for (int b = 0; b < 256; b++) {
        if (!byte_is_printable(b) && k++ == cp) {
            return b;
        }
    }
    return -1;
}

size_t mr_tok_bpe_unmap(const char *text, size_t len, char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        int32_t cp;
        int step = mr_tok_utf8_decode((const unsigned char *)text + i, len - i, &cp);
        int byte = codepoint_to_byte(cp);
        if (byte >= 0) {
            if (n < cap) {
                out[n] = (char)byte;
            }
            n++;
        } else {
            for (int k = 0; k < step; k++, n++) {
                if (n < cap) {
                    out[n] = text[i + (size_t)k];
                }
            }
        }
        i += (size_t)step;
    }
    return n;
}

/* Returns the merge table key of the pair (left, right). */
static uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

/* Looks up token text or reports merge rank naming it. */
static mr_status find_merge_token(const mr_tokenizer *tok, const char *merge, size_t merge_len,
                                  int64_t rank, const char *part, size_t part_len, int32_t *id,
                                  mr_error *err) {
    *id = mr_tok_map_get_string(&tok->by_text, part, part_len);
    if (*id < 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "tokenizer: merge %lld (\"%.*s\") names \"%.*s\", which is not in "
                            "the vocabulary",
                            (long long)rank, (int)(merge_len < 64 ? merge_len : 64), merge,
                            (int)(part_len < 64 ? part_len : 64), part);
    }
    return MR_OK;
}

mr_status mr_tok_build_bpe(mr_tokenizer *tok, const mr_tokenizer_vocab *vocab, mr_error *err) {
    for (int b = 0; b < 256; b++) {
        char utf8[4];
        int n = mr_tok_utf8_encode(byte_to_codepoint(b), utf8);
        tok->byte_ids[b] = mr_tok_map_get_string(&tok->by_text, utf8, (size_t)n);
        if (tok->byte_ids[b] < 0) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "tokenizer: the byte-level vocabulary has no token \"%.*s\" for "
                                "byte 0x%02X",
                                n, utf8, (unsigned)b);
        }
    }

    if (vocab->n_merges < 0 || vocab->n_merges >= INT32_MAX ||
        (vocab->n_merges > 0 && vocab->merges == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "tokenizer: invalid merge list (%lld merges%s)",
                            (long long)vocab->n_merges, vocab->merges == NULL ? ", no array" : "");
    }
    int32_t n_merges = (int32_t)vocab->n_merges;
    tok->merge_result = malloc(((size_t)n_merges + 1) * sizeof *tok->merge_result);
    char *joined = NULL;
    size_t joined_capacity = 0;
    if (tok->merge_result == NULL || !mr_tok_map_init(&tok->merges, (size_t)n_merges, false)) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for %d merges",
                            (int)n_merges);
    }

    mr_status status = MR_OK;
    for (int32_t rank = 0; status == MR_OK && rank < n_merges; rank++) {
        const char *merge = vocab->merges[rank];
        size_t len = merge == NULL ? 0
                     : vocab->merge_lens != NULL ? vocab->merge_lens[rank] : strlen(merge);
        /* The separator is the first space after the first byte, as in
         * llama.cpp, so a left part may itself be a space. */
        const char *space = len > 1 ? memchr(merge + 1, ' ', len - 1) : NULL;
        if (space == NULL) {
            status = mr_error_set(err, MR_ERR_FORMAT,
                                  "tokenizer: merge %d (\"%.*s\") is not two tokens separated "
                                  "by a space",
                                  (int)rank, (int)(len < 64 ? len : 64), merge == NULL ? "" : merge);
            break;
        }
        size_t left_len = (size_t)(space - merge);
        size_t right_len = len - left_len - 1;

        int32_t left;
        int32_t right;
        int32_t result = -1;
        status = find_merge_token(tok, merge, len, rank, merge, left_len, &left, err);
        if (status == MR_OK) {
            status = find_merge_token(tok, merge, len, rank, space + 1, right_len, &right, err);
        }
        if (status == MR_OK && len > joined_capacity) {
            char *bigger = realloc(joined, len);
            if (bigger == NULL) {
                status = mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for merges");
                break;
            }
            joined = bigger;
            joined_capacity = len;
        }
        if (status == MR_OK) {
            memcpy(joined, merge, left_len);
            memcpy(joined + left_len, space + 1, right_len);
            status = find_merge_token(tok, merge, len, rank, joined, left_len + right_len, &result,
                                      err);
        }
        if (status != MR_OK) {
            break;
        }

        tok->merge_result[rank] = result;
        if (mr_tok_map_put_u64(&tok->merges, pair_key(left, right), rank) < 0) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for merges");
        }
    }
    free(joined);
    return status;
}

/* ------------------------------------------------------------------------
 * Merge loop
 * ------------------------------------------------------------------------ */

/* Queues the merge of adjacent symbols left and right if the pair has a
 * rank. */
static bool try_add_pair(const mr_tokenizer *tok, mr_tok_scratch *scratch, int32_t left,
                         int32_t right) {
    if (left < 0 || right < 0) {
        return true;
    }
    int32_t left_id = scratch->symbols[left].id;
    int32_t right_id = scratch->symbols[right].id;
    int32_t rank = mr_tok_map_get_u64(&tok->merges, pair_key(left_id, right_id));
    if (rank < 0) {
        return true;
    }
    mr_tok_bigram bigram = {.priority = rank, .left = left, .right = right, .check = left_id,
                            .check2 = right_id, .result = tok->merge_result[rank]};
    return mr_tok_heap_push(&scratch->heap, bigram);
}

/* Returns the id of the token whose text is the pre-token's bytes in the
 * GPT-2 alphabet, or -1. scratch->text holds at least 2 * len bytes. */
static int32_t whole_pretoken_id(const mr_tokenizer *tok, const unsigned char *bytes, size_t len,
                                 mr_tok_scratch *scratch) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        n += (size_t)mr_tok_utf8_encode(byte_to_codepoint(bytes[i]), scratch->text + n);
    }
    return mr_tok_map_get_string(&tok->by_text, scratch->text, n);
}

/* Encodes one pre-token: one symbol per byte, then merges by rank. With
 * ignore_merges, a pre-token that is a whole token is that token. */
static bool encode_pretoken(const mr_tokenizer *tok, const unsigned char *bytes, size_t len,
                            mr_tok_scratch *scratch, mr_tok_ids *ids) {
    if (len == 1) {
        return mr_tok_ids_push(ids, tok->byte_ids[bytes[0]]);
    }
    if (tok->ignore_merges) {
        int32_t whole = whole_pretoken_id(tok, bytes, len, scratch);
        if (whole >= 0) {
            return mr_tok_ids_push(ids, whole);
        }
    }

    mr_tok_symbol *symbols = scratch->symbols;
    for (size_t i = 0; i < len; i++) {
        symbols[i] = (mr_tok_symbol){.prev = (int32_t)i - 1,
                                     .next = i + 1 < len ? (int32_t)i + 1 : -1,
                                     .start = (int32_t)i, .len = 1, .id = tok->byte_ids[bytes[i]]};
    }
    scratch->heap.count = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (!try_add_pair(tok, scratch, (int32_t)i, (int32_t)i + 1)) {
            return false;
        }
    }

    mr_tok_bigram bigram;
    while (mr_tok_heap_pop(&scratch->heap, &bigram)) {
        mr_tok_symbol *l = &symbols[bigram.left];
        mr_tok_symbol *r = &symbols[bigram.right];
        if (l->len == 0 || r->len == 0 || l->next != bigram.right || l->id != bigram.check ||
            r->id != bigram.check2) {
            continue;
        }
        l->id = bigram.result;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) {
            symbols[r->next].prev = bigram.left;
        }
        if (!try_add_pair(tok, scratch, l->prev, bigram.left) ||
            !try_add_pair(tok, scratch, bigram.left, l->next)) {
            return false;
        }
    }

    for (int32_t i = 0; i >= 0; i = symbols[i].next) {
        if (!mr_tok_ids_push(ids, symbols[i].id)) {
            return false;
        }
    }
    return true;
}

mr_status mr_tok_encode_bpe(const mr_tokenizer *tok, const char *text, size_t len,
                            mr_tok_scratch *scratch, mr_tok_ids *ids, mr_error *err) {
    size_t i = 0;
    while (i < len) {
        size_t end = mr_tok_pretoken_end(tok->pre, text, len, i);
        size_t text_bytes = tok->ignore_merges ? 2 * (end - i) : 0;
        if (!mr_tok_scratch_reserve(scratch, end - i, text_bytes) ||
            !encode_pretoken(tok, (const unsigned char *)text + i, end - i, scratch, ids)) {
            return mr_error_set(err, MR_ERR_NO_MEMORY,
                                "tokenizer: out of memory encoding a pre-token of %zu bytes",
                                end - i);
        }
        i = end;
    }
    return MR_OK;
}

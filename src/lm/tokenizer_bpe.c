/*
 * GPT-2 byte-level BPE: the byte alphabet, the merge table, the GPT-2
 * pre-tokenizer and the merge loop.
 *
 * The pre-tokenizer splits text as GPT-2's pattern does,
 *
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * written out by hand: the alternatives are tried in this order at each
 * position and each run is as long as possible. A byte that is not part of
 * valid UTF-8 counts as a character of the "other" class, so invalid input
 * still splits and encodes, and every byte comes back on decode.
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
 * Pre-tokenizer
 * ------------------------------------------------------------------------ */

enum char_class { CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE, CLASS_OTHER };

/* Decodes the character at text[i] and returns its class; *n receives its
 * byte length. */
static enum char_class class_at(const char *text, size_t len, size_t i, int *n) {
    int32_t cp;
    *n = mr_tok_utf8_decode((const unsigned char *)text + i, len - i, &cp);
    if (mr_tok_is_letter(cp)) {
        return CLASS_LETTER;
    }
    if (mr_tok_is_number(cp)) {
        return CLASS_NUMBER;
    }
    if (mr_tok_is_whitespace(cp)) {
        return CLASS_SPACE;
    }
    return CLASS_OTHER;
}

/* Returns the length of the contraction ('s 't 're 've 'm 'll 'd) at
 * text[i], or 0. The match is case-sensitive, as in GPT-2. */
static size_t contraction_at(const char *text, size_t len, size_t i) {
    if (text[i] != '\'' || i + 1 >= len) {
        return 0;
    }
    char c = text[i + 1];
    if (c == 's' || c == 't' || c == 'm' || c == 'd') {
        return 2;
    }
    if (i + 2 < len) {
        char d = text[i + 2];
        if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l')) {
            return 3;
        }
    }
    return 0;
}

/* Returns the end of the pre-token that starts at text[i] (i < len). */
static size_t pretoken_end(const char *text, size_t len, size_t i) {
    size_t contraction = contraction_at(text, len, i);
    if (contraction > 0) {
        return i + contraction;
    }

    /* A run of letters, digits or other characters, optionally after one
     * space. */
    int n;
    enum char_class first = class_at(text, len, i, &n);
    size_t run_start = i;
    enum char_class run_class = first;
    if (text[i] == ' ' && i + 1 < len) {
        int n_next;
        enum char_class next = class_at(text, len, i + 1, &n_next);
        if (next != CLASS_SPACE) {
            run_start = i + 1;
            run_class = next;
        }
    }
    if (run_class != CLASS_SPACE) {
        size_t k = run_start;
        while (k < len && class_at(text, len, k, &n) == run_class) {
            k += (size_t)n;
        }
        return k;
    }

    /* White space at the end of the text is one pre-token. Before another
     * character, the run minus its last character is one; that last
     * character then joins the next run if it is a space, or else forms a
     * pre-token of its own. */
    size_t k = i;
    size_t last = i;
    while (k < len && class_at(text, len, k, &n) == CLASS_SPACE) {
        last = k;
        k += (size_t)n;
    }
    if (k == len || last == i) {
        return k;
    }
    return last;
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

/* Encodes one pre-token: one symbol per byte, then merges by rank. */
static bool encode_pretoken(const mr_tokenizer *tok, const unsigned char *bytes, size_t len,
                            mr_tok_scratch *scratch, mr_tok_ids *ids) {
    if (len == 1) {
        return mr_tok_ids_push(ids, tok->byte_ids[bytes[0]]);
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
        size_t end = pretoken_end(text, len, i);
        if (!mr_tok_scratch_reserve(scratch, end - i, 0) ||
            !encode_pretoken(tok, (const unsigned char *)text + i, end - i, scratch, ids)) {
            return mr_error_set(err, MR_ERR_NO_MEMORY,
                                "tokenizer: out of memory encoding a pre-token of %zu bytes",
                                end - i);
        }
        i = end;
    }
    return MR_OK;
}

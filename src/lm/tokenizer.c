/*
 * The tokenizer handle: creation from plain arrays, the getters, encode's
 * split of the input at special tokens, and decode.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

void mr_tokenizer_free(mr_tokenizer *tok) {
    if (tok == NULL) {
        return;
    }
    free(tok->text_pool);
    free(tok->text_offsets);
    free(tok->scores);
    free(tok->types);
    mr_tok_map_free(&tok->by_text);
    if (tok->merges.slots != NULL) {
        mr_tok_map_free(&tok->merges);
    }
    free(tok->merge_result);
    free(tok->specials);
    free(tok);
}

/* Checks that a special id is -1 or a token id. */
static mr_status check_special_id(const char *name, int32_t id, int64_t n_tokens, mr_error *err) {
    if (id < -1 || id >= n_tokens) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "tokenizer: %s id %d is outside the vocabulary of %lld tokens; "
                            "use -1 for none",
                            name, (int)id, (long long)n_tokens);
    }
    return MR_OK;
}

/* Parses "<0xNN>" (two hex digits, either case); returns the byte or -1. */
static int parse_byte_token(const char *text, size_t len) {
    if (len != 6 || memcmp(text, "<0x", 3) != 0 || text[5] != '>') {
        return -1;
    }
    int value = 0;
    for (int i = 3; i < 5; i++) {
        char c = text[i];
        int digit;
        if (c >= '0' && c <= '9') {
            digit = c - '0';
        } else if (c >= 'A' && c <= 'F') {
            digit = c - 'A' + 10;
        } else if (c >= 'a' && c <= 'f') {
            digit = c - 'a' + 10;
        } else {
            return -1;
        }
        value = value * 16 + digit;
    }
    return value;
}

/* A special token's sort key: first byte, then longest first, then id. */
typedef struct special_key {
    unsigned char first;
    size_t len;
    int32_t id;
} special_key;

static int compare_special_keys(const void *a, const void *b) {
    const special_key *ka = a;
    const special_key *kb = b;
    if (ka->first != kb->first) {
        return ka->first < kb->first ? -1 : 1;
    }
    if (ka->len != kb->len) {
        return ka->len > kb->len ? -1 : 1;
    }
    return ka->id < kb->id ? -1 : (ka->id > kb->id);
}

/* Collects the control and user-defined tokens that encode can match in
 * the input, bucketed by first byte with the longest first in a bucket. */
static mr_status build_specials(mr_tokenizer *tok, mr_error *err) {
    special_key *keys = malloc(((size_t)tok->n_tokens + 1) * sizeof *keys);
    tok->specials = malloc(((size_t)tok->n_tokens + 1) * sizeof *tok->specials);
    if (keys == NULL || tok->specials == NULL) {
        free(keys);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for special tokens");
    }

    int32_t count = 0;
    for (int32_t id = 0; id < tok->n_tokens; id++) {
        size_t len;
        const char *text = mr_tok_text(tok, id, &len);
        bool special = tok->types[id] == MR_TOKEN_CONTROL || tok->types[id] == MR_TOKEN_USER_DEFINED;
        if (special && len > 0) {
            keys[count++] = (special_key){(unsigned char)text[0], len, id};
        }
    }
    qsort(keys, (size_t)count, sizeof *keys, compare_special_keys);

    int32_t k = 0;
    for (int b = 0; b < 256; b++) {
        tok->special_start[b] = k;
        while (k < count && keys[k].first == b) {
            tok->specials[k] = keys[k].id;
            k++;
        }
    }
    tok->special_start[256] = k;
    tok->n_specials = count;
    free(keys);
    return MR_OK;
}

/* Copies the token texts, scores and types, and builds the text index. */
static mr_status copy_vocab(mr_tokenizer *tok, const mr_tokenizer_vocab *vocab, mr_error *err) {
    if (vocab->n_tokens <= 0 || vocab->n_tokens >= INT32_MAX || vocab->tokens == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "tokenizer: the vocabulary needs 1 to 2^31-2 tokens, got %lld%s",
                            (long long)vocab->n_tokens,
                            vocab->tokens == NULL ? " and no token array" : "");
    }
    int32_t n = (int32_t)vocab->n_tokens;
    tok->n_tokens = n;

    size_t total = 0;
    for (int32_t id = 0; id < n; id++) {
        if (vocab->tokens[id] == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "tokenizer: token %d has no text",
                                (int)id);
        }
        size_t len = vocab->token_lens != NULL ? vocab->token_lens[id] : strlen(vocab->tokens[id]);
        if (len > UINT32_MAX) {
            return mr_error_set(err, MR_ERR_FORMAT, "tokenizer: token %d is %zu bytes long",
                                (int)id, len);
        }
        total += len;
    }

    tok->text_pool = malloc(total + 1);
    tok->text_offsets = malloc(((size_t)n + 1) * sizeof *tok->text_offsets);
    tok->scores = calloc((size_t)n, sizeof *tok->scores);
    tok->types = malloc((size_t)n);
    if (tok->text_pool == NULL || tok->text_offsets == NULL || tok->scores == NULL ||
        tok->types == NULL || !mr_tok_map_init(&tok->by_text, (size_t)n, true)) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "tokenizer: out of memory for %d tokens of %zu bytes", (int)n, total);
    }

    size_t offset = 0;
    for (int32_t id = 0; id < n; id++) {
        size_t len = vocab->token_lens != NULL ? vocab->token_lens[id] : strlen(vocab->tokens[id]);
        memcpy(tok->text_pool + offset, vocab->tokens[id], len);
        tok->text_offsets[id] = offset;
        offset += len;
        if (len > tok->max_token_len) {
            tok->max_token_len = len;
        }

        int32_t type = vocab->types != NULL ? vocab->types[id] : MR_TOKEN_NORMAL;
        if (type < MR_TOKEN_UNDEFINED || type > MR_TOKEN_BYTE) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "tokenizer: token %d has type %d; valid types are 0 to 6",
                                (int)id, (int)type);
        }
        tok->types[id] = (uint8_t)(type == MR_TOKEN_UNDEFINED ? MR_TOKEN_NORMAL : type);
        if (type == MR_TOKEN_UNUSED) {
            tok->has_unused = true;
        }
        if (vocab->scores != NULL) {
            tok->scores[id] = vocab->scores[id];
        }
    }
    tok->text_offsets[n] = offset;
    tok->text_pool[offset] = '\0';

    /* The pool is final now, so the map may point into it. */
    for (int32_t id = 0; id < n; id++) {
        size_t len;
        const char *text = mr_tok_text(tok, id, &len);
        if (mr_tok_map_put_string(&tok->by_text, text, len, id) < 0) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for the token index");
        }
    }

    mr_status status = check_special_id("BOS", vocab->bos_id, n, err);
    if (status == MR_OK) {
        status = check_special_id("EOS", vocab->eos_id, n, err);
    }
    if (status == MR_OK) {
        status = check_special_id("unknown-token", vocab->unk_id, n, err);
    }
    tok->bos_id = vocab->bos_id;
    tok->eos_id = vocab->eos_id;
    tok->unk_id = vocab->unk_id;
    tok->add_space_prefix = vocab->add_space_prefix;
    tok->add_bos = vocab->add_bos;
    tok->pre = MR_TOKENIZER_PRE_GPT2;
    for (int b = 0; b < 256; b++) {
        tok->byte_ids[b] = -1;
    }
    return status;
}

/* Allocates a handle of the given kind and fills it from vocab; on failure
 * frees it and leaves *out NULL. */
static mr_status create(mr_tokenizer_kind kind, const mr_tokenizer_vocab *vocab,
                        mr_tokenizer **out, mr_error *err) {
    *out = NULL;
    if (vocab == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "tokenizer: vocab is NULL");
    }
    mr_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory");
    }
    tok->kind = kind;

    mr_status status = copy_vocab(tok, vocab, err);
    if (status == MR_OK && kind == MR_TOKENIZER_SPM) {
        if (vocab->scores == NULL) {
            status = mr_error_set(err, MR_ERR_FORMAT,
                                  "tokenizer: a SentencePiece vocabulary needs token scores");
        }
        for (int32_t id = 0; status == MR_OK && id < tok->n_tokens; id++) {
            if (tok->types[id] != MR_TOKEN_BYTE) {
                continue;
            }
            size_t len;
            const char *text = mr_tok_text(tok, id, &len);
            int byte = parse_byte_token(text, len);
            if (byte < 0) {
                status = mr_error_set(err, MR_ERR_FORMAT,
                                      "tokenizer: byte token %d has text \"%.*s\"; expected <0xNN>",
                                      (int)id, (int)(len < 32 ? len : 32), text);
            } else if (tok->byte_ids[byte] < 0) {
                tok->byte_ids[byte] = id;
            }
        }
    }
    if (status == MR_OK && kind == MR_TOKENIZER_BPE) {
        if (vocab->pre < MR_TOKENIZER_PRE_GPT2 || vocab->pre > MR_TOKENIZER_PRE_QWEN2) {
            status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                  "tokenizer: pre-tokenizer %d is not one of mr_tokenizer_pre's "
                                  "values 0 to 2",
                                  (int)vocab->pre);
        }
        tok->pre = vocab->pre;
        tok->ignore_merges = vocab->ignore_merges;
    }
    if (status == MR_OK && kind == MR_TOKENIZER_BPE) {
        status = mr_tok_build_bpe(tok, vocab, err);
    }
    if (status == MR_OK) {
        status = build_specials(tok, err);
    }

    if (status != MR_OK) {
        mr_tokenizer_free(tok);
        return status;
    }
    *out = tok;
    return MR_OK;
}

mr_status mr_tokenizer_create_spm(const mr_tokenizer_vocab *vocab, mr_tokenizer **out,
                                  mr_error *err) {
    return create(MR_TOKENIZER_SPM, vocab, out, err);
}

mr_status mr_tokenizer_create_bpe(const mr_tokenizer_vocab *vocab, mr_tokenizer **out,
                                  mr_error *err) {
    return create(MR_TOKENIZER_BPE, vocab, out, err);
}

/* ------------------------------------------------------------------------
 * Getters
 * ------------------------------------------------------------------------ */

mr_tokenizer_kind mr_tokenizer_get_kind(const mr_tokenizer *tok) { return tok->kind; }
mr_tokenizer_pre mr_tokenizer_get_pre(const mr_tokenizer *tok) { return tok->pre; }
int64_t mr_tokenizer_n_vocab(const mr_tokenizer *tok) { return tok->n_tokens; }
int32_t mr_tokenizer_bos(const mr_tokenizer *tok) { return tok->bos_id; }
int32_t mr_tokenizer_eos(const mr_tokenizer *tok) { return tok->eos_id; }
int32_t mr_tokenizer_unk(const mr_tokenizer *tok) { return tok->unk_id; }
bool mr_tokenizer_add_bos_default(const mr_tokenizer *tok) { return tok->add_bos; }

const char *mr_tokenizer_token_text(const mr_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->n_tokens) {
        *len = 0;
        return NULL;
    }
    return mr_tok_text(tok, id, len);
}

float mr_tokenizer_token_score(const mr_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_tokens ? tok->scores[id] : 0.0f;
}

mr_token_type mr_tokenizer_token_type(const mr_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_tokens ? (mr_token_type)tok->types[id] : MR_TOKEN_UNDEFINED;
}

int32_t mr_tokenizer_find_token(const mr_tokenizer *tok, const char *text, size_t len) {
    return mr_tok_map_get_string(&tok->by_text, text, len);
}

/* ------------------------------------------------------------------------
 * Encode
 * ------------------------------------------------------------------------ */

/* Returns the id of the longest special token that starts at text[0..len),
 * or -1. */
static int32_t match_special(const mr_tokenizer *tok, const char *text, size_t len) {
    unsigned char first = (unsigned char)text[0];
    for (int32_t k = tok->special_start[first]; k < tok->special_start[first + 1]; k++) {
        size_t n;
        const char *special = mr_tok_text(tok, tok->specials[k], &n);
        if (n <= len && memcmp(special, text, n) == 0) {
            return tok->specials[k];
        }
    }
    return -1;
}

/* Encodes one plain-text fragment with the tokenizer's algorithm. */
static mr_status encode_fragment(const mr_tokenizer *tok, const char *text, size_t len,
                                 bool after_special, mr_tok_scratch *scratch, mr_tok_ids *ids,
                                 mr_error *err) {
    if (tok->kind == MR_TOKENIZER_SPM) {
        return mr_tok_encode_spm(tok, text, len, tok->add_space_prefix && after_special, scratch,
                                 ids, err);
    }
    return mr_tok_encode_bpe(tok, text, len, scratch, ids, err);
}

/* Encodes the whole input into ids: special tokens (when parse_special)
 * split it into fragments, and SPM prefixes a space to the first fragment
 * and to each fragment that follows a special token, as llama.cpp does. */
static mr_status encode_all(const mr_tokenizer *tok, const char *text, size_t len,
                            bool parse_special, mr_tok_ids *ids, mr_error *err) {
    mr_tok_scratch scratch;
    memset(&scratch, 0, sizeof scratch);
    mr_status status = MR_OK;

    bool after_special = true;
    size_t fragment_start = 0;
    size_t i = 0;
    while (parse_special && tok->n_specials > 0 && i < len) {
        int32_t special = match_special(tok, text + i, len - i);
        if (special < 0) {
            i++;
            continue;
        }

        if (i > fragment_start) {
            status = encode_fragment(tok, text + fragment_start, i - fragment_start, after_special,
                                     &scratch, ids, err);
            if (status != MR_OK) {
                break;
            }
        }
        if (!mr_tok_ids_push(ids, special)) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for ids");
            break;
        }
        size_t special_len;
        mr_tok_text(tok, special, &special_len);
        i += special_len;
        fragment_start = i;
        after_special = true;
    }
    if (status == MR_OK && len > fragment_start) {
        status = encode_fragment(tok, text + fragment_start, len - fragment_start, after_special,
                                 &scratch, ids, err);
    }

    mr_tok_scratch_free(&scratch);
    return status;
}

mr_status mr_tokenizer_encode(const mr_tokenizer *tok, const char *text, size_t len,
                              bool add_bos, bool parse_special, int32_t *out, int64_t cap,
                              int64_t *n, mr_error *err) {
    *n = 0;
    if (text == NULL && len > 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "tokenizer: text is NULL but len is %zu",
                            len);
    }
    if (len > INT32_MAX / 4) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "tokenizer: input of %zu bytes exceeds the limit of %d bytes; "
                            "split it into pieces",
                            len, INT32_MAX / 4);
    }
    if (add_bos && tok->bos_id < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "tokenizer: add_bos requested but the vocabulary has no BOS token");
    }

    mr_tok_ids ids = {0};
    mr_status status = MR_OK;
    if (add_bos && !mr_tok_ids_push(&ids, tok->bos_id)) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for ids");
    }
    if (status == MR_OK) {
        status = encode_all(tok, text, len, parse_special, &ids, err);
    }

    if (status == MR_OK) {
        *n = (int64_t)ids.count;
        int64_t copy = (int64_t)ids.count;
        if (cap < copy) {
            copy = cap > 0 ? cap : 0;
        }
        if (copy > 0) {
            memcpy(out, ids.data, (size_t)copy * sizeof *out);
        }
        if ((int64_t)ids.count > cap) {
            status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                  "tokenizer: the text needs %zu ids but the output holds %lld",
                                  ids.count, (long long)cap);
        }
    }
    free(ids.data);
    return status;
}

/* ------------------------------------------------------------------------
 * Decode
 * ------------------------------------------------------------------------ */

/* Appends src to out at *used, writing only what fits in cap; *used counts
 * every byte either way. */
static void append(char *out, size_t cap, size_t *used, const char *src, size_t n) {
    if (*used < cap) {
        size_t fit = cap - *used < n ? cap - *used : n;
        memcpy(out + *used, src, fit);
    }
    *used += n;
}

/* Appends the bytes of token id. With strip_space, drops one leading space
 * of an SPM piece; returns whether the piece had any bytes. */
static bool append_piece(const mr_tokenizer *tok, int32_t id, bool render_special,
                         bool strip_space, char *out, size_t cap, size_t *used) {
    size_t len;
    const char *text = mr_tok_text(tok, id, &len);
    size_t before = *used;
    int type = tok->types[id];

    if (type == MR_TOKEN_CONTROL || type == MR_TOKEN_UNKNOWN) {
        if (render_special) {
            append(out, cap, used, text, len);
        }
        return *used > before;
    }
    if (type == MR_TOKEN_USER_DEFINED) {
        append(out, cap, used, text, len);
        return *used > before;
    }

    if (tok->kind == MR_TOKENIZER_BPE) {
        size_t room = *used < cap ? cap - *used : 0;
        *used += mr_tok_bpe_unmap(text, len, out == NULL ? NULL : out + (*used < cap ? *used : 0),
                                  room);
        return *used > before;
    }

    if (type == MR_TOKEN_BYTE) {
        char byte = (char)parse_byte_token(text, len);
        append(out, cap, used, &byte, 1);
        return true;
    }

    /* SPM text: U+2581 (E2 96 81) back to a space. */
    size_t i = 0;
    while (i < len) {
        if (i + 3 <= len && memcmp(text + i, "\xE2\x96\x81", 3) == 0) {
            if (!(strip_space && *used == before)) {
                append(out, cap, used, " ", 1);
            }
            strip_space = false;
            i += 3;
            continue;
        }
        strip_space = false;
        append(out, cap, used, text + i, 1);
        i++;
    }
    return len > 0;
}

mr_status mr_tokenizer_decode(const mr_tokenizer *tok, const int32_t *ids, int64_t n,
                              bool strip_leading_space, bool render_special, char *out,
                              size_t cap, size_t *len, mr_error *err) {
    *len = 0;
    if (out == NULL) {
        cap = 0;
    }
    bool strip = strip_leading_space && tok->kind == MR_TOKENIZER_SPM && tok->add_space_prefix;

    size_t used = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_tokens) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "tokenizer: id %d at position %lld is outside the vocabulary of "
                                "%d tokens",
                                (int)ids[i], (long long)i, (int)tok->n_tokens);
        }
        if (append_piece(tok, ids[i], render_special, strip, out, cap, &used)) {
            strip = false;
        }
    }

    *len = used;
    if (used > cap) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "tokenizer: the decoded text needs %zu bytes but the output holds %zu",
                            used, cap);
    }
    return MR_OK;
}

mr_status mr_tokenizer_token_to_piece(const mr_tokenizer *tok, int32_t id, bool render_special,
                                      char *out, size_t cap, size_t *len, mr_error *err) {
    return mr_tokenizer_decode(tok, &id, 1, false, render_special, out, cap, len, err);
}

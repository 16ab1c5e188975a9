/*
 * Tokenizers. Ids are compared with reference tokenizers on hard inputs:
 * SentencePiece for the Llama vocabulary, js-tiktoken and gpt-tokenizer
 * for GPT-2. Decode round trips run on those inputs and on seeded random
 * bytes. Further cases cover special tokens with parsing on and off, the
 * stories260K vocabulary, a 1 MiB input and broken vocabularies.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "multiround/gguf.h"
#include "multiround/rng.h"
#include "multiround/tokenizer.h"
#include "test.h"

#define VOCAB_GPT2 "data/lm/ggml-vocab-gpt-2.gguf"
#define VOCAB_LLAMA "data/lm/ggml-vocab-llama-spm.gguf"
#define STORIES "data/lm/stories260K.gguf"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* Opens a GGUF file and builds its tokenizer, or fails the test. */
static mr_tokenizer *load_tokenizer(const char *path) {
    mr_gguf *gguf = NULL;
    mr_error err;
    mr_error_clear(&err);
    if (mr_gguf_open(path, &gguf, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "cannot open %s: %s", path, err.message);
        return NULL;
    }
    mr_tokenizer *tok = NULL;
    if (mr_tokenizer_from_gguf(gguf, &tok, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "no tokenizer from %s: %s", path, err.message);
    }
    mr_gguf_close(gguf);
    return tok;
}

/* Reads a whole file into a NUL-terminated buffer, or returns NULL. */
static char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)n + 1);
    if (data != NULL && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data != NULL) {
        data[n] = '\0';
        *size = (size_t)n;
    }
    return data;
}

/* Decodes a hex string into bytes; returns the byte count. */
static size_t from_hex(const char *hex, char *out) {
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned value;
        sscanf(hex + 2 * i, "%2x", &value);
        out[i] = (char)value;
    }
    return n;
}

/* Encodes text into a fresh array; returns NULL (test failed) on error.
 * No encoding has more ids than input bytes plus BOS and the SPM prefix. */
static int32_t *encode(const mr_tokenizer *tok, const char *text, size_t len, bool add_bos,
                       bool parse_special, int64_t *n) {
    mr_error err;
    mr_error_clear(&err);
    int64_t cap = (int64_t)len + 2;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (mr_tokenizer_encode(tok, text, len, add_bos, parse_special, ids, cap, n, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "encode failed: %s", err.message);
        free(ids);
        return NULL;
    }
    return ids;
}

/* Decodes ids into a fresh NUL-terminated buffer. */
static char *decode(const mr_tokenizer *tok, const int32_t *ids, int64_t n, bool strip,
                    bool render_special, size_t *len) {
    mr_error err;
    mr_error_clear(&err);
    mr_tokenizer_decode(tok, ids, n, strip, render_special, NULL, 0, len, &err);
    char *text = malloc(*len + 1);
    if (mr_tokenizer_decode(tok, ids, n, strip, render_special, text, *len, len, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "decode failed: %s", err.message);
    }
    text[*len] = '\0';
    return text;
}

/* Prints two id lists side by side when they differ; returns whether equal. */
static bool same_ids(const char *what, const int32_t *got, int64_t n_got, const cJSON *expected) {
    int64_t n_expected = cJSON_GetArraySize(expected);
    bool same = n_got == n_expected;
    for (int64_t i = 0; same && i < n_got; i++) {
        same = got[i] == (int32_t)cJSON_GetArrayItem(expected, (int)i)->valueint;
    }
    if (!same) {
        fprintf(stderr, "%s:\n  got     ", what);
        for (int64_t i = 0; i < n_got && i < 40; i++) {
            fprintf(stderr, " %d", got[i]);
        }
        fprintf(stderr, "\n  expected");
        for (int64_t i = 0; i < n_expected && i < 40; i++) {
            fprintf(stderr, " %d", cJSON_GetArrayItem(expected, (int)i)->valueint);
        }
        fprintf(stderr, "\n");
    }
    return same;
}

/*
 * Encodes every case of a fixture written by tokenizer_reference.py and
 * compares the ids exactly. Then decodes them and compares with the input:
 * GPT-2 cases all, with special tokens rendered, and SPM cases without
 * special-token parsing, with the prefix space stripped.
 */
static void check_fixture(const char *fixture_path, const char *vocab_path, bool spm) {
    size_t size;
    char *json = read_file(fixture_path, &size);
    if (json == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot read %s", fixture_path);
        return;
    }
    cJSON *root = cJSON_Parse(json);
    free(json);
    mr_tokenizer *tok = load_tokenizer(vocab_path);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    if (tok == NULL || cases == NULL) {
        mr_test_fail(__FILE__, __LINE__, "no cases in %s", fixture_path);
        cJSON_Delete(root);
        mr_tokenizer_free(tok);
        return;
    }
    CHECK(cJSON_GetArraySize(cases) >= 40);

    const cJSON *item;
    cJSON_ArrayForEach(item, cases) {
        const char *name = cJSON_GetObjectItem(item, "name")->valuestring;
        const char *hex = cJSON_GetObjectItem(item, "text_hex")->valuestring;
        bool parse_special = cJSON_IsTrue(cJSON_GetObjectItem(item, "parse_special"));
        char *text = malloc(strlen(hex) / 2 + 1);
        size_t len = from_hex(hex, text);

        int64_t n = 0;
        int32_t *ids = encode(tok, text, len, false, parse_special, &n);
        if (ids != NULL && !same_ids(name, ids, n, cJSON_GetObjectItem(item, "ids"))) {
            mr_test_fail(__FILE__, __LINE__, "case %s (parse_special %d): ids differ", name,
                         (int)parse_special);
        }

        if (ids != NULL && (!spm || !parse_special)) {
            size_t decoded_len;
            char *decoded = decode(tok, ids, n, spm, true, &decoded_len);
            if (decoded_len != len || memcmp(decoded, text, len) != 0) {
                mr_test_fail(__FILE__, __LINE__, "case %s: decode gives %zu bytes \"%s\", not the "
                             "%zu input bytes", name, decoded_len, decoded, len);
            }
            free(decoded);
        }
        free(ids);
        free(text);
    }
    cJSON_Delete(root);
    mr_tokenizer_free(tok);
}

/* ------------------------------------------------------------------------
 * Reference ids
 * ------------------------------------------------------------------------ */

static void spm_matches_sentencepiece(void) {
    check_fixture("fixtures/tokenizer_spm.json", VOCAB_LLAMA, true);
}

static void gpt2_matches_tiktoken(void) {
    check_fixture("fixtures/tokenizer_gpt2.json", VOCAB_GPT2, false);
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

/* Fills buf with n random bytes drawn from a mix that exercises the
 * pre-tokenizer: ASCII letters, digits, spaces and punctuation, multi-byte
 * UTF-8 characters, and arbitrary (often invalid) bytes. The last piece,
 * U+2581, is left out for SPM, which decodes it as a space. */
static void random_text(mr_rng *rng, char *buf, size_t n, bool with_u2581) {
    static const char *pieces[] = {" ", "  ", "\n", "\t", "'s", "'ll", "e", "th", "Q", "7", "42",
                                   ".", "!?", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\xA6\x99",
                                   "\xE2\x80\x8D", "<s>", "<|endoftext|>", "\xE2\x96\x81"};
    size_t n_pieces = sizeof pieces / sizeof pieces[0] - (with_u2581 ? 0 : 1);
    size_t i = 0;
    while (i < n) {
        uint64_t draw = mr_rng_below(rng, 4);
        if (draw == 0) {
            buf[i++] = (char)mr_rng_below(rng, 256);
            continue;
        }
        const char *piece = pieces[mr_rng_below(rng, n_pieces)];
        size_t len = strlen(piece);
        if (i + len > n) {
            len = n - i;
        }
        memcpy(buf + i, piece, len);
        i += len;
    }
}

/* Checks decode(encode(x)) == x on 300 seeded random byte strings. */
static void check_random_round_trips(const char *vocab_path, bool strip, uint64_t seed) {
    mr_tokenizer *tok = load_tokenizer(vocab_path);
    if (tok == NULL) {
        return;
    }
    mr_rng rng;
    mr_rng_init(&rng, seed);
    char buf[300];
    int failures = 0;
    for (int trial = 0; trial < 300; trial++) {
        size_t len = (size_t)mr_rng_below(&rng, sizeof buf);
        random_text(&rng, buf, len, !strip);

        int64_t n = 0;
        int32_t *ids = encode(tok, buf, len, false, false, &n);
        size_t decoded_len = 0;
        char *decoded = ids != NULL ? decode(tok, ids, n, strip, false, &decoded_len) : NULL;
        if (decoded == NULL || decoded_len != len || memcmp(decoded, buf, len) != 0) {
            if (failures++ < 3) {
                mr_test_fail(__FILE__, __LINE__, "trial %d: %zu bytes decode to %zu bytes", trial,
                             len, decoded_len);
            }
        }
        free(ids);
        free(decoded);
    }
    CHECK_INT_EQ(failures, 0);
    mr_tokenizer_free(tok);
}

static void bpe_random_bytes_round_trip(void) {
    check_random_round_trips(VOCAB_GPT2, false, 20261204);
}

static void spm_random_bytes_round_trip(void) {
    check_random_round_trips(VOCAB_LLAMA, true, 20261205);
}

/* ------------------------------------------------------------------------
 * Special tokens, BOS and the output capacity
 * ------------------------------------------------------------------------ */

static void gpt2_special_token_parsing(void) {
    mr_tokenizer *tok = load_tokenizer(VOCAB_GPT2);
    if (tok == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_tokenizer_n_vocab(tok), 50257);
    CHECK_INT_EQ(mr_tokenizer_bos(tok), 50256);
    CHECK_INT_EQ(mr_tokenizer_eos(tok), 50256);
    CHECK_INT_EQ(mr_tokenizer_token_type(tok, 50256), MR_TOKEN_CONTROL);
    CHECK(mr_tokenizer_get_kind(tok) == MR_TOKENIZER_BPE);
    CHECK(!mr_tokenizer_add_bos_default(tok));

    const char *text = "<|endoftext|>";
    int64_t n = 0;
    int32_t *ids = encode(tok, text, strlen(text), false, true, &n);
    CHECK_INT_EQ(n, 1);
    if (ids != NULL && n == 1) {
        CHECK_INT_EQ(ids[0], 50256);
    }
    free(ids);

    /* Without parsing, the text is plain: "<", "|", "endo", "ft", "ext", "|", ">". */
    ids = encode(tok, text, strlen(text), false, false, &n);
    CHECK_INT_EQ(n, 7);
    for (int64_t i = 0; ids != NULL && i < n; i++) {
        CHECK(ids[i] != 50256);
    }
    free(ids);

    /* Decode renders the control token only when asked. */
    int32_t with_eot[3] = {15496, 50256, 995};
    size_t len;
    char *plain = decode(tok, with_eot, 3, false, false, &len);
    CHECK(strcmp(plain, "Hello world") == 0);
    char *rendered = decode(tok, with_eot, 3, false, true, &len);
    CHECK(strcmp(rendered, "Hello<|endoftext|> world") == 0);
    free(plain);
    free(rendered);

    /* add_bos puts 50256 first. */
    ids = encode(tok, "Hello world", 11, true, false, &n);
    CHECK_INT_EQ(n, 3);
    if (ids != NULL && n == 3) {
        CHECK_INT_EQ(ids[0], 50256);
        CHECK_INT_EQ(ids[1], 15496);
        CHECK_INT_EQ(ids[2], 995);
    }
    free(ids);
    mr_tokenizer_free(tok);
}

static void spm_bos_and_decode_flags(void) {
    mr_tokenizer *tok = load_tokenizer(VOCAB_LLAMA);
    if (tok == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_tokenizer_n_vocab(tok), 32000);
    CHECK_INT_EQ(mr_tokenizer_bos(tok), 1);
    CHECK_INT_EQ(mr_tokenizer_eos(tok), 2);
    CHECK_INT_EQ(mr_tokenizer_unk(tok), 0);
    CHECK(mr_tokenizer_add_bos_default(tok));
    CHECK(mr_tokenizer_get_kind(tok) == MR_TOKENIZER_SPM);
    CHECK_INT_EQ(mr_tokenizer_token_type(tok, 3), MR_TOKEN_BYTE);
    CHECK_INT_EQ(mr_tokenizer_find_token(tok, "\xE2\x96\x81Hello", 8), 15043);

    int64_t n = 0;
    int32_t *ids = encode(tok, "Hello world", 11, true, false, &n);
    CHECK_INT_EQ(n, 3);
    if (ids != NULL && n == 3) {
        CHECK_INT_EQ(ids[0], 1);
        CHECK_INT_EQ(ids[1], 15043);
        CHECK_INT_EQ(ids[2], 3186);
    }

    /* The leading space goes only when asked, and BOS text only when asked. */
    size_t len;
    char *text = decode(tok, ids, n, true, false, &len);
    CHECK(strcmp(text, "Hello world") == 0);
    free(text);
    text = decode(tok, ids, n, false, false, &len);
    CHECK(strcmp(text, " Hello world") == 0);
    free(text);
    text = decode(tok, ids, n, true, true, &len);
    CHECK(strcmp(text, "<s> Hello world") == 0);
    free(text);

    /* One piece: a byte token is its byte. */
    char piece[8];
    mr_error err;
    CHECK_STATUS(mr_tokenizer_token_to_piece(tok, 3 + 0x41, false, piece, sizeof piece, &len, &err),
                 MR_OK);
    CHECK_INT_EQ(len, 1);
    CHECK_INT_EQ(piece[0], 'A');
    free(ids);
    mr_tokenizer_free(tok);
}

static void encode_reports_needed_capacity(void) {
    mr_tokenizer *tok = load_tokenizer(VOCAB_LLAMA);
    if (tok == NULL) {
        return;
    }
    int32_t ids[2] = {-7, -7};
    int64_t n = 0;
    mr_error err;
    mr_error_clear(&err);
    CHECK_STATUS(mr_tokenizer_encode(tok, "Hello world", 11, true, false, ids, 2, &n, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_INT_EQ(n, 3);
    CHECK_INT_EQ(ids[0], 1);
    CHECK_INT_EQ(ids[1], 15043);
    CHECK(strstr(err.message, "needs 3 ids") != NULL);

    char out[4];
    size_t len = 0;
    int32_t hello[2] = {15043, 3186};
    CHECK_STATUS(mr_tokenizer_decode(tok, hello, 2, true, false, out, sizeof out, &len, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_INT_EQ(len, 11);
    CHECK(memcmp(out, "Hell", 4) == 0);

    int32_t bad[1] = {32000};
    CHECK_STATUS(mr_tokenizer_decode(tok, bad, 1, true, false, out, sizeof out, &len, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "id 32000") != NULL);
    mr_tokenizer_free(tok);
}

/* ------------------------------------------------------------------------
 * stories260K: its own 512-token vocabulary
 * ------------------------------------------------------------------------ */

static void stories_vocabulary_decodes_story(void) {
    mr_tokenizer *tok = load_tokenizer(STORIES);
    size_t size;
    char *ids_text = read_file("data/lm/expected_greedy_200_ids.txt", &size);
    if (tok == NULL || ids_text == NULL) {
        mr_test_fail(__FILE__, __LINE__, "missing stories260K data");
        mr_tokenizer_free(tok);
        free(ids_text);
        return;
    }
    CHECK_INT_EQ(mr_tokenizer_n_vocab(tok), 512);

    int32_t ids[256];
    int64_t n = 0;
    char *cursor = ids_text;
    char *end;
    for (long value = strtol(cursor, &end, 10); end != cursor && n < 256;
         value = strtol(cursor, &end, 10)) {
        ids[n++] = (int32_t)value;
        cursor = end;
    }
    CHECK_INT_EQ(n, 200);

    /* llama2.c's test_all.py expects this story from the model. */
    size_t len;
    char *story = decode(tok, ids, n, true, false, &len);
    const char *start = "Once upon a time, there was a little girl named Lily. She loved to play "
                        "outside in the park.";
    CHECK(strncmp(story, start, strlen(start)) == 0);

    /* Re-encoding the story gives a sequence that decodes to it again. */
    int64_t n2 = 0;
    int32_t *again = encode(tok, story, len, false, false, &n2);
    size_t len2;
    char *story2 = again != NULL ? decode(tok, again, n2, true, false, &len2) : NULL;
    CHECK(story2 != NULL);
    CHECK_INT_EQ(len2, len);
    CHECK(story2 != NULL && memcmp(story, story2, len) == 0);
    free(again);
    free(story2);
    free(story);
    free(ids_text);
    mr_tokenizer_free(tok);
}

/* ------------------------------------------------------------------------
 * Long input
 * ------------------------------------------------------------------------ */

/* Encodes 1 MB that is one long word for the BPE pre-tokenizer and one
 * long symbol run for SPM, a quadratic rescan's worst case. */
static void check_long_input(const char *vocab_path, bool strip) {
    mr_tokenizer *tok = load_tokenizer(vocab_path);
    if (tok == NULL) {
        return;
    }
    size_t len = 1 << 20;
    char *text = malloc(len);
    static const char word[] = "Supercalifragilistic\xC3\xA9xpialidocious";
    for (size_t i = 0; i < len; i++) {
        text[i] = word[i % (sizeof word - 1)];
    }

    clock_t begin = clock();
    int64_t n = 0;
    int32_t *ids = encode(tok, text, len, false, false, &n);
    double seconds = (double)(clock() - begin) / CLOCKS_PER_SEC;
    printf("    %s: 1 MiB in %.3f s of CPU time, %lld ids\n", vocab_path, seconds, (long long)n);
    CHECK(n > 1000);

    size_t decoded_len = 0;
    char *decoded = ids != NULL ? decode(tok, ids, n, strip, false, &decoded_len) : NULL;
    CHECK(decoded != NULL);
    CHECK_INT_EQ(decoded_len, len);
    CHECK(decoded != NULL && memcmp(decoded, text, len) == 0);
    free(decoded);
    free(ids);
    free(text);
    mr_tokenizer_free(tok);
}

static void long_input_encodes(void) {
    check_long_input(VOCAB_GPT2, false);
    check_long_input(VOCAB_LLAMA, true);
}

/* ------------------------------------------------------------------------
 * Broken vocabularies
 * ------------------------------------------------------------------------ */

/* A GPT-2 byte-level vocabulary of the 256 byte characters plus "ab". */
typedef struct small_vocab {
    char texts[258][8];
    const char *tokens[258];
    mr_tokenizer_vocab vocab;
} small_vocab;

static void make_small_bpe(small_vocab *v) {
    memset(v, 0, sizeof *v);
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)extra++;
        if (cp < 0x80) {
            v->texts[b][0] = (char)cp;
        } else {
            v->texts[b][0] = (char)(0xC0 | (cp >> 6));
            v->texts[b][1] = (char)(0x80 | (cp & 0x3F));
        }
    }
    strcpy(v->texts[256], "ab");
    strcpy(v->texts[257], "<|end|>");
    for (int i = 0; i < 258; i++) {
        v->tokens[i] = v->texts[i];
    }
    v->vocab.n_tokens = 258;
    v->vocab.tokens = v->tokens;
    v->vocab.bos_id = -1;
    v->vocab.eos_id = -1;
    v->vocab.unk_id = -1;
}

static void bpe_rejects_bad_merges(void) {
    small_vocab v;
    make_small_bpe(&v);
    mr_tokenizer *tok = NULL;
    mr_error err;

    const char *good[1] = {"a b"};
    v.vocab.merges = good;
    v.vocab.n_merges = 1;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_OK);
    int64_t n = 0;
    int32_t *ids = tok != NULL ? encode(tok, "ab", 2, false, false, &n) : NULL;
    CHECK_INT_EQ(n, 1);
    if (ids != NULL && n == 1) {
        CHECK_INT_EQ(ids[0], 256);
    }
    free(ids);
    mr_tokenizer_free(tok);

    const char *unknown[2] = {"a b", "ab zz"};
    v.vocab.merges = unknown;
    v.vocab.n_merges = 2;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_ERR_FORMAT);
    CHECK(tok == NULL);
    CHECK(strstr(err.message, "merge 1 (\"ab zz\")") != NULL);
    CHECK(strstr(err.message, "\"zz\", which is not in the vocabulary") != NULL);

    const char *unknown_result[1] = {"b a"};
    v.vocab.merges = unknown_result;
    v.vocab.n_merges = 1;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "\"ba\", which is not in the vocabulary") != NULL);

    const char *no_space[1] = {"ab"};
    v.vocab.merges = no_space;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "not two tokens separated by a space") != NULL);
}

static void bpe_rejects_missing_byte_token(void) {
    small_vocab v;
    make_small_bpe(&v);
    strcpy(v.texts['z'], "zz"); /* the vocabulary now lacks "z" */
    mr_tokenizer *tok = NULL;
    mr_error err;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "no token \"z\" for byte 0x7A") != NULL);
}

static void vocab_rejects_bad_types_and_ids(void) {
    small_vocab v;
    make_small_bpe(&v);
    int32_t types[258];
    for (int i = 0; i < 258; i++) {
        types[i] = MR_TOKEN_NORMAL;
    }
    types[100] = 9;
    v.vocab.types = types;
    mr_tokenizer *tok = NULL;
    mr_error err;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "token 100 has type 9") != NULL);

    types[100] = MR_TOKEN_NORMAL;
    v.vocab.eos_id = 258;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "EOS id 258") != NULL);

    /* SPM needs scores. */
    v.vocab.eos_id = -1;
    CHECK_STATUS(mr_tokenizer_create_spm(&v.vocab, &tok, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "needs token scores") != NULL);

    /* A user-defined token is plain text unless parsing is on. */
    types[257] = MR_TOKEN_USER_DEFINED;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_OK);
    int64_t n = 0;
    int32_t *ids = tok != NULL ? encode(tok, "x<|end|>", 8, false, true, &n) : NULL;
    CHECK_INT_EQ(n, 2);
    if (ids != NULL && n == 2) {
        CHECK_INT_EQ(ids[1], 257);
    }
    free(ids);
    ids = tok != NULL ? encode(tok, "x<|end|>", 8, false, false, &n) : NULL;
    CHECK_INT_EQ(n, 8);
    free(ids);
    mr_tokenizer_free(tok);
}

/* Writes a GGUF file with the given tokenizer keys to path. */
static bool write_vocab_file(const char *path, const char *model, const char *pre,
                             bool with_tokens, bool with_scores) {
    mr_gguf_writer *w = mr_gguf_writer_create();
    mr_error err;
    const char *tokens[4] = {"<unk>", "<s>", "</s>", "\xE2\x96\x81"};
    float scores[4] = {0, 0, 0, -1};
    bool ok = w != NULL;
    if (ok && model != NULL) {
        ok = mr_gguf_writer_set_string(w, "tokenizer.ggml.model", model, &err) == MR_OK;
    }
    if (ok && pre != NULL) {
        ok = mr_gguf_writer_set_string(w, "tokenizer.ggml.pre", pre, &err) == MR_OK;
    }
    if (ok && with_tokens) {
        ok = mr_gguf_writer_set_strings(w, "tokenizer.ggml.tokens", tokens, NULL, 4, &err) == MR_OK;
    }
    if (ok && with_scores) {
        ok = mr_gguf_writer_set_array(w, "tokenizer.ggml.scores", MR_GGUF_F32, scores, 4, &err) ==
             MR_OK;
    }
    if (ok) {
        ok = mr_gguf_writer_write(w, path, &err) == MR_OK;
    }
    if (!ok) {
        mr_test_fail(__FILE__, __LINE__, "cannot write %s: %s", path, err.message);
    }
    mr_gguf_writer_free(w);
    return ok;
}

/* Opens path and tries to build a tokenizer; returns the status and fills err. */
static mr_status tokenizer_status(const char *path, mr_error *err) {
    mr_gguf *gguf = NULL;
    mr_status status = mr_gguf_open(path, &gguf, err);
    if (status != MR_OK) {
        return status;
    }
    mr_tokenizer *tok = NULL;
    status = mr_tokenizer_from_gguf(gguf, &tok, err);
    mr_tokenizer_free(tok);
    mr_gguf_close(gguf);
    return status;
}

static void gguf_missing_keys_are_named(void) {
    char path[256];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/mr_tokenizer_%ld.gguf", base != NULL ? base : "/tmp",
             (long)getpid());
    mr_error err;

    if (write_vocab_file(path, NULL, NULL, true, true)) {
        CHECK_STATUS(tokenizer_status(path, &err), MR_ERR_NOT_FOUND);
        CHECK(strstr(err.message, "tokenizer.ggml.model") != NULL);
    }
    if (write_vocab_file(path, "llama", NULL, false, true)) {
        CHECK_STATUS(tokenizer_status(path, &err), MR_ERR_NOT_FOUND);
        CHECK(strstr(err.message, "tokenizer.ggml.tokens") != NULL);
    }
    if (write_vocab_file(path, "llama", NULL, true, false)) {
        CHECK_STATUS(tokenizer_status(path, &err), MR_ERR_NOT_FOUND);
        CHECK(strstr(err.message, "tokenizer.ggml.scores") != NULL);
    }
    if (write_vocab_file(path, "gpt2", "gpt-2", true, false)) {
        CHECK_STATUS(tokenizer_status(path, &err), MR_ERR_NOT_FOUND);
        CHECK(strstr(err.message, "tokenizer.ggml.merges") != NULL);
    }
    if (write_vocab_file(path, "bert", NULL, true, true)) {
        CHECK_STATUS(tokenizer_status(path, &err), MR_ERR_UNSUPPORTED);
        CHECK(strstr(err.message, "\"bert\"") != NULL);
    }
    if (write_vocab_file(path, "gpt2", "deepseek-llm", true, false)) {
        CHECK_STATUS(tokenizer_status(path, &err), MR_ERR_UNSUPPORTED);
        CHECK(strstr(err.message, "\"deepseek-llm\"") != NULL);
    }
    if (write_vocab_file(path, "llama", NULL, true, true)) {
        CHECK_STATUS(tokenizer_status(path, &err), MR_OK);
    }
    unlink(path);
}

int main(void) {
    MR_RUN(spm_matches_sentencepiece);
    MR_RUN(gpt2_matches_tiktoken);
    MR_RUN(bpe_random_bytes_round_trip);
    MR_RUN(spm_random_bytes_round_trip);
    MR_RUN(gpt2_special_token_parsing);
    MR_RUN(spm_bos_and_decode_flags);
    MR_RUN(encode_reports_needed_capacity);
    MR_RUN(stories_vocabulary_decodes_story);
    MR_RUN(long_input_encodes);
    MR_RUN(bpe_rejects_bad_merges);
    MR_RUN(bpe_rejects_missing_byte_token);
    MR_RUN(vocab_rejects_bad_types_and_ids);
    MR_RUN(gguf_missing_keys_are_named);
    return mr_test_finish();
}

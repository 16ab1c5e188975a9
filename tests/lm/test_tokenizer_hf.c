/*
 * Hugging Face tokenizer.json loading. tests/fixtures/tokenizer_hf.py
 * writes two files from GGUF vocabularies in tests/data/lm/: the
 * SentencePiece vocabulary of stories260K in Llama 2's layout, and GPT-2's
 * byte-level vocabulary cut to its first 8000 merges. Each must encode
 * texts to the same ids as the GGUF file's own tokenizer. Inline files
 * cover the layouts that are rejected.
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/gguf.h"
#include "multiround/tokenizer.h"
#include "test.h"

#define STORIES_GGUF "data/lm/stories260K.gguf"
#define STORIES_JSON "fixtures/tokenizer_hf_stories.json"
#define GPT2_GGUF "data/lm/ggml-vocab-gpt-2.gguf"
#define GPT2_JSON "fixtures/tokenizer_hf_gpt2.json"
#define GPT2_CUT (256 + 8000) /* ids the cut GPT-2 vocabulary has, besides 50256 */

static mr_tokenizer *from_gguf(const char *path) {
    mr_gguf *gguf = NULL;
    mr_tokenizer *tok = NULL;
    mr_error err = {0};
    if (mr_gguf_open(path, &gguf, &err) != MR_OK ||
        mr_tokenizer_from_gguf(gguf, &tok, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "no tokenizer from %s: %s", path, err.message);
    }
    mr_gguf_close(gguf);
    return tok;
}

static mr_tokenizer *from_json(const char *path) {
    mr_tokenizer *tok = NULL;
    mr_error err = {0};
    if (mr_tokenizer_from_hf_json(path, &tok, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "no tokenizer from %s: %s", path, err.message);
    }
    return tok;
}

/* Encodes text with both tokenizers and checks the ids match; returns the
 * largest id (-1 on failure). */
static int32_t check_same_ids(const mr_tokenizer *gguf_tok, const mr_tokenizer *json_tok,
                              const char *text, bool add_bos, bool parse_special, int line) {
    int32_t a[512];
    int32_t b[512];
    int64_t na = 0;
    int64_t nb = 0;
    mr_error err = {0};
    if (mr_tokenizer_encode(gguf_tok, text, strlen(text), add_bos, parse_special, a, 512, &na,
                            &err) != MR_OK ||
        mr_tokenizer_encode(json_tok, text, strlen(text), add_bos, parse_special, b, 512, &nb,
                            &err) != MR_OK) {
        mr_test_fail(__FILE__, line, "encode of \"%s\" failed: %s", text, err.message);
        return -1;
    }
    if (na != nb) {
        mr_test_fail(__FILE__, line, "\"%s\": %lld ids from GGUF, %lld from tokenizer.json", text,
                     (long long)na, (long long)nb);
        return -1;
    }
    int32_t largest = -1;
    for (int64_t i = 0; i < na; i++) {
        if (a[i] != b[i]) {
            mr_test_fail(__FILE__, line, "\"%s\": id %lld is %d from GGUF, %d from tokenizer.json",
                         text, (long long)i, a[i], b[i]);
            return -1;
        }
        largest = a[i] > largest ? a[i] : largest;
    }
    return largest;
}

static const char *const stories_texts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside in the park.",
    " leading space and  two  spaces",
    "Tom said, \"Can I have the big red ball?\"\nMom smiled.",
    "caf\xC3\xA9 \xE2\x98\x83 \xF0\x9F\x98\x80 x", /* bytes fall back for unknown characters */
    "",
    "a",
    "zzzzzz qqqq 12345 !!!",
};

static void stories_json_matches_gguf(void) {
    mr_tokenizer *g = from_gguf(STORIES_GGUF);
    mr_tokenizer *j = from_json(STORIES_JSON);
    if (g == NULL || j == NULL) {
        mr_tokenizer_free(g);
        mr_tokenizer_free(j);
        return;
    }
    CHECK_INT_EQ(mr_tokenizer_get_kind(j), MR_TOKENIZER_SPM);
    CHECK_INT_EQ(mr_tokenizer_n_vocab(j), 512);
    CHECK_INT_EQ(mr_tokenizer_bos(j), mr_tokenizer_bos(g));
    CHECK_INT_EQ(mr_tokenizer_eos(j), mr_tokenizer_eos(g));
    CHECK_INT_EQ(mr_tokenizer_unk(j), mr_tokenizer_unk(g));
    CHECK(mr_tokenizer_add_bos_default(j));
    CHECK_INT_EQ(mr_tokenizer_token_type(j, 0), MR_TOKEN_UNKNOWN);
    CHECK_INT_EQ(mr_tokenizer_token_type(j, 1), MR_TOKEN_CONTROL);
    CHECK_INT_EQ(mr_tokenizer_token_type(j, 3 + 0x41), MR_TOKEN_BYTE);

    int n_texts = (int)(sizeof stories_texts / sizeof stories_texts[0]);
    for (int i = 0; i < n_texts; i++) {
        check_same_ids(g, j, stories_texts[i], false, false, __LINE__);
        check_same_ids(g, j, stories_texts[i], true, false, __LINE__);
    }
    /* "</s>" in the text becomes the EOS id with parse_special. */
    check_same_ids(g, j, "The end.</s>Once", true, true, __LINE__);

    /* Decoding through the JSON tokenizer restores the text. */
    const char *text = stories_texts[3];
    int32_t ids[256];
    int64_t n = 0;
    mr_error err = {0};
    CHECK_STATUS(mr_tokenizer_encode(j, text, strlen(text), true, false, ids, 256, &n, &err),
                 MR_OK);
    char back[512];
    size_t len = 0;
    CHECK_STATUS(mr_tokenizer_decode(j, ids, n, true, false, back, sizeof back, &len, &err),
                 MR_OK);
    CHECK(len == strlen(text) && memcmp(back, text, len) == 0);
    mr_tokenizer_free(g);
    mr_tokenizer_free(j);
}

/* Common words only, so that the full vocabulary's ids stay below the cut. */
static const char *const gpt2_texts[] = {
    "This is a test of the system. The man said that he would go home.",
    "We are going to the city, and they will come back later!",
    "I'm sure they've said it's 42, isn't it?",
    "  two more\n\nand new lines   \n",
    "so 1234 or 5, then #%&*() and @!",
};

static void gpt2_json_matches_gguf(void) {
    mr_tokenizer *g = from_gguf(GPT2_GGUF);
    mr_tokenizer *j = from_json(GPT2_JSON);
    if (g == NULL || j == NULL) {
        mr_tokenizer_free(g);
        mr_tokenizer_free(j);
        return;
    }
    CHECK_INT_EQ(mr_tokenizer_get_kind(j), MR_TOKENIZER_BPE);
    CHECK_INT_EQ(mr_tokenizer_n_vocab(j), 50257);
    CHECK_INT_EQ(mr_tokenizer_eos(j), 50256);
    CHECK(!mr_tokenizer_add_bos_default(j));
    CHECK_INT_EQ(mr_tokenizer_token_type(j, 50256), MR_TOKEN_CONTROL);

    /* The cut vocabulary agrees only on texts whose GGUF ids stay below
     * the cut, so each text checks that too. */
    int n_texts = (int)(sizeof gpt2_texts / sizeof gpt2_texts[0]);
    for (int i = 0; i < n_texts; i++) {
        int32_t largest = check_same_ids(g, j, gpt2_texts[i], false, false, __LINE__);
        CHECK(largest >= 0 && largest < GPT2_CUT);
    }
    int32_t largest = check_same_ids(g, j, "the end<|endoftext|> and start", false, true, __LINE__);
    CHECK_INT_EQ(largest, 50256);

    /* Bytes that are not UTF-8 still round-trip. */
    const char raw[] = "\xFF\xFE ok \x80";
    int32_t ids[64];
    int64_t n = 0;
    mr_error err = {0};
    CHECK_STATUS(mr_tokenizer_encode(j, raw, sizeof raw - 1, false, false, ids, 64, &n, &err),
                 MR_OK);
    char back[64];
    size_t len = 0;
    CHECK_STATUS(mr_tokenizer_decode(j, ids, n, false, false, back, sizeof back, &len, &err),
                 MR_OK);
    CHECK(len == sizeof raw - 1 && memcmp(back, raw, len) == 0);
    mr_tokenizer_free(g);
    mr_tokenizer_free(j);
}

/* Loads an inline tokenizer.json and returns the status. */
static mr_status load_inline(const char *json, mr_error *err) {
    mr_tokenizer *tok = NULL;
    mr_status status = mr_tokenizer_from_hf_json_text(json, strlen(json), "inline.json", &tok,
                                                      err);
    mr_tokenizer_free(tok);
    return status;
}

/* A byte-level vocabulary of the 256 byte characters plus "ab", written
 * into buffer with the given pre_tokenizer JSON and merges. */
static char *byte_level_json(const char *pre_tokenizer, const char *merges) {
    size_t capacity = 16384;
    char *json = malloc(capacity);
    size_t used = (size_t)snprintf(json, capacity,
                                   "{\"pre_tokenizer\":%s,\"model\":{\"type\":\"BPE\","
                                   "\"vocab\":{",
                                   pre_tokenizer);
    /* GPT-2's byte alphabet: printable bytes stand for themselves and the
     * other 68 take U+0100 onwards. */
    int shifted = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)shifted++;
        char utf8[8];
        if (cp == '"' || cp == '\\') {
            snprintf(utf8, sizeof utf8, "\\%c", (char)cp);
        } else if (cp < 0x80) {
            snprintf(utf8, sizeof utf8, "%c", (char)cp);
        } else {
            snprintf(utf8, sizeof utf8, "%c%c", (char)(0xC0 | (cp >> 6)),
                     (char)(0x80 | (cp & 0x3F)));
        }
        used += (size_t)snprintf(json + used, capacity - used, "\"%s\":%d,", utf8, b);
    }
    snprintf(json + used, capacity - used, "\"ab\":256},\"merges\":%s}}", merges);
    return json;
}

static void merge_pairs_form_loads(void) {
    char *json = byte_level_json("{\"type\":\"ByteLevel\",\"add_prefix_space\":false}",
                                 "[[\"a\",\"b\"]]");
    mr_tokenizer *tok = NULL;
    mr_error err = {0};
    CHECK_STATUS(mr_tokenizer_from_hf_json_text(json, strlen(json), "pairs.json", &tok, &err),
                 MR_OK);
    if (tok != NULL) {
        int32_t ids[8];
        int64_t n = 0;
        CHECK_STATUS(mr_tokenizer_encode(tok, "abc", 3, false, false, ids, 8, &n, &err), MR_OK);
        CHECK_INT_EQ(n, 2);
        CHECK_INT_EQ(ids[0], 256);
        CHECK_INT_EQ(ids[1], 'c');
        CHECK_INT_EQ(mr_tokenizer_bos(tok), -1);
    }
    mr_tokenizer_free(tok);
    free(json);
}

static void llama3_pattern_rejected(void) {
    const char *llama3 =
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}\"},"
        "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
        "\"add_prefix_space\":false,\"use_regex\":false}]}";
    char *json = byte_level_json(llama3, "[\"a b\"]");
    mr_error err = {0};
    CHECK_STATUS(load_inline(json, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "pre_tokenizer Split pattern") != NULL);
    CHECK(strstr(err.message, "inline.json") != NULL);
    free(json);

    /* The same Sequence with GPT-2's own pattern loads. */
    const char *gpt2_split =
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
        "\"'s|'t|'re|'ve|'m|'ll|'d| ?\\\\p{L}+| ?\\\\p{N}+| ?[^\\\\s\\\\p{L}\\\\p{N}]+|"
        "\\\\s+(?!\\\\S)|\\\\s+\"}},{\"type\":\"ByteLevel\",\"use_regex\":false}]}";
    json = byte_level_json(gpt2_split, "[\"a b\"]");
    CHECK_STATUS(load_inline(json, &err), MR_OK);
    free(json);

    json = byte_level_json("{\"type\":\"ByteLevel\",\"add_prefix_space\":true}", "[\"a b\"]");
    CHECK_STATUS(load_inline(json, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "add_prefix_space") != NULL);
    free(json);
}

static void unsupported_files_rejected(void) {
    mr_error err = {0};
    CHECK_STATUS(load_inline("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", &err),
                 MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "\"Unigram\"") != NULL);

    CHECK_STATUS(load_inline("{\"added_tokens\":[]}", &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "\"model\"") != NULL);

    CHECK_STATUS(load_inline("{\"model\": [1, 2", &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "not valid JSON") != NULL);

    CHECK_STATUS(load_inline("{\"normalizer\":{\"type\":\"NFKC\"},\"model\":{\"type\":\"BPE\","
                             "\"vocab\":{\"a\":0},\"merges\":[]}}",
                             &err),
                 MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "\"NFKC\"") != NULL);

    /* A merge that makes a token missing from the vocabulary. */
    CHECK_STATUS(load_inline("{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
                             "\"content\":\"\xE2\x96\x81\"},\"model\":{\"type\":\"BPE\","
                             "\"byte_fallback\":true,\"vocab\":{\"a\":0,\"b\":1},"
                             "\"merges\":[\"a b\"]}}",
                             &err),
                 MR_ERR_FORMAT);
    CHECK(strstr(err.message, "merge 0") != NULL);

    mr_tokenizer *tok = NULL;
    CHECK_STATUS(mr_tokenizer_from_hf_json("fixtures/no_such_tokenizer.json", &tok, &err),
                 MR_ERR_NOT_FOUND);
    CHECK(tok == NULL);
}

int main(void) {
    MR_RUN(stories_json_matches_gguf);
    MR_RUN(gpt2_json_matches_gguf);
    MR_RUN(merge_pairs_form_loads);
    MR_RUN(llama3_pattern_rejected);
    MR_RUN(unsupported_files_rejected);
    return mr_test_finish();
}

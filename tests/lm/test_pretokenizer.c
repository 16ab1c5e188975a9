/*
 * The Llama 3 and Qwen2 pre-tokenizers. fixtures/pretokenizer.json, from
 * tests/fixtures/pretokenizer_reference.py, holds how Python's regex
 * module splits hard inputs under the GPT-2, Llama 3 and Qwen2 patterns,
 * and the ids that GPT-2's vocabulary gives when each piece is merged on
 * its own. The cases check the pieces, those ids through both loaders
 * (GGUF tokenizer.ggml.pre and a tokenizer.json Split), the loaders'
 * rejections, ignore_merges, and that random bytes split and round-trip.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/gguf.h"
#include "multiround/rng.h"
#include "multiround/tokenizer.h"
#include "test.h"
#include "tokenizer_internal.h"

#define FIXTURE "fixtures/pretokenizer.json"
#define GPT2_GGUF "data/lm/ggml-vocab-gpt-2.gguf"
#define GPT2_JSON "fixtures/tokenizer_hf_gpt2.json"

static const char *const pattern_names[3] = {"gpt2", "llama3", "qwen2"};
static const mr_tokenizer_pre patterns[3] = {MR_TOKENIZER_PRE_GPT2, MR_TOKENIZER_PRE_LLAMA3,
                                             MR_TOKENIZER_PRE_QWEN2};

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

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

/* Parses the fixture, or fails the test and returns NULL. */
static cJSON *load_fixture(void) {
    size_t size = 0;
    char *text = read_file(FIXTURE, &size);
    cJSON *root = text != NULL ? cJSON_ParseWithLength(text, size) : NULL;
    free(text);
    if (root == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot read %s", FIXTURE);
    }
    return root;
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

/* Writes len bytes as hex into out (2 * len + 1 bytes). */
static void to_hex(const char *bytes, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) {
        snprintf(out + 2 * i, 3, "%02x", (unsigned char)bytes[i]);
    }
    out[2 * len] = '\0';
}

/* Reads GGUF's string array key into freshly allocated arrays. */
static bool read_strings(const mr_gguf *gguf, const char *key, int64_t *count,
                         const char ***texts, size_t **lens) {
    mr_gguf_type type;
    const void *data;
    mr_error err = {0};
    if (mr_gguf_get_array(gguf, key, &type, count, &data, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "%s: %s", key, err.message);
        return false;
    }
    *texts = malloc((size_t)*count * sizeof **texts);
    *lens = malloc((size_t)*count * sizeof **lens);
    for (int64_t j = 0; j < *count; j++) {
        if (mr_gguf_array_string(gguf, key, j, &(*texts)[j], &(*lens)[j], &err) != MR_OK) {
            mr_test_fail(__FILE__, __LINE__, "%s[%lld]: %s", key, (long long)j, err.message);
            return false;
        }
    }
    return true;
}

/* GPT-2's vocabulary and merges from the GGUF file, as create() takes them. */
typedef struct gpt2_vocab {
    mr_gguf *gguf;
    const char **tokens;
    size_t *token_lens;
    const char **merges;
    size_t *merge_lens;
    mr_tokenizer_vocab vocab;
} gpt2_vocab;

static bool gpt2_vocab_open(gpt2_vocab *v) {
    memset(v, 0, sizeof *v);
    mr_error err = {0};
    if (mr_gguf_open(GPT2_GGUF, &v->gguf, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "cannot open %s: %s", GPT2_GGUF, err.message);
        return false;
    }
    if (!read_strings(v->gguf, "tokenizer.ggml.tokens", &v->vocab.n_tokens, &v->tokens,
                      &v->token_lens) ||
        !read_strings(v->gguf, "tokenizer.ggml.merges", &v->vocab.n_merges, &v->merges,
                      &v->merge_lens)) {
        return false;
    }
    v->vocab.tokens = v->tokens;
    v->vocab.token_lens = v->token_lens;
    v->vocab.merges = v->merges;
    v->vocab.merge_lens = v->merge_lens;
    v->vocab.bos_id = -1;
    v->vocab.eos_id = -1;
    v->vocab.unk_id = -1;
    return true;
}

static void gpt2_vocab_close(gpt2_vocab *v) {
    free(v->tokens);
    free(v->token_lens);
    free(v->merges);
    free(v->merge_lens);
    mr_gguf_close(v->gguf);
}

/* Encodes every fixture case with tok and compares with the ids of
 * pattern name; returns the number of cases that differ. */
static int check_fixture_ids(const mr_tokenizer *tok, const cJSON *cases, const char *name,
                             const char *label) {
    int failures = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *hex = cJSON_GetObjectItem(c, "text_hex")->valuestring;
        char *text = malloc(strlen(hex) / 2 + 1);
        size_t len = from_hex(hex, text);
        int64_t cap = (int64_t)len + 1;
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        int64_t n = 0;
        mr_error err = {0};
        mr_status status = mr_tokenizer_encode(tok, text, len, false, false, ids, cap, &n, &err);

        const cJSON *expected = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "ids"), name);
        bool same = status == MR_OK && n == cJSON_GetArraySize(expected);
        for (int64_t i = 0; same && i < n; i++) {
            same = ids[i] == cJSON_GetArrayItem(expected, (int)i)->valueint;
        }
        if (!same) {
            failures++;
            mr_test_fail(__FILE__, __LINE__, "%s, case \"%s\": %lld ids (%s), expected %d",
                         label, cJSON_GetObjectItem(c, "name")->valuestring, (long long)n,
                         status == MR_OK ? "values differ" : err.message,
                         cJSON_GetArraySize(expected));
        }
        free(ids);
        free(text);
    }
    return failures;
}

/* ------------------------------------------------------------------------
 * Pieces
 * ------------------------------------------------------------------------ */

/* Each pattern splits each fixture text into the reference pieces. */
static void pieces_match_regex_module(void) {
    cJSON *root = load_fixture();
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    CHECK(cJSON_GetArraySize(cases) >= 40);

    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        const char *case_name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *hex = cJSON_GetObjectItem(c, "text_hex")->valuestring;
        char *text = malloc(strlen(hex) / 2 + 1);
        char *piece_hex = malloc(strlen(hex) + 1);
        size_t len = from_hex(hex, text);

        for (int p = 0; p < 3; p++) {
            const cJSON *expected =
                cJSON_GetObjectItem(cJSON_GetObjectItem(c, "pieces"), pattern_names[p]);
            int k = 0;
            for (size_t i = 0; i < len; k++) {
                size_t end = mr_tok_pretoken_end(patterns[p], text, len, i);
                to_hex(text + i, end - i, piece_hex);
                const cJSON *want = cJSON_GetArrayItem(expected, k);
                if (want == NULL || strcmp(want->valuestring, piece_hex) != 0) {
                    mr_test_fail(__FILE__, __LINE__,
                                 "%s, case \"%s\": piece %d is %s, expected %s", pattern_names[p],
                                 case_name, k, piece_hex, want != NULL ? want->valuestring : "none");
                    break;
                }
                i = end;
            }
            if (k != cJSON_GetArraySize(expected) && mr_test_failures_in_case == 0) {
                mr_test_fail(__FILE__, __LINE__, "%s, case \"%s\": %d pieces, expected %d",
                             pattern_names[p], case_name, k, cJSON_GetArraySize(expected));
            }
        }
        free(piece_hex);
        free(text);
    }
    cJSON_Delete(root);
}

/* A few splits spelled out, so that a reader sees what differs. */
static void llama3_and_qwen2_splits(void) {
    const char *text = "I'VE 12345 \tab!\n\n  x";
    size_t len = strlen(text);
    const char *llama3[] = {"I", "'VE", " ", "123", "45", " ", "\tab", "!\n\n", " ", " x"};
    const char *qwen2[] = {"I", "'VE", " ", "1", "2", "3", "4", "5", " ", "\tab", "!\n\n", " ",
                           " x"};
    const char *gpt2[] = {"I", "'", "VE", " 12345", " ", "\t", "ab", "!", "\n\n ", " x"};
    const char *const *expected[3] = {gpt2, llama3, qwen2};
    int counts[3] = {10, 10, 13};

    for (int p = 0; p < 3; p++) {
        int k = 0;
        for (size_t i = 0; i < len; k++) {
            size_t end = mr_tok_pretoken_end(patterns[p], text, len, i);
            bool same = k < counts[p] && strlen(expected[p][k]) == end - i &&
                        memcmp(expected[p][k], text + i, end - i) == 0;
            if (!same) {
                mr_test_fail(__FILE__, __LINE__, "%s: piece %d is \"%.*s\"", pattern_names[p], k,
                             (int)(end - i), text + i);
                break;
            }
            i = end;
        }
        CHECK_INT_EQ(k, counts[p]);
    }
}

/* Random bytes, valid UTF-8 or not, split into non-empty pieces under
 * every pattern, and encode and decode back to themselves. */
static void random_bytes_round_trip(void) {
    gpt2_vocab v;
    if (!gpt2_vocab_open(&v)) {
        gpt2_vocab_close(&v);
        return;
    }
    mr_rng rng;
    mr_rng_init(&rng, 11);
    char text[400];
    char back[400];
    int32_t ids[401];

    for (int p = 0; p < 3; p++) {
        v.vocab.pre = patterns[p];
        mr_tokenizer *tok = NULL;
        mr_error err = {0};
        CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_OK);
        if (tok == NULL) {
            continue;
        }
        for (int round = 0; round < 200; round++) {
            size_t len = 1 + (size_t)mr_rng_below(&rng, sizeof text);
            for (size_t i = 0; i < len; i++) {
                /* Mostly ASCII with white space and digits, some high bytes. */
                uint32_t r = (uint32_t)mr_rng_next_u64(&rng);
                static const char ascii[] = " \t\r\n'sSdD0123456789aZ!.,";
                text[i] = r % 4 == 0 ? (char)(0x80 + (r >> 8) % 128)
                                     : ascii[(r >> 8) % (sizeof ascii - 1)];
            }
            size_t pieces_end = 0;
            while (pieces_end < len) {
                size_t end = mr_tok_pretoken_end(patterns[p], text, len, pieces_end);
                if (end <= pieces_end || end > len) {
                    mr_test_fail(__FILE__, __LINE__, "%s: empty or overlong piece at %zu",
                                 pattern_names[p], pieces_end);
                    break;
                }
                pieces_end = end;
            }

            int64_t n = 0;
            size_t back_len = 0;
            CHECK_STATUS(mr_tokenizer_encode(tok, text, len, false, false, ids, 401, &n, &err),
                         MR_OK);
            CHECK_STATUS(mr_tokenizer_decode(tok, ids, n, false, false, back, sizeof back,
                                             &back_len, &err),
                         MR_OK);
            CHECK_INT_EQ(back_len, len);
            if (back_len != len || memcmp(back, text, len) != 0) {
                mr_test_fail(__FILE__, __LINE__, "%s: round %d does not round-trip",
                             pattern_names[p], round);
                break;
            }
        }
        mr_tokenizer_free(tok);
    }
    gpt2_vocab_close(&v);
}

/* ------------------------------------------------------------------------
 * Merges after the split
 * ------------------------------------------------------------------------ */

/* GPT-2's vocabulary under each pattern gives the reference ids, so each
 * reference piece is merged on its own. */
static void gpt2_vocab_ids_per_pattern(void) {
    cJSON *root = load_fixture();
    gpt2_vocab v;
    if (root == NULL || !gpt2_vocab_open(&v)) {
        gpt2_vocab_close(&v);
        cJSON_Delete(root);
        return;
    }
    for (int p = 0; p < 3; p++) {
        v.vocab.pre = patterns[p];
        v.vocab.ignore_merges = patterns[p] == MR_TOKENIZER_PRE_LLAMA3;
        mr_tokenizer *tok = NULL;
        mr_error err = {0};
        CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_OK);
        if (tok != NULL) {
            CHECK(mr_tokenizer_get_pre(tok) == patterns[p]);
            CHECK_INT_EQ(check_fixture_ids(tok, cJSON_GetObjectItem(root, "cases"),
                                           pattern_names[p], "created"),
                         0);
        }
        mr_tokenizer_free(tok);
    }
    gpt2_vocab_close(&v);
    cJSON_Delete(root);
}

/* With ignore_merges a piece that is a whole token becomes it, even when
 * no merge path leads there; without, the merges decide. */
static void ignore_merges_takes_whole_piece(void) {
    gpt2_vocab v;
    if (!gpt2_vocab_open(&v)) {
        gpt2_vocab_close(&v);
        return;
    }
    /* " hello" is GPT-2 token 23748. Dropping every merge leaves the
     * bytes unmerged unless the whole piece is looked up. */
    v.vocab.n_merges = 0;
    v.vocab.pre = MR_TOKENIZER_PRE_LLAMA3;
    int32_t ids[16];
    int64_t n = 0;
    mr_error err = {0};
    for (int ignore = 0; ignore < 2; ignore++) {
        v.vocab.ignore_merges = ignore == 1;
        mr_tokenizer *tok = NULL;
        CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &tok, &err), MR_OK);
        if (tok == NULL) {
            continue;
        }
        CHECK_STATUS(mr_tokenizer_encode(tok, "say hello", 9, false, false, ids, 16, &n, &err),
                     MR_OK);
        if (ignore == 1) {
            CHECK_INT_EQ(n, 2);
            CHECK_INT_EQ(ids[0], 16706); /* "say" */
            CHECK_INT_EQ(ids[1], 23748); /* " hello" */
        } else {
            CHECK_INT_EQ(n, 9);
            CHECK_INT_EQ(ids[0], 82); /* "s" */
        }
        mr_tokenizer_free(tok);
    }

    v.vocab.pre = (mr_tokenizer_pre)3;
    mr_tokenizer *bad = NULL;
    CHECK_STATUS(mr_tokenizer_create_bpe(&v.vocab, &bad, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(bad == NULL);
    CHECK(strstr(err.message, "pre-tokenizer 3") != NULL);
    gpt2_vocab_close(&v);
}

/* ------------------------------------------------------------------------
 * Loaders
 * ------------------------------------------------------------------------ */

/* Writes GPT-2's GGUF vocabulary with tokenizer.ggml.pre = pre to path. */
static bool write_gguf_with_pre(const char *path, const char *pre) {
    mr_gguf *gguf = NULL;
    mr_error err = {0};
    mr_gguf_writer *w = mr_gguf_writer_create();
    bool ok = w != NULL && mr_gguf_open(GPT2_GGUF, &gguf, &err) == MR_OK &&
              mr_gguf_writer_set_string(w, "tokenizer.ggml.pre", pre, &err) == MR_OK &&
              mr_gguf_writer_copy_kv(w, gguf, &err) == MR_OK &&
              mr_gguf_writer_write(w, path, &err) == MR_OK;
    if (!ok) {
        mr_test_fail(__FILE__, __LINE__, "cannot write %s: %s", path, err.message);
    }
    mr_gguf_close(gguf);
    mr_gguf_writer_free(w);
    return ok;
}

/* tokenizer.ggml.pre "llama-bpe" and "qwen2" select the patterns (and
 * Llama 3's whole-piece lookup); other names are rejected. */
static void gguf_loader_reads_pre(void) {
    cJSON *root = load_fixture();
    char folder[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_pretok_XXXXXX", tmp != NULL ? tmp : "/tmp");
    if (root == NULL || mkdtemp(folder) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "no fixture or no temporary folder: %s",
                     strerror(errno));
        cJSON_Delete(root);
        return;
    }
    char path[300];
    snprintf(path, sizeof path, "%s/vocab.gguf", folder);

    static const char *const names[3] = {"gpt-2", "llama-bpe", "qwen2"};
    for (int p = 0; p < 3; p++) {
        mr_gguf *gguf = NULL;
        mr_tokenizer *tok = NULL;
        mr_error err = {0};
        if (!write_gguf_with_pre(path, names[p]) ||
            mr_gguf_open(path, &gguf, &err) != MR_OK) {
            continue;
        }
        CHECK_STATUS(mr_tokenizer_from_gguf(gguf, &tok, &err), MR_OK);
        if (tok != NULL) {
            CHECK(mr_tokenizer_get_pre(tok) == patterns[p]);
            CHECK_INT_EQ(check_fixture_ids(tok, cJSON_GetObjectItem(root, "cases"),
                                           pattern_names[p], names[p]),
                         0);
        }
        mr_tokenizer_free(tok);
        mr_gguf_close(gguf);
    }

    mr_gguf *gguf = NULL;
    mr_tokenizer *tok = NULL;
    mr_error err = {0};
    if (write_gguf_with_pre(path, "deepseek-llm") && mr_gguf_open(path, &gguf, &err) == MR_OK) {
        CHECK_STATUS(mr_tokenizer_from_gguf(gguf, &tok, &err), MR_ERR_UNSUPPORTED);
        CHECK(tok == NULL);
        CHECK(strstr(err.message, "\"deepseek-llm\" is not supported") != NULL);
        CHECK(strstr(err.message, "\"llama-bpe\" and \"qwen2\"") != NULL);
    }
    mr_gguf_close(gguf);
    unlink(path);
    rmdir(folder);
    cJSON_Delete(root);
}

/* Returns GPT-2's cut tokenizer.json text with its pre_tokenizer replaced
 * by a Split on regex (behavior, invert) and a ByteLevel with use_regex,
 * an NFC normalizer and model.ignore_merges; the caller frees it. */
static char *hf_json_with_split(const char *regex, const char *behavior, bool invert,
                                bool use_regex, bool ignore_merges) {
    size_t size = 0;
    char *text = read_file(GPT2_JSON, &size);
    cJSON *root = text != NULL ? cJSON_ParseWithLength(text, size) : NULL;
    free(text);
    if (root == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot read %s", GPT2_JSON);
        return NULL;
    }

    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", regex);
    cJSON_AddStringToObject(split, "behavior", behavior);
    cJSON_AddBoolToObject(split, "invert", invert);
    cJSON *byte_level = cJSON_CreateObject();
    cJSON_AddStringToObject(byte_level, "type", "ByteLevel");
    cJSON_AddBoolToObject(byte_level, "add_prefix_space", false);
    cJSON_AddBoolToObject(byte_level, "trim_offsets", true);
    cJSON_AddBoolToObject(byte_level, "use_regex", use_regex);
    cJSON *sequence = cJSON_CreateObject();
    cJSON_AddStringToObject(sequence, "type", "Sequence");
    cJSON *steps = cJSON_AddArrayToObject(sequence, "pretokenizers");
    cJSON_AddItemToArray(steps, split);
    cJSON_AddItemToArray(steps, byte_level);
    cJSON_ReplaceItemInObject(root, "pre_tokenizer", sequence);

    cJSON *nfc = cJSON_CreateObject();
    cJSON_AddStringToObject(nfc, "type", "NFC");
    cJSON_ReplaceItemInObject(root, "normalizer", nfc);
    cJSON *model = cJSON_GetObjectItem(root, "model");
    cJSON_DeleteItemFromObject(model, "ignore_merges");
    cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);

    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* Loads tokenizer.json text; returns the status and stores the handle. */
static mr_status load_hf(const char *json, mr_tokenizer **tok, mr_error *err) {
    if (json == NULL) {
        return MR_ERR_IO;
    }
    return mr_tokenizer_from_hf_json_text(json, strlen(json), "test.json", tok, err);
}

/* A Split by Llama 3's or Qwen2's published pattern selects it. The cut
 * vocabulary has other ids than the fixture's, so the check is that no
 * token crosses a reference piece boundary. */
static void hf_loader_reads_split(void) {
    cJSON *root = load_fixture();
    if (root == NULL) {
        return;
    }
    const cJSON *published = cJSON_GetObjectItem(root, "patterns");
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");

    for (int p = 1; p < 3; p++) {
        const char *regex = cJSON_GetObjectItem(published, pattern_names[p])->valuestring;
        char *json = hf_json_with_split(regex, "Isolated", false, false, p == 1);
        mr_tokenizer *tok = NULL;
        mr_error err = {0};
        CHECK_STATUS(load_hf(json, &tok, &err), MR_OK);
        free(json);
        if (tok == NULL) {
            mr_test_fail(__FILE__, __LINE__, "%s: %s", pattern_names[p], err.message);
            continue;
        }
        CHECK(mr_tokenizer_get_pre(tok) == patterns[p]);

        const cJSON *c;
        cJSON_ArrayForEach(c, cases) {
            const char *hex = cJSON_GetObjectItem(c, "text_hex")->valuestring;
            char *text = malloc(strlen(hex) / 2 + 1);
            size_t len = from_hex(hex, text);
            int32_t *ids = malloc((len + 1) * sizeof *ids);
            bool *boundary = calloc(len + 1, sizeof *boundary);
            int64_t n = 0;
            CHECK_STATUS(mr_tokenizer_encode(tok, text, len, false, false, ids, (int64_t)len + 1,
                                             &n, &err),
                         MR_OK);
            size_t offset = 0;
            for (int64_t i = 0; i < n; i++) {
                size_t piece_len = 0;
                mr_tokenizer_token_to_piece(tok, ids[i], true, NULL, 0, &piece_len, &err);
                offset += piece_len;
                if (offset <= len) {
                    boundary[offset] = true;
                }
            }
            CHECK_INT_EQ(offset, len);
            size_t at = 0;
            const cJSON *piece;
            cJSON_ArrayForEach(piece, cJSON_GetObjectItem(cJSON_GetObjectItem(c, "pieces"),
                                                          pattern_names[p])) {
                at += strlen(piece->valuestring) / 2;
                if (at <= len && !boundary[at]) {
                    mr_test_fail(__FILE__, __LINE__, "%s, case \"%s\": a token crosses byte %zu",
                                 pattern_names[p], cJSON_GetObjectItem(c, "name")->valuestring,
                                 at);
                    break;
                }
            }
            free(boundary);
            free(ids);
            free(text);
        }
        mr_tokenizer_free(tok);
    }
    cJSON_Delete(root);
}

/* Layouts that would split twice or differently are rejected. */
static void hf_loader_rejects_other_splits(void) {
    cJSON *root = load_fixture();
    if (root == NULL) {
        return;
    }
    const char *llama3 =
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "patterns"), "llama3")->valuestring;
    mr_tokenizer *tok = NULL;
    mr_error err = {0};

    char *json = hf_json_with_split(llama3, "Isolated", false, true, false);
    CHECK_STATUS(load_hf(json, &tok, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "use_regex true after a Split") != NULL);
    free(json);

    json = hf_json_with_split(llama3, "Removed", false, false, false);
    CHECK_STATUS(load_hf(json, &tok, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "behavior \"Isolated\"") != NULL);
    free(json);

    json = hf_json_with_split(llama3, "Isolated", true, false, false);
    CHECK_STATUS(load_hf(json, &tok, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "inverted") != NULL);
    free(json);

    json = hf_json_with_split("\\p{N}{1,3}|\\s+", "Isolated", false, false, false);
    CHECK_STATUS(load_hf(json, &tok, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "Split pattern \"\\p{N}{1,3}|\\s+\" is not supported") != NULL);
    free(json);
    CHECK(tok == NULL);
    cJSON_Delete(root);
}

int main(void) {
    MR_RUN(pieces_match_regex_module);
    MR_RUN(llama3_and_qwen2_splits);
    MR_RUN(random_bytes_round_trip);
    MR_RUN(gpt2_vocab_ids_per_pattern);
    MR_RUN(ignore_merges_takes_whole_piece);
    MR_RUN(gguf_loader_reads_pre);
    MR_RUN(hf_loader_reads_split);
    MR_RUN(hf_loader_rejects_other_splits);
    return mr_test_finish();
}

/*
 * A tokenizer from a Hugging Face tokenizer.json file. The file's model,
 * normalizer, pre-tokenizer, post-processor and added tokens are mapped
 * onto the two algorithms of tokenizer.h, which lists the layouts that
 * map and how each field is used.
 */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer_internal.h"

/* Largest tokenizer.json read; real ones are under 20 MB. */
#define HF_JSON_MAX_BYTES (512L * 1024 * 1024)

/* GPT-2's pre-tokenizer pattern as tokenizer.json stores it (the regex of
 * the ByteLevel pre-tokenizer, and of a Split that some files use). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Llama 3's and Qwen2's patterns, as the Split pre-tokenizers of
 * meta-llama/Meta-Llama-3-8B's and Qwen2's tokenizer.json files on
 * Hugging Face store them. */
static const char llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char qwen2_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char metaspace[] = "\xE2\x96\x81"; /* U+2581 */

/* What the normalizer and pre-tokenizer amount to. */
typedef struct hf_layout {
    bool byte_level;      /* the GPT-2 byte-level pre-tokenizer */
    mr_tokenizer_pre pre; /* the pattern that splits text before merges */
    bool space_to_meta;   /* spaces become U+2581 (SentencePiece style) */
    bool prepend_meta;    /* U+2581 is prepended to the text */
} hf_layout;

/* Returns the string member key of obj, or NULL. */
static const char *get_string(const cJSON *obj, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* Returns whether obj's type member is type. */
static bool has_type(const cJSON *obj, const char *type) {
    const char *value = get_string(obj, "type");
    return value != NULL && strcmp(value, type) == 0;
}

/* Reads a boolean member, fallback when absent. */
static bool get_bool(const cJSON *obj, const char *key, bool fallback) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsBool(item) ? cJSON_IsTrue(item) : fallback;
}

/* Maps one normalizer step onto the layout. */
static mr_status read_normalizer_step(const cJSON *step, const char *name, hf_layout *layout,
                                      mr_error *err) {
    const char *type = get_string(step, "type");
    if (type != NULL && strcmp(type, "NFC") == 0) {
        /* NOTE: NFC is not applied. Text already in NFC (most text, and
         * all ASCII) encodes as with it; decomposed accents do not. */
        return MR_OK;
    }
    if (type != NULL && strcmp(type, "Prepend") == 0) {
        const char *prepend = get_string(step, "prepend");
        if (prepend != NULL && strcmp(prepend, metaspace) == 0) {
            layout->prepend_meta = true;
            return MR_OK;
        }
    } else if (type != NULL && strcmp(type, "Replace") == 0) {
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(step, "pattern");
        const char *from = get_string(pattern, "String");
        const char *to = get_string(step, "content");
        if (from != NULL && to != NULL && strcmp(from, " ") == 0 && strcmp(to, metaspace) == 0) {
            layout->space_to_meta = true;
            return MR_OK;
        }
    }
    return mr_error_set(err, MR_ERR_UNSUPPORTED,
                        "tokenizer: %s: normalizer step \"%s\" is not supported; supported are "
                        "NFC, Prepend \"\\u2581\" and Replace \" \" with \"\\u2581\"",
                        name, type == NULL ? "(no type)" : type);
}

/* Maps the normalizer (null, one step or a Sequence) onto the layout. */
static mr_status read_normalizer(const cJSON *normalizer, const char *name, hf_layout *layout,
                                 mr_error *err) {
    if (normalizer == NULL || cJSON_IsNull(normalizer)) {
        return MR_OK;
    }
    if (!has_type(normalizer, "Sequence")) {
        return read_normalizer_step(normalizer, name, layout, err);
    }
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(normalizer, "normalizers")) {
        mr_status status = read_normalizer_step(step, name, layout, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* Maps one pre-tokenizer step onto the layout. A ByteLevel step splits by
 * GPT-2's pattern when use_regex is true. A Split step must use GPT-2's,
 * Llama 3's or Qwen2's pattern, and the last two need the ByteLevel step
 * after them to have use_regex false, so that text splits only once. */
static mr_status read_pre_tokenizer_step(const cJSON *step, const char *name, bool *split_seen,
                                         hf_layout *layout, mr_error *err) {
    const char *type = get_string(step, "type");
    if (type != NULL && strcmp(type, "ByteLevel") == 0) {
        if (get_bool(step, "add_prefix_space", false)) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "tokenizer: %s: pre_tokenizer ByteLevel with add_prefix_space "
                                "true is not supported",
                                name);
        }
        bool use_regex = get_bool(step, "use_regex", true);
        if (!use_regex && !*split_seen) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "tokenizer: %s: pre_tokenizer ByteLevel with use_regex false "
                                "and no Split before it is not supported",
                                name);
        }
        if (use_regex && layout->pre != MR_TOKENIZER_PRE_GPT2) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "tokenizer: %s: pre_tokenizer ByteLevel with use_regex true "
                                "after a Split by Llama 3's or Qwen2's pattern is not supported; "
                                "set use_regex to false",
                                name);
        }
        layout->byte_level = true;
        return MR_OK;
    }
    if (type != NULL && strcmp(type, "Split") == 0) {
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(step, "pattern");
        const char *regex = get_string(pattern, "Regex");
        const char *behavior = get_string(step, "behavior");
        if (regex != NULL && strcmp(regex, gpt2_pattern) == 0) {
            layout->pre = MR_TOKENIZER_PRE_GPT2;
        } else if (regex != NULL && strcmp(regex, llama3_pattern) == 0) {
            layout->pre = MR_TOKENIZER_PRE_LLAMA3;
        } else if (regex != NULL && strcmp(regex, qwen2_pattern) == 0) {
            layout->pre = MR_TOKENIZER_PRE_QWEN2;
        } else {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "tokenizer: %s: pre_tokenizer Split pattern \"%.80s\" is not "
                                "supported; supported are the patterns of GPT-2, Llama 3 and "
                                "Qwen2",
                                name, regex == NULL ? "(not a regex)" : regex);
        }
        if ((behavior != NULL && strcmp(behavior, "Isolated") != 0) ||
            get_bool(step, "invert", false)) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "tokenizer: %s: pre_tokenizer Split needs behavior \"Isolated\" "
                                "and invert false, got \"%s\"%s",
                                name, behavior == NULL ? "(none)" : behavior,
                                get_bool(step, "invert", false) ? " inverted" : "");
        }
        *split_seen = true;
        return MR_OK;
    }
    if (type != NULL && strcmp(type, "Metaspace") == 0) {
        const char *replacement = get_string(step, "replacement");
        const char *scheme = get_string(step, "prepend_scheme");
        if ((replacement != NULL && strcmp(replacement, metaspace) != 0) ||
            get_bool(step, "split", false)) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "tokenizer: %s: pre_tokenizer Metaspace needs replacement "
                                "\"\\u2581\" and split false",
                                name);
        }
        layout->space_to_meta = true;
        layout->prepend_meta = scheme != NULL ? strcmp(scheme, "never") != 0
                                              : get_bool(step, "add_prefix_space", true);
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_UNSUPPORTED,
                        "tokenizer: %s: pre_tokenizer \"%s\" is not supported; supported are "
                        "ByteLevel, Metaspace and a Split by GPT-2's, Llama 3's or Qwen2's "
                        "pattern",
                        name, type == NULL ? "(no type)" : type);
}

static mr_status read_pre_tokenizer(const cJSON *pre, const char *name, hf_layout *layout,
                                    mr_error *err) {
    bool split_seen = false;
    if (pre == NULL || cJSON_IsNull(pre)) {
        return MR_OK;
    }
    if (!has_type(pre, "Sequence")) {
        return read_pre_tokenizer_step(pre, name, &split_seen, layout, err);
    }
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers")) {
        mr_status status = read_pre_tokenizer_step(step, name, &split_seen, layout, err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* Decides the algorithm from the model and the layout. */
static mr_status choose_kind(const cJSON *model, const hf_layout *layout, const char *name,
                             mr_tokenizer_kind *kind, mr_error *err) {
    bool byte_fallback = get_bool(model, "byte_fallback", false);
    if (byte_fallback) {
        if (layout->byte_level || !layout->space_to_meta) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "tokenizer: %s: a byte_fallback model needs spaces replaced by "
                                "\"\\u2581\" (normalizer Replace or pre_tokenizer Metaspace) and "
                                "no ByteLevel step",
                                name);
        }
        *kind = MR_TOKENIZER_SPM;
        return MR_OK;
    }
    if (!layout->byte_level || layout->space_to_meta || layout->prepend_meta) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "tokenizer: %s: a BPE model without byte_fallback needs the "
                            "ByteLevel pre-tokenizer and no normalizer",
                            name);
    }
    *kind = MR_TOKENIZER_BPE;
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Vocabulary arrays
 * ------------------------------------------------------------------------ */

/* The arrays handed to the create functions, with their storage. */
typedef struct hf_vocab {
    mr_tokenizer_vocab vocab;
    const char **texts;
    size_t *lens;
    int32_t *types;
    float *scores;
    char **merges;
    mr_tok_map by_text;
    bool map_ready;
} hf_vocab;

static void hf_vocab_free(hf_vocab *v) {
    if (v->merges != NULL) {
        for (int64_t i = 0; i < v->vocab.n_merges; i++) {
            free(v->merges[i]);
        }
    }
    free(v->merges);
    free((void *)v->texts);
    free(v->lens);
    free(v->types);
    free(v->scores);
    if (v->map_ready) {
        mr_tok_map_free(&v->by_text);
    }
}

/* Reads a token id member: an integer in [0, 2^31 - 2). */
static bool read_id(const cJSON *item, int64_t *id) {
    if (!cJSON_IsNumber(item) || item->valuedouble < 0 || item->valuedouble >= INT32_MAX - 1 ||
        item->valuedouble != (double)(int64_t)item->valuedouble) {
        return false;
    }
    *id = (int64_t)item->valuedouble;
    return true;
}

/* Returns the id count: one past the largest id of vocab and added. */
static mr_status count_ids(const cJSON *vocab, const cJSON *added, const char *name, int64_t *n,
                           mr_error *err) {
    *n = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, vocab) {
        int64_t id;
        if (!read_id(entry, &id)) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "tokenizer: %s: model.vocab entry \"%.40s\" is not a valid id",
                                name, entry->string);
        }
        *n = id + 1 > *n ? id + 1 : *n;
    }
    cJSON_ArrayForEach(entry, added) {
        int64_t id;
        if (!read_id(cJSON_GetObjectItemCaseSensitive(entry, "id"), &id) ||
            get_string(entry, "content") == NULL) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "tokenizer: %s: an added_tokens entry lacks an integer id or a "
                                "content string",
                                name);
        }
        *n = id + 1 > *n ? id + 1 : *n;
    }
    if (*n == 0) {
        return mr_error_set(err, MR_ERR_FORMAT, "tokenizer: %s: model.vocab is empty", name);
    }
    return MR_OK;
}

/* Parses "<0xNN>"; returns whether text is such a byte token. */
static bool is_byte_token(const char *text) {
    unsigned value;
    char close;
    return strlen(text) == 6 && sscanf(text, "<0x%2X%c", &value, &close) == 2 && close == '>';
}

/* Fills texts and types from vocab and added_tokens. Ids that neither
 * names stay empty control tokens, which encode never produces. */
static mr_status fill_tokens(hf_vocab *v, const cJSON *vocab, const cJSON *added,
                             mr_tokenizer_kind kind, const char *name, mr_error *err) {
    int64_t n = v->vocab.n_tokens;
    for (int64_t i = 0; i < n; i++) {
        v->texts[i] = NULL;
        v->types[i] = MR_TOKEN_CONTROL;
    }

    const cJSON *entry;
    cJSON_ArrayForEach(entry, vocab) {
        int64_t id = (int64_t)entry->valuedouble;
        if (v->texts[id] != NULL) {
            return mr_error_set(err, MR_ERR_FORMAT, "tokenizer: %s: id %lld appears twice in "
                                "model.vocab", name, (long long)id);
        }
        v->texts[id] = entry->string;
        bool byte = kind == MR_TOKENIZER_SPM && is_byte_token(entry->string);
        v->types[id] = byte ? MR_TOKEN_BYTE : MR_TOKEN_NORMAL;
    }

    cJSON_ArrayForEach(entry, added) {
        int64_t id = (int64_t)cJSON_GetObjectItemCaseSensitive(entry, "id")->valuedouble;
        const char *content = get_string(entry, "content");
        if (v->texts[id] != NULL && strcmp(v->texts[id], content) != 0) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "tokenizer: %s: added token %lld \"%.40s\" differs from the "
                                "vocabulary's \"%.40s\"",
                                name, (long long)id, content, v->texts[id]);
        }
        v->texts[id] = content;
        v->types[id] = get_bool(entry, "special", false) ? MR_TOKEN_CONTROL : MR_TOKEN_USER_DEFINED;
    }

    for (int64_t i = 0; i < n; i++) {
        if (v->texts[i] == NULL) {
            v->texts[i] = "";
        }
        v->lens[i] = strlen(v->texts[i]);
    }
    return MR_OK;
}

/* Copies the merges into v->merges as "left right" strings. Files store
 * either that form or pairs ["left", "right"]. */
static mr_status read_merges(hf_vocab *v, const cJSON *merges, const char *name, mr_error *err) {
    int64_t count = cJSON_GetArraySize(merges);
    v->merges = calloc((size_t)count + 1, sizeof *v->merges);
    if (v->merges == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for %lld merges",
                            (long long)count);
    }
    v->vocab.n_merges = count;

    int64_t rank = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, merges) {
        const char *left = NULL;
        const char *right = NULL;
        if (cJSON_IsString(entry) && entry->valuestring[0] != '\0' &&
            strchr(entry->valuestring + 1, ' ') != NULL) {
            v->merges[rank] = strdup(entry->valuestring);
            if (v->merges[rank] == NULL) {
                return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory");
            }
            rank++;
            continue;
        }
        if (cJSON_IsArray(entry) && cJSON_GetArraySize(entry) == 2 &&
            cJSON_IsString(cJSON_GetArrayItem(entry, 0)) &&
            cJSON_IsString(cJSON_GetArrayItem(entry, 1))) {
            left = cJSON_GetArrayItem(entry, 0)->valuestring;
            right = cJSON_GetArrayItem(entry, 1)->valuestring;
        }
        if (left == NULL || left[0] == '\0' || strchr(left + 1, ' ') != NULL) {
            /* The create functions split "left right" at the first space
             * after the first byte, so a left part with a later space
             * cannot be expressed. */
            return mr_error_set(err, MR_ERR_FORMAT,
                                "tokenizer: %s: merge %lld is neither \"left right\" nor a pair "
                                "of strings whose left part has no inner space",
                                name, (long long)rank);
        }
        size_t left_len = strlen(left);
        size_t right_len = strlen(right);
        v->merges[rank] = malloc(left_len + right_len + 2);
        if (v->merges[rank] == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory");
        }
        memcpy(v->merges[rank], left, left_len);
        v->merges[rank][left_len] = ' ';
        memcpy(v->merges[rank] + left_len + 1, right, right_len + 1);
        rank++;
    }
    return MR_OK;
}

/*
 * Gives SentencePiece-style scores from the merge ranks: the token that
 * merge r produces first scores -r, so that earlier merges win. Tokens no
 * merge produces score below every merge.
 * NOTE: SentencePiece merges any adjacent pair whose concatenation is a
 * token, while a BPE model merges only listed pairs. The two agree only
 * when the merges list every split of every token in score order, as
 * tests/fixtures/tokenizer_hf.py writes them; other files are untested.
 */
static mr_status scores_from_merges(hf_vocab *v, const char *name, mr_error *err) {
    int64_t n = v->vocab.n_tokens;
    int64_t n_merges = v->vocab.n_merges;
    for (int64_t i = 0; i < n; i++) {
        v->scores[i] = -(float)(n_merges + 1);
    }
    if (!mr_tok_map_init(&v->by_text, (size_t)n, true)) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for the index");
    }
    v->map_ready = true;
    for (int64_t i = 0; i < n; i++) {
        if (v->lens[i] > 0 && mr_tok_map_put_string(&v->by_text, v->texts[i], v->lens[i],
                                                     (int32_t)i) < 0) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for the index");
        }
    }

    char joined[1024];
    for (int64_t rank = n_merges - 1; rank >= 0; rank--) {
        const char *merge = v->merges[rank];
        const char *space = strchr(merge + 1, ' ');
        size_t left_len = (size_t)(space - merge);
        size_t right_len = strlen(space + 1);
        if (left_len + right_len > sizeof joined) {
            continue; /* longer than any real token; create() checks the rest */
        }
        memcpy(joined, merge, left_len);
        memcpy(joined + left_len, space + 1, right_len);
        int32_t id = mr_tok_map_get_string(&v->by_text, joined, left_len + right_len);
        if (id < 0) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "tokenizer: %s: merge %lld (\"%.60s\") makes a token that is "
                                "not in the vocabulary",
                                name, (long long)rank, merge);
        }
        v->scores[id] = -(float)rank;
    }
    return MR_OK;
}

/* Returns the id of the first of names that is a token, or -1. */
static int32_t first_present(const hf_vocab *v, const char *const *names, int count) {
    for (int k = 0; k < count; k++) {
        for (int64_t i = 0; i < v->vocab.n_tokens; i++) {
            if (strcmp(v->texts[i], names[k]) == 0) {
                return (int32_t)i;
            }
        }
    }
    return -1;
}

/* Returns the id of the token with this text, or -1. */
static int32_t id_of(const hf_vocab *v, const char *text) {
    return text == NULL ? -1 : first_present(v, &text, 1);
}

/* Finds the special token that a TemplateProcessing post-processor puts
 * first, searching a Sequence too; returns its text or NULL. */
static const char *template_first_special(const cJSON *post) {
    if (post == NULL || cJSON_IsNull(post)) {
        return NULL;
    }
    if (has_type(post, "Sequence")) {
        const cJSON *step;
        cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(post, "processors")) {
            const char *found = template_first_special(step);
            if (found != NULL) {
                return found;
            }
        }
        return NULL;
    }
    if (!has_type(post, "TemplateProcessing")) {
        return NULL;
    }
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(post, "single"), 0);
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    return get_string(special, "id");
}

/* Sets BOS, EOS, unknown token and add_bos. */
static void read_special_ids(hf_vocab *v, const cJSON *root, const cJSON *model) {
    const char *first = template_first_special(cJSON_GetObjectItemCaseSensitive(root,
                                                                               "post_processor"));
    v->vocab.bos_id = id_of(v, first);
    v->vocab.add_bos = v->vocab.bos_id >= 0;
    if (v->vocab.bos_id < 0) {
        static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|endoftext|>"};
        v->vocab.bos_id = first_present(v, bos_names, 3);
    }

    /* NOTE: tokenizer.json does not name EOS (tokenizer_config.json
     * does), so the usual texts are tried in turn. */
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>",
                                            "<|im_end|>"};
    v->vocab.eos_id = first_present(v, eos_names, 4);

    v->vocab.unk_id = id_of(v, get_string(model, "unk_token"));
    if (v->vocab.unk_id >= 0) {
        v->types[v->vocab.unk_id] = MR_TOKEN_UNKNOWN;
    }
}

mr_status mr_tokenizer_from_hf_json_text(const char *json, size_t len, const char *name,
                                         mr_tokenizer **out, mr_error *err) {
    *out = NULL;
    name = name != NULL ? name : "tokenizer.json";
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (root == NULL) {
        const char *at = cJSON_GetErrorPtr();
        long offset = at != NULL && at >= json && at <= json + len ? (long)(at - json) : -1;
        return mr_error_set(err, MR_ERR_FORMAT, "tokenizer: %s is not valid JSON (near byte %ld)",
                            name, offset);
    }

    mr_status status = MR_OK;
    hf_vocab v;
    memset(&v, 0, sizeof v);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const char *type = get_string(model, "type");
    if (!cJSON_IsObject(model)) {
        status = mr_error_set(err, MR_ERR_FORMAT, "tokenizer: %s has no \"model\" object", name);
    } else if (type == NULL || strcmp(type, "BPE") != 0) {
        status = mr_error_set(err, MR_ERR_UNSUPPORTED,
                              "tokenizer: %s: model.type \"%s\" is not supported; only BPE is",
                              name, type == NULL ? "(none)" : type);
    } else if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "tokenizer: %s: model needs a \"vocab\" object and a \"merges\" "
                              "array",
                              name);
    } else if ((get_string(model, "continuing_subword_prefix") != NULL &&
                get_string(model, "continuing_subword_prefix")[0] != '\0') ||
               (get_string(model, "end_of_word_suffix") != NULL &&
                get_string(model, "end_of_word_suffix")[0] != '\0')) {
        status = mr_error_set(err, MR_ERR_UNSUPPORTED,
                              "tokenizer: %s: model.continuing_subword_prefix and "
                              "end_of_word_suffix are not supported",
                              name);
    }

    hf_layout layout = {0};
    mr_tokenizer_kind kind = MR_TOKENIZER_BPE;
    if (status == MR_OK) {
        status = read_normalizer(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), name,
                                 &layout, err);
    }
    if (status == MR_OK) {
        status = read_pre_tokenizer(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), name,
                                    &layout, err);
    }
    if (status == MR_OK) {
        status = choose_kind(model, &layout, name, &kind, err);
    }

    int64_t n = 0;
    if (status == MR_OK) {
        status = count_ids(vocab, added, name, &n, err);
    }
    if (status == MR_OK) {
        v.vocab.n_tokens = n;
        v.texts = malloc((size_t)n * sizeof *v.texts);
        v.lens = malloc((size_t)n * sizeof *v.lens);
        v.types = malloc((size_t)n * sizeof *v.types);
        v.scores = malloc((size_t)n * sizeof *v.scores);
        if (v.texts == NULL || v.lens == NULL || v.types == NULL || v.scores == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for %lld ids",
                                  (long long)n);
        }
    }
    if (status == MR_OK) {
        status = fill_tokens(&v, vocab, added, kind, name, err);
    }
    if (status == MR_OK) {
        status = read_merges(&v, merges, name, err);
    }
    if (status == MR_OK && kind == MR_TOKENIZER_SPM) {
        status = scores_from_merges(&v, name, err);
    }

    if (status == MR_OK) {
        read_special_ids(&v, root, model);
        v.vocab.tokens = v.texts;
        v.vocab.token_lens = v.lens;
        v.vocab.types = v.types;
        v.vocab.scores = v.scores;
        v.vocab.merges = (const char *const *)v.merges;
        v.vocab.add_space_prefix = layout.prepend_meta;
        v.vocab.pre = layout.pre;
        v.vocab.ignore_merges = get_bool(model, "ignore_merges", false);
        status = kind == MR_TOKENIZER_SPM ? mr_tokenizer_create_spm(&v.vocab, out, err)
                                          : mr_tokenizer_create_bpe(&v.vocab, out, err);
    }

    hf_vocab_free(&v);
    cJSON_Delete(root);
    return status;
}

mr_status mr_tokenizer_from_hf_json(const char *path, mr_tokenizer **out, mr_error *err) {
    *out = NULL;
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return mr_error_set(err, MR_ERR_NOT_FOUND, "tokenizer: cannot open %s", path);
    }
    struct stat info;
    if (fstat(fileno(file), &info) != 0 || info.st_size > HF_JSON_MAX_BYTES) {
        fclose(file);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "tokenizer: %s is larger than the limit of %ld bytes", path,
                            HF_JSON_MAX_BYTES);
    }
    char *text = malloc((size_t)info.st_size + 1);
    size_t got = text != NULL ? fread(text, 1, (size_t)info.st_size, file) : 0;
    fclose(file);
    if (text == NULL || got != (size_t)info.st_size) {
        free(text);
        return mr_error_set(err, text == NULL ? MR_ERR_NO_MEMORY : MR_ERR_IO,
                            "tokenizer: failed to read %s", path);
    }
    text[got] = '\0';
    mr_status status = mr_tokenizer_from_hf_json_text(text, got, path, out, err);
    free(text);
    return status;
}

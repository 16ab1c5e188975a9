/*
 * A tokenizer from the tokenizer.ggml.* keys of a GGUF file, as llama.cpp
 * writes them:
 *
 *   tokenizer.ggml.model           "llama" (SPM) or "gpt2" (byte-level BPE)
 *   tokenizer.ggml.pre             BPE pre-tokenizer: "gpt-2" or "default",
 *                                  "llama-bpe" (Llama 3) or "qwen2"
 *   tokenizer.ggml.tokens          string array, required
 *   tokenizer.ggml.scores          f32 array, required for "llama"
 *   tokenizer.ggml.token_type      i32 array, optional (all normal)
 *   tokenizer.ggml.merges          string array, required for "gpt2"
 *   tokenizer.ggml.bos_token_id, eos_token_id, unknown_token_id   u32, optional
 *   tokenizer.ggml.add_bos_token, add_space_prefix               bool, optional
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/gguf.h"
#include "tokenizer_internal.h"

/* Reads an optional token id: absent or 0xFFFFFFFF (llama.cpp's "none")
 * gives fallback. */
static mr_status read_id(const mr_gguf *gguf, const char *key, int32_t fallback, int32_t *out,
                         mr_error *err) {
    *out = fallback;
    if (mr_gguf_find_key(gguf, key) < 0) {
        return MR_OK;
    }
    uint32_t value;
    mr_status status = mr_gguf_get_u32(gguf, key, &value, err);
    if (status != MR_OK) {
        return status;
    }
    if (value == UINT32_MAX) {
        *out = -1;
    } else if (value > INT32_MAX) {
        return mr_error_set(err, MR_ERR_FORMAT, "tokenizer: %s is %u, not a token id", key,
                            (unsigned)value);
    } else {
        *out = (int32_t)value;
    }
    return MR_OK;
}

/* Reads an optional bool, fallback when absent. */
static mr_status read_flag(const mr_gguf *gguf, const char *key, bool fallback, bool *out,
                           mr_error *err) {
    *out = fallback;
    if (mr_gguf_find_key(gguf, key) < 0) {
        return MR_OK;
    }
    return mr_gguf_get_bool(gguf, key, out, err);
}

/* Reads the string array under key into texts and lens (allocated here,
 * pointing into the mapping). */
static mr_status read_strings(const mr_gguf *gguf, const char *key, int64_t *count,
                              const char ***texts, size_t **lens, mr_error *err) {
    mr_gguf_type type;
    const void *data;
    mr_status status = mr_gguf_get_array(gguf, key, &type, count, &data, err);
    if (status != MR_OK) {
        return status;
    }
    if (type != MR_GGUF_STRING) {
        return mr_error_set(err, MR_ERR_FORMAT, "tokenizer: %s is an array of %s, expected strings",
                            key, mr_gguf_type_name(type));
    }

    *texts = malloc(((size_t)*count + 1) * sizeof **texts);
    *lens = malloc(((size_t)*count + 1) * sizeof **lens);
    if (*texts == NULL || *lens == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory for %lld strings of %s",
                            (long long)*count, key);
    }
    for (int64_t j = 0; j < *count; j++) {
        status = mr_gguf_array_string(gguf, key, j, &(*texts)[j], &(*lens)[j], err);
        if (status != MR_OK) {
            return status;
        }
    }
    return MR_OK;
}

/* Reads the numeric array under key, which must have n elements of type
 * want (or, for token types, any 32-bit integer type), into out. */
static mr_status read_numbers(const mr_gguf *gguf, const char *key, int64_t n, mr_gguf_type want,
                              void *out, mr_error *err) {
    mr_gguf_type type;
    int64_t count;
    const void *data;
    mr_status status = mr_gguf_get_array(gguf, key, &type, &count, &data, err);
    if (status != MR_OK) {
        return status;
    }
    bool same = type == want || (want == MR_GGUF_I32 && type == MR_GGUF_U32);
    if (!same || count != n) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "tokenizer: %s is an array of %lld %s, expected %lld %s", key,
                            (long long)count, mr_gguf_type_name(type), (long long)n,
                            mr_gguf_type_name(want));
    }
    memcpy(out, data, (size_t)n * 4);
    return MR_OK;
}

/* Reads the model name and checks that this build supports it; sets *kind
 * and, for BPE, the pre-tokenizer and whether whole pieces skip merges. */
static mr_status read_model(const mr_gguf *gguf, mr_tokenizer_kind *kind,
                            mr_tokenizer_vocab *vocab, mr_error *err) {
    const char *model;
    size_t model_len;
    mr_status status = mr_gguf_get_string(gguf, "tokenizer.ggml.model", &model, &model_len, err);
    if (status != MR_OK) {
        return status;
    }
    if (model_len == 5 && memcmp(model, "llama", 5) == 0) {
        *kind = MR_TOKENIZER_SPM;
        return MR_OK;
    }
    if (!(model_len == 4 && memcmp(model, "gpt2", 4) == 0)) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "tokenizer: tokenizer.ggml.model \"%.*s\" is not supported; "
                            "supported are \"llama\" and \"gpt2\"",
                            (int)(model_len < 64 ? model_len : 64), model);
    }
    *kind = MR_TOKENIZER_BPE;

    /* Other pre-tokenizers (deepseek-llm, starcoder, ...) split text by
     * other patterns; encoding them with one of these would be wrong. */
    vocab->pre = MR_TOKENIZER_PRE_GPT2;
    if (mr_gguf_find_key(gguf, "tokenizer.ggml.pre") < 0) {
        return MR_OK;
    }
    const char *pre;
    size_t pre_len;
    status = mr_gguf_get_string(gguf, "tokenizer.ggml.pre", &pre, &pre_len, err);
    if (status != MR_OK) {
        return status;
    }
    if ((pre_len == 5 && memcmp(pre, "gpt-2", 5) == 0) ||
        (pre_len == 7 && memcmp(pre, "default", 7) == 0)) {
        return MR_OK;
    }
    if (pre_len == 9 && memcmp(pre, "llama-bpe", 9) == 0) {
        /* llama.cpp, like Llama 3's tokenizer.json, looks a whole piece up
         * in the vocabulary before merging. */
        vocab->pre = MR_TOKENIZER_PRE_LLAMA3;
        vocab->ignore_merges = true;
        return MR_OK;
    }
    if (pre_len == 5 && memcmp(pre, "qwen2", 5) == 0) {
        vocab->pre = MR_TOKENIZER_PRE_QWEN2;
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_UNSUPPORTED,
                        "tokenizer: pre-tokenizer \"%.*s\" is not supported; supported are "
                        "\"gpt-2\", \"default\", \"llama-bpe\" and \"qwen2\"",
                        (int)(pre_len < 64 ? pre_len : 64), pre);
}

mr_status mr_tokenizer_from_gguf(const mr_gguf *gguf, mr_tokenizer **out, mr_error *err) {
    *out = NULL;
    mr_tokenizer_vocab vocab;
    memset(&vocab, 0, sizeof vocab);
    mr_tokenizer_kind kind;
    mr_status status = read_model(gguf, &kind, &vocab, err);
    if (status != MR_OK) {
        return status;
    }

    const char **tokens = NULL;
    size_t *token_lens = NULL;
    const char **merges = NULL;
    size_t *merge_lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;

    status = read_strings(gguf, "tokenizer.ggml.tokens", &vocab.n_tokens, &tokens, &token_lens, err);
    if (status == MR_OK) {
        scores = malloc(((size_t)vocab.n_tokens + 1) * sizeof *scores);
        types = malloc(((size_t)vocab.n_tokens + 1) * sizeof *types);
        if (scores == NULL || types == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "tokenizer: out of memory");
        }
    }
    if (status == MR_OK && kind == MR_TOKENIZER_SPM) {
        status = read_numbers(gguf, "tokenizer.ggml.scores", vocab.n_tokens, MR_GGUF_F32, scores,
                              err);
        vocab.scores = scores;
    }
    if (status == MR_OK && mr_gguf_find_key(gguf, "tokenizer.ggml.token_type") >= 0) {
        status = read_numbers(gguf, "tokenizer.ggml.token_type", vocab.n_tokens, MR_GGUF_I32,
                              types, err);
        vocab.types = types;
    }
    if (status == MR_OK && kind == MR_TOKENIZER_BPE) {
        status = read_strings(gguf, "tokenizer.ggml.merges", &vocab.n_merges, &merges,
                              &merge_lens, err);
    }

    /* llama.cpp's defaults when the keys are absent: <unk> 0, <s> 1 and
     * </s> 2 for SentencePiece vocabularies, none for GPT-2. */
    bool spm = kind == MR_TOKENIZER_SPM;
    if (status == MR_OK) {
        status = read_id(gguf, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, &vocab.bos_id, err);
    }
    if (status == MR_OK) {
        status = read_id(gguf, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, &vocab.eos_id, err);
    }
    if (status == MR_OK) {
        status = read_id(gguf, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &vocab.unk_id, err);
    }
    if (status == MR_OK) {
        status = read_flag(gguf, "tokenizer.ggml.add_bos_token", spm, &vocab.add_bos, err);
    }
    if (status == MR_OK) {
        status = read_flag(gguf, "tokenizer.ggml.add_space_prefix", spm, &vocab.add_space_prefix,
                           err);
    }

    if (status == MR_OK) {
        vocab.tokens = tokens;
        vocab.token_lens = token_lens;
        vocab.merges = merges;
        vocab.merge_lens = merge_lens;
        status = spm ? mr_tokenizer_create_spm(&vocab, out, err)
                     : mr_tokenizer_create_bpe(&vocab, out, err);
    }

    free(tokens);
    free(token_lens);
    free(merges);
    free(merge_lens);
    free(scores);
    free(types);
    return status;
}

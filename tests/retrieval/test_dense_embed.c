/*
 * mr_llama_embed() on stories260K: vectors match the mean (or last) final
 * hidden state of mr_llama_hidden() on the training path, normalisation
 * gives unit vectors, and the result does not depend on how texts are
 * packed into passes or on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/tokenizer.h"
#include "test.h"

#define MODEL_PATH "data/lm/stories260K.gguf"
#define DIM 64
#define N_TEXTS 5
#define MAX_TOKENS 40

static const char *const texts[N_TEXTS] = {
    "Once upon a time, there was a little girl named Lily.",
    "The cat sat on the mat.",
    "Tom and his mom went to the park to play with a big red ball, and they saw a dog "
    "that ran after the ball all day long until the sun went down.",
    "Hi",
    "She was happy.",
};

static mr_llama *model;         /* inference weights */
static mr_llama *trainable;     /* the same file, trainable, for mr_llama_hidden() */
static mr_tokenizer *tokenizer;

/* Embeds the texts with the given options; fails the test on error. */
static void embed(const mr_llama_embed_options *options, float *out) {
    mr_error err;
    mr_status status = mr_llama_embed(model, tokenizer, texts, N_TEXTS, options, out, &err);
    if (status != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "mr_llama_embed failed: %s", err.message);
    }
}

/*
 * Computes the pooled final hidden state of text on the training path:
 * the tokens as mr_llama_embed() encodes them, cut to max_tokens, through
 * mr_llama_hidden(), then the mean over tokens (or the last token).
 */
static void hidden_reference(const char *text, int max_tokens, mr_llama_pooling pooling,
                             float *out) {
    int32_t ids[512];
    int64_t n = 0;
    mr_error err;
    CHECK_STATUS(mr_tokenizer_encode(tokenizer, text, strlen(text),
                                     mr_tokenizer_add_bos_default(tokenizer), false, ids, 512,
                                     &n, &err),
                 MR_OK);
    n = n < max_tokens ? n : max_tokens;

    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[2] = {1, n};
    mr_tensor *tokens = mr_tensor_from_i32(ctx, 2, shape, ids);
    mr_tensor *hidden = mr_llama_hidden(trainable, NULL, ctx, tokens);
    CHECK_CTX_OK(ctx);
    if (hidden == NULL) {
        mr_ctx_free(ctx);
        return;
    }
    for (int i = 0; i < DIM; i++) {
        if (pooling == MR_LLAMA_POOLING_LAST) {
            out[i] = hidden->data[(n - 1) * DIM + i];
            continue;
        }
        double sum = 0.0;
        for (int64_t t = 0; t < n; t++) {
            sum += hidden->data[t * DIM + i];
        }
        out[i] = (float)(sum / (double)n);
    }
    mr_ctx_free(ctx);
}

static void mean_matches_training_path(void) {
    mr_llama_embed_options options;
    mr_llama_embed_options_default(&options);
    options.max_tokens = MAX_TOKENS;
    float vectors[N_TEXTS * DIM];
    embed(&options, vectors);

    /* The two paths sum in different orders (BLAS against the engine's
     * kernels), so they agree to float rounding over 5 layers. The largest
     * difference seen was 3e-6 on values of magnitude up to about 1, so
     * 2e-5 leaves a margin of about 7. */
    for (int t = 0; t < N_TEXTS; t++) {
        float expected[DIM];
        hidden_reference(texts[t], MAX_TOKENS, MR_LLAMA_POOLING_MEAN, expected);
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(vectors + t * DIM, expected, DIM, 2e-5, 2e-5), 0);
    }
}

static void last_pooling_matches_training_path(void) {
    mr_llama_embed_options options;
    mr_llama_embed_options_default(&options);
    options.max_tokens = MAX_TOKENS;
    options.pooling = MR_LLAMA_POOLING_LAST;
    float vectors[N_TEXTS * DIM];
    embed(&options, vectors);
    for (int t = 0; t < N_TEXTS; t++) {
        float expected[DIM];
        hidden_reference(texts[t], MAX_TOKENS, MR_LLAMA_POOLING_LAST, expected);
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(vectors + t * DIM, expected, DIM, 2e-5, 2e-5), 0);
    }
}

static void truncation_keeps_first_tokens(void) {
    /* Text 2 has more than 12 tokens; its vector must be the mean over the
     * first 12 alone, which differs from the mean over 40. */
    mr_llama_embed_options options;
    mr_llama_embed_options_default(&options);
    options.max_tokens = 12;
    float vectors[N_TEXTS * DIM];
    embed(&options, vectors);
    float expected[DIM], longer[DIM];
    hidden_reference(texts[2], 12, MR_LLAMA_POOLING_MEAN, expected);
    hidden_reference(texts[2], MAX_TOKENS, MR_LLAMA_POOLING_MEAN, longer);
    CHECK_INT_EQ(CHECK_ARRAY_NEAR(vectors + 2 * DIM, expected, DIM, 2e-5, 2e-5), 0);
    double difference = 0.0;
    for (int i = 0; i < DIM; i++) {
        difference += fabs((double)expected[i] - longer[i]);
    }
    CHECK(difference > 1e-2);
}

static void normalize_gives_unit_vectors(void) {
    mr_llama_embed_options options;
    mr_llama_embed_options_default(&options);
    options.max_tokens = MAX_TOKENS;
    float raw[N_TEXTS * DIM], unit[N_TEXTS * DIM];
    embed(&options, raw);
    options.normalize = true;
    embed(&options, unit);
    for (int t = 0; t < N_TEXTS; t++) {
        double norm = 0.0, raw_norm = 0.0;
        for (int i = 0; i < DIM; i++) {
            norm += (double)unit[t * DIM + i] * unit[t * DIM + i];
            raw_norm += (double)raw[t * DIM + i] * raw[t * DIM + i];
        }
        CHECK_NEAR(sqrt(norm), 1.0, 1e-6);
        for (int i = 0; i < DIM; i++) {
            CHECK_NEAR(unit[t * DIM + i], raw[t * DIM + i] / sqrt(raw_norm), 1e-6);
        }
    }
}

/* Counts the floats of a and b [n] whose bits differ. */
static int count_bit_differences(const float *a, const float *b, int n) {
    int differences = 0;
    for (int i = 0; i < n; i++) {
        differences += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    }
    return differences;
}

static void packing_does_not_change_vectors(void) {
    /* batch_tokens 1 runs each text alone; 4096 packs all five into one
     * pass; 30 packs some of them. The vectors must be bit-identical. */
    mr_llama_embed_options options;
    mr_llama_embed_options_default(&options);
    options.max_tokens = MAX_TOKENS;
    float alone[N_TEXTS * DIM], packed[N_TEXTS * DIM], partly[N_TEXTS * DIM];
    options.batch_tokens = 1;
    embed(&options, alone);
    options.batch_tokens = 4096;
    embed(&options, packed);
    options.batch_tokens = 30;
    embed(&options, partly);
    CHECK_INT_EQ(count_bit_differences(alone, packed, N_TEXTS * DIM), 0);
    CHECK_INT_EQ(count_bit_differences(alone, partly, N_TEXTS * DIM), 0);
}

static void thread_count_does_not_change_vectors(void) {
    mr_llama_embed_options options;
    mr_llama_embed_options_default(&options);
    options.max_tokens = MAX_TOKENS;
    float one[N_TEXTS * DIM], two[N_TEXTS * DIM];
    int saved = mr_threads_get();
    mr_threads_set(1);
    embed(&options, one);
    mr_threads_set(2);
    embed(&options, two);
    mr_threads_set(saved);
    CHECK_INT_EQ(count_bit_differences(one, two, N_TEXTS * DIM), 0);
}

static void embed_rejects_bad_input(void) {
    float out[DIM];
    mr_error err;
    const char *null_text[1] = {NULL};
    CHECK_STATUS(mr_llama_embed(model, tokenizer, null_text, 1, NULL, out, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "text 0 is NULL") != NULL);

    mr_llama_embed_options options;
    mr_llama_embed_options_default(&options);
    options.batch_tokens = 0;
    CHECK_STATUS(mr_llama_embed(model, tokenizer, texts, 1, &options, out, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_llama_embed(model, tokenizer, texts, 0, NULL, out, &err), MR_OK);
}

int main(void) {
    mr_error err;
    mr_gguf *gguf = NULL;
    model = mr_llama_load_gguf(MODEL_PATH, &err);
    trainable = mr_llama_load_gguf(MODEL_PATH, &err);
    if (model == NULL || trainable == NULL || mr_llama_make_trainable(trainable, &err) != MR_OK ||
        mr_gguf_open(MODEL_PATH, &gguf, &err) != MR_OK ||
        mr_tokenizer_from_gguf(gguf, &tokenizer, &err) != MR_OK) {
        fprintf(stderr, "cannot load %s: %s\n", MODEL_PATH, err.message);
        return 1;
    }
    mr_gguf_close(gguf);

    MR_RUN(mean_matches_training_path);
    MR_RUN(last_pooling_matches_training_path);
    MR_RUN(truncation_keeps_first_tokens);
    MR_RUN(normalize_gives_unit_vectors);
    MR_RUN(packing_does_not_change_vectors);
    MR_RUN(thread_count_does_not_change_vectors);
    MR_RUN(embed_rejects_bad_input);

    mr_tokenizer_free(tokenizer);
    mr_llama_free(model);
    mr_llama_free(trainable);
    return mr_test_finish();
}

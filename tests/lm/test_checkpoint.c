/*
 * Gradient checkpointing of the Llama training path. With checkpointing
 * the loss and every gradient must equal those without it bit for bit,
 * for the plain model and for a LoRA adapter with dropout, because the
 * recomputed blocks run the same operations on the same values. On an
 * 8-layer model the step context's peak must be clearly lower.
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/llama.h"
#include "multiround/lora.h"
#include "test.h"

#define BATCH 2
#define T_LEN 48

/* 8 layers whose activations outweigh the logits: V is small next to the
 * per-block tensors (attention scores alone are B H T T floats). */
static mr_llama_config eight_layer_config(bool qwen_style) {
    mr_llama_config config = {.vocab_size = 64, .dim = 64, .layers = 8, .heads = 4,
                              .kv_heads = 2, .head_dim = 16, .ffn_dim = 128,
                              .context_length = T_LEN, .rope_base = 10000.0f,
                              .rope_layout = MR_ROPE_ADJACENT, .rms_eps = 1e-5f};
    if (qwen_style) {
        config.qkv_bias = true;
        config.tied_output = true;
        config.rope_layout = MR_ROPE_HALVES;
    }
    return config;
}

/* The result of one training step: loss, flat gradient copy and peak. */
typedef struct step_result {
    float loss;
    float *grad;
    int64_t n_grad;
    size_t peak_bytes;
    size_t used_bytes;
} step_result;

/* Runs loss + backward of the model (lora NULL) or the adapter on fixed
 * tokens, with gradients zeroed first, and copies the gradients. */
static step_result run_step(mr_llama *model, mr_lora *lora) {
    step_result r = {0};
    int32_t tokens[BATCH * T_LEN];
    int32_t targets[BATCH * T_LEN];
    for (int i = 0; i < BATCH * T_LEN; i++) {
        tokens[i] = (int32_t)((i * 37 + 11) % 64);
        targets[i] = (int32_t)((i * 53 + 5) % 64);
    }
    int64_t shape[2] = {BATCH, T_LEN};
    mr_paramset *params = lora != NULL ? mr_lora_params(lora) : mr_llama_params(model);
    mr_paramset_zero_grad(params);

    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *tok = mr_tensor_from_i32(ctx, 2, shape, tokens);
    mr_tensor *tgt = mr_tensor_from_i32(ctx, 2, shape, targets);
    mr_tensor *loss = lora != NULL ? mr_lora_loss(lora, ctx, tok, tgt, NULL)
                                   : mr_llama_loss(model, ctx, tok, tgt, NULL);
    CHECK_CTX_OK(ctx);
    if (loss != NULL) {
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        r.loss = loss->data[0];
    }
    r.peak_bytes = mr_ctx_peak_bytes(ctx);
    r.used_bytes = mr_ctx_used_bytes(ctx);

    mr_tensor *flat = mr_paramset_flat(params);
    r.n_grad = mr_tensor_numel(flat);
    r.grad = malloc((size_t)r.n_grad * sizeof *r.grad);
    memcpy(r.grad, flat->grad, (size_t)r.n_grad * sizeof *r.grad);
    mr_ctx_free(ctx);
    return r;
}

/* Counts gradient elements that differ in value (== on floats). */
static int64_t count_differences(const step_result *a, const step_result *b) {
    int64_t differ = 0;
    for (int64_t i = 0; i < a->n_grad && a->n_grad == b->n_grad; i++) {
        differ += a->grad[i] != b->grad[i];
    }
    return differ;
}

/* Returns the sum of |g| so a test can tell that gradients are not all 0. */
static double grad_magnitude(const step_result *r) {
    double sum = 0.0;
    for (int64_t i = 0; i < r->n_grad; i++) {
        sum += fabs(r->grad[i]);
    }
    return sum;
}

static void checkpoint_matches_plain_model(void) {
    for (int variant = 0; variant < 2; variant++) {
        mr_llama_config config = eight_layer_config(variant == 1);
        mr_error err = {0};
        mr_llama *model = mr_llama_init(&config, 21, &err);
        CHECK(model != NULL);
        if (model == NULL) {
            continue;
        }
        CHECK(!mr_llama_checkpointing(model));
        step_result plain = run_step(model, NULL);
        mr_llama_set_checkpointing(model, true);
        CHECK(mr_llama_checkpointing(model));
        step_result checkpointed = run_step(model, NULL);

        CHECK(plain.loss == checkpointed.loss);
        CHECK(grad_magnitude(&plain) > 0.0);
        CHECK_INT_EQ(checkpointed.n_grad, plain.n_grad);
        CHECK_INT_EQ(count_differences(&plain, &checkpointed), 0);

        /* Peak: the plain step keeps every block's activations, the
         * checkpointed one about one block's plus each block's output. */
        printf("    variant %d: peak %zu bytes plain, %zu checkpointed\n", variant,
               plain.peak_bytes, checkpointed.peak_bytes);
        CHECK(checkpointed.peak_bytes * 3 < plain.peak_bytes);
        CHECK(checkpointed.used_bytes < checkpointed.peak_bytes);
        CHECK_INT_EQ(plain.peak_bytes, plain.used_bytes);

        /* Switching off restores the plain path. */
        mr_llama_set_checkpointing(model, false);
        step_result again = run_step(model, NULL);
        CHECK_INT_EQ(again.peak_bytes, plain.peak_bytes);
        CHECK(again.loss == plain.loss);
        free(again.grad);
        free(plain.grad);
        free(checkpointed.grad);
        mr_llama_free(model);
    }
}

/* LoRA with dropout: two adapters from one seed draw the same masks, so
 * the plain and checkpointed steps must agree, and the rewound stream
 * must end where the plain step leaves it (a second step agrees too). */
static void checkpoint_matches_lora_dropout(void) {
    mr_llama_config config = eight_layer_config(false);
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 22, &err);
    mr_lora_config lc = {.rank = 4, .alpha = 8.0f, .dropout = 0.25f, .targets = MR_LORA_ALL};
    mr_lora *plain_lora = mr_lora_create(model, &lc, 5, &err);
    mr_lora *checkpointed_lora = mr_lora_create(model, &lc, 5, &err);
    CHECK(plain_lora != NULL);
    CHECK(checkpointed_lora != NULL);
    if (plain_lora == NULL || checkpointed_lora == NULL) {
        mr_lora_free(plain_lora);
        mr_lora_free(checkpointed_lora);
        mr_llama_free(model);
        return;
    }

    /* B starts at zero, which would leave A without gradient. */
    mr_rng rng;
    mr_rng_init(&rng, 3);
    mr_tensor *plain_flat = mr_paramset_flat(mr_lora_params(plain_lora));
    mr_tensor *checkpointed_flat = mr_paramset_flat(mr_lora_params(checkpointed_lora));
    mr_tensor_init_uniform(plain_flat, -0.1f, 0.1f, &rng);
    memcpy(checkpointed_flat->data, plain_flat->data,
           (size_t)mr_tensor_numel(plain_flat) * sizeof(float));

    for (int step = 0; step < 2; step++) {
        mr_llama_set_checkpointing(model, false);
        step_result plain = run_step(model, plain_lora);
        mr_llama_set_checkpointing(model, true);
        step_result checkpointed = run_step(model, checkpointed_lora);

        CHECK(plain.loss == checkpointed.loss);
        CHECK(grad_magnitude(&plain) > 0.0);
        CHECK_INT_EQ(count_differences(&plain, &checkpointed), 0);
        printf("    LoRA step %d: peak %zu bytes plain, %zu checkpointed\n", step,
               plain.peak_bytes, checkpointed.peak_bytes);
        CHECK(checkpointed.peak_bytes * 2 < plain.peak_bytes);
        free(plain.grad);
        free(checkpointed.grad);
    }

    /* Dropout is active: the same adapter without dropout gives another
     * loss. */
    lc.dropout = 0.0f;
    mr_lora *no_dropout = mr_lora_create(model, &lc, 5, &err);
    if (no_dropout != NULL) {
        mr_tensor *flat = mr_paramset_flat(mr_lora_params(no_dropout));
        memcpy(flat->data, plain_flat->data, (size_t)mr_tensor_numel(flat) * sizeof(float));
        mr_llama_set_checkpointing(model, false);
        step_result with = run_step(model, plain_lora);
        step_result without = run_step(model, no_dropout);
        CHECK(with.loss != without.loss);
        free(with.grad);
        free(without.grad);
    }
    mr_lora_free(no_dropout);

    mr_lora_free(plain_lora);
    mr_lora_free(checkpointed_lora);
    mr_llama_free(model);
}

/* Without recording, checkpointing changes nothing: the logits match and
 * no scratch context is used. */
static void checkpoint_off_when_not_recording(void) {
    mr_llama_config config = eight_layer_config(false);
    mr_error err = {0};
    mr_llama *model = mr_llama_init(&config, 23, &err);
    if (model == NULL) {
        mr_test_fail(__FILE__, __LINE__, "init failed: %s", err.message);
        return;
    }
    int32_t tokens[T_LEN];
    for (int i = 0; i < T_LEN; i++) {
        tokens[i] = i % 64;
    }
    int64_t shape[2] = {1, T_LEN};
    float *logits[2] = {NULL, NULL};
    size_t peak[2] = {0, 0};
    for (int on = 0; on < 2; on++) {
        mr_llama_set_checkpointing(model, on == 1);
        mr_ctx *ctx = mr_ctx_create(0);
        mr_ctx_set_grad_enabled(ctx, false);
        mr_tensor *out = mr_llama_logits(model, ctx, mr_tensor_from_i32(ctx, 2, shape, tokens));
        CHECK_CTX_OK(ctx);
        if (out != NULL) {
            logits[on] = malloc((size_t)mr_tensor_numel(out) * sizeof(float));
            memcpy(logits[on], out->data, (size_t)mr_tensor_numel(out) * sizeof(float));
        }
        peak[on] = mr_ctx_peak_bytes(ctx);
        mr_ctx_free(ctx);
    }
    if (logits[0] != NULL && logits[1] != NULL) {
        CHECK_INT_EQ(CHECK_ARRAY_NEAR(logits[1], logits[0], T_LEN * 64, 0.0, 0.0), 0);
    }
    CHECK_INT_EQ(peak[1], peak[0]);
    free(logits[0]);
    free(logits[1]);
    mr_llama_free(model);
}

int main(void) {
    MR_RUN(checkpoint_matches_plain_model);
    MR_RUN(checkpoint_matches_lora_dropout);
    MR_RUN(checkpoint_off_when_not_recording);
    return mr_test_finish();
}

/*
 * Multi-turn rollouts of a policy in an environment, per-token
 * log-probabilities on the training path, and greedy evaluation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/generate.h"
#include "multiround/rl.h"

#include "train/rl_internal.h"

void mr_rollout_free(mr_rollout *rollout) {
    if (rollout == NULL) {
        return;
    }
    free(rollout->tokens);
    free(rollout->policy_mask);
    free(rollout->old_logprobs);
    free(rollout->ref_logprobs);
    free(rollout->values);
    free(rollout->text);
    memset(rollout, 0, sizeof *rollout);
}

/* A growing token sequence with its mask and text. */
typedef struct sequence {
    int32_t *tokens;
    uint8_t *mask;
    int n;
    int cap;
    char *text;
    size_t text_len;
} sequence;

static bool sequence_push(sequence *s, const int32_t *ids, int n, uint8_t mask) {
    if (s->n + n > s->cap) {
        return false;
    }
    memcpy(s->tokens + s->n, ids, (size_t)n * sizeof *ids);
    memset(s->mask + s->n, mask, (size_t)n);
    s->n += n;
    return true;
}

static bool sequence_append_text(sequence *s, const char *text, size_t len) {
    char *grown = realloc(s->text, s->text_len + len + 1);
    if (grown == NULL) {
        return false;
    }
    memcpy(grown + s->text_len, text, len);
    s->text_len += len;
    grown[s->text_len] = '\0';
    s->text = grown;
    return true;
}

/* Encodes text (with BOS when add_bos) into a new array. */
static mr_status encode_text(const mr_tokenizer *tok, const char *text, bool add_bos,
                             int32_t **ids, int64_t *n, mr_error *err) {
    *ids = NULL;
    mr_tokenizer_encode(tok, text, strlen(text), add_bos, false, NULL, 0, n, NULL);
    *ids = malloc((size_t)(*n > 0 ? *n : 1) * sizeof **ids);
    if (*ids == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rollout: out of memory encoding text");
    }
    mr_status status = mr_tokenizer_encode(tok, text, strlen(text), add_bos, false, *ids, *n, n,
                                           err);
    if (status != MR_OK) {
        free(*ids);
        *ids = NULL;
    }
    return status;
}

/* Decodes a policy turn, keeping the stop string that the generation
 * output drops. */
static mr_status decode_turn(const mr_tokenizer *tok, const int32_t *ids, int n, char **text,
                             size_t *len, mr_error *err) {
    size_t need = 0;
    mr_tokenizer_decode(tok, ids, n, false, false, NULL, 0, &need, NULL);
    *text = malloc(need + 1);
    if (*text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rollout: out of memory decoding a turn");
    }
    mr_status status = mr_tokenizer_decode(tok, ids, n, false, false, *text, need, len, err);
    if (status != MR_OK) {
        free(*text);
        *text = NULL;
        return status;
    }
    (*text)[*len] = '\0';
    return MR_OK;
}

/* Generates one policy turn after the sequence so far, appends its tokens
 * and text, and passes it to the environment. */
static mr_status run_turn(const mr_llama *model, const mr_tokenizer *tok, mr_env *env,
                          const mr_generate_params *params, sequence *seq, mr_env_reply *reply,
                          mr_error *err) {
    mr_generation gen;
    mr_status status = mr_generate_tokens(model, tok, seq->tokens, seq->n, params, &gen, err);
    if (status != MR_OK) {
        return status;
    }

    /* The generation leaves out an end-of-generation token that it
     * sampled, but the policy chose it, so it stays in the sequence. */
    int eos = mr_tokenizer_eos(tok);
    bool sampled_eos = gen.finish_reason == MR_FINISH_STOP && eos >= 0 &&
                       gen.completion_tokens > gen.n_tokens;
    bool fits = sequence_push(seq, gen.tokens, gen.n_tokens, 1);
    if (fits && sampled_eos) {
        int32_t id = eos;
        fits = sequence_push(seq, &id, 1, 1);
    }
    if (!fits) {
        mr_generation_free(&gen);
        return mr_error_set(err, MR_ERR_STATE, "rollout: a turn overran the token budget");
    }

    char *text = NULL;
    size_t len = 0;
    status = decode_turn(tok, gen.tokens, gen.n_tokens, &text, &len, err);
    mr_generation_free(&gen);
    if (status != MR_OK) {
        return status;
    }
    if (!sequence_append_text(seq, text, len)) {
        free(text);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rollout: out of memory storing a turn");
    }
    status = mr_env_step(env, text, len, reply, err);
    free(text);
    return status;
}

/* Moves a finished sequence into out with zeroed per-token arrays. */
static mr_status finish_rollout(sequence *seq, mr_rollout *out, mr_error *err) {
    out->tokens = seq->tokens;
    out->policy_mask = seq->mask;
    out->text = seq->text;
    out->n_tokens = seq->n;
    seq->tokens = NULL;
    seq->mask = NULL;
    seq->text = NULL;

    size_t n = (size_t)out->n_tokens;
    out->old_logprobs = calloc(n, sizeof(float));
    out->ref_logprobs = calloc(n, sizeof(float));
    out->values = calloc(n, sizeof(float));
    if (out->old_logprobs == NULL || out->ref_logprobs == NULL || out->values == NULL) {
        mr_rollout_free(out);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rollout: out of memory for %zu tokens", n);
    }
    for (size_t t = 0; t < n; t++) {
        out->policy_tokens += out->policy_mask[t];
    }
    return MR_OK;
}

mr_status mr_rollout_run(const mr_llama *model, const mr_tokenizer *tok, mr_env *env,
                         uint64_t episode, float temperature, uint64_t seed, mr_rollout *out,
                         mr_error *err) {
    memset(out, 0, sizeof *out);
    out->episode = episode;
    const mr_env_limits *limits = mr_env_get_limits(env);
    int context = mr_llama_get_config(model)->context_length;
    if (limits->max_tokens > context) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rollout: the env's max_tokens %d exceeds the model's context "
                            "length %d",
                            limits->max_tokens, context);
    }

    sequence seq = {.cap = limits->max_tokens};
    seq.tokens = malloc((size_t)seq.cap * sizeof *seq.tokens);
    seq.mask = malloc((size_t)seq.cap);
    char *prompt = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    mr_status status = MR_OK;
    if (seq.tokens == NULL || seq.mask == NULL) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY, "rollout: out of memory");
        goto done;
    }

    status = mr_env_reset(env, episode, &prompt, err);
    if (status == MR_OK) {
        status = encode_text(tok, prompt, true, &ids, &n_ids, err);
    }
    if (status != MR_OK) {
        goto done;
    }
    if (!sequence_push(&seq, ids, (int)n_ids, 0) || seq.n >= seq.cap) {
        status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                              "rollout: the prompt of episode %llu needs %lld tokens, which "
                              "leaves no room in max_tokens %d",
                              (unsigned long long)episode, (long long)n_ids, seq.cap);
        goto done;
    }
    if (!sequence_append_text(&seq, prompt, strlen(prompt))) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY, "rollout: out of memory");
        goto done;
    }
    out->prompt_tokens = seq.n;

    int n_stop = 0;
    const char *const *stop = mr_env_stop_strings(env, &n_stop);
    mr_generate_params params;
    mr_generate_params_default(&params);
    params.sampler.temperature = temperature;
    params.sampler.top_k = 0;
    params.sampler.top_p = 1.0f;
    params.sampler.min_p = 0.0f;
    params.sampler.repeat_penalty = 1.0f;
    params.stop = stop;
    params.n_stop = n_stop;

    bool done = false;
    while (!done) {
        /* One token stays free for a sampled end-of-generation token. */
        int room = seq.cap - seq.n - 1;
        if (out->turns >= limits->max_turns || room < 1) {
            out->truncated = true;
            out->reward = mr_env_truncated_reward(env);
            break;
        }
        params.max_tokens = room < limits->max_turn_tokens ? room : limits->max_turn_tokens;
        params.sampler.seed = rl_mix_seed(seed, (uint64_t)out->turns);

        mr_env_reply reply;
        status = run_turn(model, tok, env, &params, &seq, &reply, err);
        if (status != MR_OK) {
            goto done;
        }
        out->turns++;
        if (reply.done) {
            out->reward = reply.reward;
            done = true;
        } else {
            free(ids);
            status = encode_text(tok, reply.text, false, &ids, &n_ids, err);
            bool fits = status == MR_OK && sequence_push(&seq, ids, (int)n_ids, 0);
            if (fits) {
                fits = sequence_append_text(&seq, reply.text, strlen(reply.text));
            }
            if (status == MR_OK && !fits) {
                /* The reply does not fit the budget: the episode ends here. */
                out->truncated = true;
                out->reward = mr_env_truncated_reward(env);
                done = true;
            }
        }
        mr_env_reply_clear(&reply);
        if (status != MR_OK) {
            goto done;
        }
    }
    status = finish_rollout(&seq, out, err);

done:
    free(prompt);
    free(ids);
    free(seq.tokens);
    free(seq.mask);
    free(seq.text);
    if (status != MR_OK) {
        mr_rollout_free(out);
    }
    return status;
}

/* ------------------------------------------------------------------------
 * Log-probabilities on the training path
 * ------------------------------------------------------------------------ */

mr_tensor *mr_rl_token_logprobs(mr_ctx *ctx, mr_tensor *logits, mr_tensor *tokens,
                                float temperature) {
    if (logits == NULL || tokens == NULL) {
        return NULL;
    }
    if (logits->ndim != 3 || tokens->ndim != 2 || tokens->dtype != MR_I32 ||
        logits->shape[0] != tokens->shape[0] || logits->shape[1] != tokens->shape[1] ||
        tokens->shape[1] < 2) {
        char ls[96], ts[96];
        mr_ctx_fail(ctx, MR_ERR_SHAPE,
                    "rl_token_logprobs: logits must be [B, T, V] and tokens I32 [B, T] with "
                    "T >= 2, got %s and %s",
                    mr_tensor_shape_string(logits, ls, sizeof ls),
                    mr_tensor_shape_string(tokens, ts, sizeof ts));
        return NULL;
    }
    if (!(temperature > 0.0f)) {
        mr_ctx_fail(ctx, MR_ERR_INVALID_ARGUMENT,
                    "rl_token_logprobs: temperature must be > 0, got %g", (double)temperature);
        return NULL;
    }

    int64_t b = tokens->shape[0], t = tokens->shape[1];
    if (temperature != 1.0f) {
        logits = mr_tensor_scale(ctx, logits, 1.0f / temperature);
    }
    mr_tensor *logp = mr_tensor_log_softmax(ctx, logits, NULL, 0);
    logp = mr_tensor_slice(ctx, logp, 1, 0, t - 1);

    /* The targets are the tokens one position later. */
    mr_tensor *index = mr_tensor_new3d(ctx, MR_I32, b, t - 1, 1);
    if (index == NULL) {
        return NULL;
    }
    mr_tensor *src = mr_tensor_contiguous(ctx, tokens);
    if (src == NULL) {
        return NULL;
    }
    for (int64_t i = 0; i < b; i++) {
        memcpy(index->idata + i * (t - 1), src->idata + i * t + 1,
               (size_t)(t - 1) * sizeof(int32_t));
    }
    mr_tensor *picked = mr_tensor_gather(ctx, logp, 2, index);
    int64_t shape[2] = {b, t - 1};
    return mr_tensor_reshape(ctx, picked, 2, shape);
}

/* ------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------ */

mr_status mr_rl_evaluate(const mr_llama *model, const mr_tokenizer *tok, mr_env *env, int n,
                         float success_reward, float *success, float *mean_reward,
                         mr_error *err) {
    if (n < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "rl_evaluate: need at least one episode, got %d", n);
    }
    int solved = 0;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        mr_rollout r;
        mr_status status = mr_rollout_run(model, tok, env, (uint64_t)i, 0.0f, 0, &r, err);
        if (status != MR_OK) {
            return status;
        }
        solved += r.reward >= success_reward;
        total += r.reward;
        mr_rollout_free(&r);
    }
    if (success != NULL) {
        *success = (float)solved / (float)n;
    }
    if (mean_reward != NULL) {
        *mean_reward = (float)(total / n);
    }
    return MR_OK;
}

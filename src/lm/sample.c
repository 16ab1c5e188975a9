/*
 * Token sampler: repetition penalty, temperature, top-k, top-p, min-p and
 * one seeded draw, in the order that sample.h documents.
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/rng.h"
#include "multiround/sample.h"

/* A candidate token and its (penalised, scaled) logit. */
typedef struct candidate {
    float logit;
    int32_t id;
} candidate;

struct mr_sampler {
    mr_sampler_params params;
    int vocab_size;
    mr_rng rng;

    float *work;          /* [V] logits after the penalty and temperature */
    uint8_t *seen;        /* [V] marks of tokens already penalised in this call */
    candidate *candidates;     /* [V] candidates, sorted by logit */
    double *probs;        /* [V] probabilities of the sorted candidates */

    int32_t *history;     /* accepted tokens, oldest first */
    size_t history_count;
    size_t history_capacity;
};

void mr_sampler_params_default(mr_sampler_params *params) {
    *params = (mr_sampler_params){.temperature = 0.8f,
                                  .top_k = 40,
                                  .top_p = 0.95f,
                                  .min_p = 0.05f,
                                  .repeat_penalty = 1.0f,
                                  .repeat_last_n = 64,
                                  .seed = 0};
}

/* Checks every field of params; fills err naming the first bad one. */
static mr_status check_params(const mr_sampler_params *p, int vocab_size, mr_error *err) {
    if (vocab_size < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "sampler: vocab_size must be >= 1, got %d", vocab_size);
    }
    if (isnan(p->temperature)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "sampler: temperature is NaN");
    }
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "sampler: top_p must be in (0, 1], got %g; use 1 to turn it off",
                            (double)p->top_p);
    }
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "sampler: min_p must be in [0, 1], got %g; use 0 to turn it off",
                            (double)p->min_p);
    }
    if (!(isfinite(p->repeat_penalty) && p->repeat_penalty > 0.0f)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "sampler: repeat_penalty must be finite and > 0, got %g; "
                            "use 1 to turn it off",
                            (double)p->repeat_penalty);
    }
    if (p->repeat_last_n < -1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "sampler: repeat_last_n must be >= -1 (-1 means all tokens), got %d",
                            p->repeat_last_n);
    }
    return MR_OK;
}

mr_sampler *mr_sampler_create(const mr_sampler_params *params, int vocab_size, mr_error *err) {
    if (params == NULL) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "sampler: params is NULL");
        return NULL;
    }
    if (check_params(params, vocab_size, err) != MR_OK) {
        return NULL;
    }

    mr_sampler *s = calloc(1, sizeof *s);
    if (s != NULL) {
        s->work = malloc((size_t)vocab_size * sizeof *s->work);
        s->seen = calloc((size_t)vocab_size, 1);
        s->candidates = malloc((size_t)vocab_size * sizeof *s->candidates);
        s->probs = malloc((size_t)vocab_size * sizeof *s->probs);
    }
    if (s == NULL || s->work == NULL || s->seen == NULL || s->candidates == NULL || s->probs == NULL) {
        mr_sampler_free(s);
        mr_error_set(err, MR_ERR_NO_MEMORY, "sampler: out of memory for a vocabulary of %d",
                     vocab_size);
        return NULL;
    }
    s->params = *params;
    s->vocab_size = vocab_size;
    mr_rng_init(&s->rng, params->seed);
    return s;
}

void mr_sampler_free(mr_sampler *sampler) {
    if (sampler == NULL) {
        return;
    }
    free(sampler->work);
    free(sampler->seen);
    free(sampler->candidates);
    free(sampler->probs);
    free(sampler->history);
    free(sampler);
}

void mr_sampler_reset(mr_sampler *sampler) {
    sampler->history_count = 0;
    mr_rng_init(&sampler->rng, sampler->params.seed);
}

void mr_sampler_accept(mr_sampler *sampler, int32_t token) {
    if (token < 0 || token >= sampler->vocab_size) {
        return;
    }

    /* A bounded window needs only its last repeat_last_n tokens, so the
     * history is compacted instead of growing without end. */
    size_t window = sampler->params.repeat_last_n < 0 ? SIZE_MAX
                                                      : (size_t)sampler->params.repeat_last_n;
    if (window == 0) {
        return;
    }
    if (window != SIZE_MAX && sampler->history_count >= 2 * window) {
        memmove(sampler->history, sampler->history + sampler->history_count - window,
                window * sizeof *sampler->history);
        sampler->history_count = window;
    }

    if (sampler->history_count == sampler->history_capacity) {
        size_t capacity = sampler->history_capacity == 0 ? 64 : 2 * sampler->history_capacity;
        int32_t *bigger = realloc(sampler->history, capacity * sizeof *bigger);
        if (bigger == NULL) {
            /* NOTE: out of memory drops the token from the penalty window
             * instead of failing, since accept has no error channel. */
            return;
        }
        sampler->history = bigger;
        sampler->history_capacity = capacity;
    }
    sampler->history[sampler->history_count++] = token;
}

/* Divides positive and multiplies negative logits of each distinct token
 * in the penalty window by the penalty. */
static void apply_repeat_penalty(mr_sampler *s) {
    float penalty = s->params.repeat_penalty;
    if (penalty == 1.0f || s->params.repeat_last_n == 0 || s->history_count == 0) {
        return;
    }
    size_t window = s->params.repeat_last_n < 0 ? s->history_count
                                                : (size_t)s->params.repeat_last_n;
    size_t start = s->history_count > window ? s->history_count - window : 0;

    for (size_t i = start; i < s->history_count; i++) {
        int32_t id = s->history[i];
        if (s->seen[id]) {
            continue;
        }
        s->seen[id] = 1;
        s->work[id] = s->work[id] > 0.0f ? s->work[id] / penalty : s->work[id] * penalty;
    }

    for (size_t i = start; i < s->history_count; i++) {
        s->seen[s->history[i]] = 0;
    }
}

/* Orders candidates by logit, largest first, then by id. */
static int compare_candidates(const void *a, const void *b) {
    const candidate *x = a;
    const candidate *y = b;
    if (x->logit != y->logit) {
        return x->logit > y->logit ? -1 : 1;
    }
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* True when a ranks below b (smaller logit, or equal logit and larger id). */
static bool ranks_below(const candidate *a, const candidate *b) {
    return compare_candidates(a, b) > 0;
}

/* Moves the k best of candidates[0..count) to candidates[0..k) in sorted order,
 * with a min-heap of the k best seen so far: O(count log k). */
static void select_top_k(candidate *candidates, int count, int k) {
    for (int i = 0; i < count; i++) {
        candidate c = candidates[i];
        int size = i < k ? i : k;
        if (i >= k) {
            if (!ranks_below(&candidates[0], &c)) {
                continue;
            }
            /* Replace the root (the worst of the k) and sift down. */
            int pos = 0;
            for (;;) {
                int child = 2 * pos + 1;
                if (child >= size) {
                    break;
                }
                if (child + 1 < size && ranks_below(&candidates[child + 1], &candidates[child])) {
                    child++;
                }
                if (!ranks_below(&candidates[child], &c)) {
                    break;
                }
                candidates[pos] = candidates[child];
                pos = child;
            }
            candidates[pos] = c;
            continue;
        }
        /* Heap insert at position size (== i), sifting up. */
        int pos = size;
        while (pos > 0) {
            int parent = (pos - 1) / 2;
            if (!ranks_below(&c, &candidates[parent])) {
                break;
            }
            candidates[pos] = candidates[parent];
            pos = parent;
        }
        candidates[pos] = c;
    }
    qsort(candidates, (size_t)k, sizeof *candidates, compare_candidates);
}

/*
 * Runs steps 1 to 5 into s->candidates and s->probs (renormalised); returns the
 * kept count, or 0 with err filled. Greedy keeps the argmax alone.
 */
static int run_filters(mr_sampler *s, const float *logits, mr_error *err) {
    int V = s->vocab_size;
    for (int i = 0; i < V; i++) {
        if (isnan(logits[i])) {
            mr_error_set(err, MR_ERR_NUMERIC, "sampler: logit %d is NaN", i);
            return 0;
        }
    }

    memcpy(s->work, logits, (size_t)V * sizeof *s->work);

    apply_repeat_penalty(s);

    if (s->params.temperature <= 0.0f) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++) {
            if (s->work[i] > s->work[best]) {
                best = i;
            }
        }
        if (s->work[best] == -INFINITY) {
            mr_error_set(err, MR_ERR_NUMERIC, "sampler: every logit is -inf");
            return 0;
        }
        s->candidates[0] = (candidate){s->work[best], best};
        s->probs[0] = 1.0;
        return 1;
    }

    float inverse_temperature = 1.0f / s->params.temperature;
    int count = 0;
    for (int32_t i = 0; i < V; i++) {
        if (s->work[i] != -INFINITY) {
            s->candidates[count++] = (candidate){s->work[i] * inverse_temperature, i};
        }
    }
    if (count == 0) {
        mr_error_set(err, MR_ERR_NUMERIC, "sampler: every logit is -inf");
        return 0;
    }

    if (s->params.top_k > 0 && s->params.top_k < count) {
        select_top_k(s->candidates, count, s->params.top_k);
        count = s->params.top_k;
    } else {
        qsort(s->candidates, (size_t)count, sizeof *s->candidates, compare_candidates);
    }

    double max_logit = s->candidates[0].logit;
    double sum = 0.0;
    for (int i = 0; i < count; i++) {
        s->probs[i] = exp((double)s->candidates[i].logit - max_logit);
        sum += s->probs[i];
    }
    for (int i = 0; i < count; i++) {
        s->probs[i] /= sum;
    }

    if (s->params.top_p < 1.0f) {
        double cumulative = 0.0;
        int keep = count;
        for (int i = 0; i < count; i++) {
            cumulative += s->probs[i];
            if (cumulative >= (double)s->params.top_p) {
                keep = i + 1;
                break;
            }
        }
        count = keep;
    }

    if (s->params.min_p > 0.0f) {
        double threshold = (double)s->params.min_p * s->probs[0];
        int keep = 1;
        while (keep < count && s->probs[keep] >= threshold) {
            keep++;
        }
        count = keep;
    }

    double kept = 0.0;
    for (int i = 0; i < count; i++) {
        kept += s->probs[i];
    }
    for (int i = 0; i < count; i++) {
        s->probs[i] /= kept;
    }
    return count;
}

mr_status mr_sampler_filter(mr_sampler *sampler, const float *logits, int32_t *ids, float *probs,
                            int cap, int *n, mr_error *err) {
    *n = 0;
    int count = run_filters(sampler, logits, err);
    if (count == 0) {
        /* run_filters fails only on NaN or all -inf logits. */
        return MR_ERR_NUMERIC;
    }

    *n = count;
    for (int i = 0; i < count && i < cap; i++) {
        if (ids != NULL) {
            ids[i] = sampler->candidates[i].id;
        }
        if (probs != NULL) {
            probs[i] = (float)sampler->probs[i];
        }
    }
    return MR_OK;
}

int32_t mr_sampler_sample(mr_sampler *sampler, const float *logits, mr_error *err) {
    int count = run_filters(sampler, logits, err);
    if (count == 0) {
        return -1;
    }
    if (sampler->params.temperature <= 0.0f) {
        return sampler->candidates[0].id;
    }

    /* Inverse transform: the first token whose cumulative probability
     * passes u; rounding that leaves u past the total picks the last. */
    double u = (double)mr_rng_uniform(&sampler->rng);
    double cumulative = 0.0;
    for (int i = 0; i < count; i++) {
        cumulative += sampler->probs[i];
        if (u < cumulative) {
            return sampler->candidates[i].id;
        }
    }
    return sampler->candidates[count - 1].id;
}

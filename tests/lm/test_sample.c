/*
 * Token sampler. Hand-made logits, mostly log(1), log(2), log(3), log(4)
 * (probabilities 0.1 to 0.4), with the exact kept sets and probabilities
 * of each filter, their order, the repetition penalty, seeds, and the
 * frequencies of many draws.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/rng.h"
#include "multiround/sample.h"
#include "test.h"

/* Float probabilities come from double arithmetic rounded once. */
#define PROB_TOL 1e-6

/* Parameters with every filter off and temperature 1. */
static mr_sampler_params plain_params(void) {
    mr_sampler_params p;
    mr_sampler_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = 7;
    return p;
}

/* Logits log(1), log(2), log(3), log(4): probabilities 0.1, 0.2, 0.3, 0.4. */
static void weights_1234(float *logits) {
    for (int i = 0; i < 4; i++) {
        logits[i] = logf((float)(i + 1));
    }
}

/* Runs the filters and checks the kept ids and probabilities. */
static void check_kept(const mr_sampler_params *params, const float *logits, int vocab,
                       int n_expected, const int32_t *ids_expected, const double *probs_expected,
                       int line) {
    mr_error err = {0};
    mr_sampler *s = mr_sampler_create(params, vocab, &err);
    if (s == NULL) {
        mr_test_fail(__FILE__, line, "create failed: %s", err.message);
        return;
    }
    int32_t ids[64];
    float probs[64];
    int n = 0;
    CHECK_STATUS(mr_sampler_filter(s, logits, ids, probs, 64, &n, &err), MR_OK);
    if (n != n_expected) {
        mr_test_fail(__FILE__, line, "kept %d tokens, expected %d", n, n_expected);
    }
    for (int i = 0; i < n && i < n_expected; i++) {
        if (ids[i] != ids_expected[i]) {
            mr_test_fail(__FILE__, line, "kept[%d] is id %d, expected %d", i, ids[i],
                         ids_expected[i]);
        }
        if (!(fabs(probs[i] - probs_expected[i]) <= PROB_TOL)) {
            mr_test_fail(__FILE__, line, "prob[%d] is %.9g, expected %.9g", i, probs[i],
                         probs_expected[i]);
        }
    }
    mr_sampler_free(s);
}

static void greedy_picks_lowest_max(void) {
    mr_sampler_params p = plain_params();
    p.temperature = 0.0f;
    float logits[4] = {1.0f, 3.0f, 3.0f, 2.0f};
    check_kept(&p, logits, 4, 1, (int32_t[]){1}, (double[]){1.0}, __LINE__);

    mr_error err = {0};
    mr_sampler *s = mr_sampler_create(&p, 4, &err);
    CHECK_INT_EQ(mr_sampler_sample(s, logits, &err), 1);
    mr_sampler_free(s);
}

static void no_filters_keep_all(void) {
    mr_sampler_params p = plain_params();
    float logits[4];
    weights_1234(logits);
    check_kept(&p, logits, 4, 4, (int32_t[]){3, 2, 1, 0}, (double[]){0.4, 0.3, 0.2, 0.1},
               __LINE__);
}

static void top_k_keeps_k_largest(void) {
    mr_sampler_params p = plain_params();
    p.top_k = 2;
    float logits[4];
    weights_1234(logits);
    check_kept(&p, logits, 4, 2, (int32_t[]){3, 2}, (double[]){4.0 / 7, 3.0 / 7}, __LINE__);

    /* Ties go to the lower id. */
    float tied[4] = {1.0f, 1.0f, 1.0f, 0.0f};
    check_kept(&p, tied, 4, 2, (int32_t[]){0, 1}, (double[]){0.5, 0.5}, __LINE__);

    /* k beyond the vocabulary keeps everything. */
    p.top_k = 100;
    check_kept(&p, logits, 4, 4, (int32_t[]){3, 2, 1, 0}, (double[]){0.4, 0.3, 0.2, 0.1},
               __LINE__);
}

static void top_k_heap_matches_sort(void) {
    /* 1000 logits from a seed, with repeats so that ties occur: top-50
     * must be the first 50 of a full sort by (logit desc, id asc). */
    enum { V = 1000, K = 50 };
    float logits[V];
    mr_rng rng;
    mr_rng_init(&rng, 3);
    for (int i = 0; i < V; i++) {
        logits[i] = (float)mr_rng_below(&rng, 200) / 20.0f;
    }
    int32_t order[V];
    for (int i = 0; i < V; i++) {
        order[i] = i;
    }
    for (int i = 1; i < V; i++) { /* insertion sort: slow but obviously right */
        int32_t id = order[i];
        int j = i;
        while (j > 0 && (logits[order[j - 1]] < logits[id] ||
                         (logits[order[j - 1]] == logits[id] && order[j - 1] > id))) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = id;
    }

    mr_sampler_params p = plain_params();
    p.top_k = K;
    mr_error err = {0};
    mr_sampler *s = mr_sampler_create(&p, V, &err);
    int32_t ids[K];
    int n = 0;
    CHECK_STATUS(mr_sampler_filter(s, logits, ids, NULL, K, &n, &err), MR_OK);
    CHECK_INT_EQ(n, K);
    int same = 0;
    for (int i = 0; i < K; i++) {
        same += ids[i] == order[i];
    }
    CHECK_INT_EQ(same, K);
    mr_sampler_free(s);
}

static void top_p_keeps_shortest_prefix(void) {
    mr_sampler_params p = plain_params();
    float logits[4];
    weights_1234(logits);

    /* 0.4 < 0.6 <= 0.7 */
    p.top_p = 0.6f;
    check_kept(&p, logits, 4, 2, (int32_t[]){3, 2}, (double[]){4.0 / 7, 3.0 / 7}, __LINE__);

    /* 0.7 < 0.75 <= 0.9 */
    p.top_p = 0.75f;
    check_kept(&p, logits, 4, 3, (int32_t[]){3, 2, 1}, (double[]){4.0 / 9, 3.0 / 9, 2.0 / 9},
               __LINE__);

    /* A tiny mass still keeps the most probable token. */
    p.top_p = 0.01f;
    check_kept(&p, logits, 4, 1, (int32_t[]){3}, (double[]){1.0}, __LINE__);
}

static void min_p_drops_relative_tail(void) {
    mr_sampler_params p = plain_params();
    float logits[4];
    weights_1234(logits);

    /* Threshold 0.6 * 0.4 = 0.24: 0.3 stays, 0.2 goes. */
    p.min_p = 0.6f;
    check_kept(&p, logits, 4, 2, (int32_t[]){3, 2}, (double[]){4.0 / 7, 3.0 / 7}, __LINE__);

    /* Threshold 0.2 * 0.4 = 0.08: all stay. */
    p.min_p = 0.2f;
    check_kept(&p, logits, 4, 4, (int32_t[]){3, 2, 1, 0}, (double[]){0.4, 0.3, 0.2, 0.1},
               __LINE__);
}

static void temperature_scales_logits(void) {
    mr_sampler_params p = plain_params();
    float logits[4];
    weights_1234(logits);

    /* T = 2: probabilities proportional to sqrt(w). */
    p.temperature = 2.0f;
    double root_sum = 1.0 + sqrt(2.0) + sqrt(3.0) + 2.0;
    check_kept(&p, logits, 4, 4, (int32_t[]){3, 2, 1, 0},
               (double[]){2.0 / root_sum, sqrt(3.0) / root_sum, sqrt(2.0) / root_sum,
                          1.0 / root_sum},
               __LINE__);

    /* T = 0.5: proportional to w^2, {16, 9, 4, 1} / 30. */
    p.temperature = 0.5f;
    check_kept(&p, logits, 4, 4, (int32_t[]){3, 2, 1, 0},
               (double[]){16.0 / 30, 9.0 / 30, 4.0 / 30, 1.0 / 30}, __LINE__);
}

static void temperature_applies_before_top_p(void) {
    /* At T = 0.5 the top token has 16/30 = 0.533 >= 0.5, so top-p keeps
     * one token. Top-p before temperature would see 0.4 and keep two. */
    mr_sampler_params p = plain_params();
    float logits[4];
    weights_1234(logits);
    p.temperature = 0.5f;
    p.top_p = 0.5f;
    check_kept(&p, logits, 4, 1, (int32_t[]){3}, (double[]){1.0}, __LINE__);
}

static void top_k_then_top_p_then_min_p(void) {
    /* Probabilities 0.05, 0.1, 0.15, 0.2, 0.25, 0.25 (weights 1..5, 5).
     * top-k 4 keeps ids 4, 5, 3, 2 with weights 5, 5, 4, 3 (sum 17).
     * top-p 0.8: cumulative 5/17, 10/17, 14/17 = 0.82 keeps three.
     * min-p 0.85: threshold 0.85 * 5/14 keeps 5/14 twice, drops 4/14. */
    mr_sampler_params p = plain_params();
    float logits[6];
    float weights[6] = {1, 2, 3, 4, 5, 5};
    for (int i = 0; i < 6; i++) {
        logits[i] = logf(weights[i]);
    }
    p.top_k = 4;
    p.top_p = 0.8f;
    p.min_p = 0.85f;
    check_kept(&p, logits, 6, 2, (int32_t[]){4, 5}, (double[]){0.5, 0.5}, __LINE__);
}

static void repeat_penalty_divides_and_multiplies(void) {
    mr_sampler_params p = plain_params();
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = -1;
    float logits[4] = {2.0f, -1.0f, 0.5f, 1.0f};
    mr_error err = {0};
    mr_sampler *s = mr_sampler_create(&p, 4, &err);

    /* Token 0 twice in the window still counts once: 2 -> 1. Token 1:
     * -1 -> -2. Penalised logits {1, -2, 0.5, 1}. */
    mr_sampler_accept(s, 0);
    mr_sampler_accept(s, 1);
    mr_sampler_accept(s, 0);
    int32_t ids[4];
    float probs[4];
    int n = 0;
    CHECK_STATUS(mr_sampler_filter(s, logits, ids, probs, 4, &n, &err), MR_OK);
    double z = exp(1.0) + exp(-2.0) + exp(0.5) + exp(1.0);
    CHECK_INT_EQ(n, 4);
    CHECK_INT_EQ(ids[0], 0);
    CHECK_INT_EQ(ids[1], 3);
    CHECK_INT_EQ(ids[2], 2);
    CHECK_INT_EQ(ids[3], 1);
    CHECK_NEAR(probs[0], exp(1.0) / z, PROB_TOL);
    CHECK_NEAR(probs[1], exp(1.0) / z, PROB_TOL);
    CHECK_NEAR(probs[2], exp(0.5) / z, PROB_TOL);
    CHECK_NEAR(probs[3], exp(-2.0) / z, PROB_TOL);
    mr_sampler_free(s);

    /* A window of 1 covers only the last token (0): {1, -1, 0.5, 1}. */
    p.repeat_last_n = 1;
    s = mr_sampler_create(&p, 4, &err);
    mr_sampler_accept(s, 1);
    mr_sampler_accept(s, 0);
    CHECK_STATUS(mr_sampler_filter(s, logits, ids, probs, 4, &n, &err), MR_OK);
    z = exp(1.0) + exp(-1.0) + exp(0.5) + exp(1.0);
    CHECK_INT_EQ(ids[3], 1);
    CHECK_NEAR(probs[3], exp(-1.0) / z, PROB_TOL);

    /* Greedy decoding applies the penalty too: token 0 (2 -> 1) falls below token 3
     * (1.5); reset forgets the history and token 0 wins again. */
    p.temperature = 0.0f;
    p.repeat_last_n = 64;
    mr_sampler_free(s);
    s = mr_sampler_create(&p, 4, &err);
    float sharp[4] = {2.0f, -1.0f, 0.5f, 1.5f};
    mr_sampler_accept(s, 0);
    CHECK_INT_EQ(mr_sampler_sample(s, sharp, &err), 3);
    mr_sampler_reset(s);
    CHECK_INT_EQ(mr_sampler_sample(s, sharp, &err), 0);
    mr_sampler_free(s);
}

static void minus_infinity_never_drawn(void) {
    mr_sampler_params p = plain_params();
    float logits[4] = {0.0f, -INFINITY, 0.0f, -INFINITY};
    check_kept(&p, logits, 4, 2, (int32_t[]){0, 2}, (double[]){0.5, 0.5}, __LINE__);
}

static void draw_frequencies_match_probs(void) {
    /* 40000 draws from probabilities 0.1..0.4. The count of each token is
     * binomial; 5 standard deviations, sqrt(p (1 - p) / N) <= 0.0025, is
     * a bound that a correct sampler misses with probability below 1e-6
     * (and the seed is fixed, so the test is deterministic). */
    enum { DRAWS = 40000 };
    mr_sampler_params p = plain_params();
    float logits[4];
    weights_1234(logits);
    mr_error err = {0};
    mr_sampler *s = mr_sampler_create(&p, 4, &err);
    int counts[4] = {0};
    for (int i = 0; i < DRAWS; i++) {
        int32_t id = mr_sampler_sample(s, logits, &err);
        CHECK(id >= 0 && id < 4);
        if (id >= 0 && id < 4) {
            counts[id]++;
        }
    }
    for (int id = 0; id < 4; id++) {
        double expected = (id + 1) / 10.0;
        double bound = 5.0 * sqrt(expected * (1.0 - expected) / DRAWS);
        CHECK_NEAR((double)counts[id] / DRAWS, expected, bound);
    }
    mr_sampler_free(s);

    /* With top-k 2 only ids 3 and 2 appear, at 4/7 and 3/7. */
    p.top_k = 2;
    s = mr_sampler_create(&p, 4, &err);
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < DRAWS; i++) {
        int32_t id = mr_sampler_sample(s, logits, &err);
        if (id >= 0 && id < 4) {
            counts[id]++;
        }
    }
    CHECK_INT_EQ(counts[0], 0);
    CHECK_INT_EQ(counts[1], 0);
    double q = 4.0 / 7;
    CHECK_NEAR((double)counts[3] / DRAWS, q, 5.0 * sqrt(q * (1.0 - q) / DRAWS));
    mr_sampler_free(s);
}

static void seed_reproduces_draws(void) {
    enum { DRAWS = 200 };
    mr_sampler_params p = plain_params();
    float logits[4];
    weights_1234(logits);
    mr_error err = {0};
    mr_sampler *a = mr_sampler_create(&p, 4, &err);
    mr_sampler *b = mr_sampler_create(&p, 4, &err);
    p.seed = 8;
    mr_sampler *c = mr_sampler_create(&p, 4, &err);
    int32_t first[DRAWS];
    int same_ab = 0;
    int same_ac = 0;
    for (int i = 0; i < DRAWS; i++) {
        first[i] = mr_sampler_sample(a, logits, &err);
        int32_t from_b = mr_sampler_sample(b, logits, &err);
        int32_t from_c = mr_sampler_sample(c, logits, &err);
        same_ab += first[i] == from_b;
        same_ac += first[i] == from_c;
    }
    CHECK_INT_EQ(same_ab, DRAWS);
    CHECK(same_ac < DRAWS);

    /* Reset restarts the stream at the seed. */
    mr_sampler_reset(a);
    int again = 0;
    for (int i = 0; i < DRAWS; i++) {
        again += mr_sampler_sample(a, logits, &err) == first[i];
    }
    CHECK_INT_EQ(again, DRAWS);
    mr_sampler_free(a);
    mr_sampler_free(b);
    mr_sampler_free(c);
}

static void invalid_input_rejected(void) {
    mr_error err = {0};
    mr_sampler_params p = plain_params();
    p.top_p = 0.0f;
    CHECK(mr_sampler_create(&p, 4, &err) == NULL);
    CHECK_INT_EQ(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "top_p") != NULL);

    p = plain_params();
    p.min_p = 1.5f;
    CHECK(mr_sampler_create(&p, 4, &err) == NULL);
    CHECK(strstr(err.message, "min_p") != NULL);

    p = plain_params();
    p.repeat_penalty = 0.0f;
    CHECK(mr_sampler_create(&p, 4, &err) == NULL);
    CHECK(strstr(err.message, "repeat_penalty") != NULL);

    p = plain_params();
    CHECK(mr_sampler_create(&p, 0, &err) == NULL);
    CHECK(strstr(err.message, "vocab_size") != NULL);

    mr_sampler *s = mr_sampler_create(&p, 4, &err);
    float with_nan[4] = {0.0f, NAN, 1.0f, 2.0f};
    CHECK_INT_EQ(mr_sampler_sample(s, with_nan, &err), -1);
    CHECK_INT_EQ(err.status, MR_ERR_NUMERIC);
    CHECK(strstr(err.message, "logit 1") != NULL);

    float none[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int n = 5;
    CHECK_STATUS(mr_sampler_filter(s, none, NULL, NULL, 0, &n, &err), MR_ERR_NUMERIC);
    CHECK_INT_EQ(n, 0);
    mr_sampler_free(s);
}

int main(void) {
    MR_RUN(greedy_picks_lowest_max);
    MR_RUN(no_filters_keep_all);
    MR_RUN(top_k_keeps_k_largest);
    MR_RUN(top_k_heap_matches_sort);
    MR_RUN(top_p_keeps_shortest_prefix);
    MR_RUN(min_p_drops_relative_tail);
    MR_RUN(temperature_scales_logits);
    MR_RUN(temperature_applies_before_top_p);
    MR_RUN(top_k_then_top_p_then_min_p);
    MR_RUN(repeat_penalty_divides_and_multiplies);
    MR_RUN(minus_infinity_never_drawn);
    MR_RUN(draw_frequencies_match_probs);
    MR_RUN(seed_reproduces_draws);
    MR_RUN(invalid_input_rejected);
    return mr_test_finish();
}

/*
 * Ranking metrics: hit@K and NDCG@K on hand-computed ranks, the target's
 * rank among all candidates with exclusions and ties, and the top k list,
 * each against hand-computed values and a brute-force reference.
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/rec.h"
#include "test.h"

/* ------------------------------------------------------------------------
 * hit@K and NDCG@K
 * ------------------------------------------------------------------------ */

static void cutoffs_are_fixed(void) {
    CHECK_INT_EQ(mr_rec_cutoffs[0], 10);
    CHECK_INT_EQ(mr_rec_cutoffs[1], 20);
    CHECK_INT_EQ(mr_rec_cutoffs[2], 50);
    CHECK_INT_EQ(mr_rec_cutoffs[3], 100);
}

static void metrics_of_single_ranks(void) {
    /* Rank 0: a hit at every cutoff with gain 1 / log2(2) = 1. */
    mr_rec_metrics m;
    memset(&m, 0, sizeof m);
    mr_rec_metrics_add(&m, 0);
    CHECK_INT_EQ(m.users, 1);
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        CHECK_NEAR(m.hit[c], 1.0, 0);
        CHECK_NEAR(m.ndcg[c], 1.0, 0);
    }

    /* Rank 9 is the last slot of the top 10: gain 1 / log2(11). */
    memset(&m, 0, sizeof m);
    mr_rec_metrics_add(&m, 9);
    CHECK_NEAR(m.hit[0], 1.0, 0);
    CHECK_NEAR(m.ndcg[0], 0.289064826317888, 1e-15);
    CHECK_NEAR(m.ndcg[3], 0.289064826317888, 1e-15);

    /* Rank 10 misses the top 10 only. */
    memset(&m, 0, sizeof m);
    mr_rec_metrics_add(&m, 10);
    CHECK_NEAR(m.hit[0], 0.0, 0);
    CHECK_NEAR(m.ndcg[0], 0.0, 0);
    CHECK_NEAR(m.hit[1], 1.0, 0);
    CHECK_NEAR(m.ndcg[1], 1.0 / log2(12.0), 1e-15);

    /* Rank 49 is inside the top 50, rank 50 outside it. */
    memset(&m, 0, sizeof m);
    mr_rec_metrics_add(&m, 49);
    CHECK_NEAR(m.hit[2], 1.0, 0);
    CHECK_NEAR(m.ndcg[2], 1.0 / log2(51.0), 1e-15);
    memset(&m, 0, sizeof m);
    mr_rec_metrics_add(&m, 50);
    CHECK_NEAR(m.hit[1], 0.0, 0);
    CHECK_NEAR(m.hit[2], 0.0, 0);
    CHECK_NEAR(m.ndcg[2], 0.0, 0);
    CHECK_NEAR(m.hit[3], 1.0, 0);
    CHECK_NEAR(m.ndcg[3], 0.175425063581955, 1e-15); /* 1 / log2(52) */

    /* Rank 100 and an absent target count as users with no hit. */
    memset(&m, 0, sizeof m);
    mr_rec_metrics_add(&m, 100);
    mr_rec_metrics_add(&m, -1);
    CHECK_INT_EQ(m.users, 2);
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        CHECK_NEAR(m.hit[c], 0.0, 0);
        CHECK_NEAR(m.ndcg[c], 0.0, 0);
    }
}

static void metrics_means_over_users(void) {
    mr_rec_metrics m;
    memset(&m, 0, sizeof m);
    mr_rec_metrics_add(&m, 0);
    mr_rec_metrics_add(&m, 9);
    mr_rec_metrics_add(&m, 50);
    mr_rec_metrics_add(&m, -1);
    mr_rec_metrics_finish(&m);

    double g9 = 1.0 / log2(11.0), g50 = 1.0 / log2(52.0);
    CHECK_INT_EQ(m.users, 4);
    CHECK_NEAR(m.hit[0], 0.5, 0);
    CHECK_NEAR(m.hit[2], 0.5, 0);
    CHECK_NEAR(m.hit[3], 0.75, 0);
    CHECK_NEAR(m.ndcg[0], (1.0 + g9) / 4.0, 1e-15);
    CHECK_NEAR(m.ndcg[2], (1.0 + g9) / 4.0, 1e-15);
    CHECK_NEAR(m.ndcg[3], (1.0 + g9 + g50) / 4.0, 1e-15);

    /* No users: the sums stay 0 instead of becoming NaN. */
    mr_rec_metrics empty;
    memset(&empty, 0, sizeof empty);
    mr_rec_metrics_finish(&empty);
    CHECK_NEAR(empty.hit[0], 0.0, 0);
    CHECK_NEAR(empty.ndcg[3], 0.0, 0);
}

static void metrics_merge_partial_sums(void) {
    const int64_t ranks[7] = {3, -1, 0, 70, 15, 99, 45};
    mr_rec_metrics whole, first, second;
    memset(&whole, 0, sizeof whole);
    memset(&first, 0, sizeof first);
    memset(&second, 0, sizeof second);
    for (int i = 0; i < 7; i++) {
        mr_rec_metrics_add(&whole, ranks[i]);
        mr_rec_metrics_add(i < 3 ? &first : &second, ranks[i]);
    }

    mr_rec_metrics_merge(&first, &second);
    mr_rec_metrics_finish(&first);
    mr_rec_metrics_finish(&whole);
    CHECK_INT_EQ(first.users, 7);
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        CHECK_NEAR(first.hit[c], whole.hit[c], 1e-15);
        CHECK_NEAR(first.ndcg[c], whole.ndcg[c], 1e-15);
    }
    CHECK_NEAR(whole.hit[0], 2.0 / 7.0, 1e-15);
    CHECK_NEAR(whole.hit[3], 6.0 / 7.0, 1e-15);
}

/* ------------------------------------------------------------------------
 * Rank among all candidates
 * ------------------------------------------------------------------------ */

/*
 * Item 0 is padding with the highest score, which must be ignored.
 * Items 1, 4 and 6 tie at 0.5.
 */
static const float small_scores[8] = {100.0f, 0.5f, 0.9f, 0.1f, 0.5f, 0.7f, 0.5f, 0.2f};

static void rank_full_with_ties(void) {
    /* Target 4: items 2 and 5 score higher; item 1 ties with a smaller id. */
    CHECK_INT_EQ(mr_rec_rank_full(small_scores, 8, NULL, 0, 4), 3);
    /* Target 1 wins its ties with 4 and 6. */
    CHECK_INT_EQ(mr_rec_rank_full(small_scores, 8, NULL, 0, 1), 2);
    /* Target 6 loses both ties. */
    CHECK_INT_EQ(mr_rec_rank_full(small_scores, 8, NULL, 0, 6), 4);
    CHECK_INT_EQ(mr_rec_rank_full(small_scores, 8, NULL, 0, 2), 0);
    CHECK_INT_EQ(mr_rec_rank_full(small_scores, 8, NULL, 0, 3), 6);
}

static void rank_full_with_exclusions(void) {
    /* Excluding 2 (listed twice) removes one item ahead of target 4; the
     * target itself, item 6 (behind it) and out-of-range ids change nothing. */
    const int32_t exclude[6] = {2, 2, 4, 6, 0, 99};
    CHECK_INT_EQ(mr_rec_rank_full(small_scores, 8, exclude, 6, 4), 2);

    /* Excluding everything ahead puts the target first. */
    const int32_t ahead[3] = {1, 5, 2};
    CHECK_INT_EQ(mr_rec_rank_full(small_scores, 8, ahead, 3, 4), 0);
}

static void rank_full_with_nan(void) {
    /* A NaN candidate is never ahead; a NaN target is behind every number. */
    float scores[6] = {0.0f, 0.3f, NAN, 0.3f, NAN, -1.0f};
    CHECK_INT_EQ(mr_rec_rank_full(scores, 6, NULL, 0, 3), 1);
    CHECK_INT_EQ(mr_rec_rank_full(scores, 6, NULL, 0, 5), 2);
    CHECK_INT_EQ(mr_rec_rank_full(scores, 6, NULL, 0, 4), 4);
    CHECK_INT_EQ(mr_rec_rank_full(scores, 6, NULL, 0, 2), 3);
}

/* Fills scores with values from a small set, so that ties are common. */
static void fill_tied_scores(float *scores, int32_t n, uint64_t seed) {
    mr_rng rng;
    mr_rng_init(&rng, seed);
    for (int32_t i = 0; i < n; i++) {
        scores[i] = (float)mr_rng_below(&rng, 64) * 0.25f - 8.0f;
    }
}

static void rank_full_matches_brute_force(void) {
    enum { N = 3000, EXCLUDE = 200 };
    float *scores = malloc(N * sizeof *scores);
    int32_t exclude[EXCLUDE];
    uint8_t excluded[N];
    mr_rng rng;
    mr_rng_init(&rng, 11);

    for (int trial = 0; trial < 20; trial++) {
        fill_tied_scores(scores, N, 100 + (uint64_t)trial);
        memset(excluded, 0, sizeof excluded);
        for (int e = 0; e < EXCLUDE; e++) {
            exclude[e] = (int32_t)mr_rng_below(&rng, N - 1) + 1;
            excluded[exclude[e]] = 1;
        }
        int32_t target = (int32_t)mr_rng_below(&rng, N - 1) + 1;
        excluded[target] = 0;

        int64_t expected = 0;
        for (int32_t i = 1; i < N; i++) {
            if (i == target || excluded[i]) {
                continue;
            }
            if (scores[i] > scores[target] || (scores[i] == scores[target] && i < target)) {
                expected++;
            }
        }
        CHECK_INT_EQ(mr_rec_rank_full(scores, N, exclude, EXCLUDE, target), expected);
    }
    free(scores);
}

/* ------------------------------------------------------------------------
 * Top k
 * ------------------------------------------------------------------------ */

static void topk_blocks_and_breaks_ties(void) {
    int32_t out[10];
    uint8_t blocked[8] = {0, 0, 1, 0, 0, 0, 0, 0};

    /* Item 2 blocked: 5 (0.7), then the 0.5 ties by id. */
    CHECK_INT_EQ(mr_rec_topk(small_scores, 8, blocked, 3, out), 3);
    CHECK_INT_EQ(out[0], 5);
    CHECK_INT_EQ(out[1], 1);
    CHECK_INT_EQ(out[2], 4);

    /* Without blocking item 2 leads; item 0 never appears. */
    CHECK_INT_EQ(mr_rec_topk(small_scores, 8, NULL, 2, out), 2);
    CHECK_INT_EQ(out[0], 2);
    CHECK_INT_EQ(out[1], 5);

    /* k above the 6 remaining candidates writes all of them, in order. */
    const int32_t all[6] = {5, 1, 4, 6, 7, 3};
    CHECK_INT_EQ(mr_rec_topk(small_scores, 8, blocked, 10, out), 6);
    for (int i = 0; i < 6; i++) {
        CHECK_INT_EQ(out[i], all[i]);
    }

    CHECK_INT_EQ(mr_rec_topk(small_scores, 8, blocked, 0, out), 0);
    uint8_t everything[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    CHECK_INT_EQ(mr_rec_topk(small_scores, 8, everything, 5, out), 0);
}

static void topk_puts_nan_last(void) {
    float scores[5] = {0.0f, NAN, -3.0f, NAN, 2.0f};
    int32_t out[4];
    CHECK_INT_EQ(mr_rec_topk(scores, 5, NULL, 4, out), 4);
    CHECK_INT_EQ(out[0], 4);
    CHECK_INT_EQ(out[1], 2);
    CHECK_INT_EQ(out[2], 1);
    CHECK_INT_EQ(out[3], 3);
}

/* Orders ids by descending score, then ascending id. */
static const float *sort_scores;
static int compare_ranked(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (sort_scores[x] != sort_scores[y]) {
        return sort_scores[x] > sort_scores[y] ? -1 : 1;
    }
    return (x > y) - (x < y);
}

static void topk_matches_full_sort(void) {
    enum { N = 20000, K = 100 };
    float *scores = malloc(N * sizeof *scores);
    uint8_t *blocked = calloc(N, 1);
    int32_t *sorted = malloc(N * sizeof *sorted);
    int32_t *exclude = malloc(N * sizeof *exclude);
    int32_t out[K];
    mr_rng rng;
    mr_rng_init(&rng, 5);

    for (int trial = 0; trial < 5; trial++) {
        fill_tied_scores(scores, N, 200 + (uint64_t)trial);
        int count = 0;
        for (int32_t i = 1; i < N; i++) {
            blocked[i] = mr_rng_below(&rng, 10) == 0;
            if (!blocked[i]) {
                sorted[count++] = i;
            }
        }
        sort_scores = scores;
        qsort(sorted, (size_t)count, sizeof *sorted, compare_ranked);

        CHECK_INT_EQ(mr_rec_topk(scores, N, blocked, K, out), K);
        int mismatches = 0;
        for (int i = 0; i < K; i++) {
            mismatches += out[i] != sorted[i];
        }
        CHECK_INT_EQ(mismatches, 0);

        /* The rank of any listed item is its position in the list. */
        int64_t n_exclude = 0;
        for (int32_t i = 1; i < N; i++) {
            if (blocked[i]) {
                exclude[n_exclude++] = i;
            }
        }
        for (int i = 0; i < K; i += 33) {
            CHECK_INT_EQ(mr_rec_rank_full(scores, N, exclude, n_exclude, out[i]), i);
        }
    }
    free(scores);
    free(blocked);
    free(sorted);
    free(exclude);
}

int main(void) {
    MR_RUN(cutoffs_are_fixed);
    MR_RUN(metrics_of_single_ranks);
    MR_RUN(metrics_means_over_users);
    MR_RUN(metrics_merge_partial_sums);
    MR_RUN(rank_full_with_ties);
    MR_RUN(rank_full_with_exclusions);
    MR_RUN(rank_full_with_nan);
    MR_RUN(rank_full_matches_brute_force);
    MR_RUN(topk_blocks_and_breaks_ties);
    MR_RUN(topk_puts_nan_last);
    MR_RUN(topk_matches_full_sort);
    return mr_test_finish();
}

/*
 * Gold-passage recall@k on hand-made rankings: the share of distinct gold
 * titles found among the first k retrieved titles.
 */
#include <math.h>

#include "multiround/retriever.h"
#include "test.h"

static const char *const ranking[] = {"Alpha", "Beta", "Gamma", "Delta"};

static void recall_counts_gold_in_top_k(void) {
    const char *gold[] = {"Gamma", "Alpha"};
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 4, gold, 2, 1), 0.5, 0);
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 4, gold, 2, 2), 0.5, 0);
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 4, gold, 2, 3), 1.0, 0);
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 4, gold, 2, 10), 1.0, 0);
}

static void recall_missing_gold(void) {
    const char *gold[] = {"Beta", "Omega", "Epsilon"};
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 4, gold, 3, 4), 1.0 / 3.0, 1e-15);
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 4, gold, 3, 1), 0.0, 0);
}

static void recall_short_ranking(void) {
    /* k beyond the ranking counts only what was retrieved. */
    const char *gold[] = {"Delta", "Beta"};
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 2, gold, 2, 10), 0.5, 0);
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 0, gold, 2, 10), 0.0, 0);
}

static void recall_repeated_gold(void) {
    const char *gold[] = {"Alpha", "Alpha", "Delta"};
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 4, gold, 3, 1), 0.5, 0);
}

static void recall_exact_titles(void) {
    /* Titles compare byte for byte: case and spacing matter. */
    const char *gold[] = {"alpha", "Beta "};
    CHECK_NEAR(mr_retrieval_recall_at_k(ranking, 4, gold, 2, 4), 0.0, 0);
}

static void recall_without_gold(void) {
    CHECK(isnan(mr_retrieval_recall_at_k(ranking, 4, NULL, 0, 4)));
}

/* Averages over a tiny question set as `multiround search --questions`
 * does: mean recall@2 and the share of questions with all gold in top 2. */
static void recall_averages_questions(void) {
    const char *gold_a[] = {"Alpha", "Beta"};  /* both in the top 2 */
    const char *gold_b[] = {"Alpha", "Delta"}; /* one of two */
    const char *gold_c[] = {"Omega"};          /* none */
    const char *const *golds[] = {gold_a, gold_b, gold_c};
    int counts[] = {2, 2, 1};

    double recall_sum = 0, all_sum = 0;
    for (int q = 0; q < 3; q++) {
        double recall = mr_retrieval_recall_at_k(ranking, 4, golds[q], counts[q], 2);
        recall_sum += recall;
        all_sum += recall == 1.0 ? 1.0 : 0.0;
    }
    CHECK_NEAR(recall_sum / 3, 0.5, 1e-15);
    CHECK_NEAR(all_sum / 3, 1.0 / 3.0, 1e-15);
}

int main(void) {
    MR_RUN(recall_counts_gold_in_top_k);
    MR_RUN(recall_missing_gold);
    MR_RUN(recall_short_ranking);
    MR_RUN(recall_repeated_gold);
    MR_RUN(recall_exact_titles);
    MR_RUN(recall_without_gold);
    MR_RUN(recall_averages_questions);
    return mr_test_finish();
}

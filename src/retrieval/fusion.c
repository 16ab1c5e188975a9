/*
 * Reciprocal-rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009):
 * each ranking gives a document 1 / (k + rank) at its 1-based rank, and
 * the fused score is the sum over the rankings.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/retriever.h"

/* One id at one rank of one ranking. */
typedef struct rank_entry {
    int64_t id;
    int ranking;
    int rank; /* 1-based */
} rank_entry;

/* One fused id. */
typedef struct fused_entry {
    int64_t id;
    double score;
} fused_entry;

/* Orders entries by id, then ranking, then rank. */
static int compare_entries(const void *a, const void *b) {
    const rank_entry *x = a, *y = b;
    if (x->id != y->id) {
        return x->id < y->id ? -1 : 1;
    }
    if (x->ranking != y->ranking) {
        return x->ranking < y->ranking ? -1 : 1;
    }
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* Orders fused ids by score, highest first, then by smaller id. */
static int compare_fused(const void *a, const void *b) {
    const fused_entry *x = a, *y = b;
    if (x->score != y->score) {
        return x->score > y->score ? -1 : 1;
    }
    return (x->id > y->id) - (x->id < y->id);
}

mr_status mr_retrieval_fuse_rrf(const int64_t *const *rankings, const int *lengths,
                                int n_rankings, double k, int64_t *out_ids, double *out_scores,
                                int capacity, int *n, mr_error *err) {
    *n = 0;
    if (!isfinite(k) || k < 0.0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: the RRF constant k is %g; it must be finite and >= 0",
                            k);
    }
    if (n_rankings < 0 || capacity < 0 || (n_rankings > 0 && (rankings == NULL || lengths == NULL))) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "retriever: RRF got %d rankings and capacity %d; pass the rankings, "
                            "their lengths and a capacity >= 0",
                            n_rankings, capacity);
    }
    int64_t total = 0;
    for (int r = 0; r < n_rankings; r++) {
        if (lengths[r] < 0 || (lengths[r] > 0 && rankings[r] == NULL)) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "retriever: RRF ranking %d has length %d and a %s list", r,
                                lengths[r], rankings[r] == NULL ? "NULL" : "non-NULL");
        }
        total += lengths[r];
    }
    if (total == 0 || capacity == 0) {
        return MR_OK;
    }

    rank_entry *entries = malloc((size_t)total * sizeof *entries);
    fused_entry *fused = malloc((size_t)total * sizeof *fused);
    if (entries == NULL || fused == NULL) {
        free(entries);
        free(fused);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "retriever: out of memory fusing %lld ranks",
                            (long long)total);
    }
    int64_t used = 0;
    for (int r = 0; r < n_rankings; r++) {
        for (int i = 0; i < lengths[r]; i++) {
            entries[used].id = rankings[r][i];
            entries[used].ranking = r;
            entries[used].rank = i + 1;
            used++;
        }
    }

    /* Sorted by id, ranking and rank, each id's entries are adjacent and
     * the first one per ranking is its best rank there. Summing them in
     * that order adds the rankings in their given order. */
    qsort(entries, (size_t)total, sizeof *entries, compare_entries);
    int64_t distinct = 0;
    for (int64_t i = 0; i < total; i++) {
        bool new_id = i == 0 || entries[i].id != entries[i - 1].id;
        bool repeat_in_ranking = !new_id && entries[i].ranking == entries[i - 1].ranking;
        if (new_id) {
            fused[distinct].id = entries[i].id;
            fused[distinct].score = 0.0;
            distinct++;
        }
        if (!repeat_in_ranking) {
            fused[distinct - 1].score += 1.0 / (k + (double)entries[i].rank);
        }
    }

    qsort(fused, (size_t)distinct, sizeof *fused, compare_fused);
    int count = distinct < capacity ? (int)distinct : capacity;
    for (int i = 0; i < count; i++) {
        out_ids[i] = fused[i].id;
        if (out_scores != NULL) {
            out_scores[i] = fused[i].score;
        }
    }
    *n = count;
    free(entries);
    free(fused);
    return MR_OK;
}

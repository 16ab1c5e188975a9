/*
 * Ranking metrics for sequential recommendation: hit@K and NDCG@K with a
 * single relevant item per user, the target's rank among every candidate
 * item, and the top k items by score.
 *
 * Ties between equal scores break by id (the smaller id ranks first) so
 * that ranks and lists never depend on scan order. A NaN score ranks below
 * every number.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>

#include "multiround/rec.h"

const int mr_rec_cutoffs[MR_REC_CUTOFFS] = {10, 20, 50, 100};

void mr_rec_metrics_add(mr_rec_metrics *m, int64_t rank) {
    m->users++;
    if (rank < 0) {
        return;
    }
    double gain = 1.0 / log2((double)rank + 2.0);
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        if (rank < mr_rec_cutoffs[c]) {
            m->hit[c] += 1.0;
            m->ndcg[c] += gain;
        }
    }
}

void mr_rec_metrics_merge(mr_rec_metrics *m, const mr_rec_metrics *other) {
    m->users += other->users;
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        m->hit[c] += other->hit[c];
        m->ndcg[c] += other->ndcg[c];
    }
}

/* Divides the sums by the user count once; with no users the sums stay 0. */
void mr_rec_metrics_finish(mr_rec_metrics *m) {
    if (m->users == 0) {
        return;
    }
    for (int c = 0; c < MR_REC_CUTOFFS; c++) {
        m->hit[c] /= (double)m->users;
        m->ndcg[c] /= (double)m->users;
    }
}

/* True when item a (score sa) ranks before item b (score sb): a higher
 * score, or an equal score and a smaller id. NaN ranks last. */
static inline bool ranks_before(float sa, int32_t a, float sb, int32_t b) {
    if (sa > sb) {
        return true;
    }
    if (sa < sb) {
        return false;
    }
    if (sa == sb) {
        return a < b;
    }
    /* At least one is NaN. */
    if (isnan(sa) != isnan(sb)) {
        return isnan(sb);
    }
    return a < b;
}

/*
 * Counts every candidate ahead of the target, then takes back the excluded
 * items that were counted. The main loop is a plain comparison so that it
 * vectorises. A repeated entry of exclude is taken back only once, and
 * entries equal to the target or outside 1..n_items-1 are ignored.
 */
int64_t mr_rec_rank_full(const float *scores, int32_t n_items, const int32_t *exclude,
                         int64_t n_exclude, int32_t target) {
    assert(target >= 1);
    assert(target < n_items);
    float target_score = scores[target];

    int64_t ahead = 0;
    if (isnan(target_score)) {
        for (int32_t i = 1; i < n_items; i++) {
            ahead += ranks_before(scores[i], i, target_score, target);
        }
    } else {
        /* NaN candidates fail both comparisons and are never ahead. */
        for (int32_t i = 1; i < target; i++) {
            ahead += scores[i] >= target_score;
        }
        for (int32_t i = target + 1; i < n_items; i++) {
            ahead += scores[i] > target_score;
        }
    }

    for (int64_t e = 0; e < n_exclude; e++) {
        int32_t item = exclude[e];
        if (item < 1 || item >= n_items || item == target) {
            continue;
        }
        if (!ranks_before(scores[item], item, target_score, target)) {
            continue;
        }

        bool repeated = false;
        for (int64_t f = 0; f < e; f++) {
            if (exclude[f] == item) {
                repeated = true;
                break;
            }
        }
        if (!repeated) {
            ahead--;
        }
    }
    return ahead;
}

/* ------------------------------------------------------------------------
 * Top k: a min-heap of the k best so far, whose root is the worst of them
 * ------------------------------------------------------------------------ */

/* Moves the entry at index i down until neither child ranks after it. */
static void heap_sift_down(const float *scores, int32_t *heap, int size, int i) {
    for (;;) {
        int worst = i;
        int left = 2 * i + 1;
        int right = left + 1;
        if (left < size && ranks_before(scores[heap[worst]], heap[worst], scores[heap[left]],
                                        heap[left])) {
            worst = left;
        }
        if (right < size && ranks_before(scores[heap[worst]], heap[worst],
                                         scores[heap[right]], heap[right])) {
            worst = right;
        }
        if (worst == i) {
            return;
        }
        int32_t swap = heap[i];
        heap[i] = heap[worst];
        heap[worst] = swap;
        i = worst;
    }
}

/* Moves the entry at index i up while it ranks after its parent. */
static void heap_sift_up(const float *scores, int32_t *heap, int i) {
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!ranks_before(scores[heap[parent]], heap[parent], scores[heap[i]], heap[i])) {
            return;
        }
        int32_t swap = heap[i];
        heap[i] = heap[parent];
        heap[parent] = swap;
        i = parent;
    }
}

/*
 * Keeps the best k candidates in a heap built in out itself, so it needs
 * no memory beyond out: O(N log k) time, and most candidates cost one
 * comparison with the root. Popping the root k times then fills out from
 * the back with the best item first.
 */
int mr_rec_topk(const float *scores, int32_t n_items, const uint8_t *blocked, int k,
                int32_t *out) {
    if (k <= 0) {
        return 0;
    }

    int size = 0;
    for (int32_t i = 1; i < n_items; i++) {
        if (blocked != NULL && blocked[i] != 0) {
            continue;
        }
        if (size < k) {
            out[size] = i;
            heap_sift_up(scores, out, size);
            size++;
        } else if (ranks_before(scores[i], i, scores[out[0]], out[0])) {
            out[0] = i;
            heap_sift_down(scores, out, size, 0);
        }
    }

    /* Each pop moves the worst remaining entry to the end of the heap's
     * part of out, which leaves out in descending order. */
    for (int end = size - 1; end > 0; end--) {
        int32_t worst = out[0];
        out[0] = out[end];
        out[end] = worst;
        heap_sift_down(scores, out, end, 0);
    }
    return size;
}

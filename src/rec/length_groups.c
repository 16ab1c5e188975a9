/*
 * Grouping of a batch's inputs by real length, so that a truncatable
 * backbone computes few padding positions.
 */
#include <stdlib.h>
#include <string.h>

#include "length_groups.h"

/*
 * Fixed cost of one more group, in positions. A group adds a few hundred
 * small ops and their bookkeeping, so the split should not chase a handful
 * of positions with many tiny groups.
 * NOTE: 512 is an estimate, not tuned. SASRec on Beauty (batch 1024,
 * L = 50, 2 threads) trained at the same speed with 128.
 */
#define GROUP_COST 512

/* Length that a left-padded input must keep: positions from the first
 * non-zero id to the end, or max_len for an all-padding input. */
static int input_length(const int32_t *row, int max_len) {
    int first = 0;
    while (first < max_len && row[first] == 0) {
        first++;
    }
    return first == max_len ? max_len : max_len - first;
}

int64_t mr_rec_length_groups(const int32_t *seq, int64_t count, int max_len, int64_t min_rows,
                             int64_t *order, mr_rec_length_group *groups) {
    if (count <= 0) {
        return 0;
    }
    if (min_rows < 1) {
        min_rows = 1;
    }
    int *lengths = malloc((size_t)count * sizeof *lengths);
    int64_t *starts = calloc((size_t)max_len + 2, sizeof *starts);
    int64_t *cost = malloc((size_t)(count + 1) * sizeof *cost);
    int64_t *cut = malloc((size_t)(count + 1) * sizeof *cut);
    if (lengths == NULL || starts == NULL || cost == NULL || cut == NULL) {
        free(lengths);
        free(starts);
        free(cost);
        free(cut);
        return -1;
    }

    /* A stable counting sort by length. */
    for (int64_t i = 0; i < count; i++) {
        lengths[i] = input_length(seq + i * max_len, max_len);
        starts[lengths[i] + 1]++;
    }
    for (int l = 1; l <= max_len + 1; l++) {
        starts[l] += starts[l - 1];
    }
    for (int64_t i = 0; i < count; i++) {
        order[starts[lengths[i]]++] = i;
    }

    /*
     * cost[j]: least cost of splitting the first j sorted rows into groups
     * of at least min_rows rows, where a group of rows i..j-1 costs
     * (j - i) * (its longest length) + GROUP_COST. cut[j] is
     * where the last group of that split starts. With fewer than min_rows
     * rows in all, the one group is allowed to be smaller.
     */
    cost[0] = 0;
    for (int64_t j = 1; j <= count; j++) {
        int longest = lengths[order[j - 1]];
        cost[j] = -1;
        cut[j] = 0;
        for (int64_t i = 0; i <= j - min_rows || (i == 0 && j == count); i++) {
            if (cost[i] < 0) {
                continue;
            }
            int64_t candidate = cost[i] + (j - i) * longest + GROUP_COST;
            if (cost[j] < 0 || candidate < cost[j]) {
                cost[j] = candidate;
                cut[j] = i;
            }
        }
    }

    /* Walk the cuts back from the end, then put the groups in order. */
    int64_t n_groups = 0;
    for (int64_t j = count; j > 0; j = cut[j]) {
        int64_t i = cut[j];
        groups[n_groups++] =
            (mr_rec_length_group){.first = i, .count = j - i, .length = lengths[order[j - 1]]};
    }
    for (int64_t g = 0; g < n_groups / 2; g++) {
        mr_rec_length_group swap = groups[g];
        groups[g] = groups[n_groups - 1 - g];
        groups[n_groups - 1 - g] = swap;
    }

    free(lengths);
    free(starts);
    free(cost);
    free(cut);
    return n_groups;
}

void mr_rec_gather_rows(const int32_t *seq, int max_len, const int32_t *candidates, int width,
                        const int64_t *order, int64_t count, int length, int32_t *out,
                        int32_t *candidates_out) {
    for (int64_t r = 0; r < count; r++) {
        memcpy(out + r * length, seq + order[r] * max_len + (max_len - length),
               (size_t)length * sizeof *out);
        if (candidates != NULL) {
            memcpy(candidates_out + r * width, candidates + order[r] * width,
                   (size_t)width * sizeof *candidates_out);
        }
    }
}

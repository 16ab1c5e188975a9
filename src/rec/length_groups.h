/*
 * Length-grouped micro-batches for backbones that accept truncated inputs.
 *
 * Inputs are left-padded to max_len, but most users have far fewer items.
 * A truncatable backbone (SASRec) gives the same user vector for an input
 * cut to its last Lb >= length positions, so a batch can run as a few
 * groups of similar length, each cut to its own longest input. An
 * all-padding input counts as max_len long, because SASRec's user vector
 * for it attends over every position. The groups depend only on the
 * inputs, so they are deterministic.
 */
#ifndef MR_REC_LENGTH_GROUPS_H
#define MR_REC_LENGTH_GROUPS_H

#include <stdint.h>

/* Rows order[first..first+count-1] of a batch, all cut to length. */
typedef struct mr_rec_length_group {
    int64_t first;
    int64_t count;
    int length; /* at least 1, at most max_len */
} mr_rec_length_group;

/*
 * Groups the rows of seq [count, max_len] (left-padded, 0 = padding) by
 * real length. order[count] receives the row indices by ascending length
 * (ties by index) and groups (room for count entries) the groups in that
 * order. Every group has at least min_rows rows unless count is smaller,
 * and the split minimises the padded positions computed plus a fixed cost
 * per group. Returns the number of groups, or -1 when out of memory.
 */
int64_t mr_rec_length_groups(const int32_t *seq, int64_t count, int max_len, int64_t min_rows,
                             int64_t *order, mr_rec_length_group *groups);

/*
 * Copies the last `length` columns of rows order[0..count-1] of seq
 * [*, max_len] into out [count, length], and when candidates is not NULL
 * the same rows of candidates [*, width] into candidates_out.
 */
void mr_rec_gather_rows(const int32_t *seq, int max_len, const int32_t *candidates, int width,
                        const int64_t *order, int64_t count, int length, int32_t *out,
                        int32_t *candidates_out);

#endif /* MR_REC_LENGTH_GROUPS_H */

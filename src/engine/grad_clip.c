/*
 * Clipping of gradients by their global L2 norm.
 *
 * The squares are summed in double over blocks of BLOCK_ELEMENTS elements
 * of each gradient. Blocks run in parallel, each into its own slot, and
 * the slots are then added in order, so the norm depends neither on the
 * thread count nor on the schedule.
 */
#include <math.h>
#include <stdlib.h>

#include "multiround/optim.h"

#define BLOCK_ELEMENTS 65536

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing. */
#define CLIP_EPSILON 1e-6

/* Sum of squares of block b of grad[0..count-1]. */
static double block_sum(const float *grad, int64_t count, int64_t b) {
    int64_t start = b * BLOCK_ELEMENTS;
    int64_t end = count - start < BLOCK_ELEMENTS ? count : start + BLOCK_ELEMENTS;
    double sum = 0.0;
    for (int64_t i = start; i < end; i++) {
        sum += (double)grad[i] * grad[i];
    }
    return sum;
}

/* Sum of squares of grad[0..count-1]: block sums added in block order. */
static double sum_of_squares(const float *grad, int64_t count) {
    int64_t blocks = (count + BLOCK_ELEMENTS - 1) / BLOCK_ELEMENTS;
    double *partial = blocks > 1 ? malloc((size_t)blocks * sizeof *partial) : NULL;
    double total = 0.0;

    /* One block, or no memory for the slots: the same sums, serially. */
    if (partial == NULL) {
        for (int64_t b = 0; b < blocks; b++) {
            total += block_sum(grad, count, b);
        }
        return total;
    }

#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        partial[b] = block_sum(grad, count, b);
    }
    for (int64_t b = 0; b < blocks; b++) {
        total += partial[b];
    }
    free(partial);
    return total;
}

float mr_grad_clip_norm(mr_tensor **params, int n, float max_norm) {
    double squares = 0.0;
    for (int i = 0; i < n; i++) {
        if (params == NULL || params[i] == NULL || params[i]->grad == NULL) {
            continue;
        }
        squares += sum_of_squares(params[i]->grad, mr_tensor_numel(params[i]));
    }
    double norm = sqrt(squares);
    float result = (float)norm;

    /* A NaN or infinite norm (also one past the float range) is only
     * reported: scaling by it would turn every gradient into NaN or zero
     * and hide which step went wrong. */
    if (!isfinite(result) || !(max_norm > 0.0f) || norm <= (double)max_norm) {
        return result;
    }

    float scale = (float)((double)max_norm / (norm + CLIP_EPSILON));
    for (int i = 0; i < n; i++) {
        if (params[i] == NULL || params[i]->grad == NULL) {
            continue;
        }
        float *grad = params[i]->grad;
        int64_t count = mr_tensor_numel(params[i]);
#pragma omp parallel for schedule(static) if (count >= BLOCK_ELEMENTS)
        for (int64_t j = 0; j < count; j++) {
            grad[j] *= scale;
        }
    }
    return result;
}

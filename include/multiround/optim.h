/*
 * multiround optimizers: SGD (with momentum and Nesterov), Adam and AdamW
 * over groups of parameters, gradient-norm clipping, learning-rate
 * schedules, and export and import of the optimizer state for
 * checkpoints.
 *
 * The update rules follow torch.optim in PyTorch 1.13 (SGD without
 * dampening, Adam and AdamW without amsgrad). Parameters are tensors
 * marked with mr_tensor_set_param(); the optimizer reads their ->grad and
 * writes their ->data in place.
 *
 *     mr_optim_config config = mr_optim_config_default(MR_OPTIM_ADAMW);
 *     mr_optim *opt = mr_optim_create(&config, &err);
 *     mr_optim_add_group(opt, weights, n_weights, 0.1f, 1.0f, &err);
 *     mr_optim_add_group(opt, norms_and_biases, n_other, 0.0f, 1.0f, &err);
 *     for (int64_t step = 0; step < total; step++) {
 *         ... forward and mr_tensor_backward() ...
 *         float norm = mr_optim_clip_grad_norm(opt, 1.0f);
 *         mr_optim_step(opt, mr_lr_at(&schedule, step), &err);
 *         mr_optim_zero_grad(opt);
 *     }
 *     mr_optim_free(opt);
 */
#ifndef MULTIROUND_OPTIM_H
#define MULTIROUND_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Optimizers
 * ------------------------------------------------------------------------ */

typedef enum mr_optim_type {
    MR_OPTIM_SGD = 0,  /* p -= lr * g, with optional momentum and Nesterov */
    MR_OPTIM_ADAM = 1, /* Adam; weight decay adds decay * p to the gradient */
    MR_OPTIM_ADAMW = 2 /* Adam with decoupled decay: p *= 1 - lr * decay */
} mr_optim_type;

typedef struct mr_optim_config {
    mr_optim_type type;
    float momentum;     /* SGD only; 0 disables the momentum buffer */
    bool nesterov;      /* SGD only; requires momentum > 0 */
    /* Adam/AdamW decay rates of the first and second moments, in [0, 1).
     * Doubles, because 1 - beta and the bias correction 1 - beta^t are
     * computed from them in double as PyTorch does from Python floats;
     * 1 - 0.999f differs from 1 - 0.999 by 1.3e-5 relative. */
    double beta1;
    double beta2;
    float eps;          /* Adam/AdamW term added to the denominator, >= 0 */
    float weight_decay; /* decay of groups added with MR_OPTIM_DEFAULT_DECAY */
} mr_optim_config;

/* Passed as weight_decay to mr_optim_add_group() to use the config's. */
#define MR_OPTIM_DEFAULT_DECAY (-1.0f)

typedef struct mr_optim mr_optim;

/*
 * Returns PyTorch's defaults for type: momentum 0, no Nesterov, betas 0.9
 * and 0.999, eps 1e-8, and weight decay 0 (SGD, Adam) or 0.01 (AdamW).
 */
mr_optim_config mr_optim_config_default(mr_optim_type type);

/*
 * Creates an optimizer with no parameters. Returns NULL and fills err when
 * a config value is out of range or memory is exhausted.
 */
mr_optim *mr_optim_create(const mr_optim_config *config, mr_error *err);

/* Frees the optimizer and its state; the parameters stay. opt may be NULL. */
void mr_optim_free(mr_optim *opt);

/*
 * Adds a group of n parameters that share a weight decay (>= 0, or
 * MR_OPTIM_DEFAULT_DECAY) and an lr_scale (>= 0) that multiplies the
 * learning rate given to mr_optim_step(). Every tensor must be a parameter
 * (mr_tensor_set_param) that is in no group yet. The state buffers of the
 * new parameters start at zero. Groups can only be added before the first
 * step, because the bias correction of Adam counts steps for the whole
 * optimizer. Group numbers count from 0 in the order of the calls.
 */
mr_status mr_optim_add_group(mr_optim *opt, mr_tensor **params, int n,
                             float weight_decay, float lr_scale,
                             mr_error *err);

/*
 * Updates every parameter from its ->grad with learning rate lr times the
 * group's lr_scale, then increments the step count. lr must be finite and
 * >= 0. Gradients are left as they are; clear them with
 * mr_optim_zero_grad(). Element-wise and parallel, so results do not
 * depend on the thread count.
 */
mr_status mr_optim_step(mr_optim *opt, float lr, mr_error *err);

/* Sets the gradient of every parameter to zero. */
void mr_optim_zero_grad(mr_optim *opt);

/* Number of completed steps (the t of Adam's bias correction). */
int64_t mr_optim_step_count(const mr_optim *opt);

int mr_optim_group_count(const mr_optim *opt);
int mr_optim_param_count(const mr_optim *opt);

/* ------------------------------------------------------------------------
 * Gradient clipping
 * ------------------------------------------------------------------------ */

/*
 * Computes the L2 norm of the gradients of n tensors together and, when
 * it exceeds max_norm, multiplies every gradient by
 * max_norm / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_ does.
 * Returns the norm before clipping. Tensors that are NULL or have no grad
 * are skipped; the others must be contiguous. max_norm <= 0 measures
 * without clipping. A NaN or infinite norm is returned with the gradients
 * left unscaled, so the caller can report it and skip the step.
 *
 * Squares are summed in double over fixed blocks of elements, and the
 * block sums are added in order, so the norm does not depend on the
 * thread count.
 */
float mr_grad_clip_norm(mr_tensor **params, int n, float max_norm);

/* mr_grad_clip_norm() over every parameter of the optimizer. */
float mr_optim_clip_grad_norm(mr_optim *opt, float max_norm);

/* ------------------------------------------------------------------------
 * State export and import for checkpoints
 *
 * The state is a list of named float arrays, one per parameter and
 * buffer: "optim.momentum.<group>.<index>" for SGD with momentum (none
 * without), and "optim.m.<group>.<index>" and "optim.v.<group>.<index>"
 * for Adam and AdamW, where <index> counts within the group. The step
 * count is an integer kept apart from the arrays; save it alongside them.
 * ------------------------------------------------------------------------ */

/* Number of named state arrays; fixed once all groups are added. */
int mr_optim_state_count(const mr_optim *opt);

/*
 * Sets *name, *data and *count to state array i (0 <= i < count). The
 * pointers stay valid until the next mr_optim_add_group() or
 * mr_optim_free(). Any output pointer may be NULL.
 */
mr_status mr_optim_state_get(const mr_optim *opt, int i, const char **name,
                             const float **data, int64_t *count,
                             mr_error *err);

/*
 * Copies count floats into the state array called name. Fails with
 * MR_ERR_NOT_FOUND for an unknown name and MR_ERR_SHAPE when count differs
 * from the array's size; the state is unchanged on failure.
 */
mr_status mr_optim_state_set(mr_optim *opt, const char *name,
                             const float *data, int64_t count, mr_error *err);

/* Restores the step count (>= 0) saved with the state arrays. */
mr_status mr_optim_set_step_count(mr_optim *opt, int64_t step_count,
                                  mr_error *err);

/* ------------------------------------------------------------------------
 * Learning-rate schedules
 * ------------------------------------------------------------------------ */

typedef enum mr_lr_decay {
    MR_LR_CONSTANT = 0, /* base_lr after warm-up, forever */
    MR_LR_COSINE = 1,   /* half a cosine from base_lr down to min_lr */
    MR_LR_LINEAR = 2    /* a straight line from base_lr down to min_lr */
} mr_lr_decay;

typedef struct mr_lr_schedule {
    float base_lr;
    float min_lr;          /* reached at total_steps; ignored by CONSTANT */
    int64_t warmup_steps;  /* 0 for none */
    int64_t total_steps;   /* ignored by CONSTANT */
    mr_lr_decay decay;
} mr_lr_schedule;

/*
 * Checks a schedule: finite base_lr >= 0, warmup_steps >= 0 and, for
 * COSINE and LINEAR, 0 <= min_lr <= base_lr and total_steps >=
 * warmup_steps. mr_lr_at() does not check, so call this once first.
 */
mr_status mr_lr_schedule_check(const mr_lr_schedule *s, mr_error *err);

/*
 * Returns the learning rate for step (the step count before the update,
 * so the first update uses step 0; negative steps count as 0). With
 * W = warmup_steps and N = total_steps:
 *   step < W:       base_lr * (step + 1) / W, so step 0 already moves and
 *                   step W - 1 reaches base_lr;
 *   W <= step < N:  with progress p = (step - W) / (N - W) in [0, 1),
 *                   COSINE gives min + (base - min) * (1 + cos(pi p)) / 2
 *                   and LINEAR gives base - (base - min) * p;
 *   step >= N:      min_lr.
 * CONSTANT gives base_lr for every step >= W. Computed in double, so the
 * value depends only on the schedule and the step.
 */
float mr_lr_at(const mr_lr_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_OPTIM_H */

/*
 * Learning-rate schedules: linear warm-up, then constant, cosine or linear
 * decay to a floor. The formulas are stated in multiround/optim.h.
 */
#include <math.h>

#include "multiround/optim.h"

mr_status mr_lr_schedule_check(const mr_lr_schedule *s, mr_error *err) {
    if (s == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "optim: schedule is NULL");
    }
    if (s->decay != MR_LR_CONSTANT && s->decay != MR_LR_COSINE && s->decay != MR_LR_LINEAR) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: unknown learning-rate decay %d; use MR_LR_CONSTANT, "
                            "MR_LR_COSINE or MR_LR_LINEAR",
                            (int)s->decay);
    }
    if (!(s->base_lr >= 0.0f) || isinf(s->base_lr)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: base_lr is %g; it must be finite and >= 0",
                            (double)s->base_lr);
    }
    if (s->warmup_steps < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: warmup_steps is %lld; it must be >= 0",
                            (long long)s->warmup_steps);
    }
    if (s->decay == MR_LR_CONSTANT) {
        return MR_OK;
    }

    if (!(s->min_lr >= 0.0f && s->min_lr <= s->base_lr)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: min_lr is %g; it must be in [0, base_lr = %g]",
                            (double)s->min_lr, (double)s->base_lr);
    }
    if (s->total_steps < s->warmup_steps) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: total_steps (%lld) is less than warmup_steps (%lld)",
                            (long long)s->total_steps, (long long)s->warmup_steps);
    }
    return MR_OK;
}

float mr_lr_at(const mr_lr_schedule *s, int64_t step) {
    double base = s->base_lr, floor_lr = s->min_lr;
    if (step < 0) {
        step = 0;
    }

    if (step < s->warmup_steps) {
        return (float)(base * (double)(step + 1) / (double)s->warmup_steps);
    }
    if (s->decay == MR_LR_CONSTANT) {
        return s->base_lr;
    }
    if (step >= s->total_steps) {
        return s->min_lr;
    }

    double progress = (double)(step - s->warmup_steps) /
                      (double)(s->total_steps - s->warmup_steps);
    if (s->decay == MR_LR_COSINE) {
        return (float)(floor_lr + (base - floor_lr) * 0.5 * (1.0 + cos(M_PI * progress)));
    }
    return (float)(base - (base - floor_lr) * progress);
}

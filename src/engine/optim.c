/*
 * SGD, Adam and AdamW over parameter groups, and export and import of
 * their state.
 *
 * All state buffers (SGD momentum, or Adam's first moment m and second
 * moment v) live in one 64-byte aligned allocation. Parameter p owns
 * buffers_per_param consecutive blocks of p.count floats starting at
 * p.state_offset. The update of each element reads and writes only that
 * element, so the parallel loops give the same bits on any thread count.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/optim.h"

/* Maximum state name length: "optim.momentum." plus two 10-digit ints,
 * a dot and NUL. */
#define STATE_NAME_MAX 48

/* Parameters with fewer elements are updated by one thread, because
 * starting a parallel region costs more than the update itself. */
#define PARALLEL_MIN_ELEMENTS 8192

typedef struct optim_param {
    mr_tensor *tensor;
    int64_t count;        /* elements */
    int64_t state_offset; /* first float of this parameter's buffers */
    int group;
    int index;            /* position within the group */
} optim_param;

typedef struct optim_group {
    float weight_decay;
    float lr_scale;
} optim_group;

struct mr_optim {
    mr_optim_config config;
    int64_t step_count;
    int buffers_per_param; /* 0 (plain SGD), 1 (momentum) or 2 (m and v) */

    optim_group *groups;
    int group_count;
    optim_param *params;
    mr_tensor **tensors; /* params[i].tensor, for gradient clipping */
    int param_count;

    float *state;        /* buffers_per_param * (sum of counts) floats */
    int64_t state_floats;
    char (*state_names)[STATE_NAME_MAX]; /* one per parameter and buffer */
};

mr_optim_config mr_optim_config_default(mr_optim_type type) {
    mr_optim_config config;
    memset(&config, 0, sizeof config);
    config.type = type;
    config.momentum = 0.0f;
    config.nesterov = false;
    config.beta1 = 0.9;
    config.beta2 = 0.999;
    config.eps = 1e-8f;
    config.weight_decay = type == MR_OPTIM_ADAMW ? 0.01f : 0.0f;
    return config;
}

/* Checks every field that the type uses; fills err on the first bad one. */
static mr_status config_check(const mr_optim_config *config, mr_error *err) {
    if (config->type != MR_OPTIM_SGD && config->type != MR_OPTIM_ADAM &&
        config->type != MR_OPTIM_ADAMW) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: unknown optimizer type %d; use MR_OPTIM_SGD, "
                            "MR_OPTIM_ADAM or MR_OPTIM_ADAMW",
                            (int)config->type);
    }
    if (!(config->weight_decay >= 0.0f) || isinf(config->weight_decay)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: weight_decay is %g; it must be finite and >= 0",
                            (double)config->weight_decay);
    }

    if (config->type == MR_OPTIM_SGD) {
        if (!(config->momentum >= 0.0f) || isinf(config->momentum)) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "optim: momentum is %g; it must be finite and >= 0",
                                (double)config->momentum);
        }
        if (config->nesterov && config->momentum == 0.0f) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "optim: Nesterov momentum requires momentum > 0");
        }
        return MR_OK;
    }

    if (!(config->beta1 >= 0.0 && config->beta1 < 1.0)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: beta1 is %g; it must be in [0, 1)", config->beta1);
    }
    if (!(config->beta2 >= 0.0 && config->beta2 < 1.0)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: beta2 is %g; it must be in [0, 1)", config->beta2);
    }
    if (!(config->eps >= 0.0f) || isinf(config->eps)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: eps is %g; it must be finite and >= 0",
                            (double)config->eps);
    }
    return MR_OK;
}

mr_optim *mr_optim_create(const mr_optim_config *config, mr_error *err) {
    if (config == NULL) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "optim: config is NULL");
        return NULL;
    }
    if (config_check(config, err) != MR_OK) {
        return NULL;
    }

    mr_optim *opt = calloc(1, sizeof *opt);
    if (opt == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "optim: out of memory creating an optimizer");
        return NULL;
    }
    opt->config = *config;
    if (config->type == MR_OPTIM_SGD) {
        opt->buffers_per_param = config->momentum != 0.0f ? 1 : 0;
    } else {
        opt->buffers_per_param = 2;
    }
    return opt;
}

void mr_optim_free(mr_optim *opt) {
    if (opt == NULL) {
        return;
    }
    free(opt->groups);
    free(opt->params);
    free(opt->tensors);
    free(opt->state);
    free(opt->state_names);
    free(opt);
}

/* Checks that params[i] can join the optimizer; fills err if not. */
static mr_status param_check(const mr_optim *opt, mr_tensor **params, int i,
                             mr_error *err) {
    const mr_tensor *t = params[i];
    if (t == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: parameter %d of the new group is NULL", i);
    }
    if ((t->flags & MR_FLAG_PARAM) == 0 || t->grad == NULL || t->dtype != MR_F32 ||
        !mr_tensor_is_contiguous(t)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: tensor %d ('%s') of the new group is not a parameter; "
                            "mark it with mr_tensor_set_param() first",
                            i, t->name);
    }

    /* A tensor listed twice would be updated twice per step. */
    for (int j = 0; j < i; j++) {
        if (params[j] == t) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "optim: tensor '%s' appears twice in the new group "
                                "(positions %d and %d)",
                                t->name, j, i);
        }
    }
    for (int j = 0; j < opt->param_count; j++) {
        if (opt->params[j].tensor == t) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "optim: tensor '%s' is already in group %d", t->name,
                                opt->params[j].group);
        }
    }
    return MR_OK;
}

/* Grows *array to hold count items of item_size bytes; false on failure. */
static bool grow_array(void **array, int count, size_t item_size) {
    void *grown = realloc(*array, (size_t)count * item_size);
    if (grown == NULL) {
        return false;
    }
    *array = grown;
    return true;
}

/*
 * Moves the state into a new aligned allocation of new_floats floats,
 * keeping the old values and zeroing the rest. False on failure, with the
 * old state untouched.
 */
static bool grow_state(mr_optim *opt, int64_t new_floats) {
    size_t bytes = (size_t)new_floats * sizeof(float);
    size_t rounded = (bytes + 63) / 64 * 64;
    float *state = aligned_alloc(64, rounded > 0 ? rounded : 64);
    if (state == NULL) {
        return false;
    }
    size_t old_bytes = (size_t)opt->state_floats * sizeof(float);
    if (old_bytes > 0) {
        memcpy(state, opt->state, old_bytes);
    }
    memset((char *)state + old_bytes, 0, bytes - old_bytes);
    free(opt->state);
    opt->state = state;
    opt->state_floats = new_floats;
    return true;
}

/* Writes the name of buffer `buffer` of parameter p into out. */
static void state_name(const mr_optim *opt, const optim_param *p, int buffer,
                       char out[STATE_NAME_MAX]) {
    const char *kind = "momentum";
    if (opt->buffers_per_param == 2) {
        kind = buffer == 0 ? "m" : "v";
    }
    snprintf(out, STATE_NAME_MAX, "optim.%s.%d.%d", kind, p->group, p->index);
}

mr_status mr_optim_add_group(mr_optim *opt, mr_tensor **params, int n,
                             float weight_decay, float lr_scale,
                             mr_error *err) {
    if (opt == NULL || params == NULL || n <= 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: add_group needs an optimizer and n > 0 parameters "
                            "(got n = %d)",
                            n);
    }
    if (opt->step_count > 0) {
        return mr_error_set(err, MR_ERR_STATE,
                            "optim: cannot add a group after %lld steps; add every group "
                            "before the first step",
                            (long long)opt->step_count);
    }
    if (weight_decay == MR_OPTIM_DEFAULT_DECAY) {
        weight_decay = opt->config.weight_decay;
    }
    if (!(weight_decay >= 0.0f) || isinf(weight_decay)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: group weight_decay is %g; it must be finite and >= 0 "
                            "(or MR_OPTIM_DEFAULT_DECAY)",
                            (double)weight_decay);
    }
    if (!(lr_scale >= 0.0f) || isinf(lr_scale)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: group lr_scale is %g; it must be finite and >= 0",
                            (double)lr_scale);
    }
    int64_t added_floats = 0;
    for (int i = 0; i < n; i++) {
        mr_status status = param_check(opt, params, i, err);
        if (status != MR_OK) {
            return status;
        }
        added_floats += mr_tensor_numel(params[i]) * opt->buffers_per_param;
    }

    /* Grow every array first, so that a failure leaves the optimizer as
     * it was (the arrays are only longer than needed). */
    int new_params = opt->param_count + n;
    int new_names = new_params * opt->buffers_per_param;
    bool grown = grow_array((void **)&opt->groups, opt->group_count + 1, sizeof *opt->groups) &&
                 grow_array((void **)&opt->params, new_params, sizeof *opt->params) &&
                 grow_array((void **)&opt->tensors, new_params, sizeof *opt->tensors) &&
                 (new_names == 0 ||
                  grow_array((void **)&opt->state_names, new_names, sizeof *opt->state_names)) &&
                 (added_floats == 0 || grow_state(opt, opt->state_floats + added_floats));
    if (!grown) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "optim: out of memory adding a group of %d parameters "
                            "(%lld state floats)",
                            n, (long long)added_floats);
    }

    int group = opt->group_count;
    opt->groups[group].weight_decay = weight_decay;
    opt->groups[group].lr_scale = lr_scale;
    opt->group_count++;

    int64_t offset = opt->state_floats - added_floats;
    for (int i = 0; i < n; i++) {
        optim_param *p = &opt->params[opt->param_count];
        p->tensor = params[i];
        p->count = mr_tensor_numel(params[i]);
        p->state_offset = offset;
        p->group = group;
        p->index = i;
        for (int b = 0; b < opt->buffers_per_param; b++) {
            state_name(opt, p, b, opt->state_names[opt->param_count * opt->buffers_per_param + b]);
        }
        opt->tensors[opt->param_count] = params[i];
        opt->param_count++;
        offset += p->count * opt->buffers_per_param;
    }
    return MR_OK;
}

/* One SGD update of parameter p; torch.optim.SGD with dampening 0. */
static void sgd_update(const mr_optim *opt, const optim_param *p, float lr,
                       float weight_decay) {
    float *w = p->tensor->data;
    const float *grad = p->tensor->grad;
    float *momentum_buffer = opt->state + p->state_offset;
    float momentum = opt->config.momentum;
    bool nesterov = opt->config.nesterov;
    int64_t count = p->count;

    /* A zeroed buffer makes the first step's buf = momentum * 0 + g equal
     * to g, as PyTorch's first step sets it. */
#pragma omp parallel for schedule(static) if (count >= PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < count; i++) {
        float g = grad[i];
        if (weight_decay != 0.0f) {
            g = g + weight_decay * w[i];
        }
        if (momentum != 0.0f) {
            float buf = momentum * momentum_buffer[i] + g;
            momentum_buffer[i] = buf;
            g = nesterov ? g + momentum * buf : buf;
        }
        w[i] = w[i] - lr * g;
    }
}

/*
 * One Adam or AdamW update of parameter p at step t (counting from 1):
 *   g = grad (+ decay * w for Adam);  w *= 1 - lr * decay for AdamW
 *   m = beta1 m + (1 - beta1) g;      v = beta2 v + (1 - beta2) g^2
 *   w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * The scalar factors are computed in double and rounded once to float.
 */
static void adam_update(const mr_optim *opt, const optim_param *p, float lr,
                        float weight_decay, int64_t t) {
    float *w = p->tensor->data;
    const float *grad = p->tensor->grad;
    float *m = opt->state + p->state_offset;
    float *v = m + p->count;
    int64_t count = p->count;

    double beta1 = opt->config.beta1, beta2 = opt->config.beta2;
    float b1 = (float)beta1, b2 = (float)beta2, eps = opt->config.eps;
    float one_minus_b1 = (float)(1.0 - beta1), one_minus_b2 = (float)(1.0 - beta2);
    float step_size = (float)((double)lr / (1.0 - pow(beta1, (double)t)));
    float correction2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
    bool adamw = opt->config.type == MR_OPTIM_ADAMW;
    float l2_decay = adamw ? 0.0f : weight_decay;
    float shrink = (float)(1.0 - (double)lr * weight_decay);

#pragma omp parallel for schedule(static) if (count >= PARALLEL_MIN_ELEMENTS)
    for (int64_t i = 0; i < count; i++) {
        float g = grad[i];
        float wi = w[i];
        if (l2_decay != 0.0f) {
            g = g + l2_decay * wi;
        }
        if (adamw && weight_decay != 0.0f) {
            wi = wi * shrink;
        }
        float mi = m[i] * b1 + one_minus_b1 * g;
        float vi = v[i] * b2 + one_minus_b2 * g * g;
        float denom = sqrtf(vi) / correction2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - step_size * (mi / denom);
    }
}

mr_status mr_optim_step(mr_optim *opt, float lr, mr_error *err) {
    if (opt == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "optim: step got a NULL optimizer");
    }
    if (!(lr >= 0.0f) || isinf(lr)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: learning rate is %g at step %lld; it must be finite "
                            "and >= 0",
                            (double)lr, (long long)opt->step_count);
    }

    int64_t t = opt->step_count + 1;
    for (int i = 0; i < opt->param_count; i++) {
        const optim_param *p = &opt->params[i];
        const optim_group *group = &opt->groups[p->group];
        float group_lr = lr * group->lr_scale;
        if (opt->config.type == MR_OPTIM_SGD) {
            sgd_update(opt, p, group_lr, group->weight_decay);
        } else {
            adam_update(opt, p, group_lr, group->weight_decay, t);
        }
    }
    opt->step_count = t;
    return MR_OK;
}

void mr_optim_zero_grad(mr_optim *opt) {
    if (opt == NULL) {
        return;
    }
    for (int i = 0; i < opt->param_count; i++) {
        mr_tensor_zero_grad(opt->params[i].tensor);
    }
}

int64_t mr_optim_step_count(const mr_optim *opt) {
    return opt == NULL ? 0 : opt->step_count;
}

int mr_optim_group_count(const mr_optim *opt) {
    return opt == NULL ? 0 : opt->group_count;
}

int mr_optim_param_count(const mr_optim *opt) {
    return opt == NULL ? 0 : opt->param_count;
}

float mr_optim_clip_grad_norm(mr_optim *opt, float max_norm) {
    if (opt == NULL) {
        return 0.0f;
    }
    return mr_grad_clip_norm(opt->tensors, opt->param_count, max_norm);
}

/* ------------------------------------------------------------------------
 * State export and import
 * ------------------------------------------------------------------------ */

int mr_optim_state_count(const mr_optim *opt) {
    return opt == NULL ? 0 : opt->param_count * opt->buffers_per_param;
}

mr_status mr_optim_state_get(const mr_optim *opt, int i, const char **name,
                             const float **data, int64_t *count,
                             mr_error *err) {
    int state_count = mr_optim_state_count(opt);
    if (i < 0 || i >= state_count) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: state index %d is out of range; the optimizer has %d "
                            "state arrays",
                            i, state_count);
    }

    const optim_param *p = &opt->params[i / opt->buffers_per_param];
    int buffer = i % opt->buffers_per_param;
    if (name != NULL) {
        *name = opt->state_names[i];
    }
    if (data != NULL) {
        *data = opt->state + p->state_offset + buffer * p->count;
    }
    if (count != NULL) {
        *count = p->count;
    }
    return MR_OK;
}

mr_status mr_optim_state_set(mr_optim *opt, const char *name,
                             const float *data, int64_t count, mr_error *err) {
    if (opt == NULL || name == NULL || (data == NULL && count > 0)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: state_set needs an optimizer, a name and data");
    }

    int state_count = mr_optim_state_count(opt);
    for (int i = 0; i < state_count; i++) {
        if (strcmp(opt->state_names[i], name) != 0) {
            continue;
        }
        const optim_param *p = &opt->params[i / opt->buffers_per_param];
        if (count != p->count) {
            return mr_error_set(err, MR_ERR_SHAPE,
                                "optim: state array '%s' has %lld floats but %lld were "
                                "given; the checkpoint does not match these parameters",
                                name, (long long)p->count, (long long)count);
        }
        float *target = opt->state + p->state_offset + (i % opt->buffers_per_param) * p->count;
        memcpy(target, data, (size_t)count * sizeof(float));
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_NOT_FOUND,
                        "optim: no state array is named '%s'; this optimizer has %d arrays "
                        "(type %d, %d groups)",
                        name, state_count, (int)opt->config.type, opt->group_count);
}

mr_status mr_optim_set_step_count(mr_optim *opt, int64_t step_count,
                                  mr_error *err) {
    if (opt == NULL || step_count < 0) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "optim: step count %lld is invalid; it must be >= 0",
                            (long long)step_count);
    }
    opt->step_count = step_count;
    return MR_OK;
}

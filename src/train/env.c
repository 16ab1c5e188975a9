/*
 * The environment object of env.h: callbacks, stop strings and budgets
 * around an environment's own state.
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/env.h"

struct mr_env {
    mr_env_ops ops;
    void *state;
    char **stop;
    int n_stop;
    mr_env_limits limits;
};

void mr_env_reply_clear(mr_env_reply *reply) {
    if (reply == NULL) {
        return;
    }
    free(reply->text);
    memset(reply, 0, sizeof *reply);
}

/* Checks the callbacks, stop strings and limits of mr_env_create. */
static mr_status check_env_args(const mr_env_ops *ops, const char *const *stop, int n_stop,
                                const mr_env_limits *limits, mr_error *err) {
    if (ops == NULL || ops->reset == NULL || ops->step == NULL ||
        ops->truncated_reward == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "env: ops must have reset, step and truncated_reward callbacks");
    }
    if (n_stop < 0 || (n_stop > 0 && stop == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "env: %d stop strings given with stop = %p", n_stop,
                            (const void *)stop);
    }
    for (int i = 0; i < n_stop; i++) {
        if (stop[i] == NULL || stop[i][0] == '\0') {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "env: stop string %d is empty; stop strings must be non-empty", i);
        }
    }
    if (limits == NULL || limits->max_turns < 1 || limits->max_turn_tokens < 1 ||
        limits->max_tokens < 2) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "env: limits need max_turns >= 1, max_turn_tokens >= 1 and "
                            "max_tokens >= 2, got %d, %d and %d",
                            limits ? limits->max_turns : 0, limits ? limits->max_turn_tokens : 0,
                            limits ? limits->max_tokens : 0);
    }
    return MR_OK;
}

mr_env *mr_env_create(const mr_env_ops *ops, void *state, const char *const *stop, int n_stop,
                      const mr_env_limits *limits, mr_error *err) {
    if (check_env_args(ops, stop, n_stop, limits, err) != MR_OK) {
        if (ops != NULL && ops->free_state != NULL) {
            ops->free_state(state);
        }
        return NULL;
    }

    mr_env *env = calloc(1, sizeof *env);
    char **copies = n_stop > 0 ? calloc((size_t)n_stop, sizeof *copies) : NULL;
    bool ok = env != NULL && (n_stop == 0 || copies != NULL);
    for (int i = 0; ok && i < n_stop; i++) {
        copies[i] = strdup(stop[i]);
        ok = copies[i] != NULL;
    }
    if (!ok) {
        for (int i = 0; copies != NULL && i < n_stop; i++) {
            free(copies[i]);
        }
        free(copies);
        free(env);
        if (ops->free_state != NULL) {
            ops->free_state(state);
        }
        mr_error_set(err, MR_ERR_NO_MEMORY, "env: out of memory creating environment '%s'",
                     ops->name ? ops->name : "");
        return NULL;
    }

    env->ops = *ops;
    env->state = state;
    env->stop = copies;
    env->n_stop = n_stop;
    env->limits = *limits;
    return env;
}

void mr_env_free(mr_env *env) {
    if (env == NULL) {
        return;
    }
    if (env->ops.free_state != NULL) {
        env->ops.free_state(env->state);
    }
    for (int i = 0; i < env->n_stop; i++) {
        free(env->stop[i]);
    }
    free(env->stop);
    free(env);
}

mr_status mr_env_reset(mr_env *env, uint64_t episode, char **prompt, mr_error *err) {
    *prompt = NULL;
    mr_status status = env->ops.reset(env->state, episode, prompt, err);
    if (status != MR_OK) {
        free(*prompt);
        *prompt = NULL;
    }
    return status;
}

mr_status mr_env_step(mr_env *env, const char *turn, size_t len, mr_env_reply *reply,
                      mr_error *err) {
    memset(reply, 0, sizeof *reply);
    mr_status status = env->ops.step(env->state, turn, len, reply, err);
    if (status != MR_OK) {
        mr_env_reply_clear(reply);
        return status;
    }
    if (!reply->done && reply->text == NULL) {
        return mr_error_set(err, MR_ERR_STATE,
                            "env: environment '%s' neither ended the episode nor returned text",
                            env->ops.name ? env->ops.name : "");
    }
    return MR_OK;
}

float mr_env_truncated_reward(mr_env *env) {
    return env->ops.truncated_reward(env->state);
}

const char *const *mr_env_stop_strings(const mr_env *env, int *n) {
    *n = env->n_stop;
    return (const char *const *)env->stop;
}

const mr_env_limits *mr_env_get_limits(const mr_env *env) {
    return &env->limits;
}

const char *mr_env_name(const mr_env *env) {
    return env->ops.name ? env->ops.name : "";
}

/*
 * GRPO and PPO runs in a run folder (mr_rl_run in rl.h): loading the
 * model and the calculator problems, config.json, checkpoints, resume
 * and the final outputs. The run folder rules and the checkpoint files
 * are those of the other trainers (run_dir.h).
 *
 * A step's rollouts are sampled from seeds mixed from the config's seed
 * and the step number, and its prompts and minibatch order come from the
 * trainer's generator. So the weights, the AdamW state, the generator
 * and the update count are all a checkpoint needs to continue the same
 * run bit for bit.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/fileio.h"
#include "multiround/gguf.h"
#include "multiround/rl.h"

#include "train/rl_internal.h"
#include "train/run_dir.h"

/* The config.json key that a resumed run may raise. */
#define RL_STEPS_KEY "steps"

void mr_rl_run_options_default(mr_rl_run_options *o, mr_rl_algorithm algorithm) {
    memset(o, 0, sizeof *o);
    o->task = "calc";
    o->rl = mr_rl_config_default(algorithm);
    o->calc = mr_calc_config_default();
    o->checkpoint_every = 10;
}

/* Fails with a message that names the config key and its valid range. */
#define REQUIRE(condition, ...)                                                \
    do {                                                                       \
        if (!(condition)) {                                                    \
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, __VA_ARGS__);    \
        }                                                                      \
    } while (0)

/* Checks every option before any file is read. */
static mr_status validate_options(const mr_rl_run_options *o, mr_error *err) {
    REQUIRE(o->model_path != NULL && o->model_path[0] != '\0',
            "rl: model (the starting GGUF file) is required");
    REQUIRE(o->train_path != NULL && o->train_path[0] != '\0',
            "rl: train (the problems to train on, JSON Lines) is required");
    REQUIRE(o->out_dir != NULL && o->out_dir[0] != '\0', "rl: out (the run folder) is required");
    REQUIRE(strcmp(o->task, "calc") == 0, "rl: task is \"%s\"; this build has only \"calc\"",
            o->task);
    REQUIRE(o->rl.steps >= 1, "rl: steps is %d; it must be >= 1", o->rl.steps);
    REQUIRE(o->checkpoint_every >= 0,
            "rl: checkpoint_every is %d; it must be >= 0 (0: only after the last step)",
            o->checkpoint_every);
    REQUIRE(o->stop_after >= 0, "rl: stop_after is %d; it must be >= 0 (0: never)",
            o->stop_after);
    REQUIRE(o->calc.format_penalty >= 0.0f && isfinite(o->calc.format_penalty),
            "rl: format_penalty is %g; it must be finite and >= 0",
            (double)o->calc.format_penalty);
    const mr_env_limits *l = &o->calc.limits;
    REQUIRE(l->max_turns >= 1, "rl: max_turns is %d; it must be >= 1", l->max_turns);
    REQUIRE(l->max_turn_tokens >= 1, "rl: turn_tokens is %d; it must be >= 1",
            l->max_turn_tokens);
    REQUIRE(l->max_tokens >= 2, "rl: max_tokens is %d; it must be >= 2", l->max_tokens);
    return mr_rl_config_check(&o->rl, err);
}

#undef REQUIRE

/* Returns every setting of o as the JSON text of OUT/config.json (free
 * it), or NULL when out of memory. The keys are those of the config file
 * of `multiround train grpo|ppo`, without out, resume and stop_after. */
static char *format_config(const mr_rl_run_options *o) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL) {
        return NULL;
    }
    const mr_rl_config *c = &o->rl;
    fprintf(f, "{\n  \"algorithm\": \"%s\",\n", c->algorithm == MR_RL_GRPO ? "grpo" : "ppo");
    train_print_string_member(f, "model", o->model_path);
    train_print_string_member(f, "train", o->train_path);
    train_print_string_member(f, "eval", o->eval_path);
    train_print_string_member(f, "task", o->task);

    fprintf(f, "  \"steps\": %d,\n  \"prompts\": %d,\n  \"group\": %d,\n", c->steps,
            c->prompts_per_step, c->group_size);
    fprintf(f, "  \"epochs\": %d,\n  \"minibatch\": %d,\n", c->epochs, c->minibatch);
    train_print_float_member(f, "lr", c->lr);
    fprintf(f, "  \"warmup\": %d,\n", c->warmup_steps);
    train_print_float_member(f, "weight_decay", c->weight_decay);
    train_print_float_member(f, "clip_norm", c->max_grad_norm);

    train_print_float_member(f, "clip", c->clip_eps);
    train_print_float_member(f, "kl", c->kl_coef);
    fprintf(f, "  \"kl_estimator\": \"%s\",\n", mr_kl_estimator_name(c->kl_estimator));
    fprintf(f, "  \"kl_in_reward\": %s,\n", c->kl_in_reward ? "true" : "false");
    fprintf(f, "  \"average\": \"%s\",\n",
            c->average == MR_RL_AVERAGE_TOKEN ? "token" : "sequence");
    fprintf(f, "  \"scale_rewards\": %s,\n", c->scale_rewards ? "true" : "false");
    train_print_float_member(f, "adv_eps", c->adv_eps);
    fprintf(f, "  \"filter_groups\": %s,\n", c->filter_groups ? "true" : "false");
    fprintf(f, "  \"max_prompt_draws\": %d,\n", c->max_prompt_draws);
    train_print_float_member(f, "gamma", c->gamma);
    train_print_float_member(f, "lambda", c->lambda);
    train_print_float_member(f, "vf_coef", c->vf_coef);
    train_print_float_member(f, "value_clip", c->value_clip);
    train_print_float_member(f, "value_lr", c->value_lr);
    fprintf(f, "  \"whiten\": %s,\n", c->whiten_advantages ? "true" : "false");

    train_print_float_member(f, "temperature", c->temperature);
    fprintf(f, "  \"seed\": %" PRIu64 ",\n", c->seed);
    fprintf(f, "  \"eval_every\": %d,\n  \"eval_episodes\": %d,\n", c->eval_every,
            c->eval_episodes);
    train_print_float_member(f, "success_reward", c->success_reward);

    train_print_float_member(f, "format_penalty", o->calc.format_penalty);
    fprintf(f, "  \"max_turns\": %d,\n  \"turn_tokens\": %d,\n  \"max_tokens\": %d,\n",
            o->calc.limits.max_turns, o->calc.limits.max_turn_tokens,
            o->calc.limits.max_tokens);
    fprintf(f, "  \"checkpoint_every\": %d\n}\n", o->checkpoint_every);

    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* Checks the options and the run folder as run_dir.h describes, then
 * creates the folder. */
static mr_status prepare_run_dir(const mr_rl_run_options *o, train_run_dir *dir,
                                 mr_error *err) {
    dir->created = NULL;
    dir->lock = NULL;
    cJSON *stored = NULL;
    mr_status status = run_dir_read_stored_config(o->out_dir, o->resume, &stored, err);
    if (status != MR_OK) {
        return status;
    }

    /* A resume that changes a setting is named as such before the option
     * checks, which the changed value may also fail. */
    if (stored != NULL) {
        char *text = format_config(o);
        status = run_dir_check_settings(o->out_dir, text, stored, RL_STEPS_KEY, err);
        free(text);
    }
    if (status == MR_OK) {
        status = validate_options(o, err);
    }
    if (status == MR_OK && !o->resume) {
        status = run_dir_check_new(o->out_dir, err);
    }
    if (status == MR_OK) {
        status = run_dir_create(o->out_dir, stored, RL_STEPS_KEY, o->rl.steps, dir, err);
    }
    cJSON_Delete(stored);
    return status;
}

/* What a run opens and frees. */
typedef struct rl_run {
    mr_rl_run_options o;
    mr_gguf *gguf;         /* the model file, for its tokenizer */
    mr_tokenizer *tok;
    mr_llama *policy;
    mr_llama *ref;         /* NULL when kl is 0 */
    mr_env *train_env, *eval_env;
    rl_trainer tr;
    mr_runlog *log;
} rl_run;

/* Loads a trainable copy of the model file. */
static mr_llama *load_trainable(const char *path, mr_error *err) {
    mr_llama *model = mr_llama_load_gguf(path, err);
    if (model != NULL && mr_llama_make_trainable(model, err) != MR_OK) {
        mr_llama_free(model);
        return NULL;
    }
    return model;
}

/* Creates a calculator environment over the problems of path. */
static mr_env *open_calc_env(const char *path, const mr_calc_config *config, mr_error *err) {
    mr_calc_problem *problems = NULL;
    int n = 0;
    if (mr_calc_problems_load(path, &problems, &n, err) != MR_OK) {
        return NULL;
    }
    mr_env *env = mr_env_calc_create(problems, n, config, err);
    free(problems);
    return env;
}

/* Opens the tokenizer, the policy, the reference, the environments and the
 * trainer. */
static mr_status open_run(rl_run *r, mr_error *err) {
    const mr_rl_run_options *o = &r->o;
    mr_status status = mr_gguf_open(o->model_path, &r->gguf, err);
    if (status == MR_OK) {
        status = mr_tokenizer_from_gguf(r->gguf, &r->tok, err);
    }
    if (status == MR_OK) {
        r->policy = load_trainable(o->model_path, err);
        status = r->policy != NULL ? MR_OK : (err != NULL ? err->status : MR_ERR_FORMAT);
    }
    if (status == MR_OK && o->rl.kl_coef != 0.0f) {
        r->ref = load_trainable(o->model_path, err);
        status = r->ref != NULL ? MR_OK : (err != NULL ? err->status : MR_ERR_FORMAT);
    }
    if (status == MR_OK) {
        r->train_env = open_calc_env(o->train_path, &o->calc, err);
        status = r->train_env != NULL ? MR_OK : (err != NULL ? err->status : MR_ERR_FORMAT);
    }
    if (status == MR_OK && o->eval_path != NULL) {
        r->eval_env = open_calc_env(o->eval_path, &o->calc, err);
        status = r->eval_env != NULL ? MR_OK : (err != NULL ? err->status : MR_ERR_FORMAT);
    }
    if (status == MR_OK) {
        r->tr = (rl_trainer){.c = &r->o.rl, .policy = r->policy, .ref = r->ref, .tok = r->tok,
                             .env = r->train_env};
        status = rl_trainer_init(&r->tr, err);
    }
    return status;
}

/* The parameter sets of a checkpoint: the policy, and PPO's value head. */
static int checkpoint_parts(rl_run *r, checkpoint_part *parts) {
    int n = 0;
    parts[n++] = (checkpoint_part){mr_llama_params(r->policy), "model.safetensors"};
    if (r->tr.head != NULL) {
        parts[n++] = (checkpoint_part){r->tr.head, "value_head.safetensors"};
    }
    return n;
}

/* Writes a checkpoint after every checkpoint_every steps, after the last,
 * and on a stop request, which then ends the run with MR_ERR_INTERRUPTED
 * (an rl_step_hook). */
static mr_status save_checkpoint(rl_trainer *tr, int step, const mr_rl_result *result,
                                 void *user_data, mr_error *err) {
    rl_run *r = user_data;
    bool due = r->o.checkpoint_every > 0 && step % r->o.checkpoint_every == 0;
    bool stop = step != r->o.rl.steps && r->o.stop != NULL && r->o.stop(r->o.stop_user_data);
    if (!due && !stop && step != r->o.rl.steps) {
        return MR_OK;
    }
    /* The generator's key and counter are 64-bit integers, which a JSON
     * number (a double) cannot represent exactly, so they are written as
     * hex strings. */
    char state[512];
    snprintf(state, sizeof state,
             "{\"step\": %d, \"updates\": %" PRId64 ", \"rng_key\": \"%016" PRIx64
             "\", \"rng_counter\": \"%016" PRIx64 "\", \"initial_success\": %.9g, "
             "\"best_success\": %.9g, \"final_success\": %.9g}\n",
             step, tr->updates, tr->rng.key, tr->rng.counter, (double)result->initial_success,
             (double)result->best_success, (double)result->final_success);
    checkpoint_part parts[2];
    int n_parts = checkpoint_parts(r, parts);
    mr_status status = checkpoint_write(r->o.out_dir, step, parts, n_parts, tr->opt, state, err);
    if (status == MR_OK && stop) {
        status = mr_error_set(err, MR_ERR_INTERRUPTED,
                              "rl: stopped on request after step %d of %d; the checkpoint in "
                              "%s contains it, so rerun with --resume (the resume "
                              "option) to continue",
                              step, r->o.rl.steps, r->o.out_dir);
    }
    return status;
}

/* Reads a hex string member of a state.json object. */
static bool state_hex(const cJSON *state, const char *key, uint64_t *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(state, key);
    if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
        return false;
    }
    char *end = NULL;
    *out = strtoull(item->valuestring, &end, 16);
    return *end == '\0';
}

/* Reads a number member of a state.json object as a float. */
static bool state_float(const cJSON *state, const char *key, float *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(state, key);
    if (!cJSON_IsNumber(item)) {
        return false;
    }
    *out = (float)item->valuedouble;
    return true;
}

/* Restores the checkpoint that OUT/checkpoint.json names into the trainer
 * and result, and its step into *step. *found is false, and nothing
 * changes, when there is none. */
static mr_status load_checkpoint(rl_run *r, int *step, mr_rl_result *result, bool *found,
                                 mr_error *err) {
    char dir[4096];
    cJSON *state = NULL;
    mr_status status = checkpoint_read_state(r->o.out_dir, dir, sizeof dir, &state, found, err);
    if (status != MR_OK || !*found) {
        return status;
    }
    int64_t saved_step = 0, updates = 0;
    mr_rng rng = {0, 0};
    mr_rl_result saved = {0};
    bool ok = checkpoint_state_int(state, "step", &saved_step) &&
              checkpoint_state_int(state, "updates", &updates) &&
              state_hex(state, "rng_key", &rng.key) &&
              state_hex(state, "rng_counter", &rng.counter) &&
              state_float(state, "initial_success", &saved.initial_success) &&
              state_float(state, "best_success", &saved.best_success) &&
              state_float(state, "final_success", &saved.final_success);
    cJSON_Delete(state);
    if (!ok) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s/state.json: needs integers \"step\" and \"updates\", hex strings "
                            "\"rng_key\" and \"rng_counter\", and numbers \"initial_success\", "
                            "\"best_success\" and \"final_success\"; it is not a GRPO or PPO "
                            "checkpoint, so start a new run in another out folder",
                            dir);
    }
    if (saved_step > r->o.rl.steps) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "%s: the checkpoint is at step %" PRId64 ", after the run's last step "
                            "(%d); set steps to at least %" PRId64,
                            dir, saved_step, r->o.rl.steps, saved_step);
    }

    checkpoint_part parts[2];
    int n_parts = checkpoint_parts(r, parts);
    status = checkpoint_load_parts(dir, parts, n_parts, r->tr.opt, err);
    if (status != MR_OK) {
        return status;
    }
    r->tr.rng = rng;
    r->tr.updates = updates;
    *step = (int)saved_step;
    *result = saved;
    result->steps_done = *step;
    mr_log(MR_LOG_INFO, "rl", "resuming from %s: step %d, %" PRId64 " updates", dir, *step,
           updates);
    return MR_OK;
}

/* Writes OUT/config.json. */
static mr_status write_config(const mr_rl_run_options *o, mr_error *err) {
    char *text = format_config(o);
    if (text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "rl: out of memory writing config.json");
    }
    mr_status status = run_dir_write_config(o->out_dir, text, err);
    free(text);
    return status;
}

/* Writes the outputs of a finished run: model.gguf, PPO's
 * value_head.safetensors, then done. */
static mr_status write_outputs(rl_run *r, mr_error *err) {
    char path[4096];
    mr_status status = mr_path_join(path, sizeof path, r->o.out_dir, "model.gguf", err);
    if (status == MR_OK) {
        status = mr_llama_save_gguf(r->policy, path, MR_QTYPE_F32, r->gguf, err);
    }
    if (status == MR_OK && r->tr.head != NULL) {
        status = mr_path_join(path, sizeof path, r->o.out_dir, "value_head.safetensors", err);
        if (status == MR_OK) {
            status = mr_paramset_save(r->tr.head, path, NULL, 0, err);
        }
    }
    if (status == MR_OK) {
        status = mr_path_join(path, sizeof path, r->o.out_dir, "done", err);
    }
    if (status == MR_OK) {
        status = mr_file_write_atomic(path, "", 0, err);
    }
    if (status == MR_OK) {
        mr_log(MR_LOG_INFO, "rl", "outputs written to %s", r->o.out_dir);
    }
    return status;
}

/* Frees everything r opened. */
static void run_free(rl_run *r) {
    mr_runlog_close(r->log, NULL);
    rl_trainer_free(&r->tr);
    mr_env_free(r->train_env);
    mr_env_free(r->eval_env);
    mr_llama_free(r->policy);
    mr_llama_free(r->ref);
    mr_tokenizer_free(r->tok);
    mr_gguf_close(r->gguf);
}

mr_status mr_rl_run(const mr_rl_run_options *options, mr_rl_result *result_out, mr_error *err) {
    mr_rl_result result;
    memset(&result, 0, sizeof result);
    if (result_out != NULL) {
        *result_out = result;
    }
    rl_run r;
    memset(&r, 0, sizeof r);
    r.o = *options;
    if (r.o.task == NULL) {
        r.o.task = "calc";
    }
    const mr_rl_run_options *o = &r.o;
    train_run_dir dir;
    mr_status status = prepare_run_dir(o, &dir, err);
    if (status != MR_OK) {
        return status;
    }

    status = open_run(&r, err);
    int first_step = 0;
    bool resumed = false;
    if (status == MR_OK && o->resume) {
        status = load_checkpoint(&r, &first_step, &result, &resumed, err);
    }

    /* A finished run resumed to the same steps keeps its outputs and log
     * as they are, and returns the figures of its last checkpoint. The
     * run folder removes done when steps grow. */
    bool finished = status == MR_OK && resumed && first_step == o->rl.steps &&
                    run_dir_has(o->out_dir, "done");
    if (finished) {
        mr_log(MR_LOG_INFO, "rl",
               "%s already contains a finished run of %d steps (done); nothing to do, so "
               "raise steps to continue it",
               o->out_dir, o->rl.steps);
    }
    if (status == MR_OK && !finished) {
        status = write_config(o, err);
    }
    if (status == MR_OK && !finished) {
        char path[4096];
        status = mr_path_join(path, sizeof path, o->out_dir, MR_RUNLOG_FILE, err);
        if (status == MR_OK) {
            status = mr_runlog_open(path, resumed ? first_step : -1, NULL, &r.log, err);
        }
    }
    if (status == MR_OK && !finished) {
        mr_log(MR_LOG_INFO, "rl", "%s: steps %d to %d, %d prompts x %d episodes per step",
               o->rl.algorithm == MR_RL_GRPO ? "grpo" : "ppo", first_step + 1, o->rl.steps,
               o->rl.prompts_per_step, o->rl.group_size);
        rl_loop loop = {.eval_env = r.eval_env,
                        .log = r.log,
                        .first_step = first_step,
                        .stop_after = o->stop_after,
                        .after_step = save_checkpoint,
                        .user_data = &r};
        status = rl_train_loop(&r.tr, &loop, &result, err);
    }
    if (status == MR_OK && !finished && result.steps_done == o->rl.steps) {
        status = write_outputs(&r, err);
    }
    if (status == MR_OK && r.log != NULL) {
        mr_runlog *log = r.log;
        r.log = NULL;
        status = mr_runlog_close(log, err);
    }
    run_free(&r);
    train_run_dir_finish(&dir, o->out_dir, status != MR_OK);
    if (result_out != NULL) {
        *result_out = result;
    }
    return status;
}

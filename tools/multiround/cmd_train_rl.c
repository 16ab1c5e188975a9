/*
 * `multiround train grpo` and `multiround train ppo`: reinforcement
 * learning of a GGUF model on the calculator task (env.h, rl.h).
 *
 * A run writes OUT/config.json (every setting), OUT/metrics.jsonl,
 * OUT/model.gguf (the trained policy with the starting file's tokenizer)
 * and OUT/done, and prints the evaluation success before and after.
 */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "multiround/env.h"
#include "multiround/fileio.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/rl.h"
#include "multiround/tokenizer.h"

typedef struct rl_options {
    const char *model_path;
    const char *train_path;
    const char *eval_path;
    const char *out_dir;
    const char *task;
    mr_rl_config rl;
    mr_calc_config calc;
} rl_options;

typedef enum option_kind { OPT_INT, OPT_FLOAT, OPT_BOOL, OPT_U64, OPT_STRING } option_kind;

/* One numeric or switch option: its name, kind, target and help line. */
typedef struct option_spec {
    const char *name;
    option_kind kind;
    size_t offset; /* into rl_options */
    double min, max;
    const char *help;
} option_spec;

#define OFF(field) offsetof(rl_options, field)

static const option_spec option_specs[] = {
    {"--model", OPT_STRING, OFF(model_path), 0, 0, "GGUF model to start from (required)"},
    {"--train", OPT_STRING, OFF(train_path), 0, 0, "problems to train on, JSON Lines (required)"},
    {"--eval", OPT_STRING, OFF(eval_path), 0, 0, "held-out problems for the success rate"},
    {"--out", OPT_STRING, OFF(out_dir), 0, 0, "run folder to write (required)"},
    {"--task", OPT_STRING, OFF(task), 0, 0, "environment: calc (default calc)"},
    {"--steps", OPT_INT, OFF(rl.steps), 0, 1e7, "training steps (default 100)"},
    {"--prompts", OPT_INT, OFF(rl.prompts_per_step), 1, 1e5, "prompts per step (default 8)"},
    {"--group", OPT_INT, OFF(rl.group_size), 1, 1e4,
     "episodes per prompt (default 8 for GRPO, 1 for PPO)"},
    {"--epochs", OPT_INT, OFF(rl.epochs), 1, 1e3, "passes over each step's episodes (default 1)"},
    {"--minibatch", OPT_INT, OFF(rl.minibatch), 1, 1e5,
     "episodes per optimizer update (default 16)"},
    {"--lr", OPT_FLOAT, OFF(rl.lr), 0, 1, "AdamW learning rate (default 1e-4)"},
    {"--warmup", OPT_INT, OFF(rl.warmup_steps), 0, 1e7,
     "linear warm-up, in optimizer updates (default 0)"},
    {"--weight-decay", OPT_FLOAT, OFF(rl.weight_decay), 0, 1, "AdamW weight decay (default 0)"},
    {"--clip-norm", OPT_FLOAT, OFF(rl.max_grad_norm), 0, 1e6,
     "maximum gradient norm, 0 for none (default 1)"},
    {"--clip", OPT_FLOAT, OFF(rl.clip_eps), 0, 0.99, "ratio clip epsilon (default 0.2)"},
    {"--kl", OPT_FLOAT, OFF(rl.kl_coef), 0, 100,
     "KL coefficient (default 0.04 for GRPO, 0.001 for PPO)"},
    {"--kl-in-reward", OPT_BOOL, OFF(rl.kl_in_reward), 0, 1,
     "on|off: PPO puts the KL into the per-token reward (default on)"},
    {"--scale-rewards", OPT_BOOL, OFF(rl.scale_rewards), 0, 1,
     "on|off: GRPO divides by the group's std (default on)"},
    {"--adv-eps", OPT_FLOAT, OFF(rl.adv_eps), 0, 1, "GRPO: added to the std (default 1e-4)"},
    {"--filter-groups", OPT_BOOL, OFF(rl.filter_groups), 0, 1,
     "on|off: GRPO redraws a prompt whose episodes all got the same reward (default off)"},
    {"--max-prompt-draws", OPT_INT, OFF(rl.max_prompt_draws), 0, 1e7,
     "GRPO with --filter-groups: prompts drawn per step at most, 0 for 8 x --prompts "
     "(default 0)"},
    {"--gamma", OPT_FLOAT, OFF(rl.gamma), 0, 1, "PPO: GAE discount (default 1)"},
    {"--lambda", OPT_FLOAT, OFF(rl.lambda), 0, 1, "PPO: GAE lambda (default 1)"},
    {"--vf-coef", OPT_FLOAT, OFF(rl.vf_coef), 0, 100, "PPO: value loss weight (default 0.5)"},
    {"--value-clip", OPT_FLOAT, OFF(rl.value_clip), 0, 1e6,
     "PPO: value change clip, 0 for none (default 0.2)"},
    {"--value-lr", OPT_FLOAT, OFF(rl.value_lr), 0, 1,
     "PPO: learning rate of the value head (default 1e-3)"},
    {"--whiten", OPT_BOOL, OFF(rl.whiten_advantages), 0, 1,
     "on|off: PPO whitens advantages over the step (default on)"},
    {"--temperature", OPT_FLOAT, OFF(rl.temperature), 1e-3, 100,
     "sampling temperature of training episodes (default 1)"},
    {"--seed", OPT_U64, OFF(rl.seed), 0, 0, "seed of prompts, sampling and shuffling (default 0)"},
    {"--eval-every", OPT_INT, OFF(rl.eval_every), 0, 1e7,
     "steps between evaluations, 0 for start and end only (default 10)"},
    {"--eval-episodes", OPT_INT, OFF(rl.eval_episodes), 1, 1e7,
     "greedy eval episodes, the first N problems (default 100)"},
    {"--format-penalty", OPT_FLOAT, OFF(calc.format_penalty), 0, 10,
     "reward subtracted per format error (default 0.1)"},
    {"--max-turns", OPT_INT, OFF(calc.limits.max_turns), 1, 1000,
     "policy turns per episode (default 4)"},
    {"--turn-tokens", OPT_INT, OFF(calc.limits.max_turn_tokens), 1, 1e6,
     "tokens per policy turn (default 32)"},
    {"--max-tokens", OPT_INT, OFF(calc.limits.max_tokens), 2, 1e6,
     "tokens per episode, all included (default 256)"},
};

#define N_OPTION_SPECS ((int)(sizeof option_specs / sizeof option_specs[0]))

static void print_help(const char *name) {
    printf("usage: multiround train %s --model MODEL.gguf --train FILE --out DIR [OPTIONS]\n\n"
           "Trains the model with %s on the calculator task: each problem of FILE\n"
           "(JSON Lines {\"question\": \"37*24+58\", \"answer\": 946}) is an episode in\n"
           "which the model may write <calc>EXPR</calc> and get <result>VALUE</result>\n"
           "back, and ends with <answer>N</answer> (reward 1 when right). Writes\n"
           "DIR/config.json, DIR/metrics.jsonl, DIR/model.gguf and DIR/done.\n\n"
           "options:\n",
           name, strcmp(name, "grpo") == 0 ? "GRPO" : "PPO");
    for (int i = 0; i < N_OPTION_SPECS; i++) {
        const option_spec *s = &option_specs[i];
        const char *value = s->kind == OPT_STRING ? " PATH"
                            : s->kind == OPT_BOOL ? " on|off"
                            : s->kind == OPT_FLOAT ? " X"
                                                   : " N";
        char left[40];
        snprintf(left, sizeof left, "%s%s", s->name, value);
        printf("  %-22s %s\n", left, s->help);
    }
    printf("  %-22s %s\n", "--kl-estimator NAME",
           "k3 or log_ratio (default k3 for GRPO, log_ratio for PPO)");
    printf("  %-22s %s\n", "--average NAME",
           "sequence (per episode, then over episodes) or token (default sequence)");
    cli_print_shared_options(stdout);
}

/* Stores the value of one spec'd option; returns false after an error. */
static bool set_option(rl_options *o, const option_spec *s, const char *text) {
    void *target = (char *)o + s->offset;
    double d = 0.0;
    int64_t i = 0;
    switch (s->kind) {
    case OPT_STRING:
        *(const char **)target = text;
        return true;
    case OPT_BOOL:
        if (strcmp(text, "on") != 0 && strcmp(text, "off") != 0) {
            cli_error("%s needs on or off, got '%s'", s->name, text);
            return false;
        }
        *(bool *)target = strcmp(text, "on") == 0;
        return true;
    case OPT_INT:
        if (!cli_parse_int64(s->name, text, (int64_t)s->min, (int64_t)s->max, &i)) {
            return false;
        }
        *(int *)target = (int)i;
        return true;
    case OPT_U64:
        if (!cli_parse_int64(s->name, text, 0, INT64_MAX, &i)) {
            return false;
        }
        *(uint64_t *)target = (uint64_t)i;
        return true;
    case OPT_FLOAT:
        if (!cli_parse_double(s->name, text, s->min, s->max, &d)) {
            return false;
        }
        *(float *)target = (float)d;
        return true;
    }
    return false;
}

/* Parses the options; returns -1 to continue, else the exit code. */
static int parse_options(int argc, char **argv, mr_rl_algorithm algorithm, rl_options *o) {
    memset(o, 0, sizeof *o);
    o->rl = mr_rl_config_default(algorithm);
    o->calc = mr_calc_config_default();
    o->task = "calc";
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_help(argv[0]);
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared != 0) {
            if (shared < 0) {
                return 2;
            }
            continue;
        }
        if (i + 1 >= argc) {
            cli_error("%s needs a value; run 'multiround train %s --help'", option, argv[0]);
            return 2;
        }
        const char *value = argv[++i];
        mr_error err;
        if (strcmp(option, "--kl-estimator") == 0) {
            if (mr_kl_estimator_parse(value, &o->rl.kl_estimator, &err) != MR_OK) {
                cli_error("%s", err.message);
                return 2;
            }
            continue;
        }
        if (strcmp(option, "--average") == 0) {
            if (strcmp(value, "sequence") != 0 && strcmp(value, "token") != 0) {
                cli_error("--average needs sequence or token, got '%s'", value);
                return 2;
            }
            o->rl.average = strcmp(value, "token") == 0 ? MR_RL_AVERAGE_TOKEN
                                                        : MR_RL_AVERAGE_SEQUENCE;
            continue;
        }
        const option_spec *spec = NULL;
        for (int k = 0; k < N_OPTION_SPECS && spec == NULL; k++) {
            if (strcmp(option_specs[k].name, option) == 0 ||
                (strcmp(option, "-m") == 0 && strcmp(option_specs[k].name, "--model") == 0) ||
                (strcmp(option, "-o") == 0 && strcmp(option_specs[k].name, "--out") == 0)) {
                spec = &option_specs[k];
            }
        }
        if (spec == NULL) {
            cli_error("unknown option '%s'; run 'multiround train %s --help'", option, argv[0]);
            return 2;
        }
        if (!set_option(o, spec, value)) {
            return 2;
        }
    }
    if (o->model_path == NULL || o->train_path == NULL || o->out_dir == NULL) {
        cli_error("--model, --train and --out are required; run 'multiround train %s --help'",
                  argv[0]);
        return 2;
    }
    if (strcmp(o->task, "calc") != 0) {
        cli_error("unknown --task '%s'; this build has calc", o->task);
        return 2;
    }
    return -1;
}

/* Writes every setting of the run to OUT/config.json. */
static mr_status write_config(const rl_options *o, const char *path, mr_error *err) {
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "algorithm", o->rl.algorithm == MR_RL_GRPO ? "grpo" : "ppo");
    cJSON_AddStringToObject(json, "model", o->model_path);
    cJSON_AddStringToObject(json, "train", o->train_path);
    cJSON_AddStringToObject(json, "eval", o->eval_path ? o->eval_path : "");
    cJSON_AddStringToObject(json, "task", o->task);

    cJSON_AddStringToObject(json, "kl_estimator", mr_kl_estimator_name(o->rl.kl_estimator));
    cJSON_AddStringToObject(json, "average",
                            o->rl.average == MR_RL_AVERAGE_TOKEN ? "token" : "sequence");
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->rl.seed);
    cJSON_AddStringToObject(json, "seed", seed);
    cJSON_AddNumberToObject(json, "threads", mr_threads_get());

    for (int i = 0; i < N_OPTION_SPECS; i++) {
        const option_spec *s = &option_specs[i];
        const void *target = (const char *)o + s->offset;
        const char *name = s->name + 2;
        if (s->kind == OPT_INT) {
            cJSON_AddNumberToObject(json, name, *(const int *)target);
        } else if (s->kind == OPT_FLOAT) {
            cJSON_AddNumberToObject(json, name, *(const float *)target);
        } else if (s->kind == OPT_BOOL) {
            cJSON_AddBoolToObject(json, name, *(const bool *)target);
        }
    }

    char *text = cJSON_Print(json);
    cJSON_Delete(json);
    if (text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "out of memory writing %s", path);
    }
    mr_status status = mr_file_write_atomic(path, text, strlen(text), err);
    free(text);
    return status;
}

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

/* Runs the training of o; returns the exit code. */
static int run(const rl_options *o) {
    mr_error err;
    mr_error_clear(&err);
    char path[4096];
    if (mkdir(o->out_dir, 0777) != 0 && errno != EEXIST) {
        cli_error("cannot create the run folder %s: %s", o->out_dir, strerror(errno));
        return 1;
    }

    mr_gguf *gguf = NULL;
    mr_tokenizer *tok = NULL;
    mr_llama *policy = NULL, *ref = NULL;
    mr_env *train_env = NULL, *eval_env = NULL;
    int code = 1;
    if (mr_gguf_open(o->model_path, &gguf, &err) != MR_OK ||
        mr_tokenizer_from_gguf(gguf, &tok, &err) != MR_OK) {
        cli_error("cannot read the tokenizer of %s: %s", o->model_path, err.message);
        goto done;
    }
    policy = load_trainable(o->model_path, &err);
    if (policy != NULL && o->rl.kl_coef != 0.0f) {
        ref = load_trainable(o->model_path, &err);
    }
    if (policy == NULL || (o->rl.kl_coef != 0.0f && ref == NULL)) {
        cli_error("cannot load the model %s: %s", o->model_path, err.message);
        goto done;
    }
    train_env = open_calc_env(o->train_path, &o->calc, &err);
    if (train_env != NULL && o->eval_path != NULL) {
        eval_env = open_calc_env(o->eval_path, &o->calc, &err);
    }
    if (train_env == NULL || (o->eval_path != NULL && eval_env == NULL)) {
        cli_error("%s", err.message);
        goto done;
    }

    snprintf(path, sizeof path, "%s/config.json", o->out_dir);
    if (write_config(o, path, &err) != MR_OK) {
        cli_error("%s", err.message);
        goto done;
    }
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out_dir);
    mr_rl_result result;
    double start = cli_seconds();
    if (mr_rl_train(policy, ref, tok, train_env, eval_env, &o->rl, path, &result, &err) !=
        MR_OK) {
        cli_error("training failed: %s", err.message);
        goto done;
    }
    double seconds = cli_seconds() - start;

    snprintf(path, sizeof path, "%s/model.gguf", o->out_dir);
    if (mr_llama_save_gguf(policy, path, MR_QTYPE_F32, gguf, &err) != MR_OK) {
        cli_error("%s", err.message);
        goto done;
    }
    snprintf(path, sizeof path, "%s/done", o->out_dir);
    if (mr_file_write_atomic(path, "", 0, &err) != MR_OK) {
        cli_error("%s", err.message);
        goto done;
    }
    printf("%s: %d steps in %.1f s; eval success %.3f before, %.3f after (best %.3f)\n",
           o->rl.algorithm == MR_RL_GRPO ? "grpo" : "ppo", result.steps_done, seconds,
           (double)result.initial_success, (double)result.final_success,
           (double)result.best_success);
    code = 0;

done:
    mr_env_free(train_env);
    mr_env_free(eval_env);
    mr_llama_free(policy);
    mr_llama_free(ref);
    mr_tokenizer_free(tok);
    mr_gguf_close(gguf);
    return code;
}

static int run_algorithm(int argc, char **argv, mr_rl_algorithm algorithm) {
    rl_options o;
    int code = parse_options(argc, argv, algorithm, &o);
    if (code >= 0) {
        return code;
    }
    return run(&o);
}

int cli_train_grpo(int argc, char **argv) {
    return run_algorithm(argc, argv, MR_RL_GRPO);
}

int cli_train_ppo(int argc, char **argv) {
    return run_algorithm(argc, argv, MR_RL_PPO);
}

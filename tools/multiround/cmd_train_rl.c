/*
 * `multiround train grpo` and `multiround train ppo`: reinforcement
 * learning of a GGUF model on the calculator task (mr_rl_run in rl.h).
 *
 * The settings come from a JSON config file. Every config key can also
 * be given as an option, --KEY VALUE with - in place of _, which
 * overrides the file. So the command lines of earlier versions, which
 * had only these options, still work without a config.
 */
#include <cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "multiround/env.h"
#include "multiround/rl.h"

typedef enum key_kind {
    KEY_PATH,      /* a string */
    KEY_INT,       /* an int in [min, max] */
    KEY_FLOAT,     /* a float in [min, max] */
    KEY_SWITCH,    /* a bool: true or false in the file, on or off as an option */
    KEY_SEED,      /* a uint64_t */
    KEY_ESTIMATOR, /* an mr_kl_estimator: "k3" or "log_ratio" */
    KEY_AVERAGE    /* an mr_rl_loss_average: "sequence" or "token" */
} key_kind;

/* One config key: its name, the field it sets, its valid range and its
 * help line. */
typedef struct rl_key {
    const char *name;
    key_kind kind;
    size_t offset;   /* into mr_rl_run_options */
    double min, max; /* KEY_INT and KEY_FLOAT */
    const char *help;
} rl_key;

#define OFF(field) offsetof(mr_rl_run_options, field)

/* The keys in the order that --help lists them, with the ranges that
 * their values must fall in. */
static const rl_key rl_keys[] = {
    {"model", KEY_PATH, OFF(model_path), 0, 0, "GGUF policy to start from, and KL reference"},
    {"train", KEY_PATH, OFF(train_path), 0, 0, "problems to train on, JSON Lines"},
    {"eval", KEY_PATH, OFF(eval_path), 0, 0, "held-out problems for eval/success"},
    {"out", KEY_PATH, OFF(out_dir), 0, 0, "run folder"},
    {"task", KEY_PATH, OFF(task), 0, 0, "environment; this build has calc"},
    {"steps", KEY_INT, OFF(rl.steps), 1, 1e7,
     "training steps; each samples episodes, then updates"},
    {"prompts", KEY_INT, OFF(rl.prompts_per_step), 1, 1e5, "problems per step"},
    {"group", KEY_INT, OFF(rl.group_size), 1, 1e4, "episodes per problem"},
    {"epochs", KEY_INT, OFF(rl.epochs), 1, 1e3, "passes over each step's episodes"},
    {"minibatch", KEY_INT, OFF(rl.minibatch), 1, 1e5, "episodes per optimizer update"},
    {"lr", KEY_FLOAT, OFF(rl.lr), 0, 1, "AdamW learning rate, constant after the warm-up"},
    {"warmup", KEY_INT, OFF(rl.warmup_steps), 0, 1e7, "linear warm-up, in optimizer updates"},
    {"weight_decay", KEY_FLOAT, OFF(rl.weight_decay), 0, 1, "AdamW weight decay"},
    {"clip_norm", KEY_FLOAT, OFF(rl.max_grad_norm), 0, 1e6,
     "maximum gradient L2 norm, 0 for none"},
    {"clip", KEY_FLOAT, OFF(rl.clip_eps), 0, 0.99, "ratio clip epsilon"},
    {"kl", KEY_FLOAT, OFF(rl.kl_coef), 0, 100, "KL coefficient, 0 for no KL term"},
    {"kl_estimator", KEY_ESTIMATOR, OFF(rl.kl_estimator), 0, 0, "\"k3\" or \"log_ratio\""},
    {"kl_in_reward", KEY_SWITCH, OFF(rl.kl_in_reward), 0, 0,
     "ppo: put the KL into the token rewards, not the loss"},
    {"average", KEY_AVERAGE, OFF(rl.average), 0, 0,
     "\"sequence\" (per episode first) or \"token\""},
    {"scale_rewards", KEY_SWITCH, OFF(rl.scale_rewards), 0, 0,
     "grpo: divide advantages by the group's std"},
    {"adv_eps", KEY_FLOAT, OFF(rl.adv_eps), 0, 1, "grpo: added to the group's std"},
    {"filter_groups", KEY_SWITCH, OFF(rl.filter_groups), 0, 0,
     "grpo: redraw a prompt whose episodes all got the same reward"},
    {"max_prompt_draws", KEY_INT, OFF(rl.max_prompt_draws), 0, 1e7,
     "grpo with filter_groups: prompts drawn per step at most, 0 for 8 x prompts"},
    {"gamma", KEY_FLOAT, OFF(rl.gamma), 0, 1, "ppo: GAE discount"},
    {"lambda", KEY_FLOAT, OFF(rl.lambda), 0, 1, "ppo: GAE lambda"},
    {"vf_coef", KEY_FLOAT, OFF(rl.vf_coef), 0, 100, "ppo: weight of the value loss"},
    {"value_clip", KEY_FLOAT, OFF(rl.value_clip), 0, 1e6,
     "ppo: clip of the value change, 0 for none"},
    {"value_lr", KEY_FLOAT, OFF(rl.value_lr), 0, 1, "ppo: learning rate of the value head"},
    {"whiten", KEY_SWITCH, OFF(rl.whiten_advantages), 0, 0,
     "ppo: whiten advantages over the step"},
    {"temperature", KEY_FLOAT, OFF(rl.temperature), 1e-3, 100,
     "sampling temperature of training episodes"},
    {"seed", KEY_SEED, OFF(rl.seed), 0, 0, "seed of prompts, sampling and minibatch order"},
    {"eval_every", KEY_INT, OFF(rl.eval_every), 0, 1e7,
     "steps between evals; also at step 0 and the last"},
    {"eval_episodes", KEY_INT, OFF(rl.eval_episodes), 1, 1e7,
     "greedy eval episodes (the first N problems)"},
    {"success_reward", KEY_FLOAT, OFF(rl.success_reward), -1e6, 1e6,
     "reward at which an episode counts as solved"},
    {"format_penalty", KEY_FLOAT, OFF(calc.format_penalty), 0, 10,
     "reward subtracted per format error"},
    {"max_turns", KEY_INT, OFF(calc.limits.max_turns), 1, 1000, "policy turns per episode"},
    {"turn_tokens", KEY_INT, OFF(calc.limits.max_turn_tokens), 1, 1e6, "tokens per policy turn"},
    {"max_tokens", KEY_INT, OFF(calc.limits.max_tokens), 2, 1e6,
     "tokens per episode, prompt and replies included"},
    {"checkpoint_every", KEY_INT, OFF(checkpoint_every), 0, 1e7,
     "steps between checkpoints; also after the last"},
    {"stop_after", KEY_INT, OFF(stop_after), 0, 1e7,
     "stop after this step as if killed, 0 for never"},
};

#define N_RL_KEYS ((int)(sizeof rl_keys / sizeof rl_keys[0]))

/* The largest seed a JSON number gives exactly: 2^64 - 2048. */
#define SEED_MAX_DOUBLE 18446744073709549568.0

/* Writes the default of key k in o into text (size bytes). */
static void format_default(const rl_key *k, const mr_rl_run_options *o, char *text,
                           size_t size) {
    const void *field = (const char *)o + k->offset;
    switch (k->kind) {
    case KEY_PATH: {
        const char *path = *(const char *const *)field;
        if (path == NULL) {
            path = strcmp(k->name, "eval") == 0 ? "none" : "required";
        }
        snprintf(text, size, "%s", path);
        return;
    }
    case KEY_INT:
        snprintf(text, size, "%d", *(const int *)field);
        return;
    case KEY_FLOAT:
        snprintf(text, size, "%g", (double)*(const float *)field);
        return;
    case KEY_SWITCH:
        snprintf(text, size, "%s", *(const bool *)field ? "true" : "false");
        return;
    case KEY_SEED:
        snprintf(text, size, "%llu", (unsigned long long)*(const uint64_t *)field);
        return;
    case KEY_ESTIMATOR:
        snprintf(text, size, "%s", mr_kl_estimator_name(o->rl.kl_estimator));
        return;
    case KEY_AVERAGE:
        snprintf(text, size, "%s", o->rl.average == MR_RL_AVERAGE_TOKEN ? "token" : "sequence");
        return;
    }
}

static void print_help(const char *name, mr_rl_algorithm algorithm) {
    printf("usage: multiround train %s --config FILE.json [--resume] [--KEY VALUE ...]\n\n"
           "Trains a GGUF model with %s on the calculator task: each problem of the\n"
           "train file (JSON Lines {\"question\": \"37*24+58\", \"answer\": 946}) is an\n"
           "episode in which the model may write <calc>EXPR</calc> and get\n"
           "<result>VALUE</result> back, and ends with <answer>N</answer> (reward 1\n"
           "when right).\n\n"
           "options:\n"
           "  --config FILE  JSON object of the settings below\n"
           "  --resume       continue from OUT/checkpoint.json when it exists; the settings\n"
           "                 must match OUT/config.json, except that steps may grow and\n"
           "                 eval_every, checkpoint_every and stop_after may change.\n"
           "                 Without it, an OUT with a checkpoint or done is an error.\n"
           "                 Ctrl-C or SIGTERM saves a checkpoint after the current step\n"
           "                 and stops, so that --resume continues from there\n"
           "  --KEY VALUE    sets a config key, overriding the file, with - in place of _\n"
           "                 (--eval-episodes 200); switches take on or off here\n",
           name, algorithm == MR_RL_GRPO ? "GRPO" : "PPO");
    cli_print_shared_options(stdout, 17);
    printf("\nconfig keys (%s default in brackets; paths relative to the working folder):\n",
           name);
    mr_rl_run_options defaults;
    mr_rl_run_options_default(&defaults, algorithm);
    for (int i = 0; i < N_RL_KEYS; i++) {
        char value[64];
        format_default(&rl_keys[i], &defaults, value, sizeof value);
        printf("  %-17s %s [%s]\n", rl_keys[i].name, rl_keys[i].help, value);
    }
    printf("\nOutputs in OUT: config.json, metrics.jsonl, checkpoints/, model.gguf (the policy\n"
           "with the starting file's tokenizer), value_head.safetensors for ppo, and done.\n"
           "Plot the metrics with 'multiround plot OUT'.\n");
}

/* Returns the key that an option (--eval-episodes, -m, -o) sets, or NULL. */
static const rl_key *find_option(const char *option) {
    if (strcmp(option, "-m") == 0) {
        option = "--model";
    } else if (strcmp(option, "-o") == 0) {
        option = "--out";
    }
    if (strncmp(option, "--", 2) != 0) {
        return NULL;
    }
    option += 2;
    for (int i = 0; i < N_RL_KEYS; i++) {
        const char *a = rl_keys[i].name, *b = option;
        while (*a != '\0' && (*a == *b || (*a == '_' && *b == '-'))) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0') {
            return &rl_keys[i];
        }
    }
    return NULL;
}

/* Returns the key called name, or NULL. */
static const rl_key *find_key(const char *name) {
    for (int i = 0; i < N_RL_KEYS; i++) {
        if (strcmp(rl_keys[i].name, name) == 0) {
            return &rl_keys[i];
        }
    }
    return NULL;
}

/* Stores a choice by its name; false when name is not one of the two. */
static bool set_choice(const rl_key *k, const char *name, mr_rl_run_options *o) {
    if (k->kind == KEY_ESTIMATOR) {
        return mr_kl_estimator_parse(name, &o->rl.kl_estimator, NULL) == MR_OK;
    }
    if (strcmp(name, "sequence") == 0 || strcmp(name, "token") == 0) {
        o->rl.average = strcmp(name, "token") == 0 ? MR_RL_AVERAGE_TOKEN : MR_RL_AVERAGE_SEQUENCE;
        return true;
    }
    return false;
}

/* The two names of a choice key, for messages. */
static const char *choice_names(const rl_key *k) {
    return k->kind == KEY_ESTIMATOR ? "\"k3\" or \"log_ratio\"" : "\"sequence\" or \"token\"";
}

/* Applies one config key to o; false (error printed) for an unknown key
 * or a value of the wrong type or out of range. */
static bool apply_config_key(const cJSON *item, mr_rl_run_options *o, const char *command) {
    if (strcmp(item->string, "resume") == 0) {
        return cli_config_flag(item, &o->resume);
    }
    const rl_key *k = find_key(item->string);
    if (k == NULL) {
        cli_error("config key '%s' is unknown; run 'multiround train %s --help' for the keys",
                  item->string, command);
        return false;
    }
    void *field = (char *)o + k->offset;
    double v = 0.0;
    switch (k->kind) {
    case KEY_PATH:
        if (!cJSON_IsString(item)) {
            return cli_config_wrong_type(k->name, "a string", item);
        }
        *(const char **)field = item->valuestring;
        return true;
    case KEY_INT:
        if (!cli_config_integer(k->name, item, k->min, k->max, &v)) {
            return false;
        }
        *(int *)field = (int)v;
        return true;
    case KEY_FLOAT:
        if (!cJSON_IsNumber(item)) {
            return cli_config_wrong_type(k->name, "a number", item);
        }
        if (!(item->valuedouble >= k->min && item->valuedouble <= k->max)) {
            cli_error("config key '%s' must be a number in [%g, %g], got %.17g", k->name, k->min,
                      k->max, item->valuedouble);
            return false;
        }
        *(float *)field = (float)item->valuedouble;
        return true;
    case KEY_SWITCH:
        return cli_config_flag(item, (bool *)field);
    case KEY_SEED:
        if (!cli_config_integer(k->name, item, 0.0, SEED_MAX_DOUBLE, &v)) {
            return false;
        }
        *(uint64_t *)field = (uint64_t)v;
        return true;
    case KEY_ESTIMATOR:
    case KEY_AVERAGE:
        if (!cJSON_IsString(item)) {
            return cli_config_wrong_type(k->name, "a string", item);
        }
        if (!set_choice(k, item->valuestring, o)) {
            cli_error("config key '%s' must be %s, got \"%s\"", k->name, choice_names(k),
                      item->valuestring);
            return false;
        }
        return true;
    }
    return false;
}

/* Applies the option that sets key k to text; false (error printed) for
 * an invalid value. */
static bool apply_option(const rl_key *k, const char *option, const char *text,
                         mr_rl_run_options *o) {
    void *field = (char *)o + k->offset;
    int64_t i = 0;
    double d = 0.0;
    switch (k->kind) {
    case KEY_PATH:
        *(const char **)field = text;
        return true;
    case KEY_INT:
        if (!cli_parse_int64(option, text, (int64_t)k->min, (int64_t)k->max, &i)) {
            return false;
        }
        *(int *)field = (int)i;
        return true;
    case KEY_FLOAT:
        if (!cli_parse_double(option, text, k->min, k->max, &d)) {
            return false;
        }
        *(float *)field = (float)d;
        return true;
    case KEY_SWITCH:
        if (strcmp(text, "on") != 0 && strcmp(text, "off") != 0) {
            cli_error("%s needs on or off, got '%s'", option, text);
            return false;
        }
        *(bool *)field = strcmp(text, "on") == 0;
        return true;
    case KEY_SEED:
        if (!cli_parse_int64(option, text, 0, INT64_MAX, &i)) {
            return false;
        }
        *(uint64_t *)field = (uint64_t)i;
        return true;
    case KEY_ESTIMATOR:
    case KEY_AVERAGE:
        if (!set_choice(k, text, o)) {
            cli_error("%s needs %s, got '%s'", option, choice_names(k), text);
            return false;
        }
        return true;
    }
    return false;
}

/* The command line: the config file, --resume, and the options that
 * override keys (argv indices of each option, its value following). */
typedef struct rl_command_line {
    const char *config_path;
    bool resume;
    int overrides[64];
    int n_overrides;
} rl_command_line;

/* Reads the command line into *line; returns -1 to continue, else the
 * exit code (0 after --help). */
static int parse_command_line(int argc, char **argv, mr_rl_algorithm algorithm,
                              rl_command_line *line) {
    memset(line, 0, sizeof *line);
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_help(argv[0], algorithm);
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared != 0) {
            if (shared < 0) {
                return 2;
            }
            continue;
        }
        if (strcmp(option, "--resume") == 0) {
            line->resume = true;
            continue;
        }
        bool is_config = strcmp(option, "--config") == 0;
        if (!is_config && find_option(option) == NULL) {
            cli_error("unknown option '%s'; run 'multiround train %s --help'", option, argv[0]);
            return 2;
        }
        if (i + 1 >= argc) {
            cli_error("%s needs a value; run 'multiround train %s --help'", option, argv[0]);
            return 2;
        }
        if (is_config) {
            line->config_path = argv[++i];
            continue;
        }
        int max_overrides = (int)(sizeof line->overrides / sizeof line->overrides[0]);
        if (line->n_overrides == max_overrides) {
            cli_error("more than %d options set config keys; put the settings in a --config "
                      "file",
                      max_overrides);
            return 2;
        }
        line->overrides[line->n_overrides++] = i++;
    }
    return -1;
}

/* Prints the run's figures as one line. seconds is the time of this
 * process only, while metrics.jsonl's elapsed_s counts every session. */
static void print_summary(const mr_rl_run_options *o, const mr_rl_result *r, double seconds) {
    printf("%s: step %d of %d, %.1f s in this session", o->rl.algorithm == MR_RL_GRPO ? "grpo" : "ppo",
           r->steps_done, o->rl.steps, seconds);
    if (o->eval_path != NULL) {
        printf("; eval success %.3f before, %.3f after (best %.3f)",
               (double)r->initial_success, (double)r->final_success, (double)r->best_success);
    }
    printf("\n");
}

static int run_algorithm(int argc, char **argv, mr_rl_algorithm algorithm) {
    rl_command_line line;
    int code = parse_command_line(argc, argv, algorithm, &line);
    if (code >= 0) {
        return code;
    }

    mr_rl_run_options o;
    mr_rl_run_options_default(&o, algorithm);
    cJSON *config = NULL;
    bool ok = true;
    if (line.config_path != NULL) {
        config = cli_config_read(line.config_path);
        if (config == NULL) {
            return 1;
        }
        const cJSON *item;
        cJSON_ArrayForEach(item, config) {
            /* Every key is applied, so that one run reports every bad key. */
            ok = apply_config_key(item, &o, argv[0]) && ok;
        }
    }
    for (int i = 0; i < line.n_overrides; i++) {
        int at = line.overrides[i];
        ok = apply_option(find_option(argv[at]), argv[at], argv[at + 1], &o) && ok;
    }
    o.resume = o.resume || line.resume;

    code = 2;
    if (ok) {
        mr_rl_result result;
        mr_error err;
        double start = cli_seconds();
        o.stop = cli_stop_requested;
        cli_catch_stop_signals();
        mr_status status = mr_rl_run(&o, &result, &err);
        if (status == MR_ERR_INTERRUPTED) {
            cli_error("%s", err.message);
            code = cli_exit_by_stop_signal();
        } else if (status != MR_OK) {
            cli_error("train %s failed: %s", argv[0], err.message);
            code = 1;
        } else {
            print_summary(&o, &result, cli_seconds() - start);
            code = 0;
        }
    }
    cJSON_Delete(config);
    return code;
}

int cli_train_grpo(int argc, char **argv) {
    return run_algorithm(argc, argv, MR_RL_GRPO);
}

int cli_train_ppo(int argc, char **argv) {
    return run_algorithm(argc, argv, MR_RL_PPO);
}

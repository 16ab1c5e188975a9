/*
 * Declarations shared by the multiround command-line tool: the subcommand
 * entry points and small helpers for options and progress output.
 */
#ifndef MR_CLI_H
#define MR_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "multiround/llm.h"
#include "multiround/sample.h"

/* A subcommand: argv[0] is the subcommand's name and the rest its options.
 * Returns the process exit code (0 success, 1 failure, 2 usage error). */
typedef int (*cli_command_fn)(int argc, char **argv);

int cli_demo(int argc, char **argv);
int cli_index(int argc, char **argv);
int cli_lm(int argc, char **argv);
int cli_plot(int argc, char **argv);
int cli_rec(int argc, char **argv);
int cli_rec_bench(int argc, char **argv);
int cli_rounds(int argc, char **argv);
int cli_search(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_version(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_chat(int argc, char **argv);

/* `train grpo` and `train ppo` (argv[0] is "grpo" or "ppo"): the `train`
 * dispatcher calls them. */
int cli_train_grpo(int argc, char **argv);
int cli_train_ppo(int argc, char **argv);

/* `lm score` (argv[0] is "score"): the `lm` dispatcher calls it. */
int cli_lm_score(int argc, char **argv);

typedef struct mr_llama mr_llama;
typedef struct mr_tokenizer mr_tokenizer;
typedef struct mr_gguf mr_gguf;

/*
 * Opens a GGUF language model: its tokenizer, its weights and the file's
 * metadata (for the chat template). When lora_dir is not NULL, the PEFT
 * LoRA adapter in that folder is merged into the weights. Returns 0, or 1
 * with an error printed and nothing left open.
 */
int cli_lm_open(const char *path, const char *lora_dir, mr_llama **model, mr_tokenizer **tok,
                mr_gguf **gguf);

/*
 * Checks that path names a file that this process can open for reading.
 * Otherwise prints "cannot open WHAT PATH: REASON", the reason from
 * strerror (EISDIR for a directory), and returns false.
 */
bool cli_check_input_file(const char *what, const char *path);

/*
 * Returns the value after the option at argv[index] when the option is one
 * of names (NULL-terminated): the options of command that take a value.
 * Otherwise prints that the option is unknown to command, or that it
 * needs a value, and returns NULL. An unknown option is reported as
 * unknown even in last position.
 */
const char *cli_option_value(const char *command, const char *const *names, int argc,
                             char **argv, int index);

/* Prints "multiround: " and the message to stderr with a newline. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Parses text as a base-10 integer in [min, max] for option. On failure
 * prints an error naming the option and the range and returns false.
 */
bool cli_parse_int64(const char *option, const char *text, int64_t min,
                     int64_t max, int64_t *value);

/* Parses text as a finite number in [min, max] for option. On failure
 * prints an error naming the option and the range and returns false. */
bool cli_parse_double(const char *option, const char *text, double min, double max,
                      double *value);

/*
 * Handles the options every subcommand accepts. When argv[*index] is
 * --threads, reads its value, applies it with mr_threads_set(), advances
 * *index past the value and returns 1; returns 0 when argv[*index] is not
 * a shared option and -1 (error printed) when its value is invalid.
 */
int cli_parse_shared_option(int argc, char **argv, int *index);

/* Prints the help lines of the shared options, for each subcommand's
 * --help, with descriptions starting at column (counted from 0) so that
 * they line up with the command's own options. */
void cli_print_shared_options(FILE *out, int column);

/* Maximum --stop texts of one command, as many as an mr_llm request carries. */
#define CLI_STOP_MAX MR_LLM_STOP_MAX

/* The sampling options, as bits of cli_sampling.accepted and .given. */
enum {
    CLI_SAMPLING_MAX_TOKENS = 1 << 0,     /* -n, --max-tokens */
    CLI_SAMPLING_TEMPERATURE = 1 << 1,    /* --temp */
    CLI_SAMPLING_TOP_K = 1 << 2,          /* --top-k */
    CLI_SAMPLING_TOP_P = 1 << 3,          /* --top-p */
    CLI_SAMPLING_MIN_P = 1 << 4,          /* --min-p */
    CLI_SAMPLING_REPEAT_PENALTY = 1 << 5, /* --repeat-penalty */
    CLI_SAMPLING_REPEAT_LAST_N = 1 << 6,  /* --repeat-last-n */
    CLI_SAMPLING_SEED = 1 << 7,           /* --seed */
    CLI_SAMPLING_STOP = 1 << 8,           /* --stop */
    CLI_SAMPLING_ALL = (1 << 9) - 1
};

/* The sampling options that an mr_llm request carries, and so the ones
 * that chat takes. */
#define CLI_SAMPLING_LLM_REQUEST                                                                 \
    (CLI_SAMPLING_MAX_TOKENS | CLI_SAMPLING_TEMPERATURE | CLI_SAMPLING_TOP_P |                 \
     CLI_SAMPLING_SEED | CLI_SAMPLING_STOP)

/*
 * The sampling options of generate and chat, parsed by one function so
 * that both commands take them with the same ranges and messages.
 * cli_sampling_init() fills the values with the defaults, and parsing
 * overwrites the options given.
 */
typedef struct cli_sampling {
    unsigned accepted; /* CLI_SAMPLING_* bits of the options the command takes */
    unsigned given;    /* bits of the options on the command line */
    int64_t max_tokens;
    double temperature;
    int64_t top_k;
    double top_p;
    double min_p;
    double repeat_penalty;
    int64_t repeat_last_n;
    int64_t seed; /* the sampler's seed is this value modulo 2^64 */
    const char *stops[CLI_STOP_MAX];
    int n_stop;
} cli_sampling;

/*
 * Sets which options the command accepts and fills the defaults: max_tokens
 * for -n, and mr_sampler_params_default() for the rest. Nothing is given
 * and there are no stop texts.
 */
void cli_sampling_init(cli_sampling *sampling, unsigned accepted, int64_t max_tokens);

/*
 * Parses the sampling option at argv[*index] when sampling accepts it: reads
 * its value, advances *index past the value and returns 1. Returns 0 when
 * argv[*index] is not an accepted sampling option, and -1 (error printed,
 * naming the command) when its value is missing or invalid.
 */
int cli_parse_sampling_option(const char *command, int argc, char **argv, int *index,
                              cli_sampling *sampling);

/*
 * Prints the help lines of the options that defaults accepts, with its
 * values as the defaults. seed_default, when not NULL, is printed as the
 * default of --seed in place of the number.
 */
void cli_print_sampling_options(FILE *out, const cli_sampling *defaults,
                                const char *seed_default);

/* Copies the sampler's fields of sampling into params, all of them, so
 * that an option not given keeps the default that cli_sampling_init() set. */
void cli_sampling_to_sampler(const cli_sampling *sampling, mr_sampler_params *params);

/* ------------------------------------------------------------------------
 * JSON config files of `multiround train` (cli_config.c)
 * ------------------------------------------------------------------------ */

struct cJSON;

/* Config files larger than this are rejected. */
#define CLI_CONFIG_MAX_BYTES (1u << 20)

/*
 * Reads the config file at path as a JSON object (free it with
 * cJSON_Delete). Otherwise prints an error, with the line and column
 * where invalid JSON stops the parser, and returns NULL.
 */
struct cJSON *cli_config_read(const char *path);

/* Returns the JSON type of item in words ("a string", "null"), for messages. */
const char *cli_json_type_name(const struct cJSON *item);

/* Prints "config key 'KEY' must be EXPECTED, got TYPE" and returns false. */
bool cli_config_wrong_type(const char *key, const char *expected, const struct cJSON *item);

/* Reads an integer in [low, high] from item into *out; false (error
 * printed) for another type or a fraction. */
bool cli_config_integer(const char *key, const struct cJSON *item, double low, double high,
                        double *out);

/* Reads the true/false value of config key item->string into *out; false
 * (error printed) for another type. */
bool cli_config_flag(const struct cJSON *item, bool *out);

/* Reads one of two names into *out: false for first, true for second.
 * Returns false (error printed) for anything else. */
bool cli_config_choice(const struct cJSON *item, const char *first, const char *second,
                       bool *out);

/* Seconds since an arbitrary start, from a monotonic clock. */
double cli_seconds(void);

/*
 * Progress of a loop over `total` steps. On a terminal it is one line
 * redrawn with a bar. Otherwise it is a plain line every `every` steps and
 * at the end.
 */
typedef struct cli_progress {
    int64_t total;
    int64_t every;
    bool terminal;
} cli_progress;

void cli_progress_init(cli_progress *progress, int64_t total, FILE *out);

/* Reports that step (1-based) finished; detail is appended to the line. */
void cli_progress_update(cli_progress *progress, FILE *out, int64_t step,
                         const char *detail);

/*
 * Makes SIGTERM and SIGINT request a clean stop of a training run. SIGINT
 * stays ignored when the process started with it ignored, as a shell
 * starts background jobs. The first such signal prints that the run stops
 * after the current step and makes cli_stop_requested return true. Both
 * signals then have their default action again, so a second one ends the
 * process at once. SIGPIPE is ignored from then on, so that a closed
 * pipe on stderr cannot end the run before its checkpoint.
 */
void cli_catch_stop_signals(void);

/* A stop callback for training options: true once a stop signal came.
 * user_data is unused. */
bool cli_stop_requested(void *user_data);

/*
 * Ends the process with the stop signal's default action, after flushing
 * stdio, so that the parent gets a death by that signal and a shell script
 * stops as it would after Ctrl-C. Returns 128 plus the signal number, the
 * code a shell reports, only when the process survives the signal.
 */
int cli_exit_by_stop_signal(void);

#endif /* MR_CLI_H */

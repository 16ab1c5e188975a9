/*
 * Declarations shared by the multiround command-line tool: the subcommand
 * entry points and small helpers for options and progress output.
 */
#ifndef MR_CLI_H
#define MR_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

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

/* The help lines of the shared options, for each subcommand's --help. */
void cli_print_shared_options(FILE *out);

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

#endif /* MR_CLI_H */

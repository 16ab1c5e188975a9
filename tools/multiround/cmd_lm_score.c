/*
 * `multiround lm score`: log-probabilities of completions. Reads a JSON
 * Lines file of {"prompt": ..., "completion": ...} objects and prints one
 * JSON line per input: {"line": N, "logprob": SUM, "tokens": COUNT}.
 */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "multiround/generate.h"
#include "multiround/gguf.h"

/* Requests scored per call, which bounds the memory for logits. */
#define SCORE_BATCH 16

typedef struct score_options {
    const char *model_path;
    const char *data_path;
    const char *lora_dir;
    bool per_token;
    int add_bos; /* -1: the model's metadata */
} score_options;

static void print_help(void) {
    printf("usage: multiround lm score -m MODEL --data FILE.jsonl [OPTIONS]\n\n"
           "Prints, for each line {\"prompt\": ..., \"completion\": ...} of FILE, one JSON\n"
           "line {\"line\": N, \"logprob\": L, \"tokens\": T}: N is the line number in FILE\n"
           "(from 1), and L is the natural log of p(completion | prompt) under the model,\n"
           "summed over the T completion tokens. Empty lines are skipped. A line that\n"
           "is not such an object, or that cannot be scored (too long for the context,\n"
           "say), gets an error on stderr naming its line number; every other line is\n"
           "still scored, and the exit code is then 1.\n\n"
           "options:\n"
           "  -m, --model PATH   GGUF model file (required)\n"
           "  --data PATH        JSON Lines input (required)\n"
           "  --lora DIR         PEFT LoRA adapter folder, merged into the weights at load\n"
           "  --per-token        also print \"token_logprobs\": one value per token\n"
           "  --bos on|off       add BOS before each prompt (default: as the model's\n"
           "                     metadata says)\n");
    cli_print_shared_options(stdout, 21);
}

/* Parses the options; returns -1 to continue, else the exit code. */
static int parse_options(int argc, char **argv, score_options *o) {
    memset(o, 0, sizeof *o);
    o->add_bos = -1;
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        if (strcmp(option, "--help") == 0 || strcmp(option, "-h") == 0) {
            print_help();
            return 0;
        }
        int shared = cli_parse_shared_option(argc, argv, &i);
        if (shared < 0) {
            return 2;
        }
        if (shared > 0) {
            continue;
        }
        if (strcmp(option, "--per-token") == 0) {
            o->per_token = true;
            continue;
        }
        static const char *const valued[] = {"-m", "--model", "--data", "--lora", "--bos",
                                             NULL};
        const char *value = cli_option_value("lm score", valued, argc, argv, i);
        if (value == NULL) {
            return 2;
        }
        if (strcmp(option, "-m") == 0 || strcmp(option, "--model") == 0) {
            o->model_path = value;
        } else if (strcmp(option, "--data") == 0) {
            o->data_path = value;
        } else if (strcmp(option, "--lora") == 0) {
            o->lora_dir = value;
        } else if (strcmp(value, "on") == 0) {
            o->add_bos = 1;
        } else if (strcmp(value, "off") == 0) {
            o->add_bos = 0;
        } else {
            cli_error("--bos takes on or off, got '%s'", value);
            return 2;
        }
        i++;
    }
    if (o->model_path == NULL || o->data_path == NULL) {
        cli_error("lm score needs -m MODEL and --data FILE.jsonl");
        return 2;
    }
    return -1;
}

/* One parsed input line. */
typedef struct score_item {
    long line;
    cJSON *json; /* owns the strings that request points into */
    mr_logprob_request request;
} score_item;

/* Parses one line into item; prints an error naming the line on failure. */
static bool parse_line(const char *path, long number, const char *text, score_item *item) {
    item->line = number;
    item->json = cJSON_Parse(text);
    if (item->json == NULL || !cJSON_IsObject(item->json)) {
        cli_error("%s:%ld: not a JSON object", path, number);
        return false;
    }
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(item->json, "prompt");
    const cJSON *completion = cJSON_GetObjectItemCaseSensitive(item->json, "completion");
    if (!cJSON_IsString(prompt) || !cJSON_IsString(completion)) {
        cli_error("%s:%ld: needs string fields \"prompt\" and \"completion\"", path, number);
        return false;
    }
    item->request.prompt = prompt->valuestring;
    item->request.completion = completion->valuestring;
    return true;
}

/* Prints the result of one line as a JSON line and frees it. A sum that
 * is not finite (a NaN or infinite logit) is an error for that line,
 * because JSON has no such numbers. Returns false then. */
static bool print_result(const score_options *o, long line, mr_logprob_result *result) {
    if (!isfinite(result->sum)) {
        cli_error("%s:%ld: the log-probability is %g: the model computed a NaN or infinite "
                  "logit, so its weights are probably corrupt",
                  o->data_path, line, result->sum);
        mr_logprob_result_free(result);
        return false;
    }
    printf("{\"line\":%ld,\"logprob\":%.9g,\"tokens\":%d", line, result->sum,
           result->n_tokens);
    if (o->per_token) {
        printf(",\"token_logprobs\":[");
        for (int t = 0; t < result->n_tokens; t++) {
            printf("%s%.9g", t > 0 ? "," : "", (double)result->token_logprobs[t]);
        }
        printf("]");
    }
    printf("}\n");
    mr_logprob_result_free(result);
    return true;
}

/*
 * Scores a batch and prints a result for every line that can be scored.
 * When the batch fails, each line is scored alone so that the failing
 * ones are reported by line number and the others still get results.
 * Returns the number of lines that failed.
 */
static int score_batch(const score_options *o, mr_llama *model, mr_tokenizer *tok,
                       score_item *items, int n) {
    mr_logprob_request requests[SCORE_BATCH];
    mr_logprob_result results[SCORE_BATCH];
    for (int i = 0; i < n; i++) {
        requests[i] = items[i].request;
    }
    mr_error err;
    mr_error_clear(&err);
    if (mr_llama_logprobs(model, tok, requests, n, o->add_bos, false, results, &err) == MR_OK) {
        int not_finite = 0;
        for (int i = 0; i < n; i++) {
            not_finite += print_result(o, items[i].line, &results[i]) ? 0 : 1;
        }
        fflush(stdout);
        return not_finite;
    }

    /* The library's message names the index in the batch, so each line
     * is scored again alone and reported by its line number. */
    int failed = 0;
    for (int i = 0; i < n; i++) {
        mr_error_clear(&err);
        if (mr_llama_logprobs(model, tok, &requests[i], 1, o->add_bos, false, &results[i],
                              &err) != MR_OK) {
            cli_error("%s:%ld: scoring failed: %s", o->data_path, items[i].line, err.message);
            failed++;
            continue;
        }
        failed += print_result(o, items[i].line, &results[i]) ? 0 : 1;
    }
    fflush(stdout);
    return failed;
}

/* Frees the parsed lines of a batch. */
static void free_items(score_item *items, int n) {
    for (int i = 0; i < n; i++) {
        cJSON_Delete(items[i].json);
        items[i].json = NULL;
    }
}

int cli_lm_score(int argc, char **argv) {
    score_options o;
    int code = parse_options(argc, argv, &o);
    if (code >= 0) {
        return code;
    }
    if (!cli_check_input_file("the data file", o.data_path)) {
        return 1;
    }
    FILE *data = fopen(o.data_path, "r");
    if (data == NULL) {
        cli_error("cannot open the data file %s: %s", o.data_path, strerror(errno));
        return 1;
    }
    mr_llama *model;
    mr_tokenizer *tok;
    mr_gguf *gguf;
    if (cli_lm_open(o.model_path, o.lora_dir, &model, &tok, &gguf) != 0) {
        fclose(data);
        return 1;
    }

    score_item items[SCORE_BATCH];
    int n = 0;
    long number = 0;
    long failed = 0;
    char *line = NULL;
    size_t capacity = 0;
    bool read_failed = false;
    for (;;) {
        errno = 0;
        ssize_t got = getline(&line, &capacity, data);
        if (got < 0 && ferror(data)) {
            cli_error("cannot read the data file %s after line %ld: %s", o.data_path, number,
                      strerror(errno));
            read_failed = true;
        }
        if (got >= 0) {
            number++;
            bool blank = strspn(line, " \t\r\n") == (size_t)got;
            if (blank) {
                continue;
            }
            if (parse_line(o.data_path, number, line, &items[n])) {
                n++;
            } else {
                free_items(&items[n], 1);
                failed++;
            }
        }
        if (n == SCORE_BATCH || (got < 0 && n > 0)) {
            failed += score_batch(&o, model, tok, items, n);
            free_items(items, n);
            n = 0;
        }
        if (got < 0) {
            break;
        }
    }
    if (failed > 0) {
        cli_error("%ld line%s of %s failed (see above); every other line was scored", failed,
                  failed == 1 ? "" : "s", o.data_path);
    }

    free(line);
    fclose(data);
    mr_llama_free(model);
    mr_tokenizer_free(tok);
    mr_gguf_close(gguf);
    return failed > 0 || read_failed ? 1 : 0;
}

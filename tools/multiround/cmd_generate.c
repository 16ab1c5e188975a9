/*
 * `multiround generate`: text from a GGUF language model, either one
 * continuation of a prompt (-p) or an interactive chat over stdin (--chat)
 * in the model's chat template. Text goes to stdout as it is generated;
 * a statistics line per generation goes to stderr.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "multiround/generate.h"
#include "multiround/gguf.h"
#include "multiround/lora.h"

typedef struct generate_options {
    const char *model_path;
    const char *lora_dir;
    const char *prompt;
    bool chat;
    const char *chat_template; /* NULL: from the GGUF file */
    const char *system;        /* chat: optional system message */
    cli_sampling sampling;
} generate_options;

/* Fills sampling with generate's defaults: mr_generate_params_default()'s
 * token count and sampler. */
static void sampling_defaults(cli_sampling *sampling) {
    mr_generate_params defaults;
    mr_generate_params_default(&defaults);
    cli_sampling_init(sampling, CLI_SAMPLING_ALL, defaults.max_tokens);
}

static void print_help(void) {
    cli_sampling defaults;
    sampling_defaults(&defaults);
    printf("usage: multiround generate -m MODEL (-p PROMPT | --chat) [OPTIONS]\n\n"
           "Generates text with a Llama-family GGUF model and prints it as it comes.\n"
           "A statistics line (tokens, tokens/s of the prompt and of generation) goes\n"
           "to stderr. Sampling applies repetition penalty, temperature, top-k, top-p\n"
           "and min-p in that order (see docs/generate.md).\n\n"
           "options:\n"
           "  -m, --model PATH        GGUF model file (required)\n"
           "  --lora DIR              PEFT LoRA adapter folder, merged into the weights\n"
           "                          at load\n"
           "  -p, --prompt TEXT       text to continue (BOS added as the model says)\n"
           "  --chat                  chat over stdin, one user message per line,\n"
           "                          until end of input\n"
           "  --chat-template NAME    chatml, llama3 or llama2 (default: recognised\n"
           "                          from the file's tokenizer.chat_template)\n"
           "  --system TEXT           chat: system message (default: none)\n");
    cli_print_sampling_options(stdout, &defaults, NULL);
    cli_print_shared_options(stdout, 26);
}

/* The options of generate that take a value, besides the sampling options. */
static const char *const valued_options[] = {
    "-m", "--model", "--lora", "-p", "--prompt", "--chat-template", "--system", NULL};

/* Stores one option of valued_options. */
static void store_valued_option(const char *option, const char *value, generate_options *o) {
    if (strcmp(option, "-m") == 0 || strcmp(option, "--model") == 0) {
        o->model_path = value;
    } else if (strcmp(option, "--lora") == 0) {
        o->lora_dir = value;
    } else if (strcmp(option, "-p") == 0 || strcmp(option, "--prompt") == 0) {
        o->prompt = value;
    } else if (strcmp(option, "--chat-template") == 0) {
        o->chat_template = value;
    } else if (strcmp(option, "--system") == 0) {
        o->system = value;
    }
}

/* Parses generate's options; returns -1 to continue, otherwise the exit
 * code (0 after --help, 2 on a usage error). */
static int parse_options(int argc, char **argv, generate_options *o) {
    memset(o, 0, sizeof *o);
    sampling_defaults(&o->sampling);
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
        int sampling = cli_parse_sampling_option("generate", argc, argv, &i, &o->sampling);
        if (sampling < 0) {
            return 2;
        }
        if (sampling > 0) {
            continue;
        }
        if (strcmp(option, "--chat") == 0) {
            o->chat = true;
            continue;
        }
        const char *value = cli_option_value("generate", valued_options, argc, argv, i);
        if (value == NULL) {
            return 2;
        }
        store_valued_option(option, value, o);
        i++;
    }

    if (o->model_path == NULL) {
        cli_error("generate needs a model: -m MODEL.gguf");
        return 2;
    }
    if ((o->prompt == NULL) == !o->chat) {
        cli_error("generate needs exactly one of -p PROMPT and --chat");
        return 2;
    }
    return -1;
}

int cli_lm_open(const char *path, const char *lora_dir, mr_llama **model, mr_tokenizer **tok,
                mr_gguf **gguf) {
    mr_error err;
    mr_error_clear(&err);
    *model = NULL;
    *tok = NULL;
    *gguf = NULL;

    /* A missing or unreadable file is reported as such before any of the
     * parsers below gets to name the part it was reading. */
    if (!cli_check_input_file("model", path)) {
        return 1;
    }
    if (mr_gguf_open(path, gguf, &err) != MR_OK) {
        cli_error("cannot read the model %s: %s", path, err.message);
        return 1;
    }
    if (mr_tokenizer_from_gguf(*gguf, tok, &err) != MR_OK) {
        cli_error("cannot read the tokenizer of %s: %s", path, err.message);
        mr_gguf_close(*gguf);
        *gguf = NULL;
        return 1;
    }

    *model = mr_llama_load_gguf(path, &err);
    mr_status status = *model != NULL ? MR_OK : MR_ERR_FORMAT;
    if (status != MR_OK) {
        cli_error("cannot load the model %s: %s", path, err.message);
    } else if (lora_dir != NULL) {
        status = mr_lora_merge_peft(*model, lora_dir, &err);
        if (status != MR_OK) {
            cli_error("cannot apply the LoRA adapter %s to %s: %s", lora_dir, path,
                      err.message);
        }
    }
    if (status != MR_OK) {
        mr_llama_free(*model);
        mr_tokenizer_free(*tok);
        mr_gguf_close(*gguf);
        *model = NULL;
        *tok = NULL;
        *gguf = NULL;
        return 1;
    }
    return 0;
}

/* Writes each streamed piece to stdout at once. */
static bool print_piece(const char *piece, size_t len, void *user_data) {
    (void)user_data;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return true;
}

/* Prints the statistics line of one generation to stderr. */
static void print_stats(const mr_generation *g) {
    double prompt_rate = g->prompt_seconds > 0 ? g->prompt_tokens / g->prompt_seconds : 0.0;
    double output_rate = g->generate_seconds > 0 ? g->completion_tokens / g->generate_seconds
                                                 : 0.0;
    fprintf(stderr,
            "generate: prompt %d tokens in %.3f s (%.1f tokens/s), output %d tokens in "
            "%.3f s (%.1f tokens/s), finish %s\n",
            g->prompt_tokens, g->prompt_seconds, prompt_rate, g->completion_tokens,
            g->generate_seconds, output_rate, mr_finish_reason_name(g->finish_reason));
}

/* Fills generation params from the options. */
static mr_generate_params make_params(const generate_options *o) {
    mr_generate_params p;
    mr_generate_params_default(&p);
    p.max_tokens = (int)o->sampling.max_tokens;
    cli_sampling_to_sampler(&o->sampling, &p.sampler);
    p.stop = o->sampling.stops;
    p.n_stop = o->sampling.n_stop;
    p.stream = print_piece;
    return p;
}

/* The conversation of a chat session; contents are owned copies. */
typedef struct chat_history {
    mr_chat_message *messages;
    int count;
    int capacity;
} chat_history;

static bool history_add(chat_history *h, const char *role, const char *content, size_t len) {
    if (h->count == h->capacity) {
        int capacity = h->capacity == 0 ? 16 : 2 * h->capacity;
        mr_chat_message *bigger = realloc(h->messages, (size_t)capacity * sizeof *bigger);
        if (bigger == NULL) {
            return false;
        }
        h->messages = bigger;
        h->capacity = capacity;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return false;
    }
    memcpy(copy, content, len);
    copy[len] = '\0';
    h->messages[h->count++] = (mr_chat_message){role, copy};
    return true;
}

static void history_free(chat_history *h) {
    for (int i = 0; i < h->count; i++) {
        free((char *)h->messages[i].content);
    }
    free(h->messages);
}

/* Runs the interactive chat; returns the exit code. */
static int run_chat(const generate_options *o, mr_llama *model, mr_tokenizer *tok,
                    mr_gguf *gguf) {
    mr_error err;
    mr_error_clear(&err);
    mr_chat_template kind;
    mr_status status = o->chat_template != NULL
                           ? mr_chat_template_parse(o->chat_template, &kind, &err)
                           : mr_chat_template_from_gguf(gguf, &kind, &err);
    if (status != MR_OK) {
        cli_error("%s (option --chat-template)", err.message);
        return 2;
    }
    fprintf(stderr, "generate: chat template %s; one message per line, end of input quits\n",
            mr_chat_template_name(kind));

    chat_history history = {0};
    int code = 0;
    if (o->system != NULL && !history_add(&history, "system", o->system, strlen(o->system))) {
        cli_error("out of memory");
        return 1;
    }

    mr_generate_params params = make_params(o);
    params.parse_special = true;
    char *line = NULL;
    size_t line_capacity = 0;
    for (;;) {
        fprintf(stderr, "> ");
        ssize_t got = getline(&line, &line_capacity, stdin);
        if (got < 0) {
            break;
        }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) {
            line[--got] = '\0';
        }
        if (got == 0) {
            continue;
        }
        if (!history_add(&history, "user", line, (size_t)got)) {
            cli_error("out of memory");
            code = 1;
            break;
        }

        char *prompt = NULL;
        size_t prompt_len = 0;
        mr_generation g;
        status = mr_chat_render(kind, history.messages, history.count, true, &prompt, &prompt_len,
                                &err);
        if (status == MR_OK) {
            status = mr_generate(model, tok, prompt, &params, &g, &err);
        }
        free(prompt);
        if (status != MR_OK) {
            /* The turn is dropped so that the session can go on. */
            cli_error("generation failed: %s", err.message);
            free((char *)history.messages[--history.count].content);
            continue;
        }
        printf("\n");
        fflush(stdout);
        print_stats(&g);
        bool added = history_add(&history, "assistant", g.text, g.text_len);
        mr_generation_free(&g);
        if (!added) {
            cli_error("out of memory");
            code = 1;
            break;
        }
    }
    free(line);
    history_free(&history);
    return code;
}

int cli_generate(int argc, char **argv) {
    generate_options o;
    int code = parse_options(argc, argv, &o);
    if (code >= 0) {
        return code;
    }

    mr_llama *model;
    mr_tokenizer *tok;
    mr_gguf *gguf;
    if (cli_lm_open(o.model_path, o.lora_dir, &model, &tok, &gguf) != 0) {
        return 1;
    }

    if (o.chat) {
        code = run_chat(&o, model, tok, gguf);
    } else {
        mr_generate_params params = make_params(&o);
        mr_generation g;
        mr_error err;
        mr_error_clear(&err);
        if (mr_generate(model, tok, o.prompt, &params, &g, &err) != MR_OK) {
            cli_error("generation failed: %s", err.message);
            code = 1;
        } else {
            printf("\n");
            fflush(stdout);
            print_stats(&g);
            mr_generation_free(&g);
            code = 0;
        }
    }

    mr_llama_free(model);
    mr_tokenizer_free(tok);
    mr_gguf_close(gguf);
    return code;
}

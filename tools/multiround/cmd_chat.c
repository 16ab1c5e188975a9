/*
 * `multiround chat`: a conversation with a model through mr_llm, either
 * an OpenAI-compatible server (--url, --model) or a GGUF model run
 * in-process (-m). Each stdin line is a user turn, and the whole
 * conversation goes with every request. On a terminal it prompts and keeps
 * going after a failed turn. Otherwise it reads every line as a turn and
 * stops at the first failure.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "multiround/llm.h"
#include "multiround/serve.h"

typedef struct chat_options {
    const char *url;
    const char *model_name;
    const char *model_path;
    const char *lora_dir;
    const char *chat_template;
    const char *system;
    cli_sampling sampling; /* options not given are left to the back end */
    double timeout_s;
} chat_options;

/* Fills sampling with the options an mr_llm request carries and, as the
 * defaults shown, those of a model run in-process (-m). */
static void sampling_defaults(cli_sampling *sampling) {
    mr_local_model_config local;
    mr_local_model_config_init(&local);
    cli_sampling_init(sampling, CLI_SAMPLING_LLM_REQUEST, local.default_max_tokens);
}

static void print_help(void) {
    cli_sampling defaults;
    sampling_defaults(&defaults);
    printf("usage: multiround chat (--url URL --model NAME | -m MODEL) [OPTIONS]\n\n"
           "Chats with a language model. Each line of stdin is one user message; the\n"
           "reply goes to stdout and its token counts to stderr. /reset starts a new\n"
           "conversation (keeping --system) and /quit ends the session. When stdin is\n"
           "not a terminal, every line is a turn and the first failed turn ends the\n"
           "run with exit code 1.\n\n"
           "options:\n"
           "  --url URL               OpenAI-compatible API root, such as\n"
           "                          http://127.0.0.1:8080/v1\n"
           "  --model NAME            model id sent to the server (with --url)\n"
           "  -m, --model-path PATH   GGUF model run in-process instead of a server\n"
           "  --lora DIR              with -m: PEFT LoRA adapter folder, merged into the\n"
           "                          weights at load\n"
           "  --chat-template NAME    with -m: chatml, llama3 or llama2 (default:\n"
           "                          recognised from the file; needed when the file has\n"
           "                          none this build renders)\n"
           "  --system TEXT           system message before the first turn (default: none)\n"
           "  --timeout S             seconds per request with --url (default: 600)\n");
    cli_print_sampling_options(stdout, &defaults, "a new one per request");
    cli_print_shared_options(stdout, 26);
    printf("\nWith --url, the sampling options that are not given are not sent, so the\n"
           "server's defaults apply.\n");
}

/* The options of chat that take a value, besides the sampling options. */
static const char *const valued_options[] = {
    "--url", "--model", "-m", "--model-path", "--lora", "--chat-template", "--system",
    "--timeout", NULL};

/* Parses one option that takes a value (one of valued_options). */
static bool parse_valued_option(const char *option, const char *value, chat_options *o) {
    if (strcmp(option, "--url") == 0) {
        o->url = value;
    } else if (strcmp(option, "--model") == 0) {
        o->model_name = value;
    } else if (strcmp(option, "-m") == 0 || strcmp(option, "--model-path") == 0) {
        o->model_path = value;
    } else if (strcmp(option, "--lora") == 0) {
        o->lora_dir = value;
    } else if (strcmp(option, "--chat-template") == 0) {
        o->chat_template = value;
    } else if (strcmp(option, "--system") == 0) {
        o->system = value;
    } else if (strcmp(option, "--timeout") == 0) {
        return cli_parse_double(option, value, 0.001, 86400.0, &o->timeout_s);
    }
    return true;
}

/* Parses chat's options; returns -1 to continue, otherwise the exit code. */
static int parse_options(int argc, char **argv, chat_options *o) {
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
        int sampling = cli_parse_sampling_option("chat", argc, argv, &i, &o->sampling);
        if (sampling < 0) {
            return 2;
        }
        if (sampling > 0) {
            continue;
        }
        const char *value = cli_option_value("chat", valued_options, argc, argv, i);
        if (value == NULL || !parse_valued_option(option, value, o)) {
            return 2;
        }
        i++;
    }
    bool http = o->url != NULL || o->model_name != NULL;
    if (http == (o->model_path != NULL)) {
        cli_error("chat needs either --url URL --model NAME or -m MODEL.gguf");
        return 2;
    }
    if (http && (o->url == NULL || o->model_name == NULL)) {
        cli_error("chat over HTTP needs both --url URL and --model NAME");
        return 2;
    }
    if (http && (o->lora_dir != NULL || o->chat_template != NULL)) {
        cli_error("--lora and --chat-template apply to a model run in-process (-m); the "
                  "server at --url sets its own");
        return 2;
    }
    return -1;
}

/* The conversation; contents are owned copies. */
typedef struct conversation {
    mr_llm_message *messages;
    int count;
    int capacity;
} conversation;

static bool conversation_add(conversation *c, const char *role, const char *content) {
    if (c->count == c->capacity) {
        int capacity = c->capacity == 0 ? 16 : 2 * c->capacity;
        mr_llm_message *bigger = realloc(c->messages, (size_t)capacity * sizeof *bigger);
        if (bigger == NULL) {
            return false;
        }
        c->messages = bigger;
        c->capacity = capacity;
    }
    char *copy = strdup(content);
    if (copy == NULL) {
        return false;
    }
    c->messages[c->count++] = (mr_llm_message){role, copy};
    return true;
}

/* Drops messages from index keep on. */
static void conversation_truncate(conversation *c, int keep) {
    while (c->count > keep) {
        free((char *)c->messages[--c->count].content);
    }
}

/* Opens the GGUF model of -m and wraps it in a handle that borrows it.
 * Returns NULL with an error printed, and *model NULL, on failure. */
static mr_llm *open_local(const chat_options *o, mr_local_model **model) {
    *model = NULL;
    if (!cli_check_input_file("model", o->model_path)) {
        return NULL;
    }
    mr_error err;
    mr_error_clear(&err);
    mr_local_model_config config;
    mr_local_model_config_init(&config);
    config.path = o->model_path;
    config.lora_dir = o->lora_dir;
    config.chat_template = o->chat_template;
    *model = mr_local_model_open(&config, &err);
    if (*model == NULL) {
        cli_error("%s", err.message);
        return NULL;
    }

    /* Every turn is a chat request, so a model without a template could
     * answer none of them. */
    if (mr_local_model_chat_template(*model) == NULL) {
        cli_error("%s has no chat template that this build renders; set one with "
                  "--chat-template chatml|llama3|llama2",
                  o->model_path);
        mr_local_model_close(*model);
        *model = NULL;
        return NULL;
    }
    mr_llm *llm = mr_llm_local_wrap(*model, NULL, &err);
    if (llm == NULL) {
        cli_error("%s", err.message);
        mr_local_model_close(*model);
        *model = NULL;
    }
    return llm;
}

/* Opens the model handle the options select; NULL with an error printed.
 * With -m, *model receives the in-process model, which the caller closes
 * after the handle. */
static mr_llm *open_llm(const chat_options *o, mr_local_model **model) {
    *model = NULL;
    if (o->model_path != NULL) {
        return open_local(o, model);
    }
    mr_error err;
    mr_error_clear(&err);
    mr_llm_http_config config;
    mr_llm_http_config_init(&config);
    config.base_url = o->url;
    config.model = o->model_name;
    if (o->timeout_s > 0) {
        config.timeout_s = o->timeout_s;
    }
    mr_llm *llm = mr_llm_http_create(&config, NULL, &err);
    if (llm == NULL) {
        cli_error("%s", err.message);
    }
    return llm;
}

/* Sends the conversation and adds the reply. Returns false (error
 * printed, turn removed) when the request fails. */
static bool run_turn(mr_llm *llm, const chat_options *o, conversation *c) {
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.kind = MR_LLM_CHAT;
    request.messages = c->messages;
    request.n_messages = c->count;

    /* Only the options given are sent, so the back end's defaults apply to
     * the rest. */
    const cli_sampling *sampling = &o->sampling;
    if (sampling->given & CLI_SAMPLING_MAX_TOKENS) {
        request.max_tokens = (int)sampling->max_tokens;
    }
    if (sampling->given & CLI_SAMPLING_TEMPERATURE) {
        request.temperature = sampling->temperature;
    }
    if (sampling->given & CLI_SAMPLING_TOP_P) {
        request.top_p = sampling->top_p;
    }
    if (sampling->given & CLI_SAMPLING_SEED) {
        request.use_seed = true;
        request.seed = sampling->seed;
    }
    for (int i = 0; i < sampling->n_stop; i++) {
        request.stop[i] = sampling->stops[i];
    }
    request.n_stop = sampling->n_stop;

    mr_llm_result result;
    mr_error err;
    mr_error_clear(&err);
    mr_status status = mr_llm_complete(llm, &request, &result, &err);
    if (status != MR_OK) {
        cli_error("the request failed: %s", err.message);
        mr_llm_result_free(&result);
        conversation_truncate(c, c->count - 1);
        return false;
    }
    printf("%s\n", result.text);
    fflush(stdout);
    fprintf(stderr, "[%lld prompt + %lld completion tokens, finish %s, %.2f s]\n",
            (long long)result.prompt_tokens, (long long)result.completion_tokens,
            result.finish_reason[0] != '\0' ? result.finish_reason : "unknown",
            result.latency_s);
    bool added = conversation_add(c, "assistant", result.text);
    mr_llm_result_free(&result);
    if (!added) {
        cli_error("out of memory");
    }
    return added;
}

int cli_chat(int argc, char **argv) {
    chat_options o;
    int code = parse_options(argc, argv, &o);
    if (code >= 0) {
        return code;
    }
    mr_local_model *local_model = NULL;
    mr_llm *llm = open_llm(&o, &local_model);
    if (llm == NULL) {
        return 1;
    }

    bool interactive = isatty(fileno(stdin)) != 0;
    conversation c = {0};
    int n_system = 0;
    if (o.system != NULL) {
        if (!conversation_add(&c, "system", o.system)) {
            cli_error("out of memory");
            mr_llm_free(llm);
            mr_local_model_close(local_model);
            return 1;
        }
        n_system = 1;
    }
    if (interactive) {
        fprintf(stderr, "chat with '%s': one message per line, /reset for a new "
                        "conversation, /quit to end\n",
                mr_llm_name(llm));
    }

    char *line = NULL;
    size_t line_capacity = 0;
    for (;;) {
        if (interactive) {
            fprintf(stderr, "> ");
        }
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
        if (strcmp(line, "/quit") == 0) {
            break;
        }
        if (strcmp(line, "/reset") == 0) {
            conversation_truncate(&c, n_system);
            fprintf(stderr, "[new conversation]\n");
            continue;
        }
        if (!conversation_add(&c, "user", line)) {
            cli_error("out of memory");
            code = 1;
            break;
        }
        if (!run_turn(llm, &o, &c) && !interactive) {
            code = 1;
            break;
        }
    }
    if (code < 0) {
        code = 0;
    }

    free(line);
    conversation_truncate(&c, 0);
    free(c.messages);
    mr_llm_free(llm);
    mr_local_model_close(local_model);
    return code;
}

/*
 * `multiround serve`: an OpenAI-compatible HTTP server over a GGUF model
 * run in-process (docs/serve.md). The main thread waits for SIGINT or
 * SIGTERM and then stops the server cleanly.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "multiround/serve.h"

typedef struct serve_options {
    mr_local_model_config model;
    mr_server_config server;
} serve_options;

static void print_help(void) {
    mr_server_config d;
    mr_server_config_init(&d);
    printf("usage: multiround serve -m MODEL [OPTIONS]\n\n"
           "Serves a GGUF model over HTTP with OpenAI's API: GET /v1/models, POST\n"
           "/v1/completions and POST /v1/chat/completions, streamed with \"stream\": true.\n"
           "One request runs at a time; others wait in a bounded queue. SIGINT or SIGTERM\n"
           "stops the server. One log line per request goes to stderr.\n\n"
           "options:\n"
           "  -m, --model PATH        GGUF model file (required)\n"
           "  --lora DIR              PEFT LoRA adapter folder, merged into the weights\n"
           "                          at load\n"
           "  --name ID               model id in replies (default: the file name without\n"
           "                          .gguf)\n"
           "  --host ADDR             IPv4 address to listen on (default: %s; any other\n"
           "                          than a loopback address logs a warning)\n"
           "  --port N                TCP port; 0 lets the OS pick (default: %d)\n"
           "  --queue N               requests that may wait behind the running one; more\n"
           "                          get HTTP 503 (default: %d)\n"
           "  --max-body BYTES        largest request body; larger get HTTP 413\n"
           "                          (default: %zu)\n"
           "  --max-connections N     open connections at most, one thread each\n"
           "                          (default: %d)\n"
           "  --ctx N                 positions per request, prompt and output together\n"
           "                          (default: 0, the model's context length)\n"
           "  --max-tokens N          output tokens when a request sets no max_tokens\n"
           "                          (default: 256)\n"
           "  --chat-template NAME    chatml, llama3 or llama2 (default: recognised from\n"
           "                          the file; without one, chat requests get HTTP 400)\n"
           "  --shutdown-timeout S    seconds the running request may take to finish after\n"
           "                          SIGINT or SIGTERM before it is cancelled (default: %g)\n"
           "  --token-delay-ms N      pause after each streamed piece of text, to imitate\n"
           "                          a slower model in tests (default: 0)\n",
           d.host, d.port, d.queue, d.max_body, d.max_connections, d.shutdown_timeout_s);
    cli_print_shared_options(stdout, 26);
}

/* Parses text as a finite number of seconds >= 0. */
static bool parse_seconds(const char *option, const char *text, double *value) {
    char *end = NULL;
    errno = 0;
    double parsed = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !isfinite(parsed) || parsed < 0 ||
        parsed > 86400) {
        cli_error("%s must be a number of seconds from 0 to 86400, got '%s'", option, text);
        return false;
    }
    *value = parsed;
    return true;
}

/* The options of serve that take a value. */
static const char *const valued_options[] = {
    "-m",      "--model",     "--lora",      "--name",           "--chat-template",
    "--host",  "--ctx",       "--max-tokens", "--port",          "--queue",
    "--max-body", "--max-connections", "--shutdown-timeout", "--token-delay-ms", NULL};

/* Parses one option that takes a value (one of valued_options); prints
 * an error and returns false on a bad value. */
static bool parse_valued_option(const char *option, const char *value, serve_options *o) {
    int64_t number = 0;
    if (strcmp(option, "-m") == 0 || strcmp(option, "--model") == 0) {
        o->model.path = value;
    } else if (strcmp(option, "--lora") == 0) {
        o->model.lora_dir = value;
    } else if (strcmp(option, "--name") == 0) {
        o->model.id = value;
    } else if (strcmp(option, "--chat-template") == 0) {
        o->model.chat_template = value;
    } else if (strcmp(option, "--host") == 0) {
        o->server.host = value;
    } else if (strcmp(option, "--ctx") == 0) {
        if (!cli_parse_int64(option, value, 0, INT32_MAX, &number)) {
            return false;
        }
        o->model.context_length = (int)number;
    } else if (strcmp(option, "--max-tokens") == 0) {
        if (!cli_parse_int64(option, value, 1, 1000000, &number)) {
            return false;
        }
        o->model.default_max_tokens = (int)number;
    } else if (strcmp(option, "--port") == 0) {
        if (!cli_parse_int64(option, value, 0, 65535, &number)) {
            return false;
        }
        o->server.port = (int)number;
    } else if (strcmp(option, "--queue") == 0) {
        if (!cli_parse_int64(option, value, 0, 1000000, &number)) {
            return false;
        }
        o->server.queue = (int)number;
    } else if (strcmp(option, "--max-body") == 0) {
        if (!cli_parse_int64(option, value, 1, INT64_MAX, &number)) {
            return false;
        }
        o->server.max_body = (size_t)number;
    } else if (strcmp(option, "--max-connections") == 0) {
        if (!cli_parse_int64(option, value, 1, 100000, &number)) {
            return false;
        }
        o->server.max_connections = (int)number;
    } else if (strcmp(option, "--shutdown-timeout") == 0) {
        return parse_seconds(option, value, &o->server.shutdown_timeout_s);
    } else if (strcmp(option, "--token-delay-ms") == 0) {
        if (!cli_parse_int64(option, value, 0, 60000, &number)) {
            return false;
        }
        o->server.token_delay_s = (double)number / 1000.0;
    } else {
        cli_error("unknown option '%s' for serve; run 'multiround serve --help'", option);
        return false;
    }
    return true;
}

/* Parses serve's options; returns -1 to continue, otherwise the exit
 * code (0 after --help, 2 on a usage error). */
static int parse_options(int argc, char **argv, serve_options *o) {
    mr_local_model_config_init(&o->model);
    mr_server_config_init(&o->server);
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
        const char *value = cli_option_value("serve", valued_options, argc, argv, i);
        if (value == NULL || !parse_valued_option(option, value, o)) {
            return 2;
        }
        i++;
    }
    if (o->model.path == NULL) {
        cli_error("serve needs a model: -m MODEL.gguf");
        return 2;
    }
    return -1;
}

int cli_serve(int argc, char **argv) {
    serve_options o;
    int code = parse_options(argc, argv, &o);
    if (code >= 0) {
        return code;
    }

    /* SIGINT and SIGTERM are blocked before any thread starts, so every
     * server thread inherits the mask and only sigwait() below receives
     * them. SIGPIPE is ignored so that a closed client connection cannot
     * kill the process. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!cli_check_input_file("model", o.model.path)) {
        return 1;
    }
    mr_error err;
    mr_error_clear(&err);
    mr_local_model *model = mr_local_model_open(&o.model, &err);
    if (model == NULL) {
        cli_error("cannot open the model: %s", err.message);
        return 1;
    }
    mr_server *server = mr_server_start(&o.server, model, &err);
    if (server == NULL) {
        cli_error("%s", err.message);
        mr_local_model_close(model);
        return 1;
    }

    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    mr_log(MR_LOG_INFO, "serve", "received %s; stopping (running request gets up to %g s)",
           signal_number == SIGINT ? "SIGINT" : "SIGTERM", o.server.shutdown_timeout_s);
    mr_server_stop(server);
    mr_local_model_close(model);
    return 0;
}

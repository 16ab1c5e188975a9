/*
 * The local back end: a GGUF model run in-process (src/lm/) behind the
 * mr_llm interface, and the prompt preparation that the HTTP server of
 * src/serve/ shares with it.
 *
 * Concurrency: a mutex serialises generation, so one request runs at a
 * time in arrival order of the lock. Each request allocates its own KV
 * cache inside mr_generate_tokens(). Preparing a prompt (rendering and
 * encoding) needs no lock, because the tokenizer is immutable.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiround/generate.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/lora.h"
#include "multiround/serve.h"
#include "multiround/tokenizer.h"

#define DEFAULT_MAX_TOKENS 256

struct mr_local_model {
    mr_llama *llama;
    mr_tokenizer *tok;
    char *id;
    bool has_template;
    mr_chat_template template_kind;
    int context_length;
    int default_max_tokens;
    atomic_uint_fast64_t next_seed; /* seeds of requests that set none */
    pthread_mutex_t lock;           /* serialises generation */
};

void mr_local_model_config_init(mr_local_model_config *config) {
    memset(config, 0, sizeof *config);
    config->default_max_tokens = DEFAULT_MAX_TOKENS;
}

/* Returns a copy of the file name of path without its folder and a
 * trailing ".gguf", or NULL when out of memory. */
static char *id_from_path(const char *path) {
    const char *name = strrchr(path, '/');
    name = name != NULL ? name + 1 : path;
    size_t len = strlen(name);
    if (len > 5 && strcmp(name + len - 5, ".gguf") == 0) {
        len -= 5;
    }
    char *id = malloc(len + 1);
    if (id != NULL) {
        memcpy(id, name, len);
        id[len] = '\0';
    }
    return id;
}

/* Picks the chat template: the configured name, else the file's
 * tokenizer.chat_template when it is one this build renders. */
static mr_status pick_template(mr_local_model *model, const mr_local_model_config *config,
                               const mr_gguf *gguf, mr_error *err) {
    if (config->chat_template != NULL) {
        mr_status status = mr_chat_template_parse(config->chat_template, &model->template_kind,
                                                  err);
        model->has_template = status == MR_OK;
        return status;
    }

    mr_error detect_err;
    mr_error_clear(&detect_err);
    model->has_template = mr_chat_template_from_gguf(gguf, &model->template_kind,
                                                     &detect_err) == MR_OK;
    if (!model->has_template) {
        mr_log(MR_LOG_INFO, "llm",
               "local model '%s' has no chat template this build renders (%s); it serves "
               "text completions only, unless a chat template is set by name",
               model->id, detect_err.message);
    }
    return MR_OK;
}

mr_local_model *mr_local_model_open(const mr_local_model_config *config, mr_error *err) {
    if (config == NULL || config->path == NULL || config->path[0] == '\0') {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "llm local: the model path is missing; give a GGUF file");
        return NULL;
    }
    if (config->default_max_tokens < 1) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "llm local: default_max_tokens is %d; use a count >= 1",
                     config->default_max_tokens);
        return NULL;
    }

    mr_local_model *model = calloc(1, sizeof *model);
    if (model == NULL || pthread_mutex_init(&model->lock, NULL) != 0) {
        free(model);
        mr_error_set(err, MR_ERR_NO_MEMORY, "llm local: out of memory opening %s",
                     config->path);
        return NULL;
    }
    model->default_max_tokens = config->default_max_tokens;
    atomic_init(&model->next_seed, (uint_fast64_t)time(NULL));
    model->id = config->id != NULL ? strdup(config->id) : id_from_path(config->path);
    if (model->id == NULL) {
        mr_error_set(err, MR_ERR_NO_MEMORY, "llm local: out of memory opening %s",
                     config->path);
        mr_local_model_close(model);
        return NULL;
    }

    mr_gguf *gguf = NULL;
    mr_status status = mr_gguf_open(config->path, &gguf, err);
    if (status == MR_OK) {
        status = mr_tokenizer_from_gguf(gguf, &model->tok, err);
    }
    if (status == MR_OK) {
        status = pick_template(model, config, gguf, err);
    }
    mr_gguf_close(gguf);
    if (status == MR_OK) {
        model->llama = mr_llama_load_gguf(config->path, err);
        status = model->llama != NULL ? MR_OK : (err != NULL ? err->status : MR_ERR_FORMAT);
    }
    if (status == MR_OK && config->lora_dir != NULL) {
        status = mr_lora_merge_peft(model->llama, config->lora_dir, err);
        if (status == MR_OK) {
            mr_log(MR_LOG_INFO, "llm", "local model '%s': merged the LoRA adapter %s",
                   model->id, config->lora_dir);
        }
    }
    if (status != MR_OK) {
        mr_local_model_close(model);
        return NULL;
    }

    int model_context = mr_llama_get_config(model->llama)->context_length;
    if (config->context_length < 0 || config->context_length > model_context) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                     "llm local: context_length %d is out of range for %s; use 1 to %d, or 0 "
                     "for the model's",
                     config->context_length, config->path, model_context);
        mr_local_model_close(model);
        return NULL;
    }
    model->context_length = config->context_length > 0 ? config->context_length : model_context;
    mr_log(MR_LOG_INFO, "llm", "local model '%s' from %s: context %d, chat template %s",
           model->id, config->path, model->context_length,
           model->has_template ? mr_chat_template_name(model->template_kind) : "none");
    return model;
}

void mr_local_model_close(mr_local_model *model) {
    if (model == NULL) {
        return;
    }
    mr_llama_free(model->llama);
    mr_tokenizer_free(model->tok);
    pthread_mutex_destroy(&model->lock);
    free(model->id);
    free(model);
}

const char *mr_local_model_id(const mr_local_model *model) { return model->id; }

int mr_local_model_context_length(const mr_local_model *model) { return model->context_length; }

const char *mr_local_model_chat_template(const mr_local_model *model) {
    return model->has_template ? mr_chat_template_name(model->template_kind) : NULL;
}

/* ------------------------------------------------------------------------
 * Prompts
 * ------------------------------------------------------------------------ */

void mr_local_prompt_free(mr_local_prompt *prompt) {
    if (prompt == NULL) {
        return;
    }
    free(prompt->ids);
    for (int i = 0; i < prompt->n_stop; i++) {
        free(prompt->stop[i]);
    }
    memset(prompt, 0, sizeof *prompt);
}

/* Renders the request's messages with the model's template into *text;
 * the caller frees it. */
static mr_status render_chat(const mr_local_model *model, const mr_llm_request *request,
                             char **text, size_t *len, mr_error *err) {
    if (!model->has_template) {
        return mr_error_set(err, MR_ERR_UNSUPPORTED,
                            "model '%s' has no chat template; use a text completion, or "
                            "load the model with a template set by name (--chat-template "
                            "chatml|llama3|llama2 in multiround serve and chat)",
                            model->id);
    }
    mr_chat_message *messages = malloc((size_t)request->n_messages * sizeof *messages);
    if (messages == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llm local: out of memory for %d messages",
                            request->n_messages);
    }
    for (int i = 0; i < request->n_messages; i++) {
        messages[i].role = request->messages[i].role;
        messages[i].content = request->messages[i].content;
    }
    mr_status status = mr_chat_render(model->template_kind, messages, request->n_messages, true,
                                      text, len, err);
    free(messages);
    return status;
}

/* Encodes text into a new array of ids. */
static mr_status encode_prompt(const mr_local_model *model, const char *text, size_t len,
                               bool parse_special, mr_local_prompt *prompt, mr_error *err) {
    bool add_bos = mr_tokenizer_add_bos_default(model->tok);

    /* A size query first: cap 0 reports the needed count with an error
     * that only matters when no id came back. */
    int64_t needed = 0;
    mr_error query_err;
    mr_error_clear(&query_err);
    mr_status status = mr_tokenizer_encode(model->tok, text, len, add_bos, parse_special, NULL, 0,
                                           &needed, &query_err);
    if (needed == 0) {
        if (status != MR_OK) {
            return mr_error_set(err, query_err.status, "%s", query_err.message);
        }
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "the prompt encodes to no tokens; give a non-empty prompt");
    }
    if (needed >= model->context_length) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "the prompt has %lld tokens but model '%s' takes %d positions per "
                            "request, prompt and output together; shorten the prompt",
                            (long long)needed, model->id, model->context_length);
    }

    prompt->ids = malloc((size_t)needed * sizeof *prompt->ids);
    if (prompt->ids == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "llm local: out of memory for %lld ids",
                            (long long)needed);
    }
    int64_t n = 0;
    status = mr_tokenizer_encode(model->tok, text, len, add_bos, parse_special, prompt->ids,
                                 needed, &n, err);
    prompt->n_ids = (int)n;
    return status;
}

mr_status mr_local_prompt_prepare(mr_local_model *model, const mr_llm_request *request,
                                  mr_local_prompt *prompt, mr_error *err) {
    memset(prompt, 0, sizeof *prompt);
    if (request->kind == MR_LLM_CHAT && (request->messages == NULL || request->n_messages < 1)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "a chat request needs at least one message");
    }
    if (request->kind == MR_LLM_COMPLETION && request->prompt == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "a completion request needs a prompt");
    }

    char *rendered = NULL;
    size_t rendered_len = 0;
    mr_status status = MR_OK;
    if (request->kind == MR_LLM_CHAT) {
        status = render_chat(model, request, &rendered, &rendered_len, err);
    }
    if (status == MR_OK) {
        const char *text = rendered != NULL ? rendered : request->prompt;
        size_t len = rendered != NULL ? rendered_len : strlen(request->prompt);
        status = encode_prompt(model, text, len, request->kind == MR_LLM_CHAT, prompt, err);
    }
    free(rendered);
    if (status != MR_OK) {
        mr_local_prompt_free(prompt);
        return status;
    }

    mr_generate_params *params = &prompt->params;
    mr_generate_params_default(params);
    int room = model->context_length - prompt->n_ids;
    int wanted = request->max_tokens > 0 ? request->max_tokens : model->default_max_tokens;
    params->max_tokens = wanted < room ? wanted : room;
    if (request->temperature >= 0) {
        params->sampler.temperature = (float)request->temperature;
    }
    if (request->top_p > 0) {
        params->sampler.top_p = (float)request->top_p;
    }
    params->sampler.seed = request->use_seed ? (uint64_t)request->seed
                                             : (uint64_t)atomic_fetch_add(&model->next_seed, 1);
    for (int i = 0; i < request->n_stop && i < MR_LLM_STOP_MAX; i++) {
        prompt->stop[i] = strdup(request->stop[i]);
        if (prompt->stop[i] == NULL) {
            mr_local_prompt_free(prompt);
            return mr_error_set(err, MR_ERR_NO_MEMORY, "llm local: out of memory for the stop "
                                                       "strings");
        }
        prompt->n_stop = i + 1;
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Generation
 * ------------------------------------------------------------------------ */

mr_status mr_local_model_generate(mr_local_model *model, const mr_local_prompt *prompt,
                                  mr_generate_stream_fn stream, void *stream_user_data,
                                  mr_llm_result *result, mr_error *err) {
    mr_generate_params params = prompt->params;
    params.stop = (const char *const *)prompt->stop;
    params.n_stop = prompt->n_stop;
    params.stream = stream;
    params.stream_user_data = stream_user_data;

    mr_generation generation;
    pthread_mutex_lock(&model->lock);

    /* OpenMP keeps the thread count per calling thread, so a server or
     * batch thread takes over the process-wide setting here. */
    mr_threads_set(mr_threads_get());
    mr_status status = mr_generate_tokens(model->llama, model->tok, prompt->ids, prompt->n_ids,
                                          &params, &generation, err);
    pthread_mutex_unlock(&model->lock);
    if (status != MR_OK) {
        return status;
    }

    /* The result takes the text over from the generation. */
    result->text = generation.text;
    generation.text = NULL;
    result->prompt_tokens = generation.prompt_tokens;
    result->completion_tokens = generation.completion_tokens;
    result->usage_reported = true;
    snprintf(result->finish_reason, sizeof result->finish_reason, "%s",
             mr_finish_reason_name(generation.finish_reason));
    snprintf(result->model, sizeof result->model, "%s", model->id);
    result->http_status = 0;
    result->attempts = 1;
    mr_generation_free(&generation);
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * The mr_llm back end
 * ------------------------------------------------------------------------ */

/* The back end's state: the model and whether the handle owns it. */
typedef struct local_state {
    mr_local_model *model;
    bool owns_model;
} local_state;

static mr_status complete_local(void *opaque, const mr_llm_request *request,
                                mr_llm_result *result, mr_error *err) {
    local_state *state = opaque;
    mr_local_prompt prompt;
    mr_status status = mr_local_prompt_prepare(state->model, request, &prompt, err);
    if (status == MR_OK) {
        status = mr_local_model_generate(state->model, &prompt, NULL, NULL, result, err);
    }
    mr_local_prompt_free(&prompt);
    return status;
}

static void free_local_state(void *opaque) {
    local_state *state = opaque;
    if (state != NULL && state->owns_model) {
        mr_local_model_close(state->model);
    }
    free(state);
}

static const mr_llm_backend local_backend = {
    .name = "local",
    .complete = complete_local,
    .free_state = free_local_state,
};

/* Creates the handle; on failure closes model when owns_model is set. */
static mr_llm *create_handle(mr_local_model *model, bool owns_model, const char *name,
                             mr_error *err) {
    local_state *state = calloc(1, sizeof *state);
    if (state == NULL) {
        if (owns_model) {
            mr_local_model_close(model);
        }
        mr_error_set(err, MR_ERR_NO_MEMORY, "llm local: out of memory");
        return NULL;
    }
    state->model = model;
    state->owns_model = owns_model;
    return mr_llm_create(&local_backend, state, name != NULL ? name : model->id, err);
}

mr_llm *mr_llm_local_wrap(mr_local_model *model, const char *name, mr_error *err) {
    if (model == NULL) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "mr_llm_local_wrap: model is NULL");
        return NULL;
    }
    return create_handle(model, false, name, err);
}

mr_llm *mr_llm_local_open(const mr_local_model_config *config, const char *name,
                          mr_error *err) {
    mr_local_model *model = mr_local_model_open(config, err);
    if (model == NULL) {
        return NULL;
    }
    return create_handle(model, true, name, err);
}

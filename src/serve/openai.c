/*
 * The server's side of the OpenAI JSON: request bodies of /v1/completions
 * and /v1/chat/completions checked field by field, and the reply, chunk,
 * error and model-list bodies. Field names and layouts follow OpenAI's
 * API reference, as the HTTP back end of src/llm/ reads them.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve_internal.h"

/* The largest integer that a JSON number (a double in cJSON) represents
 * exactly. */
#define EXACT_INTEGER_MAX 9007199254740992.0

/* Largest max_tokens a request may ask for; the context caps it further. */
#define MAX_TOKENS_LIMIT 1000000

/* Stores the field name and a message; returns MR_ERR_INVALID_ARGUMENT. */
static mr_status field_error(char *param, size_t param_size, const char *field, mr_error *err,
                             const char *fmt, ...) MR_PRINTF(5, 6);

static mr_status field_error(char *param, size_t param_size, const char *field, mr_error *err,
                             const char *fmt, ...) {
    snprintf(param, param_size, "%s", field);
    if (err != NULL) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, args);
        va_end(args);
        err->status = MR_ERR_INVALID_ARGUMENT;
    }
    return MR_ERR_INVALID_ARGUMENT;
}

/* Returns the JSON type of item in words, for messages. */
static const char *type_name(const cJSON *item) {
    if (cJSON_IsNull(item)) {
        return "null";
    }
    if (cJSON_IsBool(item)) {
        return "a boolean";
    }
    if (cJSON_IsNumber(item)) {
        return "a number";
    }
    if (cJSON_IsString(item)) {
        return "a string";
    }
    if (cJSON_IsArray(item)) {
        return "an array";
    }
    return "an object";
}

/* Returns whether item is a number with an integer value that a double
 * represents exactly. */
static bool is_integer(const cJSON *item) {
    return cJSON_IsNumber(item) && item->valuedouble == floor(item->valuedouble) &&
           fabs(item->valuedouble) <= EXACT_INTEGER_MAX;
}

/* ------------------------------------------------------------------------
 * Request fields
 * ------------------------------------------------------------------------ */

/*
 * Returns whether text is valid UTF-8: no stray continuation bytes, no
 * overlong forms, no UTF-16 surrogates and nothing above U+10FFFF. JSON
 * strings may carry raw invalid bytes through cJSON, and the tokenizer
 * and the reply's JSON both need valid text.
 */
static bool is_valid_utf8(const char *text) {
    const unsigned char *p = (const unsigned char *)text;
    while (*p != 0) {
        unsigned char c = p[0];
        int extra = 0;
        uint32_t min = 0, cp = 0;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            extra = 1, min = 0x80, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2, min = 0x800, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        for (int i = 1; i <= extra; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return false; /* also stops at the terminating NUL */
            }
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return false;
        }
        p += extra + 1;
    }
    return true;
}

/* Stores an error naming field when text is not valid UTF-8. */
static mr_status check_utf8(const char *text, const char *field, char *param,
                            size_t param_size, mr_error *err) {
    if (is_valid_utf8(text)) {
        return MR_OK;
    }
    return field_error(param, param_size, field, err,
                       "'%s' is not valid UTF-8; send text encoded as UTF-8", field);
}

/* Reads "messages": a non-empty array of objects with string role and
 * content. */
static mr_status read_messages(const cJSON *root, serve_request *out, char *param,
                               size_t param_size, mr_error *err) {
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (messages == NULL) {
        return field_error(param, param_size, "messages", err,
                           "'messages' is missing; a chat completion needs an array of "
                           "{\"role\", \"content\"} objects");
    }
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
        return field_error(param, param_size, "messages", err,
                           "'messages' is %s, expected a non-empty array",
                           cJSON_IsArray(messages) ? "empty" : type_name(messages));
    }

    int n = cJSON_GetArraySize(messages);
    out->messages = calloc((size_t)n, sizeof *out->messages);
    if (out->messages == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "serve: out of memory for %d messages", n);
    }
    int i = 0;
    char field[64];
    for (const cJSON *message = messages->child; message != NULL; message = message->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(message, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(message, "content");
        if (!cJSON_IsObject(message)) {
            snprintf(field, sizeof field, "messages[%d]", i);
            return field_error(param, param_size, field, err, "'%s' is %s, expected an object",
                               field, type_name(message));
        }
        if (!cJSON_IsString(role)) {
            snprintf(field, sizeof field, "messages[%d].role", i);
            return field_error(param, param_size, field, err,
                               "'%s' is %s, expected a string: system, user or assistant",
                               field, role == NULL ? "missing" : type_name(role));
        }
        if (!cJSON_IsString(content)) {
            snprintf(field, sizeof field, "messages[%d].content", i);
            return field_error(param, param_size, field, err,
                               "'%s' is %s, expected a string (content arrays of parts are "
                               "not supported)",
                               field, content == NULL ? "missing" : type_name(content));
        }
        snprintf(field, sizeof field, "messages[%d].role", i);
        mr_status status = check_utf8(role->valuestring, field, param, param_size, err);
        if (status != MR_OK) {
            return status;
        }
        snprintf(field, sizeof field, "messages[%d].content", i);
        status = check_utf8(content->valuestring, field, param, param_size, err);
        if (status != MR_OK) {
            return status;
        }
        out->messages[i].role = role->valuestring;
        out->messages[i].content = content->valuestring;
    }
    out->request.messages = out->messages;
    out->request.n_messages = n;
    return MR_OK;
}

/* Reads "stop": null, a string, or an array of at most MR_LLM_STOP_MAX
 * non-empty strings. */
static mr_status read_stop(const cJSON *root, mr_llm_request *request, char *param,
                           size_t param_size, mr_error *err) {
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (stop == NULL || cJSON_IsNull(stop)) {
        return MR_OK;
    }
    if (cJSON_IsString(stop)) {
        if (check_utf8(stop->valuestring, "stop", param, param_size, err) != MR_OK) {
            return MR_ERR_INVALID_ARGUMENT;
        }
        if (stop->valuestring[0] != '\0') {
            request->stop[request->n_stop++] = stop->valuestring;
        }
        return MR_OK;
    }
    if (!cJSON_IsArray(stop)) {
        return field_error(param, param_size, "stop", err,
                           "'stop' is %s, expected a string or an array of strings",
                           type_name(stop));
    }
    int n = cJSON_GetArraySize(stop);
    if (n > MR_LLM_STOP_MAX) {
        return field_error(param, param_size, "stop", err,
                           "'stop' has %d strings; this server takes at most %d", n,
                           MR_LLM_STOP_MAX);
    }
    int i = 0;
    for (const cJSON *item = stop->child; item != NULL; item = item->next, i++) {
        if (!cJSON_IsString(item) || item->valuestring[0] == '\0') {
            char field[32];
            snprintf(field, sizeof field, "stop[%d]", i);
            return field_error(param, param_size, field, err,
                               "'%s' is %s, expected a non-empty string", field,
                               cJSON_IsString(item) ? "empty" : type_name(item));
        }
        char field[32];
        snprintf(field, sizeof field, "stop[%d]", i);
        if (check_utf8(item->valuestring, field, param, param_size, err) != MR_OK) {
            return MR_ERR_INVALID_ARGUMENT;
        }
        request->stop[request->n_stop++] = item->valuestring;
    }
    return MR_OK;
}

/* Reads the sampling fields: max_tokens (or max_completion_tokens),
 * temperature, top_p and seed. */
static mr_status read_sampling(const cJSON *root, mr_llm_kind kind, mr_llm_request *request,
                               char *param, size_t param_size, mr_error *err) {
    const char *max_name = "max_tokens";
    const cJSON *max_tokens = cJSON_GetObjectItemCaseSensitive(root, max_name);
    if ((max_tokens == NULL || cJSON_IsNull(max_tokens)) && kind == MR_LLM_CHAT) {
        max_name = "max_completion_tokens";
        max_tokens = cJSON_GetObjectItemCaseSensitive(root, max_name);
    }
    if (max_tokens != NULL && !cJSON_IsNull(max_tokens)) {
        if (!is_integer(max_tokens) || max_tokens->valuedouble < 1 ||
            max_tokens->valuedouble > MAX_TOKENS_LIMIT) {
            const char *problem = !cJSON_IsNumber(max_tokens) ? type_name(max_tokens)
                                  : !is_integer(max_tokens)   ? "not an integer"
                                                              : "out of range";
            return field_error(param, param_size, max_name, err,
                               "'%s' is %s; it must be an integer from 1 to %d", max_name,
                               problem, MAX_TOKENS_LIMIT);
        }
        request->max_tokens = (int)max_tokens->valuedouble;
    }

    const cJSON *temperature = cJSON_GetObjectItemCaseSensitive(root, "temperature");
    if (temperature != NULL && !cJSON_IsNull(temperature)) {
        if (!cJSON_IsNumber(temperature) || !(temperature->valuedouble >= 0) ||
            temperature->valuedouble > 2) {
            return field_error(param, param_size, "temperature", err,
                               "'temperature' is %s, expected a number in [0, 2]",
                               cJSON_IsNumber(temperature) ? "out of range"
                                                           : type_name(temperature));
        }
        request->temperature = temperature->valuedouble;
    }

    const cJSON *top_p = cJSON_GetObjectItemCaseSensitive(root, "top_p");
    if (top_p != NULL && !cJSON_IsNull(top_p)) {
        if (!cJSON_IsNumber(top_p) || !(top_p->valuedouble > 0) || top_p->valuedouble > 1) {
            return field_error(param, param_size, "top_p", err,
                               "'top_p' is %s, expected a number in (0, 1]",
                               cJSON_IsNumber(top_p) ? "out of range" : type_name(top_p));
        }
        request->top_p = top_p->valuedouble;
    }

    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (seed != NULL && !cJSON_IsNull(seed)) {
        if (!is_integer(seed)) {
            return field_error(param, param_size, "seed", err,
                               "'seed' is %s, expected an integer of at most 2^53 in "
                               "magnitude",
                               cJSON_IsNumber(seed) ? "not an exact integer" : type_name(seed));
        }
        request->use_seed = true;
        request->seed = (int64_t)seed->valuedouble;
    }
    return MR_OK;
}

/* Reads "stream" and "stream_options". */
static mr_status read_stream(const cJSON *root, serve_request *out, char *param,
                             size_t param_size, mr_error *err) {
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (stream != NULL && !cJSON_IsNull(stream)) {
        if (!cJSON_IsBool(stream)) {
            return field_error(param, param_size, "stream", err,
                               "'stream' is %s, expected true or false", type_name(stream));
        }
        out->stream = cJSON_IsTrue(stream);
    }

    const cJSON *options = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (options == NULL || cJSON_IsNull(options)) {
        return MR_OK;
    }
    if (!cJSON_IsObject(options)) {
        return field_error(param, param_size, "stream_options", err,
                           "'stream_options' is %s, expected an object", type_name(options));
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(options, "include_usage");
    if (usage != NULL && !cJSON_IsBool(usage)) {
        return field_error(param, param_size, "stream_options.include_usage", err,
                           "'stream_options.include_usage' is %s, expected true or false",
                           type_name(usage));
    }
    out->include_usage = cJSON_IsTrue(usage);
    return MR_OK;
}

/* A field the server does not implement, accepted only at its neutral
 * value so that a request never silently loses a setting. */
typedef enum neutral_kind {
    NEUTRAL_NULL,  /* only null */
    NEUTRAL_FALSE, /* null or false */
    NEUTRAL_ZERO,  /* null or 0 */
    NEUTRAL_ONE    /* null or 1 */
} neutral_kind;

static const struct {
    const char *name;
    neutral_kind neutral;
} unsupported_fields[] = {
    {"n", NEUTRAL_ONE},           {"best_of", NEUTRAL_ONE},
    {"logprobs", NEUTRAL_FALSE},  {"top_logprobs", NEUTRAL_NULL},
    {"echo", NEUTRAL_FALSE},      {"suffix", NEUTRAL_NULL},
    {"logit_bias", NEUTRAL_NULL}, {"frequency_penalty", NEUTRAL_ZERO},
    {"presence_penalty", NEUTRAL_ZERO}, {"tools", NEUTRAL_NULL},
    {"tool_choice", NEUTRAL_NULL}, {"functions", NEUTRAL_NULL},
    {"function_call", NEUTRAL_NULL}, {"response_format", NEUTRAL_NULL},
};

/* Rejects fields of the OpenAI API that the server does not implement
 * when they ask for something other than the default. */
static mr_status check_unsupported(const cJSON *root, char *param, size_t param_size,
                                   mr_error *err) {
    size_t n = sizeof unsupported_fields / sizeof unsupported_fields[0];
    for (size_t i = 0; i < n; i++) {
        const char *name = unsupported_fields[i].name;
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, name);
        if (item == NULL || cJSON_IsNull(item)) {
            continue;
        }
        neutral_kind neutral = unsupported_fields[i].neutral;
        bool neutral_value = (neutral == NEUTRAL_FALSE && cJSON_IsFalse(item)) ||
                             (neutral == NEUTRAL_ZERO && cJSON_IsNumber(item) &&
                              item->valuedouble == 0) ||
                             (neutral == NEUTRAL_ONE && cJSON_IsNumber(item) &&
                              item->valuedouble == 1);
        if (!neutral_value) {
            return field_error(param, param_size, name, err,
                               "'%s' is not supported by this server; leave it out", name);
        }
    }
    return MR_OK;
}

mr_status serve_request_parse(const char *body, size_t size, mr_llm_kind kind,
                              serve_request *out, char *param, size_t param_size,
                              mr_error *err) {
    memset(out, 0, sizeof *out);
    mr_llm_request_init(&out->request);
    out->request.kind = kind;
    param[0] = '\0';

    const char *end = NULL;
    out->root = cJSON_ParseWithLengthOpts(body, size, &end, false);
    if (out->root == NULL) {
        size_t offset = end != NULL && end >= body ? (size_t)(end - body) : 0;
        return field_error(param, param_size, "", err,
                           "the request body is not valid JSON: parsing failed at byte %zu "
                           "of %zu",
                           offset, size);
    }
    while (end < body + size && (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')) {
        end++;
    }
    if (end < body + size) {
        return field_error(param, param_size, "", err,
                           "the request body has extra bytes after its JSON value at byte "
                           "%zu of %zu",
                           (size_t)(end - body), size);
    }
    if (!cJSON_IsObject(out->root)) {
        return field_error(param, param_size, "", err,
                           "the request body is %s, expected a JSON object",
                           type_name(out->root));
    }

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(out->root, "model");
    if (model != NULL && !cJSON_IsNull(model) && !cJSON_IsString(model)) {
        return field_error(param, param_size, "model", err, "'model' is %s, expected a string",
                           type_name(model));
    }

    mr_status status = MR_OK;
    if (kind == MR_LLM_CHAT) {
        status = read_messages(out->root, out, param, param_size, err);
    } else {
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(out->root, "prompt");
        if (!cJSON_IsString(prompt)) {
            status = field_error(param, param_size, "prompt", err,
                                 "'prompt' is %s, expected a string (arrays of prompts or of "
                                 "token ids are not supported)",
                                 prompt == NULL ? "missing" : type_name(prompt));
        } else {
            status = check_utf8(prompt->valuestring, "prompt", param, param_size, err);
            out->request.prompt = prompt->valuestring;
        }
    }
    if (status == MR_OK) {
        status = read_sampling(out->root, kind, &out->request, param, param_size, err);
    }
    if (status == MR_OK) {
        status = read_stop(out->root, &out->request, param, param_size, err);
    }
    if (status == MR_OK) {
        status = read_stream(out->root, out, param, param_size, err);
    }
    if (status == MR_OK) {
        status = check_unsupported(out->root, param, param_size, err);
    }
    return status;
}

void serve_request_free(serve_request *request) {
    if (request == NULL) {
        return;
    }
    cJSON_Delete(request->root);
    free(request->messages);
    memset(request, 0, sizeof *request);
}

/* ------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------ */

/* Returns the "usage" object of a result, or NULL when out of memory. */
static cJSON *usage_object(const mr_llm_result *result) {
    cJSON *usage = cJSON_CreateObject();
    if (usage != NULL) {
        cJSON_AddNumberToObject(usage, "prompt_tokens", (double)result->prompt_tokens);
        cJSON_AddNumberToObject(usage, "completion_tokens", (double)result->completion_tokens);
        cJSON_AddNumberToObject(usage, "total_tokens",
                                (double)(result->prompt_tokens + result->completion_tokens));
    }
    return usage;
}

/* Returns an object with id, object, created and model. */
static cJSON *reply_object(const reply_header *header, const char *object_name) {
    cJSON *root = cJSON_CreateObject();
    if (root != NULL) {
        cJSON_AddStringToObject(root, "id", header->id);
        cJSON_AddStringToObject(root, "object", object_name);
        cJSON_AddNumberToObject(root, "created", (double)header->created);
        cJSON_AddStringToObject(root, "model", header->model);
    }
    return root;
}

/* Serialises root, frees it and returns the text (NULL when out of
 * memory at any step). */
static char *print_and_free(cJSON *root) {
    char *text = root != NULL ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

/* NOTE: generated text goes into the JSON as raw bytes. A model that
 * emits bytes which never form valid UTF-8 produces a reply that strict
 * JSON parsers reject. */
char *serve_reply_json(const reply_header *header, const mr_llm_result *result) {
    bool chat = header->kind == MR_LLM_CHAT;
    cJSON *root = reply_object(header, chat ? "chat.completion" : "text_completion");
    cJSON *choices = root != NULL ? cJSON_AddArrayToObject(root, "choices") : NULL;
    cJSON *choice = cJSON_CreateObject();
    if (choices == NULL || choice == NULL) {
        cJSON_Delete(choice);
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddItemToArray(choices, choice);

    cJSON_AddNumberToObject(choice, "index", 0);
    if (chat) {
        cJSON *message = cJSON_AddObjectToObject(choice, "message");
        if (message != NULL) {
            cJSON_AddStringToObject(message, "role", "assistant");
            cJSON_AddStringToObject(message, "content", result->text);
        }
    } else {
        cJSON_AddStringToObject(choice, "text", result->text);
        cJSON_AddNullToObject(choice, "logprobs");
    }
    cJSON_AddStringToObject(choice, "finish_reason", result->finish_reason);

    cJSON *usage = usage_object(result);
    if (usage != NULL) {
        cJSON_AddItemToObject(root, "usage", usage);
    }
    return print_and_free(root);
}

/* Adds the one choice of a chunk: a piece of text, the chat's first
 * chunk (role), or the last one (finish_reason). */
static bool add_chunk_choice(cJSON *choices, bool chat, const char *text, size_t len, bool role,
                             const char *finish_reason) {
    cJSON *choice = cJSON_CreateObject();
    if (choice == NULL) {
        return false;
    }
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddNumberToObject(choice, "index", 0);

    /* The text is not NUL-terminated, so it goes in through a copy. */
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        return false;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (delta != NULL && role) {
            cJSON_AddStringToObject(delta, "role", "assistant");
        }
        if (delta != NULL && (role || finish_reason == NULL)) {
            cJSON_AddStringToObject(delta, "content", copy);
        }
    } else {
        cJSON_AddStringToObject(choice, "text", copy);
        cJSON_AddNullToObject(choice, "logprobs");
    }
    free(copy);

    if (finish_reason != NULL) {
        cJSON_AddStringToObject(choice, "finish_reason", finish_reason);
    } else {
        cJSON_AddNullToObject(choice, "finish_reason");
    }
    return true;
}

char *serve_chunk_event(const reply_header *header, const char *text, size_t len,
                        bool role, const char *finish_reason, const mr_llm_result *usage) {
    bool chat = header->kind == MR_LLM_CHAT;
    cJSON *root = reply_object(header, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = root != NULL ? cJSON_AddArrayToObject(root, "choices") : NULL;
    bool ok = choices != NULL;
    if (ok && usage != NULL) {
        cJSON *usage_json = usage_object(usage);
        ok = usage_json != NULL;
        if (ok) {
            cJSON_AddItemToObject(root, "usage", usage_json);
        }
    } else if (ok) {
        ok = add_chunk_choice(choices, chat, text, len, role, finish_reason);
    }
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }

    char *json = print_and_free(root);
    if (json == NULL) {
        return NULL;
    }
    size_t json_len = strlen(json);
    char *event = malloc(json_len + 9);
    if (event != NULL) {
        memcpy(event, "data: ", 6);
        memcpy(event + 6, json, json_len);
        memcpy(event + 6 + json_len, "\n\n", 3);
    }
    free(json);
    return event;
}

char *serve_error_json(const char *message, const char *type, const char *param) {
    cJSON *root = cJSON_CreateObject();
    cJSON *error = root != NULL ? cJSON_AddObjectToObject(root, "error") : NULL;
    if (error == NULL) {
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddStringToObject(error, "message", message);
    cJSON_AddStringToObject(error, "type", type);
    if (param != NULL && param[0] != '\0') {
        cJSON_AddStringToObject(error, "param", param);
    } else {
        cJSON_AddNullToObject(error, "param");
    }
    cJSON_AddNullToObject(error, "code");
    return print_and_free(root);
}

char *serve_models_json(const char *model, int64_t created) {
    cJSON *root = cJSON_CreateObject();
    cJSON *data = root != NULL ? cJSON_AddArrayToObject(root, "data") : NULL;
    cJSON *entry = cJSON_CreateObject();
    if (data == NULL || entry == NULL) {
        cJSON_Delete(entry);
        cJSON_Delete(root);
        return NULL;
    }
    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddItemToArray(data, entry);
    cJSON_AddStringToObject(entry, "id", model);
    cJSON_AddStringToObject(entry, "object", "model");
    cJSON_AddNumberToObject(entry, "created", (double)created);
    cJSON_AddStringToObject(entry, "owned_by", "multiround");
    return print_and_free(root);
}

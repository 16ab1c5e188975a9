/*
 * The JSON of the OpenAI-compatible API: request bodies for
 * /chat/completions and /completions, and validation of their replies.
 * Field names follow OpenAI's API reference, which llama.cpp's server,
 * vLLM and Ollama implement.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "llm_internal.h"

/* ------------------------------------------------------------------------
 * Request bodies
 * ------------------------------------------------------------------------ */

/* Adds an integer as a raw JSON number, so that 64-bit values stay exact
 * (cJSON's own numbers are doubles). Returns false when out of memory. */
static bool add_integer(cJSON *object, const char *key, int64_t value) {
    char text[32];
    snprintf(text, sizeof text, "%" PRId64, value);
    return cJSON_AddRawToObject(object, key, text) != NULL;
}

/* Adds the "messages" array of a chat request. Returns false when out of
 * memory. */
static bool add_messages(cJSON *object, const mr_llm_request *request) {
    cJSON *messages = cJSON_AddArrayToObject(object, "messages");
    if (messages == NULL) {
        return false;
    }
    for (int i = 0; i < request->n_messages; i++) {
        cJSON *message = cJSON_CreateObject();
        if (message == NULL) {
            return false;
        }
        cJSON_AddItemToArray(messages, message);
        if (cJSON_AddStringToObject(message, "role", request->messages[i].role) == NULL ||
            cJSON_AddStringToObject(message, "content", request->messages[i].content) ==
                NULL) {
            return false;
        }
    }
    return true;
}

/* Adds the sampling fields that the request sets and leaves out the rest.
 * Returns false when out of memory. */
static bool add_options(cJSON *object, const mr_llm_request *request) {
    if (request->max_tokens > 0 && !add_integer(object, "max_tokens", request->max_tokens)) {
        return false;
    }
    if (request->temperature >= 0 &&
        cJSON_AddNumberToObject(object, "temperature", request->temperature) == NULL) {
        return false;
    }
    if (request->top_p > 0 && cJSON_AddNumberToObject(object, "top_p", request->top_p) == NULL) {
        return false;
    }
    if (request->use_seed && !add_integer(object, "seed", request->seed)) {
        return false;
    }
    if (request->n_stop > 0) {
        cJSON *stop = cJSON_AddArrayToObject(object, "stop");
        if (stop == NULL) {
            return false;
        }
        for (int i = 0; i < request->n_stop; i++) {
            cJSON *item = cJSON_CreateString(request->stop[i]);
            if (item == NULL) {
                return false;
            }
            cJSON_AddItemToArray(stop, item);
        }
    }
    return cJSON_AddFalseToObject(object, "stream") != NULL;
}

mr_status mr_llm_openai_build_body(const mr_llm_request *request, const char *model,
                                   char **body, mr_error *err) {
    *body = NULL;
    cJSON *object = cJSON_CreateObject();
    bool ok = object != NULL && cJSON_AddStringToObject(object, "model", model) != NULL;

    if (ok && request->kind == MR_LLM_CHAT) {
        ok = add_messages(object, request);
    } else if (ok) {
        ok = cJSON_AddStringToObject(object, "prompt", request->prompt) != NULL;
    }
    ok = ok && add_options(object, request);

    if (ok) {
        *body = cJSON_PrintUnformatted(object);
    }
    cJSON_Delete(object);
    if (*body == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "llm: out of memory building the request body for model '%s'",
                            model);
    }
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------ */

/* Copies up to out_size - 1 bytes of text into out, with control bytes and
 * quotes replaced by '?' so that the excerpt reads on one line. */
static void copy_excerpt(const char *text, size_t size, char *out, size_t out_size) {
    size_t n = size < out_size - 1 ? size : out_size - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        out[i] = (c < 0x20 || c == 0x7f || c == '\'') ? '?' : (char)c;
    }
    out[n] = '\0';
}

/* Returns true when body ends inside a string, object or array: a JSON
 * text cut short. Brackets inside strings are skipped. */
static bool ends_unclosed(const char *body, size_t size) {
    long depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        char c = body[i];
        if (in_string) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return in_string || depth > 0;
}

/* Returns the JSON type of item in words, for error messages. */
static const char *type_name(const cJSON *item) {
    if (item == NULL) {
        return "missing";
    }
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

/* Reads usage.<key> into *value: absent leaves it 0, a non-negative
 * integer is stored, anything else is a format error. */
static mr_status read_token_count(const cJSON *usage, const char *key, const char *url,
                                  int64_t *value, mr_error *err) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(usage, key);
    *value = 0;
    if (item == NULL) {
        return MR_OK;
    }
    double number = cJSON_IsNumber(item) ? item->valuedouble : -1.0;
    if (!(number >= 0 && number <= 9007199254740992.0 && number == floor(number))) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s has usage.%s %s, expected a non-negative "
                            "integer; the server does not follow the OpenAI API",
                            url, key, cJSON_IsNumber(item) ? "out of range" : type_name(item));
    }
    *value = (int64_t)number;
    return MR_OK;
}

/* Reads the generated text of choices[0] into result->text. */
static mr_status read_choice_text(const cJSON *choice, mr_llm_kind kind, const char *url,
                                  mr_llm_result *result, mr_error *err) {
    const cJSON *text = NULL;
    const char *path = NULL;
    if (kind == MR_LLM_CHAT) {
        const cJSON *message = cJSON_GetObjectItemCaseSensitive(choice, "message");
        if (!cJSON_IsObject(message)) {
            return mr_error_set(err, MR_ERR_FORMAT,
                                "llm: reply from %s has choices[0].message %s, expected an "
                                "object; check that base_url points at a chat model's "
                                "OpenAI-compatible API",
                                url, type_name(message));
        }
        text = cJSON_GetObjectItemCaseSensitive(message, "content");
        path = "choices[0].message.content";
    } else {
        text = cJSON_GetObjectItemCaseSensitive(choice, "text");
        path = "choices[0].text";
    }

    if (!cJSON_IsString(text)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s has %s %s, expected a string%s", url, path,
                            type_name(text),
                            cJSON_IsNull(text) ? " (a null content usually means a tool "
                                                 "call, which this client does not request)"
                                               : "");
    }
    result->text = strdup(text->valuestring);
    if (result->text == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY,
                            "llm: out of memory copying the reply text from %s", url);
    }
    return MR_OK;
}

/* Fills result from a parsed reply object. */
static mr_status read_reply(const cJSON *root, mr_llm_kind kind, const char *url,
                            const char *default_model, mr_llm_result *result,
                            mr_error *err) {
    if (!cJSON_IsObject(root)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s is %s, expected a JSON object", url,
                            type_name(root));
    }

    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    if (error != NULL && !cJSON_IsNull(error) && choices == NULL) {
        char *text = cJSON_PrintUnformatted(root);
        char message[256] = "";
        if (text != NULL) {
            mr_llm_openai_error_text(text, strlen(text), message, sizeof message);
        }
        free(text);
        return mr_error_set(err, MR_ERR_IO,
                            "llm: %s returned a success status with an error: '%s'", url,
                            message);
    }
    if (!cJSON_IsArray(choices)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s has 'choices' %s, expected an array; check "
                            "that base_url points at an OpenAI-compatible API (it usually "
                            "ends in /v1)",
                            url, type_name(choices));
    }
    const cJSON *choice = cJSON_GetArrayItem(choices, 0);
    if (choice == NULL) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s has an empty 'choices' array, so it holds "
                            "no generated text",
                            url);
    }
    if (!cJSON_IsObject(choice)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s has choices[0] %s, expected an object", url,
                            type_name(choice));
    }

    mr_status status = read_choice_text(choice, kind, url, result, err);
    if (status != MR_OK) {
        return status;
    }

    const cJSON *finish = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    if (cJSON_IsString(finish)) {
        snprintf(result->finish_reason, sizeof result->finish_reason, "%s",
                 finish->valuestring);
    } else if (finish != NULL && !cJSON_IsNull(finish)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s has choices[0].finish_reason %s, expected a "
                            "string or null",
                            url, type_name(finish));
    }

    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    snprintf(result->model, sizeof result->model, "%s",
             cJSON_IsString(model) ? model->valuestring : default_model);

    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (usage == NULL || cJSON_IsNull(usage)) {
        result->usage_reported = false;
        return MR_OK;
    }
    if (!cJSON_IsObject(usage)) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s has 'usage' %s, expected an object", url,
                            type_name(usage));
    }
    result->usage_reported = true;
    status = read_token_count(usage, "prompt_tokens", url, &result->prompt_tokens, err);
    if (status != MR_OK) {
        return status;
    }
    return read_token_count(usage, "completion_tokens", url, &result->completion_tokens, err);
}

mr_status mr_llm_openai_parse_reply(const char *body, size_t size, mr_llm_kind kind,
                                    const char *url, const char *default_model,
                                    mr_llm_result *result, mr_error *err) {
    if (size == 0) {
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: %s returned an empty body; check that base_url points at "
                            "an OpenAI-compatible API (it usually ends in /v1)",
                            url);
    }

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, size, &end, false);
    if (root == NULL) {
        size_t offset = (end != NULL && end >= body) ? (size_t)(end - body) : 0;
        char excerpt[81];
        copy_excerpt(body, size, excerpt, sizeof excerpt);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s is not valid JSON: parsing failed at byte "
                            "%zu of %zu%s; the body starts with '%s'",
                            url, offset, size,
                            ends_unclosed(body, size)
                                ? " (the body ends inside an open string, object or array, "
                                  "so it is truncated)"
                                : "",
                            excerpt);
    }
    while (end != NULL && end < body + size &&
           (*end == ' ' || *end == '\n' || *end == '\r' || *end == '\t')) {
        end++;
    }
    if (end != NULL && end < body + size) {
        cJSON_Delete(root);
        return mr_error_set(err, MR_ERR_FORMAT,
                            "llm: reply from %s has extra bytes after its JSON value at "
                            "byte %zu of %zu",
                            url, (size_t)(end - body), size);
    }

    mr_status status = read_reply(root, kind, url, default_model, result, err);
    cJSON_Delete(root);
    if (status != MR_OK) {
        free(result->text);
        result->text = NULL;
    }
    return status;
}

void mr_llm_openai_error_text(const char *body, size_t size, char *out, size_t out_size) {
    if (out_size == 0) {
        return;
    }
    out[0] = '\0';
    if (body == NULL || size == 0) {
        snprintf(out, out_size, "(empty body)");
        return;
    }

    cJSON *root = cJSON_ParseWithLength(body, size);
    const char *message = NULL;
    if (cJSON_IsObject(root)) {
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
        const cJSON *inner = cJSON_GetObjectItemCaseSensitive(error, "message");
        const cJSON *detail = cJSON_GetObjectItemCaseSensitive(root, "detail");
        const cJSON *top = cJSON_GetObjectItemCaseSensitive(root, "message");
        if (cJSON_IsString(inner)) {
            message = inner->valuestring;
        } else if (cJSON_IsString(error)) {
            message = error->valuestring;
        } else if (cJSON_IsString(detail)) {
            message = detail->valuestring;
        } else if (cJSON_IsString(top)) {
            message = top->valuestring;
        }
    }

    if (message != NULL) {
        copy_excerpt(message, strlen(message), out, out_size);
    } else {
        copy_excerpt(body, size, out, out_size);
    }
    cJSON_Delete(root);
}

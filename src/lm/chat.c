/*
 * Chat templates: ChatML, Llama 3 and Llama 2 written out by hand, and
 * their recognition in a GGUF file's Jinja template text.
 *
 * The formats, as their model cards and the Jinja templates shipped with
 * Qwen2, Llama 3 and Llama 2 chat models lay them out:
 *
 *   ChatML   <|im_start|>ROLE\nCONTENT<|im_end|>\n per message;
 *            the generation prompt is <|im_start|>assistant\n
 *   Llama 3  <|begin_of_text|> once, then per message
 *            <|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>;
 *            the generation prompt is the assistant header with its \n\n
 *   Llama 2  <s>[INST] USER [/INST] per user turn and " ASSISTANT </s>"
 *            per answer; a system message goes into the first user turn
 *            as <<SYS>>\nSYSTEM\n<</SYS>>\n\n before the user's text
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/generate.h"

/* A growable NUL-terminated string. */
typedef struct chat_buffer {
    char *data;
    size_t len;
    size_t capacity;
    bool failed; /* an allocation failed; later appends do nothing */
} chat_buffer;

static void buffer_append(chat_buffer *b, const char *text, size_t n) {
    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->capacity) {
        size_t capacity = b->capacity == 0 ? 256 : b->capacity;
        while (capacity < b->len + n + 1) {
            capacity *= 2;
        }
        char *bigger = realloc(b->data, capacity);
        if (bigger == NULL) {
            b->failed = true;
            return;
        }
        b->data = bigger;
        b->capacity = capacity;
    }
    memcpy(b->data + b->len, text, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buffer_puts(chat_buffer *b, const char *text) {
    buffer_append(b, text, strlen(text));
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Appends text without leading and trailing white space. NOTE: only ASCII
 * white space is stripped; Python's str.strip() in the Jinja templates
 * also strips Unicode spaces such as U+00A0. */
static void buffer_append_stripped(chat_buffer *b, const char *text, size_t n) {
    size_t start = 0;
    while (start < n && is_space(text[start])) {
        start++;
    }
    while (n > start && is_space(text[n - 1])) {
        n--;
    }
    buffer_append(b, text + start, n - start);
}

const char *mr_chat_template_name(mr_chat_template template_kind) {
    switch (template_kind) {
    case MR_CHAT_CHATML:
        return "chatml";
    case MR_CHAT_LLAMA3:
        return "llama3";
    case MR_CHAT_LLAMA2:
        return "llama2";
    }
    return NULL;
}

mr_status mr_chat_template_parse(const char *name, mr_chat_template *out, mr_error *err) {
    static const mr_chat_template all[] = {MR_CHAT_CHATML, MR_CHAT_LLAMA3, MR_CHAT_LLAMA2};
    for (size_t i = 0; name != NULL && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, mr_chat_template_name(all[i])) == 0) {
            *out = all[i];
            return MR_OK;
        }
    }
    return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                        "chat: unknown template \"%s\"; use chatml, llama3 or llama2",
                        name == NULL ? "(null)" : name);
}

mr_status mr_chat_template_detect(const char *jinja, size_t len, mr_chat_template *out,
                                  mr_error *err) {
    /* Llama 3 first: its templates never contain the others' markers, but
     * a template that mentions several formats is most likely Llama 3. */
    if (memmem(jinja, len, "<|start_header_id|>", 19) != NULL) {
        *out = MR_CHAT_LLAMA3;
        return MR_OK;
    }
    if (memmem(jinja, len, "<|im_start|>", 12) != NULL) {
        *out = MR_CHAT_CHATML;
        return MR_OK;
    }
    if (memmem(jinja, len, "[INST]", 6) != NULL) {
        *out = MR_CHAT_LLAMA2;
        return MR_OK;
    }
    return mr_error_set(err, MR_ERR_UNSUPPORTED,
                        "chat: the chat template (%zu bytes) is none of ChatML, Llama 3 or "
                        "Llama 2; choose one by name",
                        len);
}

mr_status mr_chat_template_from_gguf(const mr_gguf *gguf, mr_chat_template *out, mr_error *err) {
    if (mr_gguf_find_key(gguf, "tokenizer.chat_template") < 0) {
        return mr_error_set(err, MR_ERR_NOT_FOUND,
                            "chat: the GGUF file has no tokenizer.chat_template; choose a "
                            "template by name");
    }
    const char *text;
    size_t len;
    mr_status status = mr_gguf_get_string(gguf, "tokenizer.chat_template", &text, &len, err);
    if (status != MR_OK) {
        return status;
    }
    return mr_chat_template_detect(text, len, out, err);
}

/* Checks that every message has a known role and a content. */
static mr_status check_messages(const mr_chat_message *messages, int n, mr_error *err) {
    for (int i = 0; i < n; i++) {
        const char *role = messages[i].role;
        bool known = role != NULL && (strcmp(role, "system") == 0 || strcmp(role, "user") == 0 ||
                                      strcmp(role, "assistant") == 0);
        if (!known) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "chat: message %d has role \"%s\"; use system, user or assistant",
                                i, role == NULL ? "(null)" : role);
        }
        if (messages[i].content == NULL) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "chat: message %d has no content",
                                i);
        }
    }
    return MR_OK;
}

static void render_chatml(chat_buffer *b, const mr_chat_message *messages, int n,
                          bool add_generation_prompt) {
    for (int i = 0; i < n; i++) {
        buffer_puts(b, "<|im_start|>");
        buffer_puts(b, messages[i].role);
        buffer_puts(b, "\n");
        buffer_puts(b, messages[i].content);
        buffer_puts(b, "<|im_end|>\n");
    }
    if (add_generation_prompt) {
        buffer_puts(b, "<|im_start|>assistant\n");
    }
}

static void render_llama3(chat_buffer *b, const mr_chat_message *messages, int n,
                          bool add_generation_prompt) {
    for (int i = 0; i < n; i++) {
        buffer_puts(b, "<|start_header_id|>");
        buffer_puts(b, messages[i].role);
        buffer_puts(b, "<|end_header_id|>\n\n");
        buffer_append_stripped(b, messages[i].content, strlen(messages[i].content));
        buffer_puts(b, "<|eot_id|>");
    }
    if (add_generation_prompt) {
        buffer_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    }
}

/* Llama 2 has no generation prompt: a conversation ending in a user turn
 * already ends where the answer begins. */
static mr_status render_llama2(chat_buffer *b, const mr_chat_message *messages, int n,
                               mr_error *err) {
    const char *system = NULL;
    int first = 0;
    if (n > 0 && strcmp(messages[0].role, "system") == 0) {
        system = messages[0].content;
        first = 1;
    }

    for (int i = first; i < n; i++) {
        bool user_turn = (i - first) % 2 == 0;
        const char *expected = user_turn ? "user" : "assistant";
        if (strcmp(messages[i].role, expected) != 0) {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "chat: message %d has role \"%s\" but the Llama 2 format needs "
                                "\"%s\" there (an optional system message, then user and "
                                "assistant turns in alternation)",
                                i, messages[i].role, expected);
        }

        const char *content = messages[i].content;
        if (!user_turn) {
            buffer_puts(b, " ");
            buffer_append_stripped(b, content, strlen(content));
            buffer_puts(b, " </s>");
            continue;
        }

        /* The BOS of the first turn comes from encoding with add_bos. */
        if (i > first) {
            buffer_puts(b, "<s>");
        }
        buffer_puts(b, "[INST] ");
        if (i == first && system != NULL) {
            /* The template strips the joined text, so only white space
             * at the end of the user's text goes. */
            chat_buffer joined = {0};
            buffer_puts(&joined, "<<SYS>>\n");
            buffer_puts(&joined, system);
            buffer_puts(&joined, "\n<</SYS>>\n\n");
            buffer_puts(&joined, content);
            if (joined.failed) {
                b->failed = true;
            } else {
                buffer_append_stripped(b, joined.data, joined.len);
            }
            free(joined.data);
        } else {
            buffer_append_stripped(b, content, strlen(content));
        }
        buffer_puts(b, " [/INST]");
    }
    return MR_OK;
}

mr_status mr_chat_render(mr_chat_template template_kind, const mr_chat_message *messages,
                         int n, bool add_generation_prompt, char **out, size_t *len,
                         mr_error *err) {
    *out = NULL;
    *len = 0;
    if (n < 0 || (n > 0 && messages == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "chat: %d messages but no array", n);
    }
    mr_status status = check_messages(messages, n, err);
    if (status != MR_OK) {
        return status;
    }

    chat_buffer b = {0};
    buffer_append(&b, "", 0);
    switch (template_kind) {
    case MR_CHAT_CHATML:
        render_chatml(&b, messages, n, add_generation_prompt);
        break;
    case MR_CHAT_LLAMA3:
        render_llama3(&b, messages, n, add_generation_prompt);
        break;
    case MR_CHAT_LLAMA2:
        status = render_llama2(&b, messages, n, err);
        break;
    default:
        status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "chat: unknown template value %d",
                              (int)template_kind);
    }

    if (status == MR_OK && b.failed) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY, "chat: out of memory rendering %d messages",
                              n);
    }
    if (status != MR_OK) {
        free(b.data);
        return status;
    }
    *out = b.data;
    *len = b.len;
    return MR_OK;
}

/*
 * Chat templates: the exact text of each format for a system, user,
 * assistant, user conversation with and without the generation prompt,
 * recognition from Jinja template text, and rejected conversations.
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/generate.h"
#include "test.h"

static const mr_chat_message conversation[] = {
    {"system", "You are terse."},
    {"user", "Hi there "},
    {"assistant", " Hello."},
    {"user", "Name a colour."},
};
#define CONVERSATION_LENGTH 4

/* Renders and compares with expected, printing both on a mismatch. */
static void check_render(mr_chat_template kind, const mr_chat_message *messages, int n,
                         bool add_generation_prompt, const char *expected, int line) {
    mr_error err = {0};
    char *text = NULL;
    size_t len = 0;
    mr_status status = mr_chat_render(kind, messages, n, add_generation_prompt, &text, &len, &err);
    if (status != MR_OK) {
        mr_test_fail(__FILE__, line, "render failed: %s", err.message);
        return;
    }
    if (len != strlen(expected) || strcmp(text, expected) != 0) {
        mr_test_fail(__FILE__, line, "rendered\n[%s]\nexpected\n[%s]", text, expected);
    }
    free(text);
}

static void chatml_conversation(void) {
    const char *expected = "<|im_start|>system\nYou are terse.<|im_end|>\n"
                           "<|im_start|>user\nHi there <|im_end|>\n"
                           "<|im_start|>assistant\n Hello.<|im_end|>\n"
                           "<|im_start|>user\nName a colour.<|im_end|>\n";
    check_render(MR_CHAT_CHATML, conversation, CONVERSATION_LENGTH, false, expected, __LINE__);

    const char *with_prompt = "<|im_start|>system\nYou are terse.<|im_end|>\n"
                              "<|im_start|>user\nHi there <|im_end|>\n"
                              "<|im_start|>assistant\n Hello.<|im_end|>\n"
                              "<|im_start|>user\nName a colour.<|im_end|>\n"
                              "<|im_start|>assistant\n";
    check_render(MR_CHAT_CHATML, conversation, CONVERSATION_LENGTH, true, with_prompt, __LINE__);
}

static void llama3_conversation(void) {
    const char *expected = "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                           "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                           "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>";
    check_render(MR_CHAT_LLAMA3, conversation, CONVERSATION_LENGTH, false, expected, __LINE__);

    const char *with_prompt =
        "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n";
    check_render(MR_CHAT_LLAMA3, conversation, CONVERSATION_LENGTH, true, with_prompt, __LINE__);
}

static void llama2_conversation(void) {
    /* The leading <s> is left to encode's add_bos; the second turn's is
     * text. The generation prompt adds nothing. */
    const char *expected = "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST]"
                           " Hello. </s>"
                           "<s>[INST] Name a colour. [/INST]";
    check_render(MR_CHAT_LLAMA2, conversation, CONVERSATION_LENGTH, false, expected, __LINE__);
    check_render(MR_CHAT_LLAMA2, conversation, CONVERSATION_LENGTH, true, expected, __LINE__);

    /* Without a system message. */
    check_render(MR_CHAT_LLAMA2, conversation + 1, 1, true, "[INST] Hi there [/INST]", __LINE__);
}

static void single_user_message(void) {
    mr_chat_message user = {"user", "2+2?"};
    check_render(MR_CHAT_CHATML, &user, 1, true,
                 "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n", __LINE__);
    check_render(MR_CHAT_LLAMA3, &user, 1, true,
                 "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n",
                 __LINE__);
    check_render(MR_CHAT_CHATML, NULL, 0, true, "<|im_start|>assistant\n", __LINE__);
}

static void detect_from_jinja(void) {
    mr_error err = {0};
    mr_chat_template kind = 0;
    const char *qwen = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' "
                       "+ message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
    CHECK_STATUS(mr_chat_template_detect(qwen, strlen(qwen), &kind, &err), MR_OK);
    CHECK_INT_EQ(kind, MR_CHAT_CHATML);

    const char *llama3 = "{% set content = '<|start_header_id|>' + message['role'] + "
                         "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}";
    CHECK_STATUS(mr_chat_template_detect(llama3, strlen(llama3), &kind, &err), MR_OK);
    CHECK_INT_EQ(kind, MR_CHAT_LLAMA3);

    const char *llama2 = "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}";
    CHECK_STATUS(mr_chat_template_detect(llama2, strlen(llama2), &kind, &err), MR_OK);
    CHECK_INT_EQ(kind, MR_CHAT_LLAMA2);

    const char *other = "{{ '<start_of_turn>' + role + '\\n' }}";
    CHECK_STATUS(mr_chat_template_detect(other, strlen(other), &kind, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "choose one by name") != NULL);
}

static void parse_names(void) {
    mr_error err = {0};
    mr_chat_template kind = 0;
    CHECK_STATUS(mr_chat_template_parse("llama3", &kind, &err), MR_OK);
    CHECK_INT_EQ(kind, MR_CHAT_LLAMA3);
    CHECK_STATUS(mr_chat_template_parse("chatml", &kind, &err), MR_OK);
    CHECK_INT_EQ(kind, MR_CHAT_CHATML);
    CHECK_STATUS(mr_chat_template_parse("llama2", &kind, &err), MR_OK);
    CHECK_INT_EQ(kind, MR_CHAT_LLAMA2);
    CHECK_STATUS(mr_chat_template_parse("vicuna", &kind, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "vicuna") != NULL);
    CHECK(strcmp(mr_chat_template_name(MR_CHAT_CHATML), "chatml") == 0);
}

static void bad_conversations_rejected(void) {
    mr_error err = {0};
    char *text = NULL;
    size_t len = 0;

    mr_chat_message tool = {"tool", "{}"};
    CHECK_STATUS(mr_chat_render(MR_CHAT_CHATML, &tool, 1, true, &text, &len, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "\"tool\"") != NULL);
    CHECK(text == NULL);

    mr_chat_message empty = {"user", NULL};
    CHECK_STATUS(mr_chat_render(MR_CHAT_LLAMA3, &empty, 1, true, &text, &len, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "message 0") != NULL);

    /* Llama 2 needs user and assistant in turn. */
    mr_chat_message twice[] = {{"user", "a"}, {"user", "b"}};
    CHECK_STATUS(mr_chat_render(MR_CHAT_LLAMA2, twice, 2, true, &text, &len, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "message 1") != NULL);
    CHECK(strstr(err.message, "\"assistant\"") != NULL);
}

int main(void) {
    MR_RUN(chatml_conversation);
    MR_RUN(llama3_conversation);
    MR_RUN(llama2_conversation);
    MR_RUN(single_user_message);
    MR_RUN(detect_from_jinja);
    MR_RUN(parse_names);
    MR_RUN(bad_conversations_rejected);
    return mr_test_finish();
}

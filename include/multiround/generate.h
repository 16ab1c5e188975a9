/*
 * multiround text generation with a Llama-family model: the generation
 * loop, log-probabilities of completions, and chat templates.
 *
 *     mr_generate_params params;
 *     mr_generate_params_default(&params);
 *     params.max_tokens = 64;
 *     mr_generation out;
 *     mr_generate(model, tok, "Once upon a time", &params, &out, &err);
 *     printf("%.*s (%s)\n", (int)out.text_len, out.text,
 *            mr_finish_reason_name(out.finish_reason));
 *     mr_generation_free(&out);
 */
#ifndef MULTIROUND_GENERATE_H
#define MULTIROUND_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "multiround/common.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/sample.h"
#include "multiround/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Generation
 * ------------------------------------------------------------------------ */

/* Why generation ended. */
typedef enum mr_finish_reason {
    MR_FINISH_STOP = 0,     /* an end-of-generation token or a stop string */
    MR_FINISH_LENGTH = 1,   /* max_tokens or the context length was reached */
    MR_FINISH_CANCELLED = 2 /* the stream callback returned false */
} mr_finish_reason;

/* Returns "stop", "length" or "cancelled". */
const char *mr_finish_reason_name(mr_finish_reason reason);

/*
 * Receives each new piece of the output text. Pieces hold only whole UTF-8
 * characters and never part of a stop string; their concatenation is the
 * final text. Return false to end generation (finish reason
 * MR_FINISH_CANCELLED).
 */
typedef bool (*mr_generate_stream_fn)(const char *piece, size_t len, void *user_data);

/* How to generate. */
typedef struct mr_generate_params {
    int max_tokens;                 /* output tokens at most, >= 1 */
    mr_sampler_params sampler;      /* see sample.h */
    const char *const *stop;        /* stop strings (non-empty), or NULL */
    int n_stop;
    int add_bos;                    /* 1 or 0 forces BOS on or off; -1 follows the
                                       tokenizer's metadata (tokenizer.ggml.add_bos_token) */
    bool parse_special;             /* control-token texts in the prompt become their ids
                                       (needed for chat templates) */
    mr_generate_stream_fn stream;   /* may be NULL */
    void *stream_user_data;
} mr_generate_params;

/* Fills params: 128 tokens, the sampler defaults of sample.h, no stop
 * strings, BOS from the metadata, no special-token parsing, no stream. */
void mr_generate_params_default(mr_generate_params *params);

/* The result of one generation; free it with mr_generation_free(). */
typedef struct mr_generation {
    char *text;               /* output text, NUL-terminated, without the stop string */
    size_t text_len;
    int32_t *tokens;          /* output ids, without the end-of-generation token */
    int n_tokens;
    int prompt_tokens;        /* ids the prompt was encoded into, BOS included */
    int completion_tokens;    /* ids sampled, the end-of-generation token included */
    mr_finish_reason finish_reason;
    double prompt_seconds;    /* wall time of the prompt evaluation */
    double generate_seconds;  /* wall time from the first sampled token to the end */
} mr_generation;

/* Frees what a generation owns and zeroes it; NULL is allowed. */
void mr_generation_free(mr_generation *generation);

/*
 * Generates a continuation of prompt: encodes it (with BOS if
 * params->add_bos selects it), evaluates it in one batch, then samples one token at a time until
 * max_tokens, the context length, an end-of-generation token (EOS, or a
 * control token <|eot_id|>, <|im_end|>, <|end_of_text|> or <|endoftext|>)
 * or a stop string. Stop strings are matched on the decoded text, also
 * across token boundaries; the earliest match ends the text, and the
 * tokens keep every sampled id. The sampler's repetition window sees the
 * prompt's ids too. On error out is zeroed and err filled:
 * MR_ERR_INVALID_ARGUMENT for bad params or a prompt that leaves no room
 * in the context, errors of the tokenizer or the model otherwise.
 */
mr_status mr_generate(const mr_llama *model, const mr_tokenizer *tok, const char *prompt,
                      const mr_generate_params *params, mr_generation *out, mr_error *err);

/* The same from prompt ids (add_bos and parse_special are ignored). */
mr_status mr_generate_tokens(const mr_llama *model, const mr_tokenizer *tok,
                             const int32_t *prompt, int n_prompt,
                             const mr_generate_params *params, mr_generation *out,
                             mr_error *err);

/* ------------------------------------------------------------------------
 * Log-probabilities of completions
 * ------------------------------------------------------------------------ */

/* A prompt and the completion to score after it. */
typedef struct mr_logprob_request {
    const char *prompt;
    const char *completion;
} mr_logprob_request;

/* The score of one completion; free it with mr_logprob_result_free(). */
typedef struct mr_logprob_result {
    double sum;             /* sum of token_logprobs: log p(completion | prompt) */
    int n_tokens;           /* completion ids */
    float *token_logprobs;  /* [n_tokens], natural logarithms */
    int32_t *tokens;        /* [n_tokens] completion ids */
} mr_logprob_result;

void mr_logprob_result_free(mr_logprob_result *result);

/*
 * Scores n requests: each prompt + completion text is encoded as one
 * sequence (BOS if add_bos selects it; -1 follows the metadata), the
 * completion ids are those after the longest common prefix with the
 * prompt's own encoding, and their log-probabilities come from one
 * batched evaluation of the sequence. A completion that encodes to no ids
 * has sum 0. results must hold n entries; on error every entry is freed
 * and err names the request index. MR_ERR_INVALID_ARGUMENT when a
 * sequence exceeds the context length or a prompt encodes to no ids.
 */
mr_status mr_llama_logprobs(const mr_llama *model, const mr_tokenizer *tok,
                            const mr_logprob_request *requests, int n, int add_bos,
                            bool parse_special, mr_logprob_result *results, mr_error *err);

/* ------------------------------------------------------------------------
 * Chat templates
 * ------------------------------------------------------------------------ */

/* The chat formats this build renders (no general Jinja engine). */
typedef enum mr_chat_template {
    MR_CHAT_CHATML = 1, /* Qwen and others: <|im_start|>role\n...<|im_end|>\n */
    MR_CHAT_LLAMA3 = 2, /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    MR_CHAT_LLAMA2 = 3  /* [INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s> */
} mr_chat_template;

/* One message: role is "system", "user" or "assistant". */
typedef struct mr_chat_message {
    const char *role;
    const char *content;
} mr_chat_message;

/* Returns "chatml", "llama3" or "llama2" (NULL for an unknown value). */
const char *mr_chat_template_name(mr_chat_template template_kind);

/* Parses "chatml", "llama3" or "llama2"; MR_ERR_INVALID_ARGUMENT
 * otherwise, listing the names. */
mr_status mr_chat_template_parse(const char *name, mr_chat_template *out, mr_error *err);

/*
 * Recognises a Jinja chat template by a distinctive substring:
 * "<|start_header_id|>" means Llama 3, "<|im_start|>" ChatML, "[INST]"
 * Llama 2. MR_ERR_UNSUPPORTED when none occurs.
 */
mr_status mr_chat_template_detect(const char *jinja, size_t len, mr_chat_template *out,
                                  mr_error *err);

/* Detects the template of the GGUF key tokenizer.chat_template;
 * MR_ERR_NOT_FOUND when the key is absent. */
mr_status mr_chat_template_from_gguf(const mr_gguf *gguf, mr_chat_template *out, mr_error *err);

/*
 * Renders messages into prompt text, in a NUL-terminated string that the
 * caller frees (*len gets its length). The text leaves out the BOS token
 * at its very start, because encoding with add_bos adds it; encode it
 * with parse_special. With add_generation_prompt the text ends where the
 * assistant's answer begins. Llama 3 and Llama 2 strip white space around
 * each content, as their templates do; ChatML keeps it. Llama 2 folds a
 * leading system message into the first user turn and needs user and
 * assistant turns to alternate. MR_ERR_INVALID_ARGUMENT names a message
 * with an unknown role, a NULL content, or (Llama 2) a turn out of order.
 */
mr_status mr_chat_render(mr_chat_template template_kind, const mr_chat_message *messages,
                         int n, bool add_generation_prompt, char **out, size_t *len,
                         mr_error *err);

#ifdef __cplusplus
}
#endif

#endif /* MULTIROUND_GENERATE_H */

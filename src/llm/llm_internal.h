/*
 * Private helpers shared by the files of src/llm/.
 */
#ifndef MR_LLM_INTERNAL_H
#define MR_LLM_INTERNAL_H

#include <stddef.h>

#include "multiround/llm.h"

/* Returns a monotonic clock reading in seconds. */
double mr_llm_now_s(void);

/*
 * Builds the JSON body of an OpenAI-compatible /chat/completions or
 * /completions request for model. *body is allocated; free it with free().
 */
mr_status mr_llm_openai_build_body(const mr_llm_request *request, const char *model,
                                   char **body, mr_error *err);

/*
 * Parses a 2xx reply body of size bytes from url and fills result's text,
 * tokens, finish_reason and model (model falls back to default_model).
 * Returns MR_ERR_FORMAT with a message naming url and the fault when the
 * body is not JSON, is truncated, or lacks a field or has a wrong type.
 */
mr_status mr_llm_openai_parse_reply(const char *body, size_t size, mr_llm_kind kind,
                                    const char *url, const char *default_model,
                                    mr_llm_result *result, mr_error *err);

/*
 * Writes the server's own error message from an error reply body into out:
 * error.message, a string "error", "detail" or "message", or else the
 * start of the body with control characters replaced.
 */
void mr_llm_openai_error_text(const char *body, size_t size, char *out, size_t out_size);

#endif /* MR_LLM_INTERNAL_H */

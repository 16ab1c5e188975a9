/*
 * The generation loop (prompt evaluation, sampling, stop strings and
 * streaming) and the log-probabilities of completions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "multiround/generate.h"

/* Texts of control tokens that end a turn in common chat formats, besides
 * the vocabulary's EOS: Llama 3 (<|eot_id|>, <|end_of_text|>), ChatML
 * (<|im_end|>) and GPT-2 or Qwen (<|endoftext|>). */
static const char *const end_token_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end_of_text|>",
                                              "<|endoftext|>"};
#define END_TOKEN_COUNT (sizeof end_token_texts / sizeof end_token_texts[0])

/* Seconds from a monotonic clock. */
static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *mr_finish_reason_name(mr_finish_reason reason) {
    switch (reason) {
    case MR_FINISH_STOP:
        return "stop";
    case MR_FINISH_LENGTH:
        return "length";
    case MR_FINISH_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

void mr_generate_params_default(mr_generate_params *params) {
    memset(params, 0, sizeof *params);
    params->max_tokens = 128;
    mr_sampler_params_default(&params->sampler);
    params->add_bos = -1;
}

void mr_generation_free(mr_generation *generation) {
    if (generation == NULL) {
        return;
    }
    free(generation->text);
    free(generation->tokens);
    memset(generation, 0, sizeof *generation);
}

/* Encodes text into a new array (*ids, *n); the caller frees *ids. */
static mr_status encode_alloc(const mr_tokenizer *tok, const char *text, size_t len, bool add_bos,
                              bool parse_special, int32_t **ids, int64_t *n, mr_error *err) {
    *ids = NULL;
    *n = 0;
    /* A size query: with cap 0 the tokenizer reports a too-small output,
     * which is expected here, so its error is kept only when no id came. */
    int64_t needed = 0;
    mr_error query_err;
    mr_error_clear(&query_err);
    mr_status status = mr_tokenizer_encode(tok, text, len, add_bos, parse_special, NULL, 0,
                                           &needed, &query_err);
    if (needed == 0) {
        if (status != MR_OK && err != NULL) {
            *err = query_err;
        }
        return status;
    }

    *ids = malloc((size_t)needed * sizeof **ids);
    if (*ids == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "generate: out of memory for %lld prompt ids",
                            (long long)needed);
    }
    status = mr_tokenizer_encode(tok, text, len, add_bos, parse_special, *ids, needed, n, err);
    if (status != MR_OK) {
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return status;
}

/* Resolves the add_bos setting: -1 follows the tokenizer's metadata. */
static bool resolve_add_bos(const mr_tokenizer *tok, int add_bos) {
    return add_bos < 0 ? mr_tokenizer_add_bos_default(tok) : add_bos != 0;
}

/* ------------------------------------------------------------------------
 * Output text: stop strings and streaming
 * ------------------------------------------------------------------------ */

/* The growing output text and how much of it the stream has seen. */
typedef struct output_text {
    char *data;
    size_t len;
    size_t capacity;
    size_t emitted;  /* bytes passed to the stream */
    size_t checked;  /* bytes already searched for stop strings */
    size_t max_stop; /* byte length of the longest stop string */
} output_text;

/* Appends n bytes; returns false when memory runs out. */
static bool output_append(output_text *out, const char *bytes, size_t n) {
    if (out->len + n + 1 > out->capacity) {
        size_t capacity = out->capacity == 0 ? 256 : out->capacity;
        while (capacity < out->len + n + 1) {
            capacity *= 2;
        }
        char *bigger = realloc(out->data, capacity);
        if (bigger == NULL) {
            return false;
        }
        out->data = bigger;
        out->capacity = capacity;
    }
    memcpy(out->data + out->len, bytes, n);
    out->len += n;
    out->data[out->len] = '\0';
    return true;
}

/* Returns the position of the earliest stop string in the text that ends
 * after out->checked, or SIZE_MAX; the match start can lie up to
 * max_stop - 1 bytes before out->checked. */
static size_t find_stop(const output_text *out, const mr_generate_params *params) {
    size_t from = out->checked > out->max_stop - 1 ? out->checked - (out->max_stop - 1) : 0;
    size_t best = SIZE_MAX;
    for (int s = 0; s < params->n_stop; s++) {
        const char *stop = params->stop[s];
        size_t stop_len = strlen(stop);
        const char *hit = memmem(out->data + from, out->len - from, stop, stop_len);
        if (hit != NULL && (size_t)(hit - out->data) < best) {
            best = (size_t)(hit - out->data);
        }
    }
    return best;
}

/* Returns how many bytes at the end of the text are a proper prefix of
 * some stop string, which a later token may complete. */
static size_t stop_prefix_at_end(const output_text *out, const mr_generate_params *params) {
    size_t hold = 0;
    for (int s = 0; s < params->n_stop; s++) {
        const char *stop = params->stop[s];
        size_t stop_len = strlen(stop);
        for (size_t k = stop_len - 1; k > hold; k--) {
            if (k <= out->len && memcmp(out->data + out->len - k, stop, k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

/* Returns end moved back to the start of an incomplete UTF-8 sequence at
 * the end of data[0..end), if there is one. Bytes that can never become
 * valid UTF-8 are not held back. */
static size_t utf8_complete_end(const char *data, size_t start, size_t end) {
    for (size_t back = 1; back <= 4 && back <= end - start; back++) {
        unsigned char c = (unsigned char)data[end - back];
        if ((c & 0xC0) == 0x80) {
            continue; /* a continuation byte: look further back */
        }
        size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                                 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return back < need ? end - back : end;
    }
    return end;
}

/* Passes data[emitted..end) to the stream; returns false when the
 * callback returns false. */
static bool emit(output_text *out, size_t end, const mr_generate_params *params) {
    if (end <= out->emitted) {
        return true;
    }
    bool more = true;
    if (params->stream != NULL) {
        more = params->stream(out->data + out->emitted, end - out->emitted,
                              params->stream_user_data);
    }
    out->emitted = end;
    return more;
}

/* ------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------ */

/* Checks the generation params; fills err naming the bad field. */
static mr_status check_params(const mr_generate_params *params, mr_error *err) {
    if (params->max_tokens < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "generate: max_tokens must be >= 1, got %d", params->max_tokens);
    }
    if (params->n_stop < 0 || (params->n_stop > 0 && params->stop == NULL)) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "generate: %d stop strings but no array", params->n_stop);
    }
    for (int s = 0; s < params->n_stop; s++) {
        if (params->stop[s] == NULL || params->stop[s][0] == '\0') {
            return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                "generate: stop string %d is empty; remove it", s);
        }
    }
    return MR_OK;
}

/* Returns whether id ends generation: the EOS id or a known end-of-turn
 * control token. */
static bool is_end_token(const mr_tokenizer *tok, int32_t id) {
    if (id == mr_tokenizer_eos(tok)) {
        return true;
    }
    mr_token_type type = mr_tokenizer_token_type(tok, id);
    if (type != MR_TOKEN_CONTROL && type != MR_TOKEN_USER_DEFINED) {
        return false;
    }
    size_t len;
    const char *text = mr_tokenizer_token_text(tok, id, &len);
    for (size_t i = 0; i < END_TOKEN_COUNT; i++) {
        if (strlen(end_token_texts[i]) == len && memcmp(end_token_texts[i], text, len) == 0) {
            return true;
        }
    }
    return false;
}

/* State of one generation, freed by run_free. */
typedef struct run_state {
    mr_llama_cache *cache;
    mr_sampler *sampler;
    float *logits;
    output_text text;
    int32_t *tokens;
} run_state;

static void run_free(run_state *run) {
    mr_llama_cache_free(run->cache);
    mr_sampler_free(run->sampler);
    free(run->logits);
    free(run->text.data);
    free(run->tokens);
}

/* Decodes id (render_special off) and appends its bytes to the text; with
 * strip, drops the SPM prefix space. */
static mr_status append_token_text(const mr_tokenizer *tok, int32_t id, bool strip,
                                   output_text *text, mr_error *err) {
    char piece[256];
    size_t len = 0;
    mr_status status = mr_tokenizer_decode(tok, &id, 1, strip, false, piece, sizeof piece, &len,
                                           err);
    if (status == MR_OK) {
        return output_append(text, piece, len)
                   ? MR_OK
                   : mr_error_set(err, MR_ERR_NO_MEMORY, "generate: out of memory for the text");
    }
    if (len <= sizeof piece) {
        return status;
    }

    /* A token longer than the stack buffer. */
    char *big = malloc(len);
    if (big == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "generate: out of memory for a token");
    }
    status = mr_tokenizer_decode(tok, &id, 1, strip, false, big, len, &len, err);
    if (status == MR_OK && !output_append(text, big, len)) {
        status = mr_error_set(err, MR_ERR_NO_MEMORY, "generate: out of memory for the text");
    }
    free(big);
    return status;
}

/*
 * Runs the loop after the prompt is encoded. strip_first drops the prefix
 * space of the first output piece, for a prompt without any text.
 */
static mr_status run_generation(const mr_llama *model, const mr_tokenizer *tok,
                                const int32_t *prompt, int n_prompt, bool strip_first,
                                const mr_generate_params *params, mr_generation *out,
                                mr_error *err) {
    const mr_llama_config *config = mr_llama_get_config(model);
    int V = config->vocab_size;
    int n_vocab_tok = (int)mr_tokenizer_n_vocab(tok);
    if (n_prompt < 1) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "generate: the prompt encodes to no ids; give a prompt or add BOS");
    }
    if (n_prompt >= config->context_length) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "generate: the prompt has %d ids but the context holds %d; "
                            "shorten the prompt",
                            n_prompt, config->context_length);
    }

    run_state run;
    memset(&run, 0, sizeof run);
    for (int s = 0; s < params->n_stop; s++) {
        size_t stop_len = strlen(params->stop[s]);
        run.text.max_stop = stop_len > run.text.max_stop ? stop_len : run.text.max_stop;
    }

    /* The last sampled token is never evaluated, so max_tokens outputs
     * need n_prompt + max_tokens - 1 positions. */
    int64_t positions_needed = (int64_t)n_prompt + params->max_tokens - 1;
    int cache_length = positions_needed < config->context_length ? (int)positions_needed
                                                                 : config->context_length;
    if (cache_length < n_prompt) {
        cache_length = n_prompt;
    }
    run.cache = mr_llama_cache_create(model, cache_length, err);
    run.sampler = run.cache != NULL ? mr_sampler_create(&params->sampler, V, err) : NULL;
    run.logits = malloc((size_t)V * sizeof *run.logits);
    run.tokens = malloc((size_t)params->max_tokens * sizeof *run.tokens);
    if (run.cache == NULL || run.sampler == NULL) {
        run_free(&run);
        return err != NULL ? err->status : MR_ERR_INVALID_ARGUMENT;
    }
    if (run.logits == NULL || run.tokens == NULL || !output_append(&run.text, "", 0)) {
        run_free(&run);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "generate: out of memory");
    }

    for (int i = 0; i < n_prompt; i++) {
        mr_sampler_accept(run.sampler, prompt[i]);
    }
    double start = now_seconds();
    mr_status status = mr_llama_eval(model, run.cache, prompt, n_prompt, 0, run.logits,
                                     MR_LLAMA_LOGITS_LAST, err);
    double prompt_done = now_seconds();

    int n_tokens = 0;
    int sampled = 0;
    int pos = n_prompt;
    mr_finish_reason reason = MR_FINISH_LENGTH;
    bool finished = false;
    while (status == MR_OK && !finished) {
        /* Ids the tokenizer cannot decode (padding rows of a larger
         * output matrix) are never sampled. */
        for (int v = n_vocab_tok; v < V; v++) {
            run.logits[v] = -INFINITY;
        }
        int32_t id = mr_sampler_sample(run.sampler, run.logits, err);
        if (id < 0) {
            status = err != NULL ? err->status : MR_ERR_NUMERIC;
            break;
        }
        sampled++;
        if (is_end_token(tok, id)) {
            reason = MR_FINISH_STOP;
            break;
        }
        run.tokens[n_tokens++] = id;
        mr_sampler_accept(run.sampler, id);

        status = append_token_text(tok, id, strip_first && run.text.len == 0, &run.text, err);
        if (status != MR_OK) {
            break;
        }

        size_t stop_at = run.text.max_stop > 0 ? find_stop(&run.text, params) : SIZE_MAX;
        if (stop_at != SIZE_MAX) {
            run.text.len = stop_at;
            run.text.data[stop_at] = '\0';
            reason = MR_FINISH_STOP;
            finished = true;
            if (!emit(&run.text, stop_at, params)) {
                reason = MR_FINISH_CANCELLED;
            }
            break;
        }
        run.text.checked = run.text.len;
        size_t safe = run.text.len - stop_prefix_at_end(&run.text, params);
        safe = utf8_complete_end(run.text.data, run.text.emitted, safe);
        if (!emit(&run.text, safe, params)) {
            reason = MR_FINISH_CANCELLED;
            finished = true;
            break;
        }

        if (n_tokens == params->max_tokens || pos >= cache_length) {
            reason = MR_FINISH_LENGTH;
            break;
        }
        status = mr_llama_eval(model, run.cache, &id, 1, pos, run.logits, MR_LLAMA_LOGITS_LAST,
                               err);
        pos++;
    }

    if (status == MR_OK && reason != MR_FINISH_CANCELLED && !finished) {
        /* NOTE: an incomplete UTF-8 sequence at the very end (the model
         * stopped inside a character) is dropped from the text. So the
         * text and the stream hold only whole characters, while the ids
         * keep those bytes. */
        size_t end = utf8_complete_end(run.text.data, run.text.emitted, run.text.len);
        run.text.len = end;
        run.text.data[end] = '\0';
        if (!emit(&run.text, end, params)) {
            reason = MR_FINISH_CANCELLED;
        }
    }
    if (reason == MR_FINISH_CANCELLED) {
        run.text.len = run.text.emitted;
        run.text.data[run.text.len] = '\0';
    }

    if (status != MR_OK) {
        run_free(&run);
        return status;
    }
    double end_time = now_seconds();
    memset(out, 0, sizeof *out);
    out->text = run.text.data;
    out->text_len = run.text.len;
    out->tokens = run.tokens;
    out->n_tokens = n_tokens;
    out->prompt_tokens = n_prompt;
    out->completion_tokens = sampled;
    out->finish_reason = reason;
    out->prompt_seconds = prompt_done - start;
    out->generate_seconds = end_time - prompt_done;
    run.text.data = NULL;
    run.tokens = NULL;
    run_free(&run);
    return MR_OK;
}

mr_status mr_generate_tokens(const mr_llama *model, const mr_tokenizer *tok,
                             const int32_t *prompt, int n_prompt,
                             const mr_generate_params *params, mr_generation *out,
                             mr_error *err) {
    memset(out, 0, sizeof *out);
    mr_status status = check_params(params, err);
    if (status != MR_OK) {
        return status;
    }

    /* A prompt that decodes to no text (BOS alone) starts the output, so
     * the SPM prefix space of its first piece is dropped. */
    size_t prompt_text_len = 0;
    status = mr_tokenizer_decode(tok, prompt, n_prompt, false, false, NULL, 0, &prompt_text_len,
                                 NULL);
    if (prompt_text_len == 0 && status != MR_OK) {
        return mr_tokenizer_decode(tok, prompt, n_prompt, false, false, NULL, 0,
                                   &prompt_text_len, err);
    }
    return run_generation(model, tok, prompt, n_prompt, prompt_text_len == 0, params, out, err);
}

mr_status mr_generate(const mr_llama *model, const mr_tokenizer *tok, const char *prompt,
                      const mr_generate_params *params, mr_generation *out, mr_error *err) {
    memset(out, 0, sizeof *out);
    mr_status status = check_params(params, err);
    if (status != MR_OK) {
        return status;
    }
    if (prompt == NULL) {
        prompt = "";
    }

    int32_t *ids = NULL;
    int64_t n = 0;
    status = encode_alloc(tok, prompt, strlen(prompt), resolve_add_bos(tok, params->add_bos),
                          params->parse_special, &ids, &n, err);
    if (status == MR_OK && n > INT32_MAX) {
        status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "generate: the prompt is too long");
    }
    if (status == MR_OK) {
        status = run_generation(model, tok, ids, (int)n, prompt[0] == '\0', params, out, err);
    }
    free(ids);
    return status;
}

/* ------------------------------------------------------------------------
 * Log-probabilities
 * ------------------------------------------------------------------------ */

void mr_logprob_result_free(mr_logprob_result *result) {
    if (result == NULL) {
        return;
    }
    free(result->token_logprobs);
    free(result->tokens);
    memset(result, 0, sizeof *result);
}

/* One request encoded: the whole sequence and where the completion starts. */
typedef struct scored_sequence {
    int32_t *ids;
    int64_t n;
    int64_t start; /* first completion id */
} scored_sequence;

/* Encodes request index into seq. */
static mr_status encode_request(const mr_tokenizer *tok, const mr_logprob_request *request,
                                int index, bool add_bos, bool parse_special,
                                scored_sequence *seq, mr_error *err) {
    if (request->prompt == NULL || request->completion == NULL) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "logprobs: request %d has a NULL prompt or completion", index);
    }
    size_t prompt_len = strlen(request->prompt);
    size_t completion_len = strlen(request->completion);
    char *joined = malloc(prompt_len + completion_len + 1);
    if (joined == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "logprobs: out of memory for request %d",
                            index);
    }
    memcpy(joined, request->prompt, prompt_len);
    memcpy(joined + prompt_len, request->completion, completion_len + 1);

    int32_t *prompt_ids = NULL;
    int64_t n_prompt = 0;
    mr_status status = encode_alloc(tok, request->prompt, prompt_len, add_bos, parse_special,
                                    &prompt_ids, &n_prompt, err);
    if (status == MR_OK) {
        status = encode_alloc(tok, joined, prompt_len + completion_len, add_bos, parse_special,
                              &seq->ids, &seq->n, err);
    }
    free(joined);

    /* The completion is what follows the longest common prefix, so a token
     * that spans the boundary of prompt and completion counts as completion. */
    int64_t common = 0;
    while (status == MR_OK && common < n_prompt && common < seq->n &&
           prompt_ids[common] == seq->ids[common]) {
        common++;
    }
    free(prompt_ids);
    if (status == MR_OK && common == 0 && seq->n > 0) {
        status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                              "logprobs: request %d: the prompt encodes to no ids before the "
                              "completion; give a prompt or add BOS",
                              index);
    }
    seq->start = common;
    return status;
}

/* Returns log softmax(row)[target] in double. */
static double log_softmax_at(const float *row, int V, int32_t target) {
    float max = row[0];
    for (int v = 1; v < V; v++) {
        max = row[v] > max ? row[v] : max;
    }
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        sum += exp((double)row[v] - (double)max);
    }
    return (double)row[target] - (double)max - log(sum);
}

/* Scores one encoded sequence into result, reusing cache and logits
 * (room for the longest completion plus one row). */
static mr_status score_sequence(const mr_llama *model, mr_llama_cache *cache, float *logits,
                                const scored_sequence *seq, int index, mr_logprob_result *result,
                                mr_error *err) {
    int V = mr_llama_get_config(model)->vocab_size;
    int n_completion = (int)(seq->n - seq->start);
    memset(result, 0, sizeof *result);
    if (n_completion == 0) {
        return MR_OK;
    }
    result->token_logprobs = malloc((size_t)n_completion * sizeof *result->token_logprobs);
    result->tokens = malloc((size_t)n_completion * sizeof *result->tokens);
    if (result->token_logprobs == NULL || result->tokens == NULL) {
        mr_logprob_result_free(result);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "logprobs: out of memory for request %d",
                            index);
    }

    /* Ids before the last prompt id only fill the cache; the rows from
     * the last prompt id on predict the completion ids. */
    int context = (int)seq->start - 1;
    mr_status status = MR_OK;
    if (context > 0) {
        status = mr_llama_eval(model, cache, seq->ids, context, 0, NULL, MR_LLAMA_LOGITS_NONE,
                               err);
    }
    if (status == MR_OK) {
        status = mr_llama_eval(model, cache, seq->ids + context, n_completion, context, logits,
                               MR_LLAMA_LOGITS_ALL, err);
    }
    if (status != MR_OK) {
        mr_logprob_result_free(result);
        return status;
    }

    result->n_tokens = n_completion;
    for (int t = 0; t < n_completion; t++) {
        int32_t target = seq->ids[seq->start + t];
        double lp = log_softmax_at(logits + (size_t)t * (size_t)V, V, target);
        result->tokens[t] = target;
        result->token_logprobs[t] = (float)lp;
        result->sum += lp;
    }
    return MR_OK;
}

mr_status mr_llama_logprobs(const mr_llama *model, const mr_tokenizer *tok,
                            const mr_logprob_request *requests, int n, int add_bos,
                            bool parse_special, mr_logprob_result *results, mr_error *err) {
    if (n < 0 || (n > 0 && (requests == NULL || results == NULL))) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "logprobs: %d requests but no request or result array", n);
    }
    memset(results, 0, (size_t)n * sizeof *results);
    if (n == 0) {
        return MR_OK;
    }
    const mr_llama_config *config = mr_llama_get_config(model);
    bool bos = resolve_add_bos(tok, add_bos);

    scored_sequence *seqs = calloc((size_t)n, sizeof *seqs);
    if (seqs == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "logprobs: out of memory for %d requests", n);
    }
    mr_status status = MR_OK;
    int64_t longest = 1;
    int64_t longest_completion = 1;
    for (int i = 0; i < n && status == MR_OK; i++) {
        status = encode_request(tok, &requests[i], i, bos, parse_special, &seqs[i], err);
        if (status == MR_OK && seqs[i].n > config->context_length) {
            status = mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                                  "logprobs: request %d has %lld ids but the context holds %d",
                                  i, (long long)seqs[i].n, config->context_length);
        }
        if (status == MR_OK) {
            longest = seqs[i].n > longest ? seqs[i].n : longest;
            int64_t completion = seqs[i].n - seqs[i].start;
            longest_completion = completion > longest_completion ? completion : longest_completion;
        }
    }

    mr_llama_cache *cache = NULL;
    float *logits = NULL;
    if (status == MR_OK) {
        cache = mr_llama_cache_create(model, (int)longest, err);
        logits = malloc((size_t)longest_completion * (size_t)config->vocab_size * sizeof *logits);
        if (cache == NULL) {
            status = err != NULL ? err->status : MR_ERR_NO_MEMORY;
        } else if (logits == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY,
                                  "logprobs: out of memory for %lld rows of logits",
                                  (long long)longest_completion);
        }
    }
    for (int i = 0; i < n && status == MR_OK; i++) {
        status = score_sequence(model, cache, logits, &seqs[i], i, &results[i], err);
    }

    if (status != MR_OK) {
        for (int i = 0; i < n; i++) {
            mr_logprob_result_free(&results[i]);
        }
    }
    for (int i = 0; i < n; i++) {
        free(seqs[i].ids);
    }
    free(seqs);
    free(logits);
    mr_llama_cache_free(cache);
    return status;
}

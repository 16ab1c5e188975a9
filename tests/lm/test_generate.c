/*
 * The generation loop and log-probabilities on stories260K
 * (tests/data/lm/). Greedy decoding from BOS must give llama2.c's 200
 * reference ids and story. Stop strings end the text exactly before their
 * first match. Streamed pieces add up to the text and never split a UTF-8
 * character. Seeds reproduce, and log-probabilities agree with a direct
 * computation on the training path.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/generate.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/tokenizer.h"
#include "test.h"

#define STORIES_PATH "data/lm/stories260K.gguf"
#define EXPECTED_PATH "data/lm/expected_greedy_200_ids.txt"
#define STEPS 200

static mr_llama *model;
static mr_tokenizer *tok;

/* Loads stories260K and its tokenizer once for all cases. */
static bool load_stories(void) {
    mr_error err = {0};
    model = mr_llama_load_gguf(STORIES_PATH, &err);
    if (model == NULL) {
        fprintf(stderr, "cannot load %s: %s\n", STORIES_PATH, err.message);
        return false;
    }
    mr_gguf *gguf = NULL;
    if (mr_gguf_open(STORIES_PATH, &gguf, &err) != MR_OK ||
        mr_tokenizer_from_gguf(gguf, &tok, &err) != MR_OK) {
        fprintf(stderr, "no tokenizer from %s: %s\n", STORIES_PATH, err.message);
        mr_gguf_close(gguf);
        return false;
    }
    mr_gguf_close(gguf);
    return true;
}

static int read_expected(int32_t *ids) {
    FILE *f = fopen(EXPECTED_PATH, "r");
    if (f == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot open %s", EXPECTED_PATH);
        return 0;
    }
    int count = 0;
    int value;
    while (count < STEPS && fscanf(f, "%d", &value) == 1) {
        ids[count++] = value;
    }
    fclose(f);
    return count;
}

/* Greedy parameters: temperature 0, no repetition penalty. */
static mr_generate_params greedy_params(int max_tokens) {
    mr_generate_params p;
    mr_generate_params_default(&p);
    p.max_tokens = max_tokens;
    p.sampler.temperature = 0.0f;
    return p;
}

/* The greedy story as text: the reference ids decoded, prefix space dropped. */
static char *expected_story(const int32_t *ids, int n, size_t *len) {
    mr_error err = {0};
    char *text = malloc(8192);
    if (mr_tokenizer_decode(tok, ids, n, true, false, text, 8191, len, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "decode failed: %s", err.message);
        *len = 0;
    }
    text[*len] = '\0';
    return text;
}

static void greedy_from_bos_gives_story(void) {
    int32_t expected[STEPS];
    CHECK_INT_EQ(read_expected(expected), STEPS);
    mr_generate_params p = greedy_params(STEPS);
    p.add_bos = 1;
    mr_generation out;
    mr_error err = {0};
    CHECK_STATUS(mr_generate(model, tok, "", &p, &out, &err), MR_OK);

    CHECK_INT_EQ(out.n_tokens, STEPS);
    CHECK_INT_EQ(out.prompt_tokens, 1);
    CHECK_INT_EQ(out.completion_tokens, STEPS);
    CHECK_INT_EQ(out.finish_reason, MR_FINISH_LENGTH);
    int same = 0;
    for (int i = 0; i < out.n_tokens && i < STEPS; i++) {
        same += out.tokens[i] == expected[i];
    }
    CHECK_INT_EQ(same, STEPS);

    const char *start = "Once upon a time, there was a little girl named Lily. She loved to play "
                        "outside";
    CHECK(out.text != NULL && strncmp(out.text, start, strlen(start)) == 0);
    size_t story_len;
    char *story = expected_story(expected, STEPS, &story_len);
    CHECK_INT_EQ(out.text_len, story_len);
    CHECK(out.text != NULL && strcmp(out.text, story) == 0);
    CHECK(strcmp(mr_finish_reason_name(out.finish_reason), "length") == 0);
    free(story);
    mr_generation_free(&out);

    /* The same from prompt ids: BOS alone. */
    int32_t bos = mr_tokenizer_bos(tok);
    CHECK_STATUS(mr_generate_tokens(model, tok, &bos, 1, &p, &out, &err), MR_OK);
    same = 0;
    for (int i = 0; i < out.n_tokens && i < STEPS; i++) {
        same += out.tokens[i] == expected[i];
    }
    CHECK_INT_EQ(same, STEPS);
    CHECK(out.text != NULL && strncmp(out.text, start, strlen(start)) == 0);
    mr_generation_free(&out);
}

static void prompt_text_continues(void) {
    /* The story's first words as the prompt: greedy continues it as it
     * did from BOS, because the prompt encodes to the same ids. Six ids
     * end inside "girl", whose "l" is a token of its own. */
    mr_generate_params p = greedy_params(6);
    mr_generation out;
    mr_error err = {0};
    CHECK_STATUS(mr_generate(model, tok, "Once upon a time,", &p, &out, &err), MR_OK);
    CHECK(out.text != NULL && strcmp(out.text, " there was a little gir") == 0);
    CHECK_INT_EQ(out.finish_reason, MR_FINISH_LENGTH);
    mr_generation_free(&out);
}

/* Collects streamed pieces; stops the stream after `limit` pieces if > 0. */
typedef struct stream_log {
    char text[8192];
    size_t len;
    int pieces;
    int limit;
    size_t boundaries[512];
} stream_log;

static bool collect_piece(const char *piece, size_t len, void *user_data) {
    stream_log *log = user_data;
    if (log->len + len < sizeof log->text) {
        memcpy(log->text + log->len, piece, len);
        log->len += len;
    }
    if (log->pieces < 512) {
        log->boundaries[log->pieces] = log->len;
    }
    log->pieces++;
    return log->limit <= 0 || log->pieces < log->limit;
}

static void stop_string_ends_text(void) {
    mr_generate_params p = greedy_params(STEPS);
    p.add_bos = 1;
    const char *stops[] = {"Lily"};
    p.stop = stops;
    p.n_stop = 1;
    stream_log log = {0};
    p.stream = collect_piece;
    p.stream_user_data = &log;
    mr_generation out;
    mr_error err = {0};
    CHECK_STATUS(mr_generate(model, tok, "", &p, &out, &err), MR_OK);
    CHECK(out.text != NULL &&
          strcmp(out.text, "Once upon a time, there was a little girl named ") == 0);
    CHECK_INT_EQ(out.finish_reason, MR_FINISH_STOP);
    CHECK(out.n_tokens < 20);
    CHECK_INT_EQ(log.len, out.text_len);
    CHECK(memcmp(log.text, out.text, out.text_len) == 0);
    mr_generation_free(&out);
}

static void stop_string_across_tokens(void) {
    /* "time, there" spans three tokens; the earliest of two stops wins. */
    mr_generate_params p = greedy_params(STEPS);
    p.add_bos = 1;
    const char *stops[] = {"named", "e, th"};
    p.stop = stops;
    p.n_stop = 2;
    mr_generation out;
    mr_error err = {0};
    CHECK_STATUS(mr_generate(model, tok, "", &p, &out, &err), MR_OK);
    CHECK(out.text != NULL && strcmp(out.text, "Once upon a tim") == 0);
    CHECK_INT_EQ(out.finish_reason, MR_FINISH_STOP);
    mr_generation_free(&out);
}

static void stream_holds_back_stop_prefix(void) {
    /* "Lily!" never occurs, but "Lily" does: those bytes are held back
     * until "." shows they are not a stop, then released. Every piece
     * ends outside a stop prefix and the pieces add up to the text. */
    mr_generate_params p = greedy_params(40);
    p.add_bos = 1;
    const char *stops[] = {"Lily!"};
    p.stop = stops;
    p.n_stop = 1;
    stream_log log = {0};
    p.stream = collect_piece;
    p.stream_user_data = &log;
    mr_generation out;
    mr_error err = {0};
    CHECK_STATUS(mr_generate(model, tok, "", &p, &out, &err), MR_OK);
    CHECK_INT_EQ(out.finish_reason, MR_FINISH_LENGTH);
    CHECK_INT_EQ(log.len, out.text_len);
    CHECK(memcmp(log.text, out.text, out.text_len) == 0);
    int ends_in_prefix = 0;
    for (int i = 0; i < log.pieces && i < 512; i++) {
        size_t end = log.boundaries[i];
        for (size_t k = 1; k < 5 && k <= end; k++) {
            ends_in_prefix += end < out.text_len && memcmp(log.text + end - k, "Lily!", k) == 0;
        }
    }
    CHECK_INT_EQ(ends_in_prefix, 0);
    CHECK(strstr(out.text, "Lily.") != NULL);
    mr_generation_free(&out);
}

static void stream_cancel_stops(void) {
    mr_generate_params p = greedy_params(STEPS);
    p.add_bos = 1;
    stream_log log = {0};
    log.limit = 3;
    p.stream = collect_piece;
    p.stream_user_data = &log;
    mr_generation out;
    mr_error err = {0};
    CHECK_STATUS(mr_generate(model, tok, "", &p, &out, &err), MR_OK);
    CHECK_INT_EQ(out.finish_reason, MR_FINISH_CANCELLED);
    CHECK_INT_EQ(log.pieces, 3);
    CHECK_INT_EQ(out.text_len, log.len);
    CHECK(out.text != NULL && strcmp(out.text, "Once upon a") == 0);
    mr_generation_free(&out);
}

/* Runs seeded sampling for 60 tokens and copies the ids into ids. */
static int sample_ids(uint64_t seed, int32_t *ids) {
    mr_generate_params p;
    mr_generate_params_default(&p);
    p.max_tokens = 60;
    p.add_bos = 1;
    p.sampler.temperature = 1.0f;
    p.sampler.seed = seed;
    mr_generation out;
    mr_error err = {0};
    CHECK_STATUS(mr_generate(model, tok, "Once", &p, &out, &err), MR_OK);
    int n = out.n_tokens;
    memcpy(ids, out.tokens, (size_t)n * sizeof *ids);
    mr_generation_free(&out);
    return n;
}

static void seed_reproduces_text(void) {
    int32_t a[60];
    int32_t b[60];
    int32_t c[60];
    int32_t d[60];
    int na = sample_ids(42, a);
    int nb = sample_ids(42, b);
    int nc = sample_ids(43, c);
    CHECK_INT_EQ(nb, na);
    CHECK(memcmp(a, b, (size_t)na * sizeof *a) == 0);
    CHECK(nc != na || memcmp(a, c, (size_t)na * sizeof *a) != 0);

    /* One thread and two give the same ids. */
    int threads = mr_threads_get();
    mr_threads_set(threads == 1 ? 2 : 1);
    int nd = sample_ids(42, d);
    mr_threads_set(threads);
    CHECK_INT_EQ(nd, na);
    CHECK(memcmp(a, d, (size_t)na * sizeof *a) == 0);
}

/* Returns whether a piece boundary at pos splits a valid multi-byte
 * UTF-8 character of text. */
static bool splits_character(const unsigned char *text, size_t len, size_t pos) {
    for (size_t start = pos >= 3 ? pos - 3 : 0; start < pos; start++) {
        unsigned char c = text[start];
        size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (need == 0 || start + need <= pos || start + need > len) {
            continue;
        }
        bool valid = true;
        for (size_t k = 1; k < need; k++) {
            valid = valid && (text[start + k] & 0xC0) == 0x80;
        }
        if (valid) {
            return true;
        }
    }
    return false;
}

static void stream_keeps_utf8_whole(void) {
    /* A random model over the stories vocabulary samples its 256 byte
     * tokens about half the time, so multi-byte characters arrive in
     * pieces. No streamed piece may end inside one. */
    mr_llama_config config = {.vocab_size = 512, .dim = 16, .layers = 1, .heads = 2,
                              .kv_heads = 1, .head_dim = 8, .ffn_dim = 32,
                              .context_length = 512, .rope_base = 10000.0f,
                              .rope_layout = MR_ROPE_ADJACENT, .rms_eps = 1e-5f};
    mr_error err = {0};
    mr_llama *random_model = mr_llama_init(&config, 5, &err);
    CHECK(random_model != NULL);
    if (random_model == NULL) {
        return;
    }
    mr_generate_params p;
    mr_generate_params_default(&p);
    p.max_tokens = 400;
    p.add_bos = 1;
    p.sampler.temperature = 1.0f;
    p.sampler.top_k = 0;
    p.sampler.top_p = 1.0f;
    p.sampler.min_p = 0.0f;
    p.sampler.seed = 11;
    stream_log log = {0};
    p.stream = collect_piece;
    p.stream_user_data = &log;
    mr_generation out;
    CHECK_STATUS(mr_generate(random_model, tok, "", &p, &out, &err), MR_OK);
    CHECK_INT_EQ(log.len, out.text_len);
    CHECK(memcmp(log.text, out.text, out.text_len) == 0);

    int multibyte = 0;
    for (size_t i = 0; i < out.text_len; i++) {
        multibyte += splits_character((const unsigned char *)out.text, out.text_len, i);
    }
    int split = 0;
    for (int i = 0; i < log.pieces && i < 512; i++) {
        split += splits_character((const unsigned char *)out.text, out.text_len,
                                  log.boundaries[i]);
    }
    CHECK(multibyte > 0);
    CHECK_INT_EQ(split, 0);
    mr_generation_free(&out);
    mr_llama_free(random_model);
}

static void bad_params_rejected(void) {
    mr_generate_params p = greedy_params(0);
    mr_generation out;
    mr_error err = {0};
    CHECK_STATUS(mr_generate(model, tok, "Once", &p, &out, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "max_tokens") != NULL);

    p = greedy_params(4);
    const char *stops[] = {""};
    p.stop = stops;
    p.n_stop = 1;
    CHECK_STATUS(mr_generate(model, tok, "Once", &p, &out, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "stop string 0") != NULL);

    /* No BOS and no text: nothing to condition on. */
    p = greedy_params(4);
    p.add_bos = 0;
    CHECK_STATUS(mr_generate(model, tok, "", &p, &out, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(out.text == NULL);
}

/* log softmax(row)[target] in double. */
static double reference_logprob(const float *row, int V, int32_t target) {
    double max = row[0];
    for (int v = 1; v < V; v++) {
        max = row[v] > max ? row[v] : max;
    }
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        sum += exp(row[v] - max);
    }
    return row[target] - max - log(sum);
}

static void logprobs_match_training_path(void) {
    mr_logprob_request requests[] = {
        {"Once upon a time,", " there was a little girl named Lily."},
        {"Lily liked", " to eat red apples in the park with her mom"},
        {"Tom", ""},
    };
    mr_logprob_result results[3];
    mr_error err = {0};
    CHECK_STATUS(mr_llama_logprobs(model, tok, requests, 3, -1, false, results, &err), MR_OK);
    CHECK(results[0].n_tokens > 5);
    CHECK(results[1].n_tokens > 5);
    CHECK_INT_EQ(results[2].n_tokens, 0);
    CHECK_NEAR(results[2].sum, 0.0, 0.0);

    /* The reference: the training path's logits of the whole sequence,
     * on a trainable copy of the same weights. */
    mr_llama *trainable = mr_llama_load_gguf(STORIES_PATH, &err);
    CHECK_STATUS(mr_llama_make_trainable(trainable, &err), MR_OK);
    for (int r = 0; r < 2; r++) {
        char joined[256];
        snprintf(joined, sizeof joined, "%s%s", requests[r].prompt, requests[r].completion);
        int32_t ids[128];
        int64_t n = 0;
        CHECK_STATUS(mr_tokenizer_encode(tok, joined, strlen(joined), true, false, ids, 128, &n,
                                         &err),
                     MR_OK);
        int start = (int)n - results[r].n_tokens;
        mr_ctx *ctx = mr_ctx_create(0);
        int64_t shape[2] = {1, n};
        mr_tensor *tokens = mr_tensor_from_i32(ctx, 2, shape, ids);
        mr_tensor *logits = mr_llama_logits(trainable, ctx, tokens);
        CHECK_CTX_OK(ctx);
        double sum = 0.0;
        double worst = 0.0;
        for (int t = start; logits != NULL && t < n; t++) {
            CHECK_INT_EQ(results[r].tokens[t - start], ids[t]);
            double lp = reference_logprob(logits->data + (int64_t)(t - 1) * 512, 512, ids[t]);
            double diff = fabs(lp - results[r].token_logprobs[t - start]);
            worst = diff > worst ? diff : worst;
            sum += lp;
        }
        /* The paths differ in summation order only, and stories260K's
         * logits are below 20 in size, so per-token values agree to about
         * 1e-5; 1e-4 per token leaves room, and the sum at most adds up. */
        CHECK_NEAR(worst, 0.0, 1e-4);
        CHECK_NEAR(results[r].sum, sum, 1e-4 * results[r].n_tokens);
        CHECK(results[r].sum < 0.0);
        mr_ctx_free(ctx);
    }
    mr_llama_free(trainable);

    /* The greedy story's own words are likely: the mean log-probability
     * of the first request is above log(0.2). */
    CHECK(results[0].sum / results[0].n_tokens > log(0.2));
    for (int r = 0; r < 3; r++) {
        mr_logprob_result_free(&results[r]);
    }
}

static void logprobs_boundary_token_counts_as_completion(void) {
    /* "Once upon a ti" + "me" encodes "time" as one token across the
     * boundary, which then belongs to the completion. */
    mr_logprob_request request = {"Once upon a ti", "me"};
    mr_logprob_result result;
    mr_error err = {0};
    CHECK_STATUS(mr_llama_logprobs(model, tok, &request, 1, -1, false, &result, &err), MR_OK);
    CHECK(result.n_tokens >= 1);
    size_t len = 0;
    char piece[64];
    mr_tokenizer_decode(tok, result.tokens, result.n_tokens, false, false, piece, sizeof piece,
                        &len, &err);
    CHECK(len >= 2 && memcmp(piece + len - 2, "me", 2) == 0);
    mr_logprob_result_free(&result);

    /* A prompt with no ids and no BOS cannot condition anything. */
    mr_logprob_request empty = {"", "Once"};
    CHECK_STATUS(mr_llama_logprobs(model, tok, &empty, 1, 0, false, &result, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "request 0") != NULL);
}

int main(void) {
    if (!load_stories()) {
        return 1;
    }
    MR_RUN(greedy_from_bos_gives_story);
    MR_RUN(prompt_text_continues);
    MR_RUN(stop_string_ends_text);
    MR_RUN(stop_string_across_tokens);
    MR_RUN(stream_holds_back_stop_prefix);
    MR_RUN(stream_cancel_stops);
    MR_RUN(seed_reproduces_text);
    MR_RUN(stream_keeps_utf8_whole);
    MR_RUN(bad_params_rejected);
    MR_RUN(logprobs_match_training_path);
    MR_RUN(logprobs_boundary_token_counts_as_completion);
    mr_tokenizer_free(tok);
    mr_llama_free(model);
    return mr_test_finish();
}

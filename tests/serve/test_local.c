/*
 * The local back end on stories260K (tests/data/lm/): opening errors, the
 * context limit, prompts that do not fit, batches on several threads that
 * give the same results as one after another, and pool files whose
 * "local" entries load in-process models.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/llm.h"
#include "multiround/serve.h"
#include "test.h"

#define STORIES_PATH "data/lm/stories260K.gguf"

static mr_llm_request completion(const char *prompt, int max_tokens) {
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.kind = MR_LLM_COMPLETION;
    request.prompt = prompt;
    request.max_tokens = max_tokens;
    request.temperature = 0.0;
    return request;
}

/* Returns whether both texts exist and are equal. */
static bool same_text(const char *a, const char *b) {
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static void open_rejects_bad_settings(void) {
    mr_local_model_config config;
    mr_error err;

    mr_local_model_config_init(&config);
    config.path = "data/lm/no-such-model.gguf";
    mr_error_clear(&err);
    CHECK(mr_local_model_open(&config, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "no-such-model.gguf") != NULL);

    mr_local_model_config_init(&config);
    config.path = STORIES_PATH;
    config.chat_template = "vicuna";
    mr_error_clear(&err);
    CHECK(mr_local_model_open(&config, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "chatml") != NULL);

    mr_local_model_config_init(&config);
    config.path = STORIES_PATH;
    config.context_length = 4096;
    mr_error_clear(&err);
    CHECK(mr_local_model_open(&config, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "use 1 to 2048") != NULL);

    mr_local_model_config_init(&config);
    config.path = NULL;
    mr_error_clear(&err);
    CHECK(mr_local_model_open(&config, &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_INVALID_ARGUMENT);
}

static void context_limit_caps_output(void) {
    mr_local_model_config config;
    mr_local_model_config_init(&config);
    config.path = STORIES_PATH;
    config.id = "tiny-context";
    config.context_length = 16;
    config.default_max_tokens = 5;
    mr_error err;
    mr_error_clear(&err);
    mr_llm *llm = mr_llm_local_open(&config, NULL, &err);
    CHECK(llm != NULL);
    if (llm == NULL) {
        return;
    }
    CHECK(strcmp(mr_llm_name(llm), "tiny-context") == 0);
    CHECK(strcmp(mr_llm_backend_name(llm), "local") == 0);

    /* 6 prompt ids leave 10 positions, so 100 tokens become 10. */
    mr_llm_request request = completion("Once upon a time,", 100);
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK_INT_EQ(result.prompt_tokens, 6);
    CHECK_INT_EQ(result.completion_tokens, 10);
    CHECK(strcmp(result.finish_reason, "length") == 0);
    CHECK(strcmp(result.model, "tiny-context") == 0);
    CHECK_INT_EQ(result.http_status, 0);
    CHECK_INT_EQ(result.attempts, 1);
    mr_llm_result_free(&result);

    /* Without max_tokens the default of 5 applies. */
    request.max_tokens = 0;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK_INT_EQ(result.completion_tokens, 5);
    mr_llm_result_free(&result);

    /* A prompt of 16 or more ids leaves no room. */
    request = completion("Once upon a time, there was a little girl named Lily. She loved to "
                         "play outside.",
                         4);
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "takes 16 positions") != NULL);
    CHECK(result.text == NULL);
    mr_llm_result_free(&result);

    /* Chat needs a template, which this file lacks. */
    mr_llm_message message = {"user", "hi"};
    mr_llm_request chat;
    mr_llm_request_init(&chat);
    chat.messages = &message;
    chat.n_messages = 1;
    CHECK_STATUS(mr_llm_complete(llm, &chat, &result, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "no chat template") != NULL);
    mr_llm_result_free(&result);

    mr_llm_usage usage;
    mr_llm_usage_get(llm, &usage);
    CHECK_INT_EQ(usage.requests, 2);
    CHECK_INT_EQ(usage.failures, 2);
    CHECK_INT_EQ(usage.prompt_tokens, 12);
    CHECK_INT_EQ(usage.completion_tokens, 15);
    mr_llm_free(llm);
}

static void batch_matches_serial(void) {
    mr_local_model_config config;
    mr_local_model_config_init(&config);
    config.path = STORIES_PATH;
    mr_error err;
    mr_error_clear(&err);
    mr_llm *llm = mr_llm_local_open(&config, "stories", &err);
    CHECK(llm != NULL);
    if (llm == NULL) {
        return;
    }

    /* Seeded sampling on 4 threads at once gives what one thread gives,
     * because requests are serialised and each has its own KV cache. */
    enum { N = 8 };
    const char *prompts[N] = {"Tom", "The cat", "Once", "A big", "Lily saw", "One day",
                              "The sun", "Sam and"};
    mr_llm_request requests[N];
    for (int i = 0; i < N; i++) {
        requests[i] = completion(prompts[i], 24);
        requests[i].temperature = 0.9;
        requests[i].use_seed = true;
        requests[i].seed = 100 + i;
    }
    mr_llm_result parallel[N], serial[N];
    CHECK_STATUS(mr_llm_batch(llm, requests, N, 4, parallel, &err), MR_OK);
    for (int i = 0; i < N; i++) {
        CHECK_STATUS(mr_llm_complete(llm, &requests[i], &serial[i], &err), MR_OK);
        CHECK(same_text(parallel[i].text, serial[i].text));
        CHECK_INT_EQ(parallel[i].completion_tokens, serial[i].completion_tokens);
        mr_llm_result_free(&parallel[i]);
        mr_llm_result_free(&serial[i]);
    }
    mr_llm_free(llm);
}

/* Writes text to path; returns false on failure. */
static bool write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        return false;
    }
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

static void pool_loads_local_models(void) {
    char folder[] = "/tmp/mr_pool_XXXXXX";
    char model_path[PATH_MAX], link_path[PATH_MAX], pool_path[PATH_MAX];
    CHECK(mkdtemp(folder) != NULL);
    CHECK(realpath(STORIES_PATH, model_path) != NULL);

    /* One entry names the model relative to the pool file's folder (a
     * link there), the other by its absolute path. */
    snprintf(link_path, sizeof link_path, "%s/stories.gguf", folder);
    CHECK(symlink(model_path, link_path) == 0);
    snprintf(pool_path, sizeof pool_path, "%s/pool.json", folder);
    char text[2 * PATH_MAX + 512];
    snprintf(text, sizeof text,
             "{\"models\": ["
             "{\"name\": \"near\", \"backend\": \"local\", \"model_path\": \"stories.gguf\", "
             "\"price_input_per_mtok\": 0, \"price_output_per_mtok\": 0},"
             "{\"name\": \"far\", \"backend\": \"local\", \"model_path\": \"%s\", "
             "\"model\": \"story-teller\", \"chat_template\": \"chatml\", "
             "\"context_length\": 64, \"price_input_per_mtok\": 1, "
             "\"price_output_per_mtok\": 2}]}",
             model_path);
    CHECK(write_file(pool_path, text));

    mr_error err;
    mr_error_clear(&err);
    mr_llm_pool *pool = mr_llm_pool_load(pool_path, &err);
    CHECK(pool != NULL);
    if (pool != NULL) {
        CHECK_INT_EQ(mr_llm_pool_size(pool), 2);
        mr_llm *near = mr_llm_pool_find(pool, "near");
        mr_llm *far = mr_llm_pool_find(pool, "far");
        CHECK(near != NULL);
        CHECK(far != NULL);
        mr_llm_request request = completion("Once upon a time,", 6);
        mr_llm_result result;
        if (near != NULL) {
            CHECK_STATUS(mr_llm_complete(near, &request, &result, &err), MR_OK);
            CHECK(same_text(result.text, " there was a little gir"));
            CHECK(strcmp(result.model, "stories") == 0);
            mr_llm_result_free(&result);
        }
        if (far != NULL) {
            mr_llm_message message = {"user", "A dog"};
            mr_llm_request chat;
            mr_llm_request_init(&chat);
            chat.messages = &message;
            chat.n_messages = 1;
            chat.max_tokens = 4;
            CHECK_STATUS(mr_llm_complete(far, &chat, &result, &err), MR_OK);
            CHECK(strcmp(result.model, "story-teller") == 0);
            CHECK(result.cost_usd > 0);
            mr_llm_result_free(&result);
        }
        mr_llm_pool_free(pool);
    }

    /* A missing model_path and a bad template name the entry. */
    CHECK(write_file(pool_path, "{\"models\": [{\"name\": \"x\", \"backend\": \"local\", "
                                "\"price_input_per_mtok\": 0, \"price_output_per_mtok\": 0}]}"));
    mr_error_clear(&err);
    CHECK(mr_llm_pool_load(pool_path, &err) == NULL);
    CHECK(strstr(err.message, "models[0].model_path is missing") != NULL);

    CHECK(write_file(pool_path, "{\"models\": [{\"name\": \"x\", \"backend\": \"local\", "
                                "\"model_path\": \"stories.gguf\", \"chat_template\": \"x\", "
                                "\"price_input_per_mtok\": 0, \"price_output_per_mtok\": 0}]}"));
    mr_error_clear(&err);
    CHECK(mr_llm_pool_load(pool_path, &err) == NULL);
    CHECK(strstr(err.message, "models[0] ('x')") != NULL);

    unlink(pool_path);
    unlink(link_path);
    rmdir(folder);
}

int main(void) {
    /* stories260K gains nothing from a second kernel thread. */
    mr_threads_set(1);
    MR_RUN(open_rejects_bad_settings);
    MR_RUN(context_limit_caps_output);
    MR_RUN(batch_matches_serial);
    MR_RUN(pool_loads_local_models);
    return mr_test_finish();
}

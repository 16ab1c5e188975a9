/*
 * Model pool files: loading, lookup, errors that name the file and field,
 * and per-model accounting of calls to a fake server on 127.0.0.1.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_server.h"
#include "multiround/llm.h"
#include "test.h"

static char temp_folder[64];

#define CHECK_CONTAINS(text, part)                                                     \
    do {                                                                               \
        const char *text_ = (text);                                                    \
        if (text_ == NULL || strstr(text_, (part)) == NULL) {                          \
            mr_test_fail(__FILE__, __LINE__, "'%s' does not contain '%s'",             \
                         text_ != NULL ? text_ : "(null)", (part));                    \
        }                                                                              \
    } while (0)

/* Writes text to <temp_folder>/<name> and stores that path in path. */
static void write_pool(const char *name, const char *text, char *path, size_t path_size) {
    snprintf(path, path_size, "%s/%s", temp_folder, name);
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot write %s", path);
        return;
    }
    fputs(text, file);
    fclose(file);
}

/* ------------------------------------------------------------------------ */

static void pool_loads_models(void) {
    setenv("MR_TEST_POOL_KEY", "sk-pool-1", 1);
    const char *text =
        "{\"models\": [\n"
        "  {\"name\": \"small\", \"backend\": \"http\",\n"
        "   \"base_url\": \"http://127.0.0.1:8080/v1\", \"model\": \"qwen2.5-0.5b\",\n"
        "   \"price_input_per_mtok\": 0, \"price_output_per_mtok\": 0,\n"
        "   \"description\": \"fast local model\", \"timeout_s\": 30, \"max_retries\": 1},\n"
        "  {\"name\": \"large\", \"backend\": \"http\",\n"
        "   \"base_url\": \"http://127.0.0.1:8000/v1/\", \"model\": \"llama-3-70b\",\n"
        "   \"api_key_env\": \"MR_TEST_POOL_KEY\",\n"
        "   \"price_input_per_mtok\": 0.6, \"price_output_per_mtok\": 0.8}\n"
        "]}\n";
    char path[128];
    write_pool("good.json", text, path, sizeof path);

    mr_error err;
    mr_llm_pool *pool = mr_llm_pool_load(path, &err);
    CHECK(pool != NULL);
    if (pool == NULL) {
        mr_test_fail(__FILE__, __LINE__, "load failed: %s", err.message);
        return;
    }
    CHECK_INT_EQ(mr_llm_pool_size(pool), 2);
    CHECK(strcmp(mr_llm_name(mr_llm_pool_get(pool, 0)), "small") == 0);
    CHECK(strcmp(mr_llm_name(mr_llm_pool_get(pool, 1)), "large") == 0);
    CHECK(mr_llm_pool_get(pool, 2) == NULL);
    CHECK(mr_llm_pool_get(pool, -1) == NULL);
    CHECK(mr_llm_pool_find(pool, "large") == mr_llm_pool_get(pool, 1));
    CHECK(mr_llm_pool_find(pool, "medium") == NULL);
    CHECK(strcmp(mr_llm_description(mr_llm_pool_get(pool, 0)), "fast local model") == 0);
    CHECK(strcmp(mr_llm_description(mr_llm_pool_get(pool, 1)), "") == 0);
    CHECK(strcmp(mr_llm_backend_name(mr_llm_pool_get(pool, 1)), "http") == 0);
    mr_llm_pool_free(pool);
    mr_llm_pool_free(NULL);
}

static void pool_errors_name_field(void) {
    const char *prefix = "{\"models\": [{\"name\": \"m\", \"backend\": \"http\", "
                         "\"base_url\": \"http://127.0.0.1:8080/v1\", \"model\": \"id\", ";
    struct {
        const char *tail;   /* appended to prefix, or a whole file when full is set */
        bool full;
        mr_status status;
        const char *message;
    } cases[] = {
        {"\"price_input_per_mtok\": 1, \"price_output_per_mtok\": 2}, 7]}", false,
         MR_ERR_FORMAT, "models[1] is not an object"},
        {"\"price_output_per_mtok\": 2}]}", false, MR_ERR_FORMAT,
         "models[0].price_input_per_mtok is missing, expected a number >= 0 (US dollars "
         "per million input tokens"},
        {"\"price_input_per_mtok\": \"1\", \"price_output_per_mtok\": 2}]}", false,
         MR_ERR_FORMAT, "models[0].price_input_per_mtok is not a number"},
        {"\"price_input_per_mtok\": 1, \"price_output_per_mtok\": -2}]}", false,
         MR_ERR_FORMAT, "models[0].price_output_per_mtok is negative"},
        {"\"price_input_per_mtok\": 1, \"price_output_per_mtok\": 2, \"prize\": 3}]}", false,
         MR_ERR_FORMAT, "models[0] has unknown field 'prize'; the known fields are name,"},
        {"\"price_input_per_mtok\": 1, \"price_output_per_mtok\": 2, \"max_retries\": 1.5}]}",
         false, MR_ERR_FORMAT, "models[0].max_retries is 1.5, expected an integer"},
        {"\"price_input_per_mtok\": 1, \"price_output_per_mtok\": 2, \"timeout_s\": 0}]}",
         false, MR_ERR_INVALID_ARGUMENT, "models[0] ('m'): llm http: connect_timeout_s 10 and "
                                         "timeout_s 0"},
        {"\"price_input_per_mtok\": 1, \"price_output_per_mtok\": 2, "
         "\"api_key_env\": \"MR_TEST_POOL_UNSET\"}]}",
         false, MR_ERR_NOT_FOUND, "MR_TEST_POOL_UNSET, named by api_key_env"},
        {"\"price_input_per_mtok\": 1, \"price_output_per_mtok\": 2}, {\"name\": \"m\", "
         "\"backend\": \"http\", \"base_url\": \"http://127.0.0.1:1/v1\", \"model\": \"x\", "
         "\"price_input_per_mtok\": 1, \"price_output_per_mtok\": 2}]}",
         false, MR_ERR_FORMAT, "models[1].name 'm' repeats models[0]"},
        {"{\"models\": [{\"name\": \"m\", \"backend\": \"local\", "
         "\"price_input_per_mtok\": 0, \"price_output_per_mtok\": 0}]}",
         true, MR_ERR_FORMAT, "models[0].model_path is missing"},
        {"{\"models\": [{\"name\": \"m\", \"backend\": \"grpc\", "
         "\"price_input_per_mtok\": 0, \"price_output_per_mtok\": 0}]}",
         true, MR_ERR_FORMAT, "models[0].backend is \"grpc\", expected \"http\" or \"local\""},
        {"{\"models\": [{\"backend\": \"http\"}]}", true, MR_ERR_FORMAT,
         "models[0].name is missing, expected a non-empty string"},
        {"{\"models\": [{\"name\": \"m\", \"backend\": \"http\", \"model\": \"x\", "
         "\"price_input_per_mtok\": 0, \"price_output_per_mtok\": 0}]}",
         true, MR_ERR_FORMAT, "models[0].base_url is missing"},
        {"{\"models\": {}}", true, MR_ERR_FORMAT, "must be a JSON object with a \"models\" array"},
        {"{\"models\": []}", true, MR_ERR_FORMAT, "has an empty \"models\" array"},
        {"{\"models\": [], \"default\": \"m\"}", true, MR_ERR_FORMAT,
         "unknown top-level field 'default'"},
        {"{\"models\": [\n  {\"name\": \"m\",,}\n]}", true, MR_ERR_FORMAT,
         "is not valid JSON: parsing failed at byte 29 (line 2)"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024];
        snprintf(text, sizeof text, "%s%s", cases[i].full ? "" : prefix, cases[i].tail);
        char name[32];
        snprintf(name, sizeof name, "bad%zu.json", i);
        char path[128];
        write_pool(name, text, path, sizeof path);

        mr_error err;
        mr_llm_pool *pool = mr_llm_pool_load(path, &err);
        CHECK(pool == NULL);
        mr_llm_pool_free(pool);
        if (err.status != cases[i].status) {
            mr_test_fail(__FILE__, __LINE__, "case %zu returned '%s', expected '%s': %s", i,
                         mr_status_name(err.status), mr_status_name(cases[i].status),
                         err.message);
        }
        CHECK_CONTAINS(err.message, path);
        CHECK_CONTAINS(err.message, cases[i].message);
    }

    mr_error err;
    CHECK(mr_llm_pool_load("/nonexistent/pool.json", &err) == NULL);
    CHECK_STATUS(err.status, MR_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.message, "cannot open /nonexistent/pool.json");
}

static void pool_accounts_per_model(void) {
    fake_reply script[] = {{0}};
    fake_server *server = fake_server_start(script, 1);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"models\": [\n"
             " {\"name\": \"cheap\", \"backend\": \"http\", \"base_url\": \"%s\",\n"
             "  \"model\": \"c\", \"price_input_per_mtok\": 1, \"price_output_per_mtok\": 2},\n"
             " {\"name\": \"dear\", \"backend\": \"http\", \"base_url\": \"%s\",\n"
             "  \"model\": \"d\", \"price_input_per_mtok\": 100, \"price_output_per_mtok\": 300}\n"
             "]}\n",
             fake_server_base_url(server), fake_server_base_url(server));
    char path[128];
    write_pool("served.json", text, path, sizeof path);
    mr_error err;
    mr_llm_pool *pool = mr_llm_pool_load(path, &err);
    CHECK(pool != NULL);
    if (pool == NULL) {
        fake_server_stop(server);
        return;
    }

    mr_llm_message message = {"user", "price me"};
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.messages = &message;
    request.n_messages = 1;
    int calls[2] = {2, 1};
    for (int m = 0; m < 2; m++) {
        for (int i = 0; i < calls[m]; i++) {
            mr_llm_result result;
            CHECK_STATUS(mr_llm_complete(mr_llm_pool_get(pool, m), &request, &result, &err),
                         MR_OK);
            mr_llm_result_free(&result);
        }
    }

    /* cheap: 2 * (11 * 1 + 7 * 2) / 1e6; dear: (11 * 100 + 7 * 300) / 1e6 */
    mr_llm_usage cheap, dear;
    mr_llm_usage_get(mr_llm_pool_find(pool, "cheap"), &cheap);
    mr_llm_usage_get(mr_llm_pool_find(pool, "dear"), &dear);
    CHECK_INT_EQ(cheap.requests, 2);
    CHECK_INT_EQ(cheap.prompt_tokens, 2 * FAKE_PROMPT_TOKENS);
    CHECK_INT_EQ(cheap.completion_tokens, 2 * FAKE_COMPLETION_TOKENS);
    CHECK_NEAR(cheap.cost_usd, 50e-6, 1e-15);
    CHECK_INT_EQ(dear.requests, 1);
    CHECK_NEAR(dear.cost_usd, 3200e-6, 1e-15);

    char *table = NULL;
    size_t table_size = 0;
    FILE *out = open_memstream(&table, &table_size);
    mr_llm_pool_usage_print(pool, out);
    fclose(out);
    CHECK_CONTAINS(table, "model");
    CHECK_CONTAINS(table, "cost_usd");
    CHECK_CONTAINS(table, "0.000050");
    CHECK_CONTAINS(table, "0.003200");
    CHECK_CONTAINS(table, "0.003250");  /* the total row */
    CHECK_CONTAINS(table, "total");
    free(table);

    mr_llm_pool_free(pool);
    fake_server_stop(server);
}

int main(void) {
    const char *proxy_variables[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                     "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxy_variables / sizeof proxy_variables[0]; i++) {
        unsetenv(proxy_variables[i]);
    }
    setenv("no_proxy", "*", 1);
    unsetenv("MR_TEST_POOL_UNSET");
    mr_log_set_level(MR_LOG_WARN);

    snprintf(temp_folder, sizeof temp_folder, "/tmp/mr_llm_pool_XXXXXX");
    if (mkdtemp(temp_folder) == NULL) {
        fprintf(stderr, "test_pool: cannot create a folder under /tmp\n");
        return 1;
    }

    MR_RUN(pool_loads_models);
    MR_RUN(pool_errors_name_field);
    MR_RUN(pool_accounts_per_model);

    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", temp_folder);
    int removed = system(command);
    (void)removed;
    return mr_test_finish();
}

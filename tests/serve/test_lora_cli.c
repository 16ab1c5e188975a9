/*
 * A trained LoRA adapter applied at inference: a PEFT folder written
 * with mr_lora_save_peft() for stories260K, then given to `generate
 * --lora`, `lm merge`, `lm info`, `lm score --lora` and the in-process
 * model of serve and chat (mr_local_model_config.lora_dir). Every path
 * must give the greedy text of the model merged in memory with
 * mr_lora_merge(), which differs from the base model's text.
 *
 * The tool is found at ../multiround beside the test executables, or at
 * $MR_CLI_PATH.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_probe.h"
#include "multiround/generate.h"
#include "multiround/gguf.h"
#include "multiround/llama.h"
#include "multiround/lora.h"
#include "multiround/params.h"
#include "multiround/serve.h"
#include "multiround/tensor.h"
#include "multiround/tokenizer.h"
#include "test.h"

#define STORIES_PATH "data/lm/stories260K.gguf"
#define PROMPT "Once upon a time"
#define MAX_TOKENS 12
#define OUTPUT_CAP 65536

static char work_dir[] = "/tmp/mr_lora_cli_XXXXXX";
static char adapter_dir[256];
static char merged_text[1024]; /* greedy text of the model merged in memory */
static char base_text[1024];   /* greedy text of the base model */

/* Runs the tool with argv (NULL-terminated, argv[0] ignored); stores its
 * stdout and stderr, NUL-terminated, in out and errors (OUTPUT_CAP bytes
 * each). Returns the exit code, or -1 when it could not run. */
static int run_tool(const char *const *argv, char *out, char *errors) {
    char out_path[512], err_path[512];
    snprintf(out_path, sizeof out_path, "%s/stdout", work_dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", work_dir);
    const char *full[32];
    full[0] = probe_cli_path();
    int argc = 1;
    for (int i = 1; argv[i] != NULL && argc < 31; i++) {
        full[argc++] = argv[i];
    }
    full[argc] = NULL;

    pid_t pid = fork();
    if (pid == 0) {
        if (freopen(out_path, "w", stdout) == NULL || freopen(err_path, "w", stderr) == NULL) {
            _exit(126);
        }
        execv(full[0], (char *const *)full);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        return -1;
    }

    char *targets[2] = {out, errors};
    const char *paths[2] = {out_path, err_path};
    for (int i = 0; i < 2; i++) {
        targets[i][0] = '\0';
        FILE *file = fopen(paths[i], "r");
        if (file != NULL) {
            size_t n = fread(targets[i], 1, OUTPUT_CAP - 1, file);
            targets[i][n] = '\0';
            fclose(file);
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Generates greedy text from model into text (cap bytes); false on error. */
static bool greedy_text(const mr_llama *model, const mr_tokenizer *tok, char *text,
                        size_t cap) {
    mr_generate_params params;
    mr_generate_params_default(&params);
    params.max_tokens = MAX_TOKENS;
    params.sampler.temperature = 0.0f;
    mr_generation generation;
    mr_error err;
    mr_error_clear(&err);
    if (mr_generate(model, tok, PROMPT, &params, &generation, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "generation failed: %s", err.message);
        return false;
    }
    snprintf(text, cap, "%s", generation.text);
    mr_generation_free(&generation);
    return true;
}

/*
 * Writes an adapter on every linear layer with nonzero B (a fresh one has
 * B = 0 and changes nothing) and stores the greedy texts of the base
 * model and of the model merged in memory. Returns false on failure.
 */
static bool make_adapter(void) {
    if (mkdtemp(work_dir) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot create a folder under /tmp");
        return false;
    }
    snprintf(adapter_dir, sizeof adapter_dir, "%s/adapter", work_dir);

    mr_error err;
    mr_error_clear(&err);
    mr_gguf *gguf = NULL;
    mr_tokenizer *tok = NULL;
    mr_llama *model = mr_llama_load_gguf(STORIES_PATH, &err);
    if (model == NULL || mr_gguf_open(STORIES_PATH, &gguf, &err) != MR_OK ||
        mr_tokenizer_from_gguf(gguf, &tok, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "cannot open %s: %s", STORIES_PATH, err.message);
        mr_llama_free(model);
        mr_gguf_close(gguf);
        return false;
    }
    bool ok = greedy_text(model, tok, base_text, sizeof base_text);

    mr_lora_config config = {.rank = 4, .alpha = 8.0f, .dropout = 0.0f,
                             .targets = MR_LORA_ALL};
    mr_lora *lora = ok ? mr_lora_create(model, &config, 5, &err) : NULL;
    ok = lora != NULL;
    mr_paramset *params = ok ? mr_lora_params(lora) : NULL;
    for (int p = 0; ok && p < mr_paramset_count(params); p++) {
        mr_tensor *t = mr_paramset_get(params, p);
        int64_t n = mr_tensor_numel(t);
        float *data = t->data;
        for (int64_t i = 0; i < n && strstr(t->name, "lora_b") != NULL; i++) {
            data[i] = 0.2f * sinf(0.37f * (float)(i + 11 * p));
        }
    }
    ok = ok && mr_lora_save_peft(lora, adapter_dir, "stories260K", &err) == MR_OK &&
         mr_lora_merge(lora, &err) == MR_OK;
    if (!ok) {
        mr_test_fail(__FILE__, __LINE__, "cannot make the adapter: %s", err.message);
    }
    ok = ok && greedy_text(model, tok, merged_text, sizeof merged_text);

    mr_lora_free(lora);
    mr_llama_free(model);
    mr_tokenizer_free(tok);
    mr_gguf_close(gguf);
    return ok;
}

static void adapter_changes_greedy_text(void) {
    CHECK(merged_text[0] != '\0');
    CHECK(strcmp(merged_text, base_text) != 0);
}

static void generate_applies_lora(void) {
    static char out[OUTPUT_CAP], errors[OUTPUT_CAP];
    const char *argv[] = {"", "generate", "-m", STORIES_PATH, "--lora", adapter_dir,
                          "-p", PROMPT, "-n", "12", "--temp", "0", NULL};
    CHECK_INT_EQ(run_tool(argv, out, errors), 0);
    if (strstr(out, merged_text) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "generate --lora printed '%s', expected '%s'; "
                     "stderr: %s", out, merged_text, errors);
    }
}

static void generate_rejects_missing_adapter(void) {
    static char out[OUTPUT_CAP], errors[OUTPUT_CAP];
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no_adapter", work_dir);
    const char *argv[] = {"", "generate", "-m", STORIES_PATH, "--lora", missing, "-p", PROMPT,
                          NULL};
    CHECK_INT_EQ(run_tool(argv, out, errors), 1);
    CHECK(strstr(errors, "cannot apply the LoRA adapter") != NULL);
    CHECK(strstr(errors, missing) != NULL);
}

static void merge_writes_adapted_model(void) {
    static char out[OUTPUT_CAP], errors[OUTPUT_CAP];
    char merged_path[300];
    snprintf(merged_path, sizeof merged_path, "%s/merged.gguf", work_dir);
    const char *merge[] = {"", "lm", "merge", "-m", STORIES_PATH, "--lora", adapter_dir,
                           "--out", merged_path, NULL};
    CHECK_INT_EQ(run_tool(merge, out, errors), 0);
    CHECK(access(merged_path, R_OK) == 0);

    const char *generate[] = {"", "generate", "-m", merged_path, "-p", PROMPT, "-n", "12",
                              "--temp", "0", NULL};
    CHECK_INT_EQ(run_tool(generate, out, errors), 0);
    if (strstr(out, merged_text) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "the merged model printed '%s', expected '%s'", out,
                     merged_text);
    }
}

static void info_describes_adapter(void) {
    static char out[OUTPUT_CAP], errors[OUTPUT_CAP];
    const char *argv[] = {"", "lm", "info", adapter_dir, NULL};
    CHECK_INT_EQ(run_tool(argv, out, errors), 0);
    CHECK(strstr(out, "rank: 4\n") != NULL);
    CHECK(strstr(out, "alpha: 8 (scale alpha / r = 2)") != NULL);
    CHECK(strstr(out, "q_proj") != NULL);
    CHECK(strstr(out, "down_proj") != NULL);
    CHECK(strstr(out, "base model: stories260K") != NULL);
    CHECK(strstr(errors, "config.json not found") == NULL);
}

static void score_applies_lora(void) {
    static char base_out[OUTPUT_CAP], lora_out[OUTPUT_CAP], errors[OUTPUT_CAP];
    char data_path[300];
    snprintf(data_path, sizeof data_path, "%s/score.jsonl", work_dir);
    FILE *data = fopen(data_path, "w");
    if (data == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot write %s", data_path);
        return;
    }
    fprintf(data, "{\"prompt\": \"%s\", \"completion\": \"%s\"}\n", PROMPT, merged_text);
    fclose(data);

    const char *base[] = {"", "lm", "score", "-m", STORIES_PATH, "--data", data_path, NULL};
    const char *adapted[] = {"", "lm", "score", "-m", STORIES_PATH, "--lora", adapter_dir,
                             "--data", data_path, NULL};
    CHECK_INT_EQ(run_tool(base, base_out, errors), 0);
    CHECK_INT_EQ(run_tool(adapted, lora_out, errors), 0);
    double base_logprob = 0, lora_logprob = 0;
    const char *base_field = strstr(base_out, "\"logprob\":");
    const char *lora_field = strstr(lora_out, "\"logprob\":");
    CHECK(base_field != NULL);
    CHECK(lora_field != NULL);
    if (base_field == NULL || lora_field == NULL) {
        return;
    }
    CHECK_INT_EQ(sscanf(base_field, "\"logprob\":%lf", &base_logprob), 1);
    CHECK_INT_EQ(sscanf(lora_field, "\"logprob\":%lf", &lora_logprob), 1);

    /* The adapted model chose this text greedily, so it scores it higher
     * than the base model does. */
    CHECK(lora_logprob > base_logprob);
}

static void local_model_applies_lora(void) {
    mr_local_model_config config;
    mr_local_model_config_init(&config);
    config.path = STORIES_PATH;
    config.lora_dir = adapter_dir;
    mr_error err;
    mr_error_clear(&err);
    mr_local_model *model = mr_local_model_open(&config, &err);
    CHECK(model != NULL);
    mr_llm *llm = model != NULL ? mr_llm_local_wrap(model, NULL, &err) : NULL;
    if (llm == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot open the local model: %s", err.message);
        mr_local_model_close(model);
        return;
    }
    mr_llm_request request;
    mr_llm_request_init(&request);
    request.kind = MR_LLM_COMPLETION;
    request.prompt = PROMPT;
    request.max_tokens = MAX_TOKENS;
    request.temperature = 0.0;
    mr_llm_result result;
    CHECK_STATUS(mr_llm_complete(llm, &request, &result, &err), MR_OK);
    CHECK(result.text != NULL);
    CHECK(result.text == NULL || strcmp(result.text, merged_text) == 0);
    mr_llm_result_free(&result);
    mr_llm_free(llm);
    mr_local_model_close(model);

    config.lora_dir = work_dir; /* a folder without adapter_config.json */
    CHECK(mr_local_model_open(&config, &err) == NULL);
    CHECK(strstr(err.message, "adapter_config.json") != NULL);
}

int main(void) {
    mr_threads_set(1);
    if (access(probe_cli_path(), X_OK) != 0) {
        fprintf(stderr, "the multiround tool is not at %s; build it or set MR_CLI_PATH\n",
                probe_cli_path());
        return 1;
    }
    if (!make_adapter()) {
        return mr_test_finish();
    }
    MR_RUN(adapter_changes_greedy_text);
    MR_RUN(generate_applies_lora);
    MR_RUN(generate_rejects_missing_adapter);
    MR_RUN(merge_writes_adapted_model);
    MR_RUN(info_describes_adapter);
    MR_RUN(score_applies_lora);
    MR_RUN(local_model_applies_lora);

    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", work_dir);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", work_dir);
    }
    return mr_test_finish();
}

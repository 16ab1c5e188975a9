/*
 * Tests of the environment object and the calculator task: the
 * expression evaluator, the environment's replies and rewards, correct
 * transcripts, and the committed problem files under data/calc/.
 */
#include <stdlib.h>
#include <string.h>

#include "multiround/env.h"
#include "multiround/fileio.h"
#include "test.h"

#define CALC_DIR "../data/calc/"

static int64_t eval_ok(const char *expr) {
    int64_t value = -12345;
    mr_error err;
    CHECK_STATUS(mr_calc_eval(expr, strlen(expr), &value, &err), MR_OK);
    return value;
}

static void calc_eval_values(void) {
    CHECK_INT_EQ(eval_ok("2+3*4"), 14);
    CHECK_INT_EQ(eval_ok("(2+3)*4"), 20);
    CHECK_INT_EQ(eval_ok("10-20-5"), -15);
    CHECK_INT_EQ(eval_ok(" 7 "), 7);
    CHECK_INT_EQ(eval_ok("37*24+58"), 946);
    CHECK_INT_EQ(eval_ok("((1))"), 1);
    CHECK_INT_EQ(eval_ok("3037000499*3037000499"), 9223372030926249001LL);
}

static void calc_eval_errors(void) {
    const char *bad[] = {"", "2+", "a", "1/2", "(1", "1)", "-3", "2 3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t value = 0;
        mr_error err;
        CHECK_STATUS(mr_calc_eval(bad[i], strlen(bad[i]), &value, &err),
                     MR_ERR_INVALID_ARGUMENT);
        CHECK(strstr(err.message, "offset") != NULL);
    }
    int64_t value = 0;
    mr_error err;
    const char *big = "99999999999*99999999999";
    CHECK_STATUS(mr_calc_eval(big, strlen(big), &value, &err), MR_ERR_NUMERIC);
    const char *long_number = "99999999999999999999";
    CHECK_STATUS(mr_calc_eval(long_number, strlen(long_number), &value, &err), MR_ERR_NUMERIC);

    char deep[80];
    memset(deep, '(', 33);
    deep[33] = '1';
    memset(deep + 34, ')', 33);
    deep[67] = '\0';
    CHECK_STATUS(mr_calc_eval(deep, strlen(deep), &value, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "32") != NULL);
    /* 32 levels are allowed. */
    memset(deep, '(', 32);
    deep[32] = '5';
    memset(deep + 33, ')', 32);
    deep[65] = '\0';
    CHECK_INT_EQ(eval_ok(deep), 5);
}

/* A calculator environment over two problems with the default config. */
static mr_env *two_problem_env(float penalty) {
    mr_calc_problem problems[2] = {{"37*24+58", 946}, {"5-9", -4}};
    mr_calc_config config = mr_calc_config_default();
    config.format_penalty = penalty;
    mr_error err;
    mr_env *env = mr_env_calc_create(problems, 2, &config, &err);
    CHECK(env != NULL);
    return env;
}

static mr_env_reply step(mr_env *env, const char *turn) {
    mr_env_reply reply;
    mr_error err;
    CHECK_STATUS(mr_env_step(env, turn, strlen(turn), &reply, &err), MR_OK);
    return reply;
}

static void calc_env_prompt_and_stops(void) {
    mr_env *env = two_problem_env(0.1f);
    char *prompt = NULL;
    mr_error err;
    CHECK_STATUS(mr_env_reset(env, 0, &prompt, &err), MR_OK);
    CHECK(strcmp(prompt, "Q: 37*24+58\n") == 0);
    free(prompt);
    /* Episode 3 poses problem 3 mod 2 = 1. */
    CHECK_STATUS(mr_env_reset(env, 3, &prompt, &err), MR_OK);
    CHECK(strcmp(prompt, "Q: 5-9\n") == 0);
    free(prompt);

    int n = 0;
    const char *const *stop = mr_env_stop_strings(env, &n);
    CHECK_INT_EQ(n, 2);
    CHECK(strcmp(stop[0], "</calc>") == 0);
    CHECK(strcmp(stop[1], "</answer>") == 0);
    CHECK_INT_EQ(mr_env_get_limits(env)->max_turns, 4);
    CHECK(strcmp(mr_env_name(env), "calc") == 0);
    mr_env_free(env);
}

static void calc_env_correct_episode(void) {
    mr_env *env = two_problem_env(0.1f);
    char *prompt = NULL;
    mr_error err;
    CHECK_STATUS(mr_env_reset(env, 0, &prompt, &err), MR_OK);
    free(prompt);

    mr_env_reply r = step(env, " <calc>37*24</calc>");
    CHECK(!r.done);
    CHECK(strcmp(r.text, "<result>888</result>") == 0);
    mr_env_reply_clear(&r);
    r = step(env, " <calc>888 + 58</calc>");
    CHECK(strcmp(r.text, "<result>946</result>") == 0);
    mr_env_reply_clear(&r);
    r = step(env, " <answer> 946 </answer>");
    CHECK(r.done);
    CHECK(r.reward == 1.0f);
    CHECK(r.text == NULL);
    mr_env_free(env);
}

static void calc_env_wrong_and_bad_format(void) {
    mr_env *env = two_problem_env(0.25f);
    char *prompt = NULL;
    mr_error err;

    /* A wrong answer scores 0. */
    CHECK_STATUS(mr_env_reset(env, 0, &prompt, &err), MR_OK);
    free(prompt);
    mr_env_reply r = step(env, "<answer>945</answer>");
    CHECK(r.done);
    CHECK(r.reward == 0.0f);

    /* A calc call that does not evaluate costs the penalty, even when the
     * answer is right; negative answers parse. */
    CHECK_STATUS(mr_env_reset(env, 1, &prompt, &err), MR_OK);
    free(prompt);
    r = step(env, "<calc>5-</calc>");
    CHECK(strcmp(r.text, "<result>error</result>") == 0);
    mr_env_reply_clear(&r);
    r = step(env, "<answer>-4</answer>");
    CHECK(r.reward == 0.75f);

    /* An answer that is not an integer is wrong and a format error. */
    CHECK_STATUS(mr_env_reset(env, 1, &prompt, &err), MR_OK);
    free(prompt);
    r = step(env, "<answer>four</answer>");
    CHECK(r.done);
    CHECK(r.reward == -0.25f);

    /* A turn without a tag ends the episode; the penalties of an episode
     * add up, and the truncated reward counts one more. */
    CHECK_STATUS(mr_env_reset(env, 1, &prompt, &err), MR_OK);
    free(prompt);
    r = step(env, "<calc>(</calc>");
    mr_env_reply_clear(&r);
    CHECK(mr_env_truncated_reward(env) == -0.5f);
    r = step(env, "the answer is 4");
    CHECK(r.done);
    CHECK(r.reward == -0.5f);

    /* A new episode starts without penalties. */
    CHECK_STATUS(mr_env_reset(env, 0, &prompt, &err), MR_OK);
    free(prompt);
    r = step(env, "<answer>946</answer>");
    CHECK(r.reward == 1.0f);
    mr_env_free(env);
}

static void calc_env_rejects(void) {
    mr_calc_problem problem = {"1+1", 2};
    mr_calc_config config = mr_calc_config_default();
    mr_error err;
    CHECK(mr_env_calc_create(&problem, 0, &config, &err) == NULL);
    CHECK_INT_EQ(err.status, MR_ERR_INVALID_ARGUMENT);
    config.format_penalty = -1.0f;
    CHECK(mr_env_calc_create(&problem, 1, &config, &err) == NULL);
    CHECK(strstr(err.message, "format_penalty") != NULL);
    config = mr_calc_config_default();
    config.limits.max_turns = 0;
    CHECK(mr_env_calc_create(&problem, 1, &config, &err) == NULL);
    CHECK(strstr(err.message, "max_turns") != NULL);
}

static void env_create_rejects(void) {
    mr_env_ops ops = {0};
    mr_env_limits limits = {.max_turns = 1, .max_turn_tokens = 1, .max_tokens = 2};
    mr_error err;
    CHECK(mr_env_create(&ops, NULL, NULL, 0, &limits, &err) == NULL);
    CHECK(strstr(err.message, "reset") != NULL);
}

static void calc_transcript_segments(void) {
    mr_calc_problem problem = {"78+98*99-5", 9775};
    char **segments = NULL;
    int n = 0;
    mr_error err;
    CHECK_STATUS(mr_calc_transcript(&problem, &segments, &n, &err), MR_OK);
    const char *want[] = {"<calc>98*99</calc>", "<result>9702</result>",
                          "<calc>78+9702</calc>", "<result>9780</result>",
                          "<calc>9780-5</calc>", "<result>9775</result>",
                          "<answer>9775</answer>"};
    CHECK_INT_EQ(n, 7);
    for (int i = 0; i < n && i < 7; i++) {
        CHECK(strcmp(segments[i], want[i]) == 0);
    }
    mr_calc_transcript_free(segments, n);

    mr_calc_problem single = {"12", 12};
    CHECK_STATUS(mr_calc_transcript(&single, &segments, &n, &err), MR_OK);
    CHECK_INT_EQ(n, 1);
    CHECK(strcmp(segments[0], "<answer>12</answer>") == 0);
    mr_calc_transcript_free(segments, n);

    mr_calc_problem parens = {"(1+2)*3", 9};
    CHECK_STATUS(mr_calc_transcript(&parens, &segments, &n, &err), MR_ERR_UNSUPPORTED);
}

static void problem_files_load(void) {
    mr_calc_problem *train = NULL, *eval = NULL;
    int n_train = 0, n_eval = 0;
    mr_error err;
    CHECK_STATUS(mr_calc_problems_load(CALC_DIR "train.jsonl", &train, &n_train, &err), MR_OK);
    CHECK_STATUS(mr_calc_problems_load(CALC_DIR "eval.jsonl", &eval, &n_eval, &err), MR_OK);
    CHECK_INT_EQ(n_train, 2000);
    CHECK_INT_EQ(n_eval, 200);
    CHECK(strcmp(train[0].question, "73+98") == 0);
    CHECK_INT_EQ(train[0].answer, 171);

    /* No held-out question appears in the training set. */
    int shared = 0;
    for (int i = 0; i < n_eval; i++) {
        for (int j = 0; j < n_train; j++) {
            shared += strcmp(eval[i].question, train[j].question) == 0;
        }
    }
    CHECK_INT_EQ(shared, 0);
    free(train);
    free(eval);
}

static void sft_file_matches_transcripts(void) {
    /* Each line of sft.jsonl is the prompt and the transcript of the same
     * train problem, joined with spaces as the generator script writes it. */
    mr_calc_problem *train = NULL;
    int n = 0;
    mr_error err;
    CHECK_STATUS(mr_calc_problems_load(CALC_DIR "train.jsonl", &train, &n, &err), MR_OK);
    void *data = NULL;
    size_t size = 0;
    CHECK_STATUS(mr_file_read_all(CALC_DIR "sft.jsonl", 1 << 24, &data, &size, &err), MR_OK);
    char *line = data;
    int checked = 0;
    for (int i = 0; i < n && line != NULL && *line != '\0'; i++) {
        char **segments = NULL;
        int n_segments = 0;
        CHECK_STATUS(mr_calc_transcript(&train[i], &segments, &n_segments, &err), MR_OK);
        char want[512];
        int at = snprintf(want, sizeof want, "{\"prompt\": \"Q: %s\\n\", \"completion\": \"",
                          train[i].question);
        for (int k = 0; k < n_segments; k++) {
            at += snprintf(want + at, sizeof want - (size_t)at, " %s", segments[k]);
        }
        snprintf(want + at, sizeof want - (size_t)at, "\"}\n");
        mr_calc_transcript_free(segments, n_segments);
        if (strncmp(line, want, strlen(want)) != 0) {
            mr_test_fail(__FILE__, __LINE__, "sft.jsonl line %d differs from %s", i + 1, want);
            break;
        }
        checked++;
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    CHECK_INT_EQ(checked, n);
    free(data);
    free(train);
}

static void problem_file_errors(void) {
    const char *path = "/tmp/multiround_test_env_bad.jsonl";
    const char *text = "{\"question\": \"2+2\", \"answer\": 4}\n\n{\"question\": \"2*3\", "
                       "\"answer\": 7}\n";
    mr_error err;
    CHECK_STATUS(mr_file_write_atomic(path, text, strlen(text), &err), MR_OK);
    mr_calc_problem *problems = NULL;
    int n = 0;
    CHECK_STATUS(mr_calc_problems_load(path, &problems, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "line 3") != NULL);
    CHECK(problems == NULL);

    text = "{\"question\": 5}\n";
    CHECK_STATUS(mr_file_write_atomic(path, text, strlen(text), &err), MR_OK);
    CHECK_STATUS(mr_calc_problems_load(path, &problems, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "line 1") != NULL);

    /* A line that is not valid JSON gets its line and column. */
    text = "{\"question\": \"1+1\", \"answer\": 2}\n{\"question\": \"2+2\" \"answer\": 4}\n";
    CHECK_STATUS(mr_file_write_atomic(path, text, strlen(text), &err), MR_OK);
    CHECK_STATUS(mr_calc_problems_load(path, &problems, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, ":2:20: invalid JSON near '\"answer\"") != NULL);

    text = "\n";
    CHECK_STATUS(mr_file_write_atomic(path, text, strlen(text), &err), MR_OK);
    CHECK_STATUS(mr_calc_problems_load(path, &problems, &n, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "contains no problems") != NULL);
    remove(path);

    CHECK_STATUS(mr_calc_problems_load("/nonexistent/calc.jsonl", &problems, &n, &err),
                 MR_ERR_IO);
}

int main(void) {
    MR_RUN(calc_eval_values);
    MR_RUN(calc_eval_errors);
    MR_RUN(calc_env_prompt_and_stops);
    MR_RUN(calc_env_correct_episode);
    MR_RUN(calc_env_wrong_and_bad_format);
    MR_RUN(calc_env_rejects);
    MR_RUN(env_create_rejects);
    MR_RUN(calc_transcript_segments);
    MR_RUN(problem_files_load);
    MR_RUN(sft_file_matches_transcripts);
    MR_RUN(problem_file_errors);
    return mr_test_finish();
}

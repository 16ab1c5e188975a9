/*
 * The calculator task of env.h: an integer expression evaluator, the
 * problem file reader, the environment callbacks and correct transcripts
 * for supervised fine-tuning.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/env.h"
#include "multiround/fileio.h"
#include "train_internal.h"

#define CALC_DEPTH_MAX 32
#define CALC_FILE_MAX (64u << 20)

mr_calc_config mr_calc_config_default(void) {
    mr_calc_config config = {
        .format_penalty = 0.1f,
        .limits = {.max_turns = 4, .max_turn_tokens = 32, .max_tokens = 256},
    };
    return config;
}

/* ------------------------------------------------------------------------
 * Expression evaluator: recursive descent over
 *   sum := product (('+' | '-') product)*
 *   product := atom ('*' atom)*
 *   atom := digits | '(' sum ')'
 * ------------------------------------------------------------------------ */

typedef struct calc_parser {
    const char *text;
    size_t len;
    size_t pos;
    int depth;
    mr_error *err;
} calc_parser;

static void skip_spaces(calc_parser *p) {
    while (p->pos < p->len && p->text[p->pos] == ' ') {
        p->pos++;
    }
}

static mr_status parse_sum(calc_parser *p, int64_t *value);

static mr_status parse_atom(calc_parser *p, int64_t *value) {
    skip_spaces(p);
    if (p->pos < p->len && p->text[p->pos] == '(') {
        if (++p->depth > CALC_DEPTH_MAX) {
            return mr_error_set(p->err, MR_ERR_INVALID_ARGUMENT,
                                "calc: parentheses nest deeper than %d at offset %zu",
                                CALC_DEPTH_MAX, p->pos);
        }
        p->pos++;
        mr_status status = parse_sum(p, value);
        if (status != MR_OK) {
            return status;
        }
        skip_spaces(p);
        if (p->pos >= p->len || p->text[p->pos] != ')') {
            return mr_error_set(p->err, MR_ERR_INVALID_ARGUMENT,
                                "calc: expected ')' at offset %zu", p->pos);
        }
        p->pos++;
        p->depth--;
        return MR_OK;
    }

    if (p->pos >= p->len || !isdigit((unsigned char)p->text[p->pos])) {
        return mr_error_set(p->err, MR_ERR_INVALID_ARGUMENT,
                            "calc: expected a number or '(' at offset %zu", p->pos);
    }
    int64_t v = 0;
    while (p->pos < p->len && isdigit((unsigned char)p->text[p->pos])) {
        int digit = p->text[p->pos] - '0';
        if (v > (INT64_MAX - digit) / 10) {
            return mr_error_set(p->err, MR_ERR_NUMERIC,
                                "calc: number at offset %zu overflows 64 bits", p->pos);
        }
        v = v * 10 + digit;
        p->pos++;
    }
    *value = v;
    return MR_OK;
}

static mr_status parse_product(calc_parser *p, int64_t *value) {
    mr_status status = parse_atom(p, value);
    while (status == MR_OK) {
        skip_spaces(p);
        if (p->pos >= p->len || p->text[p->pos] != '*') {
            break;
        }
        p->pos++;
        int64_t rhs = 0;
        status = parse_atom(p, &rhs);
        if (status == MR_OK && __builtin_mul_overflow(*value, rhs, value)) {
            status = mr_error_set(p->err, MR_ERR_NUMERIC,
                                  "calc: product before offset %zu overflows 64 bits", p->pos);
        }
    }
    return status;
}

static mr_status parse_sum(calc_parser *p, int64_t *value) {
    mr_status status = parse_product(p, value);
    while (status == MR_OK) {
        skip_spaces(p);
        if (p->pos >= p->len || (p->text[p->pos] != '+' && p->text[p->pos] != '-')) {
            break;
        }
        char op = p->text[p->pos++];
        int64_t rhs = 0;
        status = parse_product(p, &rhs);
        if (status != MR_OK) {
            break;
        }
        bool overflow = op == '+' ? __builtin_add_overflow(*value, rhs, value)
                                  : __builtin_sub_overflow(*value, rhs, value);
        if (overflow) {
            status = mr_error_set(p->err, MR_ERR_NUMERIC,
                                  "calc: sum before offset %zu overflows 64 bits", p->pos);
        }
    }
    return status;
}

mr_status mr_calc_eval(const char *expr, size_t len, int64_t *value, mr_error *err) {
    calc_parser p = {.text = expr, .len = len, .err = err};
    int64_t v = 0;
    mr_status status = parse_sum(&p, &v);
    if (status != MR_OK) {
        return status;
    }
    skip_spaces(&p);
    if (p.pos != len) {
        return mr_error_set(err, MR_ERR_INVALID_ARGUMENT,
                            "calc: unexpected '%c' at offset %zu", expr[p.pos], p.pos);
    }
    *value = v;
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * Problem files
 * ------------------------------------------------------------------------ */

/* Parses one JSON line of a problem file into problem. */
static mr_status parse_problem_line(const char *path, int line_no, const char *line,
                                    mr_calc_problem *problem, mr_error *err) {
    const char *parse_end = NULL;
    cJSON *json = cJSON_ParseWithOpts(line, &parse_end, true);
    if (json == NULL) {
        return train_invalid_json_error(path, line_no, line, parse_end, err);
    }
    const cJSON *question = cJSON_GetObjectItemCaseSensitive(json, "question");
    const cJSON *answer = cJSON_GetObjectItemCaseSensitive(json, "answer");
    mr_status status = MR_OK;
    if (!cJSON_IsString(question) || !cJSON_IsNumber(answer)) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "calc: %s line %d: expected {\"question\": string, \"answer\": "
                              "integer}",
                              path, line_no);
    } else if (strlen(question->valuestring) >= MR_CALC_QUESTION_MAX) {
        status = mr_error_set(err, MR_ERR_FORMAT,
                              "calc: %s line %d: question has %zu bytes, the maximum is %d", path,
                              line_no, strlen(question->valuestring), MR_CALC_QUESTION_MAX - 1);
    } else {
        int64_t value = 0;
        mr_error eval_err;
        const char *q = question->valuestring;
        if (mr_calc_eval(q, strlen(q), &value, &eval_err) != MR_OK) {
            status = mr_error_set(err, MR_ERR_FORMAT, "calc: %s line %d: %s", path, line_no,
                                  eval_err.message);
        } else if ((double)value != answer->valuedouble) {
            status = mr_error_set(err, MR_ERR_FORMAT,
                                  "calc: %s line %d: answer %.17g differs from %s = %" PRId64,
                                  path, line_no, answer->valuedouble, q, value);
        } else {
            snprintf(problem->question, sizeof problem->question, "%s", q);
            problem->answer = value;
        }
    }
    cJSON_Delete(json);
    return status;
}

mr_status mr_calc_problems_load(const char *path, mr_calc_problem **problems, int *n,
                                mr_error *err) {
    *problems = NULL;
    *n = 0;
    void *data = NULL;
    size_t size = 0;
    mr_status status = mr_file_read_all(path, CALC_FILE_MAX, &data, &size, err);
    if (status != MR_OK) {
        return status;
    }

    /* A line contains at most one problem, so the newline count bounds them. */
    char *text = data;
    size_t lines = 1;
    for (size_t i = 0; i < size; i++) {
        lines += text[i] == '\n';
    }
    mr_calc_problem *out = calloc(lines, sizeof *out);
    if (out == NULL) {
        free(data);
        return mr_error_set(err, MR_ERR_NO_MEMORY, "calc: out of memory reading %s", path);
    }

    int count = 0;
    int line_no = 0;
    char *line = text;
    while (status == MR_OK && line < text + size) {
        char *end = memchr(line, '\n', (size_t)(text + size - line));
        size_t line_len = end ? (size_t)(end - line) : (size_t)(text + size - line);
        line_no++;
        char *copy = strndup(line, line_len);
        if (copy == NULL) {
            status = mr_error_set(err, MR_ERR_NO_MEMORY, "calc: out of memory reading %s", path);
            break;
        }
        bool blank = strspn(copy, " \t\r") == line_len;
        if (!blank) {
            status = parse_problem_line(path, line_no, copy, &out[count], err);
            count += status == MR_OK;
        }
        free(copy);
        line = end ? end + 1 : text + size;
    }
    free(data);

    if (status == MR_OK && count == 0) {
        status = mr_error_set(err, MR_ERR_FORMAT, "calc: %s contains no problems; write one {\"question\": string, \"answer\": integer} object per line", path);
    }
    if (status != MR_OK) {
        free(out);
        return status;
    }
    *problems = out;
    *n = count;
    return MR_OK;
}

/* ------------------------------------------------------------------------
 * The environment
 * ------------------------------------------------------------------------ */

typedef struct calc_state {
    mr_calc_problem *problems;
    int n;
    float format_penalty;
    int current;       /* index of the episode's problem */
    int format_errors; /* format errors so far in this episode */
} calc_state;

char *mr_calc_prompt(const mr_calc_problem *problem) {
    size_t size = strlen(problem->question) + 8;
    char *prompt = malloc(size);
    if (prompt != NULL) {
        snprintf(prompt, size, "Q: %s\n", problem->question);
    }
    return prompt;
}

static mr_status calc_reset(void *state, uint64_t episode, char **prompt, mr_error *err) {
    calc_state *s = state;
    s->current = (int)(episode % (uint64_t)s->n);
    s->format_errors = 0;
    *prompt = mr_calc_prompt(&s->problems[s->current]);
    if (*prompt == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "calc: out of memory writing a prompt");
    }
    return MR_OK;
}

/* Finds the text between the first open tag and the close tag after it.
 * Returns false when either is missing. */
static bool find_tagged(const char *turn, size_t len, const char *open, const char *close,
                        const char **inner, size_t *inner_len) {
    const char *start = memmem(turn, len, open, strlen(open));
    if (start == NULL) {
        return false;
    }
    start += strlen(open);
    const char *end = memmem(start, (size_t)(turn + len - start), close, strlen(close));
    if (end == NULL) {
        return false;
    }
    *inner = start;
    *inner_len = (size_t)(end - start);
    return true;
}

/* Parses an optionally signed decimal integer with surrounding spaces. */
static bool parse_integer(const char *text, size_t len, int64_t *value) {
    char buf[32];
    while (len > 0 && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)text[len - 1])) {
        len--;
    }
    if (len == 0 || len >= sizeof buf) {
        return false;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    size_t digits_from = buf[0] == '-' ? 1 : 0;
    if (digits_from == len || strspn(buf + digits_from, "0123456789") != len - digits_from) {
        return false;
    }
    char *end = NULL;
    long long v = strtoll(buf, &end, 10);
    *value = (int64_t)v;
    return *end == '\0';
}

static mr_status calc_step(void *state, const char *turn, size_t len, mr_env_reply *reply,
                           mr_error *err) {
    calc_state *s = state;
    const char *inner = NULL;
    size_t inner_len = 0;

    if (find_tagged(turn, len, "<answer>", "</answer>", &inner, &inner_len)) {
        int64_t value = 0;
        bool is_integer = parse_integer(inner, inner_len, &value);
        bool correct = is_integer && value == s->problems[s->current].answer;
        s->format_errors += !is_integer;
        reply->done = true;
        reply->reward = (correct ? 1.0f : 0.0f) - s->format_penalty * (float)s->format_errors;
        return MR_OK;
    }

    if (find_tagged(turn, len, "<calc>", "</calc>", &inner, &inner_len)) {
        int64_t value = 0;
        char text[48];
        if (mr_calc_eval(inner, inner_len, &value, NULL) == MR_OK) {
            snprintf(text, sizeof text, "<result>%" PRId64 "</result>", value);
        } else {
            snprintf(text, sizeof text, "<result>error</result>");
            s->format_errors++;
        }
        reply->text = strdup(text);
        if (reply->text == NULL) {
            return mr_error_set(err, MR_ERR_NO_MEMORY, "calc: out of memory writing a result");
        }
        return MR_OK;
    }

    /* A turn with neither tag ends the episode unanswered. */
    s->format_errors++;
    reply->done = true;
    reply->reward = -s->format_penalty * (float)s->format_errors;
    return MR_OK;
}

static float calc_truncated_reward(void *state) {
    calc_state *s = state;
    return -s->format_penalty * (float)(s->format_errors + 1);
}

static void calc_free(void *state) {
    calc_state *s = state;
    if (s != NULL) {
        free(s->problems);
        free(s);
    }
}

mr_env *mr_env_calc_create(const mr_calc_problem *problems, int n, const mr_calc_config *config,
                           mr_error *err) {
    if (problems == NULL || n < 1) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "calc: need at least one problem, got %d", n);
        return NULL;
    }
    if (config == NULL || !(config->format_penalty >= 0.0f)) {
        mr_error_set(err, MR_ERR_INVALID_ARGUMENT, "calc: format_penalty must be >= 0, got %g",
                     config ? (double)config->format_penalty : 0.0);
        return NULL;
    }
    calc_state *s = calloc(1, sizeof *s);
    mr_calc_problem *copy = malloc((size_t)n * sizeof *copy);
    if (s == NULL || copy == NULL) {
        free(s);
        free(copy);
        mr_error_set(err, MR_ERR_NO_MEMORY, "calc: out of memory for %d problems", n);
        return NULL;
    }
    memcpy(copy, problems, (size_t)n * sizeof *copy);
    s->problems = copy;
    s->n = n;
    s->format_penalty = config->format_penalty;

    static const mr_env_ops ops = {
        .name = "calc",
        .reset = calc_reset,
        .step = calc_step,
        .truncated_reward = calc_truncated_reward,
        .free_state = calc_free,
    };
    static const char *const stop[] = {"</calc>", "</answer>"};
    return mr_env_create(&ops, s, stop, 2, &config->limits, err);
}

/* ------------------------------------------------------------------------
 * Correct transcripts
 * ------------------------------------------------------------------------ */

#define CALC_TERMS_MAX 16

void mr_calc_transcript_free(char **segments, int n) {
    for (int i = 0; segments != NULL && i < n; i++) {
        free(segments[i]);
    }
    free(segments);
}

/* Splits a question without parentheses into numbers and operators. */
static mr_status split_terms(const char *question, int64_t *numbers, char *ops, int *n_numbers,
                             mr_error *err) {
    int count = 0;
    const char *p = question;
    for (;;) {
        while (*p == ' ') {
            p++;
        }
        if (!isdigit((unsigned char)*p) || count == CALC_TERMS_MAX) {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "calc: transcripts need at most %d numbers joined by +, - or * "
                                "without parentheses, got '%s'",
                                CALC_TERMS_MAX, question);
        }
        char *end = NULL;
        numbers[count++] = strtoll(p, &end, 10);
        p = end;
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        if (*p != '+' && *p != '-' && *p != '*') {
            return mr_error_set(err, MR_ERR_UNSUPPORTED,
                                "calc: unexpected '%c' in '%s' for a transcript", *p, question);
        }
        ops[count - 1] = *p++;
    }
    *n_numbers = count;
    return MR_OK;
}

mr_status mr_calc_transcript(const mr_calc_problem *problem, char ***segments, int *n,
                             mr_error *err) {
    *segments = NULL;
    *n = 0;
    int64_t numbers[CALC_TERMS_MAX];
    char ops[CALC_TERMS_MAX];
    int count = 0;
    mr_status status = split_terms(problem->question, numbers, ops, &count, err);
    if (status != MR_OK) {
        return status;
    }

    /* One call and one result per operator, then the answer. */
    size_t total = 2 * (size_t)(count > 1 ? count - 1 : 0) + 1;
    char **out = calloc(total, sizeof *out);
    if (out == NULL) {
        return mr_error_set(err, MR_ERR_NO_MEMORY, "calc: out of memory writing a transcript");
    }
    int used = 0;
    char buf[96];
    while (count > 1) {
        /* The first product if any, else the leftmost operator. */
        int at = 0;
        for (int i = 0; i < count - 1; i++) {
            if (ops[i] == '*') {
                at = i;
                break;
            }
        }
        int64_t a = numbers[at], b = numbers[at + 1];
        int64_t v = a - b;
        if (ops[at] == '*') {
            v = a * b;
        } else if (ops[at] == '+') {
            v = a + b;
        }
        snprintf(buf, sizeof buf, "<calc>%" PRId64 "%c%" PRId64 "</calc>", a, ops[at], b);
        out[used++] = strdup(buf);
        snprintf(buf, sizeof buf, "<result>%" PRId64 "</result>", v);
        out[used++] = strdup(buf);

        numbers[at] = v;
        memmove(numbers + at + 1, numbers + at + 2, (size_t)(count - at - 2) * sizeof *numbers);
        memmove(ops + at, ops + at + 1, (size_t)(count - at - 2));
        count--;
    }
    snprintf(buf, sizeof buf, "<answer>%" PRId64 "</answer>", numbers[0]);
    out[used++] = strdup(buf);

    for (int i = 0; i < used; i++) {
        if (out[i] == NULL) {
            mr_calc_transcript_free(out, used);
            return mr_error_set(err, MR_ERR_NO_MEMORY, "calc: out of memory writing a transcript");
        }
    }
    *segments = out;
    *n = used;
    return MR_OK;
}

/*
 * metrics.jsonl: lines read back with their values, NaN and infinities
 * survive, a partial last line is dropped, bad lines are named, a resume
 * cuts the log back to its step, and a killed writer loses no line.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "multiround/runlog.h"
#include "test.h"

/* A fresh folder under $TMPDIR (or /tmp) and the metrics path inside it. */
static void make_log_path(char *folder, size_t folder_size, char *path, size_t path_size) {
    const char *base = getenv("TMPDIR");
    snprintf(folder, folder_size, "%s/mr_runlog_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(folder) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mkdtemp(%s) failed: %s", folder, strerror(errno));
    }
    snprintf(path, path_size, "%s/%s", folder, MR_RUNLOG_FILE);
}

static void remove_log(const char *folder, const char *path) {
    unlink(path);
    rmdir(folder);
}

static void write_text(const char *path, const char *text) {
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot write %s", path);
        return;
    }
    fputs(text, file);
    fclose(file);
}

/* Returns the value of metric in row, or -12345 when the column is absent. */
static double cell(const mr_runlog_data *data, int64_t row, const char *metric) {
    int column = mr_runlog_data_column(data, metric);
    if (column < 0 || row >= data->n_rows) {
        return -12345;
    }
    return data->values[row * data->n_columns + column];
}

static bool cell_present(const mr_runlog_data *data, int64_t row, const char *metric) {
    int column = mr_runlog_data_column(data, metric);
    return column >= 0 && data->present[row * data->n_columns + column] != 0;
}

/* Appends steps first..last with loss = 1/step and lr = 0.001 * step. */
static void append_steps(mr_runlog *log, int64_t first, int64_t last) {
    for (int64_t step = first; step <= last; step++) {
        mr_metric metrics[] = {{MR_METRIC_LOSS, 1.0 / (double)step},
                               {MR_METRIC_LR, 0.001 * (double)step}};
        mr_error err;
        CHECK_STATUS(mr_runlog_append(log, step, metrics, 2, &err), MR_OK);
    }
}

/* ------------------------------------------------------------------------ */

static void runlog_round_trip_values(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    mr_error err;
    mr_runlog *log = NULL;
    CHECK_STATUS(mr_runlog_open(path, -1, NULL, &log, &err), MR_OK);
    if (log == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_runlog_last_step(log), -1);

    mr_metric first[] = {{MR_METRIC_LOSS, 2.5}, {MR_METRIC_LR, 3e-4},
                         {MR_METRIC_TOKENS_PER_SECOND, 5120}};
    mr_metric second[] = {{MR_METRIC_LOSS, 0.1}, {"eval/accuracy", 0.875}};
    CHECK_STATUS(mr_runlog_append(log, 10, first, 3, &err), MR_OK);
    CHECK_STATUS(mr_runlog_append(log, 20, second, 2, &err), MR_OK);
    CHECK_INT_EQ(mr_runlog_last_step(log), 20);
    CHECK_STATUS(mr_runlog_close(log, &err), MR_OK);

    mr_runlog_data *data = NULL;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data == NULL) {
        return;
    }
    CHECK_INT_EQ(data->n_rows, 2);
    CHECK_INT_EQ(data->n_columns, 5);
    CHECK_INT_EQ(data->steps[0], 10);
    CHECK_INT_EQ(data->steps[1], 20);
    CHECK(strcmp(data->names[0], MR_RUNLOG_ELAPSED) == 0);
    CHECK(strcmp(data->names[1], MR_METRIC_LOSS) == 0);
    CHECK(strcmp(data->names[4], "eval/accuracy") == 0);

    /* Values come back exactly, because numbers are written to round-trip. */
    CHECK(cell(data, 0, MR_METRIC_LOSS) == 2.5);
    CHECK(cell(data, 0, MR_METRIC_LR) == 3e-4);
    CHECK(cell(data, 0, MR_METRIC_TOKENS_PER_SECOND) == 5120);
    CHECK(cell(data, 1, MR_METRIC_LOSS) == 0.1);
    CHECK(cell(data, 1, "eval/accuracy") == 0.875);
    CHECK(!cell_present(data, 1, MR_METRIC_LR));
    CHECK(!cell_present(data, 0, "eval/accuracy"));
    CHECK(cell_present(data, 1, MR_RUNLOG_ELAPSED));
    CHECK(cell(data, 0, MR_RUNLOG_ELAPSED) >= 0);
    CHECK(cell(data, 1, MR_RUNLOG_ELAPSED) >= cell(data, 0, MR_RUNLOG_ELAPSED));
    CHECK(!data->dropped_last_line);
    mr_runlog_data_free(data);
    remove_log(folder, path);
}

static void runlog_nonfinite_round_trip(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    mr_error err;
    mr_runlog *log = NULL;
    CHECK_STATUS(mr_runlog_open(path, -1, NULL, &log, &err), MR_OK);
    mr_metric metrics[] = {{"a", NAN}, {"b", INFINITY}, {"c", -INFINITY}, {"d", -0.0}};
    CHECK_STATUS(mr_runlog_append(log, 1, metrics, 4, &err), MR_OK);
    CHECK_STATUS(mr_runlog_close(log, &err), MR_OK);

    mr_runlog_data *data = NULL;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data != NULL) {
        CHECK(isnan(cell(data, 0, "a")));
        CHECK(cell(data, 0, "b") == INFINITY);
        CHECK(cell(data, 0, "c") == -INFINITY);
        CHECK(cell(data, 0, "d") == 0);
        CHECK(signbit(cell(data, 0, "d")));
    }
    mr_runlog_data_free(data);

    /* The line stays valid JSON: the non-finite values are strings. */
    FILE *file = fopen(path, "r");
    char line[512] = {0};
    CHECK(file != NULL);
    if (file != NULL) {
        CHECK(fgets(line, sizeof line, file) != NULL);
        fclose(file);
    }
    CHECK(strstr(line, "\"a\":\"NaN\",\"b\":\"Infinity\",\"c\":\"-Infinity\",\"d\":-0}") !=
          NULL);
    remove_log(folder, path);
}

static void runlog_read_drops_partial_line(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    write_text(path, "{\"step\":1,\"loss\":3}\n{\"step\":2,\"loss\":2}\n{\"step\":3,\"lo");

    mr_runlog_data *data = NULL;
    mr_error err;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data != NULL) {
        CHECK_INT_EQ(data->n_rows, 2);
        CHECK_INT_EQ(data->steps[1], 2);
        CHECK(cell(data, 1, "loss") == 2);
        CHECK(data->dropped_last_line);
    }
    mr_runlog_data_free(data);
    remove_log(folder, path);
}

static void runlog_read_names_bad_line(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    struct {
        const char *text;
        const char *expected; /* in the message */
    } cases[] = {
        {"{\"step\":1}\n{\"step\":2,\"loss\":\n{\"step\":3}\n", "line 2 is not a JSON object"},
        {"{\"step\":1}\n{\"loss\":1}\n", "line 2 has no \"step\""},
        {"{\"step\":1.5}\n", "line 1 has no \"step\""},
        {"{\"step\":-1}\n", "line 1 has no \"step\""},
        {"{\"step\":5}\n{\"step\":5}\n", "line 2 has step 5, but the line before has step 5"},
        {"{\"step\":5}\n{\"step\":4}\n", "line 2 has step 4"},
        {"{\"step\":1,\"phase\":\"eval\"}\n", "line 1: \"phase\" is not a number"},
        {"{\"step\":1,\"loss\":null}\n", "line 1: \"loss\" is not a number"},
        {"{\"step\":1,\"loss\":1,\"loss\":2}\n", "line 1 has \"loss\" twice"},
        {"{\"step\":1}\n\n{\"step\":2}\n", "line 2 is not a JSON object"},
        {"[1,2]\n", "line 1 is not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(path, cases[i].text);
        mr_runlog_data *data = NULL;
        mr_error err;
        mr_error_clear(&err);
        CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_ERR_FORMAT);
        CHECK(data == NULL);
        if (strstr(err.message, cases[i].expected) == NULL ||
            strstr(err.message, path) == NULL) {
            mr_test_fail(__FILE__, __LINE__, "case %zu: message '%s' lacks '%s' or the path", i,
                         err.message, cases[i].expected);
        }
    }
    remove_log(folder, path);
}

static void runlog_read_empty_file(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    write_text(path, "");
    mr_runlog_data *data = NULL;
    mr_error err;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data != NULL) {
        CHECK_INT_EQ(data->n_rows, 0);
        CHECK_INT_EQ(data->n_columns, 0);
    }
    mr_runlog_data_free(data);
    remove_log(folder, path);

    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_ERR_IO);
}

static void runlog_resume_cuts_later_steps(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    mr_error err;
    mr_runlog *log = NULL;
    CHECK_STATUS(mr_runlog_open(path, -1, NULL, &log, &err), MR_OK);
    append_steps(log, 1, 10);
    CHECK_STATUS(mr_runlog_close(log, &err), MR_OK);

    /* A checkpoint at step 5: steps 6 to 10 are trained again. */
    CHECK_STATUS(mr_runlog_open(path, 5, NULL, &log, &err), MR_OK);
    if (log == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_runlog_last_step(log), 5);
    append_steps(log, 6, 7);
    CHECK_STATUS(mr_runlog_close(log, &err), MR_OK);

    mr_runlog_data *data = NULL;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data != NULL) {
        CHECK_INT_EQ(data->n_rows, 7);
        for (int64_t row = 0; row < data->n_rows && row < 7; row++) {
            CHECK_INT_EQ(data->steps[row], row + 1);
            CHECK(cell(data, row, MR_METRIC_LOSS) == 1.0 / (double)(row + 1));
        }
        /* Elapsed time continues from the last kept line. */
        CHECK(cell(data, 5, MR_RUNLOG_ELAPSED) >= cell(data, 4, MR_RUNLOG_ELAPSED));
    }
    mr_runlog_data_free(data);

    /* resume_step -1 starts an empty log. */
    CHECK_STATUS(mr_runlog_open(path, -1, NULL, &log, &err), MR_OK);
    CHECK_INT_EQ(mr_runlog_last_step(log), -1);
    CHECK_STATUS(mr_runlog_close(log, &err), MR_OK);
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data != NULL) {
        CHECK_INT_EQ(data->n_rows, 0);
    }
    mr_runlog_data_free(data);
    remove_log(folder, path);
}

static void runlog_resume_drops_partial_line(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    write_text(path, "{\"step\":1,\"elapsed_s\":100,\"loss\":3}\n"
                     "{\"step\":2,\"elapsed_s\":200,\"loss\":2}\n{\"step\":3,\"lo");
    mr_error err;
    mr_runlog *log = NULL;

    /* The resumed step is past every line: all complete lines stay. */
    CHECK_STATUS(mr_runlog_open(path, 3, NULL, &log, &err), MR_OK);
    if (log == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_runlog_last_step(log), 2);
    mr_metric metrics[] = {{MR_METRIC_LOSS, 1}};
    CHECK_STATUS(mr_runlog_append(log, 3, metrics, 1, &err), MR_OK);
    CHECK_STATUS(mr_runlog_close(log, &err), MR_OK);

    mr_runlog_data *data = NULL;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data != NULL) {
        CHECK_INT_EQ(data->n_rows, 3);
        CHECK_INT_EQ(data->steps[2], 3);
        CHECK(!data->dropped_last_line);
        /* 200 s recorded before the resume, plus the moments since. */
        CHECK(cell(data, 2, MR_RUNLOG_ELAPSED) >= 200);
        CHECK(cell(data, 2, MR_RUNLOG_ELAPSED) < 260);
    }
    mr_runlog_data_free(data);
    remove_log(folder, path);
}

static void runlog_resume_rejects_bad_kept_line(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    const char *text = "{\"step\":1}\nnot json\n{\"step\":3}\n";
    write_text(path, text);
    mr_error err;
    mr_runlog *log = NULL;
    CHECK_STATUS(mr_runlog_open(path, 3, NULL, &log, &err), MR_ERR_FORMAT);
    CHECK(log == NULL);
    CHECK(strstr(err.message, "line 2") != NULL);

    /* The file is left as it was. */
    FILE *file = fopen(path, "r");
    char content[128] = {0};
    size_t got = file != NULL ? fread(content, 1, sizeof content - 1, file) : 0;
    if (file != NULL) {
        fclose(file);
    }
    CHECK_INT_EQ(got, strlen(text));
    remove_log(folder, path);
}

static void runlog_append_rejects_bad_input(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);
    mr_error err;
    mr_runlog *log = NULL;
    CHECK_STATUS(mr_runlog_open(path, -1, NULL, &log, &err), MR_OK);
    if (log == NULL) {
        return;
    }
    append_steps(log, 5, 5);

    mr_metric good[] = {{"loss", 1}};
    CHECK_STATUS(mr_runlog_append(log, 5, good, 1, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "step 5") != NULL);
    CHECK_STATUS(mr_runlog_append(log, 4, good, 1, &err), MR_ERR_STATE);

    mr_metric reserved[] = {{MR_RUNLOG_ELAPSED, 1}};
    mr_metric step_name[] = {{MR_RUNLOG_STEP, 1}};
    mr_metric spaced[] = {{"eval loss", 1}};
    mr_metric quoted[] = {{"a\"b", 1}};
    mr_metric empty[] = {{"", 1}};
    mr_metric twice[] = {{"loss", 1}, {"loss", 2}};
    CHECK_STATUS(mr_runlog_append(log, 6, reserved, 1, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_runlog_append(log, 6, step_name, 1, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_runlog_append(log, 6, spaced, 1, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "'eval loss'") != NULL);
    CHECK_STATUS(mr_runlog_append(log, 6, quoted, 1, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_runlog_append(log, 6, empty, 1, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_runlog_append(log, 6, twice, 2, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_INT_EQ(mr_runlog_last_step(log), 5);

    /* The failed appends wrote nothing; a good one still works. */
    CHECK_STATUS(mr_runlog_append(log, 6, good, 1, &err), MR_OK);
    CHECK_STATUS(mr_runlog_close(log, &err), MR_OK);
    mr_runlog_data *data = NULL;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data != NULL) {
        CHECK_INT_EQ(data->n_rows, 2);
        CHECK_INT_EQ(data->steps[1], 6);
    }
    mr_runlog_data_free(data);
    remove_log(folder, path);
}

static void runlog_kill_loses_no_line(void) {
    char folder[256], path[512];
    make_log_path(folder, sizeof folder, path, sizeof path);

    /* The child appends 50 lines, fsyncing rarely, then kills itself. */
    pid_t child = fork();
    if (child == 0) {
        mr_runlog_options options = {.sync_every_lines = 1000, .sync_every_seconds = 1000};
        mr_runlog *log = NULL;
        if (mr_runlog_open(path, -1, &options, &log, NULL) != MR_OK) {
            _exit(3);
        }
        append_steps(log, 1, 50);
        kill(getpid(), SIGKILL);
        _exit(4);
    }
    int wait_status = 0;
    CHECK_INT_EQ(waitpid(child, &wait_status, 0), child);
    CHECK(WIFSIGNALED(wait_status));
    CHECK_INT_EQ(WTERMSIG(wait_status), SIGKILL);

    mr_runlog_data *data = NULL;
    mr_error err;
    CHECK_STATUS(mr_runlog_read(path, &data, &err), MR_OK);
    if (data != NULL) {
        CHECK_INT_EQ(data->n_rows, 50);
        CHECK_INT_EQ(data->steps[49], 50);
        CHECK(!data->dropped_last_line);
    }
    mr_runlog_data_free(data);
    remove_log(folder, path);
}

int main(void) {
    MR_RUN(runlog_round_trip_values);
    MR_RUN(runlog_nonfinite_round_trip);
    MR_RUN(runlog_read_drops_partial_line);
    MR_RUN(runlog_read_names_bad_line);
    MR_RUN(runlog_read_empty_file);
    MR_RUN(runlog_resume_cuts_later_steps);
    MR_RUN(runlog_resume_drops_partial_line);
    MR_RUN(runlog_resume_rejects_bad_kept_line);
    MR_RUN(runlog_append_rejects_bad_input);
    MR_RUN(runlog_kill_loses_no_line);
    return mr_test_finish();
}

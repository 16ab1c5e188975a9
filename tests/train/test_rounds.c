/*
 * The rounds driver on a fake pipeline of 3 rounds of 3 stages
 * (generate, judge, train) whose stages write files derived from their
 * inputs and log their calls. Runs are interrupted before, in the middle
 * of and at the end of every stage, by SIGKILL in a child process or by a
 * returned error. Each resumed run must leave the same files, manifest
 * and completed calls as an uninterrupted run. Changed inputs, other
 * configs and a second open are rejected.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "multiround/rounds.h"
#include "sha256.h"
#include "test.h"

#define ROUNDS 3
#define STAGES 3
#define PATH_SIZE 512
#define WORK_SIZE 256

/* Where a pipeline run is interrupted. */
typedef enum interrupt_point {
    POINT_NONE,
    POINT_BEFORE, /* at the start of the stage function: a stage boundary */
    POINT_MID,    /* with an output half written under its temporary name */
    POINT_END     /* after the outputs are committed, before returning */
} interrupt_point;

typedef enum interrupt_mode {
    MODE_KILL, /* SIGKILL to the process */
    MODE_FAIL  /* the stage returns an error */
} interrupt_mode;

typedef struct pipeline {
    char calls_path[PATH_SIZE + 16]; /* log of stage starts and finishes */
    char prompts_path[PATH_SIZE]; /* the input every generate stage reads */
    int stop_round, stop_stage;
    interrupt_point point;
    interrupt_mode mode;
    /* What generate saw per round, for checking the context. */
    char start_models[ROUNDS + 1][PATH_SIZE];
    bool merge_lora[ROUNDS + 1];
} pipeline;

/* The shared files of a test: a folder with the prompts, the initial
 * model and the run folders. */
static char work[WORK_SIZE];
static char prompts_path[PATH_SIZE];
static char initial_model[PATH_SIZE];

/* ------------------------------------------------------------------------
 * Files
 * ------------------------------------------------------------------------ */

static void write_text(const char *path, const char *text) {
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot write %s: %s", path, strerror(errno));
        return;
    }
    fputs(text, file);
    fclose(file);
}

/* Returns the file's content in a new buffer, or NULL. */
static char *read_text(const char *path) {
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return NULL;
    }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    size_t got = text != NULL ? fread(text, 1, (size_t)size, file) : 0;
    fclose(file);
    if (text != NULL) {
        text[got] = '\0';
    }
    return text;
}

static void append_line(const char *path, const char *line) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd >= 0) {
        ssize_t written = write(fd, line, strlen(line));
        (void)written;
        close(fd);
    }
}

/* Removes the tree at path. */
static void remove_tree(const char *path) {
    struct stat info;
    if (lstat(path, &info) != 0) {
        return;
    }
    if (S_ISDIR(info.st_mode)) {
        DIR *dir = opendir(path);
        for (struct dirent *entry = dir != NULL ? readdir(dir) : NULL; entry != NULL;
             entry = readdir(dir)) {
            if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
                char child[PATH_SIZE];
                snprintf(child, sizeof child, "%s/%s", path, entry->d_name);
                remove_tree(child);
            }
        }
        if (dir != NULL) {
            closedir(dir);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int compare_names(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Appends "relative/path sha256" lines for every file under folder, in
 * name order, leaving out the manifest and the lock. */
static void snapshot_tree(const char *root, const char *relative, char *out, size_t size) {
    char folder[PATH_SIZE];
    snprintf(folder, sizeof folder, "%s%s%s", root, relative[0] ? "/" : "", relative);
    struct dirent **entries = NULL;
    int count = scandir(folder, &entries, NULL, compare_names);
    for (int i = 0; i < count; i++) {
        const char *name = entries[i]->d_name;
        bool skip = strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
                    (relative[0] == '\0' && (strcmp(name, MR_ROUNDS_MANIFEST_FILE) == 0 ||
                                             strcmp(name, "lock") == 0));
        if (!skip) {
            char child_relative[PATH_SIZE], child[PATH_SIZE * 2];
            snprintf(child_relative, sizeof child_relative, "%s%s%s", relative,
                     relative[0] ? "/" : "", name);
            snprintf(child, sizeof child, "%s/%s", root, child_relative);
            struct stat info;
            if (stat(child, &info) == 0 && S_ISDIR(info.st_mode)) {
                size_t length = strlen(out);
                snprintf(out + length, size - length, "%s/\n", child_relative);
                snapshot_tree(root, child_relative, out, size);
            } else {
                char hex[MR_SHA256_HEX_LENGTH + 1];
                if (mr_sha256_file(child, hex, NULL) != MR_OK) {
                    snprintf(hex, sizeof hex, "unreadable");
                }
                size_t length = strlen(out);
                snprintf(out + length, size - length, "%s %s\n", child_relative, hex);
            }
        }
        free(entries[i]);
    }
    free(entries);
}

/* Returns the run's manifest parsed, with every stage's "attempts"
 * removed (they differ after an interruption by design). */
static cJSON *manifest_without_attempts(const char *run_dir) {
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/%s", run_dir, MR_ROUNDS_MANIFEST_FILE);
    char *text = read_text(path);
    cJSON *json = text != NULL ? cJSON_Parse(text) : NULL;
    free(text);
    cJSON *rounds = cJSON_GetObjectItemCaseSensitive(json, "rounds");
    cJSON *round = NULL;
    cJSON_ArrayForEach(round, rounds) {
        cJSON *stage = NULL;
        cJSON_ArrayForEach(stage, cJSON_GetObjectItemCaseSensitive(round, "stages")) {
            cJSON_DeleteItemFromObjectCaseSensitive(stage, "attempts");
        }
    }
    return json;
}

/* Counts "start R S" and "finish R S" lines of a call log. */
static void count_calls(const char *path, int starts[ROUNDS + 1][STAGES],
                        int finishes[ROUNDS + 1][STAGES]) {
    memset(starts, 0, sizeof(int) * (ROUNDS + 1) * STAGES);
    memset(finishes, 0, sizeof(int) * (ROUNDS + 1) * STAGES);
    FILE *file = fopen(path, "r");
    char word[16];
    int r = 0, s = 0;
    while (file != NULL && fscanf(file, "%15s %d %d", word, &r, &s) == 3) {
        if (r < 0 || r > ROUNDS || s < 0 || s >= STAGES) {
            continue;
        }
        if (strcmp(word, "start") == 0) {
            starts[r][s]++;
        } else if (strcmp(word, "finish") == 0) {
            finishes[r][s]++;
        }
    }
    if (file != NULL) {
        fclose(file);
    }
}

/* ------------------------------------------------------------------------
 * The fake pipeline
 * ------------------------------------------------------------------------ */

/* Interrupts the run when p requests it at this round, stage and point. */
static mr_status maybe_interrupt(const pipeline *p, const mr_stage_context *c,
                                 interrupt_point point, mr_error *err) {
    if (p->point != point || c->round != p->stop_round || c->stage != p->stop_stage) {
        return MR_OK;
    }
    if (p->mode == MODE_KILL) {
        kill(getpid(), SIGKILL);
    }
    return mr_error_set(err, MR_ERR_IO, "injected failure");
}

static void log_call(const pipeline *p, const mr_stage_context *c, const char *word) {
    char line[64];
    snprintf(line, sizeof line, "%s %d %d\n", word, c->round, c->stage);
    append_line(p->calls_path, line);
}

/* Writes text to path in two halves, interrupting between them when asked. */
static mr_status write_halves(const pipeline *p, const mr_stage_context *c, const char *path,
                              const char *text, mr_error *err) {
    FILE *file = fopen(path, "w");
    if (file == NULL) {
        return mr_error_set(err, MR_ERR_IO, "cannot write %s", path);
    }
    size_t half = strlen(text) / 2;
    fwrite(text, 1, half, file);
    fflush(file);
    mr_status status = maybe_interrupt(p, c, POINT_MID, err);
    if (status == MR_OK) {
        fputs(text + half, file);
    }
    fclose(file);
    return status;
}

/* Writes text as the round output name through a temporary name. */
static mr_status write_output(const pipeline *p, const mr_stage_context *c, const char *name,
                              const char *text, mr_error *err) {
    char temp[PATH_SIZE];
    mr_status status = mr_stage_output_begin(c, name, temp, sizeof temp, err);
    if (status == MR_OK) {
        status = write_halves(p, c, temp, text, err);
    }
    if (status == MR_OK) {
        status = mr_stage_output_commit(c, name, err);
    }
    return status;
}

/* Reads the weights of the model folder the round starts from. */
static char *read_start_weights(const mr_stage_context *c) {
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/weights.txt", c->start_model);
    char *weights = read_text(path);
    return weights != NULL ? weights : strdup("(missing)");
}

static mr_status stage_generate(const mr_stage_context *c, void *user_data, mr_error *err) {
    pipeline *p = user_data;
    mr_status status = maybe_interrupt(p, c, POINT_BEFORE, err);
    if (status != MR_OK) {
        return status;
    }
    log_call(p, c, "start");
    snprintf(p->start_models[c->round], PATH_SIZE, "%s", c->start_model);
    p->merge_lora[c->round] = c->merge_lora;

    status = mr_stage_add_input(c, p->prompts_path, err);
    if (status == MR_OK) {
        status = mr_stage_add_input(c, c->start_model, err);
    }
    if (status != MR_OK) {
        return status;
    }
    char *prompts = read_text(p->prompts_path);
    char *weights = read_start_weights(c);
    char text[2048];
    snprintf(text, sizeof text, "round %d answers to:\n%swith weights %s\n", c->round,
             prompts != NULL ? prompts : "", weights);
    free(prompts);
    free(weights);

    status = write_output(p, c, "generated.txt", text, err);
    if (status == MR_OK) {
        status = maybe_interrupt(p, c, POINT_END, err);
    }
    if (status == MR_OK) {
        log_call(p, c, "finish");
    }
    return status;
}

static mr_status stage_judge(const mr_stage_context *c, void *user_data, mr_error *err) {
    pipeline *p = user_data;
    mr_status status = maybe_interrupt(p, c, POINT_BEFORE, err);
    if (status != MR_OK) {
        return status;
    }
    log_call(p, c, "start");

    char input[PATH_SIZE];
    snprintf(input, sizeof input, "%s/generated.txt", c->round_dir);
    status = mr_stage_add_input(c, input, err);
    if (status != MR_OK) {
        return status;
    }
    char *generated = read_text(input);
    char hex[MR_SHA256_HEX_LENGTH + 1];
    mr_sha256_hex(generated, generated != NULL ? strlen(generated) : 0, hex);
    free(generated);
    char text[256];
    snprintf(text, sizeof text, "score of round %d: %s\n", c->round, hex);

    status = write_output(p, c, "judged.txt", text, err);
    if (status == MR_OK) {
        status = maybe_interrupt(p, c, POINT_END, err);
    }
    if (status == MR_OK) {
        log_call(p, c, "finish");
    }
    return status;
}

/* Trains the "model": a folder with weights derived from the judged file
 * and the start weights, plus a config file. */
static mr_status stage_train(const mr_stage_context *c, void *user_data, mr_error *err) {
    pipeline *p = user_data;
    mr_status status = maybe_interrupt(p, c, POINT_BEFORE, err);
    if (status != MR_OK) {
        return status;
    }
    log_call(p, c, "start");

    char input[PATH_SIZE];
    snprintf(input, sizeof input, "%s/judged.txt", c->round_dir);
    status = mr_stage_add_input(c, input, err);
    if (status != MR_OK) {
        return status;
    }
    char *judged = read_text(input);
    char *weights = read_start_weights(c);
    char mixed[1024];
    snprintf(mixed, sizeof mixed, "%s|%s", judged != NULL ? judged : "", weights);
    free(judged);
    free(weights);
    char hex[MR_SHA256_HEX_LENGTH + 1];
    mr_sha256_hex(mixed, strlen(mixed), hex);

    char temp[PATH_SIZE];
    status = mr_stage_output_begin(c, MR_ROUNDS_MODEL_FOLDER, temp, sizeof temp, err);
    if (status != MR_OK) {
        return status;
    }
    if (mkdir(temp, 0777) != 0) {
        return mr_error_set(err, MR_ERR_IO, "cannot create %s", temp);
    }
    char file[PATH_SIZE * 2];
    snprintf(file, sizeof file, "%s/config.json", temp);
    write_text(file, "{\"dim\": 4}\n");
    snprintf(file, sizeof file, "%s/weights.txt", temp);
    char text[128];
    snprintf(text, sizeof text, "w%d-%.16s", c->round + 1, hex);
    status = write_halves(p, c, file, text, err);
    if (status == MR_OK) {
        status = mr_stage_output_commit(c, MR_ROUNDS_MODEL_FOLDER, err);
    }
    if (status == MR_OK) {
        status = maybe_interrupt(p, c, POINT_END, err);
    }
    if (status == MR_OK) {
        log_call(p, c, "finish");
    }
    return status;
}

static const mr_rounds_stage stages[STAGES] = {
    {"generate", stage_generate},
    {"judge", stage_judge},
    {"train", stage_train},
};

static mr_rounds_config make_config(pipeline *p, int n_rounds) {
    mr_rounds_config config = {.n_rounds = n_rounds, .stages = stages, .n_stages = STAGES,
                               .initial_model = initial_model, .lora = false,
                               .user_data = p};
    return config;
}

/* Sets up p for a run whose call log is run_dir.calls. */
static void pipeline_init(pipeline *p, const char *run_dir) {
    memset(p, 0, sizeof *p);
    snprintf(p->calls_path, sizeof p->calls_path, "%s.calls", run_dir);
    snprintf(p->prompts_path, sizeof p->prompts_path, "%s", prompts_path);
    p->point = POINT_NONE;
}

/* Opens and runs the pipeline in run_dir to the end; returns the status. */
static mr_status run_pipeline(pipeline *p, const char *run_dir, int n_rounds, mr_error *err) {
    mr_rounds_config config = make_config(p, n_rounds);
    mr_rounds *rounds = NULL;
    mr_status status = mr_rounds_open(run_dir, &config, &rounds, err);
    if (status == MR_OK) {
        status = mr_rounds_run(rounds, err);
    }
    mr_rounds_close(rounds);
    return status;
}

/* Makes the shared work folder, prompts and initial model. */
static void setup_work(void) {
    /* The 60 pipeline runs below call fsync about 2,000 times, which took
     * 29 s on a virtual disk and under 1 s on tmpfs, so /dev/shm is
     * preferred when TMPDIR is not set. */
    const char *base = getenv("TMPDIR");
    if (base == NULL) {
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    }
    snprintf(work, sizeof work, "%s/mr_rounds_XXXXXX", base);
    if (mkdtemp(work) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "mkdtemp failed: %s", strerror(errno));
        return;
    }
    snprintf(prompts_path, sizeof prompts_path, "%s/prompts.txt", work);
    write_text(prompts_path, "What is 2 + 2?\nName a prime.\n");
    snprintf(initial_model, sizeof initial_model, "%s/initial-model", work);
    mkdir(initial_model, 0777);
    char path[PATH_SIZE * 2];
    snprintf(path, sizeof path, "%s/weights.txt", initial_model);
    write_text(path, "w0");
}

/* Drops the driver's info lines so that 50 runs do not flood the output. */
static void quiet_log(mr_log_level level, const char *subsystem, const char *message,
                      void *user_data) {
    (void)level;
    (void)subsystem;
    (void)message;
    (void)user_data;
}

/* ------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------ */

/* The uninterrupted run every interrupted one is compared with. */
static char reference_dir[PATH_SIZE];
static char reference_snapshot[16384];

static void rounds_uninterrupted_reference(void) {
    snprintf(reference_dir, sizeof reference_dir, "%s/reference", work);
    pipeline p;
    pipeline_init(&p, reference_dir);
    mr_error err;
    CHECK_STATUS(run_pipeline(&p, reference_dir, ROUNDS, &err), MR_OK);

    int starts[ROUNDS + 1][STAGES], finishes[ROUNDS + 1][STAGES];
    count_calls(p.calls_path, starts, finishes);
    for (int r = 0; r < ROUNDS; r++) {
        for (int s = 0; s < STAGES; s++) {
            CHECK_INT_EQ(starts[r][s], 1);
            CHECK_INT_EQ(finishes[r][s], 1);
        }
    }

    /* Every round wrote its three outputs, and nothing temporary is left. */
    reference_snapshot[0] = '\0';
    snapshot_tree(reference_dir, "", reference_snapshot, sizeof reference_snapshot);
    CHECK(strstr(reference_snapshot, "round-002/model/weights.txt ") != NULL);
    CHECK(strstr(reference_snapshot, "round-000/judged.txt ") != NULL);
    CHECK(strstr(reference_snapshot, ".partial") == NULL);
    CHECK(strstr(reference_snapshot, ".tmp") == NULL);

    /* Round 1 starts from round 0's model, so the weights chain. */
    char path[PATH_SIZE * 2];
    snprintf(path, sizeof path, "%s/round-001/generated.txt", reference_dir);
    char *generated = read_text(path);
    snprintf(path, sizeof path, "%s/round-000/model/weights.txt", reference_dir);
    char *weights = read_text(path);
    CHECK(generated != NULL);
    CHECK(weights != NULL);
    if (generated != NULL && weights != NULL) {
        CHECK(strncmp(weights, "w1-", 3) == 0);
        CHECK(strstr(generated, weights) != NULL);
    }
    free(generated);
    free(weights);

    mr_rounds_config config = make_config(&p, ROUNDS);
    mr_rounds *rounds = NULL;
    CHECK_STATUS(mr_rounds_open(reference_dir, &config, &rounds, &err), MR_OK);
    if (rounds != NULL) {
        for (int r = 0; r < ROUNDS; r++) {
            CHECK_INT_EQ(mr_rounds_round_state(rounds, r), MR_ROUND_DONE);
            for (int s = 0; s < STAGES; s++) {
                CHECK(mr_rounds_stage_done(rounds, r, s));
                CHECK_INT_EQ(mr_rounds_stage_attempts(rounds, r, s), 1);
            }
        }
        /* A finished run runs nothing again. */
        CHECK_STATUS(mr_rounds_run(rounds, &err), MR_OK);
        mr_rounds_close(rounds);
    }
    count_calls(p.calls_path, starts, finishes);
    CHECK_INT_EQ(starts[2][2], 1);
}

/* Checks a resumed run against the reference: same files, same manifest
 * but for attempts, every stage finished once, and the interrupted stage
 * started once more when it was interrupted after it began. */
static void check_resumed(const char *run_dir, const pipeline *p, int stop_round,
                          int stop_stage, interrupt_point point, const char *label) {
    static char snapshot[16384];
    snapshot[0] = '\0';
    snapshot_tree(run_dir, "", snapshot, sizeof snapshot);
    if (strcmp(snapshot, reference_snapshot) != 0) {
        mr_test_fail(__FILE__, __LINE__, "%s: files differ from the reference:\n%s\nexpected:\n%s",
                     label, snapshot, reference_snapshot);
    }

    cJSON *manifest = manifest_without_attempts(run_dir);
    cJSON *reference = manifest_without_attempts(reference_dir);
    if (manifest == NULL || reference == NULL || !cJSON_Compare(manifest, reference, true)) {
        mr_test_fail(__FILE__, __LINE__, "%s: the manifest differs from the reference", label);
    }
    cJSON_Delete(manifest);
    cJSON_Delete(reference);

    int starts[ROUNDS + 1][STAGES], finishes[ROUNDS + 1][STAGES];
    count_calls(p->calls_path, starts, finishes);
    for (int r = 0; r < ROUNDS; r++) {
        for (int s = 0; s < STAGES; s++) {
            bool interrupted = r == stop_round && s == stop_stage;
            int expected_starts = interrupted && point != POINT_BEFORE ? 2 : 1;
            if (starts[r][s] != expected_starts || finishes[r][s] != 1) {
                mr_test_fail(__FILE__, __LINE__,
                             "%s: round %d stage %d started %d and finished %d times, "
                             "expected %d and 1",
                             label, r, s, starts[r][s], finishes[r][s], expected_starts);
            }
        }
    }

    /* The driver counted two attempts of the interrupted stage. */
    pipeline quiet = *p;
    mr_rounds_config config = make_config(&quiet, ROUNDS);
    mr_rounds *rounds = NULL;
    mr_error err;
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_OK);
    if (rounds != NULL) {
        CHECK_INT_EQ(mr_rounds_stage_attempts(rounds, stop_round, stop_stage), 2);
        mr_rounds_close(rounds);
    }
}

/* Checks that `rounds status` shows stage s of round r as failed, with
 * the stage's message, and the round's state as failed. */
static void check_failure_in_status(const char *run_dir, int r, int s, const char *label) {
    char *table = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&table, &size);
    mr_error err;
    CHECK_STATUS(mr_rounds_print_status(run_dir, out, false, &err), MR_OK);
    fclose(out);
    char row[64], line[128];
    snprintf(row, sizeof row, "round-%03d  failed ", r);
    snprintf(line, sizeof line, "round-%03d stage %s failed: injected failure\n", r,
             stages[s].name);
    if (table == NULL || strstr(table, row) == NULL || strstr(table, line) == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s: the status lacks '%s' or '%s':\n%s", label, row,
                     line, table != NULL ? table : "");
    }
    if (table != NULL && strstr(table, " failed       ") == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s: no stage cell reads failed:\n%s", label, table);
    }
    free(table);
}

/* Runs the pipeline interrupted at one round, stage and point, resumes
 * it, and compares with the reference. */
static void run_interrupted_case(int r, int s, interrupt_point point, interrupt_mode mode) {
    static const char *point_names[] = {"none", "before", "mid", "end"};
    char label[128];
    snprintf(label, sizeof label, "%s at round %d stage %d %s",
             mode == MODE_KILL ? "kill" : "failure", r, s, point_names[point]);
    char run_dir[PATH_SIZE];
    snprintf(run_dir, sizeof run_dir, "%s/run-%s-%d-%d-%s", work,
             mode == MODE_KILL ? "kill" : "fail", r, s, point_names[point]);

    pipeline p;
    pipeline_init(&p, run_dir);
    p.stop_round = r;
    p.stop_stage = s;
    p.point = point;
    p.mode = mode;
    mr_error err;
    mr_error_clear(&err);

    if (mode == MODE_KILL) {
        pid_t child = fork();
        if (child == 0) {
            mr_status status = run_pipeline(&p, run_dir, ROUNDS, NULL);
            _exit(status == MR_OK ? 0 : 1);
        }
        int wait_status = 0;
        waitpid(child, &wait_status, 0);
        if (!WIFSIGNALED(wait_status) || WTERMSIG(wait_status) != SIGKILL) {
            mr_test_fail(__FILE__, __LINE__, "%s: the child was not killed (status %d)", label,
                         wait_status);
        }
    } else {
        CHECK_STATUS(run_pipeline(&p, run_dir, ROUNDS, &err), MR_ERR_IO);
        char expected[96];
        snprintf(expected, sizeof expected, "round-%03d stage '%s' failed: injected failure", r,
                 stages[s].name);
        if (strstr(err.message, expected) == NULL) {
            mr_test_fail(__FILE__, __LINE__, "%s: message '%s' lacks '%s'", label, err.message,
                         expected);
        }
        check_failure_in_status(run_dir, r, s, label);
    }

    /* Resume without interruption. */
    p.point = POINT_NONE;
    CHECK_STATUS(run_pipeline(&p, run_dir, ROUNDS, &err), MR_OK);
    check_resumed(run_dir, &p, r, s, point, label);
    remove_tree(run_dir);
    unlink(p.calls_path);
}

static void rounds_resume_after_kill(void) {
    for (int r = 0; r < ROUNDS; r++) {
        for (int s = 0; s < STAGES; s++) {
            run_interrupted_case(r, s, POINT_BEFORE, MODE_KILL);
            run_interrupted_case(r, s, POINT_MID, MODE_KILL);
            run_interrupted_case(r, s, POINT_END, MODE_KILL);
        }
    }
}

static void rounds_resume_after_failure(void) {
    for (int r = 0; r < ROUNDS; r++) {
        for (int s = 0; s < STAGES; s++) {
            run_interrupted_case(r, s, POINT_BEFORE, MODE_FAIL);
            run_interrupted_case(r, s, POINT_MID, MODE_FAIL);
            run_interrupted_case(r, s, POINT_END, MODE_FAIL);
        }
    }
}

static void rounds_context_start_models(void) {
    char run_dir[PATH_SIZE];
    snprintf(run_dir, sizeof run_dir, "%s/lora", work);
    pipeline p;
    pipeline_init(&p, run_dir);
    mr_rounds_config config = make_config(&p, ROUNDS);
    config.lora = true;
    mr_rounds *rounds = NULL;
    mr_error err;
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_OK);
    CHECK_STATUS(mr_rounds_run(rounds, &err), MR_OK);
    mr_rounds_close(rounds);

    /* Round 0 starts from the initial model as given; later rounds from
     * the previous round's model, merging its adapter. */
    char expected[PATH_SIZE * 2];
    CHECK(strcmp(p.start_models[0], initial_model) == 0);
    CHECK(!p.merge_lora[0]);
    snprintf(expected, sizeof expected, "%s/round-000/model", run_dir);
    CHECK(strcmp(p.start_models[1], expected) == 0);
    CHECK(p.merge_lora[1]);
    snprintf(expected, sizeof expected, "%s/round-001/model", run_dir);
    CHECK(strcmp(p.start_models[2], expected) == 0);
    CHECK(p.merge_lora[2]);

    /* The manifest stores the start model relative to the run folder. */
    snprintf(expected, sizeof expected, "%s/%s", run_dir, MR_ROUNDS_MANIFEST_FILE);
    char *manifest = read_text(expected);
    CHECK(manifest != NULL);
    if (manifest != NULL) {
        CHECK(strstr(manifest, "\"start_model\":\t\"round-001/model\"") != NULL);
        CHECK(strstr(manifest, "\"merge_lora\":\ttrue") != NULL);
    }
    free(manifest);

    /* The stored lora flag must match on reopen. */
    config.lora = false;
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "lora") != NULL);
    remove_tree(run_dir);
    unlink(p.calls_path);
}

static void rounds_detect_changed_files(void) {
    char run_dir[PATH_SIZE];
    snprintf(run_dir, sizeof run_dir, "%s/changed", work);
    pipeline p;
    pipeline_init(&p, run_dir);
    mr_error err;
    CHECK_STATUS(run_pipeline(&p, run_dir, ROUNDS, &err), MR_OK);
    mr_rounds_config config = make_config(&p, ROUNDS);
    mr_rounds *rounds = NULL;

    /* An input outside the run folder changes. */
    write_text(prompts_path, "What is 2 + 3?\nName a prime.\n");
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_STATE);
    CHECK(rounds == NULL);
    CHECK(strstr(err.message, "round-000 stage 'generate' recorded the input") != NULL);
    CHECK(strstr(err.message, "prompts.txt") != NULL);
    CHECK(strstr(err.message, "but it now has sha256") != NULL);
    write_text(prompts_path, "What is 2 + 2?\nName a prime.\n");
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_OK);
    mr_rounds_close(rounds);

    /* An output inside it changes. */
    char path[PATH_SIZE * 2];
    snprintf(path, sizeof path, "%s/round-001/judged.txt", run_dir);
    char *judged = read_text(path);
    write_text(path, "tampered\n");
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "round-001 stage 'judge' recorded the output") != NULL);
    CHECK(strstr(err.message, "round-001/judged.txt") != NULL);
    write_text(path, judged != NULL ? judged : "");
    free(judged);

    /* A recorded file is gone. */
    snprintf(path, sizeof path, "%s/round-002/model/weights.txt", run_dir);
    unlink(path);
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_STATE);
    CHECK(strstr(err.message, "can no longer be read") != NULL);
    CHECK(strstr(err.message, "round-002/model/weights.txt") != NULL);
    remove_tree(run_dir);
    unlink(p.calls_path);
}

static void rounds_reject_other_config(void) {
    char run_dir[PATH_SIZE];
    snprintf(run_dir, sizeof run_dir, "%s/config", work);
    pipeline p;
    pipeline_init(&p, run_dir);
    mr_error err;
    CHECK_STATUS(run_pipeline(&p, run_dir, 2, &err), MR_OK);
    mr_rounds *rounds = NULL;

    mr_rounds_stage other_stages[] = {{"generate", stage_generate}, {"train", stage_train}};
    mr_rounds_config config = make_config(&p, 2);
    config.stages = other_stages;
    config.n_stages = 2;
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "other stages") != NULL);

    config = make_config(&p, 1);
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "records 2 rounds, but the config asks for 1") != NULL);

    config = make_config(&p, 2);
    config.initial_model = NULL;
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "initial model") != NULL);

    /* Invalid configs fail before touching the disk. */
    mr_rounds_stage bad_name[] = {{"judge stage", stage_judge}};
    config = make_config(&p, 2);
    config.stages = bad_name;
    config.n_stages = 1;
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "'judge stage'") != NULL);
    mr_rounds_stage twice[] = {{"judge", stage_judge}, {"judge", stage_judge}};
    config.stages = twice;
    config.n_stages = 2;
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_INVALID_ARGUMENT);
    config = make_config(&p, 0);
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &rounds, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(rounds == NULL);
    remove_tree(run_dir);
    unlink(p.calls_path);
}

static void rounds_extend_runs_new_round(void) {
    char run_dir[PATH_SIZE];
    snprintf(run_dir, sizeof run_dir, "%s/extend", work);
    pipeline p;
    pipeline_init(&p, run_dir);
    mr_error err;
    CHECK_STATUS(run_pipeline(&p, run_dir, ROUNDS, &err), MR_OK);
    CHECK_STATUS(run_pipeline(&p, run_dir, ROUNDS + 1, &err), MR_OK);

    int starts[ROUNDS + 1][STAGES], finishes[ROUNDS + 1][STAGES];
    count_calls(p.calls_path, starts, finishes);
    for (int r = 0; r <= ROUNDS; r++) {
        for (int s = 0; s < STAGES; s++) {
            CHECK_INT_EQ(starts[r][s], 1);
            CHECK_INT_EQ(finishes[r][s], 1);
        }
    }
    char expected[PATH_SIZE * 2];
    snprintf(expected, sizeof expected, "%s/round-002/model", run_dir);
    CHECK(strcmp(p.start_models[ROUNDS], expected) == 0);
    remove_tree(run_dir);
    unlink(p.calls_path);
}

static void rounds_lock_rejects_second_open(void) {
    char run_dir[PATH_SIZE];
    snprintf(run_dir, sizeof run_dir, "%s/locked", work);
    pipeline p;
    pipeline_init(&p, run_dir);
    mr_rounds_config config = make_config(&p, 1);
    mr_rounds *first = NULL;
    mr_rounds *second = NULL;
    mr_error err;
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &first, &err), MR_OK);
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &second, &err), MR_ERR_STATE);
    CHECK(second == NULL);
    CHECK(strstr(err.message, "another process has the run") != NULL);
    mr_rounds_close(first);

    /* Closing releases the lock. */
    CHECK_STATUS(mr_rounds_open(run_dir, &config, &second, &err), MR_OK);
    mr_rounds_close(second);
    remove_tree(run_dir);
}

static void rounds_status_table(void) {
    char run_dir[PATH_SIZE];
    snprintf(run_dir, sizeof run_dir, "%s/status", work);
    pipeline p;
    pipeline_init(&p, run_dir);
    p.stop_round = 1;
    p.stop_stage = 1;
    p.point = POINT_MID;
    p.mode = MODE_FAIL;
    mr_error err;
    CHECK_STATUS(run_pipeline(&p, run_dir, ROUNDS, &err), MR_ERR_IO);

    char table_path[PATH_SIZE];
    snprintf(table_path, sizeof table_path, "%s/status.txt", work);
    FILE *out = fopen(table_path, "w");
    CHECK(out != NULL);
    if (out == NULL) {
        return;
    }
    CHECK_STATUS(mr_rounds_print_status(run_dir, out, true, &err), MR_OK);
    fclose(out);
    char *table = read_text(table_path);
    if (table == NULL) {
        return;
    }
    CHECK(strstr(table, "round      state    generate     judge        train        start "
                        "model -> output model\n") != NULL);
    CHECK(strstr(table, "round-000  done     done         done         done         ") !=
          NULL);
    CHECK(strstr(table, " -> round-000/model\n") != NULL);
    /* Round 1's judge stage returned an error, which the manifest keeps. */
    CHECK(strstr(table, "round-001  failed   done         failed       -            "
                        "round-000/model -> -\n") != NULL);
    CHECK(strstr(table, "round-001 stage judge failed: injected failure\n") != NULL);
    CHECK(strstr(table, "round-002  pending  -            -            -            - -> -\n") !=
          NULL);
    /* With files: round 0's generate read the prompts and wrote its answers. */
    CHECK(strstr(table, "round-000 generate:\n    input  ") != NULL);
    CHECK(strstr(table, "prompts.txt\n") != NULL);
    CHECK(strstr(table, "  round-000/generated.txt\n") != NULL);
    free(table);
    unlink(table_path);

    CHECK_STATUS(mr_rounds_print_status(work, stdout, false, &err), MR_ERR_IO);
    CHECK(strstr(err.message, "manifest.json") != NULL);
    remove_tree(run_dir);
    unlink(p.calls_path);
}

static void rounds_output_name_rejected(void) {
    mr_stage_context context = {.round_dir = work};
    char temp[PATH_SIZE];
    mr_error err;
    const char *bad[] = {"../escape", "a/b", ".hidden", "", "with space"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(mr_stage_output_begin(&context, bad[i], temp, sizeof temp, &err),
                     MR_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(mr_stage_output_commit(&context, bad[i], &err), MR_ERR_INVALID_ARGUMENT);
    }
}

int main(void) {
    mr_log_set_callback(quiet_log, NULL);
    setup_work();
    MR_RUN(rounds_uninterrupted_reference);
    MR_RUN(rounds_resume_after_kill);
    MR_RUN(rounds_resume_after_failure);
    MR_RUN(rounds_context_start_models);
    MR_RUN(rounds_detect_changed_files);
    MR_RUN(rounds_reject_other_config);
    MR_RUN(rounds_extend_runs_new_round);
    MR_RUN(rounds_lock_rejects_second_open);
    MR_RUN(rounds_status_table);
    MR_RUN(rounds_output_name_rejected);
    remove_tree(work);
    return mr_test_finish();
}

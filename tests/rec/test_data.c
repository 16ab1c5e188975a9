/*
 * Dataset loading for sequential recommendation: preprocessing and the
 * leave-one-out split on a hand-made file, the statistics of the shipped
 * Amazon files, model inputs, negative sampling and the errors for bad
 * input.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/rec.h"
#include "test.h"

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* Warnings logged since the last log_capture_start(). */
static int warning_count;
static char last_warning[2048];

static void capture_log(mr_log_level level, const char *subsystem, const char *message,
                        void *user_data) {
    (void)user_data;
    if (level == MR_LOG_WARN) {
        warning_count++;
        snprintf(last_warning, sizeof last_warning, "%s: %s", subsystem, message);
    }
}

static void log_capture_start(void) {
    warning_count = 0;
    last_warning[0] = '\0';
    mr_log_set_callback(capture_log, NULL);
}

static void log_capture_stop(void) { mr_log_set_callback(NULL, NULL); }

/* Writes size bytes to a new file under /tmp and stores its path. */
static bool write_temp_file(const char *content, size_t size, char *path, size_t path_size) {
    snprintf(path, path_size, "/tmp/mr_rec_data_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        mr_test_fail(__FILE__, __LINE__, "mkstemp failed: %s", strerror(errno));
        return false;
    }
    bool ok = write(fd, content, size) == (ssize_t)size;
    close(fd);
    if (!ok) {
        mr_test_fail(__FILE__, __LINE__, "writing %s failed", path);
    }
    return ok;
}

/* Loads text written to a temporary file; the file is removed again. */
static mr_status load_text(const char *text, size_t size, mr_rec_data **data, mr_error *err,
                           char *path, size_t path_size) {
    if (!write_temp_file(text, size, path, path_size)) {
        *data = NULL;
        return MR_ERR_IO;
    }
    mr_status status = mr_rec_data_load(path, data, err);
    unlink(path);
    return status;
}

static int64_t sequence_length(const mr_rec_data *data, int64_t s) {
    return data->offsets[s + 1] - data->offsets[s];
}

/* ------------------------------------------------------------------------
 * The hand-made file
 * ------------------------------------------------------------------------ */

/*
 * tests/rec/data/tiny.txt:
 *   line 1  "1 5 6 7 8"                       kept
 *   line 2  "2 3 3 4"                         2 distinct items: dropped
 *   line 3  "3 9 10 9 11 12 10"               repeats of 9 and 10 dropped
 *   line 4  ""                                blank
 *   line 5  "5<tab>7 8  9 10 11 12 13 14 15 16" kept, 10 items
 *   line 6  "6 20 21"                         2 items: dropped
 */
static const char *tiny_path = "rec/data/tiny.txt";

static void tiny_preprocessing(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    log_capture_start();
    CHECK_STATUS(mr_rec_data_load(tiny_path, &data, &err), MR_OK);
    log_capture_stop();
    if (data == NULL) {
        return;
    }

    CHECK_INT_EQ(data->n_lines, 6);
    CHECK_INT_EQ(data->n_sequences, 3);
    CHECK_INT_EQ(data->n_users_dropped, 2);
    CHECK_INT_EQ(data->n_repeats_dropped, 3);
    /* Largest kept ids + 1: the dropped user 6 and items 20, 21 do not count. */
    CHECK_INT_EQ(data->n_users, 6);
    CHECK_INT_EQ(data->n_items, 17);
    CHECK(strcmp(data->path, tiny_path) == 0);

    CHECK_INT_EQ(data->user_ids[0], 1);
    CHECK_INT_EQ(data->user_ids[1], 3);
    CHECK_INT_EQ(data->user_ids[2], 5);
    CHECK_INT_EQ(data->offsets[0], 0);
    CHECK_INT_EQ(data->offsets[1], 4);
    CHECK_INT_EQ(data->offsets[2], 8);
    CHECK_INT_EQ(data->offsets[3], 18);

    const int32_t expected[18] = {5, 6, 7, 8, 9, 10, 11, 12, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    for (int i = 0; i < 18; i++) {
        CHECK_INT_EQ(data->items[i], expected[i]);
    }

    /* One warning counts both dropped users. */
    CHECK_INT_EQ(warning_count, 1);
    CHECK(strstr(last_warning, "dropped 2 users") != NULL);
    mr_rec_data_free(data);
}

static void tiny_training_examples(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(tiny_path, &data, &err), MR_OK);
    if (data == NULL) {
        return;
    }

    /* Every position but the last two, in file order: 2 + 2 + 8. */
    CHECK_INT_EQ(data->n_train, 12);
    const int32_t seq[12] = {0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2};
    const int32_t pos[12] = {0, 1, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7};
    for (int i = 0; i < 12 && i < data->n_train; i++) {
        CHECK_INT_EQ(data->train_seq[i], seq[i]);
        CHECK_INT_EQ(data->train_pos[i], pos[i]);
    }
    mr_rec_data_free(data);
}

static void tiny_split_targets(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(tiny_path, &data, &err), MR_OK);
    if (data == NULL) {
        return;
    }

    CHECK(strcmp(mr_rec_split_name(MR_REC_TRAIN), "train") == 0);
    CHECK(strcmp(mr_rec_split_name(MR_REC_VALID), "valid") == 0);
    CHECK(strcmp(mr_rec_split_name(MR_REC_TEST), "test") == 0);

    CHECK_INT_EQ(mr_rec_data_target_pos(data, 0, MR_REC_VALID), 2);
    CHECK_INT_EQ(mr_rec_data_target_pos(data, 0, MR_REC_TEST), 3);
    CHECK_INT_EQ(mr_rec_data_target_pos(data, 2, MR_REC_VALID), 8);
    CHECK_INT_EQ(mr_rec_data_target_pos(data, 2, MR_REC_TEST), 9);
    CHECK_INT_EQ(mr_rec_data_target_pos(data, 2, MR_REC_TRAIN), -1);

    /* The targets themselves: user 5's validation item 15, test item 16. */
    CHECK_INT_EQ(data->items[data->offsets[2] + 8], 15);
    CHECK_INT_EQ(data->items[data->offsets[2] + 9], 16);
    mr_rec_data_free(data);
}

static void tiny_input_padding(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(tiny_path, &data, &err), MR_OK);
    if (data == NULL) {
        return;
    }
    int32_t input[6];

    /* The first item's input is all padding. */
    mr_rec_data_input(data, 0, 0, 4, input);
    for (int i = 0; i < 4; i++) {
        CHECK_INT_EQ(input[i], 0);
    }

    /* Left padding: the most recent item sits in the last slot. */
    mr_rec_data_input(data, 0, 2, 4, input);
    const int32_t padded[4] = {0, 0, 5, 6};
    for (int i = 0; i < 4; i++) {
        CHECK_INT_EQ(input[i], padded[i]);
    }

    /* Truncation keeps the last max_len items: the test input of user 5
     * is 7..15, of which 5 slots keep 11..15. */
    mr_rec_data_input(data, 2, mr_rec_data_target_pos(data, 2, MR_REC_TEST), 5, input);
    const int32_t truncated[5] = {11, 12, 13, 14, 15};
    for (int i = 0; i < 5; i++) {
        CHECK_INT_EQ(input[i], truncated[i]);
    }

    /* The validation input stops before item 15. */
    mr_rec_data_input(data, 2, mr_rec_data_target_pos(data, 2, MR_REC_VALID), 5, input);
    const int32_t validation[5] = {10, 11, 12, 13, 14};
    for (int i = 0; i < 5; i++) {
        CHECK_INT_EQ(input[i], validation[i]);
    }

    /* target_pos equal to the length: the whole sequence, for recommending
     * the next item. */
    mr_rec_data_input(data, 1, sequence_length(data, 1), 6, input);
    const int32_t whole[6] = {0, 0, 9, 10, 11, 12};
    for (int i = 0; i < 6; i++) {
        CHECK_INT_EQ(input[i], whole[i]);
    }
    mr_rec_data_free(data);
}

static void tiny_contains(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(tiny_path, &data, &err), MR_OK);
    if (data == NULL) {
        return;
    }

    CHECK(mr_rec_data_contains(data, 0, 5));
    CHECK(mr_rec_data_contains(data, 0, 8));
    CHECK(!mr_rec_data_contains(data, 0, 9));
    CHECK(mr_rec_data_contains(data, 1, 12));
    CHECK(!mr_rec_data_contains(data, 1, 5));
    CHECK(mr_rec_data_contains(data, 2, 16));
    CHECK(!mr_rec_data_contains(data, 2, 0));
    mr_rec_data_free(data);
}

/* Windows line ends, no final newline, leading separators and a user line
 * without items all load. */
static void loose_layout_accepted(void) {
    const char text[] = "  1 4 5 6\r\n7\r\n2\t\t1 2 3 2";
    char path[64];
    mr_error err;
    mr_rec_data *data = NULL;
    log_capture_start();
    CHECK_STATUS(load_text(text, sizeof text - 1, &data, &err, path, sizeof path), MR_OK);
    log_capture_stop();
    if (data == NULL) {
        return;
    }

    CHECK_INT_EQ(data->n_lines, 3);
    CHECK_INT_EQ(data->n_sequences, 2);
    CHECK_INT_EQ(data->n_users_dropped, 1);
    CHECK_INT_EQ(data->n_repeats_dropped, 1);
    CHECK_INT_EQ(data->n_users, 3);
    CHECK_INT_EQ(data->n_items, 7);
    CHECK_INT_EQ(data->offsets[2], 6);
    CHECK_INT_EQ(data->items[3], 1);
    CHECK_INT_EQ(data->items[5], 3);
    CHECK_INT_EQ(warning_count, 1);
    mr_rec_data_free(data);
}

/* The largest id whose id + 1 still fits n_items loads. */
static void largest_id_accepted(void) {
    const char text[] = "2147483646 1 2 2147483646\n";
    char path[64];
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(load_text(text, sizeof text - 1, &data, &err, path, sizeof path), MR_OK);
    if (data == NULL) {
        return;
    }
    CHECK_INT_EQ(data->n_users, INT32_MAX);
    CHECK_INT_EQ(data->n_items, INT32_MAX);
    mr_rec_data_free(data);
}

/* Sparse item ids load with a warning that estimates the memory they
 * cost: 5,000,001 rows of 65 floats are 1.30 GB. */
static void sparse_ids_warn(void) {
    const char text[] = "1 1 2 5000000\n2 3 4 5\n";
    char path[64];
    mr_error err;
    mr_rec_data *data = NULL;
    log_capture_start();
    CHECK_STATUS(load_text(text, sizeof text - 1, &data, &err, path, sizeof path), MR_OK);
    log_capture_stop();
    CHECK_INT_EQ(warning_count, 1);
    CHECK(strstr(last_warning, "item ids go up to 5000000, far more than the 6 "
                               "interactions") != NULL);
    CHECK(strstr(last_warning, "about 1.30 GB per copy of the weights") != NULL);
    mr_rec_data_free(data);
}

/* ------------------------------------------------------------------------
 * The shipped Amazon files
 * ------------------------------------------------------------------------ */

static void beauty_statistics(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load("../data/rec/Beauty.txt", &data, &err), MR_OK);
    if (data == NULL) {
        printf("  %s\n", err.message);
        return;
    }

    CHECK_INT_EQ(data->n_sequences, 22363);
    CHECK_INT_EQ(data->n_lines, 22363);
    CHECK_INT_EQ(data->n_users, 22364);
    CHECK_INT_EQ(data->n_items, 12102);
    CHECK_INT_EQ(data->offsets[data->n_sequences], 198502);
    CHECK_INT_EQ(data->n_train, 153776);
    CHECK_INT_EQ(data->n_users_dropped, 0);
    CHECK_INT_EQ(data->n_repeats_dropped, 0);

    /* First line "1 1 2 3 4 5"; the longest user has 204 items. */
    CHECK_INT_EQ(data->user_ids[0], 1);
    CHECK_INT_EQ(sequence_length(data, 0), 5);
    CHECK_INT_EQ(data->items[4], 5);
    CHECK_INT_EQ(data->user_ids[data->n_sequences - 1], 22363);
    int64_t longest = 0;
    for (int64_t s = 0; s < data->n_sequences; s++) {
        if (sequence_length(data, s) > longest) {
            longest = sequence_length(data, s);
        }
    }
    CHECK_INT_EQ(longest, 204);
    mr_rec_data_free(data);
}

static void sports_statistics(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load("../data/rec/Sports_and_Outdoors.txt", &data, &err), MR_OK);
    if (data == NULL) {
        printf("  %s\n", err.message);
        return;
    }

    CHECK_INT_EQ(data->n_sequences, 35598);
    CHECK_INT_EQ(data->n_users, 35599);
    CHECK_INT_EQ(data->n_items, 18358);
    CHECK_INT_EQ(data->offsets[data->n_sequences], 296337);
    CHECK_INT_EQ(data->n_train, 225141);
    CHECK_INT_EQ(data->n_users_dropped, 0);
    mr_rec_data_free(data);
}

/* ------------------------------------------------------------------------
 * Negative sampling
 * ------------------------------------------------------------------------ */

static void negatives_avoid_history(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(tiny_path, &data, &err), MR_OK);
    if (data == NULL) {
        return;
    }

    /* User 5 has items 7..16 of 1..16, which leaves 1..6. */
    enum { COUNT = 1000 };
    int32_t negatives[COUNT];
    int seen[17] = {0};
    mr_rng rng;
    mr_rng_init(&rng, 42);
    mr_rec_sample_negatives(data, 2, COUNT, &rng, negatives);
    for (int i = 0; i < COUNT; i++) {
        int32_t item = negatives[i];
        CHECK(item >= 1);
        CHECK(item <= 6);
        if (item >= 0 && item < 17) {
            seen[item]++;
        }
    }

    /* Uniform over the 6 allowed ids: about 167 each. */
    for (int item = 1; item <= 6; item++) {
        CHECK(seen[item] > 100);
        CHECK(seen[item] < 240);
    }
    CHECK(rng.counter >= COUNT);
    mr_rec_data_free(data);
}

static void negatives_deterministic(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load(tiny_path, &data, &err), MR_OK);
    if (data == NULL) {
        return;
    }

    mr_rng rng;
    mr_rng_init(&rng, 7);
    mr_rng copy = rng;
    int32_t first[50], second[50], third[50];
    mr_rec_sample_negatives(data, 0, 50, &rng, first);
    mr_rec_sample_negatives(data, 0, 50, &copy, second);
    for (int i = 0; i < 50; i++) {
        CHECK_INT_EQ(first[i], second[i]);
        CHECK(!mr_rec_data_contains(data, 0, first[i]));
    }
    CHECK(rng.counter == copy.counter);

    /* The stream moved on, so the next draws differ somewhere. */
    mr_rec_sample_negatives(data, 0, 50, &rng, third);
    int differing = 0;
    for (int i = 0; i < 50; i++) {
        differing += first[i] != third[i];
    }
    CHECK(differing > 0);
    mr_rec_data_free(data);
}

static void negatives_fall_back_to_padding(void) {
    /* User 1 has every item id 1..3, so no negative exists for it. */
    const char text[] = "1 1 2 3\n2 3 2 1\n";
    char path[64];
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(load_text(text, sizeof text - 1, &data, &err, path, sizeof path), MR_OK);
    if (data == NULL) {
        return;
    }

    int32_t negatives[5] = {-1, -1, -1, -1, -1};
    mr_rng rng;
    mr_rng_init(&rng, 1);
    mr_rec_sample_negatives(data, 0, 5, &rng, negatives);
    for (int i = 0; i < 5; i++) {
        CHECK_INT_EQ(negatives[i], 0);
    }
    /* Each slot drew exactly 100 times before giving up. */
    CHECK_INT_EQ(rng.counter, 500);
    mr_rec_data_free(data);
}

/* ------------------------------------------------------------------------
 * Bad input
 * ------------------------------------------------------------------------ */

typedef struct bad_case {
    const char *name;
    const char *text;
    size_t size;
    const char *expected[3]; /* substrings the message must contain */
} bad_case;

#define TEXT(s) s, sizeof s - 1

static const bad_case bad_cases[] = {
    {"malformed line", TEXT("1 2 3 4\n2 5 6,7 8\n"), {"line 2:", "'6,7'", "spaces or tabs"}},
    {"non-numeric item", TEXT("1 2 3 4\n2 5 x 8\n"), {"line 2:", "invalid item id 'x'", NULL}},
    {"non-numeric user", TEXT("abc 1 2 3\n"), {"line 1:", "invalid user id 'abc'", NULL}},
    {"negative item", TEXT("1 2 3 4\n\n3 5 -6 8\n"), {"line 3:", "'-6' is negative", NULL}},
    {"zero item", TEXT("1 2 0 4\n"), {"line 1:", "'0' is 0", "padding"}},
    {"zero user", TEXT("1 2 3 4\n0 1 2 3\n"), {"line 2:", "user id '0'", NULL}},
    {"item too large", TEXT("1 2 3 2147483647\n"), {"line 1:", "'2147483647' is too large",
                                                    "2147483646"}},
    {"huge item", TEXT("1 2 3 99999999999999999999999\n"), {"line 1:", "too large", NULL}},
    {"repeated user", TEXT("1 2 3 4\n2 5 6 7\n1 8 9 10\n"),
     {"line 3:", "user id 1 was already given on line 1", NULL}},
    {"NUL byte", TEXT("1 2 3\0 4\n"), {"line 1:", "'3?'", NULL}},
    {"empty file", TEXT(""), {"is empty", NULL, NULL}},
    {"blank lines only", TEXT("\n  \n\t\n"), {"3 lines are all blank", NULL, NULL}},
    {"only short users", TEXT("1 2 3\n2 4 4 4 5\n"),
     {"2 users", "fewer than 3 distinct items", "lines 1 to 2"}},
};

static void bad_input_rejected(void) {
    for (size_t c = 0; c < sizeof bad_cases / sizeof bad_cases[0]; c++) {
        const bad_case *bad = &bad_cases[c];
        char path[64];
        mr_error err;
        mr_error_clear(&err);
        mr_rec_data *data = (mr_rec_data *)&err; /* must be reset to NULL */

        mr_status status = load_text(bad->text, bad->size, &data, &err, path, sizeof path);
        if (status != MR_ERR_FORMAT) {
            mr_test_fail(__FILE__, __LINE__, "%s: status '%s', expected 'format error'",
                         bad->name, mr_status_name(status));
        }
        if (data != NULL) {
            mr_test_fail(__FILE__, __LINE__, "%s: data is not NULL", bad->name);
            mr_rec_data_free(data);
        }
        if (strstr(err.message, path) == NULL) {
            mr_test_fail(__FILE__, __LINE__, "%s: message '%s' does not name %s", bad->name,
                         err.message, path);
        }
        for (int e = 0; e < 3 && bad->expected[e] != NULL; e++) {
            if (strstr(err.message, bad->expected[e]) == NULL) {
                mr_test_fail(__FILE__, __LINE__, "%s: message '%s' lacks '%s'", bad->name,
                             err.message, bad->expected[e]);
            }
        }
    }
}

static void missing_file_rejected(void) {
    mr_error err;
    mr_rec_data *data = NULL;
    CHECK_STATUS(mr_rec_data_load("rec/data/no_such_file.txt", &data, &err), MR_ERR_IO);
    CHECK(data == NULL);
    CHECK(strstr(err.message, "no_such_file.txt") != NULL);
}

int main(void) {
    MR_RUN(tiny_preprocessing);
    MR_RUN(tiny_training_examples);
    MR_RUN(tiny_split_targets);
    MR_RUN(tiny_input_padding);
    MR_RUN(tiny_contains);
    MR_RUN(loose_layout_accepted);
    MR_RUN(largest_id_accepted);
    MR_RUN(sparse_ids_warn);
    MR_RUN(beauty_statistics);
    MR_RUN(sports_statistics);
    MR_RUN(negatives_avoid_history);
    MR_RUN(negatives_deterministic);
    MR_RUN(negatives_fall_back_to_padding);
    MR_RUN(bad_input_rejected);
    MR_RUN(missing_file_rejected);
    return mr_test_finish();
}

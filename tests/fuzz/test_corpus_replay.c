/*
 * Replays the fuzz seed corpora through the fuzz targets without
 * libFuzzer, so that every CI build runs them. Files named valid_* must
 * be accepted and files named invalid_* must be rejected. Any other file,
 * such as a saved crash input, only has to pass through its target
 * without a fault.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* Each target defines LLVMFuzzerTestOneInput; renaming lets both link. */
#define LLVMFuzzerTestOneInput fuzz_safetensors_one_input
#include "fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_jsonl_one_input
#include "fuzz_jsonl.c"
#undef LLVMFuzzerTestOneInput

#include "multiround/fileio.h"
#include "test.h"

#define CORPUS "fuzz/corpus/safetensors"
#define JSONL_CORPUS "fuzz/corpus/jsonl"

static int starts_with(const char *text, const char *prefix) {
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

static void corpus_replays_cleanly(void) {
    DIR *dir = opendir(CORPUS);
    if (dir == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot open %s; run from the tests/ folder", CORPUS);
        return;
    }

    int files = 0, valid = 0, invalid = 0;
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CORPUS, entry->d_name);
        void *data = NULL;
        size_t size = 0;
        mr_error err;
        if (mr_file_read_all(path, 1 << 24, &data, &size, &err) != MR_OK) {
            mr_test_fail(__FILE__, __LINE__, "%s", err.message);
            continue;
        }
        files++;
        fuzz_safetensors_one_input(data, size);

        mr_safetensors *file = NULL;
        mr_status status = mr_safetensors_open_memory(data, size, path, &file, &err);
        if (starts_with(entry->d_name, "valid_")) {
            valid++;
            if (status != MR_OK) {
                mr_test_fail(__FILE__, __LINE__, "%s should open: %s", path, err.message);
            }
        } else if (starts_with(entry->d_name, "invalid_")) {
            invalid++;
            if (status == MR_OK) {
                mr_test_fail(__FILE__, __LINE__, "%s should be rejected", path);
            }
        }
        mr_safetensors_close(file);
        free(data);
    }
    closedir(dir);

    /* The corpus contains both kinds, so an empty folder means a broken checkout. */
    CHECK(valid >= 3);
    CHECK(invalid >= 5);
    printf("replayed %d files (%d valid, %d invalid)\n", files, valid, invalid);
}

/* A JSONL seed is valid when it has passages and no bad line, and
 * invalid when at least one line is rejected. */
static void jsonl_corpus_replays_cleanly(void) {
    DIR *dir = opendir(JSONL_CORPUS);
    if (dir == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot open %s; run from the tests/ folder",
                     JSONL_CORPUS);
        return;
    }

    int files = 0, valid = 0, invalid = 0;
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/%s", JSONL_CORPUS, entry->d_name);
        void *data = NULL;
        size_t size = 0;
        mr_error err;
        if (mr_file_read_all(path, 1 << 24, &data, &size, &err) != MR_OK) {
            mr_test_fail(__FILE__, __LINE__, "%s", err.message);
            continue;
        }
        files++;
        fuzz_jsonl_one_input(data, size);

        int passages = 0;
        int rejected = jsonl_read_all(data, size, &passages);
        if (starts_with(entry->d_name, "valid_")) {
            valid++;
            if (rejected != 0 || passages == 0) {
                mr_test_fail(__FILE__, __LINE__, "%s should be accepted: %d passages, %d "
                             "rejected lines", path, passages, rejected);
            }
        } else if (starts_with(entry->d_name, "invalid_")) {
            invalid++;
            if (rejected == 0) {
                mr_test_fail(__FILE__, __LINE__, "%s should have a rejected line", path);
            }
        }
        free(data);
    }
    closedir(dir);

    CHECK(valid >= 3);
    CHECK(invalid >= 5);
    printf("replayed %d JSONL files (%d valid, %d invalid)\n", files, valid, invalid);
}

int main(void) {
    MR_RUN(corpus_replays_cleanly);
    MR_RUN(jsonl_corpus_replays_cleanly);
    return mr_test_finish();
}

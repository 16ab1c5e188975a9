/*
 * Replays the fuzz seed corpora through the fuzz targets without
 * libFuzzer, so that every CI build runs them. Files named valid_* must
 * open and files named invalid_* must be rejected. Any other file, such as
 * a saved crash input, only has to pass through the target without a
 * fault.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* Both targets define LLVMFuzzerTestOneInput, so each is renamed here. */
#define LLVMFuzzerTestOneInput fuzz_safetensors_input
#include "fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_gguf_input
#include "fuzz_gguf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_jsonl_input
#include "fuzz_jsonl.c"
#undef LLVMFuzzerTestOneInput

#include "multiround/fileio.h"
#include "test.h"

/* Opens size bytes as one format and closes the handle again. */
typedef mr_status (*open_fn)(const void *data, size_t size, const char *name, mr_error *err);

static mr_status open_safetensors(const void *data, size_t size, const char *name, mr_error *err) {
    mr_safetensors *file = NULL;
    mr_status status = mr_safetensors_open_memory(data, size, name, &file, err);
    mr_safetensors_close(file);
    return status;
}

static mr_status open_gguf(const void *data, size_t size, const char *name, mr_error *err) {
    mr_gguf *file = NULL;
    mr_status status = mr_gguf_open_memory(data, size, name, &file, err);
    mr_gguf_close(file);
    return status;
}

/* A JSONL seed opens when it holds passages and no rejected line. */
static mr_status open_jsonl(const void *data, size_t size, const char *name, mr_error *err) {
    int passages = 0;
    int rejected = jsonl_read_all(data, size, &passages);
    if (rejected != 0 || passages == 0) {
        return mr_error_set(err, MR_ERR_FORMAT, "%s: %d passages, %d rejected lines", name,
                            passages, rejected);
    }
    return MR_OK;
}

static int starts_with(const char *text, const char *prefix) {
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

/* Runs every file of corpus through target and checks the valid_ and
 * invalid_ prefixes with open_file; expects at least the given counts. */
static void replay(const char *corpus, int (*target)(const uint8_t *, size_t), open_fn open_file,
                   int min_valid, int min_invalid) {
    DIR *dir = opendir(corpus);
    if (dir == NULL) {
        mr_test_fail(__FILE__, __LINE__, "cannot open %s; run from the tests/ folder", corpus);
        return;
    }

    int files = 0, valid = 0, invalid = 0;
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        char path[512];
        snprintf(path, sizeof path, "%s/%s", corpus, entry->d_name);
        void *data = NULL;
        size_t size = 0;
        mr_error err;
        if (mr_file_read_all(path, 1 << 24, &data, &size, &err) != MR_OK) {
            mr_test_fail(__FILE__, __LINE__, "%s", err.message);
            continue;
        }
        files++;
        target(data, size);

        mr_status status = open_file(data, size, path, &err);
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
        free(data);
    }
    closedir(dir);

    /* The corpus contains both kinds, so fewer means a broken checkout. */
    CHECK(valid >= min_valid);
    CHECK(invalid >= min_invalid);
    printf("%s: replayed %d files (%d valid, %d invalid)\n", corpus, files, valid, invalid);
}

static void safetensors_corpus_replays(void) {
    replay("fuzz/corpus/safetensors", fuzz_safetensors_input, open_safetensors, 3, 5);
}

static void gguf_corpus_replays(void) {
    replay("fuzz/corpus/gguf", fuzz_gguf_input, open_gguf, 5, 10);
}

static void jsonl_corpus_replays(void) {
    replay("fuzz/corpus/jsonl", fuzz_jsonl_input, open_jsonl, 3, 5);
}

int main(void) {
    MR_RUN(safetensors_corpus_replays);
    MR_RUN(gguf_corpus_replays);
    MR_RUN(jsonl_corpus_replays);
    return mr_test_finish();
}

/*
 * libFuzzer target for the safetensors reader. Each input is parsed from
 * memory with mr_safetensors_open_memory, which runs the same validation
 * as mr_safetensors_open after mapping a file. When an input is accepted,
 * every tensor is converted to float and int32 and the handle's results
 * are checked for consistency. An inconsistency aborts, so libFuzzer
 * records the input.
 *
 * A mutation of the JSON header almost always breaks the 8-byte length in
 * front of it, which would stop most inputs at the first check. So each
 * input is parsed a second time with the length set to where the JSON
 * value starting at byte 8 ends, which lets mutations reach the checks on
 * dtypes, shapes and offsets.
 *
 * Build and run: tests/fuzz/run.sh safetensors 300
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "multiround/safetensors.h"

/* Aborts with a message when an invariant of an accepted file is broken. */
static void require(int condition, const char *invariant) {
    if (!condition) {
        fprintf(stderr, "fuzz_safetensors: invariant broken: %s\n", invariant);
        abort();
    }
}

/* Converts every tensor and checks the handle against the input bytes. */
static void exercise(const mr_safetensors *file, const uint8_t *data, size_t size) {
    int64_t count = mr_safetensors_tensor_count(file);
    uint64_t covered = 0;
    for (int64_t i = 0; i < count; i++) {
        const mr_safetensors_tensor *t = mr_safetensors_tensor_at(file, i);
        require(t != NULL, "tensor_at returns every index below the count");
        require(mr_safetensors_tensor_find(file, t->name) == t, "find returns the same tensor");

        const uint8_t *bytes = t->data;
        require(bytes >= data && t->offset <= size && t->size <= size - t->offset,
                "tensor bytes lie inside the input");
        require(bytes == data + t->offset, "data points at offset");
        require(t->size == (uint64_t)t->numel * mr_safetensors_dtype_size(t->dtype),
                "size is numel times the element size");
        covered += t->size;

        /* size <= input size, so these buffers stay small. */
        float *floats = malloc((size_t)t->numel * sizeof(float) + 1);
        int32_t *ints = malloc((size_t)t->numel * sizeof(int32_t) + 1);
        require(floats != NULL && ints != NULL, "allocation of at most 4x the input");
        mr_error err;
        mr_status status = mr_safetensors_read_f32(file, t->name, floats, t->numel, &err);
        require(status == MR_OK || status == MR_ERR_UNSUPPORTED, "float read status");
        status = mr_safetensors_read_i32(file, t->name, ints, t->numel, &err);
        require(status == MR_OK || status == MR_ERR_UNSUPPORTED, "int32 read status");
        status = mr_safetensors_read_f32(file, t->name, floats, t->numel + 1, &err);
        require(status == MR_ERR_SHAPE || status == MR_ERR_NOT_FOUND,
                "a wrong count is rejected");
        free(floats);
        free(ints);
    }
    require(covered <= size, "tensors do not overlap");

    for (int64_t i = 0; i < mr_safetensors_metadata_count(file); i++) {
        const char *key = NULL, *value = NULL;
        require(mr_safetensors_metadata_at(file, i, &key, &value) == MR_OK, "metadata_at");
        const char *found = mr_safetensors_metadata_get(file, key);
        require(found != NULL && strcmp(found, value) == 0, "metadata_get matches metadata_at");
    }
}

/* Opens data as a safetensors file and checks what the reader returns. */
static void open_and_check(const uint8_t *data, size_t size) {
    mr_safetensors *file = NULL;
    mr_error err;
    mr_error_clear(&err);
    mr_status status = mr_safetensors_open_memory(data, size, "fuzz input", &file, &err);
    if (status != MR_OK) {
        require(file == NULL, "a rejected input leaves no handle");
        require(err.status == status && err.message[0] != '\0',
                "a rejected input gets a message");
        require(strstr(err.message, "fuzz input") != NULL || status == MR_ERR_NO_MEMORY,
                "the message names the input");
        return;
    }
    exercise(file, data, size);
    mr_safetensors_close(file);
}

/* Rewrites the header length to the end of the JSON value at byte 8 and
 * opens the result. Inputs with no JSON value at byte 8 are skipped. */
static void open_with_fixed_length(const uint8_t *data, size_t size) {
    if (size <= 8) {
        return;
    }
    uint8_t *copy = malloc(size);
    require(copy != NULL, "allocation of one input");
    memcpy(copy, data, size);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)copy + 8, size - 8, &end, false);
    if (root != NULL) {
        uint64_t length = (uint64_t)(end - (const char *)copy - 8);
        for (int i = 0; i < 8; i++) {
            copy[i] = (uint8_t)(length >> (8 * i));
        }
        cJSON_Delete(root);
        open_and_check(copy, size);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    open_and_check(data, size);
    open_with_fixed_length(data, size);
    return 0;
}

/*
 * libFuzzer target for the GGUF reader. Each input is parsed from memory
 * with mr_gguf_open_memory, which runs the same validation as mr_gguf_open
 * after mapping a file. When an input is accepted, every key is read with
 * the getter for its type, every tensor is decoded and dotted with a
 * vector, and the pairs are copied into a writer (kept in memory). Every
 * pointer the reader returns must lie inside the input. A broken
 * invariant aborts, so libFuzzer records the input.
 *
 * Build and run: tests/fuzz/run.sh gguf 300
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multiround/gguf.h"
#include "multiround/quant.h"

/* Aborts with a message when an invariant of an accepted file is broken. */
static void gguf_require(int condition, const char *invariant) {
    if (!condition) {
        fprintf(stderr, "fuzz_gguf: invariant broken: %s\n", invariant);
        abort();
    }
}

/* Returns whether [p, p + n) lies inside the input. */
static int gguf_inside(const void *p, size_t n, const uint8_t *data, size_t size) {
    const uint8_t *start = p;
    return start >= data && start <= data + size && n <= (size_t)(data + size - start);
}

/* Reads every pair with the getter for its type. */
static void gguf_exercise_kvs(const mr_gguf *gguf, const uint8_t *data, size_t size) {
    mr_error err;
    for (int64_t i = 0; i < mr_gguf_kv_count(gguf); i++) {
        const char *key = mr_gguf_kv_key(gguf, i);
        gguf_require(key != NULL && key[0] != '\0', "every pair has a key");
        gguf_require(mr_gguf_find_key(gguf, key) == i, "find_key returns the pair's index");

        mr_gguf_type type = mr_gguf_kv_type(gguf, i);
        uint32_t u32 = 0;
        int64_t i64 = 0;
        float f32 = 0.0f;
        bool flag = false;
        mr_status status = mr_gguf_get_u32(gguf, key, &u32, &err);
        gguf_require(status == MR_OK || status == MR_ERR_FORMAT, "get_u32 status");
        status = mr_gguf_get_i64(gguf, key, &i64, &err);
        gguf_require(status == MR_OK || status == MR_ERR_FORMAT, "get_i64 status");
        status = mr_gguf_get_f32(gguf, key, &f32, &err);
        gguf_require((status == MR_OK) == (type == MR_GGUF_F32), "get_f32 accepts f32 only");
        status = mr_gguf_get_bool(gguf, key, &flag, &err);
        gguf_require((status == MR_OK) == (type == MR_GGUF_BOOL), "get_bool accepts bool only");

        const char *text = NULL;
        size_t len = 0;
        status = mr_gguf_get_string(gguf, key, &text, &len, &err);
        gguf_require((status == MR_OK) == (type == MR_GGUF_STRING), "get_string accepts strings only");
        if (status == MR_OK) {
            gguf_require(gguf_inside(text, len, data, size), "string bytes lie inside the input");
        }

        mr_gguf_type elem_type;
        int64_t count = 0;
        const void *elements = NULL;
        status = mr_gguf_get_array(gguf, key, &elem_type, &count, &elements, &err);
        gguf_require((status == MR_OK) == (type == MR_GGUF_ARRAY), "get_array accepts arrays only");
        if (status != MR_OK) {
            continue;
        }
        gguf_require(count >= 0 && (uint64_t)count <= size, "array count is bounded by the input");
        if (elem_type == MR_GGUF_STRING) {
            gguf_require(elements == NULL, "string arrays have no element pointer");
            for (int64_t j = 0; j < count; j++) {
                status = mr_gguf_array_string(gguf, key, j, &text, &len, &err);
                gguf_require(status == MR_OK, "every string of a string array reads");
                gguf_require(gguf_inside(text, len, data, size), "array strings lie inside the input");
            }
            status = mr_gguf_array_string(gguf, key, count, &text, &len, &err);
            gguf_require(status == MR_ERR_INVALID_ARGUMENT, "index count is out of range");
        } else {
            gguf_require(elements != NULL, "numeric arrays have an element pointer");
            gguf_require(elem_type != MR_GGUF_ARRAY, "arrays of arrays are rejected");
        }
    }
}

/* Decodes every tensor and checks its placement in the input. */
static void gguf_exercise_tensors(const mr_gguf *gguf, const uint8_t *data, size_t size) {
    uint32_t alignment = mr_gguf_alignment(gguf);
    gguf_require(alignment != 0 && (alignment & (alignment - 1)) == 0, "alignment is a power of two");
    for (int64_t i = 0; i < mr_gguf_tensor_count(gguf); i++) {
        const mr_gguf_tensor *t = mr_gguf_tensor_at(gguf, i);
        gguf_require(t != NULL, "tensor_at returns every index below the count");
        gguf_require(mr_gguf_find_tensor(gguf, t->name) == t, "find returns the same tensor");
        gguf_require(t->n_dims >= 1 && t->n_dims <= 4, "1 to 4 dimensions");
        gguf_require(mr_qtype_known((int)t->type), "the storage type is known");
        gguf_require(t->offset % alignment == 0, "the offset is aligned");
        gguf_require(gguf_inside(t->data, t->size, data, size), "tensor bytes lie inside the input");
        gguf_require((const uint8_t *)t->data ==
                         data + mr_gguf_data_offset(gguf) + t->offset,
                     "data points at the data section plus the offset");

        int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        size_t row_bytes = mr_qtype_row_bytes(t->type, t->ne[0]);
        gguf_require(t->ne[0] % mr_qtype_block_size(t->type) == 0, "ne[0] fills whole blocks");
        gguf_require((uint64_t)row_bytes * (uint64_t)rows == t->size, "size is row bytes times rows");
        if (t->size == 0) {
            continue;
        }

        /* size <= input size and every type takes at least 18 bytes per 32
         * elements, so these buffers stay small. */
        float *row = malloc((size_t)t->ne[0] * sizeof(float));
        float *ones = malloc((size_t)t->ne[0] * sizeof(float));
        gguf_require(row != NULL && ones != NULL, "allocation of one row");
        for (int64_t k = 0; k < t->ne[0]; k++) {
            ones[k] = 1.0f;
        }
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *stored = (const uint8_t *)t->data + (size_t)r * row_bytes;
            mr_dequantize_row(t->type, stored, row, t->ne[0]);
            (void)mr_qdot(t->type, stored, ones, t->ne[0]);
        }
        free(row);
        free(ones);
    }
}

/* Opens data as a GGUF file and checks what the reader returns. */
static void gguf_open_and_check(const uint8_t *data, size_t size) {
    mr_gguf *gguf = NULL;
    mr_error err;
    mr_error_clear(&err);
    mr_status status = mr_gguf_open_memory(data, size, "fuzz input", &gguf, &err);
    if (status != MR_OK) {
        gguf_require(gguf == NULL, "a rejected input leaves no handle");
        gguf_require(err.status == status && err.message[0] != '\0',
                     "a rejected input gets a message");
        gguf_require(strstr(err.message, "fuzz input") != NULL || status == MR_ERR_NO_MEMORY,
                     "the message names the input");
        return;
    }

    uint32_t version = mr_gguf_version(gguf);
    gguf_require(version == 2 || version == 3, "version is 2 or 3");
    gguf_require(mr_gguf_tensor_count(gguf) == 0 || mr_gguf_data_offset(gguf) <= size,
                 "the data section starts inside the input");
    gguf_exercise_kvs(gguf, data, size);
    gguf_exercise_tensors(gguf, data, size);

    mr_gguf_writer *writer = mr_gguf_writer_create();
    gguf_require(writer != NULL, "writer allocation");
    status = mr_gguf_writer_copy_kv(writer, gguf, &err);
    gguf_require(status == MR_OK, "every accepted pair copies into a writer");
    mr_gguf_writer_free(writer);
    mr_gguf_close(gguf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_open_and_check(data, size);
    return 0;
}

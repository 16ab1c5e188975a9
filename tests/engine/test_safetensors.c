/*
 * Safetensors reading and writing: round trips, F16/BF16 rounding against
 * PyTorch (fixtures/safetensors.json from torch_safetensors.py), a file
 * written by an independent Python writer and the exact header layout.
 * Corrupt files must each fail with a message naming the file and the
 * fault.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "multiround/fileio.h"
#include "multiround/safetensors.h"
#include "test.h"

static char folder[256];

/* Returns folder/name in a static buffer (one path at a time). */
static const char *temp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    return path;
}

static void make_temp_folder(void) {
    const char *base = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_safetensors_XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(folder) == NULL) {
        fprintf(stderr, "mkdtemp(%s) failed: %s\n", folder, strerror(errno));
        exit(EXIT_FAILURE);
    }
}

static void remove_temp_folder(void) {
    DIR *dir = opendir(folder);
    if (dir == NULL) {
        return;
    }
    char path[600];
    for (struct dirent *entry = readdir(dir); entry != NULL; entry = readdir(dir)) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", folder, entry->d_name);
            unlink(path);
        }
    }
    closedir(dir);
    rmdir(folder);
}

/* Compares float bit patterns, so that -0, NaN payloads and infinities count. */
static int count_bit_mismatches(const float *actual, const float *expected, int64_t n) {
    int mismatches = 0;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&actual[i], &expected[i], sizeof(float)) != 0) {
            if (mismatches < 5) {
                mr_test_fail(__FILE__, __LINE__, "element %lld is %.9g, expected %.9g",
                             (long long)i, actual[i], expected[i]);
            }
            mismatches++;
        }
    }
    return mismatches;
}

/* Reads the stored 16-bit patterns of tensor t. */
static void stored_bits16(const mr_safetensors_tensor *t, uint16_t *bits) {
    memcpy(bits, t->data, (size_t)t->size);
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

static void f32_round_trip_is_exact(void) {
    float values[12] = {0.0f, -0.0f, 1.0f, -1.5f, 3.14159265f, 1e-45f,
                        -3.4028235e38f, INFINITY, -INFINITY, NAN, 1e-20f, 65504.0f};
    int64_t shape2[2] = {3, 4};
    int64_t shape3[3] = {2, 1, 6};
    const char *path = temp_path("f32.safetensors");
    mr_error err;

    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "matrix", 2, shape2, values,
                                               MR_SAFETENSORS_F32, &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "cube", 3, shape3, values,
                                               MR_SAFETENSORS_F32, &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, &err), MR_OK);
    mr_safetensors_writer_free(writer);

    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    if (file == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_safetensors_tensor_count(file), 2);
    const mr_safetensors_tensor *matrix = mr_safetensors_tensor_find(file, "matrix");
    CHECK(matrix != NULL);
    CHECK_INT_EQ(matrix->dtype, MR_SAFETENSORS_F32);
    CHECK_INT_EQ(matrix->ndim, 2);
    CHECK_INT_EQ(matrix->shape[0], 3);
    CHECK_INT_EQ(matrix->shape[1], 4);
    CHECK_INT_EQ(matrix->numel, 12);
    CHECK_INT_EQ(matrix->size, 48);

    float back[12];
    CHECK_STATUS(mr_safetensors_read_f32(file, "matrix", back, 12, &err), MR_OK);
    CHECK_INT_EQ(count_bit_mismatches(back, values, 12), 0);
    memset(back, 0, sizeof back);
    CHECK_STATUS(mr_safetensors_read_f32(file, "cube", back, 12, &err), MR_OK);
    CHECK_INT_EQ(count_bit_mismatches(back, values, 12), 0);
    mr_safetensors_close(file);
}

/* Writes fixture input as dtype, checks the stored bits and the values
 * read back against PyTorch's. */
static void check_rounding(mr_fixture *fixture, mr_ctx *ctx, const char *case_name,
                           mr_safetensors_dtype dtype, const char *bits_name,
                           const char *values_name) {
    mr_tensor *input = mr_fixture_tensor(fixture, ctx, case_name, "input");
    mr_tensor *bits = mr_fixture_tensor_i32(fixture, ctx, case_name, bits_name);
    if (input == NULL || bits == NULL) {
        return;
    }
    int64_t n = mr_tensor_numel(input);
    const char *path = temp_path("rounding.safetensors");
    mr_error err;

    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "x", 1, &n, input->data, dtype, &err),
                 MR_OK);
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, &err), MR_OK);
    mr_safetensors_writer_free(writer);

    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    if (file == NULL) {
        return;
    }
    const mr_safetensors_tensor *t = mr_safetensors_tensor_find(file, "x");
    CHECK_INT_EQ(t->dtype, dtype);
    CHECK_INT_EQ(t->size, 2 * n);

    uint16_t *stored = malloc((size_t)n * sizeof *stored);
    stored_bits16(t, stored);
    int mismatches = 0;
    for (int64_t i = 0; i < n; i++) {
        if (stored[i] != (uint16_t)bits->idata[i]) {
            if (mismatches++ < 5) {
                mr_test_fail(__FILE__, __LINE__,
                             "%s %s: input[%lld] = %.9g stored as 0x%04x, torch gives 0x%04x",
                             case_name, mr_safetensors_dtype_name(dtype), (long long)i,
                             input->data[i], stored[i], (unsigned)bits->idata[i]);
            }
        }
    }
    CHECK_INT_EQ(mismatches, 0);
    free(stored);

    if (values_name != NULL) {
        mr_tensor *expected = mr_fixture_tensor(fixture, ctx, case_name, values_name);
        float *back = malloc((size_t)n * sizeof *back);
        CHECK_STATUS(mr_safetensors_read_f32(file, "x", back, n, &err), MR_OK);
        /* Widening F16 or BF16 to float is exact, so no tolerance. */
        CHECK_INT_EQ(count_bit_mismatches(back, expected->data, n), 0);
        free(back);
    }
    mr_safetensors_close(file);
}

static void f16_bf16_rounding_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/safetensors.json");
    mr_ctx *ctx = mr_ctx_create(0);
    check_rounding(fixture, ctx, "rounding", MR_SAFETENSORS_F16, "f16_bits", "f16_values");
    check_rounding(fixture, ctx, "rounding", MR_SAFETENSORS_BF16, "bf16_bits", "bf16_values");
    check_rounding(fixture, ctx, "overflow", MR_SAFETENSORS_F16, "f16_bits", NULL);
    check_rounding(fixture, ctx, "overflow", MR_SAFETENSORS_BF16, "bf16_bits", NULL);
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

static void nan_and_infinity_survive_16_bits(void) {
    float values[4] = {NAN, -NAN, INFINITY, -INFINITY};
    int64_t n = 4;
    const char *path = temp_path("special.safetensors");
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "h", 1, &n, values, MR_SAFETENSORS_F16,
                                               NULL), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "b", 1, &n, values, MR_SAFETENSORS_BF16,
                                               NULL), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, NULL), MR_OK);
    mr_safetensors_writer_free(writer);

    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, NULL), MR_OK);
    const char *names[2] = {"h", "b"};
    for (int k = 0; k < 2 && file != NULL; k++) {
        float back[4];
        CHECK_STATUS(mr_safetensors_read_f32(file, names[k], back, 4, NULL), MR_OK);
        CHECK(isnan(back[0]));
        CHECK(isnan(back[1]));
        CHECK(isinf(back[2]));
        CHECK(back[2] > 0);
        CHECK(isinf(back[3]));
        CHECK(back[3] < 0);
    }
    mr_safetensors_close(file);
}

static void metadata_round_trip(void) {
    const char *path = temp_path("metadata.safetensors");
    mr_error err;
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    CHECK_STATUS(mr_safetensors_writer_add_metadata(writer, "format", "pt", &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_metadata(writer, "quote\"and\\slash",
                                                    "line\nbreak\ttab\x01", &err), MR_OK);
    const char *unicode = "\xc3\xa9t\xc3\xa9 \xe2\x82\xac"; /* "été €" */
    CHECK_STATUS(mr_safetensors_writer_add_metadata(writer, "unicode", unicode, &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_metadata(writer, "empty", "", &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, &err), MR_OK);
    mr_safetensors_writer_free(writer);

    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    if (file == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_safetensors_tensor_count(file), 0);
    CHECK_INT_EQ(mr_safetensors_metadata_count(file), 4);
    CHECK(strcmp(mr_safetensors_metadata_get(file, "format"), "pt") == 0);
    CHECK(strcmp(mr_safetensors_metadata_get(file, "quote\"and\\slash"),
                 "line\nbreak\ttab\x01") == 0);
    CHECK(strcmp(mr_safetensors_metadata_get(file, "unicode"), unicode) == 0);
    CHECK(strcmp(mr_safetensors_metadata_get(file, "empty"), "") == 0);
    CHECK(mr_safetensors_metadata_get(file, "missing") == NULL);

    /* Entries come back in the order they were written. */
    const char *key = NULL, *value = NULL;
    CHECK_STATUS(mr_safetensors_metadata_at(file, 2, &key, &value), MR_OK);
    CHECK(key != NULL && strcmp(key, "unicode") == 0);
    CHECK_STATUS(mr_safetensors_metadata_at(file, 4, &key, &value), MR_ERR_INVALID_ARGUMENT);
    CHECK(key == NULL);
    CHECK(value == NULL);
    mr_safetensors_close(file);
}

static void scalar_and_empty_tensors(void) {
    const char *path = temp_path("shapes.safetensors");
    float scalar = 7.25f;
    int64_t empty_shape[3] = {3, 0, 2};
    int64_t zero_shape[1] = {0};
    mr_error err;

    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "scalar", 0, NULL, &scalar,
                                               MR_SAFETENSORS_F32, &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "empty", 3, empty_shape, NULL,
                                               MR_SAFETENSORS_BF16, &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_i32(writer, "none", 1, zero_shape, NULL, &err),
                 MR_OK);
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, &err), MR_OK);
    mr_safetensors_writer_free(writer);

    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    if (file == NULL) {
        return;
    }
    const mr_safetensors_tensor *s = mr_safetensors_tensor_find(file, "scalar");
    CHECK_INT_EQ(s->ndim, 0);
    CHECK_INT_EQ(s->numel, 1);
    CHECK_INT_EQ(s->size, 4);
    float back = 0;
    CHECK_STATUS(mr_safetensors_read_f32(file, "scalar", &back, 1, &err), MR_OK);
    CHECK_NEAR(back, 7.25, 0);

    const mr_safetensors_tensor *e = mr_safetensors_tensor_find(file, "empty");
    CHECK_INT_EQ(e->ndim, 3);
    CHECK_INT_EQ(e->shape[1], 0);
    CHECK_INT_EQ(e->numel, 0);
    CHECK_INT_EQ(e->size, 0);
    CHECK_STATUS(mr_safetensors_read_f32(file, "empty", NULL, 0, &err), MR_OK);
    CHECK_STATUS(mr_safetensors_read_i32(file, "none", NULL, 0, &err), MR_OK);
    mr_safetensors_close(file);
}

static void header_layout_is_byte_exact(void) {
    const char *path = temp_path("layout.safetensors");
    float values[2] = {1.0f, 2.0f};
    int64_t n = 2;
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "x", 1, &n, values, MR_SAFETENSORS_F32,
                                               NULL), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_metadata(writer, "a", "b", NULL), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, NULL), MR_OK);
    mr_safetensors_writer_free(writer);

    /* 79 bytes of JSON plus one space of padding make the 80-byte header. */
    static const char json[] =
        "{\"__metadata__\":{\"a\":\"b\"},"
        "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} ";
    unsigned char expected[8 + 80 + 8] = {80, 0, 0, 0, 0, 0, 0, 0};
    CHECK_INT_EQ(strlen(json), 80);
    memcpy(expected + 8, json, 80);
    const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40};
    memcpy(expected + 88, data, 8);

    void *bytes = NULL;
    size_t size = 0;
    CHECK_STATUS(mr_file_read_all(path, 1 << 20, &bytes, &size, NULL), MR_OK);
    CHECK_INT_EQ(size, sizeof expected);
    if (bytes != NULL && size == sizeof expected) {
        for (size_t i = 0; i < size; i++) {
            if (((unsigned char *)bytes)[i] != expected[i]) {
                mr_test_fail(__FILE__, __LINE__, "byte %zu is 0x%02x, expected 0x%02x", i,
                             ((unsigned char *)bytes)[i], expected[i]);
                break;
            }
        }
    }
    free(bytes);
}

static void insertion_order_is_kept(void) {
    const char *path = temp_path("order.safetensors");
    const char *names[4] = {"zeta", "alpha", "mid", "beta"};
    float value = 1.0f;
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    for (int i = 0; i < 4; i++) {
        CHECK_STATUS(mr_safetensors_writer_add_f32(writer, names[i], 0, NULL, &value,
                                                   i % 2 ? MR_SAFETENSORS_F16 : MR_SAFETENSORS_F32,
                                                   NULL), MR_OK);
    }
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, NULL), MR_OK);

    /* Writing again gives the same bytes. */
    void *first = NULL, *second = NULL;
    size_t first_size = 0, second_size = 0;
    CHECK_STATUS(mr_file_read_all(path, 1 << 20, &first, &first_size, NULL), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, NULL), MR_OK);
    CHECK_STATUS(mr_file_read_all(path, 1 << 20, &second, &second_size, NULL), MR_OK);
    CHECK_INT_EQ(first_size, second_size);
    CHECK(first_size == second_size && memcmp(first, second, first_size) == 0);
    free(first);
    free(second);
    mr_safetensors_writer_free(writer);

    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, NULL), MR_OK);
    for (int i = 0; i < 4 && file != NULL; i++) {
        const mr_safetensors_tensor *t = mr_safetensors_tensor_at(file, i);
        CHECK(strcmp(t->name, names[i]) == 0);
    }
    CHECK(file == NULL || mr_safetensors_tensor_at(file, 4) == NULL);
    CHECK(file == NULL || mr_safetensors_tensor_at(file, -1) == NULL);
    /* zeta (4 bytes) then alpha (F16) puts alpha at buffer offset 4 and mid at 6. */
    CHECK(file == NULL || mr_safetensors_tensor_find(file, "mid")->offset -
                                  mr_safetensors_tensor_find(file, "zeta")->offset ==
                              6);
    mr_safetensors_close(file);
}

static void writer_rejects_bad_input(void) {
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    float values[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    int64_t negative[2] = {2, -2};
    int64_t huge[3] = {INT64_MAX / 2, 4, 4};
    mr_error err;

    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "w", 1, shape, values, MR_SAFETENSORS_F32,
                                               &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "w", 1, shape, values, MR_SAFETENSORS_F16,
                                               &err), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "'w'") != NULL);
    CHECK(strstr(err.message, "already") != NULL);
    CHECK_STATUS(mr_safetensors_writer_add_i32(writer, "w", 0, NULL, (const int32_t *)values,
                                               &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "__metadata__", 1, shape, values,
                                               MR_SAFETENSORS_F32, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "bad\xff", 1, shape, values,
                                               MR_SAFETENSORS_F32, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "UTF-8") != NULL);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "i64", 1, shape, values,
                                               MR_SAFETENSORS_I64, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "I64") != NULL);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "neg", 2, negative, values,
                                               MR_SAFETENSORS_F32, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "-2") != NULL);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "huge", 3, huge, values,
                                               MR_SAFETENSORS_F32, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "nodata", 1, shape, NULL,
                                               MR_SAFETENSORS_F32, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "noshape", 2, NULL, values,
                                               MR_SAFETENSORS_F32, &err),
                 MR_ERR_INVALID_ARGUMENT);

    CHECK_STATUS(mr_safetensors_writer_add_metadata(writer, "k", "v", &err), MR_OK);
    CHECK_STATUS(mr_safetensors_writer_add_metadata(writer, "k", "other", &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "'k'") != NULL);

    /* A rejected call leaves the writer usable: the names stay free. */
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "nodata", 1, shape, values,
                                               MR_SAFETENSORS_F32, &err), MR_OK);
    const char *path = temp_path("rejects.safetensors");
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, &err), MR_OK);
    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    CHECK(file != NULL && mr_safetensors_tensor_count(file) == 2);
    mr_safetensors_close(file);
    mr_safetensors_writer_free(writer);
    mr_safetensors_writer_free(NULL);
}

static void many_tensors_keep_unique_names(void) {
    /* Enough names to grow the writer's name index several times. */
    enum { COUNT = 3000 };
    mr_safetensors_writer *writer = mr_safetensors_writer_create();
    char name[32];
    for (int i = 0; i < COUNT; i++) {
        float value = (float)i;
        snprintf(name, sizeof name, "layer.%d.weight", i);
        CHECK_STATUS(mr_safetensors_writer_add_f32(writer, name, 0, NULL, &value,
                                                   MR_SAFETENSORS_F32, NULL), MR_OK);
    }
    float value = 0;
    CHECK_STATUS(mr_safetensors_writer_add_f32(writer, "layer.1234.weight", 0, NULL, &value,
                                               MR_SAFETENSORS_F32, NULL),
                 MR_ERR_INVALID_ARGUMENT);
    const char *path = temp_path("many.safetensors");
    CHECK_STATUS(mr_safetensors_writer_write(writer, path, NULL), MR_OK);
    mr_safetensors_writer_free(writer);

    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, NULL), MR_OK);
    if (file == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_safetensors_tensor_count(file), COUNT);
    int wrong = 0;
    for (int i = 0; i < COUNT; i++) {
        snprintf(name, sizeof name, "layer.%d.weight", i);
        float back = -1;
        if (mr_safetensors_read_f32(file, name, &back, 1, NULL) != MR_OK || back != (float)i) {
            wrong++;
        }
    }
    CHECK_INT_EQ(wrong, 0);
    mr_safetensors_close(file);
}

/* ------------------------------------------------------------------------
 * A file from an independent writer
 * ------------------------------------------------------------------------ */

static void handmade_file_reads(void) {
    const char *path = "fixtures/safetensors_handmade.safetensors";
    mr_fixture *fixture = mr_fixture_load("fixtures/safetensors.json");
    mr_ctx *ctx = mr_ctx_create(0);
    mr_error err;
    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    if (file == NULL || fixture == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s", err.message);
        mr_fixture_free(fixture);
        mr_ctx_free(ctx);
        return;
    }

    CHECK_INT_EQ(mr_safetensors_tensor_count(file), 7);
    CHECK(strcmp(mr_safetensors_metadata_get(file, "format"), "pt") == 0);
    CHECK(strcmp(mr_safetensors_metadata_get(file, "source"), "torch_safetensors.py") == 0);

    /* Data order, not header order: flags (3 bytes) comes first. */
    CHECK(strcmp(mr_safetensors_tensor_at(file, 0)->name, "flags") == 0);
    const mr_safetensors_tensor *weight = mr_safetensors_tensor_find(file, "weight");
    CHECK_INT_EQ(weight->dtype, MR_SAFETENSORS_F32);
    CHECK_INT_EQ(weight->offset % 2, 1); /* odd: reads must not assume alignment */

    const char *float_names[4] = {"weight", "half", "brain", "scalar"};
    const mr_safetensors_dtype float_dtypes[4] = {MR_SAFETENSORS_F32, MR_SAFETENSORS_F16,
                                                  MR_SAFETENSORS_BF16, MR_SAFETENSORS_F32};
    for (int k = 0; k < 4; k++) {
        mr_tensor *expected = mr_fixture_tensor(fixture, ctx, "handmade", float_names[k]);
        const mr_safetensors_tensor *t = mr_safetensors_tensor_find(file, float_names[k]);
        if (expected == NULL || t == NULL) {
            CHECK(t != NULL);
            continue;
        }
        CHECK_INT_EQ(t->dtype, float_dtypes[k]);
        CHECK_INT_EQ(t->ndim, expected->ndim);
        for (int d = 0; d < t->ndim; d++) {
            CHECK_INT_EQ(t->shape[d], expected->shape[d]);
        }
        float back[8];
        CHECK_STATUS(mr_safetensors_read_f32(file, float_names[k], back, t->numel, &err), MR_OK);
        CHECK_INT_EQ(count_bit_mismatches(back, expected->data, t->numel), 0);
    }

    const char *int_names[2] = {"ids", "flags"};
    for (int k = 0; k < 2; k++) {
        mr_tensor *expected = mr_fixture_tensor_i32(fixture, ctx, "handmade", int_names[k]);
        int32_t back[3] = {0, 0, 0};
        CHECK_STATUS(mr_safetensors_read_i32(file, int_names[k], back, 3, &err), MR_OK);
        for (int i = 0; i < 3 && expected != NULL; i++) {
            CHECK_INT_EQ(back[i], expected->idata[i]);
        }
    }

    const mr_safetensors_tensor *empty = mr_safetensors_tensor_find(file, "empty");
    CHECK_INT_EQ(empty->ndim, 2);
    CHECK_INT_EQ(empty->shape[0], 0);
    CHECK_INT_EQ(empty->shape[1], 3);
    CHECK_INT_EQ(empty->numel, 0);

    /* Wrong requests fail with their own status and name the tensor. */
    float back[8];
    int32_t ints[8];
    CHECK_STATUS(mr_safetensors_read_f32(file, "ids", back, 3, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "'ids'") != NULL);
    CHECK(strstr(err.message, "I64") != NULL);
    CHECK_STATUS(mr_safetensors_read_i32(file, "weight", ints, 6, &err), MR_ERR_UNSUPPORTED);
    CHECK_STATUS(mr_safetensors_read_f32(file, "weight", back, 5, &err), MR_ERR_SHAPE);
    CHECK(strstr(err.message, "[2, 3]") != NULL);
    CHECK_STATUS(mr_safetensors_read_f32(file, "missing", back, 1, &err), MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "'missing'") != NULL);
    CHECK(strstr(err.message, path) != NULL);
    CHECK(mr_safetensors_tensor_find(file, "missing") == NULL);

    mr_safetensors_close(file);
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

/* ------------------------------------------------------------------------
 * Corrupt files
 * ------------------------------------------------------------------------ */

/* Writes a file with header length field length_field, header text json
 * and data_size zero bytes of data, and returns its path. */
static const char *write_raw(const char *name, uint64_t length_field, const char *json,
                             size_t data_size) {
    size_t json_size = strlen(json);
    size_t size = 8 + json_size + data_size;
    unsigned char *bytes = calloc(1, size);
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(length_field >> (8 * i));
    }
    memcpy(bytes + 8, json, json_size);
    const char *path = temp_path(name);
    CHECK_STATUS(mr_file_write_atomic(path, bytes, size, NULL), MR_OK);
    free(bytes);
    return path;
}

/* Opens path and checks the status and that the message names the file
 * and contains the given phrase. */
static void check_rejected(const char *path, mr_status status, const char *phrase, int line) {
    mr_safetensors *file = (mr_safetensors *)1;
    mr_error err;
    mr_error_clear(&err);
    mr_status actual = mr_safetensors_open(path, &file, &err);
    if (actual != status) {
        mr_test_fail(__FILE__, line, "opening %s returned '%s', expected '%s' (message: %s)", path,
                     mr_status_name(actual), mr_status_name(status), err.message);
    }
    if (file != NULL) {
        mr_test_fail(__FILE__, line, "a rejected open left a handle");
        mr_safetensors_close(file);
    }
    if (strstr(err.message, path) == NULL || strstr(err.message, phrase) == NULL) {
        mr_test_fail(__FILE__, line, "message lacks the path or \"%s\": %s", phrase,
                     err.message);
    }
}

/* A corrupt header: its JSON, the data size and the phrase expected. */
typedef struct corrupt_case {
    const char *name;
    const char *json;
    size_t data_size;
    mr_status status;
    const char *phrase;
} corrupt_case;

static void corrupt_headers_are_rejected(void) {
    static const corrupt_case cases[] = {
        {"invalid_json", "{\"a\": {\"dtype\": ", 0, MR_ERR_FORMAT, "not valid JSON"},
        {"not_object", "[1, 2]  ", 0, MR_ERR_FORMAT, "must start with '{'"},
        {"trailing_garbage", "{}  x   ", 0, MR_ERR_FORMAT, "after the JSON header"},
        {"unknown_dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         MR_ERR_FORMAT, "unknown dtype 'F33'"},
        {"newer_dtype", "{\"a\":{\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[0,1]}}",
         1, MR_ERR_UNSUPPORTED, "F8_E8M0"},
        {"size_mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
         MR_ERR_FORMAT, "needs 8 bytes"},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, MR_ERR_FORMAT, "overlaps"},
        {"hole",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, MR_ERR_FORMAT, "bytes 4..8 belong to no tensor"},
        {"trailing_bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         MR_ERR_FORMAT, "4 trailing bytes"},
        {"beyond_end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
         MR_ERR_FORMAT, "outside the 4-byte data buffer"},
        {"reversed_offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}",
         4, MR_ERR_FORMAT, "data_offsets [4, 0]"},
        {"overflow",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],"
         "\"data_offsets\":[0,4]}}",
         4, MR_ERR_FORMAT, "overflows 64 bits"},
        {"duplicate_names",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, MR_ERR_FORMAT, "'a' appears more than once"},
        {"metadata_number", "{\"__metadata__\":{\"epoch\":3}}", 0, MR_ERR_FORMAT,
         "key 'epoch' is not a string"},
        {"metadata_array", "{\"__metadata__\":[\"x\"]}", 0, MR_ERR_FORMAT,
         "must be an object of strings"},
        {"duplicate_metadata_key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
         MR_ERR_FORMAT, "key 'k' appears more than once"},
        {"unknown_field",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
         MR_ERR_FORMAT, "unknown field 'x'"},
        {"missing_field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MR_ERR_FORMAT,
         "lacks field 'data_offsets'"},
        {"negative_dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
         MR_ERR_FORMAT, "shape entry 0"},
        {"fractional_offset",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}", 4, MR_ERR_FORMAT,
         "not two integers"},
        {"entry_not_object", "{\"a\":5}", 0, MR_ERR_FORMAT, "must be an object"},
        {"invalid_utf8", "{\"\xc3\x28\":{}}", 0, MR_ERR_FORMAT, "not valid UTF-8"},
        {"control_char", "{\x01}", 0, MR_ERR_FORMAT, "byte 0x01 at file byte 9"},
        {"dtype_number", "{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         MR_ERR_FORMAT, "dtype that is not a string"},
        {"long_shape",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
         "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2],"
         "\"data_offsets\":[0,4]}}",
         4, MR_ERR_FORMAT, "1, 1, ...] needs 8 bytes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const corrupt_case *c = &cases[i];
        char name[64];
        snprintf(name, sizeof name, "%s.safetensors", c->name);
        const char *path = write_raw(name, strlen(c->json), c->json, c->data_size);
        check_rejected(path, c->status, c->phrase, __LINE__);
    }
}

static void corrupt_lengths_are_rejected(void) {
    const char *json = "{}      ";
    const char *path;

    path = temp_path("empty.safetensors");
    CHECK_STATUS(mr_file_write_atomic(path, NULL, 0, NULL), MR_OK);
    check_rejected(path, MR_ERR_FORMAT, "is empty", __LINE__);

    path = temp_path("short.safetensors");
    CHECK_STATUS(mr_file_write_atomic(path, "\x08\x00\x00\x00\x00", 5, NULL), MR_OK);
    check_rejected(path, MR_ERR_FORMAT, "shorter than the 8-byte header length", __LINE__);

    path = write_raw("long_header.safetensors", 64, json, 0);
    check_rejected(path, MR_ERR_FORMAT, "header length 64 needs 72 bytes", __LINE__);

    path = write_raw("huge_header.safetensors", (uint64_t)1 << 62, json, 0);
    check_rejected(path, MR_ERR_FORMAT, "exceeds the limit of 100000000", __LINE__);

    path = write_raw("zero_header.safetensors", 0, "", 0);
    check_rejected(path, MR_ERR_FORMAT, "must start with '{'", __LINE__);

    /* The smallest valid file: an empty object padded to 8 bytes. */
    path = write_raw("minimal.safetensors", 8, json, 0);
    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, NULL), MR_OK);
    CHECK(file != NULL && mr_safetensors_tensor_count(file) == 0);
    mr_safetensors_close(file);

    check_rejected(temp_path("missing.safetensors"), MR_ERR_IO, strerror(ENOENT), __LINE__);
    check_rejected(folder, MR_ERR_IO, "not a regular file", __LINE__);
}

static void i64_out_of_int32_range(void) {
    const char *json = "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}";
    size_t json_size = strlen(json);
    unsigned char bytes[256] = {0};
    bytes[0] = (unsigned char)json_size;
    memcpy(bytes + 8, json, json_size);
    /* Element 0 is 7 and element 1 is 2^40. */
    bytes[8 + json_size] = 7;
    bytes[8 + json_size + 8 + 5] = 1;

    mr_safetensors *file = NULL;
    mr_error err;
    CHECK_STATUS(mr_safetensors_open_memory(bytes, 8 + json_size + 16, "ids in memory", &file,
                                            &err), MR_OK);
    int32_t back[2];
    CHECK_STATUS(mr_safetensors_read_i32(file, "ids", back, 2, &err), MR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "ids in memory") != NULL);
    CHECK(strstr(err.message, "element 1") != NULL);
    CHECK(strstr(err.message, "1099511627776") != NULL);
    mr_safetensors_close(file);
}

/* ------------------------------------------------------------------------
 * Engine tensors
 * ------------------------------------------------------------------------ */

static void engine_tensors_round_trip(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    mr_tensor *b = mr_tensor_new1d(ctx, MR_F32, 4);
    mr_tensor *s = mr_tensor_scalar(ctx, -0.75f);
    int32_t id_values[5] = {0, -3, 7, 2147483647, -2147483647 - 1};
    int64_t id_shape[1] = {5};
    mr_tensor *ids = mr_tensor_from_i32(ctx, 1, id_shape, id_values);
    mr_test_fill_uniform(w, -2, 2, 11);
    mr_test_fill_uniform(b, -2, 2, 12);
    mr_tensor_set_name(w, "layer.weight");
    mr_tensor_set_name(b, "layer.bias");
    mr_tensor_set_name(s, "temperature");
    mr_tensor_set_name(ids, "ids");
    /* A transposed view is saved in its logical (row-major) order. */
    mr_tensor *wt = mr_tensor_transpose(ctx, w, 0, 1);
    mr_tensor_set_name(wt, "layer.weight_t");

    mr_tensor *saved[5] = {w, b, s, ids, wt};
    const char *metadata[4] = {"format", "multiround", "step", "12"};
    const char *path = temp_path("engine.safetensors");
    mr_error err;
    CHECK_STATUS(mr_safetensors_save_tensors(path, saved, 5, metadata, 2, MR_SAFETENSORS_F32,
                                             &err), MR_OK);

    mr_tensor *w2 = mr_tensor_zeros(ctx, MR_F32, 2, w->shape);
    mr_tensor *b2 = mr_tensor_zeros(ctx, MR_F32, 1, b->shape);
    mr_tensor *s2 = mr_tensor_scalar(ctx, 0);
    mr_tensor *ids2 = mr_tensor_zeros(ctx, MR_I32, 1, id_shape);
    mr_tensor *holder = mr_tensor_zeros(ctx, MR_F32, 2, w->shape);
    mr_tensor *wt2 = mr_tensor_transpose(ctx, holder, 0, 1);
    mr_tensor_set_name(w2, "layer.weight");
    mr_tensor_set_name(b2, "layer.bias");
    mr_tensor_set_name(s2, "temperature");
    mr_tensor_set_name(ids2, "ids");
    mr_tensor_set_name(wt2, "layer.weight_t");
    mr_tensor *loaded[5] = {w2, b2, s2, ids2, wt2};
    CHECK_STATUS(mr_safetensors_load_tensors(path, loaded, 5, &err), MR_OK);

    CHECK_ARRAY_NEAR(w2->data, w->data, 12, 0, 0);
    CHECK_ARRAY_NEAR(b2->data, b->data, 4, 0, 0);
    CHECK_NEAR(s2->data[0], -0.75, 0);
    for (int i = 0; i < 5; i++) {
        CHECK_INT_EQ(ids2->idata[i], id_values[i]);
    }
    /* Loading the transposed data into a transposed view restores w. */
    CHECK_ARRAY_NEAR(holder->data, w->data, 12, 0, 0);

    mr_safetensors *file = NULL;
    CHECK_STATUS(mr_safetensors_open(path, &file, &err), MR_OK);
    CHECK(file != NULL && strcmp(mr_safetensors_metadata_get(file, "step"), "12") == 0);
    CHECK(file != NULL &&
          mr_safetensors_tensor_find(file, "ids")->dtype == MR_SAFETENSORS_I32);
    float stored_t[12];
    CHECK_STATUS(mr_safetensors_read_f32(file, "layer.weight_t", stored_t, 12, &err), MR_OK);
    CHECK_NEAR(stored_t[1], w->data[4], 0); /* wt[0][1] = w[1][0] */
    mr_safetensors_close(file);
    mr_ctx_free(ctx);
}

static void engine_tensors_bf16_precision(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = mr_tensor_new2d(ctx, MR_F32, 8, 16);
    mr_test_fill_uniform(w, -4, 4, 5);
    mr_tensor_set_name(w, "w");
    const char *path = temp_path("bf16.safetensors");
    CHECK_STATUS(mr_safetensors_save_tensors(path, &w, 1, NULL, 0, MR_SAFETENSORS_BF16, NULL),
                 MR_OK);

    mr_tensor *back = mr_tensor_zeros(ctx, MR_F32, 2, w->shape);
    mr_tensor_set_name(back, "w");
    CHECK_STATUS(mr_safetensors_load_tensors(path, &back, 1, NULL), MR_OK);
    /* BF16 keeps 8 significant bits: rounding to nearest errs by at most
     * half a unit in the last place, 2^-8 relative. */
    CHECK_ARRAY_NEAR(back->data, w->data, 128, 0, 1.0 / 256);
    mr_ctx_free(ctx);
}

static void load_reports_mismatches(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *a = mr_tensor_new2d(ctx, MR_F32, 3, 4);
    mr_tensor *b = mr_tensor_new1d(ctx, MR_F32, 2);
    mr_tensor_fill(a, 1.5f);
    mr_tensor_fill(b, 2.5f);
    mr_tensor_set_name(a, "a");
    mr_tensor_set_name(b, "b");
    mr_tensor *saved[2] = {a, b};
    const char *path = temp_path("mismatch.safetensors");
    CHECK_STATUS(mr_safetensors_save_tensors(path, saved, 2, NULL, 0, MR_SAFETENSORS_F32, NULL),
                 MR_OK);

    /* a matches, b has the wrong shape: nothing may change. */
    mr_tensor *a2 = mr_tensor_zeros(ctx, MR_F32, 2, a->shape);
    mr_tensor *b2 = mr_tensor_new2d(ctx, MR_F32, 1, 2);
    mr_tensor_fill(b2, 0);
    mr_tensor_set_name(a2, "a");
    mr_tensor_set_name(b2, "b");
    mr_tensor *loaded[2] = {a2, b2};
    mr_error err;
    CHECK_STATUS(mr_safetensors_load_tensors(path, loaded, 2, &err), MR_ERR_SHAPE);
    CHECK(strstr(err.message, "'b'") != NULL);
    CHECK(strstr(err.message, "[2] in") != NULL);
    CHECK(strstr(err.message, "expects [1, 2]") != NULL);
    CHECK(strstr(err.message, path) != NULL);
    CHECK_NEAR(a2->data[0], 0.0, 0);

    mr_tensor *c = mr_tensor_new1d(ctx, MR_F32, 2);
    mr_tensor_set_name(c, "c");
    CHECK_STATUS(mr_safetensors_load_tensors(path, &c, 1, &err), MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "'c'") != NULL);

    /* A float tensor in the file cannot fill an int32 tensor. */
    mr_tensor *ints = mr_tensor_zeros(ctx, MR_I32, 1, b->shape);
    mr_tensor_set_name(ints, "b");
    CHECK_STATUS(mr_safetensors_load_tensors(path, &ints, 1, &err), MR_ERR_UNSUPPORTED);

    /* Saving needs names. */
    mr_tensor *unnamed = mr_tensor_new1d(ctx, MR_F32, 2);
    mr_tensor_fill(unnamed, 0);
    CHECK_STATUS(mr_safetensors_save_tensors(temp_path("unnamed.safetensors"), &unnamed, 1, NULL,
                                             0, MR_SAFETENSORS_F32, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "no name") != NULL);
    CHECK(access(temp_path("unnamed.safetensors"), F_OK) != 0);
    mr_ctx_free(ctx);
}

int main(void) {
    make_temp_folder();
    MR_RUN(f32_round_trip_is_exact);
    MR_RUN(f16_bf16_rounding_matches_torch);
    MR_RUN(nan_and_infinity_survive_16_bits);
    MR_RUN(metadata_round_trip);
    MR_RUN(scalar_and_empty_tensors);
    MR_RUN(header_layout_is_byte_exact);
    MR_RUN(insertion_order_is_kept);
    MR_RUN(writer_rejects_bad_input);
    MR_RUN(many_tensors_keep_unique_names);
    MR_RUN(handmade_file_reads);
    MR_RUN(corrupt_headers_are_rejected);
    MR_RUN(corrupt_lengths_are_rejected);
    MR_RUN(i64_out_of_int32_range);
    MR_RUN(engine_tensors_round_trip);
    MR_RUN(engine_tensors_bf16_precision);
    MR_RUN(load_reports_mismatches);
    remove_temp_folder();
    return mr_test_finish();
}

/*
 * GGUF reading and writing. The tests check the header values of the real
 * files in data/lm/, a round trip of every value type and storage type
 * through the writer and a rewrite of stories260K.gguf. Corrupt inputs
 * built byte by byte must each fail with a message naming the fault.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/fileio.h"
#include "multiround/gguf.h"
#include "multiround/quant.h"
#include "test.h"

#define STORIES "data/lm/stories260K.gguf"
#define VOCAB_GPT2 "data/lm/ggml-vocab-gpt-2.gguf"
#define VOCAB_LLAMA "data/lm/ggml-vocab-llama-spm.gguf"

static char folder[256];

/* Returns folder/name in a static buffer (one path at a time). */
static const char *temp_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    return path;
}

static void make_temp_folder(void) {
    const char *base = getenv("TMPDIR");
    snprintf(folder, sizeof folder, "%s/mr_gguf_XXXXXX", base != NULL ? base : "/tmp");
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

/* Opens path or fails the test with the reader's message. */
static mr_gguf *open_or_fail(const char *path) {
    mr_gguf *gguf = NULL;
    mr_error err;
    mr_error_clear(&err);
    mr_status status = mr_gguf_open(path, &gguf, &err);
    if (status != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "opening %s failed: %s", path, err.message);
    }
    return gguf;
}

/* Returns whether the string value of key equals expected. */
static bool string_is(const mr_gguf *gguf, const char *key, const char *expected) {
    const char *value = NULL;
    size_t len = 0;
    if (mr_gguf_get_string(gguf, key, &value, &len, NULL) != MR_OK) {
        return false;
    }
    return len == strlen(expected) && memcmp(value, expected, len) == 0;
}

/* Returns whether string j of the array key equals expected. */
static bool array_string_is(const mr_gguf *gguf, const char *key, int64_t j, const char *expected) {
    const char *value = NULL;
    size_t len = 0;
    if (mr_gguf_array_string(gguf, key, j, &value, &len, NULL) != MR_OK) {
        return false;
    }
    return len == strlen(expected) && memcmp(value, expected, len) == 0;
}

static uint32_t u32_of(const mr_gguf *gguf, const char *key) {
    uint32_t value = 0xdeadbeefu;
    mr_error err;
    if (mr_gguf_get_u32(gguf, key, &value, &err) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "%s", err.message);
    }
    return value;
}

/* Returns the element count of an array of elem_type, or -1. */
static int64_t array_count(const mr_gguf *gguf, const char *key, mr_gguf_type elem_type) {
    mr_gguf_type type;
    int64_t count = 0;
    const void *data = NULL;
    if (mr_gguf_get_array(gguf, key, &type, &count, &data, NULL) != MR_OK || type != elem_type) {
        return -1;
    }
    return count;
}

/* Checks a tensor's presence, type and dimensions (ne[0] first). */
static void check_tensor(const mr_gguf *gguf, const char *name, int n_dims, int64_t ne0, int64_t ne1) {
    const mr_gguf_tensor *t = mr_gguf_find_tensor(gguf, name);
    if (t == NULL) {
        mr_test_fail(__FILE__, __LINE__, "tensor '%s' not found", name);
        return;
    }
    CHECK(strcmp(t->name, name) == 0);
    CHECK_INT_EQ(t->type, MR_QTYPE_F32);
    CHECK_INT_EQ(t->n_dims, n_dims);
    CHECK_INT_EQ(t->ne[0], ne0);
    CHECK_INT_EQ(t->ne[1], ne1);
    CHECK_INT_EQ(t->ne[2], 1);
    CHECK_INT_EQ(t->ne[3], 1);
    CHECK_INT_EQ(t->size, ne0 * ne1 * 4);
    CHECK_INT_EQ(t->offset % 32, 0);
}

/* ------------------------------------------------------------------------
 * Real files
 * ------------------------------------------------------------------------ */

static void stories260k_header_values(void) {
    mr_gguf *gguf = open_or_fail(STORIES);
    if (gguf == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_gguf_version(gguf), 3);
    CHECK_INT_EQ(mr_gguf_tensor_count(gguf), 48);
    CHECK_INT_EQ(mr_gguf_kv_count(gguf), 19);
    CHECK_INT_EQ(mr_gguf_find_key(gguf, "general.alignment"), -1);
    CHECK_INT_EQ(mr_gguf_alignment(gguf), 32);
    CHECK_INT_EQ(mr_gguf_data_offset(gguf), 14176);

    CHECK(strcmp(mr_gguf_kv_key(gguf, 0), "tokenizer.ggml.tokens") == 0);
    CHECK_INT_EQ(mr_gguf_kv_type(gguf, 0), MR_GGUF_ARRAY);
    CHECK(mr_gguf_kv_key(gguf, 19) == NULL);
    CHECK(mr_gguf_kv_key(gguf, -1) == NULL);

    CHECK(string_is(gguf, "general.architecture", "llama"));
    CHECK_INT_EQ(u32_of(gguf, "llama.embedding_length"), 64);
    CHECK_INT_EQ(u32_of(gguf, "llama.block_count"), 5);
    CHECK_INT_EQ(u32_of(gguf, "llama.feed_forward_length"), 172);
    CHECK_INT_EQ(u32_of(gguf, "llama.attention.head_count"), 8);
    CHECK_INT_EQ(u32_of(gguf, "llama.attention.head_count_kv"), 4);
    CHECK_INT_EQ(u32_of(gguf, "llama.rope.dimension_count"), 8);
    CHECK_INT_EQ(u32_of(gguf, "llama.context_length"), 2048);
    CHECK_INT_EQ(mr_gguf_find_key(gguf, "llama.rope.freq_base"), -1);
    float eps = 0.0f;
    CHECK_STATUS(mr_gguf_get_f32(gguf, "llama.attention.layer_norm_rms_epsilon", &eps, NULL), MR_OK);
    CHECK(eps == 1e-5f);

    CHECK(string_is(gguf, "tokenizer.ggml.model", "llama"));
    CHECK_INT_EQ(array_count(gguf, "tokenizer.ggml.tokens", MR_GGUF_STRING), 512);
    CHECK_INT_EQ(array_count(gguf, "tokenizer.ggml.scores", MR_GGUF_F32), 512);
    CHECK_INT_EQ(array_count(gguf, "tokenizer.ggml.token_type", MR_GGUF_I32), 512);
    CHECK(array_string_is(gguf, "tokenizer.ggml.tokens", 0, "<unk>"));
    CHECK(array_string_is(gguf, "tokenizer.ggml.tokens", 1, "<s>"));
    CHECK(array_string_is(gguf, "tokenizer.ggml.tokens", 403, "\xe2\x96\x81Once"));
    CHECK(array_string_is(gguf, "tokenizer.ggml.tokens", 511, "\xe2\x80\x8a"));
    CHECK_INT_EQ(u32_of(gguf, "tokenizer.ggml.bos_token_id"), 1);
    CHECK_INT_EQ(u32_of(gguf, "tokenizer.ggml.eos_token_id"), 2);
    CHECK_INT_EQ(u32_of(gguf, "tokenizer.ggml.unknown_token_id"), 0);
    CHECK_INT_EQ(u32_of(gguf, "tokenizer.ggml.seperator_token_id"), 0xffffffffu);
    CHECK_INT_EQ(u32_of(gguf, "tokenizer.ggml.padding_token_id"), 0xffffffffu);

    /* Numeric array elements are read in place; the last score is -252. */
    mr_gguf_type type;
    int64_t count = 0;
    const void *data = NULL;
    CHECK_STATUS(mr_gguf_get_array(gguf, "tokenizer.ggml.scores", &type, &count, &data, NULL), MR_OK);
    float last_score = 0.0f;
    memcpy(&last_score, (const char *)data + 511 * 4, 4);
    CHECK(last_score == -252.0f);
    int32_t first_type = 0;
    CHECK_STATUS(mr_gguf_get_array(gguf, "tokenizer.ggml.token_type", &type, &count, &data, NULL), MR_OK);
    memcpy(&first_type, data, 4);
    CHECK_INT_EQ(first_type, 2);

    check_tensor(gguf, "token_embd.weight", 2, 64, 512);
    check_tensor(gguf, "output_norm.weight", 1, 64, 1);
    check_tensor(gguf, "output.weight", 2, 64, 512);
    char name[64];
    for (int layer = 0; layer < 5; layer++) {
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", layer);
        check_tensor(gguf, name, 2, 64, 64);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", layer);
        check_tensor(gguf, name, 2, 64, 32);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", layer);
        check_tensor(gguf, name, 2, 64, 32);
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", layer);
        check_tensor(gguf, name, 2, 64, 64);
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", layer);
        check_tensor(gguf, name, 1, 64, 1);
        snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", layer);
        check_tensor(gguf, name, 2, 64, 172);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", layer);
        check_tensor(gguf, name, 2, 172, 64);
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", layer);
        check_tensor(gguf, name, 2, 64, 172);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", layer);
        check_tensor(gguf, name, 1, 64, 1);
    }
    CHECK(mr_gguf_find_tensor(gguf, "blk.5.attn_q.weight") == NULL);

    /* The tensors are in file order, and output.weight copies token_embd. */
    const mr_gguf_tensor *first = mr_gguf_tensor_at(gguf, 0);
    const mr_gguf_tensor *output = mr_gguf_find_tensor(gguf, "output.weight");
    const mr_gguf_tensor *last = mr_gguf_tensor_at(gguf, 47);
    CHECK(first != NULL);
    CHECK(output != NULL);
    CHECK(last != NULL);
    CHECK(mr_gguf_tensor_at(gguf, 48) == NULL);
    if (first != NULL && output != NULL && last != NULL) {
        CHECK(strcmp(first->name, "token_embd.weight") == 0);
        CHECK(strcmp(last->name, "blk.4.ffn_norm.weight") == 0);
        CHECK_INT_EQ(first->offset, 0);
        CHECK_INT_EQ(output->offset, 131328);
        CHECK_INT_EQ(last->offset, 1170944);
        CHECK(memcmp(first->data, output->data, first->size) == 0);
        CHECK_INT_EQ(mr_gguf_data_offset(gguf) + last->offset + last->size, 1185376);
    }
    mr_gguf_close(gguf);
}

static void vocab_files_open(void) {
    mr_gguf *gpt2 = open_or_fail(VOCAB_GPT2);
    if (gpt2 != NULL) {
        CHECK_INT_EQ(mr_gguf_version(gpt2), 3);
        CHECK_INT_EQ(mr_gguf_tensor_count(gpt2), 0);
        CHECK(string_is(gpt2, "tokenizer.ggml.model", "gpt2"));
        CHECK(string_is(gpt2, "tokenizer.ggml.pre", "gpt-2"));
        CHECK_INT_EQ(array_count(gpt2, "tokenizer.ggml.tokens", MR_GGUF_STRING), 50257);
        CHECK_INT_EQ(array_count(gpt2, "tokenizer.ggml.merges", MR_GGUF_STRING), 50000);
        CHECK(array_string_is(gpt2, "tokenizer.ggml.tokens", 50256, "<|endoftext|>"));
        CHECK(array_string_is(gpt2, "tokenizer.ggml.merges", 0, "\xc4\xa0 t"));
        CHECK(array_string_is(gpt2, "tokenizer.ggml.merges", 49999, "\xc4\xa0g azed"));
        CHECK_INT_EQ(u32_of(gpt2, "tokenizer.ggml.bos_token_id"), 50256);
        CHECK_INT_EQ(u32_of(gpt2, "tokenizer.ggml.eos_token_id"), 50256);
        mr_gguf_close(gpt2);
    }

    mr_gguf *llama = open_or_fail(VOCAB_LLAMA);
    if (llama != NULL) {
        CHECK(string_is(llama, "tokenizer.ggml.model", "llama"));
        CHECK(string_is(llama, "tokenizer.ggml.pre", "default"));
        CHECK_INT_EQ(array_count(llama, "tokenizer.ggml.tokens", MR_GGUF_STRING), 32000);
        CHECK_INT_EQ(array_count(llama, "tokenizer.ggml.scores", MR_GGUF_F32), 32000);
        CHECK_INT_EQ(array_count(llama, "tokenizer.ggml.token_type", MR_GGUF_I32), 32000);
        CHECK(array_string_is(llama, "tokenizer.ggml.tokens", 31999, "\xe7\xbb\x99"));
        CHECK_INT_EQ(u32_of(llama, "tokenizer.ggml.bos_token_id"), 1);
        CHECK_INT_EQ(u32_of(llama, "llama.vocab_size"), 32000);
        bool add_bos = false;
        bool add_eos = true;
        CHECK_STATUS(mr_gguf_get_bool(llama, "tokenizer.ggml.add_bos_token", &add_bos, NULL), MR_OK);
        CHECK_STATUS(mr_gguf_get_bool(llama, "tokenizer.ggml.add_eos_token", &add_eos, NULL), MR_OK);
        CHECK(add_bos);
        CHECK(!add_eos);
        mr_gguf_close(llama);
    }
}

static void getters_check_types(void) {
    mr_gguf *gguf = open_or_fail(STORIES);
    if (gguf == NULL) {
        return;
    }
    mr_error err;
    uint32_t u32 = 0;
    int64_t i64 = 0;
    float f32 = 0.0f;
    bool flag = false;

    CHECK_STATUS(mr_gguf_get_u32(gguf, "general.architecture", &u32, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "'general.architecture' has type string, expected u32") != NULL);
    CHECK_STATUS(mr_gguf_get_u32(gguf, "llama.missing", &u32, &err), MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "'llama.missing' not found") != NULL);
    CHECK_STATUS(mr_gguf_get_f32(gguf, "llama.block_count", &f32, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "has type u32, expected f32") != NULL);
    CHECK_STATUS(mr_gguf_get_bool(gguf, "llama.block_count", &flag, &err), MR_ERR_FORMAT);
    CHECK_STATUS(mr_gguf_get_i64(gguf, "llama.block_count", &i64, &err), MR_OK);
    CHECK_INT_EQ(i64, 5);
    CHECK_STATUS(mr_gguf_get_i64(gguf, "tokenizer.ggml.padding_token_id", &i64, &err), MR_OK);
    CHECK_INT_EQ(i64, 0xffffffffLL);

    const char *s = NULL;
    size_t len = 0;
    CHECK_STATUS(mr_gguf_array_string(gguf, "tokenizer.ggml.tokens", 512, &s, &len, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_gguf_array_string(gguf, "tokenizer.ggml.tokens", -1, &s, &len, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_gguf_array_string(gguf, "tokenizer.ggml.scores", 0, &s, &len, &err),
                 MR_ERR_FORMAT);
    CHECK(strstr(err.message, "array of f32") != NULL);
    CHECK_STATUS(mr_gguf_get_string(gguf, "tokenizer.ggml.tokens", &s, &len, &err), MR_ERR_FORMAT);
    mr_gguf_close(gguf);
}

static void open_missing_and_empty(void) {
    mr_gguf *gguf = (mr_gguf *)1;
    mr_error err;
    CHECK_STATUS(mr_gguf_open("data/lm/no_such_file.gguf", &gguf, &err), MR_ERR_NOT_FOUND);
    CHECK(gguf == NULL);
    CHECK(strstr(err.message, "no_such_file.gguf") != NULL);

    FILE *f = fopen(temp_path("empty.gguf"), "wb");
    CHECK(f != NULL);
    if (f != NULL) {
        fclose(f);
    }
    CHECK_STATUS(mr_gguf_open(temp_path("empty.gguf"), &gguf, &err), MR_ERR_FORMAT);
    CHECK(strstr(err.message, "empty") != NULL);
}

/* ------------------------------------------------------------------------
 * Writer round trips
 * ------------------------------------------------------------------------ */

static void write_read_every_type(void) {
    mr_gguf_writer *w = mr_gguf_writer_create();
    CHECK(w != NULL);
    if (w == NULL) {
        return;
    }
    mr_error err;

    CHECK_STATUS(mr_gguf_writer_set_u32(w, "test.u32", 0xfffffff0u, &err), MR_OK);
    CHECK_STATUS(mr_gguf_writer_set_f32(w, "test.f32", -1.5f, &err), MR_OK);
    CHECK_STATUS(mr_gguf_writer_set_bool(w, "test.bool", true, &err), MR_OK);
    CHECK_STATUS(mr_gguf_writer_set_string(w, "test.string", "caf\xc3\xa9", &err), MR_OK);
    CHECK_STATUS(mr_gguf_writer_set_string(w, "test.empty", "", &err), MR_OK);
    /* Setting a key again replaces its value in place. */
    CHECK_STATUS(mr_gguf_writer_set_u32(w, "test.f32", 7, &err), MR_OK);

    const uint8_t u8s[3] = {0, 200, 255};
    const int8_t i8s[3] = {-128, 0, 127};
    const uint16_t u16s[2] = {1, 65535};
    const int16_t i16s[2] = {-32768, 32767};
    const uint32_t u32s[2] = {0, 4000000000u};
    const int32_t i32s[3] = {-2147483647 - 1, 5, 2147483647};
    const float f32s[3] = {1.0f, -0.0f, INFINITY};
    const uint8_t bools[4] = {1, 0, 0, 1};
    const uint64_t u64s[2] = {0, UINT64_MAX};
    const int64_t i64s[2] = {INT64_MIN, INT64_MAX};
    const double f64s[2] = {0.1, -1e300};
    struct {
        const char *key;
        mr_gguf_type type;
        const void *data;
        int64_t count;
        size_t bytes;
    } arrays[] = {
        {"array.u8", MR_GGUF_U8, u8s, 3, sizeof u8s},
        {"array.i8", MR_GGUF_I8, i8s, 3, sizeof i8s},
        {"array.u16", MR_GGUF_U16, u16s, 2, sizeof u16s},
        {"array.i16", MR_GGUF_I16, i16s, 2, sizeof i16s},
        {"array.u32", MR_GGUF_U32, u32s, 2, sizeof u32s},
        {"array.i32", MR_GGUF_I32, i32s, 3, sizeof i32s},
        {"array.f32", MR_GGUF_F32, f32s, 3, sizeof f32s},
        {"array.bool", MR_GGUF_BOOL, bools, 4, sizeof bools},
        {"array.u64", MR_GGUF_U64, u64s, 2, sizeof u64s},
        {"array.i64", MR_GGUF_I64, i64s, 2, sizeof i64s},
        {"array.f64", MR_GGUF_F64, f64s, 2, sizeof f64s},
        {"array.empty", MR_GGUF_U32, NULL, 0, 0},
    };
    const int n_arrays = (int)(sizeof arrays / sizeof arrays[0]);
    for (int i = 0; i < n_arrays; i++) {
        CHECK_STATUS(mr_gguf_writer_set_array(w, arrays[i].key, arrays[i].type, arrays[i].data,
                                              arrays[i].count, &err),
                     MR_OK);
    }
    const char *strings[4] = {"a", "", "with\0nul", "\xe2\x96\x81x"};
    const size_t lens[4] = {1, 0, 8, 4};
    CHECK_STATUS(mr_gguf_writer_set_strings(w, "array.strings", strings, lens, 4, &err), MR_OK);
    const char *plain[2] = {"one", "two"};
    CHECK_STATUS(mr_gguf_writer_set_strings(w, "array.plain", plain, NULL, 2, &err), MR_OK);

    /* One tensor per storage type, from the same values. */
    enum { ROWS = 3, COLS = 64 };
    float values[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) {
        values[i] = (float)((i * 37) % 101) / 25.0f - 2.0f;
    }
    const mr_qtype types[5] = {MR_QTYPE_F32, MR_QTYPE_F16, MR_QTYPE_BF16, MR_QTYPE_Q8_0,
                               MR_QTYPE_Q4_0};
    unsigned char stored[5][ROWS * COLS * 4];
    for (int t = 0; t < 5; t++) {
        size_t row_bytes = mr_qtype_row_bytes(types[t], COLS);
        for (int r = 0; r < ROWS; r++) {
            mr_quantize_row(types[t], values + r * COLS, stored[t] + r * row_bytes, COLS);
        }
        char name[32];
        snprintf(name, sizeof name, "weight.%s", mr_qtype_name(types[t]));
        const int64_t ne[2] = {COLS, ROWS};
        CHECK_STATUS(mr_gguf_writer_add_tensor(w, name, types[t], 2, ne, stored[t], &err), MR_OK);
    }
    const int64_t ne4[4] = {2, 3, 1, 2};
    CHECK_STATUS(mr_gguf_writer_add_tensor(w, "four.dims", MR_QTYPE_F32, 4, ne4, values, &err), MR_OK);
    const int64_t ne_empty[1] = {0};
    CHECK_STATUS(mr_gguf_writer_add_tensor(w, "empty", MR_QTYPE_F16, 1, ne_empty, NULL, &err), MR_OK);

    CHECK_STATUS(mr_gguf_writer_write(w, temp_path("every.gguf"), &err), MR_OK);
    mr_gguf_writer_free(w);

    mr_gguf *gguf = open_or_fail(temp_path("every.gguf"));
    if (gguf == NULL) {
        return;
    }
    CHECK_INT_EQ(mr_gguf_version(gguf), 3);
    CHECK_INT_EQ(mr_gguf_kv_count(gguf), 5 + n_arrays + 2);
    CHECK_INT_EQ(mr_gguf_data_offset(gguf) % 32, 0);
    CHECK(strcmp(mr_gguf_kv_key(gguf, 0), "test.u32") == 0);
    CHECK(strcmp(mr_gguf_kv_key(gguf, 1), "test.f32") == 0);
    CHECK_INT_EQ(mr_gguf_kv_type(gguf, 1), MR_GGUF_U32);

    uint32_t u32 = 0;
    CHECK_STATUS(mr_gguf_get_u32(gguf, "test.u32", &u32, &err), MR_OK);
    CHECK_INT_EQ(u32, 0xfffffff0u);
    CHECK_STATUS(mr_gguf_get_u32(gguf, "test.f32", &u32, &err), MR_OK);
    CHECK_INT_EQ(u32, 7);
    bool flag = false;
    CHECK_STATUS(mr_gguf_get_bool(gguf, "test.bool", &flag, &err), MR_OK);
    CHECK(flag);
    CHECK(string_is(gguf, "test.string", "caf\xc3\xa9"));
    CHECK(string_is(gguf, "test.empty", ""));

    for (int i = 0; i < n_arrays; i++) {
        mr_gguf_type type;
        int64_t count = -1;
        const void *data = NULL;
        CHECK_STATUS(mr_gguf_get_array(gguf, arrays[i].key, &type, &count, &data, &err), MR_OK);
        CHECK_INT_EQ(type, arrays[i].type);
        CHECK_INT_EQ(count, arrays[i].count);
        if (arrays[i].bytes > 0 && data != NULL) {
            if (memcmp(data, arrays[i].data, arrays[i].bytes) != 0) {
                mr_test_fail(__FILE__, __LINE__, "array %s differs after the round trip",
                             arrays[i].key);
            }
        }
    }
    CHECK_INT_EQ(array_count(gguf, "array.strings", MR_GGUF_STRING), 4);
    for (int j = 0; j < 4; j++) {
        const char *s = NULL;
        size_t len = 99;
        CHECK_STATUS(mr_gguf_array_string(gguf, "array.strings", j, &s, &len, &err), MR_OK);
        CHECK_INT_EQ(len, lens[j]);
        if (len == lens[j]) {
            CHECK(memcmp(s, strings[j], len) == 0);
        }
    }
    CHECK(array_string_is(gguf, "array.plain", 1, "two"));

    /* The integer getters convert between integer types while values fit. */
    int64_t i64 = 0;
    CHECK_STATUS(mr_gguf_get_i64(gguf, "test.u32", &i64, &err), MR_OK);
    CHECK_INT_EQ(i64, 0xfffffff0LL);

    CHECK_INT_EQ(mr_gguf_tensor_count(gguf), 7);
    for (int t = 0; t < 5; t++) {
        char name[32];
        snprintf(name, sizeof name, "weight.%s", mr_qtype_name(types[t]));
        const mr_gguf_tensor *tensor = mr_gguf_find_tensor(gguf, name);
        CHECK(tensor != NULL);
        if (tensor == NULL) {
            continue;
        }
        CHECK_INT_EQ(tensor->type, types[t]);
        CHECK_INT_EQ(tensor->n_dims, 2);
        CHECK_INT_EQ(tensor->ne[0], COLS);
        CHECK_INT_EQ(tensor->ne[1], ROWS);
        CHECK_INT_EQ(tensor->size, mr_qtype_row_bytes(types[t], COLS) * ROWS);
        CHECK_INT_EQ(tensor->offset % 32, 0);
        CHECK(memcmp(tensor->data, stored[t], tensor->size) == 0);
    }
    const mr_gguf_tensor *four = mr_gguf_find_tensor(gguf, "four.dims");
    CHECK(four != NULL);
    if (four != NULL) {
        CHECK_INT_EQ(four->n_dims, 4);
        CHECK_INT_EQ(four->ne[1], 3);
        CHECK_INT_EQ(four->ne[3], 2);
        CHECK_INT_EQ(four->size, 12 * 4);
        CHECK(memcmp(four->data, values, 48) == 0);
    }
    const mr_gguf_tensor *empty = mr_gguf_find_tensor(gguf, "empty");
    CHECK(empty != NULL);
    if (empty != NULL) {
        CHECK_INT_EQ(empty->size, 0);
        CHECK_INT_EQ(empty->type, MR_QTYPE_F16);
    }
    mr_gguf_close(gguf);
}

static void writer_rejects_bad_input(void) {
    mr_gguf_writer *w = mr_gguf_writer_create();
    mr_error err;
    float data[64] = {0};
    const int64_t ne[2] = {32, 2};

    CHECK_STATUS(mr_gguf_writer_add_tensor(w, "a", MR_QTYPE_Q8_0, 2, ne, data, &err), MR_OK);
    CHECK_STATUS(mr_gguf_writer_add_tensor(w, "a", MR_QTYPE_F32, 2, ne, data, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "'a' was already added") != NULL);

    const int64_t odd[1] = {33};
    CHECK_STATUS(mr_gguf_writer_add_tensor(w, "b", MR_QTYPE_Q4_0, 1, odd, data, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(err.message, "q4_0 block size 32") != NULL);
    CHECK_STATUS(mr_gguf_writer_add_tensor(w, "c", (mr_qtype)7, 1, ne, data, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_gguf_writer_add_tensor(w, "d", MR_QTYPE_F32, 5, ne, data, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_gguf_writer_add_tensor(w, "e", MR_QTYPE_F32, 2, ne, NULL, &err),
                 MR_ERR_INVALID_ARGUMENT);

    CHECK_STATUS(mr_gguf_writer_set_u32(w, "general.alignment", 64, &err), MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_gguf_writer_set_u32(w, "", 1, &err), MR_ERR_INVALID_ARGUMENT);
    const uint8_t bad_bools[2] = {1, 2};
    CHECK_STATUS(mr_gguf_writer_set_array(w, "x", MR_GGUF_BOOL, bad_bools, 2, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_gguf_writer_set_array(w, "x", MR_GGUF_STRING, bad_bools, 2, &err),
                 MR_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mr_gguf_writer_set_array(w, "x", MR_GGUF_U8, NULL, 2, &err),
                 MR_ERR_INVALID_ARGUMENT);

    /* A write into a missing folder fails and leaves nothing behind. */
    CHECK_STATUS(mr_gguf_writer_write(w, temp_path("no/such/folder.gguf"), &err), MR_ERR_IO);
    mr_gguf_writer_free(w);
}

static void rewrite_stories260k_identical(void) {
    mr_gguf *original = open_or_fail(STORIES);
    if (original == NULL) {
        return;
    }
    mr_gguf_writer *w = mr_gguf_writer_create();
    mr_error err;
    CHECK_STATUS(mr_gguf_writer_copy_kv(w, original, &err), MR_OK);
    for (int64_t i = 0; i < mr_gguf_tensor_count(original); i++) {
        const mr_gguf_tensor *t = mr_gguf_tensor_at(original, i);
        CHECK_STATUS(mr_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err),
                     MR_OK);
    }
    CHECK_STATUS(mr_gguf_writer_write(w, temp_path("stories.gguf"), &err), MR_OK);
    mr_gguf_writer_free(w);

    mr_gguf *copy = open_or_fail(temp_path("stories.gguf"));
    if (copy != NULL) {
        CHECK_INT_EQ(mr_gguf_kv_count(copy), 19);
        CHECK_INT_EQ(mr_gguf_tensor_count(copy), 48);
        for (int64_t i = 0; i < mr_gguf_kv_count(original); i++) {
            CHECK(strcmp(mr_gguf_kv_key(copy, i), mr_gguf_kv_key(original, i)) == 0);
            CHECK_INT_EQ(mr_gguf_kv_type(copy, i), mr_gguf_kv_type(original, i));
        }
        int differing = 0;
        for (int64_t i = 0; i < mr_gguf_tensor_count(original); i++) {
            const mr_gguf_tensor *a = mr_gguf_tensor_at(original, i);
            const mr_gguf_tensor *b = mr_gguf_tensor_at(copy, i);
            differing += strcmp(a->name, b->name) != 0 || a->size != b->size ||
                         a->offset != b->offset || memcmp(a->data, b->data, a->size) != 0;
        }
        CHECK_INT_EQ(differing, 0);
        mr_gguf_close(copy);
    }
    mr_gguf_close(original);

    /* The writer lays the file out as the original's writer did, so even
     * the whole file is identical. */
    void *a = NULL;
    void *b = NULL;
    size_t a_size = 0;
    size_t b_size = 0;
    CHECK_STATUS(mr_file_read_all(STORIES, 1 << 24, &a, &a_size, &err), MR_OK);
    CHECK_STATUS(mr_file_read_all(temp_path("stories.gguf"), 1 << 24, &b, &b_size, &err), MR_OK);
    CHECK_INT_EQ(b_size, a_size);
    if (a != NULL && b != NULL && a_size == b_size) {
        CHECK(memcmp(a, b, a_size) == 0);
    }
    free(a);
    free(b);
}

/* ------------------------------------------------------------------------
 * Corrupt inputs, built byte by byte
 * ------------------------------------------------------------------------ */

/* A growing byte buffer for hand-built files. */
typedef struct bytes {
    uint8_t data[4096];
    size_t size;
} bytes;

static void put(bytes *b, const void *data, size_t n) {
    if (b->size + n > sizeof b->data) {
        fprintf(stderr, "test buffer too small\n");
        exit(EXIT_FAILURE);
    }
    memcpy(b->data + b->size, data, n);
    b->size += n;
}

static void put_u32(bytes *b, uint32_t v) {
    put(b, &v, 4);
}

static void put_u64(bytes *b, uint64_t v) {
    put(b, &v, 8);
}

static void put_string(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static void put_header(bytes *b, uint32_t version, uint64_t tensors, uint64_t kvs) {
    b->size = 0;
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, tensors);
    put_u64(b, kvs);
}

static void put_kv_u32(bytes *b, const char *key, uint32_t v) {
    put_string(b, key);
    put_u32(b, MR_GGUF_U32);
    put_u32(b, v);
}

/* Writes a 2-D tensor info with the given type and data offset. */
static void put_tensor_info(bytes *b, const char *name, uint64_t ne0, uint64_t ne1, uint32_t type,
                            uint64_t offset) {
    put_string(b, name);
    put_u32(b, 2);
    put_u64(b, ne0);
    put_u64(b, ne1);
    put_u32(b, type);
    put_u64(b, offset);
}

static void pad(bytes *b, size_t alignment) {
    static const uint8_t zeros[256] = {0};
    put(b, zeros, (alignment - b->size % alignment) % alignment);
}

/* Appends n bytes of tensor data with a recognisable pattern. */
static void put_data(bytes *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t v = (uint8_t)(i * 7 + 1);
        put(b, &v, 1);
    }
}

/* A valid file: two keys, a string array and two f32 tensors of 8 x 1,
 * whose last byte ends the file so that every truncation cuts data. */
static void build_valid(bytes *b) {
    put_header(b, 3, 2, 3);
    put_kv_u32(b, "general.alignment", 32);
    put_string(b, "general.name");
    put_u32(b, MR_GGUF_STRING);
    put_string(b, "tiny");
    put_string(b, "tokens");
    put_u32(b, MR_GGUF_ARRAY);
    put_u32(b, MR_GGUF_STRING);
    put_u64(b, 2);
    put_string(b, "ab");
    put_string(b, "c");
    put_tensor_info(b, "w0", 8, 1, MR_QTYPE_F32, 0);
    put_tensor_info(b, "w1", 8, 1, MR_QTYPE_F32, 32);
    pad(b, 32);
    put_data(b, 64);
}

/* Opens b from memory and returns the status, leaving the message in err. */
static mr_status open_bytes(const bytes *b, mr_error *err) {
    mr_gguf *gguf = NULL;
    mr_error_clear(err);
    mr_status status = mr_gguf_open_memory(b->data, b->size, "corrupt.gguf", &gguf, err);
    mr_gguf_close(gguf);
    return status;
}

/* Checks that b fails with status and a message containing each of up to
 * two fragments (NULL to skip) and the file name. */
static void expect_rejected(const bytes *b, mr_status expected, const char *fragment,
                            const char *fragment2, int line) {
    mr_error err;
    mr_status status = open_bytes(b, &err);
    if (status != expected) {
        mr_test_fail(__FILE__, line, "status '%s', expected '%s' (message: %s)",
                     mr_status_name(status), mr_status_name(expected), err.message);
        return;
    }
    if (strstr(err.message, "gguf: corrupt.gguf: ") != err.message) {
        mr_test_fail(__FILE__, line, "message does not name the file: %s", err.message);
    }
    if (fragment != NULL && strstr(err.message, fragment) == NULL) {
        mr_test_fail(__FILE__, line, "message lacks '%s': %s", fragment, err.message);
    }
    if (fragment2 != NULL && strstr(err.message, fragment2) == NULL) {
        mr_test_fail(__FILE__, line, "message lacks '%s': %s", fragment2, err.message);
    }
}

#define EXPECT_REJECTED(b, status, fragment, fragment2) \
    expect_rejected((b), (status), (fragment), (fragment2), __LINE__)

static void valid_hand_built_file_opens(void) {
    bytes b;
    build_valid(&b);
    mr_gguf *gguf = NULL;
    mr_error err;
    CHECK_STATUS(mr_gguf_open_memory(b.data, b.size, "valid.gguf", &gguf, &err), MR_OK);
    if (gguf == NULL) {
        mr_test_fail(__FILE__, __LINE__, "%s", err.message);
        return;
    }
    CHECK_INT_EQ(mr_gguf_tensor_count(gguf), 2);
    CHECK(array_string_is(gguf, "tokens", 0, "ab"));
    CHECK(array_string_is(gguf, "tokens", 1, "c"));
    const mr_gguf_tensor *w1 = mr_gguf_find_tensor(gguf, "w1");
    CHECK(w1 != NULL);
    if (w1 != NULL) {
        CHECK((const uint8_t *)w1->data == b.data + b.size - 32);
    }
    mr_gguf_close(gguf);

    /* Version 2 has the same layout. */
    b.data[4] = 2;
    CHECK_STATUS(mr_gguf_open_memory(b.data, b.size, "valid.gguf", &gguf, &err), MR_OK);
    CHECK_INT_EQ(gguf != NULL ? mr_gguf_version(gguf) : 0, 2);
    mr_gguf_close(gguf);
}

static void truncated_at_every_byte(void) {
    bytes b;
    build_valid(&b);
    size_t full = b.size;
    int accepted = 0;
    int unnamed = 0;
    for (size_t n = 0; n < full; n++) {
        b.size = n;
        mr_error err;
        mr_status status = open_bytes(&b, &err);
        accepted += status == MR_OK;
        unnamed += strstr(err.message, "corrupt.gguf") == NULL;
    }
    CHECK_INT_EQ(accepted, 0);
    CHECK_INT_EQ(unnamed, 0);

    /* Cuts in the fixed header and in a string name the expectation. */
    b.size = 10;
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "truncated: expected the tensor count (8 bytes) at offset 8",
                    "ends at byte 10");
    b.size = 88;
    EXPECT_REJECTED(&b, MR_ERR_FORMAT,
                    "truncated: expected string value (8 bytes) at offset 81", "ends at byte 88");
    b.size = full - 1;
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "tensor 'w1'", "past the end of the file");
}

static void bad_magic_and_versions(void) {
    bytes b;
    build_valid(&b);
    b.data[0] = 'G';
    b.data[3] = 'G';
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "bad magic at offset 0", "not a GGUF file");

    put_header(&b, 1, 0, 0);
    EXPECT_REJECTED(&b, MR_ERR_UNSUPPORTED, "version 1", "convert the file to version 3");
    put_header(&b, 4, 0, 0);
    EXPECT_REJECTED(&b, MR_ERR_UNSUPPORTED, "version 4 at offset 4 is not 2 or 3", NULL);
    put_header(&b, 0x03000000u, 0, 0);
    EXPECT_REJECTED(&b, MR_ERR_UNSUPPORTED, "big-endian", NULL);
}

static void huge_counts_rejected(void) {
    bytes b;
    put_header(&b, 3, UINT64_MAX, 0);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "tensor count 18446744073709551615 at offset 8", NULL);
    put_header(&b, 3, 0, 1ull << 40);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "key/value count 1099511627776 at offset 16", NULL);

    /* An array of 2^61 u32 elements would need 2^63 bytes. */
    put_header(&b, 3, 0, 1);
    put_string(&b, "big");
    put_u32(&b, MR_GGUF_ARRAY);
    put_u32(&b, MR_GGUF_U32);
    put_u64(&b, 1ull << 61);
    put_u32(&b, 0);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "key 'big': 2305843009213693952 values of type u32", NULL);

    put_header(&b, 3, 0, 1);
    put_string(&b, "many");
    put_u32(&b, MR_GGUF_ARRAY);
    put_u32(&b, MR_GGUF_STRING);
    put_u64(&b, 1000);
    put_string(&b, "x");
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "array length 1000 at offset", "more strings than");
}

static void bad_string_lengths_rejected(void) {
    bytes b;
    put_header(&b, 3, 0, 1);
    put_u64(&b, UINT64_MAX); /* key length */
    put(&b, "key", 3);
    put_data(&b, 16); /* enough bytes for the count check to pass */
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "key at offset 24 has length 18446744073709551615", NULL);

    put_header(&b, 3, 0, 1);
    put_u64(&b, 0);
    put_u32(&b, MR_GGUF_U32);
    put_u32(&b, 1);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "key at offset 24 has length 0, expected 1 to 65535", NULL);

    put_header(&b, 3, 0, 1);
    put_u64(&b, 3);
    put(&b, "a\0b", 3);
    put_u32(&b, MR_GGUF_U32);
    put_u32(&b, 1);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "contains a NUL byte", NULL);

    put_header(&b, 3, 0, 1);
    put_string(&b, "name");
    put_u32(&b, MR_GGUF_STRING);
    put_u64(&b, 1ull << 62);
    put(&b, "abc", 3);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "string value at offset 40 has length 4611686018427387904",
                    "only 3 bytes follow");

    put_header(&b, 3, 0, 1);
    put_string(&b, "tokens");
    put_u32(&b, MR_GGUF_ARRAY);
    put_u32(&b, MR_GGUF_STRING);
    put_u64(&b, 2);
    put_string(&b, "ok");
    put_u64(&b, 100);
    put(&b, "short", 5);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "array string at offset 64 has length 100", NULL);
}

static void bad_value_types_rejected(void) {
    bytes b;
    put_header(&b, 3, 0, 1);
    put_string(&b, "odd");
    put_u32(&b, 13);
    put_u32(&b, 0);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "key 'odd': value type at offset 35 is 13, expected 0 to 12",
                    NULL);

    put_header(&b, 3, 0, 1);
    put_string(&b, "flag");
    put_u32(&b, MR_GGUF_BOOL);
    uint8_t two = 2;
    put(&b, &two, 1);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "bool at offset 40 is 2, expected 0 or 1", NULL);

    put_header(&b, 3, 0, 1);
    put_string(&b, "nested");
    put_u32(&b, MR_GGUF_ARRAY);
    put_u32(&b, MR_GGUF_ARRAY);
    put_u64(&b, 0);
    EXPECT_REJECTED(&b, MR_ERR_UNSUPPORTED, "array of arrays", NULL);

    put_header(&b, 3, 0, 1);
    put_string(&b, "general.alignment");
    put_u32(&b, MR_GGUF_U64);
    put_u64(&b, 32);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "'general.alignment'", "has type u64, expected u32");

    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 24);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "is 24, expected a power of two", NULL);
}

static void duplicates_rejected(void) {
    bytes b;
    put_header(&b, 3, 0, 2);
    put_kv_u32(&b, "same", 1);
    put_kv_u32(&b, "same", 2);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "key 'same' occurs twice", "offset 60");

    put_header(&b, 3, 2, 0);
    put_tensor_info(&b, "w", 8, 1, MR_QTYPE_F32, 0);
    put_tensor_info(&b, "w", 8, 1, MR_QTYPE_F32, 32);
    pad(&b, 32);
    put_data(&b, 64);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "tensor name 'w' occurs twice", NULL);
}

static void bad_tensor_infos_rejected(void) {
    bytes b;

    /* The message names the tensor, the offset of its type and the fix. */
    put_header(&b, 3, 1, 0);
    put_string(&b, "blk.0.attn_q.weight");
    put_u32(&b, 2);
    put_u64(&b, 8);
    put_u64(&b, 1);
    size_t type_offset = b.size;
    put_u32(&b, 99);
    put_u64(&b, 0);
    pad(&b, 32);
    put_data(&b, 32);
    char expected[200];
    snprintf(expected, sizeof expected,
             "tensor 'blk.0.attn_q.weight' at offset %zu has type 99, which multiround does not "
             "read; convert it to f32, f16, bf16, q8_0 or q4_0",
             type_offset);
    EXPECT_REJECTED(&b, MR_ERR_UNSUPPORTED, expected, NULL);

    put_header(&b, 3, 1, 0);
    put_string(&b, "w");
    put_u32(&b, 5);
    put_data(&b, 40);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "tensor 'w' at offset 33 has 5 dimensions, expected 1 to 4",
                    NULL);
    put_header(&b, 3, 1, 0);
    put_string(&b, "w");
    put_u32(&b, 0);
    put_data(&b, 40);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "has 0 dimensions", NULL);

    put_header(&b, 3, 1, 0);
    put_tensor_info(&b, "q", 33, 1, MR_QTYPE_Q8_0, 0);
    pad(&b, 32);
    put_data(&b, 64);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "ne[0] = 33, which is not a multiple of the q8_0 block size 32",
                    NULL);

    put_header(&b, 3, 1, 0);
    put_tensor_info(&b, "big", 1ull << 40, 1ull << 40, MR_QTYPE_F32, 0);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "makes the product of the dimensions overflow 64 bits", NULL);

    put_header(&b, 3, 1, 0);
    put_tensor_info(&b, "w", 8, 1, MR_QTYPE_F32, 4);
    pad(&b, 32);
    put_data(&b, 64);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "data offset 4, which is not a multiple of the alignment 32",
                    NULL);

    put_header(&b, 3, 1, 0);
    put_tensor_info(&b, "w", 8, 1, MR_QTYPE_F32, 1ull << 60);
    pad(&b, 32);
    put_data(&b, 64);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "tensor 'w' needs bytes 1152921504606846976", "past the end");

    /* A zero dimension does not hide an overflow of the others. */
    put_header(&b, 3, 1, 0);
    put_string(&b, "z");
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 1ull << 40);
    put_u64(&b, 1ull << 40);
    put_u32(&b, MR_QTYPE_F32);
    put_u64(&b, 0);
    pad(&b, 32);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "tensor 'z': dimension 2 at offset 53",
                    "product of the dimensions overflow");

    /* ne = 2^62 x 4 bytes: the element count fits but the size does not. */
    put_header(&b, 3, 1, 0);
    put_tensor_info(&b, "w", 1ull << 62, 1, MR_QTYPE_F32, 0);
    pad(&b, 32);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "tensor 'w'", "larger than memory can address");

    put_header(&b, 3, 2, 0);
    put_tensor_info(&b, "a", 16, 1, MR_QTYPE_F32, 0);
    put_tensor_info(&b, "b", 8, 1, MR_QTYPE_F32, 32);
    pad(&b, 32);
    put_data(&b, 96);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "tensors 'a' (data offset 0, 64 bytes) and 'b'", "overlap");

    /* A gap after a tensor means a wrong type or shape, such as a flipped
     * type byte that shrank it. */
    put_header(&b, 3, 2, 0);
    put_tensor_info(&b, "a", 8, 1, MR_QTYPE_F32, 0);
    put_tensor_info(&b, "b", 8, 1, MR_QTYPE_F32, 64);
    pad(&b, 32);
    put_data(&b, 96);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT,
                    "tensor 'a' (f32, 32 bytes at data offset 0) ends at 32, but the next "
                    "tensor 'b' starts at 64: 32 bytes between them belong to no tensor",
                    "type or shape of 'a' is probably wrong");

    put_header(&b, 3, 1, 0);
    put_tensor_info(&b, "w", 8, 1, MR_QTYPE_F32, 32);
    pad(&b, 32);
    put_data(&b, 64);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "the first tensor 'w' starts at data offset 32", NULL);

    /* With a 256-byte alignment the data section starts past the end. */
    put_header(&b, 3, 1, 1);
    put_kv_u32(&b, "general.alignment", 256);
    put_tensor_info(&b, "w", 8, 1, MR_QTYPE_F32, 0);
    put_data(&b, 32);
    EXPECT_REJECTED(&b, MR_ERR_FORMAT, "the data section should start at offset 256", NULL);
}

int main(void) {
    make_temp_folder();
    MR_RUN(stories260k_header_values);
    MR_RUN(vocab_files_open);
    MR_RUN(getters_check_types);
    MR_RUN(open_missing_and_empty);
    MR_RUN(write_read_every_type);
    MR_RUN(writer_rejects_bad_input);
    MR_RUN(rewrite_stories260k_identical);
    MR_RUN(valid_hand_built_file_opens);
    MR_RUN(truncated_at_every_byte);
    MR_RUN(bad_magic_and_versions);
    MR_RUN(huge_counts_rejected);
    MR_RUN(bad_string_lengths_rejected);
    MR_RUN(bad_value_types_rejected);
    MR_RUN(duplicates_rejected);
    MR_RUN(bad_tensor_infos_rejected);
    remove_temp_folder();
    return mr_test_finish();
}

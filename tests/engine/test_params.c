/*
 * Parameter sets: layout in one buffer, gradients through the views,
 * checkpoint round trips and the errors of a mismatched checkpoint.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "multiround/params.h"
#include "multiround/safetensors.h"
#include "test.h"

static mr_paramset *make_set(int64_t rows, bool with_bias) {
    mr_error err;
    mr_paramset *ps = mr_paramset_create();
    int64_t w_shape[2] = {rows, 3};
    int64_t b_shape[1] = {3};
    CHECK_INT_EQ(mr_paramset_declare(ps, "w", 2, w_shape, &err), 0);
    if (with_bias) {
        CHECK_INT_EQ(mr_paramset_declare(ps, "b", 1, b_shape, &err), 1);
    }
    CHECK_STATUS(mr_paramset_finalize(ps, &err), MR_OK);
    return ps;
}

static void params_share_one_buffer(void) {
    mr_paramset *ps = make_set(2, true);
    mr_tensor *w = mr_paramset_get(ps, 0);
    mr_tensor *b = mr_paramset_find(ps, "b");
    mr_tensor *flat = mr_paramset_flat(ps);
    CHECK_INT_EQ(mr_paramset_numel(ps), 9);
    CHECK_INT_EQ(mr_paramset_count(ps), 2);
    CHECK(w->data == flat->data);
    CHECK(b->data == flat->data + 6);
    CHECK_INT_EQ(w->shape[0], 2);
    CHECK_INT_EQ(w->shape[1], 3);
    CHECK_NEAR(flat->data[8], 0.0, 0);
    CHECK(mr_paramset_find(ps, "missing") == NULL);
    mr_paramset_free(ps);
}

static void params_gradients_reach_flat(void) {
    mr_paramset *ps = make_set(2, true);
    mr_tensor *w = mr_paramset_get(ps, 0);
    mr_tensor *b = mr_paramset_get(ps, 1);
    mr_tensor_fill(w, 1.0f);
    mr_tensor_fill(b, 2.0f);

    /* loss = sum(w + b) over [2, 3]: each w element gets 1, each b gets 2. */
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *loss = mr_tensor_sum(ctx, mr_tensor_add(ctx, w, b), MR_AXIS_ALL, false);
    CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
    float expected[9] = {1, 1, 1, 1, 1, 1, 2, 2, 2};
    CHECK_ARRAY_NEAR(mr_paramset_flat(ps)->grad, expected, 9, 0, 0);

    mr_paramset_zero_grad(ps);
    CHECK_NEAR(mr_paramset_flat(ps)->grad[7], 0.0, 0);
    mr_ctx_free(ctx);
    mr_paramset_free(ps);
}

static void params_reject_bad_declarations(void) {
    mr_error err;
    mr_paramset *ps = mr_paramset_create();
    int64_t shape[1] = {4};
    int64_t huge[2] = {(int64_t)1 << 30, (int64_t)1 << 30};
    CHECK_INT_EQ(mr_paramset_declare(ps, "a", 1, shape, &err), 0);
    CHECK_INT_EQ(mr_paramset_declare(ps, "a", 1, shape, &err), -1);
    CHECK(strstr(err.message, "declared twice") != NULL);
    CHECK_INT_EQ(mr_paramset_declare(ps, "", 1, shape, &err), -1);
    CHECK_INT_EQ(mr_paramset_declare(ps, "big", 2, huge, &err), -1);
    CHECK_STATUS(err.status, MR_ERR_SHAPE);
    CHECK_STATUS(mr_paramset_finalize(ps, &err), MR_OK);
    CHECK_INT_EQ(mr_paramset_declare(ps, "late", 1, shape, &err), -1);
    CHECK_STATUS(err.status, MR_ERR_STATE);
    mr_paramset_free(ps);
}

static void params_checkpoint_round_trip(void) {
    char path[] = "/tmp/mr_params_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    mr_error err;

    mr_paramset *saved = make_set(2, true);
    mr_test_fill_uniform(mr_paramset_flat(saved), -1, 1, 3);
    const char *metadata[2] = {"format", "test"};
    CHECK_STATUS(mr_paramset_save(saved, path, metadata, 1, &err), MR_OK);

    /* Strict load into the same layout restores every value. */
    mr_paramset *same = make_set(2, true);
    int loaded = -1;
    CHECK_STATUS(mr_paramset_load(same, path, true, &loaded, &err), MR_OK);
    CHECK_INT_EQ(loaded, 2);
    CHECK_ARRAY_NEAR(mr_paramset_flat(same)->data, mr_paramset_flat(saved)->data, 9, 0, 0);

    /* A larger model loads what the file has and keeps the rest. */
    mr_paramset *larger = mr_paramset_create();
    int64_t w_shape[2] = {2, 3}, extra[1] = {5}, b_shape[1] = {3};
    mr_paramset_declare(larger, "w", 2, w_shape, &err);
    mr_paramset_declare(larger, "adapter", 1, extra, &err);
    mr_paramset_declare(larger, "b", 1, b_shape, &err);
    mr_paramset_finalize(larger, &err);
    mr_tensor_fill(mr_paramset_find(larger, "adapter"), 7.0f);
    CHECK_STATUS(mr_paramset_load(larger, path, true, NULL, &err), MR_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "adapter") != NULL);
    CHECK_STATUS(mr_paramset_load(larger, path, false, &loaded, &err), MR_OK);
    CHECK_INT_EQ(loaded, 2);
    CHECK_NEAR(mr_paramset_find(larger, "adapter")->data[4], 7.0, 0);
    CHECK_ARRAY_NEAR(mr_paramset_find(larger, "b")->data, mr_paramset_find(saved, "b")->data,
                     3, 0, 0);

    /* A shape mismatch names the tensor and changes nothing. */
    mr_paramset *other = make_set(4, true);
    mr_tensor_fill(mr_paramset_flat(other), 5.0f);
    CHECK_STATUS(mr_paramset_load(other, path, false, NULL, &err), MR_ERR_SHAPE);
    CHECK(strstr(err.message, "'w'") != NULL);
    CHECK(strstr(err.message, "[2, 3]") != NULL);
    CHECK(strstr(err.message, "[4, 3]") != NULL);
    CHECK_NEAR(mr_paramset_find(other, "b")->data[0], 5.0, 0);

    mr_paramset_free(saved);
    mr_paramset_free(same);
    mr_paramset_free(larger);
    mr_paramset_free(other);
    unlink(path);
}

int main(void) {
    MR_RUN(params_share_one_buffer);
    MR_RUN(params_gradients_reach_flat);
    MR_RUN(params_reject_bad_declarations);
    MR_RUN(params_checkpoint_round_trip);
    return mr_test_finish();
}

/*
 * Indexing tests: embedding, concat and gather against PyTorch fixtures,
 * finite-difference gradients, hand-computed cases (padding rows, repeated
 * ids) and the errors for bad ids, indices and shapes.
 */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "gradcheck.h"
#include "test.h"

/* The ops only copy and add values, so results match PyTorch up to the
 * rounding of sums of at most three float32 terms. */
#define INDEX_ATOL 1e-6
#define INDEX_RTOL 1e-6

/* ------------------------------------------------------------------------
 * Embedding
 * ------------------------------------------------------------------------ */

static void embedding_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/index.json");
    mr_ctx *ctx = mr_ctx_create(0);
    const char *name = "embedding_padding";
    mr_tensor *weight = mr_fixture_tensor(fixture, ctx, name, "weight");
    mr_tensor *ids = mr_fixture_tensor_i32(fixture, ctx, name, "ids");
    mr_tensor *g = mr_fixture_tensor(fixture, ctx, name, "g");
    mr_tensor *expected_out = mr_fixture_tensor(fixture, ctx, name, "out");
    mr_tensor *expected_grad = mr_fixture_tensor(fixture, ctx, name, "grad_weight");
    int32_t padding_index = (int32_t)mr_fixture_number(fixture, name, "padding_index", -1);
    if (weight == NULL || ids == NULL || g == NULL || expected_out == NULL ||
        expected_grad == NULL) {
        mr_ctx_free(ctx);
        mr_fixture_free(fixture);
        return;
    }
    mr_tensor_set_requires_grad(weight, true);

    mr_tensor *out = mr_tensor_embedding(ctx, weight, ids, padding_index);
    CHECK_CTX_OK(ctx);
    CHECK(out != NULL);
        CHECK(out == NULL || mr_tensor_same_shape(out, expected_out));
    if (out != NULL) {
        CHECK_ARRAY_NEAR(out->data, expected_out->data, mr_tensor_numel(out), 0, 0);
        CHECK_STATUS(mr_tensor_backward(ctx, out, g->data), MR_OK);
        CHECK_ARRAY_NEAR(weight->grad, expected_grad->data, mr_tensor_numel(weight), INDEX_ATOL,
                         INDEX_RTOL);
    }
    mr_ctx_free(ctx);
    mr_fixture_free(fixture);
}

static void embedding_padding_and_repeats(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float values[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* V = 4, C = 2 */
    mr_tensor *weight = mr_tensor_from_f32(ctx, 2, (int64_t[]){4, 2}, values);
    mr_tensor_set_requires_grad(weight, true);
    int32_t id_values[5] = {2, 1, 2, 2, 1};
    mr_tensor *ids = mr_tensor_from_i32(ctx, 1, (int64_t[]){5}, id_values);

    mr_tensor *out = mr_tensor_embedding(ctx, weight, ids, 1);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(out->ndim, 2);
    CHECK_INT_EQ(out->shape[0], 5);
    CHECK_INT_EQ(out->shape[1], 2);
    float expected_out[10] = {5, 6, 0, 0, 5, 6, 5, 6, 0, 0};
    CHECK_ARRAY_NEAR(out->data, expected_out, 10, 0, 0);

    /* Row 2 appears three times and sums three upstream rows. Padding row
     * 1 and the unused rows 0 and 3 get nothing. */
    float seed[10] = {1, 10, 100, 1000, 2, 20, 3, 30, 100, 1000};
    CHECK_STATUS(mr_tensor_backward(ctx, out, seed), MR_OK);
    float expected_grad[8] = {0, 0, 0, 0, 6, 60, 0, 0};
    CHECK_ARRAY_NEAR(weight->grad, expected_grad, 8, 0, 0);
    mr_ctx_free(ctx);
}

static void embedding_scalar_and_3d_ids(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float values[6] = {1, 2, 3, 4, 5, 6}; /* V = 3, C = 2 */
    mr_tensor *weight = mr_tensor_from_f32(ctx, 2, (int64_t[]){3, 2}, values);

    int32_t one = 2;
    mr_tensor *scalar_id = mr_tensor_from_i32(ctx, 0, NULL, &one);
    mr_tensor *row = mr_tensor_embedding(ctx, weight, scalar_id, -1);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(row->ndim, 1);
    CHECK_INT_EQ(row->shape[0], 2);
    CHECK_NEAR(row->data[1], 6.0, 0);

    int32_t id_values[4] = {0, 1, 2, 0};
    mr_tensor *ids = mr_tensor_from_i32(ctx, 3, (int64_t[]){2, 1, 2}, id_values);
    mr_tensor *out = mr_tensor_embedding(ctx, weight, ids, -1);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(out->ndim, 4);
    CHECK_INT_EQ(out->shape[3], 2);
    float expected[8] = {1, 2, 3, 4, 5, 6, 1, 2};
    CHECK_ARRAY_NEAR(out->data, expected, 8, 0, 0);

    /* Four dimensions of ids would give a fifth output dimension. */
    mr_tensor *ids4 = mr_tensor_zeros(ctx, MR_I32, 4, (int64_t[]){1, 1, 1, 1});
    CHECK(mr_tensor_embedding(ctx, weight, ids4, -1) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    mr_ctx_free(ctx);
}

static void embedding_rejects_bad_ids(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *weight = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){7, 3});
    int32_t id_values[6] = {0, 1, 2, 3, 4, 9};
    mr_tensor *ids = mr_tensor_from_i32(ctx, 2, (int64_t[]){2, 3}, id_values);
    CHECK(mr_tensor_embedding(ctx, weight, ids, -1) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    const char *message = mr_ctx_error_message(ctx);
    CHECK(strstr(message, "id 9") != NULL);
    CHECK(strstr(message, "position [1, 2]") != NULL);
    CHECK(strstr(message, "[0, 7)") != NULL);

    mr_ctx_reset(ctx);
    weight = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){7, 3});
    int32_t negative = -1;
    ids = mr_tensor_from_i32(ctx, 1, (int64_t[]){1}, &negative);
    CHECK(mr_tensor_embedding(ctx, weight, ids, -1) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "id -1 at position [0]") != NULL);

    mr_ctx_reset(ctx);
    weight = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){7, 3});
    ids = mr_tensor_zeros(ctx, MR_I32, 1, (int64_t[]){2});
    CHECK(mr_tensor_embedding(ctx, weight, ids, 7) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "padding_index 7") != NULL);
    mr_ctx_free(ctx);
}

typedef struct embedding_case {
    mr_tensor *ids;
    int32_t padding_index;
} embedding_case;

static mr_tensor *build_embedding(mr_ctx *ctx, mr_tensor **in, void *user) {
    const embedding_case *c = user;
    return mr_tensor_embedding(ctx, in[0], c->ids, c->padding_index);
}

static void embedding_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *weight = mr_tensor_new2d(params, MR_F32, 6, 5);
    mr_test_fill_uniform(weight, -1, 1, 1);
    mr_tensor_set_requires_grad(weight, true);

    int32_t ids3[6] = {5, 0, 5, 3, 2, 5};
    int32_t ids1[4] = {1, 1, 4, 0};
    embedding_case cases[] = {
        {mr_tensor_from_i32(params, 3, (int64_t[]){2, 1, 3}, ids3), -1},
        {mr_tensor_from_i32(params, 3, (int64_t[]){2, 1, 3}, ids3), 5},
        {mr_tensor_from_i32(params, 1, (int64_t[]){4}, ids1), 0},
    };
    for (int i = 0; i < 3; i++) {
        char label[32];
        snprintf(label, sizeof label, "embedding case %d", i);
        CHECK_INT_EQ(mr_gradcheck(label, build_embedding, &weight, 1, &cases[i], NULL), 0);
    }
    mr_ctx_free(params);
}

/* Weight gradient of an embedding with many repeated ids and C spanning
 * several column blocks, run with `threads` threads. */
static void embedding_grad_run(int threads, float *grad, int64_t size) {
    mr_threads_set(threads);
    mr_ctx *ctx = mr_ctx_create(0);
    const int64_t vocab = 11, channels = 203, count = 4000;
    mr_tensor *weight = mr_tensor_new2d(ctx, MR_F32, vocab, channels);
    mr_test_fill_uniform(weight, -1, 1, 3);
    mr_tensor_set_requires_grad(weight, true);
    mr_tensor *ids = mr_tensor_new1d(ctx, MR_I32, count);
    for (int64_t i = 0; i < count; i++) {
        ids->idata[i] = (int32_t)((i * 7) % vocab);
    }
    mr_tensor *out = mr_tensor_embedding(ctx, weight, ids, 4);
    float *seed = malloc((size_t)(count * channels) * sizeof *seed);
    for (int64_t i = 0; i < count * channels; i++) {
        seed[i] = 0.1f * (float)((i * 13) % 17) - 0.8f;
    }
    CHECK_STATUS(mr_tensor_backward(ctx, out, seed), MR_OK);
    CHECK_INT_EQ(mr_tensor_numel(weight), size);
    memcpy(grad, weight->grad, (size_t)size * sizeof *grad);
    free(seed);
    mr_ctx_free(ctx);
}

static void embedding_grad_same_on_one_and_two_threads(void) {
    const int64_t size = 11 * 203;
    float *grad1 = malloc((size_t)size * sizeof(float));
    float *grad2 = malloc((size_t)size * sizeof(float));
    int previous = mr_threads_get();
    embedding_grad_run(1, grad1, size);
    embedding_grad_run(2, grad2, size);
    mr_threads_set(previous);
    CHECK(memcmp(grad1, grad2, (size_t)size * sizeof(float)) == 0);

    /* The padding row 4 stays zero although about 1/11 of the ids use it. */
    int64_t nonzero = 0;
    for (int64_t c = 0; c < 203; c++) {
        nonzero += grad1[4 * 203 + c] != 0.0f;
    }
    CHECK_INT_EQ(nonzero, 0);
    free(grad1);
    free(grad2);
}

/* ------------------------------------------------------------------------
 * Concat
 * ------------------------------------------------------------------------ */

static void concat_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/index.json");
    const char *names[] = {"concat_first", "concat_middle", "concat_last"};
    int counts[] = {3, 2, 3};
    for (int c = 0; c < 3; c++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *inputs[3], *expected_grads[3];
        bool loaded = true;
        for (int k = 0; k < counts[c]; k++) {
            char x_name[24], grad_name[24];
            snprintf(x_name, sizeof x_name, "x%d", k);
            snprintf(grad_name, sizeof grad_name, "grad_x%d", k);
            inputs[k] = mr_fixture_tensor(fixture, ctx, names[c], x_name);
            expected_grads[k] = mr_fixture_tensor(fixture, ctx, names[c], grad_name);
            loaded = loaded && inputs[k] != NULL && expected_grads[k] != NULL;
            if (inputs[k] != NULL) {
                mr_tensor_set_requires_grad(inputs[k], true);
            }
        }
        mr_tensor *g = mr_fixture_tensor(fixture, ctx, names[c], "g");
        mr_tensor *expected_out = mr_fixture_tensor(fixture, ctx, names[c], "out");
        int axis = (int)mr_fixture_number(fixture, names[c], "axis", -1);
        if (!loaded || g == NULL || expected_out == NULL) {
            mr_ctx_free(ctx);
            break;
        }

        mr_tensor *out = mr_tensor_concat(ctx, inputs, counts[c], axis);
        CHECK_CTX_OK(ctx);
        CHECK(out != NULL);
        CHECK(out == NULL || mr_tensor_same_shape(out, expected_out));
        if (out != NULL) {
            CHECK_ARRAY_NEAR(out->data, expected_out->data, mr_tensor_numel(out), 0, 0);
            CHECK_STATUS(mr_tensor_backward(ctx, out, g->data), MR_OK);
            for (int k = 0; k < counts[c]; k++) {
                CHECK_ARRAY_NEAR(inputs[k]->grad, expected_grads[k]->data,
                                 mr_tensor_numel(inputs[k]), 0, 0);
            }
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

typedef struct concat_case {
    int n;
    int axis;
} concat_case;

static mr_tensor *build_concat(mr_ctx *ctx, mr_tensor **in, void *user) {
    const concat_case *c = user;
    return mr_tensor_concat(ctx, in, c->n, c->axis);
}

static void concat_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);

    /* Three inputs of different sizes along the first, middle and last
     * axis (the last given as -1). */
    int64_t base[3] = {2, 3, 4};
    int axes[3] = {0, 1, -1};
    int64_t sizes[3] = {1, 3, 2};
    for (int a = 0; a < 3; a++) {
        int axis = axes[a] < 0 ? 3 + axes[a] : axes[a];
        mr_tensor *in[3];
        for (int k = 0; k < 3; k++) {
            int64_t shape[3] = {base[0], base[1], base[2]};
            shape[axis] = sizes[k];
            in[k] = mr_tensor_new(params, MR_F32, 3, shape);
            mr_test_fill_uniform(in[k], -1, 1, 50 + 3 * a + k);
            mr_tensor_set_requires_grad(in[k], true);
        }
        concat_case c = {3, axes[a]};
        char label[32];
        snprintf(label, sizeof label, "concat axis %d", axes[a]);
        CHECK_INT_EQ(mr_gradcheck(label, build_concat, in, 3, &c, NULL), 0);
    }

    /* More inputs than a tensor has source slots, some without gradients. */
    mr_tensor *many[8];
    for (int k = 0; k < 8; k++) {
        many[k] = mr_tensor_new2d(params, MR_F32, 2, 1 + k % 3);
        mr_test_fill_uniform(many[k], -1, 1, 80 + k);
        mr_tensor_set_requires_grad(many[k], k != 2);
    }
    concat_case c = {8, 1};
    CHECK_INT_EQ(mr_gradcheck("concat of 8", build_concat, many, 8, &c, NULL), 0);
    mr_ctx_free(params);
}

static void concat_rejects_mismatch(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *in[3] = {mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){2, 3}),
                        mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){2, 5}),
                        mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){3, 3})};
    mr_tensor *ok = mr_tensor_concat(ctx, in, 2, 1);
    CHECK_CTX_OK(ctx);
    CHECK_INT_EQ(ok->shape[1], 8);

    CHECK(mr_tensor_concat(ctx, in, 3, 1) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    const char *message = mr_ctx_error_message(ctx);
    CHECK(strstr(message, "tensors[2] of shape [3, 3]") != NULL);
    CHECK(strstr(message, "tensors[0] of shape [2, 3]") != NULL);

    mr_ctx_reset(ctx);
    mr_tensor *x = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){2, 3});
    CHECK(mr_tensor_concat(ctx, &x, 1, 2) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "axis 2 is out of range") != NULL);

    mr_ctx_reset(ctx);
    CHECK(mr_tensor_concat(ctx, &x, 0, 0) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    mr_ctx_free(ctx);
}

/* ------------------------------------------------------------------------
 * Gather
 * ------------------------------------------------------------------------ */

static void gather_matches_torch(void) {
    mr_fixture *fixture = mr_fixture_load("fixtures/index.json");
    const char *names[] = {"gather_axis0", "gather_axis1", "gather_last"};
    for (int c = 0; c < 3; c++) {
        mr_ctx *ctx = mr_ctx_create(0);
        mr_tensor *a = mr_fixture_tensor(fixture, ctx, names[c], "a");
        mr_tensor *index = mr_fixture_tensor_i32(fixture, ctx, names[c], "index");
        mr_tensor *g = mr_fixture_tensor(fixture, ctx, names[c], "g");
        mr_tensor *expected_out = mr_fixture_tensor(fixture, ctx, names[c], "out");
        mr_tensor *expected_grad = mr_fixture_tensor(fixture, ctx, names[c], "grad_a");
        int axis = (int)mr_fixture_number(fixture, names[c], "axis", -1);
        if (a == NULL || index == NULL || g == NULL || expected_out == NULL ||
            expected_grad == NULL) {
            mr_ctx_free(ctx);
            break;
        }
        mr_tensor_set_requires_grad(a, true);

        mr_tensor *out = mr_tensor_gather(ctx, a, axis, index);
        CHECK_CTX_OK(ctx);
        CHECK(out != NULL);
        CHECK(out == NULL || mr_tensor_same_shape(out, expected_out));
        if (out != NULL) {
            CHECK_ARRAY_NEAR(out->data, expected_out->data, mr_tensor_numel(out), 0, 0);
            CHECK_STATUS(mr_tensor_backward(ctx, out, g->data), MR_OK);
            CHECK_ARRAY_NEAR(a->grad, expected_grad->data, mr_tensor_numel(a), INDEX_ATOL,
                             INDEX_RTOL);
        }
        mr_ctx_free(ctx);
    }
    mr_fixture_free(fixture);
}

static void gather_values_by_hand(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float values[6] = {1, 2, 3, 4, 5, 6}; /* [[1, 2, 3], [4, 5, 6]] */
    mr_tensor *a = mr_tensor_from_f32(ctx, 2, (int64_t[]){2, 3}, values);
    mr_tensor_set_requires_grad(a, true);

    /* Axis 1: out[i][j] = a[i][index[i][j]], a top-k style pick per row. */
    int32_t along_rows[4] = {2, 2, 0, 1};
    mr_tensor *index = mr_tensor_from_i32(ctx, 2, (int64_t[]){2, 2}, along_rows);
    mr_tensor *out = mr_tensor_gather(ctx, a, -1, index);
    CHECK_CTX_OK(ctx);
    float expected[4] = {3, 3, 4, 5};
    CHECK_ARRAY_NEAR(out->data, expected, 4, 0, 0);
    float seed[4] = {1, 10, 100, 1000};
    CHECK_STATUS(mr_tensor_backward(ctx, out, seed), MR_OK);
    float expected_grad[6] = {0, 0, 11, 100, 1000, 0};
    CHECK_ARRAY_NEAR(a->grad, expected_grad, 6, 0, 0);

    /* Axis 0 with an index narrower than a: out[i][j] = a[index[i][j]][j]. */
    int32_t along_columns[6] = {1, 0, 1, 1, 0, 0};
    mr_tensor *index0 = mr_tensor_from_i32(ctx, 2, (int64_t[]){3, 2}, along_columns);
    mr_tensor *out0 = mr_tensor_gather(ctx, a, 0, index0);
    CHECK_CTX_OK(ctx);
    float expected0[6] = {4, 2, 4, 5, 1, 2};
    CHECK_ARRAY_NEAR(out0->data, expected0, 6, 0, 0);
    mr_ctx_free(ctx);
}

static void gather_rejects_bad_index(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *a = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){2, 5});
    int32_t values[4] = {0, 4, 5, 1};
    mr_tensor *index = mr_tensor_from_i32(ctx, 2, (int64_t[]){2, 2}, values);
    CHECK(mr_tensor_gather(ctx, a, 1, index) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    const char *message = mr_ctx_error_message(ctx);
    CHECK(strstr(message, "index value 5 at position [1, 0]") != NULL);
    CHECK(strstr(message, "[0, 5)") != NULL);

    /* Index wider than a off the axis. */
    mr_ctx_reset(ctx);
    a = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){2, 5});
    index = mr_tensor_zeros(ctx, MR_I32, 2, (int64_t[]){3, 1});
    CHECK(mr_tensor_gather(ctx, a, 1, index) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "index of shape [3, 1]") != NULL);

    /* Index with fewer dimensions than a. */
    mr_ctx_reset(ctx);
    a = mr_tensor_zeros(ctx, MR_F32, 2, (int64_t[]){2, 5});
    index = mr_tensor_zeros(ctx, MR_I32, 1, (int64_t[]){2});
    CHECK(mr_tensor_gather(ctx, a, 1, index) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    mr_ctx_free(ctx);
}

typedef struct gather_case {
    int axis;
    mr_tensor *index;
    bool transpose; /* gather from a transposed view of the input */
} gather_case;

static mr_tensor *build_gather(mr_ctx *ctx, mr_tensor **in, void *user) {
    const gather_case *c = user;
    mr_tensor *a = in[0];
    if (c->transpose) {
        a = mr_tensor_transpose(ctx, a, 0, -1);
    }
    return mr_tensor_gather(ctx, a, c->axis, c->index);
}

/* An I32 tensor of this shape with values in [0, limit) and repeats. */
static mr_tensor *random_index(mr_ctx *ctx, int ndim, const int64_t *shape, int32_t limit,
                               uint64_t seed) {
    mr_tensor *index = mr_tensor_new(ctx, MR_I32, ndim, shape);
    mr_rng rng;
    mr_rng_init(&rng, seed);
    for (int64_t i = 0; i < mr_tensor_numel(index); i++) {
        index->idata[i] = (int32_t)mr_rng_below(&rng, (uint64_t)limit);
    }
    return index;
}

static void gather_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    struct {
        int64_t a[4], index[4];
        int ndim, axis;
        bool transpose;
    } cases[] = {
        {{3, 5, 7}, {3, 4, 7}, 3, 1, false},
        {{3, 5, 7}, {6, 5, 2}, 3, 0, false},
        {{3, 5, 7}, {2, 3, 9}, 3, -1, false},
        {{2, 1, 3, 4}, {2, 1, 3, 5}, 4, 3, false},
        {{1}, {3}, 1, 0, false},
        {{4, 3}, {3, 6}, 2, 1, true}, /* a is the [3, 4] transpose */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_tensor *a = mr_tensor_new(params, MR_F32, cases[i].ndim, cases[i].a);
        mr_test_fill_uniform(a, -1, 1, 60 + i);
        mr_tensor_set_requires_grad(a, true);
        int axis = cases[i].axis < 0 ? cases[i].ndim + cases[i].axis : cases[i].axis;
        int64_t limit = cases[i].transpose ? cases[i].a[cases[i].ndim - 1 - axis]
                                           : cases[i].a[axis];
        gather_case c = {cases[i].axis,
                         random_index(params, cases[i].ndim, cases[i].index, (int32_t)limit,
                                      70 + i),
                         cases[i].transpose};
        char label[32];
        snprintf(label, sizeof label, "gather case %zu", i);
        CHECK_INT_EQ(mr_gradcheck(label, build_gather, &a, 1, &c, NULL), 0);
    }
    mr_ctx_free(params);
}

int main(void) {
    MR_RUN(embedding_matches_torch);
    MR_RUN(embedding_padding_and_repeats);
    MR_RUN(embedding_scalar_and_3d_ids);
    MR_RUN(embedding_rejects_bad_ids);
    MR_RUN(embedding_gradients);
    MR_RUN(embedding_grad_same_on_one_and_two_threads);
    MR_RUN(concat_matches_torch);
    MR_RUN(concat_gradients);
    MR_RUN(concat_rejects_mismatch);
    MR_RUN(gather_matches_torch);
    MR_RUN(gather_values_by_hand);
    MR_RUN(gather_rejects_bad_index);
    MR_RUN(gather_gradients);
    return mr_test_finish();
}

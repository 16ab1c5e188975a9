/*
 * Core engine tests: the arena, views, autodiff bookkeeping, matmul,
 * broadcasting arithmetic and reductions, each against hand-computed
 * values or finite differences.
 */
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "internal.h"
#include "test.h"

/* ------------------------------------------------------------------------ */

static void arena_reuses_memory_after_reset(void) {
    mr_ctx *ctx = mr_ctx_create(4096);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 50; i++) {
            CHECK(mr_tensor_new2d(ctx, MR_F32, 64, 64) != NULL);
        }
        uint64_t before = mr_ctx_system_allocations(ctx);
        mr_ctx_reset(ctx);
        if (step >= 1) {
            /* The first reset merged the chunks; later steps fit. */
            CHECK_INT_EQ(mr_ctx_system_allocations(ctx), before);
        }
    }
    CHECK(mr_ctx_capacity_bytes(ctx) >= 50 * 64 * 64 * sizeof(float));
    mr_ctx_free(ctx);
}

static void tensor_rejects_huge_shape(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int64_t shape[4] = {1 << 20, 1 << 20, 1 << 20, 4};
    CHECK(mr_tensor_new(ctx, MR_F32, 4, shape) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(ctx), "[1048576, 1048576, 1048576, 4]") != NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "2^40") != NULL);

    /* Later operations see NULL and keep the first error. */
    CHECK(mr_tensor_add(ctx, NULL, NULL) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "2^40") != NULL);
    mr_ctx_free(ctx);
}

static void views_share_data(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float values[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[2] = {2, 3};
    mr_tensor *a = mr_tensor_from_f32(ctx, 2, shape, values);

    mr_tensor *t = mr_tensor_transpose(ctx, a, 0, 1);
    CHECK_INT_EQ(t->shape[0], 3);
    CHECK_INT_EQ(t->shape[1], 2);
    CHECK(!mr_tensor_is_contiguous(t));
    CHECK(t->data == a->data);
    CHECK_NEAR(mr_tensor_get(t, 1), 3.0, 0);  /* t[0][1] = a[1][0] */

    mr_tensor *s = mr_tensor_slice(ctx, a, 1, 1, 2);
    CHECK_NEAR(mr_tensor_get(s, 0), 1.0, 0);
    CHECK_NEAR(mr_tensor_get(s, 3), 5.0, 0);

    int64_t flat[1] = {-1};
    mr_tensor *r = mr_tensor_reshape(ctx, a, 1, flat);
    CHECK_INT_EQ(r->shape[0], 6);
    CHECK(r->data == a->data);

    /* Reshaping a transposed view copies. */
    mr_tensor *rt = mr_tensor_reshape(ctx, t, 1, flat);
    CHECK(rt->data != a->data);
    float expected[6] = {0, 3, 1, 4, 2, 5};
    CHECK_ARRAY_NEAR(rt->data, expected, 6, 0, 0);

    int64_t bad[2] = {4, 2};
    CHECK(mr_tensor_reshape(ctx, a, 2, bad) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    mr_ctx_free(ctx);
}

/* Naive reference for op(A) @ op(B) on one 2-D pair. */
static void reference_matmul(const float *a, const float *b, float *c, int m,
                             int n, int k, bool ta, bool tb) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double sum = 0;
            for (int p = 0; p < k; p++) {
                float av = ta ? a[p * m + i] : a[i * k + p];
                float bv = tb ? b[j * k + p] : b[p * n + j];
                sum += (double)av * bv;
            }
            c[i * n + j] = (float)sum;
        }
    }
}

static void matmul_matches_reference(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    int m = 7, n = 5, k = 3;
    for (int flags = 0; flags < 4; flags++) {
        bool ta = flags & MR_MATMUL_TRANS_A, tb = flags & MR_MATMUL_TRANS_B;
        mr_tensor *a = ta ? mr_tensor_new2d(ctx, MR_F32, k, m) : mr_tensor_new2d(ctx, MR_F32, m, k);
        mr_tensor *b = tb ? mr_tensor_new2d(ctx, MR_F32, n, k) : mr_tensor_new2d(ctx, MR_F32, k, n);
        mr_test_fill_uniform(a, -1, 1, 1);
        mr_test_fill_uniform(b, -1, 1, 2);
        mr_tensor *c = mr_tensor_matmul(ctx, a, b, flags);
        CHECK_CTX_OK(ctx);
        float expected[35];
        reference_matmul(a->data, b->data, expected, m, n, k, ta, tb);
        CHECK_ARRAY_NEAR(c->data, expected, m * n, 1e-5, 1e-5);
    }

    /* A transposed view goes to BLAS without a copy and gives the same. */
    mr_tensor *a = mr_tensor_new2d(ctx, MR_F32, k, m);
    mr_tensor *b = mr_tensor_new2d(ctx, MR_F32, k, n);
    mr_test_fill_uniform(a, -1, 1, 3);
    mr_test_fill_uniform(b, -1, 1, 4);
    mr_tensor *c1 = mr_tensor_matmul(ctx, mr_tensor_transpose(ctx, a, 0, 1), b, 0);
    mr_tensor *c2 = mr_tensor_matmul(ctx, a, b, MR_MATMUL_TRANS_A);
    CHECK_ARRAY_NEAR(c1->data, c2->data, m * n, 0, 0);

    /* Mismatched inner dimensions. */
    CHECK(mr_tensor_matmul(ctx, a, b, 0) == NULL);
    CHECK_STATUS(mr_ctx_status(ctx), MR_ERR_SHAPE);
    CHECK(strstr(mr_ctx_error_message(ctx), "inner dimensions") != NULL);
    mr_ctx_free(ctx);
}

typedef struct matmul_case {
    int flags;
    bool transpose_view_b;
} matmul_case;

static mr_tensor *build_matmul(mr_ctx *ctx, mr_tensor **in, void *user) {
    matmul_case *c = user;
    mr_tensor *b = in[1];
    if (c->transpose_view_b) {
        b = mr_tensor_transpose(ctx, b, -1, -2);
    }
    return mr_tensor_matmul(ctx, in[0], b, c->flags);
}

static void matmul_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    struct {
        int64_t a[4], b[4];
        int na, nb;
        matmul_case c;
    } cases[] = {
        {{3, 4}, {4, 5}, 2, 2, {0, false}},
        {{4, 3}, {4, 5}, 2, 2, {MR_MATMUL_TRANS_A, false}},
        {{3, 4}, {5, 4}, 2, 2, {MR_MATMUL_TRANS_B, false}},
        {{4, 3}, {5, 4}, 2, 2, {MR_MATMUL_TRANS_A | MR_MATMUL_TRANS_B, false}},
        {{2, 3, 3, 4}, {4, 5}, 4, 2, {0, false}},               /* shared b, folded */
        {{2, 3, 4}, {2, 5, 4}, 3, 3, {MR_MATMUL_TRANS_B, false}},/* batched */
        {{2, 4, 3}, {2, 4, 5}, 3, 3, {MR_MATMUL_TRANS_A, false}},
        {{2, 3, 4}, {2, 4, 5}, 3, 3, {MR_MATMUL_TRANS_B, true}}, /* view of b */
        {{3, 2, 4}, {4, 1}, 3, 2, {0, false}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mr_tensor *in[2] = {mr_tensor_new(params, MR_F32, cases[i].na, cases[i].a),
                            mr_tensor_new(params, MR_F32, cases[i].nb, cases[i].b)};
        mr_test_fill_uniform(in[0], -1, 1, 10 + i);
        mr_test_fill_uniform(in[1], -1, 1, 20 + i);
        mr_tensor_set_requires_grad(in[0], true);
        mr_tensor_set_requires_grad(in[1], true);
        char label[32];
        snprintf(label, sizeof label, "matmul case %zu", i);
        CHECK_INT_EQ(mr_gradcheck(label, build_matmul, in, 2, &cases[i].c, NULL), 0);
    }
    mr_ctx_free(params);
}

static void add_broadcast_values(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float av[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {10, 20, 30}, cv[2] = {100, 200};
    int64_t sa[2] = {2, 3}, sb[1] = {3}, sc[2] = {2, 1};
    mr_tensor *a = mr_tensor_from_f32(ctx, 2, sa, av);
    mr_tensor *b = mr_tensor_from_f32(ctx, 1, sb, bv);
    mr_tensor *c = mr_tensor_from_f32(ctx, 2, sc, cv);

    mr_tensor *ab = mr_tensor_add(ctx, a, b);
    float e1[6] = {11, 22, 33, 14, 25, 36};
    CHECK_ARRAY_NEAR(ab->data, e1, 6, 0, 0);
    mr_tensor *ac = mr_tensor_mul(ctx, a, c);
    float e2[6] = {100, 200, 300, 800, 1000, 1200};
    CHECK_ARRAY_NEAR(ac->data, e2, 6, 0, 0);

    mr_tensor *bad = mr_tensor_new1d(ctx, MR_F32, 4);
    CHECK(mr_tensor_sub(ctx, a, bad) == NULL);
    CHECK(strstr(mr_ctx_error_message(ctx), "do not broadcast") != NULL);
    mr_ctx_free(ctx);
}

typedef struct binary_case {
    int kind;
} binary_case;

static mr_tensor *build_binary(mr_ctx *ctx, mr_tensor **in, void *user) {
    switch (((binary_case *)user)->kind) {
    case 0: return mr_tensor_add(ctx, in[0], in[1]);
    case 1: return mr_tensor_sub(ctx, in[0], in[1]);
    case 2: return mr_tensor_mul(ctx, in[0], in[1]);
    case 3: return mr_tensor_div(ctx, in[0], in[1]);
    case 4: return mr_tensor_scale(ctx, in[0], -2.5f);
    default: return mr_tensor_add_scalar(ctx, in[0], 3.0f);
    }
}

static void arithmetic_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    int64_t shapes[][2][4] = {
        {{2, 3, 5}, {2, 3, 5}},
        {{2, 3, 5}, {5}},
        {{2, 1, 5}, {3, 1}},
        {{4, 1, 3, 2}, {1, 5, 1, 2}},
        {{3}, {2, 3}},
    };
    int ndims[][2] = {{3, 3}, {3, 1}, {3, 2}, {4, 4}, {1, 2}};
    for (int s = 0; s < 5; s++) {
        for (int kind = 0; kind < 6; kind++) {
            mr_tensor *in[2] = {mr_tensor_new(params, MR_F32, ndims[s][0], shapes[s][0]),
                                mr_tensor_new(params, MR_F32, ndims[s][1], shapes[s][1])};
            mr_test_fill_uniform(in[0], -1, 1, 100 + s);
            /* Keep divisors away from zero. */
            mr_test_fill_uniform(in[1], 0.5f, 2.0f, 200 + s);
            mr_tensor_set_requires_grad(in[0], true);
            mr_tensor_set_requires_grad(in[1], kind < 4);
            binary_case c = {kind};
            char label[48];
            snprintf(label, sizeof label, "binary kind %d shape case %d", kind, s);
            CHECK_INT_EQ(mr_gradcheck(label, build_binary, in, 2, &c, NULL), 0);
        }
    }
    mr_ctx_free(params);
}

typedef struct reduce_case {
    int axis;
    bool keepdim, mean;
} reduce_case;

static mr_tensor *build_reduce(mr_ctx *ctx, mr_tensor **in, void *user) {
    reduce_case *c = user;
    return c->mean ? mr_tensor_mean(ctx, in[0], c->axis, c->keepdim)
                   : mr_tensor_sum(ctx, in[0], c->axis, c->keepdim);
}

static void reduce_values_and_gradients(void) {
    mr_ctx *ctx = mr_ctx_create(0);
    float v[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    mr_tensor *a = mr_tensor_from_f32(ctx, 2, shape, v);
    mr_tensor *s0 = mr_tensor_sum(ctx, a, 0, false);
    float e0[3] = {5, 7, 9};
    CHECK_ARRAY_NEAR(s0->data, e0, 3, 0, 0);
    mr_tensor *m1 = mr_tensor_mean(ctx, a, -1, true);
    CHECK_INT_EQ(m1->ndim, 2);
    CHECK_INT_EQ(m1->shape[1], 1);
    float e1[2] = {2, 5};
    CHECK_ARRAY_NEAR(m1->data, e1, 2, 1e-6, 0);
    mr_tensor *all = mr_tensor_sum(ctx, a, MR_AXIS_ALL, false);
    CHECK_INT_EQ(all->ndim, 0);
    CHECK_NEAR(all->data[0], 21.0, 0);

    int64_t s4[4] = {2, 3, 4, 5};
    mr_tensor *x = mr_tensor_new(ctx, MR_F32, 4, s4);
    mr_test_fill_uniform(x, -1, 1, 5);
    mr_tensor_set_requires_grad(x, true);
    reduce_case cases[] = {{0, false, false}, {1, true, true}, {-1, false, true},
                           {2, false, false}, {MR_AXIS_ALL, false, true}};
    for (int i = 0; i < 5; i++) {
        char label[32];
        snprintf(label, sizeof label, "reduce case %d", i);
        CHECK_INT_EQ(mr_gradcheck(label, build_reduce, &x, 1, &cases[i], NULL), 0);
    }
    mr_ctx_free(ctx);
}

/* Gradients through slice, permute and reshape views land in the original. */
static mr_tensor *build_views(mr_ctx *ctx, mr_tensor **in, void *user) {
    (void)user;
    int perm[3] = {2, 0, 1};
    mr_tensor *p = mr_tensor_permute(ctx, in[0], perm);       /* [4, 2, 3] */
    mr_tensor *s = mr_tensor_slice(ctx, p, 0, 1, 2);          /* [2, 2, 3] */
    int64_t shape[2] = {4, 3};
    mr_tensor *r = mr_tensor_reshape(ctx, s, 2, shape);       /* copy, then view */
    return mr_tensor_mul(ctx, r, r);
}

static void view_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    int64_t shape[3] = {2, 3, 4};
    mr_tensor *x = mr_tensor_new(params, MR_F32, 3, shape);
    mr_test_fill_uniform(x, -1, 1, 7);
    mr_tensor_set_requires_grad(x, true);
    CHECK_INT_EQ(mr_gradcheck("views", build_views, &x, 1, NULL, NULL), 0);
    mr_ctx_free(params);
}

static void params_accumulate_gradients(void) {
    mr_ctx *params = mr_ctx_create(0);
    mr_ctx *ctx = mr_ctx_create(0);
    mr_tensor *w = mr_tensor_new1d(params, MR_F32, 3);
    mr_tensor_fill(w, 2.0f);
    CHECK_STATUS(mr_tensor_set_param(w), MR_OK);

    for (int step = 0; step < 2; step++) {
        /* loss = sum(w * w) so dloss/dw = 2w = 4 per pass. */
        mr_tensor *loss = mr_tensor_sum(ctx, mr_tensor_mul(ctx, w, w), MR_AXIS_ALL, false);
        CHECK_STATUS(mr_tensor_backward(ctx, loss, NULL), MR_OK);
        mr_ctx_reset(ctx);
    }
    float expected[3] = {8, 8, 8};
    CHECK_ARRAY_NEAR(w->grad, expected, 3, 0, 0);
    mr_tensor_zero_grad(w);
    CHECK_NEAR(w->grad[0], 0.0, 0);

    /* With recording off nothing goes on the tape. */
    mr_ctx_set_grad_enabled(ctx, false);
    mr_tensor *y = mr_tensor_mul(ctx, w, w);
    CHECK(!mr_tensor_requires_grad(y));
    CHECK_STATUS(mr_tensor_backward(ctx, mr_tensor_sum(ctx, y, MR_AXIS_ALL, false), NULL),
                 MR_ERR_STATE);
    mr_ctx_free(ctx);
    mr_ctx_free(params);
}

static void param_views_share_gradient(void) {
    mr_ctx *params = mr_ctx_create(0);
    mr_tensor *flat = mr_tensor_zeros(params, MR_F32, 1, (int64_t[]){6});
    mr_tensor *plain = mr_tensor_zeros(params, MR_F32, 1, (int64_t[]){6});
    CHECK_STATUS(mr_tensor_set_param(flat), MR_OK);

    /* A contiguous window of a parameter becomes a parameter itself. */
    mr_tensor *window = mr_tensor_slice(params, flat, 0, 2, 3);
    CHECK_STATUS(mr_tensor_set_param(window), MR_OK);
    CHECK(window->grad == flat->grad + 2);

    /* A view of a tensor that is not a parameter is rejected. */
    mr_tensor *other = mr_tensor_slice(params, plain, 0, 0, 2);
    CHECK_STATUS(mr_tensor_set_param(other), MR_ERR_INVALID_ARGUMENT);
    CHECK(strstr(mr_ctx_error_message(params), "contiguous views") != NULL);
    mr_ctx_free(params);
}

/* Column sums over 70 columns (two full blocks and a partial one) equal
 * a double sum in row order, on one thread and on three. */
static void column_sums_match_row_order(void) {
    enum { ROWS = 37, COLS = 70 };
    float m[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) {
        m[i] = (float)((i * 7919) % 1000) / 997.0f - 0.5f;
    }
    float expected[COLS];
    for (int c = 0; c < COLS; c++) {
        double sum = 0.0;
        for (int r = 0; r < ROWS; r++) {
            sum += m[r * COLS + c];
        }
        expected[c] = 1.0f + (float)sum;
    }

    int previous = mr_threads_get();
    int thread_counts[2] = {1, 3};
    for (int run = 0; run < 2; run++) {
        mr_threads_set(thread_counts[run]);
        float out[COLS];
        for (int c = 0; c < COLS; c++) {
            out[c] = 1.0f;
        }
        mr_add_column_sums(m, ROWS, COLS, out);
        CHECK_INT_EQ(memcmp(out, expected, sizeof out), 0);
    }
    mr_threads_set(previous);
}

static void json_cut_short_cases(void) {
    CHECK(mr_json_cut_short("{\"a\": \"b"));
    CHECK(mr_json_cut_short("{\"a\": \"x\\\""));
    CHECK(mr_json_cut_short("[1, [2]"));
    CHECK(!mr_json_cut_short("{\"a\": 1}"));
    CHECK(!mr_json_cut_short("{\"a\": \"}\"}"));
    CHECK(!mr_json_cut_short("{\"a\": 1}}"));
    CHECK(!mr_json_cut_short(""));
}

int main(void) {
    MR_RUN(arena_reuses_memory_after_reset);
    MR_RUN(tensor_rejects_huge_shape);
    MR_RUN(views_share_data);
    MR_RUN(matmul_matches_reference);
    MR_RUN(matmul_gradients);
    MR_RUN(add_broadcast_values);
    MR_RUN(arithmetic_gradients);
    MR_RUN(reduce_values_and_gradients);
    MR_RUN(column_sums_match_row_order);
    MR_RUN(json_cut_short_cases);
    MR_RUN(view_gradients);
    MR_RUN(params_accumulate_gradients);
    MR_RUN(param_views_share_gradient);
    return mr_test_finish();
}

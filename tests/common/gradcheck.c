/* Central-difference gradient checks; see gradcheck.h. */
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "test.h"

/* L = sum(out * r) in double, from a forward pass without recording. */
static double objective(mr_ctx *ctx, mr_gradcheck_build_fn build,
                        mr_tensor **inputs, void *user, const float *r,
                        bool *ok) {
    mr_ctx_reset(ctx);
    mr_ctx_set_grad_enabled(ctx, false);
    mr_tensor *out = build(ctx, inputs, user);
    if (out == NULL || mr_ctx_status(ctx) != MR_OK) {
        *ok = false;
        return 0.0;
    }
    double sum = 0.0;
    int64_t count = mr_tensor_numel(out);
    for (int64_t i = 0; i < count; i++) {
        sum += (double)mr_tensor_get(out, i) * r[i];
    }
    return sum;
}

int mr_gradcheck(const char *label, mr_gradcheck_build_fn build,
                 mr_tensor **inputs, int n_inputs, void *user,
                 const mr_gradcheck_options *options) {
    mr_gradcheck_options opt = {1e-3, 1e-3, 1e-2, 0};
    if (options != NULL) {
        opt = *options;
        if (opt.eps == 0) opt.eps = 1e-3;
        if (opt.atol == 0) opt.atol = 1e-3;
        if (opt.rtol == 0) opt.rtol = 1e-2;
    }

    /* Analytic pass, seeded with r. */
    mr_ctx *ctx = mr_ctx_create(0);
    for (int i = 0; i < n_inputs; i++) {
        mr_tensor_zero_grad(inputs[i]);
    }
    mr_tensor *out = build(ctx, inputs, user);
    if (out == NULL || mr_ctx_status(ctx) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "%s: forward failed: %s", label,
                     mr_ctx_error_message(ctx));
        mr_ctx_free(ctx);
        return 1;
    }
    int64_t out_count = mr_tensor_numel(out);
    float *r = malloc((size_t)(out_count > 0 ? out_count : 1) * sizeof *r);
    mr_rng rng;
    mr_rng_init(&rng, 1234);
    for (int64_t i = 0; i < out_count; i++) {
        r[i] = 2.0f * mr_rng_uniform(&rng) - 1.0f;
    }
    if (mr_tensor_backward(ctx, out, r) != MR_OK) {
        mr_test_fail(__FILE__, __LINE__, "%s: backward failed: %s", label,
                     mr_ctx_error_message(ctx));
        free(r);
        mr_ctx_free(ctx);
        return 1;
    }

    /* Numerical pass, element by element. */
    int mismatches = 0;
    for (int i = 0; i < n_inputs; i++) {
        mr_tensor *x = inputs[i];
        if (!mr_tensor_requires_grad(x)) {
            continue;
        }
        int64_t count = mr_tensor_numel(x);
        float *analytic = calloc((size_t)(count > 0 ? count : 1), sizeof *analytic);
        if (x->grad != NULL) {
            memcpy(analytic, x->grad, (size_t)count * sizeof *analytic);
        }
        int64_t step = 1;
        if (opt.max_elements > 0 && count > opt.max_elements) {
            step = (count + opt.max_elements - 1) / opt.max_elements;
        }
        for (int64_t j = 0; j < count; j += step) {
            float saved = x->data[j];
            bool ok = true;
            x->data[j] = saved + (float)opt.eps;
            double plus = objective(ctx, build, inputs, user, r, &ok);
            x->data[j] = saved - (float)opt.eps;
            double minus = objective(ctx, build, inputs, user, r, &ok);
            x->data[j] = saved;
            /* Divide by the step actually taken in float32. */
            double h = (double)(saved + (float)opt.eps) - (double)(saved - (float)opt.eps);
            double numeric = (plus - minus) / h;
            double diff = fabs(analytic[j] - numeric);
            if (!ok || !(diff <= opt.atol + opt.rtol * fabs(numeric))) {
                if (mismatches < 8) {
                    mr_test_fail(__FILE__, __LINE__,
                                 "%s: input %d element %lld: analytic %.6g, numeric %.6g%s",
                                 label, i, (long long)j, analytic[j], numeric,
                                 ok ? "" : " (forward failed)");
                }
                mismatches++;
            }
        }
        free(analytic);
    }
    mr_ctx_set_grad_enabled(ctx, true);
    free(r);
    mr_ctx_free(ctx);
    return mismatches;
}

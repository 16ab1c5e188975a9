/*
 * The engine's inline exp, erf, tanh and logistic function against libm:
 * error bounds over their ranges and the special values.
 */
#include <math.h>

#include "fastmath.h"
#include "test.h"

/* Units in the last place between a and the reference b. */
static double ulp_error(float a, float b) {
    float step = nextafterf(b, INFINITY) - b;
    return fabs((double)a - (double)b) / (double)step;
}

/* The largest error in ulp seen so far, and the input that gave it. */
typedef struct worst_error {
    double ulp;
    float x;
} worst_error;

/* Records the error of value against reference at input x. */
static void worst_error_add(worst_error *worst, float x, float value, float reference) {
    double error = ulp_error(value, reference);
    if (error > worst->ulp) {
        worst->ulp = error;
        worst->x = x;
    }
}

/* Fails the running test when the worst error of name exceeds bound ulp. */
#define CHECK_WORST(name, worst, bound)                                              \
    do {                                                                             \
        if ((worst).ulp > (bound)) {                                                 \
            mr_test_fail(__FILE__, __LINE__, "%s is %.2f ulp off at x = %.9g", name, \
                         (worst).ulp, (double)(worst).x);                            \
        }                                                                            \
    } while (0)

static void expf_within_two_ulp(void) {
    worst_error worst = {0.0, 0.0f};
    /* 400,000 evenly spaced inputs in [-87, 88], plus every float near 0. */
    for (int i = 0; i <= 400000; i++) {
        float x = -87.0f + 175.0f * (float)i / 400000.0f;
        worst_error_add(&worst, x, mr_expf(x), expf(x));
    }
    for (float x = -1e-3f; x < 1e-3f; x = nextafterf(x, 1.0f) + 1e-9f) {
        worst_error_add(&worst, x, mr_expf(x), expf(x));
    }
    CHECK_WORST("mr_expf", worst, 2.0);
}

static void expf_special_values(void) {
    CHECK_NEAR(mr_expf(0.0f), 1.0, 0);
    CHECK(mr_expf(-INFINITY) == 0.0f);
    CHECK(mr_expf(-100.0f) == 0.0f);
    CHECK(isinf(mr_expf(INFINITY)));
    CHECK(isinf(mr_expf(100.0f)));
    CHECK(isnan(mr_expf(NAN)));
    CHECK(isfinite(mr_expf(88.7f)));
    CHECK(mr_expf(88.7f) > 3.0e38f);
}

static void erff_within_1e6(void) {
    double worst = 0.0;
    for (float x = -8.0f; x <= 8.0f; x += 1.0f / 1024.0f) {
        double error = fabs((double)mr_erff(x) - erf((double)x));
        worst = error > worst ? error : worst;
    }
    CHECK(worst < 1e-6);
    CHECK_NEAR(mr_erff(0.0f), 0.0, 1e-7);
    CHECK_NEAR(mr_erff(INFINITY), 1.0, 0);
    CHECK_NEAR(mr_erff(-INFINITY), -1.0, 0);
}

static void tanhf_within_three_ulp(void) {
    worst_error worst = {0.0, 0.0f};
    /* 400,000 evenly spaced inputs in [-20, 20], then a geometric sweep
     * from 1e-30 to 1, where the series and the exp formula meet. */
    for (int i = 0; i <= 400000; i++) {
        float x = -20.0f + 40.0f * (float)i / 400000.0f;
        worst_error_add(&worst, x, mr_tanhf(x), (float)tanh((double)x));
    }
    for (float x = 1e-30f; x < 1.0f; x *= 1.001f) {
        worst_error_add(&worst, x, mr_tanhf(x), (float)tanh((double)x));
    }
    CHECK_WORST("mr_tanhf", worst, 3.0);
}

static void tanhf_special_values(void) {
    CHECK(mr_tanhf(0.0f) == 0.0f);
    CHECK(signbit(mr_tanhf(-0.0f)));
    CHECK(mr_tanhf(INFINITY) == 1.0f);
    CHECK(mr_tanhf(-INFINITY) == -1.0f);
    CHECK(mr_tanhf(50.0f) == 1.0f);
    CHECK(mr_tanhf(-50.0f) == -1.0f);
    CHECK(isnan(mr_tanhf(NAN)));
}

static void sigmoidf_within_three_ulp(void) {
    worst_error worst = {0.0, 0.0f};
    for (int i = 0; i <= 400000; i++) {
        float x = -80.0f + 160.0f * (float)i / 400000.0f;
        worst_error_add(&worst, x, mr_sigmoidf(x), (float)(1.0 / (1.0 + exp(-(double)x))));
    }
    CHECK_WORST("mr_sigmoidf", worst, 3.0);
    CHECK(mr_sigmoidf(0.0f) == 0.5f);
    CHECK(mr_sigmoidf(INFINITY) == 1.0f);
    CHECK(mr_sigmoidf(-INFINITY) == 0.0f);
    CHECK(mr_sigmoidf(-200.0f) == 0.0f);
    CHECK(isnan(mr_sigmoidf(NAN)));
}

int main(void) {
    MR_RUN(expf_within_two_ulp);
    MR_RUN(expf_special_values);
    MR_RUN(erff_within_1e6);
    MR_RUN(tanhf_within_three_ulp);
    MR_RUN(tanhf_special_values);
    MR_RUN(sigmoidf_within_three_ulp);
    return mr_test_finish();
}

/* The test runner behind test.h. */
#include <stdarg.h>
#include <stdlib.h>

#include "test.h"

int mr_test_failures_in_case = 0;
static int cases_passed = 0;
static int cases_failed = 0;
static const char *current_case = "";

void mr_test_fail(const char *file, int line, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "%s:%d: [%s] ", file, line, current_case);
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n");
    va_end(args);
    mr_test_failures_in_case++;
}

void mr_test_run(const char *name, void (*fn)(void)) {
    current_case = name;
    mr_test_failures_in_case = 0;
    fn();
    if (mr_test_failures_in_case == 0) {
        cases_passed++;
        printf("ok   %s\n", name);
    } else {
        cases_failed++;
        printf("FAIL %s (%d failed checks)\n", name, mr_test_failures_in_case);
    }
    fflush(stdout);
}

int mr_test_finish(void) {
    printf("%d passed, %d failed\n", cases_passed, cases_failed);
    return cases_failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int mr_test_compare(const char *file, int line, const char *what,
                    const float *actual, const float *expected, int64_t n,
                    double atol, double rtol) {
    int mismatches = 0;
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double a = actual[i], e = expected[i];
        double diff = fabs(a - e);
        if (!(diff <= atol + rtol * fabs(e))) {
            if (mismatches < 5) {
                mr_test_fail(file, line, "%s[%lld] is %.9g, expected %.9g", what,
                             (long long)i, a, e);
            }
            mismatches++;
        }
        if (diff > worst || isnan(diff)) {
            worst = diff;
        }
    }
    if (mismatches > 0) {
        mr_test_fail(file, line, "%s: %d of %lld values differ; largest difference %.3g",
                     what, mismatches, (long long)n, worst);
    }
    return mismatches;
}

void mr_test_fill_uniform(mr_tensor *t, float low, float high, uint64_t seed) {
    mr_rng rng;
    mr_rng_init(&rng, seed);
    mr_tensor_init_uniform(t, low, high, &rng);
}

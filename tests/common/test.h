/*
 * A minimal test runner for CTest executables. A test file defines static
 * void functions, runs each with MR_RUN(), and returns mr_test_finish()
 * from main. Every failed check prints its file, line and values; the
 * summary line reads "N passed, N failed" and the exit code is nonzero on
 * any failure.
 */
#ifndef MR_TEST_H
#define MR_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "multiround/tensor.h"

/* Number of failed checks in the running test. */
extern int mr_test_failures_in_case;

void mr_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mr_test_run(const char *name, void (*fn)(void));
int mr_test_finish(void);

#define MR_RUN(fn) mr_test_run(#fn, fn)

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            mr_test_fail(__FILE__, __LINE__, "check failed: %s", #cond);   \
        }                                                                  \
    } while (0)

#define CHECK_INT_EQ(actual, expected)                                     \
    do {                                                                   \
        long long actual_ = (long long)(actual);                           \
        long long expected_ = (long long)(expected);                       \
        if (actual_ != expected_) {                                        \
            mr_test_fail(__FILE__, __LINE__, "%s is %lld, expected %lld",  \
                         #actual, actual_, expected_);                     \
        }                                                                  \
    } while (0)

/* |actual - expected| <= tol, and neither is NaN. */
#define CHECK_NEAR(actual, expected, tol)                                  \
    do {                                                                   \
        double actual_ = (double)(actual);                                 \
        double expected_ = (double)(expected);                             \
        if (!(fabs(actual_ - expected_) <= (tol))) {                       \
            mr_test_fail(__FILE__, __LINE__,                               \
                         "%s is %.9g, expected %.9g (tolerance %g)",       \
                         #actual, actual_, expected_, (double)(tol));      \
        }                                                                  \
    } while (0)

#define CHECK_STATUS(actual, expected)                                     \
    do {                                                                   \
        mr_status actual_ = (actual);                                      \
        if (actual_ != (expected)) {                                       \
            mr_test_fail(__FILE__, __LINE__, "%s returned '%s', expected '%s'", \
                         #actual, mr_status_name(actual_),                 \
                         mr_status_name(expected));                        \
        }                                                                  \
    } while (0)

/* Checks that a string equals expected; NULL fails. */
#define CHECK_STR_EQ(actual, expected)                                     \
    do {                                                                   \
        const char *actual_ = (actual);                                    \
        if (actual_ == NULL || strcmp(actual_, (expected)) != 0) {         \
            mr_test_fail(__FILE__, __LINE__, "%s is '%s', expected '%s'",  \
                         #actual, actual_ != NULL ? actual_ : "(null)",    \
                         (expected));                                      \
        }                                                                  \
    } while (0)

/* Checks that ctx holds no error, printing its message if it does. */
#define CHECK_CTX_OK(ctx)                                                  \
    do {                                                                   \
        if (mr_ctx_status(ctx) != MR_OK) {                                 \
            mr_test_fail(__FILE__, __LINE__, "context error: %s",          \
                         mr_ctx_error_message(ctx));                       \
        }                                                                  \
    } while (0)

/*
 * Compares n floats with |a - b| <= atol + rtol * |b|; prints the first few
 * mismatches with their index and returns the number of mismatches.
 */
int mr_test_compare(const char *file, int line, const char *what,
                    const float *actual, const float *expected, int64_t n,
                    double atol, double rtol);

#define CHECK_ARRAY_NEAR(actual, expected, n, atol, rtol)                  \
    mr_test_compare(__FILE__, __LINE__, #actual, (actual), (expected), (n), \
                    (atol), (rtol))

/* Fills t with uniform values in [low, high) from a fixed seed. */
void mr_test_fill_uniform(mr_tensor *t, float low, float high, uint64_t seed);

#endif /* MR_TEST_H */

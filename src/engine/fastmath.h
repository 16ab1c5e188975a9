/*
 * Vectorisable float exp and erf for the engine's kernels.
 *
 * libm's expf and erff are calls the compiler cannot vectorise, and they
 * dominated the non-BLAS time of a training step (cross-entropy over a
 * 4,608-word vocabulary, GELU). These inline versions are plain
 * arithmetic, so loops around them vectorise, and they give the same bits
 * on every machine that runs the same binary.
 *
 * mr_expf: Cody-Waite reduction x = n ln2 + r with |r| <= ln2 / 2, then
 * the degree-6 polynomial of Cephes' expf for e^r, scaled by 2^n through
 * the exponent bits. tests/engine/test_fastmath.c bounds its error against
 * expf at 2 ulp over [-87, 88].
 *
 * mr_erff: Abramowitz and Stegun's formula 7.1.26 (|error| < 1.5e-7 in
 * exact arithmetic) evaluated in float with mr_expf; the test bounds its
 * absolute error at 1e-6.
 *
 * mr_tanhf and mr_sigmoidf replace libm's tanhf and the expf-based
 * logistic function in the recurrent and activation kernels. In a profile
 * of GRU4Rec with Ada-Retrieval, libm's tanhf took about a quarter of the
 * time. The test bounds both at 3 ulp.
 */
#ifndef MR_ENGINE_FASTMATH_H
#define MR_ENGINE_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x for float x; 0 below -87.3 (where expf is subnormal or 0), +inf
 * above 88.72, NaN for NaN. */
static inline float mr_expf(float x) {
    const float high = 88.72283935546875f; /* just below log(FLT_MAX) */
    const float low = -87.33654022216797f; /* log(FLT_MIN) */
    float clamped = x > high ? high : (x < low ? low : x);
    clamped = x == x ? clamped : 0.0f;

    float n = rintf(clamped * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, clamped);
    r = fmaf(n, 2.12194440e-4f, r);

    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p * r, r, r) + 1.0f;

    /* 2^n with n in [-126, 128]; n = 128 only at the top of the range,
     * where p < 1 keeps the product finite after splitting the scale. */
    int32_t exponent = (int32_t)n;
    int32_t half = exponent / 2;
    uint32_t bits_a = (uint32_t)(half + 127) << 23;
    uint32_t bits_b = (uint32_t)(exponent - half + 127) << 23;
    float scale_a, scale_b;
    memcpy(&scale_a, &bits_a, sizeof scale_a);
    memcpy(&scale_b, &bits_b, sizeof scale_b);
    float result = p * scale_a * scale_b;

    result = x < low ? 0.0f : result;
    result = x > high ? INFINITY : result;
    return x == x ? result : x;
}

/* erf(x) with absolute error below 1e-6. */
static inline float mr_erff(float x) {
    float ax = fabsf(x);
    float t = 1.0f / fmaf(0.3275911f, ax, 1.0f);
    float poly = 1.061405429f;
    poly = fmaf(poly, t, -1.453152027f);
    poly = fmaf(poly, t, 1.421413741f);
    poly = fmaf(poly, t, -0.284496736f);
    poly = fmaf(poly, t, 0.254829592f);
    float y = 1.0f - poly * t * mr_expf(-ax * ax);
    return copysignf(y, x);
}

/*
 * tanh(x) for float x. Below |x| = 0.4 it sums the Taylor series up to
 * x^13, whose next term is below 5e-9 relative there. Above, it computes
 * 1 - 2 / (e^{2|x|} + 1) with mr_expf, where cancellation magnifies the
 * error by at most 1.7 (at 0.4). Saturates to +-1, keeps -0 and NaN.
 */
static inline float mr_tanhf(float x) {
    float ax = fabsf(x);

    float s = x * x;
    float p = 21844.0f / 6081075.0f;
    p = fmaf(p, s, -1382.0f / 155925.0f);
    p = fmaf(p, s, 62.0f / 2835.0f);
    p = fmaf(p, s, -17.0f / 315.0f);
    p = fmaf(p, s, 2.0f / 15.0f);
    p = fmaf(p, s, -1.0f / 3.0f);
    float small = fmaf(x * s, p, x);

    float large = 1.0f - 2.0f / (mr_expf(2.0f * ax) + 1.0f);
    return copysignf(ax < 0.4f ? small : large, x);
}

/* The logistic function 1 / (1 + e^-x), computed from e^-|x|, which is
 * at most 1, so the exponential cannot overflow. */
static inline float mr_sigmoidf(float x) {
    float e = mr_expf(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

#endif /* MR_ENGINE_FASTMATH_H */

/*
 * Conversions between float and the 16-bit float formats: IEEE 754
 * binary16 (F16: 1 sign, 5 exponent, 10 fraction bits) and bfloat16 (BF16:
 * the upper 16 bits of a float). Narrowing rounds to nearest, ties to
 * even, as PyTorch's .half() and .bfloat16() do; NaN stays a quiet NaN.
 */
#ifndef MR_ENGINE_HALF_H
#define MR_ENGINE_HALF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t mr_float_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static inline float mr_bits_float(uint32_t bits) {
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Widens an F16 value to float; exact for every input. */
static inline float mr_f16_to_f32(uint16_t half) {
    uint32_t sign = (uint32_t)(half & 0x8000u) << 16;
    uint32_t exponent = (half >> 10) & 0x1fu;
    uint32_t fraction = half & 0x3ffu;

    if (exponent == 0) {
        /* Zero or subnormal: fraction * 2^-24, exact in float. */
        float magnitude = ldexpf((float)fraction, -24);
        return sign != 0 ? -magnitude : magnitude;
    }
    if (exponent == 0x1f) {
        return mr_bits_float(sign | 0x7f800000u | (fraction << 13));
    }
    /* Rebias the exponent from 15 to 127. */
    return mr_bits_float(sign | ((exponent + 112u) << 23) | (fraction << 13));
}

/* Narrows a float to F16, rounding to nearest with ties to even. */
static inline uint16_t mr_f32_to_f16(float value) {
    uint32_t bits = mr_float_bits(value);
    uint32_t sign = (bits >> 16) & 0x8000u;
    uint32_t magnitude = bits & 0x7fffffffu;

    if (magnitude > 0x7f800000u) {
        return (uint16_t)(sign | 0x7e00u); /* NaN */
    }
    if (magnitude >= 0x477ff000u) {
        /* 65520 and above: halfway past the largest F16 (65504) or more,
         * which rounds to infinity. Infinity itself lands here too. */
        return (uint16_t)(sign | 0x7c00u);
    }
    if (magnitude >= 0x38800000u) {
        /* Normal F16 (>= 2^-14). Adding 0xfff plus the lowest kept bit
         * rounds the 13 dropped bits to nearest even; a carry correctly
         * moves into the exponent. Then rebias from 127 to 15. */
        uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
        return (uint16_t)(sign | ((rounded >> 13) - (112u << 10)));
    }
    if (magnitude <= 0x33000000u) {
        /* At most 2^-25, half of the smallest subnormal: ties go to 0. */
        return (uint16_t)sign;
    }

    /* Subnormal F16: the result counts units of 2^-24. */
    uint32_t exponent = magnitude >> 23;
    uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exponent; /* 14..24 for exponents 102..112 */
    uint32_t quotient = significand >> shift;
    uint32_t remainder = significand & ((1u << shift) - 1u);
    uint32_t halfway = 1u << (shift - 1u);
    if (remainder > halfway || (remainder == halfway && (quotient & 1u) != 0)) {
        quotient++;
    }
    return (uint16_t)(sign | quotient);
}

/* Widens a BF16 value to float; exact. */
static inline float mr_bf16_to_f32(uint16_t value) {
    return mr_bits_float((uint32_t)value << 16);
}

/* Narrows a float to BF16, rounding to nearest with ties to even. */
static inline uint16_t mr_f32_to_bf16(float value) {
    uint32_t bits = mr_float_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((bits >> 16) | 0x0040u); /* NaN, kept quiet */
    }
    uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(rounded >> 16);
}

#endif /* MR_ENGINE_HALF_H */

/* vecmath.h — branch-free float exp and log1p that the compiler vectorizes (libm's are calls
 * it cannot), for the per-pixel loss terms. Accurate to a few ulp; checked against libm in
 * tests/test_ops.c. */
#ifndef VAE_VECMATH_H
#define VAE_VECMATH_H

#include <stdint.h>
#include <string.h>

/* Compile the hot elementwise kernels twice, for AVX2+FMA and for baseline x86-64, and pick one
 * at load time: the build runs on any x86-64 and is fast where the CPU allows. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define VAE_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VAE_SIMD_CLONES
#endif

/* e^x for x <= 0 (larger x is not needed: callers pass -|l|). Cody–Waite reduction
 * x = n ln2 + r, |r| <= ln2/2, a degree-6 Taylor polynomial, and 2^n applied as two normal
 * powers of two so that results in the subnormal range come out right too. */
static inline float vexp_nonpositive(float x) {
    /* e^-104 rounds to 0 in float; NaN maps to -104 too, which keeps the integer conversion
     * below defined (the callers' other terms still carry the NaN into the loss) */
    x = x >= -104.0f ? x : -104.0f;
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-06f;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float n = (x * log2e + round_magic) - round_magic;
    float r = (x - n * ln2_hi) - n * ln2_lo;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t n1 = (int32_t)n / 2, n2 = (int32_t)n - n1; /* each >= -75: normal */
    uint32_t bits1 = (uint32_t)(n1 + 127) << 23, bits2 = (uint32_t)(n2 + 127) << 23;
    float scale1, scale2;
    memcpy(&scale1, &bits1, sizeof scale1);
    memcpy(&scale2, &bits2, sizeof scale2);
    return p * scale1 * scale2;
}

/* log(1 + e) for e in [0, 1], as 2 atanh(s) with s = e / (2 + e) in [0, 1/3]: exact identity,
 * no cancellation for small e, and the odd series converges fast (error < 2e-8 relative). */
static inline float vlog1p_unit(float e) {
    float s = e / (2.0f + e), s2 = s * s;
    float p = 1.0f / 13.0f;
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return 2.0f * s * p;
}

#endif

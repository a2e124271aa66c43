/* vecmath.h — float exp and log1p for the per-pixel loss terms, in a scalar form and an 8-lane
 * form on GCC's vector extension (libm's are calls no compiler vectorizes, and GCC will not
 * vectorize the exponent-bit trick on its own). Both do the same operations in the same order.
 * Accurate to a few ulp; checked against libm in tests/test_ops.c. */
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


/* ---- 8 lanes: the same algorithms. Vector casts between same-size types reinterpret bits.
 * These helpers are static inline and never cross a call boundary, so the ABI of 32-byte
 * vectors without AVX (which GCC warns about for the baseline clone) never comes into play. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

static inline vf8 vf8_splat(float v) { return (vf8){v, v, v, v, v, v, v, v}; }
static inline vf8 vf8_load(const float *p) {
    vf8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void vf8_store(float *p, vf8 v) { memcpy(p, &v, sizeof v); }
/* mask ? a : b, with mask lanes all ones or all zeros (as comparisons give) */
static inline vf8 vf8_select(vi8 mask, vf8 a, vf8 b) {
    return (vf8)(((vi8)a & mask) | ((vi8)b & ~mask));
}
static inline vf8 vf8_abs(vf8 x) { return (vf8)((vi8)x & 0x7fffffff); }

static inline vf8 vexp8_nonpositive(vf8 x) {
    x = vf8_select(x >= -104.0f, x, vf8_splat(-104.0f));
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-06f;
    const float round_magic = 12582912.0f;
    vf8 n = (x * log2e + round_magic) - round_magic;
    vf8 r = (x - n * ln2_hi) - n * ln2_lo;
    vf8 p = vf8_splat(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vi8 ni = __builtin_convertvector(n, vi8);
    vi8 n1 = ni / 2, n2 = ni - n1;
    vf8 scale1 = (vf8)((n1 + 127) << 23), scale2 = (vf8)((n2 + 127) << 23);
    return p * scale1 * scale2;
}

static inline vf8 vlog1p8_unit(vf8 e) {
    vf8 s = e / (2.0f + e), s2 = s * s;
    vf8 p = vf8_splat(1.0f / 13.0f);
    p = p * s2 + 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    return 2.0f * s * p;
}

#endif

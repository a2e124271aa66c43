/* linear_bf16.c — the products in bf16 for `--precision bf16` on the CPU (the dense layer's
 * three, and op_gemm_bf16 for the convolutions' passes): oneDNN matmuls with bf16 inputs and
 * fp32 accumulation and output (its AVX512_BF16 and AMX kernels). Each call rounds its inputs
 * to bf16 (to nearest, ties to even) in scratch of its own, in one vectorized pass per operand
 * (AVX512_BF16's conversion where the CPU has it; a transposed operand is described to oneDNN
 * as such, never copied), but for the _rounded entries' weights, rounded once for many calls
 * by op_round_bf16 (once a pass, shared by batch threads); the weights, biases, activations
 * kept for backward, gradients and Adam stay fp32. Primitives are made per call: oneDNN's
 * primitive cache makes that a few microseconds, and the layer keeps no state. */
#include "ops/ops.h"
#include "core/internal.h"
#include "ops/vecmath.h"

#ifdef VAE_ONEDNN
#include "ops/onednn_call.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t bf16;

/* Round to nearest, ties to even; a NaN stays a (quiet) NaN. Branch-free, so the loop below
 * vectorizes. */
static inline bf16 bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    return (bf16)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* dst = bf16 of src, n values: the portable rounding, vectorized by the compiler */
VAE_SIMD_CLONES
static void round_portable(bf16 *restrict dst, const float *restrict src, long n) {
#pragma omp simd
    for (long i = 0; i < n; i++) dst[i] = bf16_of(src[i]);
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
/* The same with AVX512_BF16's conversion instruction (the CPUs that run bf16 products mostly
 * have it): round to nearest even, NaN kept; it reads fp32 denormals as zero, below anything
 * a bf16 product of these layers could resolve. */
__attribute__((target("avx512f,avx512bf16"))) static void round_avx512(bf16 *dst,
                                                                      const float *src, long n) {
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)v);
    }
    round_portable(dst + i, src + i, n - i);
}
static int have_avx512_bf16(void) { return __builtin_cpu_supports("avx512bf16"); }
#else
static void round_avx512(bf16 *dst, const float *src, long n) { round_portable(dst, src, n); }
static int have_avx512_bf16(void) { return 0; }
#endif

/* The rounding this CPU runs fastest */
static void (*rounding(void))(bf16 *dst, const float *src, long n) {
    return have_avx512_bf16() ? round_avx512 : round_portable;
}

void op_adam_step_bf16(vae_adam *adam, float *params, float *grads, void *rounded) {
    vae_adam_step_rounded(adam, params, grads, rounded, rounding());
}

/* dst = bf16 of src, n values, in blocks split over the threads */
static void to_bf16(bf16 *restrict dst, const float *restrict src, size_t n) {
    enum { BLOCK = 4096 };
    const long count = (long)n, blocks = (count + BLOCK - 1) / BLOCK;
    void (*round)(bf16 *, const float *, long) = rounding();
#pragma omp parallel for schedule(static) if (count >= OP_PARALLEL_MIN)
    for (long b = 0; b < blocks; b++) {
        const long lo = b * BLOCK, len = count - lo < BLOCK ? count - lo : BLOCK;
        round(dst + lo, src + lo, len);
    }
}

/* c (m, n) = [c +] a (m, k) b (k, n), a and b row-major bf16 (a_transposed: a is stored (k,
 * m); b_transposed: b is stored (n, k)), c row-major fp32. 0 when oneDNN ran it. */
static int matmul(float *c, const bf16 *a, int a_transposed, const bf16 *b, int b_transposed,
                  int m, int k, int n, int accumulate, const char **impl) {
    dnnl_engine_t engine = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post = NULL;
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    dnnl_memory_desc_t ad, bd, cd;
    dnnl_matmul_desc_t md;
    const dnnl_dims_t adims = {m, k}, bdims = {k, n}, cdims = {m, n};
    int bad = dnnl_engine_create(&engine, dnnl_cpu, 0) ||
              dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) ||
              dnnl_memory_desc_init_by_tag(&ad, 2, adims, dnnl_bf16, a_transposed ? dnnl_ba : dnnl_ab) ||
              dnnl_memory_desc_init_by_tag(&bd, 2, bdims, dnnl_bf16, b_transposed ? dnnl_ba : dnnl_ab) ||
              dnnl_memory_desc_init_by_tag(&cd, 2, cdims, dnnl_f32, dnnl_ab) ||
              dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) ||
              dnnl_primitive_attr_create(&attr) || dnnl_post_ops_create(&post) ||
              (accumulate && dnnl_post_ops_append_sum(post, 1.0f)) ||
              dnnl_primitive_attr_set_post_ops(attr, post) ||
              dnnl_primitive_desc_create(&pd, &md, attr, engine, NULL) ||
              dnnl_primitive_create(&prim, pd) ||
              dnnl_memory_create(&ma, &ad, engine, (void *)a) ||
              dnnl_memory_create(&mb, &bd, engine, (void *)b) ||
              dnnl_memory_create(&mc, &cd, engine, c);
    if (!bad && impl) dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, impl);
    if (!bad) {
        const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb},
                                        {DNNL_ARG_DST, mc}};
        bad = op_onednn_run(prim, stream, 3, args);
    }
    dnnl_memory_destroy(ma), dnnl_memory_destroy(mb), dnnl_memory_destroy(mc);
    dnnl_primitive_destroy(prim), dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(post), dnnl_primitive_attr_destroy(attr);
    dnnl_stream_destroy(stream), dnnl_engine_destroy(engine);
    return bad;
}

void op_linear_forward_bf16(float *y, const float *x, const float *w, const float *b, int batch,
                            int in, int out, const vae_activation *act) {
    op_gemm_bf16(0, 1, batch, out, in, x, in, w, in, 0.0f, y, out); /* x W^T */
    op_bias_activation(y, b, batch, out, act);
}

void op_round_bf16(void *dst, const float *w, int out, int in) {
    to_bf16(dst, w, (size_t)out * in);
}

void op_linear_forward_bf16_rounded(float *y, const float *x, const float *w, const void *wb,
                                    const float *b, int batch, int in, int out,
                                    const vae_activation *act) {
    const size_t nx = (size_t)batch * in;
    bf16 *xb = malloc(sizeof(bf16) * nx);
    if (xb) to_bf16(xb, x, nx);
    const int bad = !xb || matmul(y, xb, 0, wb, 1, batch, in, out, 0, NULL); /* x W^T */
    free(xb);
    if (bad) { /* as op_gemm_bf16 does: fp32's product rather than none */
        op_linear_forward_onednn(y, x, w, b, batch, in, out, act);
        return;
    }
    op_bias_activation(y, b, batch, out, act);
}

/* The dense layer's backward on W rounded to bf16 (wb; w NULL: round it here). Its own
 * conversions rather than two op_gemm_bf16 calls: dy, an input of both products, is rounded
 * once. */
static void backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, const bf16 *wb, int batch, int in, int out,
                     int accumulate_dx, int accumulate_params) {
    const size_t nx = (size_t)batch * in, nw = (size_t)out * in, ny = (size_t)batch * out;
    const int round_w = dx && !wb;
    bf16 *xb = dw ? malloc(sizeof(bf16) * nx) : NULL;
    bf16 *own_wb = round_w ? malloc(sizeof(bf16) * nw) : NULL, *dyb = malloc(sizeof(bf16) * ny);
    int bad = (dw && !xb) || !dyb || (round_w && !own_wb);
    if (!bad) {
        to_bf16(dyb, dy, ny);
        if (dw) to_bf16(xb, x, nx);
        if (round_w) to_bf16(own_wb, w, nw), wb = own_wb;
        /* dx = dy W, dw = dy^T x */
        bad = (dx && matmul(dx, dyb, 0, wb, 0, batch, out, in, accumulate_dx, NULL)) ||
              (dw && matmul(dw, dyb, 1, xb, 0, out, batch, in, accumulate_params, NULL));
    }
    free(xb), free(own_wb), free(dyb);
    if (bad) { /* as op_gemm_bf16 does; a failed product may have written only its own output */
        op_linear_backward_onednn(dx, dw, db, dy, x, w, batch, in, out, accumulate_dx,
                                  accumulate_params);
        return;
    }
    if (dw) op_column_sums(db, dy, batch, out, accumulate_params);
}

void op_linear_backward_bf16(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, int batch, int in, int out, int accumulate_dx,
                             int accumulate_params) {
    backward(dx, dw, db, dy, x, w, NULL, batch, in, out, accumulate_dx, accumulate_params);
}

void op_linear_backward_bf16_rounded(float *dx, float *dw, float *db, const float *dy,
                                     const float *x, const float *w, const void *wb, int batch,
                                     int in, int out, int accumulate_dx, int accumulate_params) {
    backward(dx, dw, db, dy, x, w, wb, batch, in, out, accumulate_dx, accumulate_params);
}

void op_gemm_bf16(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc) {
    const size_t na = (size_t)m * k, nb = (size_t)k * n;
    bf16 *ab = malloc(sizeof(bf16) * na), *bb = malloc(sizeof(bf16) * nb);
    /* the layers and the conv passes hand over whole matrices; a strided one is left to fp32 */
    int bad = !ab || !bb || lda != (ta ? m : k) || ldb != (tb ? k : n) || ldc != n ||
              (beta != 0.0f && beta != 1.0f);
    if (!bad) {
        to_bf16(ab, a, na), to_bf16(bb, b, nb);
        bad = matmul(c, ab, ta, bb, tb, m, k, n, beta != 0.0f, NULL);
    }
    free(ab), free(bb);
    /* no memory or oneDNN refused (its probe passed when bf16 was chosen): the fp32 product,
     * exact where bf16 would have rounded, rather than no result */
    if (bad)
        op_onednn_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, a, lda, b, ldb, beta, c, ldc);
}

int op_bf16_check(char *why, size_t why_size) {
    enum { M = 32, K = 64, N = 48 };
    bf16 a[M * K], b[K * N];
    float c[M * N];
    for (int i = 0; i < M * K; i++) a[i] = bf16_of(1.0f);
    for (int i = 0; i < K * N; i++) b[i] = bf16_of(0.5f);
    const char *impl = "";
    if (matmul(c, a, 0, b, 0, M, K, N, 0, &impl) || c[0] != 32.0f) {
        snprintf(why, why_size, "oneDNN could not run a bf16 product here");
        return 0;
    }
    if (strstr(impl, "ref") || !strstr(impl, "bf16")) {
        snprintf(why, why_size, "this CPU has no bf16 product instructions (AVX512_BF16 or "
                 "AMX) that oneDNN uses: it would emulate them (%s)", impl);
        return 0;
    }
    snprintf(why, why_size, "%s", impl);
    return 1;
}
#endif

/* linear.c — fully connected layer on cblas_sgemm; weights (out,in) as PyTorch stores them. */
#include "ops/ops.h"
#include "ops/vecmath.h"

#include <cblas.h>
#include <string.h>
#ifdef __SSE__
#include <xmmintrin.h>
#endif

void op_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
             int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

void op_linear_forward(float *y, const float *x, const float *w, const float *b, int batch,
                       int in, int out, const vae_activation *act) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in, w, in, 0.0f,
                y, out);
    op_bias_activation(y, b, batch, out, act); /* one pass for the bias and the nonlinearity */
}

/* One 32 x 32 tile (or less, at the edges) of W into Wt: 4 x 4 blocks through SSE registers
 * where the CPU has them (every x86-64), each block's rows read and its columns written whole;
 * element by element elsewhere. The copy is bound by the cache's bandwidth, not by this. */
static void transpose_tile(float *t, const float *w, int out, int in, int o0, int o_end, int i0,
                           int i_end) {
    int o = o0;
#ifdef __SSE__
    for (; o + 4 <= o_end; o += 4) {
        int i = i0;
        for (; i + 4 <= i_end; i += 4) {
            const float *r = w + (size_t)o * in + i;
            __m128 r0 = _mm_loadu_ps(r), r1 = _mm_loadu_ps(r + in);
            __m128 r2 = _mm_loadu_ps(r + 2 * (size_t)in), r3 = _mm_loadu_ps(r + 3 * (size_t)in);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            float *c = t + (size_t)i * out + o;
            _mm_storeu_ps(c, r0), _mm_storeu_ps(c + out, r1);
            _mm_storeu_ps(c + 2 * (size_t)out, r2), _mm_storeu_ps(c + 3 * (size_t)out, r3);
        }
        for (; i < i_end; i++)
            for (int k = 0; k < 4; k++) t[(size_t)i * out + o + k] = w[(size_t)(o + k) * in + i];
    }
#endif
    for (; o < o_end; o++)
        for (int i = i0; i < i_end; i++) t[(size_t)i * out + o] = w[(size_t)o * in + i];
}

/* Tiles of 32 rows of W split over the threads: a layer's copy per pass of batch threads */
void op_transpose_weights(void *wt, const float *w, int out, int in) {
    enum { TILE = 32 };
    const int tiles = (out + TILE - 1) / TILE;
#pragma omp parallel for schedule(static) if ((long)out * in >= OP_PARALLEL_MIN)
    for (int tile = 0; tile < tiles; tile++) {
        const int o0 = tile * TILE, o_end = o0 + TILE < out ? o0 + TILE : out;
        for (int i0 = 0; i0 < in; i0 += TILE)
            transpose_tile(wt, w, out, in, o0, o_end, i0, i0 + TILE < in ? i0 + TILE : in);
    }
}

void op_linear_forward_transposed(float *y, const float *x, const float *w, const void *wt,
                                  const float *b, int batch, int in, int out,
                                  const vae_activation *act) {
    (void)w;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, out, in, 1.0f, x, in, wt, out,
                0.0f, y, out);
    op_bias_activation(y, b, batch, out, act);
}

/* db (+)= column sums of dy, rows in order: the same bits whatever the thread count */
VAE_SIMD_CLONES
void op_column_sums(float *db, const float *dy, int batch, int out, int accumulate) {
    if (!accumulate) memset(db, 0, (size_t)out * sizeof *db);
    for (int i = 0; i < batch; i++) {
        const float *row = dy + (size_t)i * out;
#pragma omp simd
        for (int j = 0; j < out; j++) db[j] += row[j];
    }
}

void op_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int batch, int in, int out, int accumulate_dx,
                        int accumulate_params) {
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0f, dy, out, w,
                    in, accumulate_dx ? 1.0f : 0.0f, dx, in);
    if (!dw) return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, 1.0f, dy, out, x, in,
                accumulate_params ? 1.0f : 0.0f, dw, in);
    op_column_sums(db, dy, batch, out, accumulate_params);
}

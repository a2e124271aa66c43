/* linear.c — fully connected layer on cblas_sgemm; weights (out,in) as PyTorch stores them. */
#include "ops/ops.h"
#include "ops/vecmath.h"

#include <cblas.h>
#include <string.h>

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

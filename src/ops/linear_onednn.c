/* linear_onednn.c — the fully connected layer on oneDNN's sgemm (row-major, like PyTorch's CPU
 * path), for the oneDNN backend; bias, activation and the bias gradient are the CPU passes. */
#include "ops/ops.h"

#ifdef VAE_ONEDNN
#include "ops/onednn_call.h"

void op_gemm_onednn(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                    int ldb, float beta, float *c, int ldc) {
    op_onednn_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, a, lda, b, ldb, beta, c, ldc);
}

void op_linear_forward_onednn(float *y, const float *x, const float *w, const float *b, int batch,
                              int in, int out, const vae_activation *act) {
    op_onednn_sgemm('N', 'T', batch, out, in, x, in, w, in, 0.0f, y, out);
    op_bias_activation(y, b, batch, out, act);
}

void op_linear_forward_transposed_onednn(float *y, const float *x, const float *w,
                                         const void *wt, const float *b, int batch, int in,
                                         int out, const vae_activation *act) {
    (void)w;
    op_onednn_sgemm('N', 'N', batch, out, in, x, in, wt, out, 0.0f, y, out);
    op_bias_activation(y, b, batch, out, act);
}

void op_linear_backward_onednn(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int batch, int in, int out, int accumulate_dx,
                               int accumulate_params) {
    if (dx)
        op_onednn_sgemm('N', 'N', batch, in, out, dy, out, w, in, accumulate_dx ? 1.0f : 0.0f, dx,
                        in);
    if (!dw) return;
    op_onednn_sgemm('T', 'N', out, in, batch, dy, out, x, in, accumulate_params ? 1.0f : 0.0f, dw,
                    in);
    op_column_sums(db, dy, batch, out, accumulate_params);
}
#endif

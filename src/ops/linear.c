/* linear.c — fully connected layer on cblas_sgemm; weights (out,in) as PyTorch stores them. */
#include "ops.h"

#include <cblas.h>
#include <string.h>

void op_linear_forward(float *y, const float *x, const float *w, const float *b, int batch,
                       int in, int out) {
    /* Seed y with the bias, then let the GEMM accumulate (beta = 1): one pass fewer. */
    for (int i = 0; i < batch; i++) memcpy(y + (size_t)i * out, b, (size_t)out * sizeof *y);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in, w, in, 1.0f,
                y, out);
}

void op_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int batch, int in, int out, int accumulate_dx) {
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0f, dy, out, w,
                    in, accumulate_dx ? 1.0f : 0.0f, dx, in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, 1.0f, dy, out, x, in,
                1.0f, dw, in);
    for (int i = 0; i < batch; i++) {
        const float *row = dy + (size_t)i * out;
        for (int j = 0; j < out; j++) db[j] += row[j];
    }
}

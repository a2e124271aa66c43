/* conv.c — 2-D convolution and transposed convolution (PyTorch's Conv2d and ConvTranspose2d,
 * NCHW, square kernels), as im2col/col2im around cblas_sgemm, one sample at a time. */
#include "ops/ops.h"

#include <cblas.h>
#include <string.h>

/* cols (C*k*k, OH*OW): the input patch under every output position, zero outside the image */
static void im2col(float *cols, const float *x, int c, int h, int w, int oh, int ow, int k,
                   int stride, int pad) {
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *row = cols + ((size_t)(ch * k + ki) * k + kj) * (size_t)(oh * ow);
                for (int y = 0; y < oh; y++) {
                    int iy = y * stride - pad + ki;
                    for (int xo = 0; xo < ow; xo++) {
                        int ix = xo * stride - pad + kj;
                        row[y * ow + xo] = iy >= 0 && iy < h && ix >= 0 && ix < w
                                               ? x[((size_t)ch * h + iy) * w + ix] : 0.0f;
                    }
                }
            }
}

/* The adjoint of im2col: adds each column entry back to the input position it came from. */
static void col2im_add(float *x, const float *cols, int c, int h, int w, int oh, int ow, int k,
                       int stride, int pad) {
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *row = cols + ((size_t)(ch * k + ki) * k + kj) * (size_t)(oh * ow);
                for (int y = 0; y < oh; y++) {
                    int iy = y * stride - pad + ki;
                    if (iy < 0 || iy >= h) continue;
                    for (int xo = 0; xo < ow; xo++) {
                        int ix = xo * stride - pad + kj;
                        if (ix >= 0 && ix < w) x[((size_t)ch * h + iy) * w + ix] += row[y * ow + xo];
                    }
                }
            }
}

size_t op_conv_cols_size(const conv_shape *s) {
    /* conv: (in_c*k*k, out_hw); transposed: (out_c*k*k, in_hw); the larger serves both */
    size_t a = (size_t)s->in_c * s->k * s->k * (size_t)s->out_h * s->out_w;
    size_t b = (size_t)s->out_c * s->k * s->k * (size_t)s->in_h * s->in_w;
    return a > b ? a : b;
}

static void add_bias(float *y, const float *b, int c, int hw) {
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < hw; i++) y[(size_t)ch * hw + i] += b[ch];
}

static void bias_grad(float *db, const float *dy, int c, int hw) {
    for (int ch = 0; ch < c; ch++) {
        float sum = 0.0f;
        for (int i = 0; i < hw; i++) sum += dy[(size_t)ch * hw + i];
        db[ch] += sum;
    }
}

void op_conv2d_forward(float *y, const float *x, const float *w, const float *b, int batch,
                       const conv_shape *s, float *cols) {
    const int kk = s->in_c * s->k * s->k, ohw = s->out_h * s->out_w, ihw = s->in_h * s->in_w;
    for (int n = 0; n < batch; n++) {
        const float *xn = x + (size_t)n * s->in_c * ihw;
        float *yn = y + (size_t)n * s->out_c * ohw;
        im2col(cols, xn, s->in_c, s->in_h, s->in_w, s->out_h, s->out_w, s->k, s->stride, s->pad);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->out_c, ohw, kk, 1.0f, w, kk,
                    cols, ohw, 0.0f, yn, ohw);
        add_bias(yn, b, s->out_c, ohw);
    }
}

void op_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int batch, const conv_shape *s, float *cols) {
    const int kk = s->in_c * s->k * s->k, ohw = s->out_h * s->out_w, ihw = s->in_h * s->in_w;
    for (int n = 0; n < batch; n++) {
        const float *xn = x + (size_t)n * s->in_c * ihw, *dyn = dy + (size_t)n * s->out_c * ohw;
        bias_grad(db, dyn, s->out_c, ohw);
        im2col(cols, xn, s->in_c, s->in_h, s->in_w, s->out_h, s->out_w, s->k, s->stride, s->pad);
        /* dW (out_c, kk) += dy (out_c, ohw) cols^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->out_c, kk, ohw, 1.0f, dyn, ohw,
                    cols, ohw, 1.0f, dw, kk);
        if (!dx) continue;
        /* dcols (kk, ohw) = W^T dy, then back onto the image */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, ohw, s->out_c, 1.0f, w, kk, dyn,
                    ohw, 0.0f, cols, ohw);
        float *dxn = dx + (size_t)n * s->in_c * ihw;
        memset(dxn, 0, sizeof(float) * (size_t)s->in_c * ihw);
        col2im_add(dxn, cols, s->in_c, s->in_h, s->in_w, s->out_h, s->out_w, s->k, s->stride,
                   s->pad);
    }
}

/* A transposed convolution is the adjoint of the convolution from its output back to its
 * input: weight (in_c, out_c, k, k) read as (in_c, out_c*k*k). */
void op_convt2d_forward(float *y, const float *x, const float *w, const float *b, int batch,
                        const conv_shape *s, float *cols) {
    const int kk = s->out_c * s->k * s->k, ohw = s->out_h * s->out_w, ihw = s->in_h * s->in_w;
    for (int n = 0; n < batch; n++) {
        const float *xn = x + (size_t)n * s->in_c * ihw;
        float *yn = y + (size_t)n * s->out_c * ohw;
        /* cols (kk, ihw) = W^T x */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, ihw, s->in_c, 1.0f, w, kk, xn,
                    ihw, 0.0f, cols, ihw);
        memset(yn, 0, sizeof(float) * (size_t)s->out_c * ohw);
        col2im_add(yn, cols, s->out_c, s->out_h, s->out_w, s->in_h, s->in_w, s->k, s->stride,
                   s->pad);
        add_bias(yn, b, s->out_c, ohw);
    }
}

void op_convt2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, int batch, const conv_shape *s, float *cols) {
    const int kk = s->out_c * s->k * s->k, ohw = s->out_h * s->out_w, ihw = s->in_h * s->in_w;
    for (int n = 0; n < batch; n++) {
        const float *xn = x + (size_t)n * s->in_c * ihw, *dyn = dy + (size_t)n * s->out_c * ohw;
        bias_grad(db, dyn, s->out_c, ohw);
        im2col(cols, dyn, s->out_c, s->out_h, s->out_w, s->in_h, s->in_w, s->k, s->stride, s->pad);
        /* dW (in_c, kk) += x (in_c, ihw) cols^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->in_c, kk, ihw, 1.0f, xn, ihw, cols,
                    ihw, 1.0f, dw, kk);
        if (dx) /* dx (in_c, ihw) = W cols */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->in_c, ihw, kk, 1.0f, w, kk,
                        cols, ihw, 0.0f, dx + (size_t)n * s->in_c * ihw, ihw);
    }
}

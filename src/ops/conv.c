/* conv.c — 2-D convolution and transposed convolution (PyTorch's Conv2d and ConvTranspose2d,
 * NCHW, square kernels), as im2col/col2im around one cblas_sgemm per pass over the batch. */
#include "ops/ops.h"

#include <cblas.h>
#include <string.h>

/* cols (C*k*k rows of ld floats; this sample's OH*OW columns from the pointer on): the input
 * patch under every output position, zero outside the image */
static void im2col(float *cols, size_t ld, const float *x, int c, int h, int w, int oh, int ow,
                   int k, int stride, int pad) {
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *row = cols + ((size_t)(ch * k + ki) * k + kj) * ld;
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
static void col2im_add(float *x, const float *cols, size_t ld, int c, int h, int w, int oh, int ow,
                       int k, int stride, int pad) {
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *row = cols + ((size_t)(ch * k + ki) * k + kj) * ld;
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

/* The whole batch goes through one matrix product per pass: columns of every sample side by
 * side (K x B*HW), activations gathered channel-major (C x B*HW) and scattered back. */
size_t op_conv_cols_size(const conv_shape *s, int batch) {
    size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    size_t a = (size_t)s->in_c * s->k * s->k * ohw, b = (size_t)s->out_c * s->k * s->k * ihw;
    size_t g1 = (size_t)s->out_c * ohw, g2 = (size_t)s->in_c * ihw;
    return (size_t)batch * ((a > b ? a : b) + (g1 > g2 ? g1 : g2));
}

/* (B, C, HW) <-> (C, B*HW) */
static void to_channel_major(float *dst, const float *src, int batch, int c, size_t hw) {
    for (int n = 0; n < batch; n++)
        for (int ch = 0; ch < c; ch++)
            memcpy(dst + (size_t)ch * batch * hw + (size_t)n * hw,
                   src + ((size_t)n * c + ch) * hw, hw * sizeof(float));
}

static void from_channel_major(float *dst, const float *src, int batch, int c, size_t hw,
                               const float *bias) {
    for (int n = 0; n < batch; n++)
        for (int ch = 0; ch < c; ch++) {
            const float *in = src + (size_t)ch * batch * hw + (size_t)n * hw;
            float *out = dst + ((size_t)n * c + ch) * hw;
            for (size_t i = 0; i < hw; i++) out[i] = in[i] + (bias ? bias[ch] : 0.0f);
        }
}

/* db[c] += the sum of channel c over the batch, from channel-major values */
static void bias_grad(float *db, const float *cm, int c, size_t n) {
    for (int ch = 0; ch < c; ch++) {
        float sum = 0.0f;
        for (size_t i = 0; i < n; i++) sum += cm[(size_t)ch * n + i];
        db[ch] += sum;
    }
}

void op_conv2d_forward(float *y, const float *x, const float *w, const float *b, int batch,
                       const conv_shape *s, float *scratch) {
    const int kk = s->in_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    const size_t ld = (size_t)batch * ohw;
    float *cols = scratch, *ym = scratch + (size_t)kk * ld;
    for (int n = 0; n < batch; n++)
        im2col(cols + (size_t)n * ohw, ld, x + (size_t)n * s->in_c * ihw, s->in_c, s->in_h,
               s->in_w, s->out_h, s->out_w, s->k, s->stride, s->pad);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->out_c, (int)ld, kk, 1.0f, w, kk,
                cols, (int)ld, 0.0f, ym, (int)ld);
    from_channel_major(y, ym, batch, s->out_c, ohw, b);
}

void op_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int batch, const conv_shape *s, float *scratch) {
    const int kk = s->in_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    const size_t ld = (size_t)batch * ohw;
    float *cols = scratch, *dym = scratch + (size_t)kk * ld;
    to_channel_major(dym, dy, batch, s->out_c, ohw);
    bias_grad(db, dym, s->out_c, ld);
    for (int n = 0; n < batch; n++)
        im2col(cols + (size_t)n * ohw, ld, x + (size_t)n * s->in_c * ihw, s->in_c, s->in_h,
               s->in_w, s->out_h, s->out_w, s->k, s->stride, s->pad);
    /* dW (out_c, kk) += dy (out_c, B*ohw) cols^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->out_c, kk, (int)ld, 1.0f, dym,
                (int)ld, cols, (int)ld, 1.0f, dw, kk);
    if (!dx) return;
    /* dcols (kk, B*ohw) = W^T dy, over the columns, then back onto each image */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, (int)ld, s->out_c, 1.0f, w, kk, dym,
                (int)ld, 0.0f, cols, (int)ld);
    memset(dx, 0, sizeof(float) * (size_t)batch * s->in_c * ihw);
    for (int n = 0; n < batch; n++)
        col2im_add(dx + (size_t)n * s->in_c * ihw, cols + (size_t)n * ohw, ld, s->in_c, s->in_h,
                   s->in_w, s->out_h, s->out_w, s->k, s->stride, s->pad);
}

/* A transposed convolution is the adjoint of the convolution from its output back to its
 * input: weight (in_c, out_c, k, k) read as (in_c, out_c*k*k). */
void op_convt2d_forward(float *y, const float *x, const float *w, const float *b, int batch,
                        const conv_shape *s, float *scratch) {
    const int kk = s->out_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    const size_t ld = (size_t)batch * ihw;
    float *cols = scratch, *xm = scratch + (size_t)kk * ld;
    to_channel_major(xm, x, batch, s->in_c, ihw);
    /* cols (kk, B*ihw) = W^T x */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kk, (int)ld, s->in_c, 1.0f, w, kk, xm,
                (int)ld, 0.0f, cols, (int)ld);
    for (int n = 0; n < batch; n++) {
        float *yn = y + (size_t)n * s->out_c * ohw;
        memset(yn, 0, sizeof(float) * (size_t)s->out_c * ohw);
        col2im_add(yn, cols + (size_t)n * ihw, ld, s->out_c, s->out_h, s->out_w, s->in_h, s->in_w,
                   s->k, s->stride, s->pad);
        for (int ch = 0; ch < s->out_c; ch++)
            for (size_t i = 0; i < ohw; i++) yn[(size_t)ch * ohw + i] += b[ch];
    }
}

void op_convt2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, int batch, const conv_shape *s, float *scratch) {
    const int kk = s->out_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    const size_t ld = (size_t)batch * ihw;
    float *cols = scratch, *xm = scratch + (size_t)kk * ld;
    for (int n = 0; n < batch; n++) {
        const float *dyn = dy + (size_t)n * s->out_c * ohw;
        for (int ch = 0; ch < s->out_c; ch++) { /* the bias: every output position */
            float sum = 0.0f;
            for (size_t i = 0; i < ohw; i++) sum += dyn[(size_t)ch * ohw + i];
            db[ch] += sum;
        }
        im2col(cols + (size_t)n * ihw, ld, dyn, s->out_c, s->out_h, s->out_w, s->in_h, s->in_w,
               s->k, s->stride, s->pad);
    }
    to_channel_major(xm, x, batch, s->in_c, ihw);
    /* dW (in_c, kk) += x (in_c, B*ihw) cols^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->in_c, kk, (int)ld, 1.0f, xm, (int)ld,
                cols, (int)ld, 1.0f, dw, kk);
    if (!dx) return;
    /* dx (in_c, B*ihw) = W cols, then back to (B, in_c, ihw) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->in_c, (int)ld, kk, 1.0f, w, kk,
                cols, (int)ld, 0.0f, xm, (int)ld);
    from_channel_major(dx, xm, batch, s->in_c, ihw, NULL);
}

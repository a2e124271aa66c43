/* conv.c — 2-D convolution and transposed convolution (PyTorch's Conv2d and ConvTranspose2d,
 * NCHW, square kernels), as im2col/col2im around one matrix product (OpenBLAS's or oneDNN's
 * sgemm, as the backend says) per chunk of the batch. */
#include "ops/ops.h"

#include <cblas.h>
#ifdef VAE_ONEDNN
#include <dnnl.h>
#endif
#include <string.h>

/* Every parallel loop here (above OP_PARALLEL_MIN values) gives each thread its own samples or
 * channels, which it computes in the order one thread would: the same bits at every thread
 * count. */

/* The output positions o in [*lo, *hi) that read input position o*stride + offset inside
 * 0..n_in-1 (the rest read the zero padding). */
static void inside(int *lo, int *hi, int n_out, int n_in, int stride, int offset) {
    int a = offset < 0 ? (-offset + stride - 1) / stride : 0;
    int b = n_in - offset > 0 ? (n_in - offset + stride - 1) / stride : 0;
    *lo = a < n_out ? a : n_out;
    *hi = b < n_out ? b : n_out;
    if (*hi < *lo) *hi = *lo;
}

/* cols (C*k*k rows of ld floats; this sample's OH*OW columns from the pointer on): the input
 * patch under every output position, zero outside the image. Per kernel offset, the output
 * positions that read inside the image are a rectangle [ylo, yhi) x [lo, hi): the rest of the
 * row is zeroed once, the rectangle copied without a test per value. */
static void im2col(float *cols, size_t ld, const float *x, int c, int h, int w, int oh, int ow,
                   int k, int stride, int pad) {
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++) {
            int ylo, yhi;
            inside(&ylo, &yhi, oh, h, stride, ki - pad);
            for (int kj = 0; kj < k; kj++) {
                float *row = cols + ((size_t)(ch * k + ki) * k + kj) * ld;
                int lo, hi;
                inside(&lo, &hi, ow, w, stride, kj - pad);
                if (ylo > 0 || yhi < oh || lo > 0 || hi < ow)
                    memset(row, 0, sizeof(float) * (size_t)oh * ow);
                for (int y = ylo; y < yhi; y++) {
                    float *dst = row + (size_t)y * ow;
                    const float *src = x + ((size_t)ch * h + (y * stride - pad + ki)) * w;
                    for (int xo = lo; xo < hi; xo++) dst[xo] = src[xo * stride - pad + kj];
                }
            }
        }
}

/* The adjoint of im2col: adds each column entry back to the input position it came from. */
static void col2im_add(float *x, const float *cols, size_t ld, int c, int h, int w, int oh, int ow,
                       int k, int stride, int pad) {
    for (int ch = 0; ch < c; ch++)
        for (int ki = 0; ki < k; ki++) {
            int ylo, yhi;
            inside(&ylo, &yhi, oh, h, stride, ki - pad);
            for (int kj = 0; kj < k; kj++) {
                const float *row = cols + ((size_t)(ch * k + ki) * k + kj) * ld;
                int lo, hi;
                inside(&lo, &hi, ow, w, stride, kj - pad);
                for (int y = ylo; y < yhi; y++) {
                    float *dst = x + ((size_t)ch * h + (y * stride - pad + ki)) * w;
                    const float *src = row + (size_t)y * ow;
                    for (int xo = lo; xo < hi; xo++) dst[xo * stride - pad + kj] += src[xo];
                }
            }
        }
}

/* im2col of every sample of a batch (an image of c*h*w floats each) into its own columns */
static void im2col_batch(float *cols, const float *x, int batch, int c, int h, int w, int oh,
                         int ow, int k, int stride, int pad) {
    const size_t ohw = (size_t)oh * ow, ld = (size_t)batch * ohw;
#pragma omp parallel for schedule(static) if (ld * c * k * k >= OP_PARALLEL_MIN)
    for (int n = 0; n < batch; n++)
        im2col(cols + (size_t)n * ohw, ld, x + (size_t)n * c * h * w, c, h, w, oh, ow, k, stride,
               pad);
}

/* x = col2im of every sample's columns (x is overwritten), plus bias[ch] when given */
static void col2im_batch(float *x, const float *cols, int batch, int c, int h, int w, int oh,
                         int ow, int k, int stride, int pad, const float *bias) {
    const size_t ohw = (size_t)oh * ow, ld = (size_t)batch * ohw, chw = (size_t)c * h * w;
#pragma omp parallel for schedule(static) if (ld * c * k * k >= OP_PARALLEL_MIN)
    for (int n = 0; n < batch; n++) {
        float *xn = x + (size_t)n * chw;
        memset(xn, 0, sizeof(float) * chw);
        col2im_add(xn, cols + (size_t)n * ohw, ld, c, h, w, oh, ow, k, stride, pad);
        if (bias)
            for (int ch = 0; ch < c; ch++)
                for (size_t i = 0; i < (size_t)h * w; i++) xn[(size_t)ch * h * w + i] += bias[ch];
    }
}

/* A pass goes through the batch in chunks of samples, one matrix product per chunk: columns of
 * a chunk's samples side by side (K x chunk*HW), activations gathered channel-major (C x
 * chunk*HW) and scattered back. A chunk's scratch is held to CONV_SCRATCH_FLOATS (or one
 * sample's), so that it stays in cache and a workspace's memory does not grow with its batch
 * (an evaluation batch of 1000 would need 100 MiB for the conv preset). */
#ifndef CONV_SCRATCH_FLOATS
#define CONV_SCRATCH_FLOATS (1u << 20)
#endif

static size_t scratch_per_sample(const conv_shape *s, int transposed) {
    size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    if (transposed) /* columns (out_c k k, ihw) and the input channel-major (in_c, ihw) */
        return (size_t)s->out_c * s->k * s->k * ihw + (size_t)s->in_c * ihw;
    /* columns (in_c k k, ohw) and the output channel-major (out_c, ohw) */
    return (size_t)s->in_c * s->k * s->k * ohw + (size_t)s->out_c * ohw;
}

/* Samples per chunk for a pass over batch: as many chunks as the cap asks, of even sizes */
static int chunk_of(const conv_shape *s, int batch, int transposed) {
    size_t most = CONV_SCRATCH_FLOATS / scratch_per_sample(s, transposed);
    if (most < 1) most = 1;
    size_t chunks = ((size_t)batch + most - 1) / most;
    return (int)(((size_t)batch + chunks - 1) / chunks);
}

size_t op_conv_cols_size(const conv_shape *s, int batch, int transposed) {
    return (size_t)chunk_of(s, batch, transposed) * scratch_per_sample(s, transposed);
}

/* (B, C, HW) <-> (C, B*HW) */
static void to_channel_major(float *dst, const float *src, int batch, int c, size_t hw) {
#pragma omp parallel for schedule(static) if ((size_t)batch * c * hw >= OP_PARALLEL_MIN)
    for (int n = 0; n < batch; n++)
        for (int ch = 0; ch < c; ch++)
            memcpy(dst + (size_t)ch * batch * hw + (size_t)n * hw,
                   src + ((size_t)n * c + ch) * hw, hw * sizeof(float));
}

static void from_channel_major(float *dst, const float *src, int batch, int c, size_t hw,
                               const float *bias) {
#pragma omp parallel for schedule(static) if ((size_t)batch * c * hw >= OP_PARALLEL_MIN)
    for (int n = 0; n < batch; n++)
        for (int ch = 0; ch < c; ch++) {
            const float *in = src + (size_t)ch * batch * hw + (size_t)n * hw;
            float *out = dst + ((size_t)n * c + ch) * hw;
            const float add = bias ? bias[ch] : 0.0f;
            for (size_t i = 0; i < hw; i++) out[i] = in[i] + add;
        }
}

/* db[c] += the sum of channel c over the batch, from channel-major values */
static void bias_grad(float *db, const float *cm, int c, size_t n) {
#pragma omp parallel for schedule(static) if ((size_t)c * n >= OP_PARALLEL_MIN)
    for (int ch = 0; ch < c; ch++) {
        float sum = 0.0f;
        for (size_t i = 0; i < n; i++) sum += cm[(size_t)ch * n + i];
        db[ch] += sum;
    }
}

/* db[c] += the sum of channel c over the batch, from batch-major values (B, C, HW): each
 * sample's sum added in turn */
static void bias_grad_batch_major(float *db, const float *v, int batch, int c, size_t hw) {
#pragma omp parallel for schedule(static) if ((size_t)batch * c * hw >= OP_PARALLEL_MIN)
    for (int ch = 0; ch < c; ch++)
        for (int n = 0; n < batch; n++) {
            const float *vn = v + ((size_t)n * c + ch) * hw;
            float sum = 0.0f;
            for (size_t i = 0; i < hw; i++) sum += vn[i];
            db[ch] += sum;
        }
}

/* c (m, n) = a (m, k; stored transposed when ta) b (k, n; transposed when tb) + beta c, all
 * row-major: the products of a pass, from the backend's library */
typedef void (*gemm_fn)(int ta, int tb, int m, int n, int k, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc);

static void gemm_openblas(int ta, int tb, int m, int n, int k, const float *a, int lda,
                          const float *b, int ldb, float beta, float *c, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

#ifdef VAE_ONEDNN
static void gemm_onednn(int ta, int tb, int m, int n, int k, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc) {
    dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
#endif

/* The chunks [n0, n0 + nb) of a pass over batch, in order */
#define FOR_EACH_CHUNK(s, batch, transposed, n0, nb)                                               \
    for (int n0 = 0, chunk_ = chunk_of(s, batch, transposed),                                      \
             nb = chunk_ < batch ? chunk_ : batch;                                                 \
         n0 < batch; n0 += nb, nb = batch - n0 < chunk_ ? batch - n0 : chunk_)

static void conv2d_forward(gemm_fn gemm, float *y, const float *x, const float *w,
                           const float *b, int batch, const conv_shape *s, float *scratch) {
    const int kk = s->in_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    FOR_EACH_CHUNK(s, batch, 0, n0, nb) {
        const size_t ld = (size_t)nb * ohw;
        float *cols = scratch, *ym = scratch + (size_t)kk * ld;
        im2col_batch(cols, x + (size_t)n0 * s->in_c * ihw, nb, s->in_c, s->in_h, s->in_w,
                     s->out_h, s->out_w, s->k, s->stride, s->pad);
        gemm(0, 0, s->out_c, (int)ld, kk, w, kk, cols, (int)ld, 0.0f, ym, (int)ld);
        from_channel_major(y + (size_t)n0 * s->out_c * ohw, ym, nb, s->out_c, ohw, b);
    }
}

static void conv2d_backward(gemm_fn gemm, float *dx, float *dw, float *db, const float *dy,
                            const float *x, const float *w, int batch, const conv_shape *s,
                            float *scratch) {
    const int kk = s->in_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    FOR_EACH_CHUNK(s, batch, 0, n0, nb) {
        const size_t ld = (size_t)nb * ohw;
        float *cols = scratch, *dym = scratch + (size_t)kk * ld;
        to_channel_major(dym, dy + (size_t)n0 * s->out_c * ohw, nb, s->out_c, ohw);
        bias_grad(db, dym, s->out_c, ld);
        im2col_batch(cols, x + (size_t)n0 * s->in_c * ihw, nb, s->in_c, s->in_h, s->in_w,
                     s->out_h, s->out_w, s->k, s->stride, s->pad);
        /* dW (out_c, kk) += dy (out_c, chunk*ohw) cols^T */
        gemm(0, 1, s->out_c, kk, (int)ld, dym, (int)ld, cols, (int)ld, 1.0f, dw, kk);
        if (!dx) continue;
        /* dcols (kk, chunk*ohw) = W^T dy, over the columns, then back onto each image */
        gemm(1, 0, kk, (int)ld, s->out_c, w, kk, dym, (int)ld, 0.0f, cols, (int)ld);
        col2im_batch(dx + (size_t)n0 * s->in_c * ihw, cols, nb, s->in_c, s->in_h, s->in_w,
                     s->out_h, s->out_w, s->k, s->stride, s->pad, NULL);
    }
}

/* A transposed convolution is the adjoint of the convolution from its output back to its
 * input: weight (in_c, out_c, k, k) read as (in_c, out_c*k*k). */
static void convt2d_forward(gemm_fn gemm, float *y, const float *x, const float *w,
                            const float *b, int batch, const conv_shape *s, float *scratch) {
    const int kk = s->out_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    FOR_EACH_CHUNK(s, batch, 1, n0, nb) {
        const size_t ld = (size_t)nb * ihw;
        float *cols = scratch, *xm = scratch + (size_t)kk * ld;
        to_channel_major(xm, x + (size_t)n0 * s->in_c * ihw, nb, s->in_c, ihw);
        /* cols (kk, chunk*ihw) = W^T x */
        gemm(1, 0, kk, (int)ld, s->in_c, w, kk, xm, (int)ld, 0.0f, cols, (int)ld);
        col2im_batch(y + (size_t)n0 * s->out_c * ohw, cols, nb, s->out_c, s->out_h, s->out_w,
                     s->in_h, s->in_w, s->k, s->stride, s->pad, b);
    }
}

static void convt2d_backward(gemm_fn gemm, float *dx, float *dw, float *db, const float *dy,
                             const float *x, const float *w, int batch, const conv_shape *s,
                             float *scratch) {
    const int kk = s->out_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    FOR_EACH_CHUNK(s, batch, 1, n0, nb) {
        const size_t ld = (size_t)nb * ihw;
        float *cols = scratch, *xm = scratch + (size_t)kk * ld;
        const float *dyc = dy + (size_t)n0 * s->out_c * ohw;
        bias_grad_batch_major(db, dyc, nb, s->out_c, ohw);
        im2col_batch(cols, dyc, nb, s->out_c, s->out_h, s->out_w, s->in_h, s->in_w, s->k,
                     s->stride, s->pad);
        to_channel_major(xm, x + (size_t)n0 * s->in_c * ihw, nb, s->in_c, ihw);
        /* dW (in_c, kk) += x (in_c, chunk*ihw) cols^T */
        gemm(0, 1, s->in_c, kk, (int)ld, xm, (int)ld, cols, (int)ld, 1.0f, dw, kk);
        if (!dx) continue;
        /* dx (in_c, chunk*ihw) = W cols, then back to (chunk, in_c, ihw) */
        gemm(0, 0, s->in_c, (int)ld, kk, w, kk, cols, (int)ld, 0.0f, xm, (int)ld);
        from_channel_major(dx + (size_t)n0 * s->in_c * ihw, xm, nb, s->in_c, ihw, NULL);
    }
}

/* The passes with OpenBLAS's products (the CPU backend's) and, in builds with oneDNN, with
 * oneDNN's sgemm (its backend's) or its bf16 matmuls (--precision bf16): the same code around
 * them. */
#define CONV_OPS(suffix, gemm)                                                                     \
    void op_conv2d_forward##suffix(float *y, const float *x, const float *w, const float *b,      \
                                   int batch, const conv_shape *s, float *cols) {                 \
        conv2d_forward(gemm, y, x, w, b, batch, s, cols);                                         \
    }                                                                                              \
    void op_conv2d_backward##suffix(float *dx, float *dw, float *db, const float *dy,             \
                                    const float *x, const float *w, int batch,                    \
                                    const conv_shape *s, float *cols) {                           \
        conv2d_backward(gemm, dx, dw, db, dy, x, w, batch, s, cols);                              \
    }                                                                                              \
    void op_convt2d_forward##suffix(float *y, const float *x, const float *w, const float *b,     \
                                    int batch, const conv_shape *s, float *cols) {                \
        convt2d_forward(gemm, y, x, w, b, batch, s, cols);                                        \
    }                                                                                              \
    void op_convt2d_backward##suffix(float *dx, float *dw, float *db, const float *dy,            \
                                     const float *x, const float *w, int batch,                   \
                                     const conv_shape *s, float *cols) {                          \
        convt2d_backward(gemm, dx, dw, db, dy, x, w, batch, s, cols);                             \
    }

CONV_OPS(, gemm_openblas)
#ifdef VAE_ONEDNN
CONV_OPS(_onednn, gemm_onednn)
CONV_OPS(_bf16, op_gemm_bf16)
#endif

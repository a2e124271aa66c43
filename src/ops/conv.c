/* conv.c — 2-D convolution and transposed convolution (PyTorch's Conv2d and ConvTranspose2d,
 * NCHW, square kernels), as im2col/col2im around one matrix product (OpenBLAS's or oneDNN's
 * sgemm, as the backend says) per chunk of the batch. */
#include "ops/ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <string.h>

/* A pass splits its batch among s->workers threads (at most; fewer when fewer are free or the
 * batch is smaller): each runs im2col, its own product (single-threaded: it is inside the
 * parallel region) and col2im on its samples, in scratch of its own, and sums its share of the
 * weight and bias gradients apart; the shares are added in worker order. Results are the same
 * for a given number of workers and agree between numbers to the products' rounding. With one
 * worker the loops below split each step over the threads instead (above OP_PARALLEL_MIN
 * values), each thread computing its samples or channels in the order one thread would. */

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

/* A worker goes through its samples in chunks, one matrix product per chunk: columns of a
 * chunk's samples side by side (K x chunk*HW), activations gathered channel-major (C x
 * chunk*HW) and scattered back. A chunk's scratch is held to CONV_SCRATCH_FLOATS (or one
 * sample's), so that it stays in the core's cache and a workspace's memory does not grow with
 * its batch (an evaluation batch of 1000 would need 100 MiB for the conv preset). */
#ifndef CONV_SCRATCH_FLOATS
#define CONV_SCRATCH_FLOATS (1u << 18)
#endif

static size_t scratch_per_sample(const conv_shape *s, int transposed) {
    size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    if (transposed) /* columns (out_c k k, ihw) and the input channel-major (in_c, ihw) */
        return (size_t)s->out_c * s->k * s->k * ihw + (size_t)s->in_c * ihw;
    /* columns (in_c k k, ohw) and the output channel-major (out_c, ohw) */
    return (size_t)s->in_c * s->k * s->k * ohw + (size_t)s->out_c * ohw;
}

/* The most samples of a chunk */
static int chunk_most(const conv_shape *s, int transposed) {
    size_t most = CONV_SCRATCH_FLOATS / scratch_per_sample(s, transposed);
    return most < 1 ? 1 : most > (size_t)1 << 20 ? 1 << 20 : (int)most;
}

/* Samples per chunk for `len` samples: as many chunks as the cap asks, of even sizes */
static int chunk_of(const conv_shape *s, int len, int transposed) {
    if (len < 1) return 1;
    const int most = chunk_most(s, transposed), chunks = (len + most - 1) / most;
    return (len + chunks - 1) / chunks;
}

/* A worker's share of the gradients: the weights' and the biases' */
static size_t share_floats(const conv_shape *s) {
    return (size_t)s->in_c * s->out_c * s->k * s->k + (size_t)s->out_c;
}

static int workers_allowed(const conv_shape *s, int batch) {
    int w = s->workers > 1 ? s->workers : 1;
    return w < batch ? w : batch > 0 ? batch : 1;
}

/* A worker's scratch: a chunk of the largest size any batch up to `batch` can ask (min(batch,
 * the cap)), so that a workspace made for a batch serves every smaller one */
static size_t slot_floats(const conv_shape *s, int batch, int transposed) {
    const int most = chunk_most(s, transposed);
    return (size_t)(batch < most ? batch : most) * scratch_per_sample(s, transposed);
}

/* Each of the workers a pass may use gets a slot, and all but the first a share of the
 * gradients. */
size_t op_conv_cols_size(const conv_shape *s, int batch, int transposed) {
    const int w = workers_allowed(s, batch);
    return (size_t)w * slot_floats(s, batch, transposed) + (size_t)(w - 1) * share_floats(s);
}

/* The workers a pass runs: those allowed, no more than the threads, one inside a parallel
 * region (a batch thread's pass) */
static int workers_now(const conv_shape *s, int batch) {
    int w = workers_allowed(s, batch);
#ifdef _OPENMP
    if (omp_in_parallel()) return 1;
    if (w > omp_get_max_threads()) w = omp_get_max_threads();
#endif
    return w;
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

/* The sum of n floats as 16 interleaved partial sums, added up in order at the end: the adds
 * vectorize (one running sum is a chain of dependent adds, 4 cycles a value), and the bits do
 * not depend on the threads. */
static float sum_of(const float *v, size_t n) {
    enum { LANES = 16 };
    float part[LANES] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES)
#pragma omp simd
        for (int j = 0; j < LANES; j++) part[j] += v[i + j];
    for (int j = 0; i < n; i++, j++) part[j] += v[i];
    float sum = 0.0f;
    for (int j = 0; j < LANES; j++) sum += part[j];
    return sum;
}

/* db[c] += the sum of channel c over the batch, from channel-major values */
static void bias_grad(float *db, const float *cm, int c, size_t n) {
#pragma omp parallel for schedule(static) if ((size_t)c * n >= OP_PARALLEL_MIN)
    for (int ch = 0; ch < c; ch++) db[ch] += sum_of(cm + (size_t)ch * n, n);
}

void op_conv_bias_grad(float *db, const float *v, int batch, int c, size_t hw) {
#pragma omp parallel for schedule(static) if ((size_t)batch * c * hw >= OP_PARALLEL_MIN)
    for (int ch = 0; ch < c; ch++)
        for (int n = 0; n < batch; n++) db[ch] += sum_of(v + ((size_t)n * c + ch) * hw, hw);
}

void op_conv_bias_add(float *v, const float *b, int batch, int c, size_t hw) {
#pragma omp parallel for schedule(static) if ((size_t)batch * c * hw >= OP_PARALLEL_MIN)
    for (int nc = 0; nc < batch * c; nc++) {
        float *p = v + (size_t)nc * hw;
        const float add = b[nc % c];
        for (size_t i = 0; i < hw; i++) p[i] += add;
    }
}

/* The chunks [n0, n0 + nb) of the samples [lo, hi), in order */
#define FOR_EACH_CHUNK(s, lo, hi, transposed, n0, nb)                                              \
    for (int n0 = lo, chunk_ = chunk_of(s, hi - lo, transposed),                                   \
             nb = chunk_ < hi - lo ? chunk_ : hi - lo;                                             \
         n0 < hi; n0 += nb, nb = hi - n0 < chunk_ ? hi - n0 : chunk_)

static void conv2d_forward_range(op_gemm_fn gemm, float *y, const float *x, const float *w,
                                 const float *b, int lo, int hi, const conv_shape *s,
                                 float *scratch) {
    const int kk = s->in_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    FOR_EACH_CHUNK(s, lo, hi, 0, n0, nb) {
        const size_t ld = (size_t)nb * ohw;
        float *cols = scratch, *ym = scratch + (size_t)kk * ld;
        im2col_batch(cols, x + (size_t)n0 * s->in_c * ihw, nb, s->in_c, s->in_h, s->in_w,
                     s->out_h, s->out_w, s->k, s->stride, s->pad);
        gemm(0, 0, s->out_c, (int)ld, kk, w, kk, cols, (int)ld, 0.0f, ym, (int)ld);
        from_channel_major(y + (size_t)n0 * s->out_c * ohw, ym, nb, s->out_c, ohw, b);
    }
}

static void conv2d_backward_range(op_gemm_fn gemm, float *dx, float *dw, float *db, const float *dy,
                                  const float *x, const float *w, int lo, int hi,
                                  const conv_shape *s, float *scratch) {
    const int kk = s->in_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    FOR_EACH_CHUNK(s, lo, hi, 0, n0, nb) {
        const size_t ld = (size_t)nb * ohw;
        float *cols = scratch, *dym = scratch + (size_t)kk * ld;
        to_channel_major(dym, dy + (size_t)n0 * s->out_c * ohw, nb, s->out_c, ohw);
        if (dw) {
            bias_grad(db, dym, s->out_c, ld);
            im2col_batch(cols, x + (size_t)n0 * s->in_c * ihw, nb, s->in_c, s->in_h, s->in_w,
                         s->out_h, s->out_w, s->k, s->stride, s->pad);
            /* dW (out_c, kk) += dy (out_c, chunk*ohw) cols^T */
            gemm(0, 1, s->out_c, kk, (int)ld, dym, (int)ld, cols, (int)ld, 1.0f, dw, kk);
        }
        if (!dx) continue;
        /* dcols (kk, chunk*ohw) = W^T dy, over the columns, then back onto each image */
        gemm(1, 0, kk, (int)ld, s->out_c, w, kk, dym, (int)ld, 0.0f, cols, (int)ld);
        col2im_batch(dx + (size_t)n0 * s->in_c * ihw, cols, nb, s->in_c, s->in_h, s->in_w,
                     s->out_h, s->out_w, s->k, s->stride, s->pad, NULL);
    }
}

/* A transposed convolution is the adjoint of the convolution from its output back to its
 * input: weight (in_c, out_c, k, k) read as (in_c, out_c*k*k). */
static void convt2d_forward_range(op_gemm_fn gemm, float *y, const float *x, const float *w,
                                  const float *b, int lo, int hi, const conv_shape *s,
                                  float *scratch) {
    const int kk = s->out_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    FOR_EACH_CHUNK(s, lo, hi, 1, n0, nb) {
        const size_t ld = (size_t)nb * ihw;
        float *cols = scratch, *xm = scratch + (size_t)kk * ld;
        to_channel_major(xm, x + (size_t)n0 * s->in_c * ihw, nb, s->in_c, ihw);
        /* cols (kk, chunk*ihw) = W^T x */
        gemm(1, 0, kk, (int)ld, s->in_c, w, kk, xm, (int)ld, 0.0f, cols, (int)ld);
        col2im_batch(y + (size_t)n0 * s->out_c * ohw, cols, nb, s->out_c, s->out_h, s->out_w,
                     s->in_h, s->in_w, s->k, s->stride, s->pad, b);
    }
}

static void convt2d_backward_range(op_gemm_fn gemm, float *dx, float *dw, float *db,
                                   const float *dy, const float *x, const float *w, int lo,
                                   int hi, const conv_shape *s, float *scratch) {
    const int kk = s->out_c * s->k * s->k;
    const size_t ohw = (size_t)s->out_h * s->out_w, ihw = (size_t)s->in_h * s->in_w;
    FOR_EACH_CHUNK(s, lo, hi, 1, n0, nb) {
        const size_t ld = (size_t)nb * ihw;
        float *cols = scratch, *xm = scratch + (size_t)kk * ld;
        const float *dyc = dy + (size_t)n0 * s->out_c * ohw;
        im2col_batch(cols, dyc, nb, s->out_c, s->out_h, s->out_w, s->in_h, s->in_w, s->k,
                     s->stride, s->pad);
        if (dw) {
            op_conv_bias_grad(db, dyc, nb, s->out_c, ohw);
            to_channel_major(xm, x + (size_t)n0 * s->in_c * ihw, nb, s->in_c, ihw);
            /* dW (in_c, kk) += x (in_c, chunk*ihw) cols^T */
            gemm(0, 1, s->in_c, kk, (int)ld, xm, (int)ld, cols, (int)ld, 1.0f, dw, kk);
        }
        if (!dx) continue;
        /* dx (in_c, chunk*ihw) = W cols, then back to (chunk, in_c, ihw) */
        gemm(0, 0, s->in_c, (int)ld, kk, w, kk, cols, (int)ld, 0.0f, xm, (int)ld);
        from_channel_major(dx + (size_t)n0 * s->in_c * ihw, xm, nb, s->in_c, ihw, NULL);
    }
}

/* A pass's workers: worker i takes samples [batch i / n, batch (i + 1) / n) and the i-th
 * scratch slot (a chunk's worth, as op_conv_cols_size lays them out) */
typedef struct {
    int n;
    size_t slot;   /* floats per worker's scratch */
    float *shares; /* workers 1..n-1's gradient shares, share_floats() each */
} conv_workers;

static conv_workers workers_of(const conv_shape *s, int batch, int transposed, float *scratch) {
    conv_workers w = {workers_now(s, batch), slot_floats(s, batch, transposed), NULL};
    w.shares = scratch + (size_t)w.n * w.slot;
    return w;
}

#define WORKER_LO(i, n, batch) ((int)((long)(batch) * (i) / (n)))

/* Worker i's (i >= 1) share of the gradients: the weights', then the biases' */
static float *share_at(const conv_workers *w, int i, const conv_shape *s) {
    return w->shares + (size_t)(i - 1) * share_floats(s);
}

/* Worker i's gradient targets: the caller's for the first, a zeroed share for the others */
static void share_of(const conv_workers *w, int i, const conv_shape *s, float **dw, float **db) {
    if (i == 0) return;
    float *share = share_at(w, i, s);
    memset(share, 0, sizeof(float) * share_floats(s));
    *dw = share, *db = share + share_floats(s) - (size_t)s->out_c;
}

/* dw, db += the shares of workers 1..n-1, in worker order */
static void add_shares(const conv_workers *w, const conv_shape *s, float *dw, float *db) {
    const size_t nw = share_floats(s) - (size_t)s->out_c;
    for (int i = 1; i < w->n; i++) {
        const float *share = share_at(w, i, s);
#pragma omp parallel for schedule(static) if (nw >= OP_PARALLEL_MIN)
        for (size_t j = 0; j < nw; j++) dw[j] += share[j];
        for (int c = 0; c < s->out_c; c++) db[c] += share[nw + c];
    }
}

static void conv_forward(op_gemm_fn gemm, int transposed, float *y, const float *x, const float *w,
                         const float *b, int batch, const conv_shape *s, float *scratch) {
    const conv_workers k = workers_of(s, batch, transposed, scratch);
#pragma omp parallel for schedule(static, 1) num_threads(k.n) if (k.n > 1)
    for (int i = 0; i < k.n; i++)
        (transposed ? convt2d_forward_range : conv2d_forward_range)(
            gemm, y, x, w, b, WORKER_LO(i, k.n, batch), WORKER_LO(i + 1, k.n, batch), s,
            scratch + (size_t)i * k.slot);
}

static void conv_backward(op_gemm_fn gemm, int transposed, float *dx, float *dw, float *db,
                          const float *dy, const float *x, const float *w, int batch,
                          const conv_shape *s, float *scratch) {
    const conv_workers k = workers_of(s, batch, transposed, scratch);
#pragma omp parallel for schedule(static, 1) num_threads(k.n) if (k.n > 1)
    for (int i = 0; i < k.n; i++) {
        float *dwi = dw, *dbi = db;
        if (dw) share_of(&k, i, s, &dwi, &dbi);
        (transposed ? convt2d_backward_range : conv2d_backward_range)(
            gemm, dx, dwi, dbi, dy, x, w, WORKER_LO(i, k.n, batch),
            WORKER_LO(i + 1, k.n, batch), s, scratch + (size_t)i * k.slot);
    }
    if (dw) add_shares(&k, s, dw, db);
}

/* The passes with OpenBLAS's products (the CPU backend's) and, in builds with oneDNN, with
 * oneDNN's sgemm (its backend's) or its bf16 matmuls (--precision bf16): the same code around
 * them. */
#define CONV_OPS(suffix, gemm)                                                                     \
    void op_conv2d_forward##suffix(float *y, const float *x, const float *w, const float *b,      \
                                   int batch, const conv_shape *s, float *cols) {                 \
        conv_forward(gemm, 0, y, x, w, b, batch, s, cols);                                        \
    }                                                                                              \
    void op_conv2d_backward##suffix(float *dx, float *dw, float *db, const float *dy,             \
                                    const float *x, const float *w, int batch,                    \
                                    const conv_shape *s, float *cols) {                           \
        conv_backward(gemm, 0, dx, dw, db, dy, x, w, batch, s, cols);                             \
    }                                                                                              \
    void op_convt2d_forward##suffix(float *y, const float *x, const float *w, const float *b,     \
                                    int batch, const conv_shape *s, float *cols) {                \
        conv_forward(gemm, 1, y, x, w, b, batch, s, cols);                                        \
    }                                                                                              \
    void op_convt2d_backward##suffix(float *dx, float *dw, float *db, const float *dy,            \
                                     const float *x, const float *w, int batch,                   \
                                     const conv_shape *s, float *cols) {                          \
        conv_backward(gemm, 1, dx, dw, db, dy, x, w, batch, s, cols);                             \
    }

CONV_OPS(, op_gemm)
#ifdef VAE_ONEDNN
CONV_OPS(_im2col_onednn, op_gemm_onednn)
CONV_OPS(_im2col_bf16, op_gemm_bf16)
#endif

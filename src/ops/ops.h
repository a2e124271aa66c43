/* ops.h — the numerical ops, each a forward/backward pair. Ops know nothing of models.
 * Gradients are added into their outputs when the op's accumulate flag is set and written
 * otherwise: writing the first contribution spares a zeroing pass over every buffer. */
#ifndef VAE_OPS_H
#define VAE_OPS_H

#include "vae.h"

/* Below this many values an elementwise or per-sample loop runs on one thread: waking the
 * OpenMP pool costs more. */
#define OP_PARALLEL_MIN 32768

/* y = act(x W^T + b)   x (B,in), W (out,in), b (out), y (B,out); act NULL: identity */
void op_linear_forward(float *y, const float *x, const float *w, const float *b, int batch,
                       int in, int out, const vae_activation *act);
/* dx = dy W; dW = dy^T x; db = sum_B dy.   dx may be NULL when the input needs no gradient,
 * dw (and db) when the parameters' gradients are left for later (batch threads:
 * op_dense_param_grads over the whole batch). accumulate_dx / accumulate_params: add (+=)
 * instead of writing. */
void op_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int batch, int in, int out, int accumulate_dx,
                        int accumulate_params);

/* db (+)= the column sums of dy (B,out), rows in order (the same bits on any thread count). */
void op_column_sums(float *db, const float *dy, int batch, int out, int accumulate);

/* Wt (in, out) = W (out, in) transposed, for the forward below. */
void op_transpose_weights(void *wt, const float *w, int out, int in);
/* y = act(x Wt + b) on Wt transposed by op_transpose_weights (w, the weights as they are,
 * unread): the product that runs faster on a few rows (ops_table.h's prepack_weights). */
void op_linear_forward_transposed(float *y, const float *x, const float *w, const void *wt,
                                  const float *b, int batch, int in, int out,
                                  const vae_activation *act);

/* The dense layer on oneDNN's sgemm (builds with oneDNN only; the same arguments and results,
 * up to the products' rounding). */
void op_linear_forward_onednn(float *y, const float *x, const float *w, const float *b, int batch,
                              int in, int out, const vae_activation *act);
void op_linear_backward_onednn(float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, int batch, int in, int out, int accumulate_dx,
                               int accumulate_params);
void op_linear_forward_transposed_onednn(float *y, const float *x, const float *w,
                                         const void *wt, const float *b, int batch, int in,
                                         int out, const vae_activation *act);
/* The dense layer with its products in bf16 (bf16 inputs, fp32 accumulation and results;
 * oneDNN builds only), the same arguments; and whether this CPU runs such products natively
 * (1; why gets oneDNN's kernel) or not (0; why says why). */
void op_linear_forward_bf16(float *y, const float *x, const float *w, const float *b, int batch,
                            int in, int out, const vae_activation *act);
void op_linear_backward_bf16(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, int batch, int in, int out, int accumulate_dx,
                             int accumulate_params);
int op_bf16_check(char *why, size_t why_size);
/* The same on W already rounded to bf16 by op_round_bf16 (wb; w, the fp32 weights, for a
 * product oneDNN refuses, which falls back on fp32's): each call rounds only the activations,
 * and threads that share wb spare a copy each. */
void op_round_bf16(void *dst, const float *w, int out, int in);
void op_linear_forward_bf16_rounded(float *y, const float *x, const float *w, const void *wb,
                                    const float *b, int batch, int in, int out,
                                    const vae_activation *act);
void op_linear_backward_bf16_rounded(float *dx, float *dw, float *db, const float *dy,
                                     const float *x, const float *w, const void *wb, int batch,
                                     int in, int out, int accumulate_dx, int accumulate_params);
/* vae_adam_step that also rounds every new parameter to bf16 into rounded[i] (op_round_bf16's
 * bits), block by block while they are in L1: the weights those read, kept current by the
 * pass that changes them */
void op_adam_step_bf16(vae_adam *adam, float *params, float *grads, void *rounded);

/* c (m, n) = a (m, k; stored transposed when ta) b (k, n; transposed when tb) + beta c, all
 * row-major with leading dimensions lda, ldb, ldc: one product from a backend's library
 * (OpenBLAS's cblas_sgemm; oneDNN's sgemm) */
typedef void (*op_gemm_fn)(int ta, int tb, int m, int n, int k, const float *a, int lda,
                           const float *b, int ldb, float beta, float *c, int ldc);
void op_gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
             int ldb, float beta, float *c, int ldc);
void op_gemm_onednn(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                    int ldb, float beta, float *c, int ldc);

/* One dense layer's parameters' gradients over a batch: dw (out,in) += dy^T x, db (out) +=
 * the column sums of dy (batch,out), x (batch,in). */
typedef struct {
    float *dw, *db;
    const float *dy, *x;
    int batch, in, out;
} op_dense_grad;
/* The n layers' gradients in one parallel pass (dense_grads.c): each thread computes blocks of
 * output rows with products of its own; with `gemm`'s products, OpenBLAS's, oneDNN's, or
 * (bf16) the layers one at a time on bf16 products. */
void op_dense_param_grads_with(op_gemm_fn gemm, const op_dense_grad *g, int n);
void op_dense_param_grads(const op_dense_grad *g, int n);
void op_dense_param_grads_onednn(const op_dense_grad *g, int n);
void op_dense_param_grads_bf16(const op_dense_grad *g, int n);

/* y = act(y + b) row by row, in place: the pass after a GEMM   y (B,out), b (out) */
void op_bias_activation(float *y, const float *b, int batch, int out, const vae_activation *act);
/* y = act(y) in place over n values. */
void op_activation_forward(float *y, size_t n, vae_activation act);
/* dx = dy * act'(x), written in place over dy, computed from the OUTPUT y = act(x): every
 * supported activation's derivative is a function of its output. */
void op_activation_backward(float *dy, const float *y, size_t n, vae_activation act);

/* p = 1 / (1 + exp(-l)) over n values, stable for large |l| */
void op_sigmoid(float *p, const float *logits, size_t n);

/* The geometry of a convolution layer, NCHW: in (in_c, in_h, in_w) -> out (out_c, out_h, out_w)
 * with a k x k kernel. For Conv2d out = (in + 2 pad - k) / stride + 1; for ConvTranspose2d
 * out = (in - 1) stride - 2 pad + k. */
typedef struct {
    int in_c, in_h, in_w, out_c, out_h, out_w, k, stride, pad;
    int workers; /* at most this many threads split a pass's batch (0 or 1: one; the scratch
                    holds a slot for each, so op_conv_cols_size and the pass must agree) */
    /* The input's and the output's activations (and their gradients) in channel blocks of
     * this many, 8 or 16 (0: NCHW): oneDNN's nChw16c (sample, channel / 16, row, column,
     * channel % 16) or nChw8c; only for tables that take them (vae_ops.conv_block) and
     * channels a multiple of the block; the scratch size depends on them too. */
    int in_blocked, out_blocked;
} conv_shape;
/* Floats of the scratch buffer `cols` that the conv ops (transposed: the ConvTranspose2d ones)
 * need for a batch. */
size_t op_conv_cols_size(const conv_shape *s, int batch, int transposed);
/* Conv2d: y (B, out) = x (B, in) * w (out_c, in_c, k, k) + b (out_c). */
void op_conv2d_forward(float *y, const float *x, const float *w, const float *b, int batch,
                       const conv_shape *s, float *cols);
/* dw, db accumulate; dx (may be NULL) is overwritten; dw NULL: dx alone (db unused). */
void op_conv2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int batch, const conv_shape *s, float *cols);
/* ConvTranspose2d with PyTorch's weight layout (in_c, out_c, k, k). */
void op_convt2d_forward(float *y, const float *x, const float *w, const float *b, int batch,
                        const conv_shape *s, float *cols);
void op_convt2d_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, int batch, const conv_shape *s, float *cols);
/* db[c] += the sum of channel c over the batch of NCHW values v (B, C, HW), each sample's sum
 * (16 interleaved partial sums) added in turn: a bias's gradient */
void op_conv_bias_grad(float *db, const float *v, int batch, int c, size_t hw);
/* v[n, c, :] += b[c] over the batch of NCHW values v (B, C, HW): a bias added apart */
void op_conv_bias_add(float *v, const float *b, int batch, int c, size_t hw);
/* The four conv ops of one implementation, named with its suffix (the arguments above) */
#define OP_CONV_DECLARE(suffix)                                                                    \
    void op_conv2d_forward##suffix(float *y, const float *x, const float *w, const float *b,      \
                                   int batch, const conv_shape *s, float *cols);                  \
    void op_conv2d_backward##suffix(float *dx, float *dw, float *db, const float *dy,             \
                                    const float *x, const float *w, int batch,                    \
                                    const conv_shape *s, float *cols);                            \
    void op_convt2d_forward##suffix(float *y, const float *x, const float *w, const float *b,     \
                                    int batch, const conv_shape *s, float *cols);                 \
    void op_convt2d_backward##suffix(float *dx, float *dw, float *db, const float *dy,            \
                                     const float *x, const float *w, int batch,                   \
                                     const conv_shape *s, float *cols);
/* The same on oneDNN's convolution and deconvolution primitives (conv_onednn.c; builds with
 * oneDNN only), and the im2col passes around oneDNN's sgemm they fall back on where oneDNN
 * refuses a primitive; the scratch of the first (which covers the second's). */
size_t op_conv_cols_size_onednn(const conv_shape *s, int batch, int transposed);
/* The channel block (8 or 16) these convolutions take activations in on this CPU, 0: none */
int op_conv_block_onednn(void);
OP_CONV_DECLARE(_onednn)
OP_CONV_DECLARE(_im2col_onednn)
/* And with bf16 products (--precision bf16): the same primitives with their inputs in bf16,
 * falling back on the im2col passes around op_gemm_bf16 below; their scratch. */
size_t op_conv_cols_size_bf16(const conv_shape *s, int batch, int transposed);
int op_conv_block_bf16(void);
/* 1 where those primitives' weight gradients take bf16 inputs too (one thread without AMX
 * tiles), 0 where they take the fp32 ones (faster on more threads or on tiles: the fp32
 * table's gradient, bit for bit); at the thread count the caller runs on now */
int op_conv_bf16_weight_grads(void);
OP_CONV_DECLARE(_bf16)
OP_CONV_DECLARE(_im2col_bf16)

/* c (m, n) = a (m, k; stored transposed when ta) b (k, n; transposed when tb) + beta c, all
 * row-major and unstrided, beta 0 or 1: inputs rounded to bf16, sums and c in fp32 (oneDNN's
 * sgemm where that cannot run). */
void op_gemm_bf16(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                  int ldb, float beta, float *c, int ldc);

#endif

/* kernels.cuh — the GPU backend's fused kernels, each the device twin of CPU ops in src/ops and
 * src/loss. Launchers take the stream; every kernel is deterministic (fixed reduction orders,
 * no atomics on values that feed parameters), so the same seed gives the same bits. */
#ifndef VAE_CUDA_KERNELS_CUH
#define VAE_CUDA_KERNELS_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "vae.h"

/* Counters of the step in flight, on the device, so that one captured graph serves every step:
 * kernels read them and the Adam kernel advances them. */
typedef struct {
    unsigned long long global_step; /* steps taken before this one */
    unsigned long long adam_steps;  /* Adam's count (steps applied) */
    unsigned long long bad_step;    /* first step with a non-finite loss or gradient; ~0: none */
    unsigned int epoch_step;        /* this step's index in its epoch */
    float adam_lr_c1;               /* lr / (1 - beta1^t) for this step */
    float adam_inv_sqrt_c2;         /* 1 / sqrt(1 - beta2^t) */
} gpu_counters;

#define GPU_NO_BAD_STEP (~0ULL)
#define GPU_MAX_PARTIALS 4096 /* per-block loss partial sums of one pass */

/* Where the reparameterization's noise comes from: training draws row r, unit j as value
 * r*L + j of stream (seed, base + global_step); evaluation as value j of stream
 * (seed, base + first + r): exactly the CPU's streams. */
typedef struct {
    uint64_t seed, base, first;
    int per_sample; /* 0: training's one stream per step; 1: evaluation's one per sample */
} gpu_noise;

/* The likelihood's constants, and which values are observed: mask (1 observed, rows like x's;
 * NULL: all) leaves the missing ones out of the loss and its gradient. */
typedef struct {
    vae_likelihood kind;
    vae_variance variance;
    float sigma, floor;
    int dim;
    const uint8_t *mask;
} gpu_lik;

/* A conditional model's labels in a pass: row r's label is labels[(row0 + r) / per] (per > 1:
 * importance draws of one example), and its one-hot code adds column `label` of the layer's
 * label block w (row stride ld: the weight's last C columns) to the layer's products. labels
 * NULL: an unconditional model. */
typedef struct {
    const uint8_t *labels;
    const float *w;
    int ld, per;
    size_t row0;
} gpu_labels;

/* What one step gathers by the epoch's order, row r from sample order[epoch_step * batch + r]:
 * x_out (rows, D), with labels their labels, and with masks (N, D; NULL: all observed) for a
 * model of missing values their masks (mask_out) and the encoder's input [x | mask] (x_in,
 * rows x 2D; NULL: not such a model). */
typedef struct {
    const float *x;
    const uint8_t *labels, *masks;
} gpu_source;
typedef struct {
    float *x, *x_in;
    uint8_t *labels, *masks;
} gpu_batch;
void gpu_gather(cudaStream_t s, gpu_source from, gpu_batch to, const uint32_t *order,
                const gpu_counters *c, int batch, int rows, int dim);
/* x_in (rows, 2D) = [x | mask] of rows of x (rows, D) and mask (NULL: all observed) */
void gpu_widen(cudaStream_t s, const float *x, const uint8_t *mask, int rows, int dim,
               float *x_in);
/* y (rows, cols) = act(y + b + the label's column) */
void gpu_bias_act(cudaStream_t s, float *y, const float *b, gpu_labels lab, int rows, int cols,
                  vae_activation act);
/* The label block's gradient: dw[c * ld + k] = sum of dy[r, c] over the rows r labelled k
 * (dw: the weight gradient's label block, lab.ld its row stride), k < classes */
void gpu_label_columns(cudaStream_t s, const float *dy, int rows, int cols, gpu_labels lab,
                       int classes, float *dw);
/* For each row of h (rows, H), the last hidden layer's products before its bias: h = act(h +
 * b_h) in place, the heads mu, lv (rows, L) = h W^T + b, eps drawn, z = mu + exp(lv/2) eps,
 * kl_rows[r] = -1/2 sum_j (1 + lv - mu^2 - exp(lv)). The row lives in shared memory:
 * gpu_heads_forward_fits says whether it fits. */
int gpu_heads_forward_fits(int hidden, int latent);
void gpu_heads_forward(cudaStream_t s, float *h, const float *b_h, gpu_labels lab,
                       vae_activation act, int hidden, const float *w_mu, const float *w_lv,
                       const float *b_mu, const float *b_lv, float *mu, float *lv, float *eps,
                       float *z, int rows, int latent, gpu_noise noise, const gpu_counters *c,
                       double *kl_rows);
/* For output o = out + bias (rows, width), row r scored against row r / per of x:
 * part_recon[block] = the block's sum of -log p(x|o); with dout: dout = d/do (-log p) times
 * row_scale[r] (NULL: 1 / rows, the batch mean), dbias = its column sums, d_dim_logvar (may
 * be NULL) the per-value log-variances' gradient. Returns the blocks used. */
int gpu_likelihood(cudaStream_t s, const float *out, const float *bias, const float *x, int rows,
                   int per, const float *row_scale, gpu_lik lik, const float *dim_logvar,
                   float *dout, float *dbias, float *d_dim_logvar, double *part_recon);
/* dy (rows, cols) *= act'(y) (from the output y), db = column sums of the result */
void gpu_act_backward(cudaStream_t s, float *dy, const float *y, float *db, int rows, int cols,
                      vae_activation act);
/* dz = dd W_dec (dd (rows, H) the first decoder layer's output gradient, W_dec (H, L) with
 * row stride ld, L + C for a conditional model), then
 * dmu = dz + k_j mu, dlv = dz eps exp(lv/2)/2 + k_j (exp(lv) - 1)/2 with k_j this step's KL
 * weight over rows (0 for a unit under the free bits) */
void gpu_latent_backward(cudaStream_t s, const float *dd, const float *w_dec, int ld, int hidden,
                         const float *mu, const float *lv, const float *eps, float *dmu,
                         float *dlv, int rows, int latent, float beta, uint64_t warmup,
                         float free_bits, const gpu_counters *c);
/* dh (rows, H) = act'(h) * (dmu W_mu + dlv W_lv), db = its column sums */
void gpu_heads_backward(cudaStream_t s, const float *dmu, const float *dlv, const float *w_mu,
                        const float *w_lv, const float *h, float *dh, float *db, int rows,
                        int hidden, int latent, vae_activation act);
/* What the step's last check adds up: the loss's partial sums and per-row KL, the heads' bias
 * gradients (column sums of dmu, dlv), into the history by step. */
typedef struct {
    const double *part_recon, *kl_rows;
    int n_recon, n_kl, rows, latent;
    const float *dmu, *dlv;
    float *db_mu, *db_lv;
    double *hist_recon, *hist_kl;
    int history;
} gpu_step_sums;
/* Checks the gradients, the heads' bias gradients it sums and the step's loss for finiteness,
 * keeps the loss in the history, and prepares Adam's bias corrections. */
void gpu_step_finish(cudaStream_t s, const float *grads, size_t n, gpu_counters *c,
                     gpu_step_sums sums, vae_adam_options adam);
/* Adam over the flat buffers unless the step was not finite; advances the counters. */
void gpu_adam(cudaStream_t s, float *params, const float *grads, float *m, float *v, size_t n,
              gpu_counters *c, vae_adam_options adam);

/* Evaluation. Importance draws for rows row0.. of a group of examples with k draws each (row g
 * is draw g % k of example g / k): eps exactly as vae_eval's draws (each example's stream
 * `stream + example`, drawn in calls of `chunk` rows), z = mu + exp(lv/2) eps, and
 * log_w = log p(z) - log q(z|x). mu, lv: (examples, L) from the group's first example. */
void gpu_iwae_draws(cudaStream_t s, float *z, double *log_w, const float *mu, const float *lv,
                    int rows, int latent, size_t row0, int k, int chunk, uint64_t seed,
                    uint64_t stream);
/* Row r's -log p(x|o), x the row of example (row0 + r) / k: into dst[r], or subtracted from it */
void gpu_row_nll(cudaStream_t s, const float *out, const float *bias, const float *x, int rows,
                 size_t row0, int k, gpu_lik lik, const float *dim_logvar, double *dst,
                 int subtract);
/* IWAE training (Burda et al.): k draws per input. Draws for rows r < B k of the step's
 * stream, as vae_train's (row r is draw r % k of input r / k): eps, z = mu + exp(lv/2) eps, and
 * log_w = log p(z) - log q(z|x), from mu, lv (B, L). */
void gpu_iwae_step_draws(cudaStream_t s, const float *mu, const float *lv, float *eps, float *z,
                         double *log_w, int rows, int latent, int k, gpu_noise noise,
                         const gpu_counters *c);
/* For each of the B inputs: the normalized weights of its k draws, divided by B (weights[r]),
 * and its bound -log (1/k) sum exp(log_w) (bounds[b]) */
void gpu_iwae_weights(cudaStream_t s, const double *log_w, int inputs, int k, float *weights,
                      double *bounds);
/* From dd (B k, H), the first decoder layer's output gradient (W_dec (H, L), row stride ld):
 * dz = dd W_dec + w z (the prior's part), summed over each input's draws into dmu and through
 * sigma into dlv, minus 1/(2B) for log q (vae_iwae_step's gradient) */
void gpu_iwae_latent_backward(cudaStream_t s, const float *dd, const float *w_dec, int ld,
                              int hidden, const float *z, const float *eps, const float *lv,
                              const float *weights, float *dmu, float *dlv, int inputs, int k,
                              int latent);
/* means (rows, D) of p(x|z) from the output layer's products before its bias */
void gpu_decode_mean(cudaStream_t s, const float *out, const float *bias, int rows, gpu_lik lik,
                     float *means);
/* nll[e] = -log mean_i exp(log_w[e k + i]) for each of `examples` examples */
void gpu_log_mean_exp(cudaStream_t s, const double *log_w, int examples, int k, double *nll);

/* Convolutions (conv.c's im2col form). An image pass: C channels of H x W in, kernel taps k x k
 * with stride and padding, OH x OW positions out. */
typedef struct {
    int c, h, w, oh, ow, k, stride, pad;
} gpu_conv;
/* cols (C k k, B OH OW) of the batch's images x (B, C, H, W) */
void gpu_im2col(cudaStream_t st, float *cols, const float *x, gpu_conv s, int batch);
/* x (B, C, H, W) = the adjoint of im2col of cols, plus bias[ch] (may be NULL), through act
 * (act < 0: none) */
void gpu_col2im(cudaStream_t st, float *x, const float *cols, gpu_conv s, int batch,
                const float *bias, int act);
/* dst (C, B HW) from src (B, C, HW), times act'(y) when y (like src) is given */
void gpu_to_channel_major(cudaStream_t st, float *dst, const float *src, const float *y,
                          int batch, int c, size_t hw, vae_activation act);
/* dst (B, C, HW) from src (C, B HW), plus bias[ch] (may be NULL), through act (< 0: none) */
void gpu_from_channel_major(cudaStream_t st, float *dst, const float *src, int batch, int c,
                            size_t hw, const float *bias, int act);
/* db[ch] = sum over the batch and positions of channel ch of v, channel-major or (B, C, HW) */
void gpu_channel_sums(cudaStream_t st, const float *v, int batch, int c, size_t hw,
                      int channel_major, float *db);
/* dy (n values) *= act'(y) */
void gpu_act_grad(cudaStream_t st, float *dy, const float *y, size_t n, vae_activation act);

#endif

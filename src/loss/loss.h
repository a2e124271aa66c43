/* loss.h — the terms of the negative ELBO and the reparameterization, forward/backward pairs. */
#ifndef VAE_LOSS_H
#define VAE_LOSS_H

#include "ops/vecmath.h"
#include "vae.h"

#include <math.h>
#include <stddef.h>

/* One value's -[x log s(l) + (1-x) log(1-s(l))] = max(l,0) - l x + log1p(e), e = e^-|l|, and
 * its gradient times scale, scale (s(l) - x), where s(l) = 1/(1+e) for l >= 0 and e/(1+e)
 * below: the scalar form of op_bce_logits's lanes. */
static inline float bce_pixel(float l, float x, float scale, float *grad) {
    float e = vexp_nonpositive(-fabsf(l)), inv = 1.0f / (1.0f + e);
    if (grad) *grad = scale * ((l >= 0.0f ? inv : e * inv) - x);
    return (l > 0.0f ? l : 0.0f) - l * x + vlog1p_unit(e);
}

/* Bernoulli negative log-likelihood with logits, per sample, and/or its gradient:
 *   recon[b] = sum_d max(l,0) - l*x + log1p(exp(-|l|))      l (B,D), x row b at x + b*x_stride;
 *                                                            NULL: not wanted (no log1p then)
 *   dlogits  = scale * (sigmoid(l) - x)                      (B,D); NULL: not wanted
 * x_stride is D for a batch of inputs, 0 to score many decodings against one input. */
void op_bce_logits(double *recon, float *dlogits, const float *logits, const float *x,
                   size_t x_stride, int batch, int dim, float scale);

/* recon[b] = -log p(x_b | decoder output row b) under c's likelihood (x row b at x + b*x_stride;
 * recon NULL: the gradient alone, as a backward pass wants it),
 * and when dout is not NULL its gradient times scale (times row_scale[b] when row_scale is not
 * NULL) with respect to the output (B, D or 2D for
 * a per-sample Gaussian variance). For a per-dimension variance dim_logvar holds the raw
 * log-variances and d_dim_logvar (may be NULL) receives scale times their gradient summed over
 * the batch. mask (may be NULL; rows at mask + b*x_stride like x) leaves out the missing values:
 * they add nothing and get a zero gradient. */
void op_recon(const vae_config *c, double *recon, float *dout, const float *out, const float *x,
              size_t x_stride, int batch, const float *dim_logvar, float *d_dim_logvar,
              float scale, const float *row_scale, const uint8_t *mask);
/* The mean of p(x|z) per value: sigmoid(logit), the Gaussian's mean, or exp(log-rate). */
void op_decode_mean(const vae_config *c, float *mean, const float *out, int batch);

/* kl[b] = -1/2 sum_j (1 + lv - mu^2 - exp(lv))      mu, lv (B,L) */
void op_kl_forward(double *kl, const float *mu, const float *logvar, int batch, int latent);
/* dmu += s_j * mu; dlv += s_j * (exp(lv) - 1) / 2, with s_j = dim_scale[j] for latent unit j */
void op_kl_backward(float *dmu, float *dlogvar, const float *mu, const float *logvar, int batch,
                    int latent, const float *dim_scale);
/* mean[j] = the batch mean of unit j's KL term */
void op_kl_dim_means(double *mean, const float *mu, const float *logvar, int batch, int latent);

/* z = mu + exp(lv/2) * eps      (B,L) each */
void op_reparam_forward(float *z, const float *mu, const float *logvar, const float *eps,
                        size_t n);
/* Importance draws for one input: z_r = mu + exp(lv/2) eps_r for `rows` rows of eps (rows, L),
 * and log_w[r] = log p(z_r) - log q(z_r|x) under the standard normal prior; the caller adds
 * log p(x|z_r) to make the importance weight. */
void op_reparam_draws(float *z, double *log_w, const float *mu, const float *logvar,
                      const float *eps, int rows, int latent);
/* dmu += dz; dlv += dz * eps * exp(lv/2) / 2 */
void op_reparam_backward(float *dmu, float *dlogvar, const float *dz, const float *logvar,
                         const float *eps, size_t n);

/* Values per sample the decoder outputs: D parameters of p(x|z), or 2D for a Gaussian whose
 * variance is decoded per sample (means, then raw log-variances). */
static inline int op_output_width(const vae_config *c) {
    const int per_sample = c->likelihood == VAE_LIK_GAUSSIAN && c->variance == VAE_VAR_PER_SAMPLE;
    return per_sample ? 2 * c->input_dim : c->input_dim;
}

/* The Gaussian's variance of value d of a sample: sigma^2 (fixed), or floor + exp(raw) with
 * raw per value (dim_logvar, D values) or per sample (raw_row: the output row's second half);
 * *dvar_draw gets d variance / d raw. The one place a variance is made from its parameters. */
float op_gaussian_variance(const vae_config *c, const float *dim_logvar, const float *raw_row,
                           int d, float *dvar_draw);

/* log sum_i exp(v[i]) of n >= 1 values, as max + log sum_i exp(v[i] - max) (no overflow): the
 * importance-weighted bound's and the imputation weights' normalizer. */
double op_log_sum_exp(const double *v, size_t n);
/* The same over values that arrive one at a time (K draws in chunks, none of them kept):
 * start from OP_LSE_EMPTY, add each value, read the result. */
typedef struct {
    double max, sum;
} op_lse;
#define OP_LSE_EMPTY ((op_lse){-INFINITY, 0.0})
void op_lse_add(op_lse *acc, double v);
double op_lse_value(const op_lse *acc);

#endif

/* ref_ops.h — naive double-precision reference of every op and of the whole model, the ground
 * truth for gradient checks and fast-path comparisons. Slow on purpose: plain loops only. */
#ifndef VAE_REF_OPS_H
#define VAE_REF_OPS_H

#include "vae.h"

#include "ops/ops.h"

#include <stdint.h>

void ref_linear(double *y, const double *x, const double *w, const double *b, int batch, int in,
                int out);
/* Applies act in place; pattern (may be NULL) accumulates a hash of which inputs were > 0, so a
 * finite difference can tell when it crossed a kink. */
void ref_activation(double *y, size_t n, vae_activation act, uint64_t *pattern);
double ref_bce_logits(double logit, double x);
/* Conv2d (transposed = 0) or ConvTranspose2d with PyTorch's layouts, by direct loops. */
void ref_conv(double *y, const double *x, const double *w, const double *b, int batch,
              const conv_shape *s, int transposed);
double ref_kl(const double *mu, const double *logvar, int latent);

/* Mean negative ELBO over the batch of a model whose parameters are `params` (laid out as
 * vae_model_params), computed in double. recon_out/kl_out (may be NULL) get the batch sums. */
/* The objective ref_model_loss returns: with the defaults 1 and 0 the mean negative ELBO, else
 * mean reconstruction + ref_kl_weight * sum_j max(ref_free_bits, batch-mean KL of unit j). */
extern double ref_kl_weight, ref_free_bits;
/* the labels of the inputs, for a conditional model */
extern const uint8_t *ref_labels;
/* the inputs' masks (1 observed), or NULL */
extern const uint8_t *ref_mask;
double ref_model_loss(const vae_model *model, const double *params, const float *x,
                      const float *eps, int batch, double *recon_out, double *kl_out,
                      uint64_t *pattern);

/* The batch mean of the importance-weighted bound -log (1/k) sum_i w_i with eps (batch*k, L),
 * input b's draws in rows b*k..b*k+k-1. */
double ref_iwae_loss(const vae_model *model, const double *params, const float *x,
                     const float *eps, int batch, int k, uint64_t *pattern);

#endif

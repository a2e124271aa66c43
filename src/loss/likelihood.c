/* likelihood.c — -log p(x|z) for each likelihood, from the decoder's outputs, with the gradient
 * in the same pass; and the mean each likelihood decodes to. */
#include "loss/loss.h"
#include "ops/ops.h"

#include <math.h>
#include <string.h>

#define HALF_LOG_2PI 0.9189385332046727

float op_gaussian_variance(const vae_config *c, const float *dim_logvar, const float *raw_row,
                           int d, float *dvar_draw) {
    float raw;
    switch (c->variance) {
    case VAE_VAR_PER_DIM: raw = dim_logvar[d]; break;
    case VAE_VAR_PER_SAMPLE: raw = raw_row[d]; break;
    default: *dvar_draw = 0.0f; return c->sigma * c->sigma;
    }
    float e = expf(raw);
    *dvar_draw = e;
    return c->variance_floor + e;
}

void op_recon(const vae_config *c, double *recon, float *dout, const float *out, const float *x,
              size_t x_stride, int batch, const float *dim_logvar, float *d_dim_logvar,
              float scale, const float *row_scale, const uint8_t *mask) {
    const int dim = c->input_dim;
    if (c->likelihood == VAE_LIK_BERNOULLI && mask) { /* only the observed values count */
        for (int b = 0; b < batch; b++) {
            const float *o = out + (size_t)b * dim, *t = x + (size_t)b * x_stride;
            const uint8_t *mk = mask + (size_t)b * x_stride;
            const float sc = row_scale ? scale * row_scale[b] : scale;
            double sum = 0.0;
            for (int d = 0; d < dim; d++) {
                float g;
                float v = bce_pixel(o[d], t[d], sc, &g);
                if (mk[d]) sum += v;
                if (dout) dout[(size_t)b * dim + d] = mk[d] ? g : 0.0f;
            }
            if (recon) recon[b] = sum;
        }
        return;
    }
    if (c->likelihood == VAE_LIK_BERNOULLI) {
        op_bce_logits(recon, dout, out, x, x_stride, batch, dim, scale);
        for (int b = 0; dout && row_scale && b < batch; b++)
            for (int d = 0; d < dim; d++) dout[(size_t)b * dim + d] *= row_scale[b];
        return;
    }
    const int width = op_output_width(c);
    if (d_dim_logvar) memset(d_dim_logvar, 0, sizeof(float) * (size_t)dim);
    for (int b = 0; b < batch; b++) {
        const float *o = out + (size_t)b * width, *t = x + (size_t)b * x_stride;
        const uint8_t *mk = mask ? mask + (size_t)b * x_stride : NULL;
        const float sc = row_scale ? scale * row_scale[b] : scale;
        float *g = dout ? dout + (size_t)b * width : NULL;
        double sum = 0.0;
        if (c->likelihood == VAE_LIK_POISSON) {
            for (int d = 0; d < dim; d++) { /* o = log-rate */
                if (mk && !mk[d]) {
                    if (g) g[d] = 0.0f;
                    continue;
                }
                float rate = expf(o[d]);
                if (recon) sum += (double)rate - (double)t[d] * o[d] + lgamma((double)t[d] + 1.0);
                if (g) g[d] = sc * (rate - t[d]);
            }
        } else {
            for (int d = 0; d < dim; d++) { /* o[d] = mean; the variance as configured */
                if (mk && !mk[d]) {
                    if (g) g[d] = 0.0f;
                    if (g && c->variance == VAE_VAR_PER_SAMPLE) g[dim + d] = 0.0f;
                    continue;
                }
                float dvar_draw, var = op_gaussian_variance(c, dim_logvar, o + dim, d, &dvar_draw);
                float diff = o[d] - t[d], inv = 1.0f / var;
                if (recon) sum += HALF_LOG_2PI + 0.5 * log((double)var) + 0.5 * (double)diff * diff * inv;
                if (!g && !d_dim_logvar) continue;
                /* d nll / d var = (1/var - diff^2/var^2) / 2 */
                float dvar = 0.5f * inv * (1.0f - diff * diff * inv) * dvar_draw * sc;
                if (g) g[d] = sc * diff * inv;
                if (g && c->variance == VAE_VAR_PER_SAMPLE) g[dim + d] = dvar;
                if (d_dim_logvar && c->variance == VAE_VAR_PER_DIM) d_dim_logvar[d] += dvar;
            }
        }
        if (recon) recon[b] = sum;
    }
}

void op_decode_mean(const vae_config *c, float *mean, const float *out, int batch) {
    const int dim = c->input_dim;
    switch (c->likelihood) {
    case VAE_LIK_BERNOULLI: op_sigmoid(mean, out, (size_t)batch * dim); break;
    case VAE_LIK_POISSON:
        for (size_t i = 0; i < (size_t)batch * dim; i++) mean[i] = expf(out[i]);
        break;
    case VAE_LIK_GAUSSIAN: {
        const int width = op_output_width(c);
        for (int b = 0; b < batch; b++)
            memcpy(mean + (size_t)b * dim, out + (size_t)b * width, sizeof(float) * (size_t)dim);
        break;
    }
    }
}

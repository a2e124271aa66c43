/* elbo.c — the terms of the negative ELBO and the reparameterization. */
#include "loss/loss.h"
#include "ops/ops.h"
#include "ops/vecmath.h"

#include <math.h>

VAE_SIMD_CLONES
void op_bce_logits(double *recon, float *dlogits, const float *logits, const float *x, int batch,
                   int dim, float scale) {
#pragma omp parallel for schedule(static) if ((long)batch * dim >= 32768)
    for (int b = 0; b < batch; b++) {
        const float *l = logits + (size_t)b * dim, *t = x + (size_t)b * dim;
        float *g = dlogits ? dlogits + (size_t)b * dim : NULL;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int d = 0; d < dim; d++) {
            /* -[x log s(l) + (1-x) log(1-s(l))] = max(l,0) - l x + log1p(e^-|l|) */
            float e = vexp_nonpositive(-fabsf(l[d]));
            sum += (l[d] > 0.0f ? l[d] : 0.0f) - l[d] * t[d] + vlog1p_unit(e);
            if (g) {
                float inv = 1.0f / (1.0f + e), sigmoid = l[d] >= 0.0f ? inv : e * inv;
                g[d] = scale * (sigmoid - t[d]);
            }
        }
        recon[b] = sum;
    }
}

void op_kl_forward(double *kl, const float *mu, const float *logvar, int batch, int latent) {
    for (int b = 0; b < batch; b++) {
        const float *m = mu + (size_t)b * latent, *lv = logvar + (size_t)b * latent;
        double sum = 0.0;
        for (int j = 0; j < latent; j++)
            sum += 1.0 + (double)lv[j] - (double)m[j] * m[j] - exp((double)lv[j]);
        kl[b] = -0.5 * sum;
    }
}

void op_kl_backward(float *dmu, float *dlogvar, const float *mu, const float *logvar, int batch,
                    int latent, float scale) {
    size_t n = (size_t)batch * latent;
    for (size_t i = 0; i < n; i++) {
        dmu[i] += scale * mu[i];
        dlogvar[i] += scale * 0.5f * (expf(logvar[i]) - 1.0f);
    }
}

void op_reparam_forward(float *z, const float *mu, const float *logvar, const float *eps,
                        size_t n) {
    for (size_t i = 0; i < n; i++) z[i] = mu[i] + expf(0.5f * logvar[i]) * eps[i];
}

void op_reparam_backward(float *dmu, float *dlogvar, const float *dz, const float *logvar,
                         const float *eps, size_t n) {
    for (size_t i = 0; i < n; i++) {
        dmu[i] += dz[i];
        dlogvar[i] += dz[i] * eps[i] * 0.5f * expf(0.5f * logvar[i]);
    }
}

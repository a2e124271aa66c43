/* elbo.c — the terms of the negative ELBO and the reparameterization. */
#include "loss/loss.h"
#include "ops/ops.h"

#include <math.h>

void op_bce_logits_forward(double *recon, const float *logits, const float *x, int batch,
                           int dim) {
    for (int b = 0; b < batch; b++) {
        const float *l = logits + (size_t)b * dim, *t = x + (size_t)b * dim;
        double sum = 0.0;
        for (int d = 0; d < dim; d++) {
            /* -[x log s(l) + (1-x) log(1-s(l))] = max(l,0) - l x + log1p(e^-|l|) */
            float v = (l[d] > 0.0f ? l[d] : 0.0f) - l[d] * t[d] + log1pf(expf(-fabsf(l[d])));
            sum += v;
        }
        recon[b] = sum;
    }
}

void op_bce_logits_backward(float *dlogits, const float *logits, const float *x, int batch,
                            int dim, float scale) {
    size_t n = (size_t)batch * dim;
    op_sigmoid(dlogits, logits, n);
    for (size_t i = 0; i < n; i++) dlogits[i] = scale * (dlogits[i] - x[i]);
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

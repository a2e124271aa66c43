/* elbo.c — the terms of the negative ELBO and the reparameterization. */
#include "loss/loss.h"
#include "ops/ops.h"
#include "ops/vecmath.h"

#include <math.h>

/* A row's terms are summed in 8 float lanes (784 terms lose < 1e-7 relative), the lanes then in
 * double. Each row stays on one thread: the same bits whatever the thread count. */
VAE_SIMD_CLONES
void op_bce_logits(double *recon, float *dlogits, const float *logits, const float *x,
                   size_t x_stride, int batch, int dim, float scale) {
#pragma omp parallel for schedule(static) if ((long)batch * dim >= OP_PARALLEL_MIN)
    for (int b = 0; b < batch; b++) {
        const float *l = logits + (size_t)b * dim, *t = x + (size_t)b * x_stride;
        float *g = dlogits ? dlogits + (size_t)b * dim : NULL;
        if (!recon) { /* the gradient alone (a backward pass): no log1p */
            int d = 0;
            for (; d + 8 <= dim; d += 8) {
                vf8 lv = vf8_load(l + d), tv = vf8_load(t + d);
                vf8 e = vexp8_nonpositive(-vf8_abs(lv)), inv = 1.0f / (1.0f + e);
                vf8_store(g + d, scale * (vf8_select(lv >= 0.0f, inv, e * inv) - tv));
            }
            for (; d < dim; d++) bce_pixel(l[d], t[d], scale, g + d);
            continue;
        }
        vf8 acc = vf8_splat(0.0f);
        int d = 0;
        for (; d + 8 <= dim; d += 8) {
            vf8 lv = vf8_load(l + d), tv = vf8_load(t + d);
            vf8 e = vexp8_nonpositive(-vf8_abs(lv)), inv = 1.0f / (1.0f + e);
            if (g) vf8_store(g + d, scale * (vf8_select(lv >= 0.0f, inv, e * inv) - tv));
            acc += vf8_select(lv > 0.0f, lv, vf8_splat(0.0f)) - lv * tv + vlog1p8_unit(e);
        }
        double sum = 0.0;
        for (int k = 0; k < 8; k++) sum += acc[k];
        for (; d < dim; d++) sum += bce_pixel(l[d], t[d], scale, g ? g + d : NULL);
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
                    int latent, const float *dim_scale) {
    for (int b = 0; b < batch; b++)
        for (int j = 0; j < latent; j++) {
            size_t i = (size_t)b * latent + j;
            dmu[i] += dim_scale[j] * mu[i];
            dlogvar[i] += dim_scale[j] * 0.5f * (expf(logvar[i]) - 1.0f);
        }
}

void op_kl_dim_means(double *mean, const float *mu, const float *logvar, int batch, int latent) {
    for (int j = 0; j < latent; j++) mean[j] = 0.0;
    for (int b = 0; b < batch; b++)
        for (int j = 0; j < latent; j++) {
            size_t i = (size_t)b * latent + j;
            mean[j] += -0.5 * (1.0 + (double)logvar[i] - (double)mu[i] * mu[i] - exp((double)logvar[i]));
        }
    for (int j = 0; j < latent; j++) mean[j] /= batch;
}

void op_reparam_forward(float *z, const float *mu, const float *logvar, const float *eps,
                        size_t n) {
    for (size_t i = 0; i < n; i++) z[i] = mu[i] + expf(0.5f * logvar[i]) * eps[i];
}

#define LOG_2PI 1.8378770664093453

void op_reparam_draws(float *z, double *log_w, const float *mu, const float *logvar,
                      const float *eps, int rows, int latent) {
    for (int r = 0; r < rows; r++) {
        double log_prior = 0.0, log_q = 0.0;
        for (int j = 0; j < latent; j++) {
            size_t i = (size_t)r * latent + j;
            float zz = mu[j] + expf(0.5f * logvar[j]) * eps[i];
            z[i] = zz;
            log_prior -= 0.5 * (LOG_2PI + (double)zz * zz);
            log_q -= 0.5 * (LOG_2PI + logvar[j] + (double)eps[i] * eps[i]);
        }
        log_w[r] = log_prior - log_q;
    }
}

void op_reparam_backward(float *dmu, float *dlogvar, const float *dz, const float *logvar,
                         const float *eps, size_t n) {
    for (size_t i = 0; i < n; i++) {
        dmu[i] += dz[i];
        dlogvar[i] += dz[i] * eps[i] * 0.5f * expf(0.5f * logvar[i]);
    }
}

double op_log_sum_exp(const double *v, size_t n) {
    double max = -INFINITY, sum = 0.0;
    for (size_t i = 0; i < n; i++)
        if (v[i] > max) max = v[i];
    for (size_t i = 0; i < n; i++) sum += exp(v[i] - max);
    return max + log(sum);
}

void op_lse_add(op_lse *acc, double v) {
    if (v > acc->max) { /* rescale what was summed to the new maximum */
        acc->sum = acc->sum * exp(acc->max - v) + 1.0;
        acc->max = v;
    } else {
        acc->sum += exp(v - acc->max);
    }
}

double op_lse_value(const op_lse *acc) { return acc->max + log(acc->sum); }

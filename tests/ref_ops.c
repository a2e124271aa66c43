/* ref_ops.c — the double-precision reference (see ref_ops.h). */
#include "ref_ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ref_linear(double *y, const double *x, const double *w, const double *b, int batch, int in,
                int out) {
    for (int i = 0; i < batch; i++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int k = 0; k < in; k++) s += x[(size_t)i * in + k] * w[(size_t)o * in + k];
            y[(size_t)i * out + o] = s;
        }
}

void ref_activation(double *y, size_t n, vae_activation act, uint64_t *pattern) {
    for (size_t i = 0; i < n; i++) {
        double v = y[i];
        if (pattern && v > 0) *pattern = *pattern * 1000003u + i + 1;
        switch (act) {
        case VAE_ACT_RELU: y[i] = v > 0 ? v : 0; break;
        case VAE_ACT_TANH: y[i] = tanh(v); break;
        case VAE_ACT_LEAKY_RELU: y[i] = v > 0 ? v : 0.01 * v; break;
        case VAE_ACT_ELU: y[i] = v > 0 ? v : exp(v) - 1; break;
        }
    }
}

double ref_bce_logits(double l, double x) {
    /* -[x log s(l) + (1-x) log(1 - s(l))], written with log1p for accuracy */
    double log_s = l >= 0 ? -log1p(exp(-l)) : l - log1p(exp(l));
    double log_1ms = l >= 0 ? -l - log1p(exp(-l)) : -log1p(exp(l));
    return -(x * log_s + (1 - x) * log_1ms);
}

double ref_kl(const double *mu, const double *logvar, int latent) {
    double s = 0;
    for (int j = 0; j < latent; j++) s += 1 + logvar[j] - mu[j] * mu[j] - exp(logvar[j]);
    return -0.5 * s;
}

static const double *tensor(const vae_model *m, const double *params, const char *name) {
    int i = vae_model_find_tensor(m, name);
    if (i < 0) {
        fprintf(stderr, "ref_ops: no tensor %s\n", name);
        abort();
    }
    return params + vae_model_tensor(m, i).offset;
}

/* y (B,out) = act?(x W^T + b) with tensors "prefix.weight"/"prefix.bias" */
static double *layer(const vae_model *m, const double *params, const char *prefix,
                     const double *x, int batch, int in, int out, int activate,
                     uint64_t *pattern) {
    char wname[64], bname[64];
    snprintf(wname, sizeof wname, "%s.weight", prefix);
    snprintf(bname, sizeof bname, "%s.bias", prefix);
    double *y = malloc(sizeof(double) * (size_t)batch * out);
    ref_linear(y, x, tensor(m, params, wname), tensor(m, params, bname), batch, in, out);
    if (activate) ref_activation(y, (size_t)batch * out, vae_model_config(m)->activation, pattern);
    return y;
}

double ref_kl_weight = 1.0, ref_free_bits = 0.0;
const uint8_t *ref_labels;

/* x (B,D) -> mu, logvar (B,L), malloc'ed */
static void ref_encode(const vae_model *m, const double *params, const float *x, int batch,
                       double **mu, double **lv, uint64_t *pattern) {
    const vae_config *c = vae_model_config(m);
    char name[32];
    const int C = c->n_classes, D = c->input_dim;
    double *h = calloc((size_t)batch * (D + C), sizeof(double));
    for (int b = 0; b < batch; b++) {
        for (int d = 0; d < D; d++) h[(size_t)b * (D + C) + d] = x[(size_t)b * D + d];
        if (C) h[(size_t)b * (D + C) + D + ref_labels[b]] = 1.0;
    }
    int width = D + C;
    for (int l = 0; l < c->n_encoder; l++) {
        snprintf(name, sizeof name, "encoder.%d", l);
        double *next = layer(m, params, name, h, batch, width, c->encoder[l], 1, pattern);
        free(h);
        h = next, width = c->encoder[l];
    }
    *mu = layer(m, params, "mu", h, batch, width, c->latent_dim, 0, NULL);
    *lv = layer(m, params, "logvar", h, batch, width, c->latent_dim, 0, NULL);
    free(h);
}

/* -log p(x_r | z_r) of each of `rows` latent points z (rows,L), x row r at x + (r / per_x) * D */
static void ref_decode_nll(const vae_model *m, const double *params, const double *z, int rows,
                           const float *x, int per_x, double *nll, uint64_t *pattern) {
    const vae_config *c = vae_model_config(m);
    const int D = c->input_dim, C = c->n_classes, L = c->latent_dim;
    char name[32];
    double *h = calloc((size_t)rows * (L + C), sizeof(double));
    for (int r = 0; r < rows; r++) {
        memcpy(h + (size_t)r * (L + C), z + (size_t)r * L, sizeof(double) * (size_t)L);
        if (C) h[(size_t)r * (L + C) + L + ref_labels[r / per_x]] = 1.0;
    }
    int width = L + C;
    for (int l = 0; l < c->n_decoder; l++) {
        snprintf(name, sizeof name, "decoder.%d", l);
        double *next = layer(m, params, name, h, rows, width, c->decoder[l], 1, pattern);
        free(h);
        h = next, width = c->decoder[l];
    }
    const int per_sample = c->likelihood == VAE_LIK_GAUSSIAN && c->variance == VAE_VAR_PER_SAMPLE;
    const int out = per_sample ? 2 * D : D;
    double *logits = layer(m, params, "output", h, rows, width, out, 0, NULL);
    const double *dim_logvar = c->likelihood == VAE_LIK_GAUSSIAN && c->variance == VAE_VAR_PER_DIM
                                   ? tensor(m, params, "likelihood.logvar") : NULL;
    for (int r = 0; r < rows; r++) {
        const double *o = logits + (size_t)r * out;
        double sum = 0;
        for (int d = 0; d < D; d++) {
            double t = x[(size_t)(r / per_x) * D + d];
            if (c->likelihood == VAE_LIK_BERNOULLI) {
                sum += ref_bce_logits(o[d], t);
            } else if (c->likelihood == VAE_LIK_POISSON) {
                sum += exp(o[d]) - t * o[d] + lgamma(t + 1);
            } else {
                double var = c->variance == VAE_VAR_FIXED ? (double)c->sigma * c->sigma
                             : c->variance_floor + exp(dim_logvar ? dim_logvar[d] : o[D + d]);
                sum += 0.5 * (log(6.283185307179586 * var) + (o[d] - t) * (o[d] - t) / var);
            }
        }
        nll[r] = sum;
    }
    free(h), free(logits);
}

double ref_model_loss(const vae_model *m, const double *params, const float *x, const float *eps,
                      int batch, double *recon_out, double *kl_out, uint64_t *pattern) {
    const int L = vae_model_config(m)->latent_dim;
    double *mu, *lv;
    ref_encode(m, params, x, batch, &mu, &lv, pattern);
    double *z = malloc(sizeof(double) * (size_t)batch * L), *nll = malloc(sizeof(double) * batch);
    for (size_t i = 0; i < (size_t)batch * L; i++) z[i] = mu[i] + exp(0.5 * lv[i]) * eps[i];
    ref_decode_nll(m, params, z, batch, x, 1, nll, pattern);
    double recon = 0, kl = 0, objective_kl = 0;
    for (int b = 0; b < batch; b++) {
        recon += nll[b];
        kl += ref_kl(mu + (size_t)b * L, lv + (size_t)b * L, L);
    }
    for (int j = 0; j < L; j++) { /* per unit, batch mean, floored at the free bits */
        double unit = 0;
        for (int b = 0; b < batch; b++) unit += ref_kl(mu + (size_t)b * L + j, lv + (size_t)b * L + j, 1);
        unit /= batch;
        objective_kl += unit > ref_free_bits ? unit : ref_free_bits;
    }
    free(z), free(nll), free(mu), free(lv);
    if (recon_out) *recon_out = recon;
    if (kl_out) *kl_out = kl;
    if (ref_kl_weight != 1.0 || ref_free_bits != 0.0)
        return recon / batch + ref_kl_weight * objective_kl;
    return (recon + kl) / batch;
}

double ref_iwae_loss(const vae_model *m, const double *params, const float *x, const float *eps,
                     int batch, int k, uint64_t *pattern) {
    const int L = vae_model_config(m)->latent_dim;
    const double log_2pi = 1.8378770664093453;
    double *mu, *lv;
    ref_encode(m, params, x, batch, &mu, &lv, pattern);
    const int rows = batch * k;
    double *z = malloc(sizeof(double) * (size_t)rows * L), *nll = malloc(sizeof(double) * rows);
    double *log_w = malloc(sizeof(double) * rows);
    for (int r = 0; r < rows; r++) {
        const int b = r / k;
        double log_prior = 0, log_q = 0;
        for (int j = 0; j < L; j++) {
            double e = eps[(size_t)r * L + j], v = lv[(size_t)b * L + j];
            double zz = mu[(size_t)b * L + j] + exp(0.5 * v) * e;
            z[(size_t)r * L + j] = zz;
            log_prior -= 0.5 * (log_2pi + zz * zz);
            log_q -= 0.5 * (log_2pi + v + e * e);
        }
        log_w[r] = log_prior - log_q;
    }
    ref_decode_nll(m, params, z, rows, x, k, nll, pattern);
    double total = 0;
    for (int b = 0; b < batch; b++) {
        double max = -INFINITY, sum = 0;
        for (int i = 0; i < k; i++) {
            log_w[b * k + i] -= nll[b * k + i];
            if (log_w[b * k + i] > max) max = log_w[b * k + i];
        }
        for (int i = 0; i < k; i++) sum += exp(log_w[b * k + i] - max);
        total += -(max + log(sum) - log((double)k));
    }
    free(z), free(nll), free(log_w), free(mu), free(lv);
    return total / batch;
}

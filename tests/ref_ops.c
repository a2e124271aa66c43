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

/* y[n,o,i,j] = b[o] + sum_c,a,e w[o,c,a,e] x[n,c, i s - p + a, j s - p + e] (conv), or the
 * transposed form y[n,o, i s - p + a, j s - p + e] += w[c,o,a,e] x[n,c,i,j] */
void ref_conv(double *y, const double *x, const double *w, const double *b, int batch,
                     const conv_shape *s, int transposed) {
    const int ohw = s->out_h * s->out_w, ihw = s->in_h * s->in_w;
    for (int n = 0; n < batch; n++) {
        for (int o = 0; o < s->out_c; o++)
            for (int i = 0; i < ohw; i++) y[((size_t)n * s->out_c + o) * ohw + i] = b[o];
        if (!transposed) {
            for (int o = 0; o < s->out_c; o++)
                for (int i = 0; i < s->out_h; i++)
                    for (int j = 0; j < s->out_w; j++)
                        for (int c = 0; c < s->in_c; c++)
                            for (int a = 0; a < s->k; a++)
                                for (int e = 0; e < s->k; e++) {
                                    int iy = i * s->stride - s->pad + a, ix = j * s->stride - s->pad + e;
                                    if (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w) continue;
                                    y[((size_t)n * s->out_c + o) * ohw + i * s->out_w + j] +=
                                        w[((o * s->in_c + c) * s->k + a) * s->k + e] *
                                        x[((size_t)n * s->in_c + c) * ihw + iy * s->in_w + ix];
                                }
        } else {
            for (int c = 0; c < s->in_c; c++)
                for (int i = 0; i < s->in_h; i++)
                    for (int j = 0; j < s->in_w; j++)
                        for (int o = 0; o < s->out_c; o++)
                            for (int a = 0; a < s->k; a++)
                                for (int e = 0; e < s->k; e++) {
                                    int oy = i * s->stride - s->pad + a, ox = j * s->stride - s->pad + e;
                                    if (oy < 0 || oy >= s->out_h || ox < 0 || ox >= s->out_w) continue;
                                    y[((size_t)n * s->out_c + o) * ohw + oy * s->out_w + ox] +=
                                        w[((c * s->out_c + o) * s->k + a) * s->k + e] *
                                        x[((size_t)n * s->in_c + c) * ihw + i * s->in_w + j];
                                }
        }
    }
}


/* The shapes of a config's convolutions, as the model builds them. */
static void ref_conv_shapes(const vae_config *c, conv_shape *shapes) {
    for (int i = 0; i < c->n_conv; i++) {
        conv_shape *s = &shapes[i];
        s->in_c = i ? shapes[i - 1].out_c : c->image_channels;
        s->in_h = i ? shapes[i - 1].out_h : c->image_rows;
        s->in_w = i ? shapes[i - 1].out_w : c->image_cols;
        s->out_c = c->conv[i].channels, s->k = c->conv[i].kernel;
        s->stride = c->conv[i].stride, s->pad = c->conv[i].padding;
        s->out_h = (s->in_h + 2 * s->pad - s->k) / s->stride + 1;
        s->out_w = (s->in_w + 2 * s->pad - s->k) / s->stride + 1;
    }
}

/* A convolution layer of the model in double, activated or not. */
static double *conv_layer(const vae_model *m, const double *params, const char *prefix,
                          const double *x, int batch, const conv_shape *s, int transposed,
                          int activate, uint64_t *pattern) {
    char wname[64], bname[64];
    snprintf(wname, sizeof wname, "%s.weight", prefix);
    snprintf(bname, sizeof bname, "%s.bias", prefix);
    double *y = malloc(sizeof(double) * (size_t)batch * s->out_c * s->out_h * s->out_w);
    ref_conv(y, x, tensor(m, params, wname), tensor(m, params, bname), batch, s, transposed);
    if (activate)
        ref_activation(y, (size_t)batch * s->out_c * s->out_h * s->out_w,
                       vae_model_config(m)->activation, pattern);
    return y;
}

double ref_kl_weight = 1.0, ref_free_bits = 0.0;
const uint8_t *ref_labels, *ref_mask;

/* x (B,D) -> mu, logvar (B,L), malloc'ed */
static void ref_encode(const vae_model *m, const double *params, const float *x, int batch,
                       double **mu, double **lv, uint64_t *pattern) {
    const vae_config *c = vae_model_config(m);
    char name[32];
    const int C = c->n_classes, D = c->input_dim, M = c->missing ? D : 0, W = D + M + C;
    double *h = calloc((size_t)batch * W, sizeof(double));
    for (int b = 0; b < batch; b++) {
        for (int d = 0; d < D; d++) {
            int seen = !ref_mask || ref_mask[(size_t)b * D + d];
            h[(size_t)b * W + d] = seen ? x[(size_t)b * D + d] : 0.0;
            if (M) h[(size_t)b * W + D + d] = seen;
        }
        if (C) h[(size_t)b * W + D + M + ref_labels[b]] = 1.0;
    }
    int width = W;
    conv_shape shapes[VAE_MAX_CONV];
    ref_conv_shapes(c, shapes);
    for (int i = 0; i < c->n_conv; i++) {
        snprintf(name, sizeof name, "encoder.conv.%d", i);
        double *next = conv_layer(m, params, name, h, batch, &shapes[i], 0, 1, pattern);
        free(h);
        h = next, width = shapes[i].out_c * shapes[i].out_h * shapes[i].out_w;
    }
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
    double *logits;
    if (c->n_conv) {
        conv_shape shapes[VAE_MAX_CONV];
        ref_conv_shapes(c, shapes);
        const conv_shape *last = &shapes[c->n_conv - 1];
        double *next = layer(m, params, "decoder.project", h, rows, width,
                             last->out_c * last->out_h * last->out_w, 1, pattern);
        free(h);
        h = next;
        for (int i = c->n_conv - 1; i >= 0; i--) {
            const conv_shape *e = &shapes[i];
            conv_shape t = {.in_c = e->out_c, .in_h = e->out_h, .in_w = e->out_w,
                            .out_c = e->in_c * (i == 0 && per_sample ? 2 : 1), .out_h = e->in_h,
                            .out_w = e->in_w, .k = e->k, .stride = e->stride, .pad = e->pad};
            snprintf(name, sizeof name, "decoder.convt.%d", i);
            next = conv_layer(m, params, i == 0 ? "output" : name, h, rows, &t, 1, i != 0, pattern);
            free(h);
            h = next;
        }
        logits = h; /* NCHW: the means, then (per-sample variance) the raw log-variances */
        h = NULL;
    } else {
        logits = layer(m, params, "output", h, rows, width, out, 0, NULL);
    }
    const double *dim_logvar = c->likelihood == VAE_LIK_GAUSSIAN && c->variance == VAE_VAR_PER_DIM
                                   ? tensor(m, params, "likelihood.logvar") : NULL;
    for (int r = 0; r < rows; r++) {
        const double *o = logits + (size_t)r * out;
        double sum = 0;
        for (int d = 0; d < D; d++) {
            if (ref_mask && !ref_mask[(size_t)(r / per_x) * D + d]) continue;
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

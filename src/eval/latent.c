/* latent.c — moving through the latent space: batched encode/decode, quantiles of the prior,
 * interpolation paths, a 2-D projection for plots. */
#include "backend/backend.h"

#include <math.h>
#include <string.h>

#define PASS_BATCH 500

/* The labels a call was given, checked: every input's for a conditional model; *labels is set
 * to NULL for an unconditional one, which has no use for them (and no device sees them). */
static vae_status need_labels(const vae_model *m, const uint8_t **labels_io, size_t n,
                              vae_error *err) {
    const int classes = vae_model_config(m)->n_classes;
    if (!classes) *labels_io = NULL;
    const uint8_t *labels = *labels_io;
    VAE_RETURN_IF(classes && !labels, err, VAE_ERR_INVALID_ARGUMENT,
                  "a conditional model needs the labels of its inputs");
    for (size_t i = 0; classes && i < n; i++)
        VAE_RETURN_IF(labels[i] >= classes, err, VAE_ERR_INVALID_ARGUMENT,
                      "a label is out of the model's range (input %zu has %d, the model knows "
                      "classes 0..%d)", i + 1, labels[i], classes - 1);
    return VAE_OK;
}

/* Encoder means and log-variances of n rows of x, with their masks (NULL: all observed) and
 * labels, on the model's device. */
static vae_status encode_rows(const vae_model *m, const float *x, const uint8_t *mask,
                              const uint8_t *labels, size_t n, float *mu, float *logvar,
                              vae_error *err) {
    VAE_TRY(need_labels(m, &labels, n, err));
    vae_device device;
    VAE_TRY(vae_device_resolve(vae_model_device(m), vae_gpu_supports_model(m, NULL), &device, err));
    if (device == VAE_DEVICE_CUDA)
        return vae_gpu_encode_all(m, x, mask, labels, n, mu, logvar, err);
    const vae_config *cfg = vae_model_config(m);
    vae_workspace *ws = NULL;
    VAE_TRY(vae_workspace_create(&ws, m, PASS_BATCH, err));
    for (size_t i = 0; i < n; i += PASS_BATCH) {
        int b = n - i < PASS_BATCH ? (int)(n - i) : PASS_BATCH;
        size_t at = i * (size_t)cfg->latent_dim;
        const vae_batch rows = {b, x + i * (size_t)cfg->input_dim, NULL,
                                labels ? labels + i : NULL,
                                mask ? mask + i * (size_t)cfg->input_dim : NULL};
        vae_status s = vae_encode(m, ws, &rows, mu ? mu + at : NULL, logvar ? logvar + at : NULL,
                                  err);
        if (s != VAE_OK) {
            vae_workspace_free(ws);
            return vae_add_context(err, s, "encoding rows %zu..%zu", i + 1, i + (size_t)b);
        }
    }
    vae_workspace_free(ws);
    return VAE_OK;
}

/* encode_rows of a data set, in the model's units. */
static vae_status encode_view(const vae_model *m, const vae_dataset *data, float *mu,
                              float *logvar, vae_error *err) {
    vae_dataset view;
    float *owned = NULL;
    VAE_TRY(vae_model_units(m, data, &view, &owned, err));
    vae_status s = encode_rows(m, view.x, view.mask, view.labels, view.count, mu, logvar, err);
    free(owned);
    return s;
}

vae_status vae_encode_all(const vae_model *m, const float *x, const uint8_t *labels, size_t n,
                          float *mu, float *logvar, vae_error *err) {
    const vae_dataset rows = {.count = n, .dim = vae_model_config(m)->input_dim,
                              .x = (float *)x, .labels = (uint8_t *)labels};
    return encode_view(m, &rows, mu, logvar, err);
}

vae_status vae_encode_data(const vae_model *m, const vae_dataset *data, float *mu, float *logvar,
                           vae_error *err) {
    VAE_TRY(vae_check_data(m, data, "encoded", err));
    return encode_view(m, data, mu, logvar, err);
}

vae_status vae_decode_all(const vae_model *m, const float *z, const uint8_t *labels, size_t n,
                          float *probs, vae_error *err) {
    VAE_TRY(need_labels(m, &labels, n, err));
    vae_device device;
    VAE_TRY(vae_device_resolve(vae_model_device(m), vae_gpu_supports_model(m, NULL), &device, err));
    if (device == VAE_DEVICE_CUDA) {
        VAE_TRY(vae_gpu_decode_all(m, z, labels, n, probs, err));
        vae_data_units(m, probs, n);
        return VAE_OK;
    }
    const vae_config *cfg = vae_model_config(m);
    vae_workspace *ws = NULL;
    VAE_TRY(vae_workspace_create(&ws, m, PASS_BATCH, err));
    for (size_t i = 0; i < n; i += PASS_BATCH) {
        int b = n - i < PASS_BATCH ? (int)(n - i) : PASS_BATCH;
        vae_status s = vae_decode(m, ws, z + i * (size_t)cfg->latent_dim, labels ? labels + i : NULL,
                                  b, probs + i * (size_t)cfg->input_dim, err);
        if (s != VAE_OK) {
            vae_workspace_free(ws);
            return vae_add_context(err, s, "decoding rows %zu..%zu", i + 1, i + (size_t)b);
        }
    }
    vae_workspace_free(ws);
    vae_data_units(m, probs, n); /* the means in the data's units */
    return VAE_OK;
}

/* Newton's method on Φ(x) - p with Φ from erfc, from a logistic-tail first guess; erfc keeps
 * full relative precision in the tails, where 1 - p would not. */
double vae_normal_quantile(double p) {
    if (!(p > 0.0 && p < 1.0)) return p == 0.0 ? -INFINITY : p == 1.0 ? INFINITY : NAN;
    if (p > 0.5) return -vae_normal_quantile(1.0 - p);
    double x = -sqrt(-2.0 * log(p)); /* close in the tail, fine near the middle */
    if (p > 0.3) x = (p - 0.5) * 2.5066282746310002;
    for (int i = 0; i < 60; i++) {
        double cdf = 0.5 * erfc(-x / sqrt(2.0));
        double pdf = exp(-0.5 * x * x) / 2.5066282746310002;
        double step = (cdf - p) / pdf;
        if (step > 1.0) step = 1.0;
        if (step < -1.0) step = -1.0;
        x -= step;
        if (fabs(step) < 1e-15 * (1.0 + fabs(x))) break;
    }
    return x;
}

void vae_lerp(const float *a, const float *b, double t, int dim, float *out) {
    for (int j = 0; j < dim; j++) out[j] = (float)((1.0 - t) * a[j] + t * b[j]);
}

void vae_slerp(const float *a, const float *b, double t, int dim, float *out) {
    double na = 0, nb = 0, dot = 0;
    for (int j = 0; j < dim; j++) na += (double)a[j] * a[j], nb += (double)b[j] * b[j],
                                   dot += (double)a[j] * b[j];
    double cosine = na > 0 && nb > 0 ? dot / sqrt(na * nb) : 1.0;
    if (cosine > 1.0) cosine = 1.0;
    if (cosine < -1.0) cosine = -1.0;
    double omega = acos(cosine), s = sin(omega);
    if (s < 1e-6) {
        vae_lerp(a, b, t, dim, out);
        return;
    }
    double wa = sin((1.0 - t) * omega) / s, wb = sin(t * omega) / s;
    for (int j = 0; j < dim; j++) out[j] = (float)(wa * a[j] + wb * b[j]);
}

/* Leading eigenvector of the symmetric dim x dim matrix c by power iteration from a fixed,
 * generic start (deterministic). */
static double leading_eigen(const double *c, int dim, double *v, double *tmp) {
    for (int j = 0; j < dim; j++) v[j] = 1.0 + 0.01 * j;
    double lambda = 0;
    for (int it = 0; it < 1000; it++) {
        double norm = 0;
        for (int i = 0; i < dim; i++) {
            tmp[i] = 0;
            for (int j = 0; j < dim; j++) tmp[i] += c[(size_t)i * dim + j] * v[j];
            norm += tmp[i] * tmp[i];
        }
        norm = sqrt(norm);
        if (norm == 0) return 0;
        double change = 0;
        for (int j = 0; j < dim; j++) change += fabs(tmp[j] / norm - v[j]), v[j] = tmp[j] / norm;
        lambda = norm;
        if (change < 1e-12) break;
    }
    return lambda;
}

vae_status vae_pca2(const float *points, size_t n, int dim, float *out, double explained[2],
                    vae_error *err) {
    VAE_RETURN_IF(n < 1 || dim < 2, err, VAE_ERR_INVALID_ARGUMENT,
                  "a 2-D projection needs points of 2 or more dimensions");
    double *mean = calloc((size_t)dim, sizeof(double));
    double *c = vae_calloc_array((size_t)dim * dim, sizeof(double));
    double *v = calloc((size_t)dim * 3, sizeof(double));
    if (!mean || !c || !v) {
        free(mean), free(c), free(v);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for a %d-D projection", dim);
    }
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) mean[j] += points[i * dim + j] / (double)n;
    for (size_t i = 0; i < n; i++)
        for (int a = 0; a < dim; a++) {
            double da = points[i * dim + a] - mean[a];
            for (int b = 0; b <= a; b++) c[(size_t)a * dim + b] += da * (points[i * dim + b] - mean[b]);
        }
    double trace = 0;
    for (int a = 0; a < dim; a++) {
        for (int b = 0; b < a; b++) c[(size_t)b * dim + a] = c[(size_t)a * dim + b];
        trace += c[(size_t)a * dim + a];
    }
    double *v1 = v, *v2 = v + dim, *tmp = v + 2 * dim;
    double l1 = dim == 2 ? 0 : leading_eigen(c, dim, v1, tmp), l2 = 0;
    if (dim == 2) {
        v1[0] = 1, v1[1] = 0, v2[0] = 0, v2[1] = 1;
        l1 = c[0], l2 = c[3];
    } else {
        for (int a = 0; a < dim; a++) /* deflate */
            for (int b = 0; b < dim; b++) c[(size_t)a * dim + b] -= l1 * v1[a] * v1[b];
        l2 = leading_eigen(c, dim, v2, tmp);
    }
    for (size_t i = 0; i < n; i++) {
        double p1 = 0, p2 = 0;
        for (int j = 0; j < dim; j++) {
            double d = points[i * dim + j] - (dim == 2 ? 0 : mean[j]);
            p1 += d * v1[j], p2 += d * v2[j];
        }
        out[2 * i] = (float)p1, out[2 * i + 1] = (float)p2;
    }
    if (explained) {
        explained[0] = trace > 0 ? l1 / trace : 0;
        explained[1] = trace > 0 ? l2 / trace : 0;
    }
    free(mean), free(c), free(v);
    return VAE_OK;
}

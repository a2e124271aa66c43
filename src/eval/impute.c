/* impute.c — filling in missing values with a model trained on incomplete data (MIWAE, Mattei &
 * Frellsen 2019): importance sampling from q(z|x_obs) weighted by p(x_obs|z) p(z) / q(z|x_obs). */
#include "backend/backend.h"
#include "loss/loss.h"

#include <math.h>
#include <string.h>


/* A draw of value j from p(x|z) for decoder output row `out` (the likelihood's parameters) with
 * mean `mean`: a Bernoulli 0/1, a Gaussian with its variance, a Poisson count. */
static float draw_value(const vae_model *m, const float *out, float mean, int j, vae_rng *rng) {
    const vae_config *c = vae_model_config(m);
    switch (c->likelihood) {
    case VAE_LIK_BERNOULLI: return vae_rng_uniform(rng) < mean ? 1.0f : 0.0f;
    case VAE_LIK_GAUSSIAN: {
        const float *dim_logvar = NULL;
        if (c->variance == VAE_VAR_PER_DIM) {
            vae_tensor_info t = vae_model_tensor(m, vae_model_find_tensor(m, "likelihood.logvar"));
            dim_logvar = vae_model_params((vae_model *)m) + t.offset;
        }
        float unused, var = op_gaussian_variance(c, dim_logvar, out + c->input_dim, j, &unused);
        float e;
        vae_rng_normal(rng, &e, 1);
        return mean + (float)sqrt(var) * e;
    }
    case VAE_LIK_POISSON: { /* by inversion for small rates, a rounded normal for large ones */
        if (mean > 60.0f) {
            float e;
            vae_rng_normal(rng, &e, 1);
            double v = floor(mean + sqrt(mean) * e + 0.5);
            return v < 0 ? 0.0f : (float)v;
        }
        double p = exp(-(double)mean), cum = p, u = vae_rng_uniform(rng);
        int kk = 0;
        while (u > cum && kk < 1000) p *= mean / ++kk, cum += p;
        return (float)kk;
    }
    }
    return mean;
}

/* vae_impute on data in the model's units, the results in them too. */
static vae_status impute_rows(const vae_model *m, const vae_dataset *data, int k, int multiple,
                              uint64_t seed, float *out, vae_error *err) {
    const vae_config *cfg = vae_model_config(m);
    const int d = cfg->input_dim, latent = cfg->latent_dim, copies = multiple ? multiple : 1;
    const size_t n = data->count;
    vae_workspace *ws = NULL;
    VAE_TRY(vae_workspace_create(&ws, m, k, err));
    float *mu = malloc(sizeof(float) * latent), *lv = malloc(sizeof(float) * latent);
    float *eps = malloc(sizeof(float) * (size_t)k * latent), *z = malloc(sizeof(float) * (size_t)k * latent);
    float *mean = malloc(sizeof(float) * (size_t)k * d);
    double *log_px = malloc(sizeof(double) * k), *w = malloc(sizeof(double) * k);
    uint8_t *labels = calloc((size_t)k, 1);
    vae_status s = mu && lv && eps && z && mean && log_px && w && labels ? VAE_OK : VAE_ERR_NO_MEMORY;
    if (s != VAE_OK) vae_fail(err, s, "out of memory for %d importance samples", k);
    for (size_t i = 0; s == VAE_OK && i < n; i++) {
        const float *x = data->x + i * d;
        const uint8_t *mask = data->mask ? data->mask + i * d : NULL;
        for (int c = 0; c < copies; c++) memcpy(out + ((size_t)c * n + i) * d, x, sizeof(float) * d);
        if (!mask || !memchr(mask, 0, (size_t)d)) continue; /* nothing to fill in */
        memset(labels, data->labels ? data->labels[i] : 0, (size_t)k); /* read if conditional */
        const vae_batch input = {1, x, NULL, labels, mask};
        if ((s = vae_encode(m, ws, &input, mu, lv, err)) != VAE_OK) break;
        vae_rng rng = vae_rng_make(seed, VAE_STREAM_IWAE + i);
        vae_rng_normal(&rng, eps, (size_t)k * latent);
        vae_model_ops(m)->reparam_draws(z, w, mu, lv, eps, k, latent);
        /* log p(x_obs | z_k) (x and its mask, one for every draw), then the means */
        if ((s = vae_log_likelihood(m, ws, z, labels, k, x, 0, mask, log_px, err)) != VAE_OK ||
            (s = vae_decode(m, ws, z, labels, k, mean, err)) != VAE_OK)
            break;
        for (int r = 0; r < k; r++) w[r] += log_px[r];
        const double lse = op_log_sum_exp(w, (size_t)k);
        for (int r = 0; r < k; r++) w[r] = exp(w[r] - lse); /* self-normalized weights */
        for (int c = 0; c < copies; c++) {
            float *o = out + ((size_t)c * n + i) * d;
            if (!multiple) { /* the weighted conditional mean of the missing values */
                for (int j = 0; j < d; j++) {
                    if (mask[j]) continue;
                    double acc = 0.0;
                    for (int r = 0; r < k; r++) acc += w[r] * mean[(size_t)r * d + j];
                    o[j] = (float)acc;
                }
            } else { /* sampling importance resampling: one draw z by the weights */
                double u = vae_rng_uniform(&rng), cum = 0.0;
                int pick = k - 1;
                for (int r = 0; r < k; r++)
                    if ((cum += w[r]) > u) {
                        pick = r;
                        break;
                    }
                /* then the missing values from p(x|z) of that draw */
                const int width = op_output_width(vae_model_config(m));
                const float *out_row = vae_workspace_logits(ws) + (size_t)pick * width;
                for (int j = 0; j < d; j++)
                    if (!mask[j]) o[j] = draw_value(m, out_row, mean[(size_t)pick * d + j], j, &rng);
            }
        }
    }
    vae_workspace_free(ws);
    free(mu), free(lv), free(eps), free(z), free(mean), free(log_px), free(w), free(labels);
    return s;
}

vae_status vae_impute(const vae_model *m, const vae_dataset *data, int k, int multiple,
                      uint64_t seed, float *out, vae_error *err) {
    VAE_TRY(vae_check_data(m, data, "imputation", err));
    vae_device device; /* the GPU does not impute: AUTO stays on the CPU, CUDA is refused */
    VAE_TRY(vae_device_resolve(vae_model_device(m), VAE_ERR_INVALID_ARGUMENT, &device, err));
    VAE_RETURN_IF(device == VAE_DEVICE_CUDA, err, VAE_ERR_INVALID_ARGUMENT,
                  "the CUDA backend does not impute yet; use --device cpu");
    VAE_RETURN_IF(k < 1 || k > 100000 || multiple < 0 || multiple > 10000, err,
                  VAE_ERR_INVALID_ARGUMENT, "importance samples 1..100000, imputations 0..10000");
    vae_dataset view; /* the data in the model's units */
    float *owned = NULL;
    VAE_TRY(vae_model_units(m, data, &view, &owned, err));
    vae_status s = impute_rows(m, &view, k, multiple, seed, out, err);
    const int standardized = owned != NULL;
    free(owned);
    if (s != VAE_OK || !standardized) return s;
    /* back in the data's units: the filled-in values converted, the observed ones as given */
    const size_t n = data->count, d = (size_t)data->dim, copies = multiple ? (size_t)multiple : 1;
    vae_data_units(m, out, copies * n);
    for (size_t c = 0; c < copies; c++)
        for (size_t i = 0; i < n * d; i++)
            if (!data->mask || data->mask[i]) out[c * n * d + i] = data->x[i];
    return VAE_OK;
}

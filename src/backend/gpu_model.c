/* gpu_model.c — what the GPU backend runs, and its description of a model, taken from the
 * public table of named tensors alone (the backend never looks inside the model). */
#include "backend/backend.h"
#include "backend/gpu.h"

#include <string.h>

vae_status vae_gpu_supports_model(const vae_model *model, vae_error *err) {
    const vae_config *cfg = vae_model_config(model);
    VAE_RETURN_IF(cfg->n_conv, err, VAE_ERR_INVALID_ARGUMENT,
                  "the CUDA backend does not run convolutional models yet; use --device cpu");
    return VAE_OK;
}

/* The tensor named prefix.weight / prefix.bias as a dense layer. */
static int find_layer(const vae_model *model, const char *prefix, vae_gpu_layer *out) {
    char name[64];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int w = vae_model_find_tensor(model, name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    int b = vae_model_find_tensor(model, name);
    if (w < 0 || b < 0) return 0;
    vae_tensor_info wi = vae_model_tensor(model, w), bi = vae_model_tensor(model, b);
    if (wi.ndims != 2 || bi.rows != wi.rows) return 0;
    *out = (vae_gpu_layer){.in = wi.cols, .out = wi.rows, .weight = wi.offset, .bias = bi.offset};
    return 1;
}

vae_status vae_gpu_describe(const vae_model *model, vae_gpu_model *d, vae_error *err) {
    const vae_config *cfg = vae_model_config(model);
    memset(d, 0, sizeof *d);
    d->input_dim = cfg->input_dim, d->latent_dim = cfg->latent_dim;
    d->n_encoder = cfg->n_encoder, d->n_decoder = cfg->n_decoder, d->n_classes = cfg->n_classes;
    d->missing = cfg->missing;
    d->activation = cfg->activation, d->likelihood = cfg->likelihood;
    d->variance = cfg->variance, d->sigma = cfg->sigma, d->variance_floor = cfg->variance_floor;
    d->num_params = vae_model_num_params(model);
    int ok = 1, n = 0;
    char prefix[32];
    for (int i = 0; i < cfg->n_encoder; i++) {
        snprintf(prefix, sizeof prefix, "encoder.%d", i);
        ok &= find_layer(model, prefix, &d->layers[n++]);
    }
    for (int i = 0; i < cfg->n_decoder; i++) {
        snprintf(prefix, sizeof prefix, "decoder.%d", i);
        ok &= find_layer(model, prefix, &d->layers[n++]);
    }
    ok &= find_layer(model, "output", &d->layers[n]);
    ok &= find_layer(model, "mu", &d->mu) && find_layer(model, "logvar", &d->logvar);
    if (cfg->likelihood == VAE_LIK_GAUSSIAN && cfg->variance == VAE_VAR_PER_DIM) {
        int t = vae_model_find_tensor(model, "likelihood.logvar");
        ok &= t >= 0;
        if (t >= 0) d->dim_logvar = vae_model_tensor(model, t).offset;
    }
    VAE_RETURN_IF(!ok, err, VAE_ERR_INTERNAL, "the model's tensors are not an MLP's");
    return VAE_OK;
}

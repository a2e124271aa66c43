/* gpu_model.c — what the GPU backend runs, and its description of a model, taken from the
 * public table of named tensors alone (the backend never looks inside the model). */
#include "backend/backend.h"
#include "backend/gpu.h"

#include <string.h>

vae_status vae_gpu_supports_model(const vae_model *model, vae_error *err) {
    (void)model, (void)err; /* every kind of model the CPU runs */
    return VAE_OK;
}

/* The tensors named prefix.weight / prefix.bias as a layer: dense (a 2-D weight), or a
 * convolution (4-D) whose shape the caller sets. */
static int find_layer(const vae_model *model, const char *prefix, vae_gpu_layer *out) {
    char name[64];
    snprintf(name, sizeof name, "%s.weight", prefix);
    int w = vae_model_find_tensor(model, name);
    snprintf(name, sizeof name, "%s.bias", prefix);
    int b = vae_model_find_tensor(model, name);
    if (w < 0 || b < 0) return 0;
    vae_tensor_info wi = vae_model_tensor(model, w), bi = vae_model_tensor(model, b);
    if (wi.ndims != 2 && wi.ndims != 4) return 0;
    if (wi.ndims == 2 && bi.rows != wi.rows) return 0;
    *out = (vae_gpu_layer){.kind = wi.ndims == 2 ? VAE_GPU_DENSE : VAE_GPU_CONV, .in = wi.cols,
                           .out = wi.rows, .weight = wi.offset, .bias = bi.offset};
    return 1;
}

/* A convolution's shape from (c, h, w) in; its input and output sizes in values. */
static void set_conv(vae_gpu_layer *l, int kind, int in_c, int in_h, int in_w, int out_c,
                     int out_h, int out_w, int k, int stride, int pad) {
    l->kind = kind;
    l->in_c = in_c, l->in_h = in_h, l->in_w = in_w;
    l->out_c = out_c, l->out_h = out_h, l->out_w = out_w;
    l->k = k, l->stride = stride, l->pad = pad;
    l->in = in_c * in_h * in_w, l->out = out_c * out_h * out_w;
}

/* The encoder's convolutions, their mirrors in the decoder (the last one the output layer) and
 * the dense layers between, in the model's order; the shapes follow the configuration as
 * vae_model_create builds them. Returns 0 when a tensor is not there. */
static int describe_layers(const vae_model *model, vae_gpu_model *d) {
    const vae_config *cfg = vae_model_config(model);
    const int per_sample = cfg->likelihood == VAE_LIK_GAUSSIAN && cfg->variance == VAE_VAR_PER_SAMPLE;
    int ok = 1, n = 0, c = cfg->image_channels, h = cfg->image_rows, w = cfg->image_cols;
    int shapes[VAE_MAX_CONV][3];
    char prefix[32];
    for (int i = 0; i < cfg->n_conv; i++) {
        const int k = cfg->conv[i].kernel, st = cfg->conv[i].stride, pad = cfg->conv[i].padding;
        const int oh = (h + 2 * pad - k) / st + 1, ow = (w + 2 * pad - k) / st + 1;
        snprintf(prefix, sizeof prefix, "encoder.conv.%d", i);
        ok &= find_layer(model, prefix, &d->layers[n]);
        shapes[i][0] = c, shapes[i][1] = h, shapes[i][2] = w;
        set_conv(&d->layers[n++], VAE_GPU_CONV, c, h, w, cfg->conv[i].channels, oh, ow, k, st, pad);
        c = cfg->conv[i].channels, h = oh, w = ow;
    }
    for (int i = 0; i < cfg->n_encoder; i++) {
        snprintf(prefix, sizeof prefix, "encoder.%d", i);
        ok &= find_layer(model, prefix, &d->layers[n++]);
    }
    d->n_encoder = n;
    for (int i = 0; i < cfg->n_decoder; i++) {
        snprintf(prefix, sizeof prefix, "decoder.%d", i);
        ok &= find_layer(model, prefix, &d->layers[n++]);
    }
    if (cfg->n_conv) ok &= find_layer(model, "decoder.project", &d->layers[n++]);
    for (int i = cfg->n_conv - 1; i >= 0; i--) { /* back up to the image */
        const vae_gpu_layer *e = &d->layers[i];
        snprintf(prefix, sizeof prefix, i ? "decoder.convt.%d" : "output", i);
        ok &= find_layer(model, prefix, &d->layers[n]);
        set_conv(&d->layers[n], VAE_GPU_CONVT, e->out_c, e->out_h, e->out_w,
                 shapes[i][0] * (i == 0 && per_sample ? 2 : 1), shapes[i][1], shapes[i][2], e->k,
                 e->stride, e->pad);
        if (i) n++;
    }
    if (!cfg->n_conv) ok &= find_layer(model, "output", &d->layers[n]);
    d->n_decoder = n - d->n_encoder;
    return ok;
}

vae_status vae_gpu_describe(const vae_model *model, vae_gpu_model *d, vae_error *err) {
    const vae_config *cfg = vae_model_config(model);
    memset(d, 0, sizeof *d);
    d->input_dim = cfg->input_dim, d->latent_dim = cfg->latent_dim;
    d->n_classes = cfg->n_classes, d->missing = cfg->missing;
    d->activation = cfg->activation, d->likelihood = cfg->likelihood;
    d->variance = cfg->variance, d->sigma = cfg->sigma, d->variance_floor = cfg->variance_floor;
    d->num_params = vae_model_num_params(model);
    int ok = describe_layers(model, d);
    ok &= find_layer(model, "mu", &d->mu) && find_layer(model, "logvar", &d->logvar);
    if (cfg->likelihood == VAE_LIK_GAUSSIAN && cfg->variance == VAE_VAR_PER_DIM) {
        int t = vae_model_find_tensor(model, "likelihood.logvar");
        ok &= t >= 0;
        if (t >= 0) d->dim_logvar = vae_model_tensor(model, t).offset;
    }
    VAE_RETURN_IF(!ok, err, VAE_ERR_INTERNAL, "the model's tensors are not the layers its "
                  "configuration describes");
    return VAE_OK;
}

/* model.c — configuration, the parameter table and PyTorch-compatible initialization. */
#include "model/model_internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* Widths above this are surely typos; they would also overflow int products of B*width. */
#define VAE_MAX_WIDTH (1 << 24)

static const struct {
    const char *name;
    vae_activation act;
} ACTIVATIONS[] = {{"relu", VAE_ACT_RELU},         {"tanh", VAE_ACT_TANH},
                   {"leaky_relu", VAE_ACT_LEAKY_RELU}, {"leaky-relu", VAE_ACT_LEAKY_RELU},
                   {"lrelu", VAE_ACT_LEAKY_RELU},  {"elu", VAE_ACT_ELU}};

vae_status vae_activation_parse(const char *name, vae_activation *out, vae_error *err) {
    for (size_t i = 0; i < sizeof ACTIVATIONS / sizeof *ACTIVATIONS; i++)
        if (strcmp(name, ACTIVATIONS[i].name) == 0) {
            *out = ACTIVATIONS[i].act;
            return VAE_OK;
        }
    return vae_fail(err, VAE_ERR_INVALID_ARGUMENT,
                    "unknown activation \"%.40s\" (expected relu, tanh, leaky_relu or elu)", name);
}

const char *vae_activation_name(vae_activation act) {
    switch (act) {
    case VAE_ACT_RELU: return "relu";
    case VAE_ACT_TANH: return "tanh";
    case VAE_ACT_LEAKY_RELU: return "leaky_relu";
    case VAE_ACT_ELU: return "elu";
    }
    return "unknown";
}

static const char *const LIKELIHOODS[] = {"bernoulli", "gaussian", "poisson"};
static const char *const VARIANCES[] = {"fixed", "dim", "sample"};

vae_status vae_likelihood_parse(const char *name, vae_likelihood *out, vae_error *err) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, LIKELIHOODS[i]) == 0) {
            *out = (vae_likelihood)i;
            return VAE_OK;
        }
    return vae_fail(err, VAE_ERR_INVALID_ARGUMENT,
                    "unknown likelihood \"%.40s\" (expected bernoulli, gaussian or poisson)", name);
}

const char *vae_likelihood_name(vae_likelihood lik) {
    return (unsigned)lik < 3 ? LIKELIHOODS[lik] : "unknown";
}

vae_status vae_variance_parse(const char *name, vae_variance *out, vae_error *err) {
    const char *given = name;
    if (strncmp(name, "per-", 4) == 0) name += 4;
    for (int i = 0; i < 3; i++)
        if (strcmp(name, VARIANCES[i]) == 0) {
            *out = (vae_variance)i;
            return VAE_OK;
        }
    return vae_fail(err, VAE_ERR_INVALID_ARGUMENT,
                    "unknown variance \"%.40s\" (expected fixed, dim or sample)", given);
}

const char *vae_variance_name(vae_variance var) {
    return (unsigned)var < 3 ? VARIANCES[var] : "unknown";
}

vae_status vae_layer_sizes_parse(const char *text, int *sizes, int *count, vae_error *err) {
    int n = 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        VAE_RETURN_IF(end == p || errno || v < 1 || v > VAE_MAX_WIDTH, err,
                      VAE_ERR_INVALID_ARGUMENT,
                      "layer sizes \"%s\": expected positive integers up to %d separated by commas",
                      text, VAE_MAX_WIDTH);
        VAE_RETURN_IF(n == VAE_MAX_HIDDEN, err, VAE_ERR_INVALID_ARGUMENT,
                      "layer sizes \"%s\": at most %d layers", text, VAE_MAX_HIDDEN);
        sizes[n++] = (int)v;
        if (*end == '\0') break;
        VAE_RETURN_IF(*end != ',', err, VAE_ERR_INVALID_ARGUMENT,
                      "layer sizes \"%s\": unexpected '%c' at position %d", text, *end,
                      (int)(end - text) + 1);
        p = end + 1;
    }
    *count = n;
    return VAE_OK;
}

vae_status vae_conv_layers_parse(const char *text, vae_config *cfg, vae_error *err) {
    int n = 0;
    const char *p = text;
    while (*p) {
        VAE_RETURN_IF(n == VAE_MAX_CONV, err, VAE_ERR_INVALID_ARGUMENT,
                      "convolutions \"%s\": at most %d", text, VAE_MAX_CONV);
        int channels, kernel, stride = 1, padding = 0, used = 0;
        VAE_RETURN_IF(sscanf(p, "%dx%d%n", &channels, &kernel, &used) != 2, err,
                      VAE_ERR_INVALID_ARGUMENT, "convolutions \"%s\": expected CHANNELSxKERNEL"
                      "[sSTRIDE][pPADDING] at position %d, e.g. 32x4s2p1", text, (int)(p - text) + 1);
        p += used;
        if (*p == 's') {
            VAE_RETURN_IF(sscanf(p + 1, "%d%n", &stride, &used) != 1, err,
                          VAE_ERR_INVALID_ARGUMENT, "convolutions \"%s\": a number after 's'", text);
            p += 1 + used;
        }
        if (*p == 'p') {
            VAE_RETURN_IF(sscanf(p + 1, "%d%n", &padding, &used) != 1, err,
                          VAE_ERR_INVALID_ARGUMENT, "convolutions \"%s\": a number after 'p'", text);
            p += 1 + used;
        }
        VAE_RETURN_IF(*p != ',' && *p != '\0', err, VAE_ERR_INVALID_ARGUMENT,
                      "convolutions \"%s\": unexpected '%c' at position %d", text, *p,
                      (int)(p - text) + 1);
        cfg->conv[n].channels = channels, cfg->conv[n].kernel = kernel;
        cfg->conv[n].stride = stride, cfg->conv[n].padding = padding;
        n++;
        if (*p == ',') p++;
    }
    cfg->n_conv = n;
    return VAE_OK;
}

vae_status vae_config_preset(vae_config *cfg, const char *name, int input_dim, vae_error *err) {
    memset(cfg, 0, sizeof *cfg);
    cfg->input_dim = input_dim;
    cfg->activation = VAE_ACT_RELU;
    if (strcmp(name, "pytorch") == 0) {
        cfg->n_encoder = 1, cfg->encoder[0] = 400;
        cfg->latent_dim = 20;
        cfg->n_decoder = 1, cfg->decoder[0] = 400;
    } else if (strcmp(name, "seed") == 0) {
        cfg->n_encoder = 3, cfg->encoder[0] = 128, cfg->encoder[1] = 64, cfg->encoder[2] = 32;
        cfg->latent_dim = 2;
        cfg->n_decoder = 3, cfg->decoder[0] = 256, cfg->decoder[1] = 128, cfg->decoder[2] = 64;
    } else if (strcmp(name, "conv") == 0) {
        /* two stride-2 convolutions (28 -> 14 -> 7), a dense layer, a 20-D latent, mirrored */
        cfg->n_conv = 2;
        cfg->conv[0].channels = 32, cfg->conv[1].channels = 64;
        for (int i = 0; i < 2; i++)
            cfg->conv[i].kernel = 4, cfg->conv[i].stride = 2, cfg->conv[i].padding = 1;
        cfg->image_channels = 1, cfg->image_rows = 28, cfg->image_cols = 28;
        cfg->n_encoder = 1, cfg->encoder[0] = 256;
        cfg->latent_dim = 20;
        cfg->n_decoder = 1, cfg->decoder[0] = 256;
    } else {
        return vae_fail(err, VAE_ERR_INVALID_ARGUMENT,
                        "unknown preset \"%s\" (expected pytorch, seed or conv)", name);
    }
    return vae_config_validate(cfg, err);
}

vae_status vae_config_validate(const vae_config *cfg, vae_error *err) {
    VAE_RETURN_IF(cfg->input_dim < 1 || cfg->input_dim > VAE_MAX_WIDTH, err,
                  VAE_ERR_INVALID_ARGUMENT, "input dimension %d out of range 1..%d",
                  cfg->input_dim, VAE_MAX_WIDTH);
    VAE_RETURN_IF(cfg->latent_dim < 1 || cfg->latent_dim > VAE_MAX_WIDTH, err,
                  VAE_ERR_INVALID_ARGUMENT, "latent dimension %d out of range 1..%d",
                  cfg->latent_dim, VAE_MAX_WIDTH);
    VAE_RETURN_IF(cfg->n_encoder < 1 || cfg->n_encoder > VAE_MAX_HIDDEN, err,
                  VAE_ERR_INVALID_ARGUMENT, "encoder needs 1..%d hidden layers, got %d",
                  VAE_MAX_HIDDEN, cfg->n_encoder);
    VAE_RETURN_IF(cfg->n_decoder < 1 || cfg->n_decoder > VAE_MAX_HIDDEN, err,
                  VAE_ERR_INVALID_ARGUMENT, "decoder needs 1..%d hidden layers, got %d",
                  VAE_MAX_HIDDEN, cfg->n_decoder);
    for (int i = 0; i < cfg->n_encoder; i++)
        VAE_RETURN_IF(cfg->encoder[i] < 1 || cfg->encoder[i] > VAE_MAX_WIDTH, err,
                      VAE_ERR_INVALID_ARGUMENT, "encoder layer %d width %d out of range", i,
                      cfg->encoder[i]);
    for (int i = 0; i < cfg->n_decoder; i++)
        VAE_RETURN_IF(cfg->decoder[i] < 1 || cfg->decoder[i] > VAE_MAX_WIDTH, err,
                      VAE_ERR_INVALID_ARGUMENT, "decoder layer %d width %d out of range", i,
                      cfg->decoder[i]);
    VAE_RETURN_IF((unsigned)cfg->activation > VAE_ACT_ELU, err, VAE_ERR_INVALID_ARGUMENT,
                  "unknown activation %d", (int)cfg->activation);
    VAE_RETURN_IF(cfg->n_classes < 0 || cfg->n_classes > 256, err, VAE_ERR_INVALID_ARGUMENT,
                  "classes %d out of range 0..256", cfg->n_classes);
    VAE_RETURN_IF(cfg->n_conv < 0 || cfg->n_conv > VAE_MAX_CONV, err, VAE_ERR_INVALID_ARGUMENT,
                  "at most %d convolutions, got %d", VAE_MAX_CONV, cfg->n_conv);
    if (cfg->n_conv) {
        VAE_RETURN_IF(cfg->n_classes || cfg->missing, err, VAE_ERR_INVALID_ARGUMENT,
                      "a conditional model or missing values with convolutions are not supported");
        VAE_RETURN_IF(cfg->image_channels < 1 || cfg->image_rows < 1 || cfg->image_cols < 1 ||
                          (long)cfg->image_channels * cfg->image_rows * cfg->image_cols !=
                              cfg->input_dim,
                      err, VAE_ERR_INVALID_ARGUMENT,
                      "convolutions need images: %d x %d x %d is not the input's %d values",
                      cfg->image_channels, cfg->image_rows, cfg->image_cols, cfg->input_dim);
        int c = cfg->image_channels, h = cfg->image_rows, w = cfg->image_cols;
        for (int i = 0; i < cfg->n_conv; i++) {
            int ch = cfg->conv[i].channels, k = cfg->conv[i].kernel, s = cfg->conv[i].stride,
                p = cfg->conv[i].padding;
            VAE_RETURN_IF(ch < 1 || ch > 4096 || k < 1 || k > 15 || s < 1 || s > 8 || p < 0 ||
                              p >= k, err, VAE_ERR_INVALID_ARGUMENT,
                          "convolution %d: %d channels, kernel %d, stride %d, padding %d out of "
                          "range (1..4096, 1..15, 1..8, 0..kernel-1)", i + 1, ch, k, s, p);
            int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
            VAE_RETURN_IF(h + 2 * p < k || w + 2 * p < k, err, VAE_ERR_INVALID_ARGUMENT,
                          "convolution %d: kernel %d is larger than its %dx%d input", i + 1, k, h, w);
            VAE_RETURN_IF((oh - 1) * s - 2 * p + k != h || (ow - 1) * s - 2 * p + k != w, err,
                          VAE_ERR_INVALID_ARGUMENT,
                          "convolution %d (%dx%d -> %dx%d) cannot be mirrored exactly by the "
                          "decoder's transposed convolution; pick kernel, stride and padding "
                          "with (in + 2 padding - kernel) divisible by stride", i + 1, h, w, oh, ow);
            c = ch, h = oh, w = ow;
        }
        (void)c;
    }
    VAE_RETURN_IF((unsigned)cfg->likelihood > VAE_LIK_POISSON, err, VAE_ERR_INVALID_ARGUMENT,
                  "unknown likelihood %d", (int)cfg->likelihood);
    if (cfg->likelihood == VAE_LIK_GAUSSIAN) {
        VAE_RETURN_IF((unsigned)cfg->variance > VAE_VAR_PER_SAMPLE, err, VAE_ERR_INVALID_ARGUMENT,
                      "unknown variance %d", (int)cfg->variance);
        VAE_RETURN_IF(cfg->variance == VAE_VAR_FIXED && !(cfg->sigma > 0 && cfg->sigma < 1e6f),
                      err, VAE_ERR_INVALID_ARGUMENT, "a fixed sigma must be in (0, 1e6), got %g",
                      cfg->sigma);
        VAE_RETURN_IF(cfg->variance != VAE_VAR_FIXED &&
                          !(cfg->variance_floor > 0 && cfg->variance_floor < 1e6f),
                      err, VAE_ERR_INVALID_ARGUMENT,
                      "a learned variance needs a floor in (0, 1e6), got %g", cfg->variance_floor);
    }
    return VAE_OK;
}

/* Appends a layer of weight_size + bias_size parameters and its two tensor names; fails when
 * the parameter count overflows. */
static int add_any_layer(vae_model *m, const char *prefix, vae_layer_kind kind, int in, int out,
                         size_t wsize, int bias_size, int fan_in, const conv_shape *conv) {
    if (m->n_layers == VAE_MAX_LAYERS || wsize > INT32_MAX) return 0;
    vae_layer *layer = &m->layers[m->n_layers];
    layer->kind = kind, layer->in = in, layer->out = out;
    layer->weight_size = (int)wsize, layer->bias_size = bias_size, layer->fan_in = fan_in;
    if (conv) layer->conv = *conv;
    layer->weight = m->num_params;
    if (__builtin_add_overflow(m->num_params, wsize, &layer->bias)) return 0;
    if (__builtin_add_overflow(layer->bias, (size_t)bias_size, &m->num_params)) return 0;
    snprintf(m->tensor_names[2 * m->n_layers], VAE_TENSOR_NAME_MAX, "%s.weight", prefix);
    snprintf(m->tensor_names[2 * m->n_layers + 1], VAE_TENSOR_NAME_MAX, "%s.bias", prefix);
    m->n_layers++;
    return 1;
}

static int add_layer(vae_model *m, const char *prefix, int in, int out) {
    size_t wsize;
    if (__builtin_mul_overflow((size_t)in, (size_t)out, &wsize)) return 0;
    return add_any_layer(m, prefix, LAYER_DENSE, in, out, wsize, out, in, NULL);
}

static int add_conv_layer(vae_model *m, const char *prefix, vae_layer_kind kind,
                          const conv_shape *s) {
    size_t wsize = (size_t)s->in_c * s->out_c * s->k * s->k;
    int fan_in = (kind == LAYER_CONV ? s->in_c : s->out_c) * s->k * s->k; /* as PyTorch's */
    return add_any_layer(m, prefix, kind, s->in_c * s->in_h * s->in_w,
                         s->out_c * s->out_h * s->out_w, wsize, s->out_c, fan_in, s);
}

/* PyTorch's nn.Linear default: kaiming_uniform(a=sqrt 5) for weights, which is U(+-1/sqrt fan_in),
 * and the same bound for biases. */
static void init_params(vae_model *m, uint64_t seed) {
    for (int i = 0; i < m->n_layers; i++) {
        const vae_layer *layer = &m->layers[i];
        vae_rng rng = vae_rng_make(seed, 0x1a7e0000ULL + (uint64_t)i);
        float bound = 1.0f / sqrtf((float)layer->fan_in);
        size_t count = (size_t)layer->weight_size + (size_t)layer->bias_size;
        float *p = m->params + layer->weight;
        for (size_t k = 0; k < count; k++) p[k] = (2.0f * vae_rng_uniform(&rng) - 1.0f) * bound;
    }
}

vae_status vae_model_create(vae_model **out, const vae_config *cfg, uint64_t seed,
                            vae_error *err) {
    *out = NULL;
    VAE_TRY(vae_config_validate(cfg, err));
    vae_model *m = calloc(1, sizeof *m);
    VAE_RETURN_IF(!m, err, VAE_ERR_NO_MEMORY, "out of memory creating the model");
    m->cfg = *cfg;
    m->ops = &vae_cpu_ops;
    char name[VAE_TENSOR_NAME_MAX];
    int ok = 1, width = cfg->input_dim * (cfg->missing ? 2 : 1) + cfg->n_classes;
    conv_shape shapes[VAE_MAX_CONV];
    for (int i = 0; i < cfg->n_conv; i++) { /* validated: every shape fits and mirrors */
        conv_shape *s = &shapes[i];
        s->in_c = i ? shapes[i - 1].out_c : cfg->image_channels;
        s->in_h = i ? shapes[i - 1].out_h : cfg->image_rows;
        s->in_w = i ? shapes[i - 1].out_w : cfg->image_cols;
        s->out_c = cfg->conv[i].channels, s->k = cfg->conv[i].kernel;
        s->stride = cfg->conv[i].stride, s->pad = cfg->conv[i].padding;
        s->out_h = (s->in_h + 2 * s->pad - s->k) / s->stride + 1;
        s->out_w = (s->in_w + 2 * s->pad - s->k) / s->stride + 1;
        snprintf(name, sizeof name, "encoder.conv.%d", i);
        ok &= add_conv_layer(m, name, LAYER_CONV, s);
        width = s->out_c * s->out_h * s->out_w;
    }
    for (int i = 0; i < cfg->n_encoder; i++) {
        snprintf(name, sizeof name, "encoder.%d", i);
        ok &= add_layer(m, name, width, cfg->encoder[i]);
        width = cfg->encoder[i];
    }
    m->mu_layer = m->n_layers;
    ok &= add_layer(m, "mu", width, cfg->latent_dim);
    m->logvar_layer = m->n_layers;
    ok &= add_layer(m, "logvar", width, cfg->latent_dim);
    m->first_decoder_layer = m->n_layers;
    width = cfg->latent_dim + cfg->n_classes;
    for (int i = 0; i < cfg->n_decoder; i++) {
        snprintf(name, sizeof name, "decoder.%d", i);
        ok &= add_layer(m, name, width, cfg->decoder[i]);
        width = cfg->decoder[i];
    }
    const int per_sample = cfg->likelihood == VAE_LIK_GAUSSIAN && cfg->variance == VAE_VAR_PER_SAMPLE;
    if (cfg->n_conv) { /* to the last convolution's output shape, then back up to the image */
        const conv_shape *last = &shapes[cfg->n_conv - 1];
        int project = last->out_c * last->out_h * last->out_w;
        ok &= add_layer(m, "decoder.project", width, project);
        for (int i = cfg->n_conv - 1; i >= 0; i--) {
            const conv_shape *e = &shapes[i];
            conv_shape t = {.in_c = e->out_c, .in_h = e->out_h, .in_w = e->out_w,
                            .out_c = e->in_c * (i == 0 && per_sample ? 2 : 1), .out_h = e->in_h,
                            .out_w = e->in_w, .k = e->k, .stride = e->stride, .pad = e->pad};
            if (i == 0) m->output_layer = m->n_layers;
            snprintf(name, sizeof name, "decoder.convt.%d", i);
            ok &= add_conv_layer(m, i == 0 ? "output" : name, LAYER_CONVT, &t);
        }
    } else {
        m->output_layer = m->n_layers;
        ok &= add_layer(m, "output", width, cfg->input_dim * (per_sample ? 2 : 1));
    }
    m->dim_logvar = 0, m->has_dim_logvar = 0;
    if (cfg->likelihood == VAE_LIK_GAUSSIAN && cfg->variance == VAE_VAR_PER_DIM) {
        m->has_dim_logvar = 1, m->dim_logvar = m->num_params;
        ok &= !__builtin_add_overflow(m->num_params, (size_t)cfg->input_dim, &m->num_params);
    }
    if (!ok) {
        free(m);
        return vae_fail(err, VAE_ERR_INVALID_ARGUMENT, "model too large: parameter count overflows");
    }
    m->params = vae_calloc_array(m->num_params, sizeof(float));
    m->grads = vae_calloc_array(m->num_params, sizeof(float));
    if (!m->params || !m->grads) {
        size_t n = m->num_params;
        vae_model_free(m);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for %zu parameters", n);
    }
    init_params(m, seed);
    *out = m;
    return VAE_OK;
}

void vae_model_free(vae_model *model) {
    if (!model) return;
    free(model->data_mean);
    free(model->data_std);
    free(model->params);
    free(model->grads);
    free(model);
}

vae_status vae_model_set_standardization(vae_model *m, const float *mean, const float *std,
                                         vae_error *err) {
    const size_t d = (size_t)m->cfg.input_dim;
    if (!mean || !std) {
        free(m->data_mean), free(m->data_std);
        m->data_mean = m->data_std = NULL;
        return VAE_OK;
    }
    for (size_t i = 0; i < d; i++)
        VAE_RETURN_IF(!isfinite(mean[i]) || !(std[i] > 0.0f) || !isfinite(std[i]), err,
                      VAE_ERR_INVALID_ARGUMENT, "standardization of value %zu: mean %g, std %g "
                      "(std must be finite and > 0)", i + 1, mean[i], std[i]);
    if (!m->data_mean) m->data_mean = vae_calloc_array(d, sizeof(float));
    if (!m->data_std) m->data_std = vae_calloc_array(d, sizeof(float));
    VAE_RETURN_IF(!m->data_mean || !m->data_std, err, VAE_ERR_NO_MEMORY, "out of memory");
    memcpy(m->data_mean, mean, d * sizeof(float));
    memcpy(m->data_std, std, d * sizeof(float));
    return VAE_OK;
}

const float *vae_model_data_mean(const vae_model *m) { return m->data_mean; }
const float *vae_model_data_std(const vae_model *m) { return m->data_std; }

void vae_standardize_fit(const vae_dataset *data, float *mean, float *std) {
    const size_t n = data->count, d = (size_t)data->dim;
    for (size_t j = 0; j < d; j++) { /* over the observed values only */
        double sum = 0.0, sq = 0.0;
        size_t seen = 0;
        for (size_t i = 0; i < n; i++)
            if (!data->mask || data->mask[i * d + j]) sum += data->x[i * d + j], seen++;
        double mu = seen ? sum / (double)seen : 0.0;
        for (size_t i = 0; i < n; i++) {
            if (data->mask && !data->mask[i * d + j]) continue;
            double e = data->x[i * d + j] - mu;
            sq += e * e;
        }
        double sd = seen > 1 ? sqrt(sq / (double)(seen - 1)) : 0.0;
        mean[j] = (float)mu;
        std[j] = sd > 1e-12 ? (float)sd : 1.0f; /* a constant column is only centered */
    }
}

void vae_standardize(float *x, size_t n, int dim, const float *mean, const float *std, int invert) {
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            float *v = &x[i * (size_t)dim + j];
            *v = invert ? *v * std[j] + mean[j] : (*v - mean[j]) / std[j];
        }
}

vae_status vae_model_units(const vae_model *m, const vae_dataset *data, vae_dataset *view,
                           float **owned, vae_error *err) {
    *view = *data;
    *owned = NULL;
    if (!m->data_mean) return VAE_OK;
    const size_t values = data->count * (size_t)data->dim;
    *owned = vae_calloc_array(values, sizeof(float));
    VAE_RETURN_IF(!*owned, err, VAE_ERR_NO_MEMORY,
                  "out of memory for the standardized copy of %zu samples", data->count);
    memcpy(*owned, data->x, values * sizeof(float));
    vae_standardize(*owned, data->count, data->dim, m->data_mean, m->data_std, 0);
    view->x = *owned;
    return VAE_OK;
}

void vae_data_units(const vae_model *m, float *x, size_t n) {
    if (m->data_mean) vae_standardize(x, n, m->cfg.input_dim, m->data_mean, m->data_std, 1);
}

const vae_config *vae_model_config(const vae_model *model) { return &model->cfg; }

vae_status vae_model_set_device(vae_model *model, vae_device device, vae_precision precision,
                                vae_error *err) {
    VAE_RETURN_IF((unsigned)device > VAE_DEVICE_AUTO || (unsigned)precision > VAE_PRECISION_TF32,
                  err, VAE_ERR_INVALID_ARGUMENT, "unknown device %d or precision %d", (int)device,
                  (int)precision);
    model->device = device, model->precision = precision;
    return VAE_OK;
}

vae_device vae_model_device(const vae_model *model) { return model->device; }
const vae_ops *vae_model_ops(const vae_model *model) { return model->ops; }
void vae_model_set_ops(vae_model *model, const vae_ops *ops) { model->ops = ops; }
vae_precision vae_model_precision(const vae_model *model) { return model->precision; }
size_t vae_model_num_params(const vae_model *model) { return model->num_params; }
float *vae_model_params(vae_model *model) { return model->params; }
float *vae_model_grads(vae_model *model) { return model->grads; }

void vae_model_zero_grads(vae_model *model) {
    memset(model->grads, 0, model->num_params * sizeof *model->grads);
}

uint64_t vae_config_hash(const vae_config *cfg) {
    /* field by field: padding bytes of the struct must not count */
    int32_t fields[4 + 2 * VAE_MAX_HIDDEN + 1 + 6 + 4 + 4 * VAE_MAX_CONV] = {0};
    int k = 0;
    fields[k++] = cfg->input_dim, fields[k++] = cfg->latent_dim;
    fields[k++] = cfg->n_encoder, fields[k++] = cfg->n_decoder;
    for (int i = 0; i < cfg->n_encoder && i < VAE_MAX_HIDDEN; i++) fields[k++] = cfg->encoder[i];
    for (int i = 0; i < cfg->n_decoder && i < VAE_MAX_HIDDEN; i++) fields[k++] = cfg->decoder[i];
    fields[k++] = (int32_t)cfg->activation;
    if (cfg->n_classes) fields[k++] = -cfg->n_classes; /* unconditional models keep their hash */
    if (cfg->missing) fields[k++] = -1000;
    if (cfg->n_conv > 0 && cfg->n_conv <= VAE_MAX_CONV) { /* and MLPs theirs */
        fields[k++] = 1000 + cfg->n_conv;
        fields[k++] = cfg->image_channels, fields[k++] = cfg->image_rows;
        fields[k++] = cfg->image_cols;
        for (int i = 0; i < cfg->n_conv; i++) {
            fields[k++] = cfg->conv[i].channels, fields[k++] = cfg->conv[i].kernel;
            fields[k++] = cfg->conv[i].stride, fields[k++] = cfg->conv[i].padding;
        }
    }
    if (cfg->likelihood != VAE_LIK_BERNOULLI) { /* so Bernoulli models keep their old hash */
        fields[k++] = (int32_t)cfg->likelihood;
        if (cfg->likelihood == VAE_LIK_GAUSSIAN) {
            fields[k++] = (int32_t)cfg->variance;
            memcpy(&fields[k++], cfg->variance == VAE_VAR_FIXED ? &cfg->sigma : &cfg->variance_floor,
                   sizeof(float));
        }
    }
    return vae_hash_bytes(fields, (size_t)k * sizeof *fields, 0xc0f1ULL);
}

int vae_model_num_tensors(const vae_model *model) {
    return 2 * model->n_layers + model->has_dim_logvar;
}

vae_tensor_info vae_model_tensor(const vae_model *model, int index) {
    vae_tensor_info info = {0};
    if (index == 2 * model->n_layers && model->has_dim_logvar) {
        info.name = "likelihood.logvar";
        info.offset = model->dim_logvar, info.rows = model->cfg.input_dim, info.cols = 1;
        info.ndims = 1, info.dims[0] = info.rows;
        return info;
    }
    if (index < 0 || index >= 2 * model->n_layers) return info;
    const vae_layer *layer = &model->layers[index / 2];
    info.name = model->tensor_names[index];
    if (index % 2 == 1) {
        info.offset = layer->bias, info.rows = layer->bias_size, info.cols = 1;
        info.ndims = 1, info.dims[0] = layer->bias_size;
    } else if (layer->kind == LAYER_DENSE) {
        info.offset = layer->weight, info.rows = layer->out, info.cols = layer->in;
        info.ndims = 2, info.dims[0] = layer->out, info.dims[1] = layer->in;
    } else { /* Conv2d (out, in, k, k); ConvTranspose2d (in, out, k, k) */
        const conv_shape *s = &layer->conv;
        int first = layer->kind == LAYER_CONV ? s->out_c : s->in_c;
        int second = layer->kind == LAYER_CONV ? s->in_c : s->out_c;
        info.offset = layer->weight, info.rows = first, info.cols = second * s->k * s->k;
        info.ndims = 4;
        info.dims[0] = first, info.dims[1] = second, info.dims[2] = info.dims[3] = s->k;
    }
    return info;
}

size_t vae_model_file_tensor_capacity(const vae_model *m) {
    return 3 * (size_t)vae_model_num_tensors(m) + 2;
}

/* One entry of the file table. */
static void file_tensor(vae_file_tensor *t, const char *prefix, const char *name,
                        vae_tensor_role role, float *data, size_t count, int ndims,
                        const int *dims) {
    snprintf(t->name, sizeof t->name, "%s%s", prefix, name);
    t->role = role, t->data = data, t->count = count, t->ndims = ndims;
    memcpy(t->dims, dims, sizeof t->dims);
}

size_t vae_model_file_tensors(vae_model *m, vae_adam *adam, vae_file_tensor *out) {
    static const char *const prefix[] = {"", "", "adam.m.", "adam.v."};
    size_t n = 0;
    const int count = vae_model_num_tensors(m);
    for (int i = 0; i < count; i++) {
        vae_tensor_info info = vae_model_tensor(m, i);
        file_tensor(&out[n++], "", info.name, TENSOR_PARAM, m->params + info.offset,
                    (size_t)info.rows * info.cols, info.ndims, info.dims);
    }
    if (m->data_mean) { /* the data's standardization: no moments, training leaves it */
        const int dims[4] = {m->cfg.input_dim};
        file_tensor(&out[n++], "", "standardize.mean", TENSOR_BUFFER, m->data_mean,
                    (size_t)m->cfg.input_dim, 1, dims);
        file_tensor(&out[n++], "", "standardize.std", TENSOR_BUFFER, m->data_std,
                    (size_t)m->cfg.input_dim, 1, dims);
    }
    for (vae_tensor_role role = TENSOR_ADAM_M; role <= TENSOR_ADAM_V; role++) {
        float *base = !adam ? NULL
                      : role == TENSOR_ADAM_M ? vae_adam_first_moment(adam)
                                              : vae_adam_second_moment(adam);
        for (int i = 0; i < count; i++) {
            vae_tensor_info info = vae_model_tensor(m, i);
            file_tensor(&out[n++], prefix[role], info.name, role, base ? base + info.offset : NULL,
                        (size_t)info.rows * info.cols, info.ndims, info.dims);
        }
    }
    return n;
}

vae_status vae_model_reserve_standardization(vae_model *m, vae_error *err) {
    const size_t d = (size_t)m->cfg.input_dim;
    if (!m->data_mean) m->data_mean = vae_calloc_array(d, sizeof(float));
    if (!m->data_std) m->data_std = vae_calloc_array(d, sizeof(float));
    VAE_RETURN_IF(!m->data_mean || !m->data_std, err, VAE_ERR_NO_MEMORY,
                  "out of memory for the standardization");
    return VAE_OK;
}

int vae_model_find_tensor(const vae_model *model, const char *name) {
    for (int i = 0; i < vae_model_num_tensors(model); i++)
        if (strcmp(vae_model_tensor(model, i).name, name) == 0) return i;
    return -1;
}

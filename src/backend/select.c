/* select.c — naming the CPU backends and choosing one for a model: AUTO times each on the
 * model's own layers (forward and backward at the batch it will run) and keeps the faster,
 * since which library wins depends on the CPU, the shapes and the thread count. */
#include "backend/backend.h"
#include "model/model_internal.h"

#include <string.h>

vae_status vae_backend_parse(const char *name, vae_backend *out, vae_error *err) {
    if (!strcmp(name, "openblas")) *out = VAE_BACKEND_OPENBLAS;
    else if (!strcmp(name, "onednn")) *out = VAE_BACKEND_ONEDNN;
    else if (!strcmp(name, "auto")) *out = VAE_BACKEND_AUTO;
    else
        return vae_fail(err, VAE_ERR_INVALID_ARGUMENT,
                        "unknown backend \"%.40s\" (expected openblas, onednn or auto)", name);
    return VAE_OK;
}

const char *vae_backend_name(vae_backend backend) {
    switch (backend) {
    case VAE_BACKEND_OPENBLAS: return "openblas";
    case VAE_BACKEND_ONEDNN: return "onednn";
    case VAE_BACKEND_AUTO: return "auto";
    }
    return "unknown";
}

int vae_backend_available(vae_backend backend) {
    return backend != VAE_BACKEND_ONEDNN || vae_onednn_ops != NULL;
}

vae_backend vae_backend_default(void) {
    return vae_backend_available(VAE_BACKEND_ONEDNN) ? VAE_BACKEND_ONEDNN : VAE_BACKEND_OPENBLAS;
}

vae_backend vae_model_backend(const vae_model *m) {
    return vae_onednn_ops && (m->ops == vae_onednn_ops || m->ops == vae_onednn_bf16_ops)
               ? VAE_BACKEND_ONEDNN : VAE_BACKEND_OPENBLAS;
}

vae_precision vae_model_cpu_precision(const vae_model *m) {
    return vae_onednn_bf16_ops && m->ops == vae_onednn_bf16_ops ? VAE_PRECISION_BF16
                                                                 : VAE_PRECISION_FP32;
}

vae_status vae_model_set_cpu_precision(vae_model *m, vae_precision precision, vae_error *err) {
    VAE_RETURN_IF(precision != VAE_PRECISION_FP32 && precision != VAE_PRECISION_BF16, err,
                  VAE_ERR_INVALID_ARGUMENT,
                  "precision %s: the CPU computes fp32 or bf16 (tf32 is a GPU's)",
                  vae_precision_name(precision));
    if (precision == VAE_PRECISION_FP32) {
        if (vae_model_cpu_precision(m) == VAE_PRECISION_BF16) vae_model_set_ops(m, vae_onednn_ops);
        return VAE_OK;
    }
    /* already chosen (and probed): vae_train asks on every call, Python once per epoch */
    if (vae_model_cpu_precision(m) == VAE_PRECISION_BF16) return VAE_OK;
    VAE_RETURN_IF(!vae_onednn_bf16_ops, err, VAE_ERR_INVALID_ARGUMENT,
                  "bf16 products need oneDNN, which this build has not (install libdnnl-dev "
                  "and rebuild)");
#ifdef VAE_ONEDNN
    char why[200];
    VAE_RETURN_IF(!op_bf16_check(why, sizeof why), err, VAE_ERR_INVALID_ARGUMENT,
                  "--precision bf16: %s", why);
#endif
    vae_model_set_ops(m, vae_onednn_bf16_ops);
    return VAE_OK;
}

/* Scratch for timing a model's layers: inputs a, outputs b, input gradients c (batch rows of
 * the widest layer), weights w and their gradients g (the largest layer's), and a
 * convolution's columns. */
typedef struct {
    float *a, *b, *c, *w, *g, *cols;
} layer_scratch;

/* One forward and backward of layer with ops on the scratch */
static void run_layer(const vae_ops *ops, const vae_layer *layer, int batch,
                      const layer_scratch *s) {
    /* split as a training workspace splits it */
    const conv_shape shape = vae_layer_conv(layer, vae_get_num_threads());
    if (layer->kind == LAYER_DENSE) {
        ops->linear_forward(s->b, s->a, s->w, s->w, batch, layer->in, layer->out, NULL);
        ops->linear_backward(s->c, s->g, s->g, s->b, s->a, s->w, batch, layer->in, layer->out,
                             0, 0);
    } else if (layer->kind == LAYER_CONV) {
        ops->conv2d_forward(s->b, s->a, s->w, s->w, batch, &shape, s->cols);
        ops->conv2d_backward(s->c, s->g, s->g, s->b, s->a, s->w, batch, &shape, s->cols);
    } else {
        ops->convt2d_forward(s->b, s->a, s->w, s->w, batch, &shape, s->cols);
        ops->convt2d_backward(s->c, s->g, s->g, s->b, s->a, s->w, batch, &shape, s->cols);
    }
}

/* Seconds for one forward and backward of every layer of m at `batch` rows with ops (the best
 * of a few rounds, after a warm-up). */
static double time_layers(const vae_model *m, const vae_ops *ops, int batch,
                          const layer_scratch *s) {
    double best = 1e30;
    for (int round = 0; round < 6; round++) {
        double t0 = vae_seconds_now();
        for (int l = 0; l < m->n_layers; l++) run_layer(ops, &m->layers[l], batch, s);
        double t = vae_seconds_now() - t0;
        if (round > 0 && t < best) best = t; /* round 0 warms caches and JIT kernels */
    }
    return best;
}

/* The faster backend for m's layers (dense and convolutions) at `batch` rows. */
static vae_status fastest(const vae_model *m, int batch, const vae_ops **out, vae_error *err) {
    size_t widest = 1, weights = 1;
    /* the layers timed one by one on NCHW activations */
    size_t cols = vae_model_cols_floats_for(m, &vae_cpu_ops, batch, vae_get_num_threads(), 0);
    const size_t cols_dnnl = vae_model_cols_floats_for(m, vae_onednn_ops, batch,
                                                       vae_get_num_threads(), 0);
    if (cols_dnnl > cols) cols = cols_dnnl;
    for (int l = 0; l < m->n_layers; l++) {
        const vae_layer *layer = &m->layers[l];
        if ((size_t)layer->in > widest) widest = (size_t)layer->in;
        if ((size_t)layer->out > widest) widest = (size_t)layer->out;
        if ((size_t)layer->weight_size > weights) weights = (size_t)layer->weight_size;
    }
    const size_t rows = (size_t)batch * widest;
    layer_scratch s = {vae_calloc_array(rows, sizeof(float)), vae_calloc_array(rows, sizeof(float)),
                       vae_calloc_array(rows, sizeof(float)), vae_calloc_array(weights, sizeof(float)),
                       vae_calloc_array(weights, sizeof(float)), vae_calloc_array(cols, sizeof(float))};
    vae_status st = s.a && s.b && s.c && s.w && s.g && s.cols
                        ? VAE_OK : vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; st == VAE_OK && i < rows; i++) s.a[i] = (float)(i % 13) * 0.01f;
    for (size_t i = 0; st == VAE_OK && i < weights; i++) s.w[i] = (float)(i % 7) * 0.01f;
    if (st == VAE_OK) {
        double blas = time_layers(m, &vae_cpu_ops, batch, &s);
        double dnnl = time_layers(m, vae_onednn_ops, batch, &s);
        *out = dnnl < blas ? vae_onednn_ops : &vae_cpu_ops;
    }
    free(s.a), free(s.b), free(s.c), free(s.w), free(s.g), free(s.cols);
    return st;
}

vae_status vae_model_set_backend(vae_model *m, vae_backend backend, int batch,
                                 vae_backend *chosen, vae_error *err) {
    VAE_RETURN_IF((unsigned)backend > VAE_BACKEND_AUTO, err, VAE_ERR_INVALID_ARGUMENT,
                  "unknown backend %d", (int)backend);
    VAE_RETURN_IF(!vae_backend_available(backend), err, VAE_ERR_INVALID_ARGUMENT,
                  "this build has no oneDNN (install libdnnl-dev and rebuild, or use "
                  "--backend openblas)");
    VAE_RETURN_IF(batch < 1, err, VAE_ERR_INVALID_ARGUMENT, "batch %d must be >= 1", batch);
    const vae_ops *ops = &vae_cpu_ops;
    if (backend == VAE_BACKEND_ONEDNN) ops = vae_onednn_ops;
    if (backend == VAE_BACKEND_AUTO && vae_onednn_ops) VAE_TRY(fastest(m, batch, &ops, err));
    vae_model_set_ops(m, ops);
    if (chosen) *chosen = vae_model_backend(m);
    return VAE_OK;
}

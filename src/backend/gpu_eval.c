/* gpu_eval.c — measuring and using a trained model on the GPU: vae_eval's per-example terms,
 * and the batched encoding and decoding behind vae_encode_all and vae_decode_all. The data and
 * weights go to the device once per call; the results come back for the callers to use as
 * they use the CPU's. */
#include "backend/backend.h"

/* Rows per pass: enough importance draws per matrix product to keep the GPU busy; fewer for a
 * convolutional model, whose columns take taps x positions floats per row and layer. */
#define EVAL_ROWS 32768
#define EVAL_ROWS_CONV 2048

static int pass_rows(const vae_model *model, int at_least) {
    const int rows = vae_model_config(model)->n_conv ? EVAL_ROWS_CONV : EVAL_ROWS;
    return at_least > rows ? at_least : rows;
}

/* A device state for using model (not training it) on data, rows at a time. */
static vae_status open_gpu(const vae_model *model, const vae_dataset *data, int rows,
                           uint64_t seed, vae_precision precision, vae_gpu **g, char *msg,
                           vae_error *err) {
    *g = NULL;
    VAE_TRY(vae_gpu_supports_model(model, err));
    VAE_RETURN_IF(data->count > UINT32_MAX, err, VAE_ERR_INVALID_ARGUMENT,
                  "the CUDA backend takes at most 2^32 - 1 examples");
    vae_gpu_model desc;
    VAE_TRY(vae_gpu_describe(model, &desc, err));
    vae_gpu_objective obj = {.seed = seed, .noise_stream = VAE_STREAM_NOISE,
                             .eval_stream = VAE_STREAM_EVAL, .batch_size = 1, .beta = 1.0f,
                             .precision = precision};
    vae_adam_options_default(&obj.adam);
    vae_status s = vae_gpu_create(g, &desc, &obj, rows, data, NULL, msg);
    if (s == VAE_OK)
        s = vae_gpu_upload(*g, vae_model_params((vae_model *)model), NULL, NULL, 0, 0, msg);
    return s;
}

/* The status of a call on g, with the CUDA side's message, after freeing g (a refusal before
 * the device, with no such message, has said why in err already). */
static vae_status close_gpu(vae_gpu *g, vae_status s, const char *msg, vae_error *err) {
    vae_gpu_free(g);
    return s == VAE_OK || !msg[0] ? s : vae_fail(err, s, "CUDA: %s", msg);
}

vae_status vae_gpu_eval_terms(const vae_model *model, const vae_dataset *data,
                              const vae_eval_options *o, double *recon, double *kl, float *mu,
                              float *logvar, double *nll, vae_error *err) {
    char msg[512] = "";
    vae_gpu *g;
    vae_status s = open_gpu(model, data, pass_rows(model, o->batch), o->seed, o->precision, &g,
                            msg, err);
    if (s == VAE_OK) s = vae_gpu_elbo_terms(g, VAE_STREAM_EVAL, recon, kl, mu, logvar, msg);
    if (s == VAE_OK && o->importance_samples > 0)
        s = vae_gpu_iwae(g, o->importance_samples, o->chunk, VAE_STREAM_IWAE, nll, o->progress,
                         o->user, msg);
    return close_gpu(g, s, msg, err);
}

vae_status vae_gpu_encode_all(const vae_model *model, const float *x, const uint8_t *mask,
                              const uint8_t *labels, size_t n, float *mu, float *logvar,
                              vae_error *err) {
    const vae_config *cfg = vae_model_config(model);
    vae_dataset data = {.count = n, .dim = cfg->input_dim, .x = (float *)x,
                        .labels = (uint8_t *)labels, .mask = (uint8_t *)mask};
    char msg[512] = "";
    vae_gpu *g;
    vae_status s =
        open_gpu(model, &data, pass_rows(model, 1), 1, vae_model_precision(model), &g, msg, err);
    if (s == VAE_OK) s = vae_gpu_encode(g, mu, logvar, msg);
    return close_gpu(g, s, msg, err);
}

vae_status vae_gpu_decode_all(const vae_model *model, const float *z, const uint8_t *labels,
                              size_t n, float *means, vae_error *err) {
    const vae_config *cfg = vae_model_config(model);
    vae_dataset none = {.count = 0, .dim = cfg->input_dim};
    char msg[512] = "";
    vae_gpu *g;
    vae_status s =
        open_gpu(model, &none, pass_rows(model, 1), 1, vae_model_precision(model), &g, msg, err);
    if (s == VAE_OK) s = vae_gpu_decode(g, z, labels, n, means, msg);
    return close_gpu(g, s, msg, err);
}

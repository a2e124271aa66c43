/* gpu_eval.c — vae_eval's per-example terms on the GPU: the data and weights go to the device
 * once, the ELBO pass and the importance sampling run there, and the per-example arrays come
 * back for eval.c to summarize exactly as it does the CPU's. */
#include "backend/backend.h"

/* Rows per pass: enough importance draws per matrix product to keep the GPU busy. */
#define EVAL_ROWS 32768

vae_status vae_gpu_eval_terms(const vae_model *model, const vae_dataset *data,
                              const vae_eval_options *o, double *recon, double *kl, float *mu,
                              float *logvar, double *nll, vae_error *err) {
    VAE_TRY(vae_gpu_supports_model(model, err));
    VAE_RETURN_IF(data->count > UINT32_MAX, err, VAE_ERR_INVALID_ARGUMENT,
                  "the CUDA backend takes at most 2^32 - 1 examples");
    vae_gpu_model desc;
    VAE_TRY(vae_gpu_describe(model, &desc, err));
    vae_gpu_objective obj = {.seed = o->seed, .noise_stream = VAE_STREAM_NOISE,
                             .eval_stream = VAE_STREAM_EVAL, .batch_size = 1, .beta = 1.0f,
                             .precision = o->precision};
    vae_adam_options_default(&obj.adam);
    char msg[512];
    vae_gpu *g = NULL;
    const int rows = o->batch > EVAL_ROWS ? o->batch : EVAL_ROWS;
    vae_status s = vae_gpu_create(&g, &desc, &obj, rows, data, NULL, msg);
    if (s == VAE_OK)
        s = vae_gpu_upload(g, vae_model_params((vae_model *)model), NULL, NULL, 0, 0, msg);
    if (s == VAE_OK) s = vae_gpu_elbo_terms(g, VAE_STREAM_EVAL, recon, kl, mu, logvar, msg);
    if (s == VAE_OK && o->importance_samples > 0)
        s = vae_gpu_iwae(g, o->importance_samples, o->chunk, VAE_STREAM_IWAE, nll, o->progress,
                         o->user, msg);
    vae_gpu_free(g);
    return s == VAE_OK ? VAE_OK : vae_fail(err, s, "CUDA: %s", msg);
}

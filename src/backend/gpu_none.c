/* gpu_none.c — the GPU interface in a build without CUDA: nothing is available, and every call
 * says how to get a build that has it. */
#ifndef VAE_CUDA
#include "backend/gpu.h"

#include <stdio.h>

#define NO_CUDA "this vae was built without CUDA (build it with make CUDA=1)"

int vae_gpu_available(char *info, size_t info_size) {
    if (info && info_size) snprintf(info, info_size, "%s", NO_CUDA);
    return 0;
}

vae_status vae_gpu_create(vae_gpu **out, const vae_gpu_model *model, const vae_gpu_objective *obj,
                          int max_rows, const vae_dataset *train, const vae_dataset *test,
                          char *msg) {
    (void)model, (void)obj, (void)max_rows, (void)train, (void)test;
    *out = NULL;
    snprintf(msg, 512, "%s", NO_CUDA);
    return VAE_ERR_INVALID_ARGUMENT;
}

void vae_gpu_free(vae_gpu *g) { (void)g; }

int vae_gpu_blas_probe(char *msg) {
    snprintf(msg, 512, "%s", NO_CUDA);
    return -1;
}

static vae_status none(char *msg) {
    snprintf(msg, 512, "%s", NO_CUDA);
    return VAE_ERR_INTERNAL;
}

vae_status vae_gpu_upload(vae_gpu *g, const float *params, const float *m, const float *v,
                          uint64_t adam_steps, uint64_t global_step, char *msg) {
    (void)g, (void)params, (void)m, (void)v, (void)adam_steps, (void)global_step;
    return none(msg);
}

vae_status vae_gpu_download(vae_gpu *g, float *params, float *m, float *v, char *msg) {
    (void)g, (void)params, (void)m, (void)v;
    return none(msg);
}

vae_status vae_gpu_epoch_begin(vae_gpu *g, const uint32_t *order, size_t n, uint32_t epoch_step,
                               char *msg) {
    (void)g, (void)order, (void)n, (void)epoch_step;
    return none(msg);
}

vae_status vae_gpu_steps(vae_gpu *g, int batch, int count, char *msg) {
    (void)g, (void)batch, (void)count;
    return none(msg);
}

vae_status vae_gpu_sync(vae_gpu *g, int count, double *recon, double *kl, uint64_t *bad_step,
                        char *msg) {
    (void)g, (void)count, (void)recon, (void)kl, (void)bad_step;
    return none(msg);
}

vae_status vae_gpu_evaluate(vae_gpu *g, size_t from, size_t to, vae_loss *loss, char *msg) {
    (void)g, (void)from, (void)to, (void)loss;
    return none(msg);
}

vae_status vae_gpu_elbo_terms(vae_gpu *g, uint64_t stream, double *recon, double *kl, float *mu,
                              float *logvar, char *msg) {
    (void)g, (void)stream, (void)recon, (void)kl, (void)mu, (void)logvar;
    return none(msg);
}

vae_status vae_gpu_iwae(vae_gpu *g, int k, int chunk, uint64_t stream, double *nll,
                        int (*progress)(void *user, size_t done, size_t total), void *user,
                        char *msg) {
    (void)g, (void)k, (void)chunk, (void)stream, (void)nll, (void)progress, (void)user;
    return none(msg);
}

vae_status vae_gpu_encode(vae_gpu *g, float *mu, float *logvar, char *msg) {
    (void)g, (void)mu, (void)logvar;
    return none(msg);
}

vae_status vae_gpu_decode(vae_gpu *g, const float *z, const uint8_t *labels, size_t n,
                          float *means, char *msg) {
    (void)g, (void)z, (void)labels, (void)n, (void)means;
    return none(msg);
}

int vae_gpu_step_nodes(const vae_gpu *g, int batch) {
    (void)g, (void)batch;
    return 0;
}

size_t vae_gpu_memory(const vae_gpu *g) {
    (void)g;
    return 0;
}
#else
typedef int vae_gpu_none_unused; /* ISO C wants something in a translation unit */
#endif

/* backend.h — the seam between the training loop and where it runs. train.c validates a run,
 * then hands it to the CPU loop or to a device backend through these functions; neither the
 * model nor the loss code knows which. */
#ifndef VAE_BACKEND_H
#define VAE_BACKEND_H

#include "backend/gpu.h"
#include "backend/ops_table.h"
#include "core/internal.h"

/* VAE_OK when the GPU backend runs this model (its kind of layers and inputs), else why not;
 * and when it can also train it with these options. */
vae_status vae_gpu_supports_model(const vae_model *model, vae_error *err);
vae_status vae_gpu_supports(const vae_model *model, const vae_train_options *opt, vae_error *err);

/* vae_train on the GPU, after train.c's checks: adam holds the optimizer state to continue
 * from (first_step steps taken), which the device's state is copied back into at every
 * checkpoint and at the end. */
vae_status vae_gpu_train(vae_model *model, const vae_dataset *train, const vae_dataset *test,
                         const vae_train_options *opt, vae_adam *adam, uint64_t first_step,
                         vae_error *err);

/* The device's description of a model (an MLP's dense layers and likelihood). */
vae_status vae_gpu_describe(const vae_model *model, vae_gpu_model *out, vae_error *err);

/* vae_eval's per-example arrays computed on the GPU: recon, kl (N), mu, logvar (N, L) and, with
 * o->importance_samples > 0, nll (N). */
vae_status vae_gpu_eval_terms(const vae_model *model, const vae_dataset *data,
                              const vae_eval_options *o, double *recon, double *kl, float *mu,
                              float *logvar, double *nll, vae_error *err);

/* vae_encode_all and vae_decode_all on the GPU (labels checked by the caller). */
vae_status vae_gpu_encode_all(const vae_model *model, const float *x, const uint8_t *mask,
                              const uint8_t *labels, size_t n, float *mu, float *logvar,
                              vae_error *err);
vae_status vae_gpu_decode_all(const vae_model *model, const float *z, const uint8_t *labels,
                              size_t n, float *means, vae_error *err);

/* Resolves VAE_DEVICE_AUTO: CUDA when a GPU is there and supported says VAE_OK, else the CPU;
 * and checks that an explicit CUDA has a GPU. */
vae_status vae_device_resolve(vae_device asked, vae_status supported, vae_device *out,
                              vae_error *err);

/* The epoch's permutation of n samples (Fisher–Yates from the seed's stream of that epoch):
 * the same order on every device. */
void vae_epoch_order(size_t *order, size_t n, uint64_t seed, int epoch);

#endif

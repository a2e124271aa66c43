/* backend.h — the seam between the training loop and where it runs. train.c validates a run,
 * then hands it to the CPU loop or to a device backend through these functions; neither the
 * model nor the loss code knows which. */
#ifndef VAE_BACKEND_H
#define VAE_BACKEND_H

#include "core/internal.h"

/* VAE_OK when the GPU backend can train this model with these options, else why not. */
vae_status vae_gpu_supports(const vae_model *model, const vae_train_options *opt, vae_error *err);

/* vae_train on the GPU, after train.c's checks: adam holds the optimizer state to continue
 * from (first_step steps taken), which the device's state is copied back into at every
 * checkpoint and at the end. */
vae_status vae_gpu_train(vae_model *model, const vae_dataset *train, const vae_dataset *test,
                         const vae_train_options *opt, vae_adam *adam, uint64_t first_step,
                         vae_error *err);

/* The epoch's permutation of n samples (Fisher–Yates from the seed's stream of that epoch):
 * the same order on every device. */
void vae_epoch_order(size_t *order, size_t n, uint64_t seed, int epoch);

#endif

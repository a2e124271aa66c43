/* onednn_ops.c — the oneDNN backend's table (ops_table.h): dense layers on oneDNN's sgemm, every
 * other op the CPU's (elementwise passes gain nothing from it). In a build without oneDNN the
 * table is absent and vae_backend_available says so. */
#include "backend/backend.h"
#include "loss/loss.h"

#ifdef VAE_ONEDNN
static const vae_ops onednn_ops = {
    .name = "onednn",
    .linear_forward = op_linear_forward_onednn,
    .linear_backward = op_linear_backward_onednn,
    .activation_forward = op_activation_forward,
    .activation_backward = op_activation_backward,
    .conv_cols_size = op_conv_cols_size,
    .conv2d_forward = op_conv2d_forward,
    .conv2d_backward = op_conv2d_backward,
    .convt2d_forward = op_convt2d_forward,
    .convt2d_backward = op_convt2d_backward,
    .reparam_forward = op_reparam_forward,
    .reparam_backward = op_reparam_backward,
    .reparam_draws = op_reparam_draws,
    .kl_forward = op_kl_forward,
    .kl_backward = op_kl_backward,
    .kl_dim_means = op_kl_dim_means,
    .recon = op_recon,
    .decode_mean = op_decode_mean,
    .adam_step = vae_adam_step,
};
const vae_ops *const vae_onednn_ops = &onednn_ops;
#else
const vae_ops *const vae_onednn_ops = NULL;
#endif

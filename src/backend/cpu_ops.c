/* cpu_ops.c — the CPU backend's table (ops_table.h): the functions of ops/ and loss/. */
#include "backend/ops_table.h"
#include "loss/loss.h"

const vae_ops vae_cpu_ops = {
    .name = "cpu",
    .linear_forward = op_linear_forward,
    .linear_backward = op_linear_backward,
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

/* cpu_ops.c — the CPU backend's table (ops_table.h): the functions of ops/ and loss/. */
#include "backend/ops_table.h"
#include "loss/loss.h"

const vae_ops vae_cpu_ops = {
    .name = "cpu",
    .linear_forward = op_linear_forward,
    .linear_backward = op_linear_backward,
    .conv2d_forward = op_conv2d_forward, .conv2d_backward = op_conv2d_backward,
    .convt2d_forward = op_convt2d_forward, .convt2d_backward = op_convt2d_backward,
    VAE_CPU_SHARED_OPS,
};

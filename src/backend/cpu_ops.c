/* cpu_ops.c — the CPU backend's table (ops_table.h): the functions of ops/ and loss/. */
#include "backend/ops_table.h"
#include "loss/loss.h"

const vae_ops vae_cpu_ops = {
    .name = "cpu",
    VAE_PRODUCT_OPS(),
    .weight_bytes = sizeof(float),
    .prepack_optional = 1,
    .prepack_weights = op_transpose_weights,
    .linear_forward_prepacked = op_linear_forward_transposed,
    VAE_CPU_SHARED_OPS,
};

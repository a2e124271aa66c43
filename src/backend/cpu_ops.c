/* cpu_ops.c — the CPU backend's table (ops_table.h): the functions of ops/ and loss/. */
#include "backend/ops_table.h"
#include "loss/loss.h"

const vae_ops vae_cpu_ops = {
    .name = "cpu",
    VAE_PRODUCT_OPS(),
    VAE_CPU_SHARED_OPS,
};

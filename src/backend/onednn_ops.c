/* onednn_ops.c — the oneDNN backend's tables (ops_table.h): dense layers on oneDNN's sgemm (or
 * its bf16 matmuls), convolutions on oneDNN's convolution primitives (their inputs in bf16 for
 * the second table), every other op the CPU's (elementwise passes gain nothing from it). In a build
 * without oneDNN the tables are absent and vae_backend_available says so. */
#include "backend/backend.h"
#include "loss/loss.h"

#ifdef VAE_ONEDNN
static const vae_ops onednn_ops = {
    .name = "onednn",
    VAE_PRODUCT_OPS(_onednn),
    .conv_block = op_conv_block_onednn,
    .weight_bytes = sizeof(float),
    .prepack_optional = 1,
    .prepack_weights = op_transpose_weights,
    .linear_forward_prepacked = op_linear_forward_transposed_onednn,
    VAE_CPU_SHARED_OPS,
};
const vae_ops *const vae_onednn_ops = &onednn_ops;

/* --precision bf16: the same, the dense layers' and the convolutions' products in bf16 */
static const vae_ops onednn_bf16_ops = {
    .name = "onednn-bf16",
    VAE_PRODUCT_OPS(_bf16),
    .conv_block = op_conv_block_bf16,
    .weight_bytes = 2,
    .prepack_weights = op_round_bf16,
    .linear_forward_prepacked = op_linear_forward_bf16_rounded,
    .linear_backward_prepacked = op_linear_backward_bf16_rounded,
    .adam_step_prepack = op_adam_step_bf16,
    VAE_CPU_SHARED_OPS,
};
const vae_ops *const vae_onednn_bf16_ops = &onednn_bf16_ops;
#else
const vae_ops *const vae_onednn_ops = NULL;
const vae_ops *const vae_onednn_bf16_ops = NULL;
#endif

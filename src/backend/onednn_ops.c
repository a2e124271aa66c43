/* onednn_ops.c — the oneDNN backend's tables (ops_table.h): dense layers on oneDNN's sgemm (or
 * its bf16 matmuls), convolutions on the CPU's passes around oneDNN's sgemm (or its bf16
 * matmuls), every other op the CPU's (elementwise passes gain nothing from it). In a build
 * without oneDNN the tables are absent and vae_backend_available says so. */
#include "backend/backend.h"
#include "loss/loss.h"

#ifdef VAE_ONEDNN
/* convolutions: the CPU's passes around oneDNN's sgemm */
#define ONEDNN_CONV_OPS                                                                            \
    .conv2d_forward = op_conv2d_forward_onednn, .conv2d_backward = op_conv2d_backward_onednn,      \
    .convt2d_forward = op_convt2d_forward_onednn, .convt2d_backward = op_convt2d_backward_onednn

static const vae_ops onednn_ops = {
    .name = "onednn",
    .linear_forward = op_linear_forward_onednn,
    .linear_backward = op_linear_backward_onednn,
    ONEDNN_CONV_OPS,
    VAE_CPU_SHARED_OPS,
};
const vae_ops *const vae_onednn_ops = &onednn_ops;

/* --precision bf16: the same, the dense layers' and the convolutions' products in bf16 */
static const vae_ops onednn_bf16_ops = {
    .name = "onednn-bf16",
    .linear_forward = op_linear_forward_bf16,
    .linear_backward = op_linear_backward_bf16,
    .conv2d_forward = op_conv2d_forward_bf16, .conv2d_backward = op_conv2d_backward_bf16,
    .convt2d_forward = op_convt2d_forward_bf16, .convt2d_backward = op_convt2d_backward_bf16,
    VAE_CPU_SHARED_OPS,
};
const vae_ops *const vae_onednn_bf16_ops = &onednn_bf16_ops;
#else
const vae_ops *const vae_onednn_ops = NULL;
const vae_ops *const vae_onednn_bf16_ops = NULL;
#endif

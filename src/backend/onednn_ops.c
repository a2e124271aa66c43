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
    VAE_CPU_SHARED_OPS,
};
const vae_ops *const vae_onednn_ops = &onednn_ops;

/* --precision bf16: the same, the dense layers' products in bf16 */
static const vae_ops onednn_bf16_ops = {
    .name = "onednn-bf16",
    .linear_forward = op_linear_forward_bf16,
    .linear_backward = op_linear_backward_bf16,
    VAE_CPU_SHARED_OPS,
};
const vae_ops *const vae_onednn_bf16_ops = &onednn_bf16_ops;
#else
const vae_ops *const vae_onednn_ops = NULL;
const vae_ops *const vae_onednn_bf16_ops = NULL;
#endif

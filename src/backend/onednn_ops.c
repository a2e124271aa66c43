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
#else
const vae_ops *const vae_onednn_ops = NULL;
#endif

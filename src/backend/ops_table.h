/* ops_table.h — the backend seam for backends that compute in host memory: every piece of
 * numerical work a model's passes and its optimizer ask for, as one table of functions. The
 * model (net.c), the evaluation and the training loop call these through the table their model
 * holds and never the functions behind them; a backend (the CPU's OpenBLAS one first; oneDNN
 * next) is one .c file that fills a table, and adding one touches no model, loss, training or
 * CLI code. The arguments are those of the CPU functions in ops/ops.h and loss/loss.h, whose
 * comments say what each computes. (A device backend that keeps the whole training step in its
 * own memory plugs in one level up instead: backend/gpu.h.) */
#ifndef VAE_OPS_TABLE_H
#define VAE_OPS_TABLE_H

#include "ops/ops.h"

typedef struct {
    const char *name;
    /* dense layers: y = act(x W^T + b) and its gradients */
    void (*linear_forward)(float *y, const float *x, const float *w, const float *b, int batch,
                           int in, int out, const vae_activation *act);
    void (*linear_backward)(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int batch, int in, int out, int accumulate_dx,
                            int accumulate_params);
    /* The dense layers on weights prepacked once for many calls in the form their products read
     * best (weight_bytes each, by prepack_weights from the (out, in) weights): bf16's table
     * rounds them to bf16, which each call would do again; the fp32 tables transpose them to
     * (in, out): x Wt runs faster than x W^T on the few rows of a batch thread (oneDNN's sgemm,
     * 8 rows: 2.4x, 32: 1.35x, 64: the same), since the library packs W^T on every call, but
     * the copy is a pass over the weights of its own (prepack_optional: only when asked,
     * vae_train_options.batch_threads 2). Batch threads prepack them once a pass and share that
     * copy. w: the fp32 weights (for a product the library refuses); linear_backward_prepacked
     * NULL: linear_backward on w. */
    size_t weight_bytes;
    int prepack_optional;
    void (*prepack_weights)(void *dst, const float *w, int out, int in);
    void (*linear_forward_prepacked)(float *y, const float *x, const float *w,
                                     const void *packed, const float *b, int batch, int in,
                                     int out, const vae_activation *act);
    void (*linear_backward_prepacked)(float *dx, float *dw, float *db, const float *dy,
                                      const float *x, const float *w, const void *packed,
                                      int batch, int in, int out, int accumulate_dx,
                                      int accumulate_params);
    /* the dense layers' parameters' gradients over a whole batch at once (batch threads) */
    void (*dense_param_grads)(const op_dense_grad *g, int n);
    void (*activation_forward)(float *y, size_t n, vae_activation act);
    void (*activation_backward)(float *dy, const float *y, size_t n, vae_activation act);
    /* convolutions (Conv2d) and transposed convolutions (ConvTranspose2d), NCHW; conv_block
     * (NULL: none) the channel block they also take activations in on this CPU (8 or 16;
     * conv_shape.in_blocked, out_blocked), which a model keeps between two convolutions to
     * spare the reorders */
    int (*conv_block)(void);
    size_t (*conv_cols_size)(const conv_shape *s, int batch, int transposed);
    void (*conv2d_forward)(float *y, const float *x, const float *w, const float *b, int batch,
                           const conv_shape *s, float *cols);
    void (*conv2d_backward)(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int batch, const conv_shape *s, float *cols);
    void (*convt2d_forward)(float *y, const float *x, const float *w, const float *b, int batch,
                            const conv_shape *s, float *cols);
    void (*convt2d_backward)(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, int batch, const conv_shape *s, float *cols);
    /* the latent: reparameterization, importance draws, the KL to the prior */
    void (*reparam_forward)(float *z, const float *mu, const float *logvar, const float *eps,
                            size_t n);
    void (*reparam_backward)(float *dmu, float *dlogvar, const float *dz, const float *logvar,
                             const float *eps, size_t n);
    void (*reparam_draws)(float *z, double *log_w, const float *mu, const float *logvar,
                          const float *eps, int rows, int latent);
    void (*kl_forward)(double *kl, const float *mu, const float *logvar, int batch, int latent);
    void (*kl_backward)(float *dmu, float *dlogvar, const float *mu, const float *logvar,
                        int batch, int latent, const float *dim_scale);
    void (*kl_dim_means)(double *mean, const float *mu, const float *logvar, int batch,
                         int latent);
    /* the likelihood: -log p(x|z) per row and/or its gradient; the decoded means */
    void (*recon)(const vae_config *c, double *recon, float *dout, const float *out,
                  const float *x, size_t x_stride, int batch, const float *dim_logvar,
                  float *d_dim_logvar, float scale, const float *row_scale,
                  const uint8_t *mask);
    void (*decode_mean)(const vae_config *c, float *mean, const float *out, int batch);
    /* the optimizer: one Adam step that also clears the gradients; adam_step_prepack (NULL:
     * none) the same that also writes every new parameter in prepack_weights's form at its own
     * index into packed (bf16's rounding: a weight's form that needs no other weight), so that
     * a workspace's own prepacked weights (vae_workspace_own_prepacked) need no pass of their
     * own after each step */
    void (*adam_step)(vae_adam *adam, float *params, float *grads);
    void (*adam_step_prepack)(vae_adam *adam, float *params, float *grads, void *packed);
} vae_ops;

/* The entries a host-memory backend brings, the ops with matrix products: the dense layers'
 * and the convolutions' functions of ops/ops.h named with its suffix (none for the CPU's,
 * _onednn, _bf16). For a backend's designated initializer. */
#define VAE_PRODUCT_OPS(suffix)                                                                    \
    .linear_forward = op_linear_forward##suffix, .linear_backward = op_linear_backward##suffix,   \
    .dense_param_grads = op_dense_param_grads##suffix,                                             \
    .conv2d_forward = op_conv2d_forward##suffix, .conv2d_backward = op_conv2d_backward##suffix,   \
    .convt2d_forward = op_convt2d_forward##suffix,                                                 \
    .convt2d_backward = op_convt2d_backward##suffix, .conv_cols_size = op_conv_cols_size##suffix

/* The entries of a table that are the CPU's own functions (ops/, loss/, optim/): every op
 * but the dense layers' and the convolutions', whose products each backend brings. For a
 * backend's designated initializer. */
#define VAE_CPU_SHARED_OPS                                                                         \
    .activation_forward = op_activation_forward,                                                   \
    .activation_backward = op_activation_backward,                                                 \
    .reparam_forward = op_reparam_forward, .reparam_backward = op_reparam_backward,                \
    .reparam_draws = op_reparam_draws, .kl_forward = op_kl_forward,                                \
    .kl_backward = op_kl_backward, .kl_dim_means = op_kl_dim_means, .recon = op_recon,             \
    .decode_mean = op_decode_mean, .adam_step = vae_adam_step

/* The CPU backend: OpenBLAS's products, this project's fused elementwise passes, OpenMP. */
extern const vae_ops vae_cpu_ops;
/* The oneDNN backend (dense layers and the convolutions' products on oneDNN's sgemm), or NULL in a
 * build without oneDNN. */
extern const vae_ops *const vae_onednn_ops;
/* The oneDNN backend with the dense and conv layers' products in bf16 (--precision bf16), or
 * NULL. */
extern const vae_ops *const vae_onednn_bf16_ops;

/* The table a model computes with (a new or loaded model's: the CPU's), and another one for it
 * (the choice of backend; workspaces made before keep their sizes, so set it first). */
const vae_ops *vae_model_ops(const vae_model *model);
void vae_model_set_ops(vae_model *model, const vae_ops *ops);
/* Backward on ws adds the parameters' gradients to grads (num_params floats) instead of the
 * model's buffer; NULL: the model's again. Batch threads give each thread its own. */
void vae_workspace_set_grads(vae_workspace *ws, float *grads);

#endif

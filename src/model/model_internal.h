/* model_internal.h — the model's layout, shared by model.c (parameters) and net.c (passes). */
#ifndef VAE_MODEL_INTERNAL_H
#define VAE_MODEL_INTERNAL_H

#include "backend/ops_table.h"
#include "core/internal.h"

/* Layers in forward order: encoder hidden layers, the mu head, the logvar head, decoder hidden
 * layers, the output layer. */
#define VAE_MAX_LAYERS (2 * VAE_MAX_HIDDEN + 2 * VAE_MAX_CONV + 4)
#define VAE_TENSOR_NAME_MAX 32

typedef enum { LAYER_DENSE = 0, LAYER_CONV, LAYER_CONVT } vae_layer_kind;

typedef struct {
    vae_layer_kind kind;
    int in, out;   /* values per sample in and out (C*H*W for convolutions) */
    size_t weight; /* offset of (out,in), or of the kernel, in the flat buffers */
    size_t bias;   /* offset of the bias: out values, or one per output channel */
    int weight_size, bias_size, fan_in;
    conv_shape conv; /* LAYER_CONV, LAYER_CONVT */
} vae_layer;

struct vae_model {
    vae_config cfg;
    const vae_ops *ops; /* the backend that computes its passes and its optimizer's steps */
    int n_layers;
    vae_layer layers[VAE_MAX_LAYERS];
    int mu_layer, logvar_layer, first_decoder_layer, output_layer;
    int has_dim_logvar;  /* a Gaussian with one learned variance per value of x */
    size_t dim_logvar;   /* offset of its raw log-variances (D), after the layers */
    float *data_mean, *data_std; /* (D) each: the standardization of the data, or NULL */
    vae_device device;           /* where encode_all, decode_all and impute run */
    vae_precision precision;
    size_t num_params;
    float *params; /* num_params */
    float *grads;  /* num_params */
    char tensor_names[2 * VAE_MAX_LAYERS][VAE_TENSOR_NAME_MAX];
};

/* The model's description of its files: every tensor a model or checkpoint file holds,
 * declared once, with its name, shape, role and where its values live. Save, load and their
 * missing/extra-tensor checks all derive from it. */
typedef enum {
    TENSOR_PARAM,  /* a parameter (the flat parameter buffer) */
    TENSOR_BUFFER, /* a value kept with the model that training does not change (the data's
                      standardization) */
    TENSOR_ADAM_M, /* a parameter's Adam moments: in checkpoints only */
    TENSOR_ADAM_V
} vae_tensor_role;

typedef struct {
    char name[VAE_TENSOR_NAME_MAX + 8]; /* "adam.m." and a parameter's name */
    vae_tensor_role role;
    float *data; /* its values in memory; NULL for moments without an optimizer */
    size_t count;
    int ndims, dims[4];
} vae_file_tensor;

/* The most entries vae_model_file_tensors can list for m. */
size_t vae_model_file_tensor_capacity(const vae_model *m);
/* Lists into out, in file order, the parameters, the buffers, then each parameter's two
 * moments (their data in adam, or NULL when adam is NULL); returns how many. */
size_t vae_model_file_tensors(vae_model *m, vae_adam *adam, vae_file_tensor *out);
/* Makes room for the standardization a file declares, before its values are read into it. */
vae_status vae_model_reserve_standardization(vae_model *m, vae_error *err);

/* A conv layer's shape for passes split among at most `workers` threads (what a workspace's
 * scratch was laid out for), its activations NCHW */
conv_shape vae_layer_conv(const vae_layer *layer, int workers);
/* The same for layer l of m computed by `ops`, its input and output activations in channel
 * blocks of `block` (0: none) where they lie between two convolutions and ops take blocks
 * (ops_table.h) */
conv_shape vae_layer_conv_at(const vae_model *m, const vae_ops *ops, int l, int workers,
                             int block);

/* Floats of the convolutions' scratch for passes of `batch` rows split among at most `workers`
 * threads, activations in blocks of `block` where they may be: the most any of m's conv
 * layers needs (0 for an MLP). */
size_t vae_model_cols_floats(const vae_model *model, int batch, int workers, int block);
/* The same for the ops table `ops` (the model's or one it may take). */
size_t vae_model_cols_floats_for(const vae_model *model, const vae_ops *ops, int batch,
                                 int workers, int block);

/* The channel block ws's passes keep activations between two convolutions in (its model's
 * table takes them and it has no views), 0: none */
int vae_workspace_conv_blocks(const vae_workspace *ws);

/* vae_workspace_create with the threads its convolutions may split a batch among (the public
 * one: vae_get_num_threads(); 1 for a workspace used inside a parallel region, whose passes
 * run on one thread). */
vae_status vae_workspace_create_for(vae_workspace **out, const vae_model *model, int max_batch,
                                    int conv_workers, vae_error *err);

/* vae_forward for a training pass, whose vae_backward follows on the same workspace: the
 * likelihood's gradient comes from the forward's own pass over the outputs (the same values the
 * backward would compute, one exp per value fewer). Any other pass on ws in between drops it. */
vae_status vae_forward_for_backward(const vae_model *m, vae_workspace *ws,
                                    const vae_batch *batch, vae_loss *loss, vae_error *err);

/* Batch threads: a view runs a slice of a batch on rows of a whole workspace's buffers (each
 * thread its own view, with scratch of its own for one thread's passes). Its training passes
 * (vae_forward_for_backward and vae_backward, or vae_iwae_step) compute the data's gradients
 * only, as means over the whole batch, and keep every layer's output gradient in the whole's
 * buffers; vae_view_param_grads then computes the parameters' gradients from them over the
 * whole batch on all threads (the dense layers' in one pass of the table's dense_param_grads,
 * each convolution's in its own pass), so that no thread needs a gradient buffer the model's
 * size. The whole's first view adds a buffer of every layer's outputs to it
 * (one value per output and row). max_rows: the most rows a view takes. */
vae_status vae_workspace_view(vae_workspace **out, vae_workspace *whole, int max_rows,
                              vae_error *err);
/* Places a view at rows [first, first + rows) of its whole (the view's first pass after a
 * placement starts anew) for a batch of mean_inputs inputs in all. */
vae_status vae_workspace_view_at(vae_workspace *view, int first, int rows, int mean_inputs,
                                 vae_error *err);
/* After every view's pass of its slice of batch (n inputs of k draws each: the views, in
 * order, hold its n*k rows from the first on): the parameters' gradients, added to the buffer
 * of whole (vae_workspace_set_grads). */
vae_status vae_view_param_grads(vae_model *m, vae_workspace *whole, vae_workspace *const *views,
                                int n_views, const vae_batch *batch, int k, vae_error *err);

/* For batch threads, on: m's dense weights prepacked in the form its table's products read
 * best (ops_table.h's prepack_weights: bf16's rounded; fp32's transposed, an optional form:
 * only with optional) into whole, whose views' passes read them instead of each thread's
 * products rounding them again on every call or packing them; nothing for a table without.
 * Off: no longer (the parameters are about to change). While on, whole runs no pass of its own (its
 * convolutions' scratch, idle while the views run, holds them where it is large enough).
 * Without the memory for them, the views read the weights as they are. On a view: nothing. */
void vae_workspace_share_weights(const vae_model *m, vae_workspace *whole, int on,
                                 int optional);

/* For a workspace's own passes (the products split), on: m's dense weights prepacked in memory
 * of ws's own, which its passes (and its views') then read until off; its steps must go
 * through vae_workspace_adam_step, which keeps that copy current (vae_ops.adam_step_prepack).
 * Only for a table whose Adam makes its form (bf16's rounding; not fp32's transposed copies).
 * Returns that memory (every parameter's place: num_params * weight_bytes, the dense weights'
 * filled), or NULL: off, no such table, a view, or no memory (the passes then read the
 * weights as they are). */
void *vae_workspace_own_prepacked(const vae_model *m, vae_workspace *ws, int on);
/* One Adam step on m's parameters and gradients through its table; where ws holds its own
 * prepacked weights, the step that writes them too. */
void vae_workspace_adam_step(vae_model *m, const vae_workspace *ws, vae_adam *adam);

/* Bytes a workspace holds per row of its batch (its buffers but the convolutions' scratch,
 * which is held to a few MiB whatever the batch). */
size_t vae_workspace_row_bytes(const vae_model *model);

#endif

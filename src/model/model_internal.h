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

#endif

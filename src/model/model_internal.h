/* model_internal.h — the model's layout, shared by model.c (parameters) and net.c (passes). */
#ifndef VAE_MODEL_INTERNAL_H
#define VAE_MODEL_INTERNAL_H

#include "core/internal.h"

/* Layers in forward order: encoder hidden layers, the mu head, the logvar head, decoder hidden
 * layers, the output layer. */
#define VAE_MAX_LAYERS (2 * VAE_MAX_HIDDEN + 3)
#define VAE_TENSOR_NAME_MAX 32

typedef struct {
    int in, out;
    size_t weight; /* offset of (out,in) in the flat buffers */
    size_t bias;   /* offset of (out) */
} vae_layer;

struct vae_model {
    vae_config cfg;
    int n_layers;
    vae_layer layers[VAE_MAX_LAYERS];
    int mu_layer, logvar_layer, first_decoder_layer, output_layer;
    int has_dim_logvar;  /* a Gaussian with one learned variance per value of x */
    size_t dim_logvar;   /* offset of its raw log-variances (D), after the layers */
    float *data_mean, *data_std; /* (D) each: the standardization of the data, or NULL */
    size_t num_params;
    float *params; /* num_params */
    float *grads;  /* num_params */
    char tensor_names[2 * VAE_MAX_LAYERS][VAE_TENSOR_NAME_MAX];
};

#endif

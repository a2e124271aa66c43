/* pictures.c — sample sheets and reconstruction sheets as PNG grids. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRID_COLS 10
#define GRID_SCALE 2

vae_status cli_write_samples(const char *path, const char *npy_path, const vae_model *model,
                             int rows, int cols, int n, uint64_t seed, int label, vae_error *err) {
    const vae_config *cfg = vae_model_config(model);
    if (path && (rows < 1 || cols < 1 || rows * cols != cfg->input_dim)) {
        snprintf(err->message, sizeof err->message,
                 "the model's %d outputs are not images of a known shape", cfg->input_dim);
        return VAE_ERR_INVALID_ARGUMENT;
    }
    if (cfg->n_classes && label >= cfg->n_classes) {
        snprintf(err->message, sizeof err->message, "--label %d: the model has classes 0..%d",
                 label, cfg->n_classes - 1);
        return VAE_ERR_INVALID_ARGUMENT;
    }
    float *z = malloc(sizeof(float) * (size_t)n * cfg->latent_dim);
    float *probs = malloc(sizeof(float) * (size_t)n * cfg->input_dim);
    uint8_t *labels = malloc((size_t)n);
    vae_status s = z && probs && labels ? VAE_OK : VAE_ERR_NO_MEMORY;
    if (s == VAE_OK) {
        vae_rng rng = vae_rng_make(seed, 0x9a11e7ULL);
        vae_rng_normal(&rng, z, (size_t)n * cfg->latent_dim);
        /* a conditional model: the asked class, or one row of the grid per class */
        for (int i = 0; i < n; i++)
            labels[i] = (uint8_t)(label >= 0 ? label : cfg->n_classes ? (i / GRID_COLS) % cfg->n_classes : 0);
        s = vae_decode_all(model, z, labels, (size_t)n, probs, err);
    }
    if (s == VAE_OK && path)
        s = vae_png_write_grid(path, probs, n, rows, cols, GRID_COLS, GRID_SCALE, err);
    if (s == VAE_OK && npy_path) /* in the data's own units (vae_decode_all) */
        s = vae_npy_write_f32(npy_path, probs, (size_t)n, (size_t)cfg->input_dim, err);
    if (s == VAE_ERR_NO_MEMORY && !err->message[0])
        snprintf(err->message, sizeof err->message, "out of memory for %d samples", n);
    free(z), free(probs), free(labels);
    return s;
}

vae_status cli_write_reconstructions(const char *path, const vae_model *model,
                                     const vae_dataset *data, int n, vae_error *err) {
    const vae_config *cfg = vae_model_config(model);
    const int dim = cfg->input_dim;
    if (data->rows < 1 || data->dim != dim) {
        snprintf(err->message, sizeof err->message,
                 "the data are not images of the model's %d values", dim);
        return VAE_ERR_INVALID_ARGUMENT;
    }
    if ((size_t)n > data->count) n = (int)data->count;
    float *z = malloc(sizeof(float) * (size_t)n * cfg->latent_dim);
    float *probs = malloc(sizeof(float) * (size_t)n * dim);
    float *sheet = malloc(sizeof(float) * 2 * (size_t)n * dim);
    vae_dataset first = *data; /* a view of the first n: their means, decoded */
    first.count = (size_t)n;
    vae_status s = z && probs && sheet ? vae_encode_data(model, &first, z, NULL, err)
                                       : VAE_ERR_NO_MEMORY;
    if (s == VAE_OK) s = vae_decode_all(model, z, data->labels, (size_t)n, probs, err);
    int placed = 0;
    for (int start = 0; start < n && s == VAE_OK; start += GRID_COLS) {
        int k = n - start < GRID_COLS ? n - start : GRID_COLS;
        memcpy(sheet + (size_t)placed * dim, data->x + (size_t)start * dim,
               sizeof(float) * (size_t)k * dim);
        memcpy(sheet + (size_t)(placed + k) * dim, probs + (size_t)start * dim,
               sizeof(float) * (size_t)k * dim);
        placed += 2 * k;
    }
    if (s == VAE_OK)
        s = vae_png_write_grid(path, sheet, placed, data->rows, data->cols,
                               n < GRID_COLS ? n : GRID_COLS, GRID_SCALE, err);
    if (s == VAE_ERR_NO_MEMORY && !err->message[0])
        snprintf(err->message, sizeof err->message, "out of memory for %d reconstructions", n);
    free(z), free(probs), free(sheet);
    return s;
}

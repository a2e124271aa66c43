/* encode_impute.c — load a model trained on data with missing values (`vae train --missing`),
 * map a CSV's rows into the latent space and fill in their empty cells, on libvae's public
 * API alone.
 *
 *   cc encode_impute.c $(pkg-config --cflags --libs vae) -o encode_impute
 *   ./encode_impute model.safetensors data.csv
 *
 * Prints each row's latent means, then the row with its missing values imputed (the
 * importance-weighted conditional mean over 100 draws). */
#include <vae.h>

#include <stdio.h>
#include <stdlib.h>

static void print_row(const char *what, size_t row, const float *v, int n) {
    printf("%s %zu:", what, row + 1);
    for (int j = 0; j < n; j++) printf(" %.4g", (double)v[j]);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.safetensors DATA.csv\n", argv[0]);
        return 64;
    }
    vae_error err = {{0}};
    vae_model *model = NULL;
    vae_dataset *data = NULL;
    float *mu = NULL, *filled = NULL;
    vae_csv_options csv;
    vae_csv_options_default(&csv);
    csv.allow_missing = 1; /* empty cells, "nan" and "NA" are missing values */
    vae_status s = vae_model_load(argv[1], &model, NULL, NULL, &err);
    if (s == VAE_OK) s = vae_csv_load(argv[2], &csv, &data, &err);
    if (s == VAE_OK) {
        const vae_config *cfg = vae_model_config(model);
        mu = malloc(sizeof(float) * data->count * (size_t)cfg->latent_dim);
        filled = malloc(sizeof(float) * data->count * (size_t)data->dim);
        s = mu && filled ? vae_encode_data(model, data, mu, NULL, &err) : VAE_ERR_NO_MEMORY;
        if (s == VAE_OK) s = vae_impute(model, data, 100, 0, 1, filled, &err);
        for (size_t i = 0; s == VAE_OK && i < data->count; i++) {
            print_row("latent", i, mu + i * (size_t)cfg->latent_dim, cfg->latent_dim);
            print_row("imputed", i, filled + i * (size_t)data->dim, data->dim);
        }
    }
    if (s != VAE_OK) fprintf(stderr, "encode_impute: %s: %s\n", vae_status_str(s), err.message);
    free(mu);
    free(filled);
    vae_dataset_free(data);
    vae_model_free(model);
    return s == VAE_OK ? 0 : 1;
}

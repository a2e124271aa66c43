/* train_sample.c — train a VAE on images, save it, and draw new images from it, on libvae's
 * public API alone.
 *
 *   cc train_sample.c $(pkg-config --cflags --libs vae) -o train_sample
 *   ./train_sample train-images-idx3-ubyte.gz model.safetensors samples.png [EPOCHS]
 *
 * The images are an IDX file (MNIST's format, gzipped or not) such as Fashion-MNIST's. */
#include <vae.h>

#include <stdio.h>
#include <stdlib.h>

/* Prints each epoch's losses, per image in nats. */
static void on_epoch(void *user, const vae_epoch_stats *s) {
    (void)user;
    printf("epoch %d/%d: train -ELBO %.3f (reconstruction %.3f + KL %.3f), %.0f images/s\n",
           s->epoch, s->epochs, s->train_loss, s->train_recon, s->train_kl,
           s->samples_per_second);
}

/* Decodes n draws from the prior N(0, I) into a PNG grid. */
static vae_status draw_samples(const vae_model *model, int rows, int cols, const char *path,
                               vae_error *err) {
    enum { N = 64 };
    const vae_config *cfg = vae_model_config(model);
    float *z = malloc(sizeof(float) * N * (size_t)cfg->latent_dim);
    float *images = malloc(sizeof(float) * N * (size_t)cfg->input_dim);
    vae_status s = VAE_ERR_NO_MEMORY;
    if (z && images) {
        vae_rng rng = vae_rng_make(1, 0); /* seed 1, stream 0 */
        vae_rng_normal(&rng, z, N * (size_t)cfg->latent_dim);
        s = vae_decode_all(model, z, NULL, N, images, err);
        if (s == VAE_OK) s = vae_png_write_grid(path, images, N, rows, cols, 8, 2, err);
    }
    free(z);
    free(images);
    return s;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s IMAGES.idx3 MODEL.safetensors SAMPLES.png [EPOCHS]\n", argv[0]);
        return 64;
    }
    vae_error err = {{0}};
    vae_dataset *train = NULL;
    vae_model *model = NULL;
    vae_config cfg;
    vae_status s = vae_idx_load(argv[1], NULL, &train, &err);
    if (s == VAE_OK) s = vae_config_preset(&cfg, "pytorch", train->dim, &err);
    if (s == VAE_OK) s = vae_model_create(&model, &cfg, 1, &err);
    if (s == VAE_OK) {
        vae_train_options opt;
        vae_train_options_default(&opt);
        opt.epochs = argc > 4 ? atoi(argv[4]) : 1;
        opt.on_epoch = on_epoch;
        s = vae_train(model, train, NULL, &opt, &err);
    }
    if (s == VAE_OK) s = vae_model_save(argv[2], model, NULL, NULL, &err);
    if (s == VAE_OK) s = draw_samples(model, train->rows, train->cols, argv[3], &err);
    if (s == VAE_OK) printf("wrote %s and %s\n", argv[2], argv[3]);
    else fprintf(stderr, "train_sample: %s: %s\n", vae_status_str(s), err.message);
    vae_model_free(model);
    vae_dataset_free(train);
    return s == VAE_OK ? 0 : 1;
}

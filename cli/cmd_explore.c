/* cmd_explore.c — looking at the latent space: `vae interpolate`, `vae traverse`,
 * `vae manifold`, each a PNG grid of decoded images. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCALE 2

typedef struct {
    const char *out, *data;
    int from, to, steps, grid, dims, label;
    float range;
} explore_args;

/* Options of the three commands; `allowed` names those a command takes (by the letters below).
 * Short forms only where a letter means the same in every command (-o, -g, -y): --from,
 * --to, --steps, --range and --dims are long only, as -f, -n, -r and -d mean other things
 * elsewhere (fraction, count, resume, data). */
static int parse(int argc, char **argv, const char *command, const char *usage,
                 const char *allowed, int operands_max, explore_args *a, const char **model,
                 int *code) {
    const struct { char code; cli_opt opt; } all[] = {
        {'o', CLI_STR("out", 'o', &a->out, NULL)},
        {'f', CLI_INT("from", 0, &a->from, 0, 1 << 30, NULL)},
        {'T', CLI_INT("to", 0, &a->to, 0, 1 << 30, NULL)},
        {'n', CLI_INT("steps", 0, &a->steps, 2, 100, NULL)},
        {'g', CLI_INT("grid", 'g', &a->grid, 2, 100, NULL)},
        {'r', CLI_FLOAT("range", 0, &a->range, 0.01, 100, NULL)},
        {'d', CLI_INT("dims", 0, &a->dims, 1, 256, NULL)},
        {'y', CLI_INT("label", 'y', &a->label, 0, 255, NULL)},
    };
    cli_opt opts[sizeof all / sizeof *all];
    int n = 0, first;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (strchr(allowed, all[i].code)) opts[n++] = all[i].opt;
    if (!cli_parse_options(argc, argv, command, opts, n, usage, &first, code) ||
        !cli_operands(argc, first, 1, operands_max, command,
                          operands_max == 2 ? "MODEL [DATA]" : "MODEL", code) ||
        !cli_picture_ok(a->out, code))
        return 0;
    *model = argv[first];
    if (argc - first == 2) a->data = argv[first + 1];
    return 1;
}

/* Decodes n latent points (with `label`, for a conditional model) into images and writes them as
 * a grid of `cols` columns. */
static vae_status decode_grid(const char *path, const vae_model *m, const vae_train_state *st,
                              const float *z, int n, int cols, int label, vae_error *err) {
    float *images = malloc(sizeof(float) * (size_t)n * vae_model_config(m)->input_dim);
    uint8_t *labels = malloc((size_t)n);
    if (!images || !labels) {
        free(images), free(labels);
        return VAE_ERR_NO_MEMORY;
    }
    memset(labels, label, (size_t)n);
    vae_status s = vae_decode_all(m, z, labels, (size_t)n,
                                  images, err);
    free(labels);
    if (s == VAE_OK) s = vae_png_write_grid(path, images, n, st->data_rows, st->data_cols, cols,
                                            SCALE, err);
    free(images);
    return s;
}

static int has_image_shape(const vae_model *m, const vae_train_state *st, const char *path) {
    if (st->data_rows > 0 && st->data_rows * st->data_cols == vae_model_config(m)->input_dim)
        return 1;
    fprintf(stderr, "vae: %s: the model's outputs are not images of a known shape\n", path);
    return 0;
}

static int finish(vae_status s, vae_error *err, const char *out) {
    if (s != VAE_OK) return cli_report(s, err);
    cli_say("vae: wrote %s\n", out);
    return EXIT_OK;
}

int cmd_interpolate(int argc, char **argv) {
    static const char usage[] =
        "usage: vae interpolate MODEL [DATA] --from I --to J [options]\n\n"
        "Decodes the path between the latent means of images I and J of DATA (IDX; default the\n"
        "Fashion-MNIST test set): the top row linear, the bottom row spherical (along the great\n"
        "circle, keeping the norm typical of the prior), each between the two originals.\n"
        "      --from I     first image (index), default 0\n"
        "      --to J       last image, default 1\n"
        "      --steps N    decoded points per row, default 10\n"
        "  -o, --out FILE   default interpolation.png\n"
        CLI_DEVICE_HELP;
    explore_args a = {.out = "interpolation.png", .data = DEFAULT_TEST_IMAGES, .to = 1, .steps = 10};
    const char *path;
    int code;
    if (!parse(argc, argv, "interpolate", usage, "ofTn", 2, &a, &path, &code)) return code;
    vae_model *m = NULL;
    vae_dataset *data = NULL;
    vae_train_state st;
    if ((code = cli_load_model(path, &m, &st)) != EXIT_OK) return code;
    if (!has_image_shape(m, &st, path)) code = EXIT_USAGE;
    else code = cli_load_data(a.data, NULL, m, &data);
    if (code == EXIT_OK && ((size_t)a.from >= data->count || (size_t)a.to >= data->count)) {
        fprintf(stderr, "vae: --from/--to: %s has %zu images (0..%zu)\n", a.data, data->count,
                data->count - 1);
        code = EXIT_USAGE;
    }
    if (code != EXIT_OK) {
        vae_dataset_free(data), vae_model_free(m);
        return code;
    }
    vae_error err = {{0}};
    vae_status s = cli_write_interpolation(a.out, m, &st, data, a.from, a.to, a.steps, &err);
    vae_dataset_free(data), vae_model_free(m);
    return finish(s, &err, a.out);
}

vae_status cli_write_interpolation(const char *path, const vae_model *m, const vae_train_state *st,
                                   const vae_dataset *data, int from, int to, int steps,
                                   vae_error *err) {
    const int latent = vae_model_config(m)->latent_dim, dim = data->dim, cols = steps + 2;
    float *ends = malloc(sizeof(float) * 2 * latent), *z = malloc(sizeof(float) * 2 * steps * latent);
    float *images = malloc(sizeof(float) * 2 * cols * dim);
    float *decoded = malloc(sizeof(float) * 2 * steps * dim);
    vae_status s = ends && z && images && decoded ? VAE_OK : VAE_ERR_NO_MEMORY;
    if (s == VAE_OK) s = vae_encode_all(m, data->x + (size_t)from * dim, data->labels ? data->labels + from : NULL, 1, ends, NULL, err);
    if (s == VAE_OK) s = vae_encode_all(m, data->x + (size_t)to * dim, data->labels ? data->labels + to : NULL, 1, ends + latent, NULL, err);
    for (int row = 0; s == VAE_OK && row < 2; row++)
        for (int i = 0; i < steps; i++) {
            double t = (double)i / (steps - 1);
            float *out = z + ((size_t)row * steps + i) * latent;
            if (row == 0) vae_lerp(ends, ends + latent, t, latent, out);
            else vae_slerp(ends, ends + latent, t, latent, out);
        }
    uint8_t *labels = malloc(2 * (size_t)steps); /* a conditional model keeps `from`'s label */
    if (labels) memset(labels, data->labels ? data->labels[from] : 0, 2 * (size_t)steps);
    if (s == VAE_OK && !labels) s = VAE_ERR_NO_MEMORY;
    if (s == VAE_OK)
        s = vae_decode_all(m, z, labels, 2 * (size_t)steps,
                           decoded, err);
    free(labels);
    if (s == VAE_OK) {
        for (int row = 0; row < 2; row++) {
            float *r = images + (size_t)row * cols * dim;
            memcpy(r, data->x + (size_t)from * dim, sizeof(float) * dim);
            memcpy(r + (size_t)(cols - 1) * dim, data->x + (size_t)to * dim, sizeof(float) * dim);
            memcpy(r + dim, decoded + (size_t)row * steps * dim, sizeof(float) * steps * dim);
        }
        s = vae_png_write_grid(path, images, 2 * cols, st->data_rows, st->data_cols, cols, SCALE, err);
    }
    free(ends), free(z), free(images), free(decoded);
    return s;
}

int cmd_traverse(int argc, char **argv) {
    static const char usage[] =
        "usage: vae traverse MODEL [DATA] [options]\n\n"
        "One row per latent dimension: that coordinate swept from -R to +R (the prior's\n"
        "standard deviations), the others held at the latent mean of image I of DATA, or at 0\n"
        "(the prior's mean) without --from.\n"
        "      --from I     hold the other coordinates at image I's latent mean\n"
        "      --steps N    points per row, default 9\n"
        "      --range R    default 3\n"
        "      --dims K     only the first K dimensions, default all (at most 64)\n"
        "      --label L    a conditional model's class (default 0; --from: the image's)\n"
        "  -o, --out FILE   default traverse.png\n"
        CLI_DEVICE_HELP;
    explore_args a = {.out = "traverse.png", .data = NULL, .from = -1, .steps = 9, .range = 3};
    const char *path;
    int code;
    if (!parse(argc, argv, "traverse", usage, "ofnrdy", 2, &a, &path, &code)) return code;
    if (a.from >= 0 && !a.data) a.data = DEFAULT_TEST_IMAGES;
    vae_model *m = NULL;
    vae_dataset *data = NULL;
    vae_train_state st;
    if ((code = cli_load_model(path, &m, &st)) != EXIT_OK) return code;
    if (!has_image_shape(m, &st, path)) code = EXIT_USAGE;
    else if (a.from >= 0) code = cli_load_data(a.data, NULL, m, &data);
    if (code == EXIT_OK && data && (size_t)a.from >= data->count) {
        fprintf(stderr, "vae: --from: %s has %zu images\n", a.data, data->count);
        code = EXIT_USAGE;
    }
    if (code != EXIT_OK) {
        vae_dataset_free(data), vae_model_free(m);
        return code;
    }
    vae_error err = {{0}};
    int label = data && data->labels ? data->labels[a.from] : a.label;
    vae_status s = cli_write_traverse(a.out, m, &st, data ? data->x + (size_t)a.from * data->dim : NULL,
                                      label, a.dims, a.steps, a.range, &err);
    vae_dataset_free(data), vae_model_free(m);
    return finish(s, &err, a.out);
}

vae_status cli_write_traverse(const char *path, const vae_model *m, const vae_train_state *st,
                              const float *x, int label, int dims, int steps, double range,
                              vae_error *err) {
    const uint8_t label8 = (uint8_t)label;
    const int latent = vae_model_config(m)->latent_dim;
    if (!dims || dims > latent) dims = latent;
    if (dims > 64) dims = 64;
    float *base = calloc((size_t)latent, sizeof(float));
    float *z = malloc(sizeof(float) * (size_t)dims * steps * latent);
    vae_status s = base && z ? VAE_OK : VAE_ERR_NO_MEMORY;
    if (s == VAE_OK && x)
        s = vae_encode_all(m, x, &label8, 1, base, NULL, err);
    for (int d = 0; s == VAE_OK && d < dims; d++)
        for (int i = 0; i < steps; i++) {
            float *p = z + ((size_t)d * steps + i) * latent;
            memcpy(p, base, sizeof(float) * latent);
            p[d] = (float)(-range + 2 * range * i / (steps - 1));
        }
    if (s == VAE_OK) s = decode_grid(path, m, st, z, dims * steps, steps, label, err);
    free(base), free(z);
    return s;
}

int cmd_manifold(int argc, char **argv) {
    static const char usage[] =
        "usage: vae manifold MODEL [options]\n\n"
        "For a 2-D latent: decodes the grid of points whose coordinates are the prior's\n"
        "quantiles at (i + 0.5) / N, as in Kingma & Welling's figure (z1 left to right, z2\n"
        "bottom to top).\n"
        "  -g, --grid N     points per side, default 20\n"
        "      --label L    a conditional model's class, default 0\n"
        "  -o, --out FILE   default manifold.png\n"
        CLI_DEVICE_HELP;
    explore_args a = {.out = "manifold.png", .grid = 20};
    const char *path;
    int code;
    if (!parse(argc, argv, "manifold", usage, "ogy", 1, &a, &path, &code)) return code;
    vae_model *m = NULL;
    vae_train_state st;
    if ((code = cli_load_model(path, &m, &st)) != EXIT_OK) return code;
    if (vae_model_config(m)->latent_dim != 2) {
        fprintf(stderr, "vae: %s has a %d-D latent; the manifold is drawn for 2-D latents "
                "(try vae traverse)\n", path, vae_model_config(m)->latent_dim);
        vae_model_free(m);
        return EXIT_USAGE;
    }
    if (!has_image_shape(m, &st, path)) {
        vae_model_free(m);
        return EXIT_USAGE;
    }
    vae_error err = {{0}};
    vae_status s = cli_write_manifold(a.out, m, &st, a.grid, a.label, &err);
    vae_model_free(m);
    return finish(s, &err, a.out);
}

vae_status cli_write_manifold(const char *path, const vae_model *m, const vae_train_state *st,
                              int n, int label, vae_error *err) {
    float *z = malloc(sizeof(float) * 2 * n * n);
    if (!z) return VAE_ERR_NO_MEMORY;
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++) {
            z[2 * (r * n + c)] = (float)vae_normal_quantile((c + 0.5) / n);
            z[2 * (r * n + c) + 1] = (float)vae_normal_quantile(1.0 - (r + 0.5) / n);
        }
    vae_status s = decode_grid(path, m, st, z, n * n, n, label, err);
    free(z);
    return s;
}

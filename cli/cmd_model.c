/* cmd_model.c — commands on a saved model: `vae info`, `vae sample`, `vae reconstruct`. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void print_sizes(const int *v, int n) {
    for (int i = 0; i < n; i++) printf("%d-", v[i]);
}

int cmd_info(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        FILE *out = argc == 2 ? stdout : stderr;
        fprintf(out, "usage: vae info MODEL\n\nPrints a model file's architecture, parameter "
                     "count and training state.\n");
        return argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? EXIT_OK
                                                                                      : EXIT_USAGE;
    }
    vae_model *model;
    vae_train_state st;
    int code = cli_load_model(argv[1], &model, &st);
    if (code != EXIT_OK) return code;
    const vae_config *c = vae_model_config(model);
    printf("file:          %s\n", argv[1]);
    printf("architecture:  %d-", c->input_dim);
    if (c->n_conv) {
        printf("[%dx%dx%d image, Conv2d", c->image_channels, c->image_rows, c->image_cols);
        for (int i = 0; i < c->n_conv; i++)
            printf("%s%dx%ds%dp%d", i ? "," : " ", c->conv[i].channels, c->conv[i].kernel,
                   c->conv[i].stride, c->conv[i].padding);
        printf("]-");
    }
    print_sizes(c->encoder, c->n_encoder);
    printf("(%d)-", c->latent_dim);
    print_sizes(c->decoder, c->n_decoder);
    if (c->n_conv) printf("[mirrored ConvTranspose2d]-");
    printf("%d, %s, two linear heads (mu, log sigma^2)", c->input_dim,
           vae_activation_name(c->activation));
    if (c->n_classes) printf("; conditional on %d classes", c->n_classes);
    printf("\n");
    printf("preset:        %s\n", st.preset[0] ? st.preset : "(none)");
    char note[160];
    printf("likelihood:    %s\n", cli_likelihood_note(c, note, sizeof note));
    printf("parameters:    %zu\n", vae_model_num_params(model));
    if (st.data_rows) printf("data shape:    %dx%d\n", st.data_rows, st.data_cols);
    if (st.epochs) {
        if (st.position.epoch > st.epochs)
            printf("training:      finished %d epochs", st.epochs);
        else
            printf("training:      in epoch %d of %d, %llu step%s of it done", st.position.epoch,
                   st.epochs, (unsigned long long)st.position.step_in_epoch,
                   st.position.step_in_epoch == 1 ? "" : "s");
        printf("; batch %d, seed %llu\n", st.batch_size, (unsigned long long)st.seed);
    }
    if (st.epochs && st.iwae_k > 1)
        printf("objective:     importance-weighted bound, %d draws per input\n", st.iwae_k);
    if (st.epochs && (st.beta != 1.0f || st.free_bits != 0.0f || st.kl_warmup))
        printf("objective:     recon + %g x KL, KL warm-up %llu steps, free bits %g nats/unit\n",
               st.beta, (unsigned long long)st.kl_warmup, st.free_bits);
    if (st.has_optimizer)
        printf("optimizer:     adam, %llu steps (moments saved: resumable)\n",
               (unsigned long long)st.optimizer_steps);
    vae_model_free(model);
    return EXIT_OK;
}

typedef struct {
    const char *out, *data, *npy;
    int count, label;
    uint64_t seed;
} picture_args;

/* Options shared by sample and reconstruct, and 1..operands_max operands from argv[*first];
 * returns 0 and sets *code to exit. */
static int parse_picture_args(int argc, char **argv, const char *command, const char *usage,
                              int operands_max, picture_args *a, int *first, int *code) {
    const cli_opt opts[] = {
        CLI_STR("out", 'o', &a->out, NULL),
        CLI_INT("count", 'n', &a->count, 1, 10000, NULL),
        CLI_U64("seed", 's', &a->seed, NULL),
        CLI_STR("npy", 0, &a->npy, NULL),
        CLI_INT("label", 'y', &a->label, 0, 255, NULL),
    };
    return cli_parse_options(argc, argv, command, opts, (int)(sizeof opts / sizeof *opts), usage,
                             first, code) &&
           cli_operands(argc, *first, 1, operands_max, command,
                        operands_max == 2 ? "MODEL [DATA]" : "MODEL", code) &&
           cli_picture_ok(a->out, code) && cli_output_ok(a->npy);
}

int cmd_sample(int argc, char **argv) {
    static const char usage[] =
        "usage: vae sample MODEL [options]\n\n"
        "Decodes images from z ~ N(0, I) into a PNG grid and/or their Bernoulli means as a\n"
        "(N, D) float32 .npy array.\n"
        "  -n, --count N   images, default 100\n"
        "  -o, --out FILE  default samples.png (none with --npy alone)\n"
        "      --npy FILE  also (or only) the raw probabilities\n"
        "  -y, --label L   a conditional model: draw class L (default: one row per class)\n"
        "  -s, --seed N    default 1\n"
        CLI_DEVICE_HELP;
    picture_args a = {.out = NULL, .count = 100, .seed = 1, .label = -1};
    int code, first;
    if (!parse_picture_args(argc, argv, "sample", usage, 1, &a, &first, &code)) return code;
    if (!a.out && !a.npy) a.out = "samples.png";
    vae_model *model;
    vae_train_state st;
    if ((code = cli_load_model(argv[first], &model, &st)) != EXIT_OK) return code;
    if (a.label >= 0 && !vae_model_config(model)->n_classes) {
        fprintf(stderr, "vae: sample: --label %d: %s is not a conditional model (it has no "
                "classes to draw from)\n", a.label, argv[first]);
        vae_model_free(model);
        return EXIT_USAGE;
    }
    vae_error err = {{0}};
    vae_status s = cli_write_samples(a.out, a.npy, model, st.data_rows, st.data_cols, a.count,
                                     a.seed, a.label, &err);
    vae_model_free(model);
    if (s != VAE_OK) return cli_report(s, &err);
    cli_say("vae: wrote %s%s%s\n", a.out ? a.out : "", a.out && a.npy ? ", " : "",
            a.npy ? a.npy : "");
    return EXIT_OK;
}

int cmd_reconstruct(int argc, char **argv) {
    static const char usage[] =
        "usage: vae reconstruct MODEL [DATA] [options]\n\n"
        "Encodes images (IDX, .npy or CSV rows of the model's image size; default the\n"
        "Fashion-MNIST test set) and decodes them back (z = mu), rows of originals each\n"
        "followed by their reconstructions, as a PNG grid.\n"
        "  -n, --count N   images, default 20\n"
        "  -o, --out FILE  default reconstructions.png\n"
        CLI_DEVICE_HELP;
    picture_args a = {.out = "reconstructions.png", .count = 20, .seed = 1, .label = -1};
    int code, first;
    if (!parse_picture_args(argc, argv, "reconstruct", usage, 2, &a, &first, &code)) return code;
    if (a.npy || a.label >= 0) { /* a conditional model's labels come with its data here */
        fprintf(stderr, "vae: %s is an option of vae sample\n", a.npy ? "--npy" : "--label");
        return EXIT_USAGE;
    }
    const char *data_path = first == argc - 2 ? argv[first + 1] : DEFAULT_TEST_IMAGES;
    vae_model *model;
    vae_train_state st;
    if ((code = cli_load_model(argv[first], &model, &st)) != EXIT_OK) return code;
    vae_error err = {{0}};
    vae_dataset *data = NULL;
    if ((code = cli_load_data(data_path, NULL, model, &data)) != EXIT_OK) {
        vae_model_free(model);
        return code;
    }
    if (data->rows == 0 && st.data_rows * st.data_cols == data->dim) /* rows of a CSV */
        data->rows = st.data_rows, data->cols = st.data_cols;
    vae_status s = cli_write_reconstructions(a.out, model, data, a.count, &err);
    vae_dataset_free(data);
    vae_model_free(model);
    if (s != VAE_OK) return cli_report(s, &err);
    cli_say("vae: wrote %s\n", a.out);
    return EXIT_OK;
}

/* main.c — `vae <command> [options]`: dispatch, --help and --version. */
#include "blas_kernels.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: vae <command> [options]\n"
            "\n"
            "A variational autoencoder toolkit.\n"
            "\n"
            "commands:\n"
            "  train        train a VAE (Fashion-MNIST by default), save it, write pictures\n"
            "  info         architecture, parameter count and training state of a model file\n"
            "  sample       decode images from the prior into a PNG grid\n"
            "  reconstruct  encode and decode images into a PNG grid\n"
            "  eval         -ELBO, importance-weighted -log p(x), bits/dim, active units\n"
            "  encode       latent means and log-variances (or draws) as CSV or .npy\n"
            "  interpolate  decoded paths between two images, linear and spherical\n"
            "  traverse     each latent dimension swept over +-3 sigma\n"
            "  manifold     the decoded grid over a 2-D latent's prior quantiles\n"
            "  plot-latent  the data's latent means (or their 2-D PCA) colored by label\n"
            "  report       a self-contained HTML page of a training run\n"
            "  impute       fill in missing values (a model trained with --missing)\n"
            "  mask         remove values at random, to measure imputation\n"
            "  score        anomaly scores per sample (and ROC AUC given the anomalies' label)\n"
            "  explore      an offline HTML page: the decoder live in the browser over a latent map\n"
            "\n"
            "  vae <command> --help   options of a command\n"
            "  vae --version, -V      version, the BLAS and its kernels\n"
            "\n"
            "exit codes: 0 ok, 3 training diverged (NaN/Inf), 64 usage, 65 bad data,\n"
            "66 missing input, 70 internal error, 73 cannot create output, 74 I/O error,\n"
            "130 interrupted\n");
}

static int run(int argc, char **argv);

int main(int argc, char **argv) {
    choose_blas_kernels(argv);
    cli_parallel_init(&argc, &argv);
    return cli_parallel_finish(run(argc, argv));
}

static int run(int argc, char **argv) {
    if (!cli_take_compute_options(&argc, argv)) return EXIT_USAGE;
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 || strcmp(cmd, "version") == 0) {
        const char *chosen = getenv("VAE_BLAS_CHOSEN");
        printf("vae %s\nBLAS: %s\nkernels: %s (%s)\n", VAE_VERSION_STRING, vae_blas_info(),
               vae_blas_core(),
               chosen && strcmp(chosen, "kept") != 0 ? "chosen by vae for this CPU"
               : getenv("OPENBLAS_CORETYPE")          ? "named by OPENBLAS_CORETYPE"
                                                       : "detected by OpenBLAS");
        printf("backend: %s (%s)\n", vae_backend_name(cli_compute_options()->backend),
               vae_backend_available(VAE_BACKEND_ONEDNN) ? "onednn and openblas in this build"
                                                        : "openblas only in this build");
        if (cli_parallel_name()) printf("parallel: %s, %d ranks\n", cli_parallel_name(),
                                        cli_parallel_size());
        return EXIT_OK;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "sample") == 0) return cmd_sample(argc - 1, argv + 1);
    if (strcmp(cmd, "reconstruct") == 0) return cmd_reconstruct(argc - 1, argv + 1);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 1, argv + 1);
    if (strcmp(cmd, "encode") == 0) return cmd_encode(argc - 1, argv + 1);
    if (strcmp(cmd, "interpolate") == 0) return cmd_interpolate(argc - 1, argv + 1);
    if (strcmp(cmd, "traverse") == 0) return cmd_traverse(argc - 1, argv + 1);
    if (strcmp(cmd, "manifold") == 0) return cmd_manifold(argc - 1, argv + 1);
    if (strcmp(cmd, "plot-latent") == 0) return cmd_plot_latent(argc - 1, argv + 1);
    if (strcmp(cmd, "report") == 0) return cmd_report(argc - 1, argv + 1);
    if (strcmp(cmd, "impute") == 0) return cmd_impute(argc - 1, argv + 1);
    if (strcmp(cmd, "mask") == 0) return cmd_mask(argc - 1, argv + 1);
    if (strcmp(cmd, "score") == 0) return cmd_score(argc - 1, argv + 1);
    if (strcmp(cmd, "explore") == 0) return cmd_explorer(argc - 1, argv + 1);
    fprintf(stderr, "vae: unknown command \"%s\" (try vae --help)\n", cmd);
    return EXIT_USAGE;
}

/* main.c — `vae <command> [options]`: dispatch, --help and --version. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

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
            "\n"
            "  vae <command> --help   options of a command\n"
            "  vae --version          version and the BLAS in use\n"
            "\n"
            "exit codes: 0 ok, 3 training diverged (NaN/Inf), 64 usage, 65 bad data,\n"
            "66 missing input, 70 internal error, 73 cannot create output, 74 I/O error,\n"
            "130 interrupted\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("vae %s\nBLAS: %s\n", VAE_VERSION_STRING, vae_blas_info());
        return EXIT_OK;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    if (strcmp(cmd, "sample") == 0) return cmd_sample(argc - 1, argv + 1);
    if (strcmp(cmd, "reconstruct") == 0) return cmd_reconstruct(argc - 1, argv + 1);
    fprintf(stderr, "vae: unknown command \"%s\" (try vae --help)\n", cmd);
    return EXIT_USAGE;
}

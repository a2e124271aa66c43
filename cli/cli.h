/* cli.h — shared pieces of the `vae` program's subcommands. Uses only the public header. */
#ifndef VAE_CLI_H
#define VAE_CLI_H

#include "vae.h"

/* Exit codes: <sysexits.h> values, plus one of our own for a diverged training run. */
enum {
    EXIT_OK = 0,
    EXIT_DIVERGED = 3,   /* NaN or Inf in the loss or gradients */
    EXIT_USAGE = 64,     /* EX_USAGE */
    EXIT_DATAERR = 65,   /* EX_DATAERR: input data is malformed */
    EXIT_NOINPUT = 66,   /* EX_NOINPUT: an input file is missing or unreadable */
    EXIT_SOFTWARE = 70,  /* EX_SOFTWARE: internal error */
    EXIT_CANTCREAT = 73, /* EX_CANTCREAT: an output file cannot be created */
    EXIT_IOERR = 74,     /* EX_IOERR */
    EXIT_INTERRUPTED = 130
};

/* The exit code for a library status. */
int cli_exit_code(vae_status status);
/* Prints "vae: <message>" (or the status name when the message is empty) to stderr and
 * returns the exit code for status. */
int cli_report(vae_status status, const vae_error *err);

/* Checked number parsing for option values: the whole string, within [min, max]. On failure
 * prints "vae: --name: ..." and returns 0. */
int cli_parse_int(const char *name, const char *text, long min, long max, int *out);
int cli_parse_u64(const char *name, const char *text, uint64_t *out);
int cli_parse_float(const char *name, const char *text, double min, double max, float *out);

/* A grid PNG of n images decoded from z ~ N(0, I) drawn from `seed`, 10 to a row. */
vae_status cli_write_samples(const char *path, const vae_model *model, int rows, int cols, int n,
                             uint64_t seed, vae_error *err);
/* A grid PNG of rows of up to 10 of the first n images of data, each row followed by their
 * reconstructions through z = mu. */
vae_status cli_write_reconstructions(const char *path, const vae_model *model,
                                     const vae_dataset *data, int n, vae_error *err);

int cmd_train(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);

#endif

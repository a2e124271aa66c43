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

/* In a function returning a vae_status: on cond, the message into err and return status. */
#define CLI_FAIL_IF(cond, err, status, ...)                                                        \
    do {                                                                                           \
        if (cond) {                                                                                \
            snprintf((err)->message, sizeof (err)->message, __VA_ARGS__);                          \
            return (status);                                                                       \
        }                                                                                          \
    } while (0)
/* In a function returning a vae_status: a failed call's status returned as it is. */
#define CLI_TRY(expr)                                                                              \
    do {                                                                                           \
        vae_status cli_try_ = (expr);                                                              \
        if (cli_try_ != VAE_OK) return cli_try_;                                                   \
    } while (0)

/* The exit code for a library status. */
int cli_exit_code(vae_status status);
/* Prints "vae: <message>" (or the status name when the message is empty) to stderr and
 * returns the exit code for status. */
int cli_report(vae_status status, const vae_error *err);

/* A command's options as one table: each entry's long name, its short letter (0: none), the
 * kind of value and where it goes (const char **, int * for a flag or an integer, uint64_t *,
 * float *, long * for a label column), the range of a number, and a flag raised when the
 * option is given (NULL: not wanted). */
typedef enum {
    CLI_OPT_STRING, CLI_OPT_FLAG, CLI_OPT_INT, CLI_OPT_U64, CLI_OPT_FLOAT, CLI_OPT_LABEL_COLUMN
} cli_opt_kind;
typedef struct {
    const char *name;
    int letter;
    cli_opt_kind kind;
    void *target;
    double min, max;
    int *given;
} cli_opt;
#define CLI_OPTS_MAX 48
/* Table entries; g: an int raised when the option is given, or NULL. */
#define CLI_STR(name, letter, target, g) {name, letter, CLI_OPT_STRING, target, 0, 0, g}
#define CLI_FLAG(name, letter, target) {name, letter, CLI_OPT_FLAG, target, 0, 0, NULL}
#define CLI_INT(name, letter, target, lo, hi, g) {name, letter, CLI_OPT_INT, target, lo, hi, g}
#define CLI_U64(name, letter, target, g) {name, letter, CLI_OPT_U64, target, 0, 0, g}
#define CLI_FLOAT(name, letter, target, lo, hi, g)                                                 \
    {name, letter, CLI_OPT_FLOAT, target, lo, hi, g}
#define CLI_LABEL_COLUMN(target) {"label-column", 0, CLI_OPT_LABEL_COLUMN, target, 0, 0, NULL}
/* Parses argv's options by the table (getopt_long underneath; -h/--help print usage to
 * stdout). Returns 1 to go on, the operands starting at argv[*first]; 0 to exit with *code
 * (EXIT_OK after --help, EXIT_USAGE after one line saying why and a hint). */
int cli_parse_options(int argc, char **argv, const char *command, const cli_opt *table, int n,
                      const char *usage, int *first, int *code);
/* Whether argv[first..argc) holds min..max operands (what names them, as in the usage: "MODEL
 * [DATA]"); 0 after saying what is wrong. */
int cli_operands(int argc, int first, int min, int max, const char *command, const char *what,
                 int *code);
/* Whether the output a command needs (-o FILE) was given; 0 after saying so. */
int cli_needs_out(const char *out, const char *command, int *code);

/* Checked number parsing for option values: the whole string, within [min, max]. On failure
 * prints "vae: --name: ..." and returns 0. */
int cli_parse_int(const char *name, const char *text, long min, long max, int *out);
int cli_parse_u64(const char *name, const char *text, uint64_t *out);
int cli_parse_float(const char *name, const char *text, double min, double max, float *out);
/* Where every command computes: --device (cpu, cuda, auto; default auto) and --precision
 * (fp32, tf32), which main takes out of the arguments (as "--device D" or "--device=D",
 * anywhere before a "--") before the command parses the rest. Returns 0 after printing why
 * when a value is bad. */
typedef struct {
    vae_device device;
    vae_precision precision; /* a GPU's: fp32 or tf32 */
    int cpu_bf16;            /* --precision bf16: the CPU's products in bf16 */
    vae_backend backend; /* --backend: the CPU's matrix products (default openblas) */
    int threads; /* -t/--threads N; 0: one per core other processes leave free */
    int quiet;   /* -q/--quiet: errors only */
} cli_compute;
int cli_take_compute_options(int *argc, char **argv);
const cli_compute *cli_compute_options(void);
/* Starts the threads -t/--threads asks for (saying so when the BLAS runs fewer). */
void cli_apply_threads(void);
/* Whether an output file can be written at path (not a folder, its folder there and
 * writable), checked before long work; 0 after printing why. NULL is fine. */
int cli_output_ok(const char *path);
/* cli_output_ok for a picture, which must be named .png (what is written); sets *code. */
int cli_picture_ok(const char *path, int *code);
/* A line on stderr about what a command did ("vae: wrote x.png"), unless -q. */
void cli_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The lines of --help that describe them, for a command that computes on a device. */
#define CLI_DEVICE_HELP                                                                            \
    "      --device D        cpu, cuda (one NVIDIA GPU) or auto (default: cuda when this\n"      \
    "                        build has it, a GPU is there and it runs what is asked)\n"         \
    "      --precision P     the matrix products: fp32 (default), tf32 (a GPU's) or bf16\n"   \
    "                        (the CPU's, on oneDNN; needs AVX512_BF16 or AMX)\n"              \
    "      --backend B       the CPU's: onednn (default where this build has it), openblas\n" \
    "                        or auto (the faster for the model's layers on this CPU,\n"        \
    "                        measured at the start)\n"                                         \
    "  -t, --threads N       CPU threads, default: one per core other processes leave free\n" \
    "  -q, --quiet           print nothing but errors\n"

/* A grid PNG of n images decoded from z ~ N(0, I) drawn from `seed`, 10 to a row (and/or their
 * means as .npy). A conditional model draws class `label`, or with label < 0 one row per class. */
vae_status cli_write_samples(const char *path, const char *npy_path, const vae_model *model,
                             int rows, int cols, int n, uint64_t seed, int label, vae_error *err);
/* A grid PNG of rows of up to 10 of the first n images of data, each row followed by their
 * reconstructions through z = mu. */
vae_status cli_write_reconstructions(const char *path, const vae_model *model,
                                     const vae_dataset *data, int n, vae_error *err);

#define DEFAULT_TEST_IMAGES "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

/* Loads a model file; on failure prints the error and returns the exit code (else EXIT_OK). */
int cli_load_model(const char *path, vae_model **model, vae_train_state *st);
/* Reads a data set by its name: .npy, .csv or .csv.gz (labels from column label_column, see
 * vae_csv_options), else IDX images with their labels beside them (or from labels). */
vae_status cli_read_dataset(const char *path, const char *labels, long label_column,
                            vae_dataset **out, vae_error *err);
/* cli_read_dataset, and a CSV's header line as it is in the file into header ("" without). */
vae_status cli_read_dataset_header(const char *path, const char *labels, long label_column,
                                   vae_dataset **out, char *header, size_t header_size,
                                   vae_error *err);
/* "last", "none" or a 1-based column number, for --label-column; 0 after printing an error. */
int cli_parse_label_column(const char *text, long *out);
/* cli_read_dataset, then a check of the width against model when given; on failure prints
 * the error and returns the exit code (else EXIT_OK). */
int cli_load_data(const char *images, const char *labels, const vae_model *model,
                  vae_dataset **out);
int cli_load_data_labeled(const char *images, const char *labels, long label_column,
                          const vae_model *model, vae_dataset **out);
int cli_has_suffix(const char *path, const char *suffix);
/* One line saying what p(x|z) is, for reports. */
const char *cli_likelihood_note(const vae_config *c, char *buf, size_t size);
/* rows x cols values as .npy (float64) when path ends in .npy, else CSV with the header line
 * (may be NULL); written atomically. */
vae_status cli_write_table(const char *path, const double *values, size_t rows, size_t cols,
                           const char *header, vae_error *err);

/* n bytes as base64 (RFC 4648, padded) into f; 0 when a write fails. */
int cli_write_base64(FILE *f, const unsigned char *p, size_t n);
/* A whole file's bytes (malloc'ed, *len of them), or NULL when it cannot be read. */
unsigned char *cli_read_file(const char *path, size_t *len);

/* Monotonic seconds, for rates and timings. */
double cli_now_seconds(void);

/* Progress on stderr: a bar redrawn at most 10 times a second when it is a terminal, else a
 * plain line every 5 seconds (logs of long runs show they are alive), and one at the end. */
typedef struct {
    const char *label;
    int on, plain;
    size_t done;
    double begun, started, last_draw;
} cli_bar;
void cli_bar_init(cli_bar *bar, const char *label, int quiet);
/* done of total, with a note after the counts (may be NULL); a count going back starts a new
 * round (training's next epoch) and its rate. */
void cli_bar_update(cli_bar *bar, size_t done, size_t total, const char *note);
/* The closing line of plain progress: how many in how long. */
void cli_bar_done(cli_bar *bar, size_t total);
/* Has the shape of vae_eval_options.progress: user is a cli_bar. */
int cli_progress(void *user, size_t done, size_t total);

/* The latent means of the first n examples (or their 2-D PCA), colored by label, as PNG or,
 * when path ends in .svg, SVG; names (may be NULL) label the classes in the SVG legend. */
vae_status cli_plot_latent(const char *path, const vae_model *model, const vae_dataset *data,
                           size_t n, const char *const *names, vae_error *err);
/* Fashion-MNIST's class names (NULL-terminated) when data_path looks like it, else NULL. */
const char *const *cli_class_names(const char *data_path);

/* Decoded grids: a 2-D latent's prior quantiles (n x n), and each of the first dims latent
 * coordinates (0: all, at most 64) swept over [-range, range] in `steps` points, the others at
 * x's latent mean (x NULL: at 0). The model must know its image shape (st). */
vae_status cli_write_manifold(const char *path, const vae_model *model, const vae_train_state *st,
                              int n, int label, vae_error *err);
vae_status cli_write_traverse(const char *path, const vae_model *model, const vae_train_state *st,
                              const float *x, int label, int dims, int steps, double range,
                              vae_error *err);

/* Images `from` and `to` of data with the decoded linear (top row) and spherical (bottom row)
 * paths between their latent means, `steps` points each. */
vae_status cli_write_interpolation(const char *path, const vae_model *model,
                                   const vae_train_state *st, const vae_dataset *data, int from,
                                   int to, int steps, vae_error *err);

/* The processes of one job: with the MPI build (make MPI=1) those of mpirun, else this one. */
void cli_parallel_init(int *argc, char ***argv);
/* Ends the job; a failing rank of several aborts them all (non-zero exit). Returns code. */
int cli_parallel_finish(int code);
int cli_parallel_rank(void);
int cli_parallel_size(void);
/* For vae_train_options.collective: NULL for a single process. */
const vae_collective *cli_parallel_collective(void);
/* Rank 0's n values to every rank; non-zero on failure. */
int cli_parallel_broadcast(float *v, size_t n);
/* Seconds spent in collective calls so far. */
double cli_parallel_comm_seconds(void);
/* "MPI" in the MPI build, else NULL. */
const char *cli_parallel_name(void);

int cmd_train(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_interpolate(int argc, char **argv);
int cmd_traverse(int argc, char **argv);
int cmd_manifold(int argc, char **argv);
int cmd_plot_latent(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_impute(int argc, char **argv);
int cmd_mask(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_explorer(int argc, char **argv);
/* The explorer's page around its data (scripts/embed_page.sh makes them from cli/explore/). */
extern const char cli_explore_head[], cli_explore_tail[];
/* ROC AUC of scores (higher: anomalous) against the 0/1 flags, ties counting half; NaN when
 * one class is empty. */
double cli_roc_auc(const double *scores, const uint8_t *anomalous, size_t n);

#endif

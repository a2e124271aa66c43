/* files.c — what several commands read and write: model files, data sets with their labels,
 * tables as CSV or .npy, and a progress bar. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

int cli_load_model(const char *path, vae_model **model, vae_train_state *st) {
    vae_error err = {{0}};
    vae_status s = vae_model_load(path, model, NULL, st, &err);
    if (s == VAE_OK) /* where encode_all, decode_all and impute run for this command */
        s = vae_model_set_device(*model, cli_compute_options()->device,
                                 cli_compute_options()->precision, &err);
    if (s == VAE_OK) /* its passes run in batches of up to 500 rows */
        s = vae_model_set_backend(*model, cli_compute_options()->backend, 500, NULL, &err);
    if (s == VAE_OK && cli_compute_options()->cpu_bf16)
        s = vae_model_set_cpu_precision(*model, VAE_PRECISION_BF16, &err);
    if (s == VAE_OK) cli_apply_threads();
    return s == VAE_OK ? EXIT_OK : cli_report(s, &err);
}

/* The first line of a (gzipped or plain) text file without its end and a byte-order mark. */
static int first_line(const char *path, char *buf, size_t size) {
    gzFile gz = gzopen(path, "rb");
    if (!gz) return 0;
    int ok = gzgets(gz, buf, (int)size) != NULL;
    gzclose(gz);
    if (!ok) return 0;
    if (!strncmp(buf, "\xef\xbb\xbf", 3)) memmove(buf, buf + 3, strlen(buf + 3) + 1);
    buf[strcspn(buf, "\r\n")] = '\0';
    return 1;
}

vae_status cli_read_dataset(const char *path, const char *labels, long label_column,
                            vae_dataset **out, vae_error *err) {
    return cli_read_dataset_header(path, labels, label_column, out, NULL, 0, err);
}

vae_status cli_read_dataset_header(const char *path, const char *labels, long label_column,
                                   vae_dataset **out, char *header, size_t header_size,
                                   vae_error *err) {
    if (header && header_size) header[0] = '\0';
    if (cli_has_suffix(path, ".npy") || cli_has_suffix(path, ".csv") ||
        cli_has_suffix(path, ".csv.gz")) {
        if (labels) {
            snprintf(err->message, sizeof err->message, "%s: labels of CSV data come from a "
                     "column (--label-column), .npy data have none", path);
            return VAE_ERR_INVALID_ARGUMENT;
        }
        if (cli_has_suffix(path, ".npy") && label_column != VAE_CSV_NO_LABELS) {
            snprintf(err->message, sizeof err->message, "%s: --label-column is for CSV data; "
                     ".npy data have no labels", path);
            return VAE_ERR_INVALID_ARGUMENT;
        }
        if (cli_has_suffix(path, ".npy")) return vae_npy_load(path, 1, out, err);
        vae_csv_options o;
        vae_csv_options_default(&o);
        o.label_column = label_column;
        o.allow_missing = 1; /* a model without --missing refuses them, saying so */
        vae_status s = vae_csv_load(path, &o, out, err);
        if (s == VAE_OK && o.header) /* said, so that a lost first row never goes unseen */
            fprintf(stderr, "vae: %s: the first row is a header, not data: %s\n", path,
                    o.header_text);
        if (s == VAE_OK && o.header && header && header_size &&
            !first_line(path, header, header_size))
            header[0] = '\0';
        return s;
    }
    if (label_column != VAE_CSV_NO_LABELS) { /* a flag that would do nothing is said */
        snprintf(err->message, sizeof err->message, "%s: --label-column is for CSV data; IDX "
                 "labels come from a label file (found beside the images, or --train-labels)",
                 path);
        return VAE_ERR_INVALID_ARGUMENT;
    }
    char found[4096];
    if (!labels && vae_idx_find_labels(path, found, sizeof found)) labels = found;
    return vae_idx_load(path, labels, out, err);
}

int cli_parse_label_column(const char *text, long *out) {
    if (strcmp(text, "last") == 0) *out = VAE_CSV_LAST_COLUMN;
    else if (strcmp(text, "none") == 0) *out = VAE_CSV_NO_LABELS;
    else {
        int column;
        if (!cli_parse_int("label-column", text, 1, 1 << 24, &column)) return 0;
        *out = column - 1;
    }
    return 1;
}

int cli_load_data(const char *images, const char *labels, const vae_model *model,
                  vae_dataset **out) {
    return cli_load_data_labeled(images, labels, VAE_CSV_NO_LABELS, model, out);
}

int cli_load_data_labeled(const char *images, const char *labels, long label_column,
                          const vae_model *model, vae_dataset **out) {
    vae_error err = {{0}};
    vae_status s = cli_read_dataset(images, labels, label_column, out, &err);
    if (s != VAE_OK) return cli_report(s, &err);
    if (model && (*out)->dim != vae_model_config(model)->input_dim) {
        fprintf(stderr, "vae: %s has %d values per sample, the model expects %d\n", images,
                (*out)->dim, vae_model_config(model)->input_dim);
        vae_dataset_free(*out);
        *out = NULL;
        return EXIT_DATAERR;
    }
    return EXIT_OK;
}

const char *cli_likelihood_note(const vae_config *c, char *buf, size_t size) {
    switch (c->likelihood) {
    case VAE_LIK_BERNOULLI:
        snprintf(buf, size, "Bernoulli per value; values in [0,1] used as they are (not binarized)");
        break;
    case VAE_LIK_POISSON: snprintf(buf, size, "Poisson per value (counts), log-rate decoded"); break;
    case VAE_LIK_GAUSSIAN:
        if (c->variance == VAE_VAR_FIXED)
            snprintf(buf, size, "Gaussian per value, fixed sigma %g (a density: nats can be < 0)",
                     c->sigma);
        else
            snprintf(buf, size, "Gaussian per value, variance %s (floor %g; a density: nats can "
                     "be < 0)", c->variance == VAE_VAR_PER_DIM ? "learned per value"
                                                                : "decoded per sample",
                     c->variance_floor);
        break;
    }
    return buf;
}

int cli_has_suffix(const char *path, const char *suffix) {
    size_t n = strlen(path), k = strlen(suffix);
    return n >= k && strcmp(path + n - k, suffix) == 0;
}

typedef struct {
    const double *values;
    size_t rows, cols;
    const char *header;
} csv_table;

static vae_status write_csv(FILE *f, void *ctx) {
    const csv_table *t = ctx;
    if (t->header && fprintf(f, "%s\n", t->header) < 0) return VAE_ERR_IO;
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->cols; c++)
            if (fprintf(f, "%.9g%c", t->values[r * t->cols + c], c + 1 < t->cols ? ',' : '\n') < 0)
                return VAE_ERR_IO;
    return VAE_OK;
}

vae_status cli_write_table(const char *path, const double *values, size_t rows, size_t cols,
                           const char *header, vae_error *err) {
    if (cli_has_suffix(path, ".npy")) return vae_npy_write_f64(path, values, rows, cols, err);
    csv_table t = {values, rows, cols, header};
    return vae_write_atomic(path, write_csv, &t, err);
}

double cli_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_bar_update(cli_bar *bar, size_t done, size_t total, const char *note) {
    if (!bar->on && !bar->plain) return;
    double t = cli_now_seconds();
    if (bar->started == 0 || done < bar->done) bar->started = t; /* a new round (an epoch) */
    bar->done = done;
    note = note ? note : "";
    if (bar->plain) {
        if (t - bar->last_draw >= 5.0 && done < total) {
            bar->last_draw = t;
            fprintf(stderr, "%s: %zu of %zu (%.0f%%), %.0f/s %s\n", bar->label, done, total,
                    total ? 100.0 * (double)done / (double)total : 100.0,
                    t > bar->started ? (double)done / (t - bar->started) : 0.0, note);
        }
        return;
    }
    if (t - bar->last_draw < 0.1 && done < total) return;
    bar->last_draw = t;
    int width = 30, filled = total ? (int)(width * done / total) : width;
    double rate = t > bar->started ? done / (t - bar->started) : 0;
    fprintf(stderr, "\r%s [%.*s%*s] %zu/%zu %.0f/s %s ", bar->label, filled,
            "##############################", width - filled, "", done, total, rate, note);
    if (done >= total) fputs("\r\033[K", stderr);
    fflush(stderr);
}

int cli_progress(void *user, size_t done, size_t total) {
    cli_bar_update(user, done, total, NULL);
    return 0;
}

void cli_bar_done(cli_bar *bar, size_t total) {
    if (bar->plain)
        fprintf(stderr, "%s: %zu done in %.1f s\n", bar->label, total,
                cli_now_seconds() - bar->begun);
}

void cli_bar_init(cli_bar *bar, const char *label, int quiet) {
    memset(bar, 0, sizeof *bar);
    bar->label = label;
    bar->on = !quiet && isatty(STDERR_FILENO);
    bar->plain = !quiet && !bar->on;
    bar->begun = bar->last_draw = cli_now_seconds();
}

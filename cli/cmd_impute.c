/* cmd_impute.c — `vae impute` (fill in missing values with a model trained with --missing) and
 * `vae mask` (remove values completely at random, to measure imputation). */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* v as the shortest text that reads back as the same float (5.1, not 5.0999999: a value read
 * from a file is written as it was written there); NaN as an empty cell. */
static int put_float(FILE *f, float v) {
    if (isnan(v)) return 1;
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return fputs(buf, f) >= 0;
}

/* What a CSV written back keeps of the one read: its header line ("" for none: x1..xN) and
 * its label column (labels of one copy of the rows, at column label_at of d + 1). */
typedef struct {
    const char *header;
    const uint8_t *labels;
    size_t rows_per_copy;
    int label_at;
} csv_kept;

typedef struct {
    const float *x;
    size_t n;
    int d;
    const csv_kept *kept;
} float_rows;

static int write_header(FILE *f, const float_rows *t, int columns) {
    if (t->kept && t->kept->header[0]) return fprintf(f, "%s\n", t->kept->header) >= 0;
    for (int j = 0, x = 0; j < columns; j++) {
        int ok = t->kept && t->kept->labels && j == t->kept->label_at
                     ? fprintf(f, "%slabel", j ? "," : "") >= 0
                     : fprintf(f, "%sx%d", j ? "," : "", ++x) >= 0;
        if (!ok) return 0;
    }
    return fputc('\n', f) != EOF;
}

/* The header, then the rows, the label column back where it was. */
static vae_status write_float_rows(FILE *f, void *ctx) {
    const float_rows *t = ctx;
    const int labelled = t->kept && t->kept->labels, columns = t->d + labelled;
    if (!write_header(f, t, columns)) return VAE_ERR_IO;
    for (size_t i = 0; i < t->n; i++)
        for (int j = 0, x = 0; j < columns; j++) {
            int ok = labelled && j == t->kept->label_at
                         ? fprintf(f, "%d", t->kept->labels[i % t->kept->rows_per_copy]) >= 0
                         : put_float(f, t->x[i * (size_t)t->d + x++]);
            if (!ok || fputc(j + 1 < columns ? ',' : '\n', f) == EOF) return VAE_ERR_IO;
        }
    return VAE_OK;
}

/* Writes n rows of d floats as CSV (missing values as empty cells; kept may be NULL) or .npy
 * (as NaN). */
static vae_status write_rows(const char *path, const float *x, size_t n, int d,
                             const csv_kept *kept, vae_error *err) {
    if (cli_has_suffix(path, ".npy")) return vae_npy_write_f32(path, x, n, (size_t)d, err);
    float_rows t = {x, n, d, kept};
    return vae_write_atomic(path, write_float_rows, &t, err);
}

/* Where the label column was among the d + 1: the last, or the one named. */
static int label_position(long label_column, int d) {
    return label_column == VAE_CSV_LAST_COLUMN ? d : (int)label_column;
}

/* MSE over the missing cells of `got` against `truth`, in the units of `scale` (std per column,
 * or NULL for the data's own). */
static double missing_mse(const float *got, const float *truth, const uint8_t *mask, size_t n,
                          int d, const float *scale, size_t *cells) {
    double sum = 0.0;
    *cells = 0;
    for (size_t i = 0; i < n * (size_t)d; i++) {
        if (mask[i]) continue;
        double e = ((double)got[i] - truth[i]) / (scale ? scale[i % (size_t)d] : 1.0);
        sum += e * e;
        (*cells)++;
    }
    return *cells ? sum / (double)*cells : 0.0;
}

/* --truth: the imputation's MSE on the missing cells beside mean and zero imputation's, in
 * the model's units when it standardizes ("zero" is then the training mean). */
static vae_status compare_with_truth(const vae_model *m, const vae_dataset *data,
                                     const vae_dataset *truth, const float *filled) {
    const float *mean = vae_model_data_mean(m), *std = vae_model_data_std(m);
    const size_t n = data->count;
    const int d = data->dim;
    float *col_mean = calloc((size_t)d, sizeof(float));
    float *baseline = calloc(n * (size_t)d, sizeof(float));
    size_t *seen = calloc((size_t)d, sizeof(size_t));
    if (!col_mean || !baseline || !seen) {
        free(col_mean), free(baseline), free(seen);
        return VAE_ERR_NO_MEMORY;
    }
    for (size_t i = 0; i < n * (size_t)d; i++)
        if (data->mask[i]) col_mean[i % d] += data->x[i], seen[i % d]++;
    for (int j = 0; j < d; j++) col_mean[j] = seen[j] ? col_mean[j] / seen[j] : 0.0f;
    size_t cells;
    double ours = missing_mse(filled, truth->x, data->mask, n, d, std, &cells);
    for (size_t i = 0; i < n * (size_t)d; i++) baseline[i] = col_mean[i % d];
    double by_mean = missing_mse(baseline, truth->x, data->mask, n, d, std, &cells);
    for (size_t i = 0; i < n * (size_t)d; i++) baseline[i] = mean ? mean[i % d] : 0.0f;
    double by_zero = missing_mse(baseline, truth->x, data->mask, n, d, std, &cells);
    printf("missing cells: %zu; MSE%s: vae %.4f, mean imputation %.4f, zero imputation %.4f\n",
           cells, std ? " (standardized units)" : "", ours, by_mean, by_zero);
    printf("RMSE: vae %.4f, mean imputation %.4f, zero imputation %.4f\n", sqrt(ours),
           sqrt(by_mean), sqrt(by_zero));
    free(col_mean), free(baseline), free(seen);
    return VAE_OK;
}

/* The data to impute (as given: the library maps values to the model's units) and, with
 * --truth, the complete data to compare with. */
static vae_status read_impute_data(const vae_model *m, const char *path, const char *truth_path,
                                   long label_column, vae_dataset **data, vae_dataset **truth,
                                   char *header, size_t header_size, vae_error *err) {
    CLI_TRY(cli_read_dataset_header(path, NULL, label_column, data, header, header_size, err));
    CLI_FAIL_IF((*data)->dim != vae_model_config(m)->input_dim, err, VAE_ERR_FORMAT,
                "%s has %d values per sample, the model expects %d", path, (*data)->dim,
                vae_model_config(m)->input_dim);
    if (!truth_path) return VAE_OK;
    CLI_TRY(cli_read_dataset(truth_path, NULL, label_column, truth, err));
    CLI_FAIL_IF((*truth)->count != (*data)->count || (*truth)->dim != (*data)->dim ||
                    (*truth)->mask,
                err, VAE_ERR_INVALID_ARGUMENT,
                "%s: the truth must be complete data of the same shape as %s", truth_path, path);
    return VAE_OK;
}

int cmd_impute(int argc, char **argv) {
    static const char usage[] =
        "usage: vae impute MODEL DATA -o OUT [options]\n\n"
        "Fills in the missing values of DATA (CSV: empty, nan or NA cells; .npy: NaN) with a\n"
        "model trained with --missing: importance sampling from q(z|x_obs) weighted by\n"
        "p(x_obs|z) p(z) / q(z|x_obs) (MIWAE). Observed values are written back unchanged.\n"
        "OUT is CSV, or .npy when it ends so, in the data's own units.\n"
        "  -o, --out FILE        where to write (required)\n"
        "  -k, --samples K       importance samples per row, default 1000\n"
        "  -m, --multiple M      M imputations by sampling importance resampling, one after\n"
        "                        the other (M x N rows); default: one, the weighted mean\n"
        "      --truth FILE      the complete data: print the MSE on the missing cells, with\n"
        "                        mean and zero imputation beside it (in the model's\n"
        "                        standardized units when it standardizes)\n"
        "  -s, --seed N          default 1\n"
        "      --label-column N  CSV: the column of labels (or last)\n"
        CLI_DEVICE_HELP;
    const char *out = NULL, *truth_path = NULL;
    int k = 1000, multiple = 0, first, code;
    uint64_t seed = 1;
    long label_column = VAE_CSV_NO_LABELS;
    const cli_opt opts[] = {
        CLI_STR("out", 'o', &out, NULL),
        CLI_INT("samples", 'k', &k, 1, 100000, NULL),
        CLI_INT("multiple", 'm', &multiple, 1, 10000, NULL),
        CLI_STR("truth", 0, &truth_path, NULL),
        CLI_U64("seed", 's', &seed, NULL),
        CLI_LABEL_COLUMN(&label_column),
    };
    if (!cli_parse_options(argc, argv, "impute", opts, (int)(sizeof opts / sizeof *opts), usage,
                           &first, &code) ||
        !cli_operands(argc, first, 2, 2, "impute", "MODEL DATA", &code) || !cli_needs_out(out, "impute", &code))
        return code;
    if (!cli_output_ok(out)) return EXIT_CANTCREAT;
    vae_model *m = NULL;
    vae_dataset *data = NULL, *truth = NULL;
    vae_train_state st;
    vae_error err = {{0}};
    float *filled = NULL;
    code = cli_load_model(argv[first], &m, &st);
    vae_status s = VAE_OK;
    char header[8192];
    if (code == EXIT_OK)
        s = read_impute_data(m, argv[first + 1], truth_path, label_column, &data, &truth, header,
                             sizeof header, &err);
    if (code != EXIT_OK || s != VAE_OK) goto done;
    if (!data->mask) {
        fprintf(stderr, "vae: %s has no missing values\n", argv[first + 1]);
        code = EXIT_DATAERR;
        goto done;
    }
    const size_t n = data->count, copies = multiple ? (size_t)multiple : 1;
    const int d = data->dim;
    filled = malloc(sizeof(float) * copies * n * (size_t)d);
    s = filled ? vae_impute(m, data, k, multiple, seed, filled, &err) : VAE_ERR_NO_MEMORY;
    if (s != VAE_OK) goto done;
    /* observed values come back as the input's own, bit for bit (vae_impute) */
    const csv_kept kept = {header, data->labels, n, label_position(label_column, d)};
    s = write_rows(out, filled, copies * n, d, &kept, &err);
    if (s != VAE_OK) goto done;
    size_t missing = 0;
    for (size_t i = 0; i < n * (size_t)d; i++) missing += !data->mask[i];
    cli_say("vae: wrote %s: %zu missing values of %zu filled in (%zu imputation%s)\n", out,
            missing, n * (size_t)d, copies, copies == 1 ? "" : "s");
    if (truth) s = compare_with_truth(m, data, truth, filled);
done:
    if (code == EXIT_OK && s != VAE_OK) code = cli_report(s, &err);
    free(filled);
    vae_dataset_free(data), vae_dataset_free(truth);
    vae_model_free(m);
    return code;
}

int cmd_mask(int argc, char **argv) {
    static const char usage[] =
        "usage: vae mask DATA -o OUT [options]\n\n"
        "Removes values of DATA completely at random and writes the rest with NaN (.npy) or\n"
        "empty cells (CSV) where values were removed: input for vae train --missing and\n"
        "vae impute --truth DATA. Every row keeps at least one value.\n"
        "  -o, --out FILE        .npy or .csv (required)\n"
        "  -f, --fraction F      the share of values removed, default 0.5\n"
        "  -s, --seed N          default 1\n"
        "      --label-column N  CSV: the column of labels, kept as it is (or last)\n";
    const char *out = NULL;
    float fraction = 0.5f;
    uint64_t seed = 1;
    long label_column = VAE_CSV_NO_LABELS;
    int first, code;
    const cli_opt opts[] = {
        CLI_STR("out", 'o', &out, NULL),
        CLI_FLOAT("fraction", 'f', &fraction, 0.0, 0.99, NULL),
        CLI_U64("seed", 's', &seed, NULL),
        CLI_LABEL_COLUMN(&label_column),
    };
    if (!cli_parse_options(argc, argv, "mask", opts, (int)(sizeof opts / sizeof *opts), usage,
                           &first, &code) ||
        !cli_operands(argc, first, 1, 1, "mask", "DATA", &code) || !cli_needs_out(out, "mask", &code))
        return code;
    if (!cli_output_ok(out)) return EXIT_CANTCREAT;
    vae_dataset *data = NULL;
    vae_error err = {{0}};
    char header[8192];
    vae_status s = cli_read_dataset_header(argv[first], NULL, label_column, &data, header,
                                           sizeof header, &err);
    if (s != VAE_OK) return cli_report(s, &err);
    const size_t n = data->count, d = (size_t)data->dim;
    float *keep = malloc(sizeof(float) * d);
    if (!keep) {
        vae_dataset_free(data);
        return cli_report(VAE_ERR_NO_MEMORY, NULL);
    }
    vae_rng rng = vae_rng_make(seed, 0x3a5cULL);
    for (size_t i = 0; i < n; i++) {
        size_t kept = 0;
        float *row = data->x + i * d;
        memcpy(keep, row, sizeof(float) * d);
        for (size_t j = 0; j < d; j++) {
            int was_missing = data->mask && !data->mask[i * d + j];
            if (was_missing || vae_rng_uniform(&rng) < fraction) row[j] = NAN;
            else kept++;
        }
        for (size_t tries = 0; !kept && tries < 64 * d; tries++) { /* one value stays */
            size_t j = (size_t)vae_rng_below(&rng, d);
            if (!data->mask || data->mask[i * d + j]) row[j] = keep[j], kept = 1;
        }
    }
    free(keep);
    if (cli_has_suffix(out, ".npy")) {
        s = vae_npy_write_f32(out, data->x, n, d, &err);
    } else { /* a removed value is an empty cell, which the reader takes as missing */
        const csv_kept kept = {header, data->labels, n, label_position(label_column, (int)d)};
        s = write_rows(out, data->x, n, (int)d, &kept, &err);
    }
    vae_dataset_free(data);
    if (s != VAE_OK) return cli_report(s, &err);
    cli_say("vae: wrote %s\n", out);
    return EXIT_OK;
}

/* ROC AUC of scores (higher: more anomalous) for the positives flagged in `anomalous`: the
 * probability that a random anomaly scores above a random normal sample, ties counting half
 * (the Mann-Whitney statistic, from ranks). */
static int by_score(const void *a, const void *b) {
    const double *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

double cli_roc_auc(const double *scores, const uint8_t *anomalous, size_t n) {
    double *pairs = malloc(sizeof(double) * 2 * n);
    if (!pairs) return NAN;
    for (size_t i = 0; i < n; i++) pairs[2 * i] = scores[i], pairs[2 * i + 1] = anomalous[i];
    qsort(pairs, n, 2 * sizeof(double), by_score);
    double rank_sum = 0.0, positives = 0.0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && pairs[2 * j] == pairs[2 * i]) j++;
        double mid_rank = (double)(i + j + 1) / 2.0; /* 1-based average rank of the tie */
        for (size_t t = i; t < j; t++)
            if (pairs[2 * t + 1] > 0) rank_sum += mid_rank, positives++;
        i = j;
    }
    free(pairs);
    double negatives = (double)n - positives;
    if (positives == 0 || negatives == 0) return NAN;
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives);
}

int cmd_score(int argc, char **argv) {
    static const char usage[] =
        "usage: vae score MODEL DATA -o FILE [options]\n\n"
        "One anomaly score per sample of DATA: the negative ELBO, or with -k K the importance-\n"
        "weighted -log p(x); higher is more unusual. FILE is CSV (score) or .npy.\n"
        "  -o, --out FILE         where to write (required)\n"
        "  -k, --samples K        importance samples (default 0: the negative ELBO)\n"
        "      --anomaly-label L  the samples labelled L are the anomalies: print the ROC AUC\n"
        "  -s, --seed N           default 1\n"
        "      --label-column N   CSV: the column of labels (or last)\n"
        CLI_DEVICE_HELP;
    const char *out = NULL;
    int k = 0, anomaly = -1, first, code;
    uint64_t seed = 1;
    long label_column = VAE_CSV_NO_LABELS;
    const cli_opt opts[] = {
        CLI_STR("out", 'o', &out, NULL),
        CLI_INT("samples", 'k', &k, 0, 1000000, NULL),
        CLI_INT("anomaly-label", 0, &anomaly, 0, 255, NULL),
        CLI_U64("seed", 's', &seed, NULL),
        CLI_LABEL_COLUMN(&label_column),
    };
    if (!cli_parse_options(argc, argv, "score", opts, (int)(sizeof opts / sizeof *opts), usage,
                           &first, &code) ||
        !cli_operands(argc, first, 2, 2, "score", "MODEL DATA", &code) || !cli_needs_out(out, "score", &code))
        return code;
    if (!cli_output_ok(out)) return EXIT_CANTCREAT;
    vae_model *m = NULL;
    vae_dataset *data = NULL;
    vae_train_state st;
    code = cli_load_model(argv[first], &m, &st);
    if (code == EXIT_OK) code = cli_load_data_labeled(argv[first + 1], NULL, label_column, m, &data);
    if (code == EXIT_OK && anomaly >= 0 && !data->labels) {
        fprintf(stderr, "vae: --anomaly-label needs the labels of %s\n", argv[first + 1]);
        code = EXIT_USAGE;
    }
    if (code == EXIT_OK && anomaly >= 0 && !memchr(data->labels, anomaly, data->count)) {
        fprintf(stderr, "vae: --anomaly-label %d: no sample of %s has that label\n", anomaly,
                argv[first + 1]);
        code = EXIT_USAGE;
    }
    if (code != EXIT_OK) {
        vae_dataset_free(data), vae_model_free(m);
        return code;
    }
    const size_t n = data->count;
    vae_eval_options o;
    vae_eval_options_default(&o);
    o.importance_samples = k, o.seed = seed;
    o.device = cli_compute_options()->device, o.precision = cli_compute_options()->precision;
    vae_eval_result r;
    vae_error err = {{0}};
    double *rows = malloc(sizeof(double) * VAE_EVAL_COLUMNS * n), *scores = malloc(sizeof(double) * n);
    uint8_t *flag = malloc(n ? n : 1);
    vae_status s = rows && scores && flag ? vae_eval(m, data, &o, &r, rows, &err) : VAE_ERR_NO_MEMORY;
    if (s == VAE_OK) {
        for (size_t i = 0; i < n; i++)
            scores[i] = rows[i * VAE_EVAL_COLUMNS + (k ? VAE_EVAL_NLL : VAE_EVAL_NEG_ELBO)];
        s = cli_write_table(out, scores, n, 1, "score", &err);
    }
    if (s == VAE_OK) {
        cli_say("vae: wrote %s: %zu scores (%s)\n", out, n, k ? "-log p(x), importance sampling" : "negative ELBO");
        if (anomaly >= 0) {
            size_t positives = 0;
            for (size_t i = 0; i < n; i++) positives += (flag[i] = data->labels[i] == anomaly);
            printf("anomalies (label %d): %zu of %zu; ROC AUC %.4f\n", anomaly, positives, n,
                   cli_roc_auc(scores, flag, n));
        }
    }
    if (s != VAE_OK) code = cli_report(s, &err);
    free(rows), free(scores), free(flag);
    vae_dataset_free(data), vae_model_free(m);
    return code;
}

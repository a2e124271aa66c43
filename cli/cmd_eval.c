/* cmd_eval.c — `vae eval` (how good a model is) and `vae encode` (where data land in the
 * latent space). */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char EVAL_USAGE[] =
    "usage: vae eval MODEL [DATA] [options]\n"
    "\n"
    "Measures a model on IDX images (default: the Fashion-MNIST test set), per example in nats:\n"
    "the negative ELBO with its reconstruction and KL parts (one reparameterized draw per\n"
    "example, analytic KL), the importance-weighted estimate of -log p(x) (Burda et al.),\n"
    "bits per dimension and the active latent units (Cov_x(E_q[z_u]) > 0.01).\n"
    "\n"
    "  -k, --samples K       importance samples per example, default 1000 (about half a\n"
    "                        minute for 10,000 images on 2 cores); 5000 for figures to\n"
    "                        compare with papers (Burda et al.); 0: ELBO only\n"
    "  -n, --count N         only the first N examples\n"
    "      --json FILE       the same as a metrics file\n"
    "      --per-sample FILE one row per example (neg_elbo, recon, kl, nll): CSV, or .npy\n"
    "                        when FILE ends in .npy; usable as anomaly scores\n"
    "  -s, --seed N          seed of the draws, default 1\n"
    CLI_DEVICE_HELP
    "      --label-column N  CSV data: the column of labels to leave out (or last)\n"
    "DATA may also be .csv/.csv.gz or .npy; a model trained with --standardize applies it.\n";

typedef struct {
    const char *model, *data, *json, *per_sample;
    int k, count, quiet;
    long label_column;
    uint64_t seed;
} eval_args;

static int parse_eval(int argc, char **argv, eval_args *a, int *code) {
    *a = (eval_args){.data = DEFAULT_TEST_IMAGES, .k = 1000, .seed = 1,
                     .label_column = VAE_CSV_NO_LABELS};
    a->quiet = cli_compute_options()->quiet; /* -q is taken with the options every command has */
    const cli_opt table[] = {
        CLI_INT("samples", 'k', &a->k, 0, 10000000, NULL),
        CLI_INT("count", 'n', &a->count, 1, 1 << 30, NULL),
        CLI_STR("json", 0, &a->json, NULL),
        CLI_STR("per-sample", 0, &a->per_sample, NULL),
        CLI_U64("seed", 's', &a->seed, NULL),
        CLI_LABEL_COLUMN(&a->label_column),
    };
    int first;
    if (!cli_parse_options(argc, argv, "eval", table, (int)(sizeof table / sizeof *table),
                           EVAL_USAGE, &first, code) ||
        !cli_operands(argc, first, 1, 2, "eval", "MODEL [DATA]", code))
        return 0;
    a->model = argv[first];
    if (first == argc - 2) a->data = argv[first + 1];
    return 1;
}


static vae_status write_json(FILE *f, void *ctx) { return (json_dumpf(ctx, f, JSON_INDENT(2)) == 0 && fputc('\n', f) != EOF) ? VAE_OK : VAE_ERR_IO; }

static json_t *metrics_json(const eval_args *a, const vae_eval_result *r, int dim,
                            const char *note) {
    json_t *j = json_pack("{s:s, s:s, s:I, s:i, s:s, s:s, s:f, s:f, s:f, s:i, s:i, s:i}",
                          "model", a->model, "data", a->data, "examples", (json_int_t)r->count,
                          "values_per_example", dim, "likelihood", note, "units",
                          "nats per example", "neg_elbo", r->neg_elbo, "recon", r->recon, "kl",
                          r->kl, "importance_samples", r->importance_samples, "active_units",
                          r->active_units, "latent_dim", r->latent_dim);
    if (j && r->importance_samples > 0) {
        json_object_set_new(j, "nll_iwae", json_real(r->nll));
        json_object_set_new(j, "nll_iwae_stderr", json_real(r->nll_stderr));
    }
    if (j) json_object_set_new(j, "bits_per_dim", json_real(r->bits_per_dim));
    return j;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int code;
    if (!parse_eval(argc, argv, &a, &code)) return code;
    if (!cli_output_ok(a.json) || !cli_output_ok(a.per_sample)) return EXIT_CANTCREAT;
    vae_model *model = NULL;
    vae_dataset *data = NULL;
    vae_train_state st;
    if ((code = cli_load_model(a.model, &model, &st)) != EXIT_OK) return code;
    if ((code = cli_load_data_labeled(a.data, NULL, a.label_column, model, &data)) != EXIT_OK)
        goto done;
    if (a.count && (size_t)a.count < data->count) data->count = (size_t)a.count;

    cli_bar bar;
    cli_bar_init(&bar, "eval", a.quiet);
    vae_eval_options o;
    vae_eval_options_default(&o);
    o.importance_samples = a.k, o.seed = a.seed, o.progress = cli_progress, o.user = &bar;
    o.device = cli_compute_options()->device, o.precision = cli_compute_options()->precision;
    vae_eval_result r;
    vae_error err = {{0}};
    double *rows = a.per_sample ? malloc(sizeof(double) * VAE_EVAL_COLUMNS * data->count) : NULL;
    vae_status s = a.per_sample && !rows ? VAE_ERR_NO_MEMORY : vae_eval(model, data, &o, &r, rows, &err);
    if (s == VAE_OK) cli_bar_done(&bar, data->count);
    if (s == VAE_OK) {
        const int dim = vae_model_config(model)->input_dim;
        printf("model:         %s\n", a.model);
        printf("data:          %s (%zu examples of %d values)\n", a.data, r.count, dim);
        char note[160];
        cli_likelihood_note(vae_model_config(model), note, sizeof note);
        printf("likelihood:    %s\n", note);
        printf("-ELBO:         %.3f nats (reconstruction %.3f + KL %.3f)\n", r.neg_elbo,
               r.recon, r.kl);
        if (a.k > 0)
            printf("-log p(x):     %.3f nats (importance sampling, K=%d; standard error over the "
                   "examples %.3f; the ELBO's gap %.3f)\n", r.nll, a.k, r.nll_stderr,
                   r.neg_elbo - r.nll);
        printf("bits/dim:      %.4f (%s / (%d ln 2))\n", r.bits_per_dim,
               a.k > 0 ? "-log p(x)" : "-ELBO", dim);
        printf("active units:  %d of %d\n", r.active_units, r.latent_dim);
        if (a.json) {
            json_t *j = metrics_json(&a, &r, dim, note);
            s = j ? vae_write_atomic(a.json, write_json, j, &err) : VAE_ERR_NO_MEMORY;
            json_decref(j);
        }
        if (s == VAE_OK && a.per_sample)
            s = cli_write_table(a.per_sample, rows, r.count, VAE_EVAL_COLUMNS,
                                "neg_elbo,recon,kl,nll", &err);
    }
    free(rows);
    code = s == VAE_OK ? EXIT_OK : cli_report(s, &err);
done:
    vae_dataset_free(data);
    vae_model_free(model);
    return code;
}

static const char ENCODE_USAGE[] =
    "usage: vae encode MODEL DATA -o FILE [options]\n"
    "\n"
    "Maps IDX images into the latent space. By default writes, per example, the encoder's\n"
    "mean and log-variance (mu_0..mu_{L-1}, logvar_0..logvar_{L-1}); with --sample, one draw\n"
    "z = mu + sigma * eps instead. A label column comes first when labels are found.\n"
    "FILE is CSV with a header, or .npy (float64) when it ends in .npy.\n"
    "\n"
    "  -o, --out FILE   where to write (required)\n"
    "      --sample     a draw of z instead of the mean and log-variance\n"
    "  -s, --seed N     seed of the draws, default 1\n"
    "      --label-column N  CSV data: the column of labels (or last)\n"
        CLI_DEVICE_HELP;

int cmd_encode(int argc, char **argv) {
    const char *out = NULL;
    long label_column = VAE_CSV_NO_LABELS;
    int sample = 0, first, code;
    uint64_t seed = 1;
    const cli_opt opts[] = {
        CLI_STR("out", 'o', &out, NULL),
        CLI_FLAG("sample", 0, &sample),
        CLI_U64("seed", 's', &seed, NULL),
        CLI_LABEL_COLUMN(&label_column),
    };
    if (!cli_parse_options(argc, argv, "encode", opts, (int)(sizeof opts / sizeof *opts),
                           ENCODE_USAGE, &first, &code) ||
        !cli_operands(argc, first, 2, 2, "encode", "MODEL DATA", &code))
        return code;
    if (!out) {
        fprintf(stderr, "vae: encode: -o FILE is needed (try vae encode --help)\n");
        return EXIT_USAGE;
    }
    if (!cli_output_ok(out)) return EXIT_CANTCREAT;
    vae_model *model = NULL;
    vae_dataset *data = NULL;
    vae_train_state st;
    code = cli_load_model(argv[first], &model, &st);
    if (code != EXIT_OK) return code;
    if ((code = cli_load_data_labeled(argv[first + 1], NULL, label_column, model, &data)) !=
        EXIT_OK) {
        vae_model_free(model);
        return code;
    }
    const size_t n = data->count, latent = (size_t)vae_model_config(model)->latent_dim;
    const size_t lab = data->labels ? 1 : 0, cols = lab + (sample ? latent : 2 * latent);
    float *mu = malloc(sizeof(float) * n * latent), *lv = malloc(sizeof(float) * n * latent);
    double *table = malloc(sizeof(double) * n * cols);
    char *header = malloc(32 * (cols + 1));
    float *eps = malloc(sizeof(float) * latent);
    vae_error err = {{0}};
    vae_status s = mu && lv && table && header && eps ? vae_encode_data(model, data, mu, lv, &err)
                                               : VAE_ERR_NO_MEMORY;
    if (s == VAE_OK) {
        for (size_t i = 0; i < n; i++) {
            double *row = table + i * cols;
            if (lab) row[0] = data->labels[i];
            if (sample) {
                vae_rng rng = vae_rng_make(seed, i);
                vae_rng_normal(&rng, eps, latent);
                for (size_t j = 0; j < latent; j++)
                    row[lab + j] = mu[i * latent + j] + exp(0.5 * lv[i * latent + j]) * eps[j];
            } else {
                for (size_t j = 0; j < latent; j++)
                    row[lab + j] = mu[i * latent + j], row[lab + latent + j] = lv[i * latent + j];
            }
        }
        size_t at = 0;
        header[0] = '\0';
        if (lab) at += (size_t)sprintf(header, "label");
        for (int part = 0; part < (sample ? 1 : 2); part++)
            for (size_t j = 0; j < latent; j++)
                at += (size_t)sprintf(header + at, "%s%s_%zu", at ? "," : "",
                                      sample ? "z" : part ? "logvar" : "mu", j);
        s = cli_write_table(out, table, n, cols, header, &err);
    }
    if (s == VAE_OK) cli_say("vae: wrote %s (%zu rows of %zu values)\n", out, n, cols);
    else code = cli_report(s, &err);
    free(mu), free(lv), free(table), free(header), free(eps);
    vae_dataset_free(data);
    vae_model_free(model);
    return code;
}

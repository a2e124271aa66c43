/* cmd_report.c — `vae report DIR`: one self-contained HTML page of a training run (curves,
 * samples, reconstructions, the latent space, the evaluation table), every picture embedded,
 * so the page can be mailed or archived as one file. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_SIZE 4096
#define MAX_EPOCHS 100000

typedef struct {
    int n;
    int *epoch;
    double *train, *test; /* test NaN when absent */
} curves;

/* The per-epoch losses of DIR/train_log.csv (written by vae train); none when it is missing. */
static void read_curves(const char *dir, curves *c) {
    memset(c, 0, sizeof *c);
    char path[PATH_SIZE], line[1024];
    snprintf(path, sizeof path, "%s/train_log.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return;
    c->epoch = malloc(sizeof(int) * MAX_EPOCHS);
    c->train = malloc(sizeof(double) * MAX_EPOCHS);
    c->test = malloc(sizeof(double) * MAX_EPOCHS);
    while (c->epoch && c->train && c->test && c->n < MAX_EPOCHS && fgets(line, sizeof line, f)) {
        int epoch;
        double train, recon, kl;
        char test[64];
        if (sscanf(line, "%d,%lf,%lf,%lf,%63[^,]", &epoch, &train, &recon, &kl, test) == 5) {
            c->epoch[c->n] = epoch, c->train[c->n] = train;
            c->test[c->n] = strtod(test, NULL); /* "nan" without test data */
            c->n++;
        }
    }
    fclose(f);
}

static void curves_free(curves *c) { free(c->epoch), free(c->train), free(c->test); }

/* A line chart of the losses as inline SVG. */
static void write_curves_svg(FILE *f, const curves *c) {
    const int w = 640, h = 320, l = 60, r = 20, t = 20, b = 40;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < c->n; i++) {
        lo = fmin(lo, c->train[i]), hi = fmax(hi, c->train[i]);
        if (!isnan(c->test[i])) lo = fmin(lo, c->test[i]), hi = fmax(hi, c->test[i]);
    }
    if (hi - lo < 1e-9) lo -= 1, hi += 1;
    double pad = 0.05 * (hi - lo);
    lo -= pad, hi += pad;
    int e0 = c->epoch[0], e1 = c->epoch[c->n - 1] > e0 ? c->epoch[c->n - 1] : e0 + 1;
#define PX(e) (l + ((double)(e) - e0) / (e1 - e0) * (w - l - r))
#define PY(v) (t + (hi - (v)) / (hi - lo) * (h - t - b))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"loss curves\">\n"
               "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n",
            w, h, l, t, w - l - r, h - t - b);
    for (int k = 0; k <= 4; k++) {
        double v = lo + (hi - lo) * k / 4;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", l - 6, PY(v) + 4, v);
    }
    int tick = (e1 - e0) / 10 + 1;
    for (int e = e0; e <= e1; e += tick)
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", PX(e), h - b + 16, e);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n", (l + w - r) / 2, h - 4);
    for (int series = 0; series < 2; series++) {
        const double *v = series ? c->test : c->train;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                series ? "#d62728" : "#1f77b4");
        for (int i = 0; i < c->n; i++)
            if (!isnan(v[i])) fprintf(f, "%.1f,%.1f ", PX(c->epoch[i]), PY(v[i]));
        fputs("\"/>\n", f);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#1f77b4\">train -ELBO</text>"
               "<text x=\"%d\" y=\"%d\" fill=\"#d62728\">test -ELBO</text>\n</svg>\n",
            w - r - 190, t + 16, w - r - 90, t + 16);
#undef PX
#undef PY
}

/* An <img> whose source is the file's bytes; nothing is written when the file is missing. */
static int embed_image(FILE *f, const char *path, const char *mime, const char *alt) {
    size_t len = 0;
    unsigned char *buf = cli_read_file(path, &len);
    if (!buf) return 0;
    fprintf(f, "<img alt=\"%s\" src=\"data:%s;base64,", alt, mime);
    int ok = cli_write_base64(f, buf, len);
    fputs("\">\n", f);
    free(buf);
    return ok;
}

typedef struct {
    const char *dir, *model_path, *data_path;
    const vae_model *model;
    const vae_train_state *st;
    const vae_eval_result *eval;
    const curves *curves;
    char pictures[5][PATH_SIZE]; /* samples, reconstructions, latent, manifold/traverse, interp */
} report;

static const char PAGE_SCRIPT[] =
    /* tells a headless browser (and a reader) whether every picture decoded */
    "<script>\n"
    "window.addEventListener('load', function () {\n"
    "  var imgs = document.images, ok = 0;\n"
    "  for (var i = 0; i < imgs.length; i++) if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;\n"
    "  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);\n"
    "});\n"
    "</script>\n";

static vae_status write_report(FILE *f, void *ctx) {
    const report *r = ctx;
    const vae_config *c = vae_model_config(r->model);
    const vae_eval_result *e = r->eval;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<title>vae report: %s</title>\n<style>\n"
               "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}\n"
               "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
               "text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
               "img{max-width:100%%;image-rendering:pixelated;border:1px solid #ccc}\n"
               "</style>\n</head>\n<body>\n", r->dir);
    fprintf(f, "<h1>Training run <code>%s</code></h1>\n<p>Model <code>%s</code>: %d-", r->dir,
            r->model_path, c->input_dim);
    for (int i = 0; i < c->n_encoder; i++) fprintf(f, "%d-", c->encoder[i]);
    fprintf(f, "(%d)-", c->latent_dim);
    for (int i = 0; i < c->n_decoder; i++) fprintf(f, "%d-", c->decoder[i]);
    fprintf(f, "%d, %s, %zu parameters; preset %s; trained %d epochs, batch %d, seed %llu.</p>\n",
            c->input_dim, vae_activation_name(c->activation), vae_model_num_params(r->model),
            r->st->preset[0] ? r->st->preset : "(none)", r->st->epochs, r->st->batch_size,
            (unsigned long long)r->st->seed);

    fputs("<h2>Evaluation</h2>\n<table>\n", f);
    fprintf(f, "<tr><th>data</th><td>%s, first %zu examples</td></tr>\n", r->data_path, e->count);
    char note[160];
    fprintf(f, "<tr><th>likelihood</th><td>%s</td></tr>\n", cli_likelihood_note(c, note, sizeof note));
    fprintf(f, "<tr><th>&minus;ELBO (nats)</th><td class=\"n\">%.3f</td></tr>\n", e->neg_elbo);
    fprintf(f, "<tr><th>reconstruction</th><td class=\"n\">%.3f</td></tr>\n", e->recon);
    fprintf(f, "<tr><th>KL</th><td class=\"n\">%.3f</td></tr>\n", e->kl);
    if (e->importance_samples > 0)
        fprintf(f, "<tr><th>&minus;log p(x), importance sampling K=%d (nats)</th>"
                   "<td class=\"n\">%.3f</td></tr>\n", e->importance_samples, e->nll);
    fprintf(f, "<tr><th>bits/dim</th><td class=\"n\">%.4f</td></tr>\n", e->bits_per_dim);
    fprintf(f, "<tr><th>active latent units</th><td class=\"n\">%d of %d</td></tr>\n</table>\n",
            e->active_units, e->latent_dim);

    if (r->curves->n > 0) {
        fputs("<h2>Training curves</h2>\n", f);
        write_curves_svg(f, r->curves);
    }
    static const char *const titles[5] = {"Samples from the prior", "Reconstructions",
                                          "Latent space", NULL, "Interpolation"};
    static const char *const mimes[5] = {"image/png", "image/png", "image/svg+xml", "image/png",
                                         "image/png"};
    for (int i = 0; i < 5; i++) {
        if (!r->pictures[i][0]) continue;
        const char *title = titles[i] ? titles[i]
                          : c->latent_dim == 2 ? "The 2-D latent manifold" : "Latent traversals";
        fprintf(f, "<h2>%s</h2>\n", title);
        if (i == 1) fputs("<p>Rows of test images, each followed by its reconstruction.</p>\n", f);
        if (i == 3 && c->latent_dim != 2)
            fputs("<p>One row per latent dimension swept from &minus;3 to 3.</p>\n", f);
        if (i == 4) fputs("<p>Linear (top) and spherical (bottom) paths between two test "
                          "images.</p>\n", f);
        embed_image(f, r->pictures[i], mimes[i], title);
    }
    fputs(PAGE_SCRIPT, f);
    return (fputs("</body>\n</html>\n", f) >= 0) ? VAE_OK : VAE_ERR_IO;
}

/* The report's pictures, left in its folder as report-*.png/svg: samples, reconstructions,
 * interpolation and the latent grid for image models, the latent plot for every model. */
static vae_status write_pictures(report *r, const vae_dataset *data, vae_error *err) {
    const vae_model *model = r->model;
    const vae_train_state *st = r->st;
    const int images = st->data_rows > 0 &&
                       st->data_rows * st->data_cols == vae_model_config(model)->input_dim;
    static const char *const names[5] = {"report-samples.png", "report-reconstructions.png",
                                         "report-latent.svg", "report-latent-grid.png",
                                         "report-interpolation.png"};
    for (int i = 0; i < 5; i++) snprintf(r->pictures[i], PATH_SIZE, "%s/%s", r->dir, names[i]);
    vae_status s = VAE_OK;
    if (images)
        s = cli_write_samples(r->pictures[0], NULL, model, st->data_rows, st->data_cols, 100, 1,
                              -1, err);
    if (s == VAE_OK && images) s = cli_write_reconstructions(r->pictures[1], model, data, 20, err);
    if (s == VAE_OK)
        s = cli_plot_latent(r->pictures[2], model, data, data->count,
                            cli_class_names(r->data_path), err);
    if (s == VAE_OK && images)
        s = vae_model_config(model)->latent_dim == 2
                ? cli_write_manifold(r->pictures[3], model, st, 20, 0, err)
                : cli_write_traverse(r->pictures[3], model, st, NULL, 0, 16, 9, 3.0, err);
    if (s == VAE_OK && images && data->count >= 2)
        s = cli_write_interpolation(r->pictures[4], model, st, data, 0, 1, 10, err);
    if (!images) r->pictures[0][0] = r->pictures[1][0] = r->pictures[3][0] = r->pictures[4][0] = 0;
    return s;
}

int cmd_report(int argc, char **argv) {
    static const char usage[] =
        "usage: vae report DIR [options]\n\n"
        "Writes DIR/report.html, one self-contained page of the training run in DIR (from vae\n"
        "train --out DIR): the evaluation table, the loss curves, samples, reconstructions, the\n"
        "latent space (plot, manifold or traversals) and an interpolation. The pictures it\n"
        "makes are left in DIR as report-*.png/svg.\n"
        "  -d, --data FILE  the run's test data: IDX, .npy or CSV (default the Fashion-MNIST\n"
        "                   test set, for a run trained on images of its size)\n"
        "      --label-column N  CSV data: the column of labels (or last)\n"
        "  -k, --samples K  importance samples for -log p(x), default 100 (0: ELBO only)\n"
        "  -n, --count N    evaluate the first N images, default 1000\n"
        "  -o, --out FILE   default DIR/report.html\n"
        CLI_DEVICE_HELP;
    const char *data_path = NULL, *out = NULL;
    int k = 100, count = 1000, first, code;
    long label_column = VAE_CSV_NO_LABELS;
    const cli_opt opts[] = {
        CLI_STR("data", 'd', &data_path, NULL),
        CLI_INT("samples", 'k', &k, 0, 1000000, NULL),
        CLI_INT("count", 'n', &count, 2, 1 << 30, NULL),
        CLI_STR("out", 'o', &out, NULL),
        CLI_LABEL_COLUMN(&label_column),
    };
    if (!cli_parse_options(argc, argv, "report", opts, (int)(sizeof opts / sizeof *opts), usage,
                           &first, &code) ||
        !cli_operands(argc, first, 1, 1, "report", "DIR", &code))
        return code;
    report r = {.dir = argv[first]};
    char model_path[PATH_SIZE], out_path[PATH_SIZE];
    snprintf(model_path, sizeof model_path, "%s/model.safetensors", r.dir);
    snprintf(out_path, sizeof out_path, "%s/report.html", r.dir);
    if (!out) out = out_path;
    r.model_path = model_path;
    vae_model *model = NULL;
    vae_dataset *data = NULL;
    vae_train_state st;
    code = cli_load_model(model_path, &model, &st);
    if (code == EXIT_OK && !data_path && vae_model_config(model)->input_dim != 784) {
        fprintf(stderr, "vae: report: %s was trained on data of %d values, not Fashion-MNIST's "
                "images: name its test data with --data FILE\n", r.dir,
                vae_model_config(model)->input_dim);
        code = EXIT_USAGE;
    }
    if (!data_path) data_path = DEFAULT_TEST_IMAGES;
    r.data_path = data_path;
    if (code == EXIT_OK) code = cli_load_data_labeled(data_path, NULL, label_column, model, &data);
    if (code != EXIT_OK) {
        vae_model_free(model);
        return code;
    }
    if ((size_t)count < data->count) data->count = (size_t)count;
    r.model = model, r.st = &st;

    vae_error err = {{0}};
    vae_eval_options o;
    vae_eval_options_default(&o);
    o.importance_samples = k;
    o.device = cli_compute_options()->device, o.precision = cli_compute_options()->precision;
    vae_eval_result result;
    vae_status s = vae_eval(model, data, &o, &result, NULL, &err);
    r.eval = &result;
    curves cv;
    read_curves(r.dir, &cv);
    r.curves = &cv;
    if (s == VAE_OK) s = write_pictures(&r, data, &err);
    if (s == VAE_OK) s = vae_write_atomic(out, write_report, &r, &err);
    if (s == VAE_OK) cli_say("vae: wrote %s\n", out);
    else code = cli_report(s, &err);
    curves_free(&cv);
    vae_dataset_free(data);
    vae_model_free(model);
    return code;
}

/* plot.c — `vae plot-latent`: where the data land in the latent space, colored by label, as a
 * PNG (drawn here; the legend gives label numbers) or an SVG (with axes and class names). */
#include "cli.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t PALETTE[10][3] = { /* matplotlib's tab10: tells ten classes apart */
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

static const char *const FASHION_NAMES[11] = {"T-shirt/top", "Trouser", "Pullover", "Dress",
                                              "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                                              "Ankle boot", NULL};

/* 3x5 digits, one row per byte, the top bit of 3 leftmost */
static const uint8_t DIGITS[10][5] = {{7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7},
                                      {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1}, {7, 4, 7, 1, 7},
                                      {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7},
                                      {7, 5, 7, 1, 7}};

typedef struct {
    uint8_t *rgb;
    int w, h;
} canvas;

static void put(canvas *c, int x, int y, const uint8_t color[3]) {
    if (x >= 0 && y >= 0 && x < c->w && y < c->h) memcpy(c->rgb + 3 * ((size_t)y * c->w + x), color, 3);
}

static void rect(canvas *c, int x0, int y0, int x1, int y1, const uint8_t color[3]) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) put(c, x, y, color);
}

static void number(canvas *c, int x, int y, int value, int scale, const uint8_t color[3]) {
    char text[16];
    int n = snprintf(text, sizeof text, "%d", value);
    for (int k = 0; k < n; k++)
        for (int r = 0; r < 5; r++)
            for (int b = 0; b < 3; b++)
                if (DIGITS[text[k] - '0'][r] >> (2 - b) & 1)
                    rect(c, x + (k * 4 + b) * scale, y + r * scale, x + (k * 4 + b + 1) * scale - 1,
                         y + (r + 1) * scale - 1, color);
}

typedef struct {
    const float *xy; /* (n,2) */
    const uint8_t *labels;
    size_t n;
    double lo[2], hi[2]; /* the plotted range */
    const char *axis[2];
    const char *const *names;
    int classes;
} scatter;

enum { PLOT = 560, MARGIN = 40, LEGEND = 200 };

static double to_px(const scatter *s, int axis, double v) {
    double t = (v - s->lo[axis]) / (s->hi[axis] - s->lo[axis]);
    return axis == 0 ? MARGIN + t * PLOT : MARGIN + (1 - t) * PLOT;
}

static vae_status write_png_plot(const char *path, const scatter *s, vae_error *err) {
    canvas c = {.w = MARGIN * 2 + PLOT + LEGEND, .h = MARGIN * 2 + PLOT};
    c.rgb = malloc((size_t)c.w * c.h * 3);
    if (!c.rgb) return VAE_ERR_NO_MEMORY;
    memset(c.rgb, 255, (size_t)c.w * c.h * 3);
    const uint8_t grey[3] = {200, 200, 200}, black[3] = {0, 0, 0};
    if (s->lo[0] < 0 && s->hi[0] > 0) rect(&c, (int)to_px(s, 0, 0), MARGIN, (int)to_px(s, 0, 0), MARGIN + PLOT, grey);
    if (s->lo[1] < 0 && s->hi[1] > 0) rect(&c, MARGIN, (int)to_px(s, 1, 0), MARGIN + PLOT, (int)to_px(s, 1, 0), grey);
    for (size_t i = 0; i < s->n; i++) {
        int x = (int)to_px(s, 0, s->xy[2 * i]), y = (int)to_px(s, 1, s->xy[2 * i + 1]);
        const uint8_t *col = PALETTE[s->labels ? s->labels[i] % 10 : 0];
        rect(&c, x - 1, y - 1, x + 1, y + 1, col);
    }
    rect(&c, MARGIN - 1, MARGIN - 1, MARGIN + PLOT + 1, MARGIN - 1, black); /* frame */
    rect(&c, MARGIN - 1, MARGIN + PLOT + 1, MARGIN + PLOT + 1, MARGIN + PLOT + 1, black);
    rect(&c, MARGIN - 1, MARGIN - 1, MARGIN - 1, MARGIN + PLOT + 1, black);
    rect(&c, MARGIN + PLOT + 1, MARGIN - 1, MARGIN + PLOT + 1, MARGIN + PLOT + 1, black);
    for (int k = 0; s->labels && k < s->classes && k < 10; k++) {
        int x = MARGIN * 2 + PLOT, y = MARGIN + 10 + 30 * k;
        rect(&c, x, y, x + 15, y + 15, PALETTE[k]);
        number(&c, x + 24, y + 1, k, 3, black);
    }
    vae_status st = vae_png_write(path, c.rgb, c.w, c.h, 3, err);
    free(c.rgb);
    return st;
}

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

static vae_status write_svg(FILE *f, void *ctx) {
    const scatter *s = ctx;
    int w = MARGIN * 2 + PLOT + LEGEND, h = MARGIN * 2 + PLOT + 20;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", w, h, w, h);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n",
            MARGIN, MARGIN, PLOT, PLOT);
    for (int axis = 0; axis < 2; axis++) { /* ticks at round numbers */
        double span = s->hi[axis] - s->lo[axis], step = pow(10, floor(log10(span / 5)));
        if (span / step > 8) step *= 2;
        if (span / step > 8) step *= 2.5;
        for (double v = ceil(s->lo[axis] / step) * step; v <= s->hi[axis]; v += step) {
            double p = to_px(s, axis, v);
            if (axis == 0)
                fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\"/>"
                           "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                        p, MARGIN + PLOT, p, MARGIN + PLOT + 5, p, MARGIN + PLOT + 18, v);
            else
                fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\"/>"
                           "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                        MARGIN - 5, p, MARGIN, p, MARGIN - 7, p + 4, v);
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", MARGIN + PLOT / 2, h - 4);
    xml_text(f, s->axis[0]);
    fprintf(f, "</text>\n<text x=\"%d\" y=\"%d\">&#8593; ", MARGIN, MARGIN - 8);
    xml_text(f, s->axis[1]);
    fputs("</text>\n<g fill-opacity=\"0.6\">\n", f);
    for (size_t i = 0; i < s->n; i++) {
        const uint8_t *c = PALETTE[s->labels ? s->labels[i] % 10 : 0];
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"1.6\" fill=\"#%02x%02x%02x\"/>\n",
                to_px(s, 0, s->xy[2 * i]), to_px(s, 1, s->xy[2 * i + 1]), c[0], c[1], c[2]);
    }
    fputs("</g>\n", f);
    for (int k = 0; s->labels && k < s->classes && k < 10; k++) {
        int x = MARGIN * 2 + PLOT, y = MARGIN + 10 + 22 * k;
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"#%02x%02x%02x\"/>"
                   "<text x=\"%d\" y=\"%d\">%d ", x, y, PALETTE[k][0], PALETTE[k][1],
                PALETTE[k][2], x + 18, y + 10, k);
        if (s->names) xml_text(f, s->names[k]);
        fputs("</text>\n", f);
    }
    return (fputs("</svg>\n", f) >= 0) ? VAE_OK : VAE_ERR_IO;
}

/* The range of each axis: the central 99.8% of the points, padded, so a few outliers do not
 * squeeze the rest into a corner. */
static void plot_range(const float *xy, size_t n, int axis, double *lo, double *hi) {
    float *v = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) v[i] = xy[2 * i + axis];
    for (size_t i = 1; i < n; i++) { /* insertion sort is fine for a few thousand */
        float x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
    double a = v[(size_t)(0.001 * (n - 1))], b = v[(size_t)(0.999 * (n - 1))];
    free(v);
    if (b - a < 1e-6) a -= 1, b += 1;
    *lo = a - 0.05 * (b - a), *hi = b + 0.05 * (b - a);
}

vae_status cli_plot_latent(const char *path, const vae_model *m, const vae_dataset *data,
                           size_t n, const char *const *names, vae_error *err) {
    const int latent = vae_model_config(m)->latent_dim;
    if (n > data->count) n = data->count;
    float *mu = malloc(sizeof(float) * n * latent), *xy = malloc(sizeof(float) * n * 2);
    vae_dataset first = *data; /* the first n samples */
    first.count = n;
    vae_status s = mu && xy ? vae_encode_data(m, &first, mu, NULL, err) : VAE_ERR_NO_MEMORY;
    char axis[2][64] = {"z1 (latent mean)", "z2 (latent mean)"};
    if (s == VAE_OK && latent == 1) {
        for (size_t i = 0; i < n; i++) xy[2 * i] = mu[i], xy[2 * i + 1] = 0;
        snprintf(axis[1], sizeof axis[1], "(1-D latent)");
    } else if (s == VAE_OK) {
        double explained[2];
        s = vae_pca2(mu, n, latent, xy, explained, err);
        if (latent > 2)
            for (int k = 0; k < 2; k++)
                snprintf(axis[k], sizeof axis[k], "principal component %d of the means (%.0f%%)",
                         k + 1, 100 * explained[k]);
    }
    if (s == VAE_OK) {
        scatter sc = {.xy = xy, .labels = data->labels, .n = n, .axis = {axis[0], axis[1]},
                      .names = names, .classes = 0};
        for (size_t i = 0; data->labels && i < n; i++)
            if (data->labels[i] + 1 > sc.classes) sc.classes = data->labels[i] + 1;
        plot_range(xy, n, 0, &sc.lo[0], &sc.hi[0]);
        plot_range(xy, n, 1, &sc.lo[1], &sc.hi[1]);
        s = cli_has_suffix(path, ".svg") ? vae_write_atomic(path, write_svg, &sc, err)
                                         : write_png_plot(path, &sc, err);
    }
    free(mu), free(xy);
    return s;
}

/* Fashion-MNIST's class names when the data come from it, else none (numbers). */
const char *const *cli_class_names(const char *data_path) {
    char lower[512];
    size_t i = 0;
    for (; data_path[i] && i + 1 < sizeof lower; i++) lower[i] = (char)tolower((unsigned char)data_path[i]);
    lower[i] = '\0';
    return strstr(lower, "fashion") ? FASHION_NAMES : NULL;
}

int cmd_plot_latent(int argc, char **argv) {
    static const char usage[] =
        "usage: vae plot-latent MODEL [DATA] [options]\n\n"
        "Draws the latent means of images of DATA (IDX; default the Fashion-MNIST test set),\n"
        "colored by their labels: the means themselves for a 2-D latent, their first two\n"
        "principal components for a larger one.\n"
        "  -n, --count N    the first N images, default 5000\n"
        "  -o, --out FILE   .png (legend: label numbers) or .svg (axes, class names);\n"
        "                   default latent.png\n"
        "      --label-column N  CSV data: the column of labels (or last)\n"
        CLI_DEVICE_HELP;
    const char *out = "latent.png", *data_path = DEFAULT_TEST_IMAGES;
    int count = 5000, first, code;
    long label_column = VAE_CSV_NO_LABELS;
    const cli_opt opts[] = {
        CLI_STR("out", 'o', &out, NULL),
        CLI_INT("count", 'n', &count, 2, 1 << 30, NULL),
        CLI_LABEL_COLUMN(&label_column),
    };
    if (!cli_parse_options(argc, argv, "plot-latent", opts, (int)(sizeof opts / sizeof *opts),
                           usage, &first, &code) ||
        !cli_operands(argc, first, 1, 2, "plot-latent", "MODEL [DATA]", &code))
        return code;
    if (first == argc - 2) data_path = argv[first + 1];
    vae_model *m = NULL;
    vae_dataset *data = NULL;
    vae_train_state st;
    code = cli_load_model(argv[first], &m, &st);
    if (code == EXIT_OK) code = cli_load_data_labeled(data_path, NULL, label_column, m, &data);
    if (code == EXIT_OK) {
        vae_error err = {{0}};
        vae_status s = cli_plot_latent(out, m, data, (size_t)count, cli_class_names(data_path), &err);
        if (s == VAE_OK) cli_say("vae: wrote %s\n", out);
        else code = cli_report(s, &err);
    }
    vae_dataset_free(data);
    vae_model_free(m);
    return code;
}

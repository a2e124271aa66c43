/* cmd_explorer.c — `vae explore`: one offline HTML page in which the model's decoder runs on
 * every pointer move (cli/explore/page.js), with the encoded means of data points to explore
 * around. The page's text is compiled in (scripts/embed_page.sh); this file writes its data. */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHEET_COLS 50 /* thumbnails per row of the sprite sheet */

typedef struct {
    const char *model_path, *data_path, *labels, *out, *class_names;
    long label_column;
    int count, fp16;
} explore_args;

typedef struct {
    const explore_args *a;
    const vae_model *model;
    const vae_dataset *data; /* the points shown (the first count of the data), or NULL */
    const float *means;      /* (count, L) */
    const unsigned char *sheet; /* their thumbnails as one PNG, or NULL */
    size_t sheet_len;
    int rows, cols;          /* image shape, 0 for tabular data */
    const char *const *names;
    char *name_store;        /* --class-names, split in place */
    const char *name_list[256];
} page;

/* IEEE half precision, rounded to nearest even (values beyond its range become infinities). */
static uint16_t to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, mant = x & 0x7fffff;
    int exp = (int)((x >> 23) & 0xff) - 127 + 15;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) { /* subnormal or zero */
        if (exp < -10) return (uint16_t)sign;
        mant |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp), half = mant >> shift, rest = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | (uint32_t)exp << 10 | mant >> 13, rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++; /* may carry into the exponent */
    return (uint16_t)half;
}

/* A JSON string (quotes, backslashes, control characters and "<" escaped: the data sits in a
 * <script> element, where "</script>" must not appear). */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == '<' || c == '>' || c == '&') fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static int floats_base64(FILE *f, const float *v, size_t n, int fp16) {
    if (!fp16) return cli_write_base64(f, (const unsigned char *)v, n * sizeof *v);
    uint16_t *h = malloc(n * sizeof *h);
    if (!h) return 0;
    for (size_t i = 0; i < n; i++) h[i] = to_half(v[i]);
    int ok = cli_write_base64(f, (const unsigned char *)h, n * sizeof *h);
    free(h);
    return ok;
}

/* The decoder's dense layers in order ("decoder.K", then "output"): their shapes as JSON, or
 * with weights set their values, weight then bias of each, as one base64 string. */
static int write_decoder(FILE *f, const page *p, int weights) {
    const vae_model *m = p->model;
    const float *params = vae_model_params((vae_model *)m);
    float *values = weights ? malloc(sizeof(float) * vae_model_num_params(m)) : NULL;
    size_t n = 0;
    int first = 1;
    if (weights && !values) return 0;
    if (!weights) fputc('[', f);
    for (int t = 0; t + 1 < vae_model_num_tensors(m); t++) {
        vae_tensor_info w = vae_model_tensor(m, t), b = vae_model_tensor(m, t + 1);
        size_t len = strlen(w.name);
        int decoder = strncmp(w.name, "decoder.", 8) == 0 || strncmp(w.name, "output.", 7) == 0;
        if (!decoder || len < 7 || strcmp(w.name + len - 7, ".weight") != 0) continue;
        if (weights) {
            memcpy(values + n, params + w.offset, sizeof(float) * (size_t)w.rows * w.cols);
            n += (size_t)w.rows * w.cols;
            memcpy(values + n, params + b.offset, sizeof(float) * (size_t)b.rows);
            n += (size_t)b.rows;
        } else {
            fprintf(f, "%s{\"in\":%d,\"out\":%d}", first ? "" : ",", w.cols, w.rows);
        }
        first = 0;
    }
    if (!weights) {
        fputc(']', f);
        return 1;
    }
    fprintf(f, "{\"dtype\":\"%s\",\"data\":\"", p->a->fp16 ? "f16" : "f32");
    int ok = floats_base64(f, values, n, p->a->fp16);
    fputs("\"}", f);
    free(values);
    return ok;
}

static void write_model_fields(FILE *f, const page *p) {
    const vae_config *c = vae_model_config(p->model);
    char arch[256];
    int at = snprintf(arch, sizeof arch, "%d", c->input_dim);
    for (int i = 0; i < c->n_encoder; i++) at += snprintf(arch + at, sizeof arch - (size_t)at, "-%d", c->encoder[i]);
    at += snprintf(arch + at, sizeof arch - (size_t)at, "-(%d)", c->latent_dim);
    for (int i = 0; i < c->n_decoder; i++) at += snprintf(arch + at, sizeof arch - (size_t)at, "-%d", c->decoder[i]);
    snprintf(arch + at, sizeof arch - (size_t)at, "-%d", c->input_dim);
    fputs("{\"version\":", f);
    json_string(f, vae_version());
    fputs(",\"title\":", f);
    json_string(f, p->a->model_path);
    char desc[512];
    snprintf(desc, sizeof desc, "%s, %s likelihood%s; %zu data points%s%s", arch,
             vae_likelihood_name(c->likelihood), c->n_classes ? ", conditional" : "",
             p->data ? p->data->count : (size_t)0, p->data ? " of " : "",
             p->data ? p->a->data_path : "");
    fputs(",\"description\":", f);
    json_string(f, desc);
    fprintf(f, ",\"latent\":%d,\"input\":%d,\"classes\":%d,\"likelihood\":", c->latent_dim,
            c->input_dim, c->n_classes);
    json_string(f, vae_likelihood_name(c->likelihood));
    fputs(",\"activation\":", f);
    json_string(f, vae_activation_name(c->activation));
    if (p->rows) fprintf(f, ",\"image\":[%d,%d]", p->rows, p->cols);
    else fputs(",\"image\":null", f);
    fputs(",\"layers\":", f);
    write_decoder(f, p, 0);
}

static int write_points(FILE *f, const page *p) {
    const int latent = vae_model_config(p->model)->latent_dim;
    /* the means in half precision: a map and a neighbour search need no more, and the demo
     * model's page stays under 3 MB with 2,000 thumbnails */
    fprintf(f, ",\"points\":{\"n\":%zu,\"sheet_cols\":%d,\"means_dtype\":\"f16\",\"means\":\"",
            p->data->count, SHEET_COLS);
    int ok = floats_base64(f, p->means, p->data->count * (size_t)latent, 1);
    fputs("\",\"labels\":", f);
    if (p->data->labels) {
        fputc('"', f);
        ok = ok && cli_write_base64(f, p->data->labels, p->data->count);
        fputc('"', f);
    } else {
        fputs("null", f);
    }
    fputs(",\"thumbs\":", f);
    if (p->sheet) {
        fputs("\"data:image/png;base64,", f);
        ok = ok && cli_write_base64(f, p->sheet, p->sheet_len);
        fputc('"', f);
    } else {
        fputs("null", f);
    }
    fputc('}', f);
    return ok;
}

static vae_status write_page(FILE *f, void *ctx) {
    const page *p = ctx;
    const int dim = vae_model_config(p->model)->input_dim;
    fputs(cli_explore_head, f);
    write_model_fields(f, p);
    fputs(",\"weights\":", f);
    int ok = write_decoder(f, p, 1);
    if (vae_model_data_mean(p->model)) {
        fputs(",\"standardize\":{\"mean\":\"", f);
        ok = ok && floats_base64(f, vae_model_data_mean(p->model), (size_t)dim, 0);
        fputs("\",\"std\":\"", f);
        ok = ok && floats_base64(f, vae_model_data_std(p->model), (size_t)dim, 0);
        fputs("\"}", f);
    }
    if (p->names) {
        fputs(",\"class_names\":[", f);
        for (int i = 0; p->names[i]; i++) {
            if (i) fputc(',', f);
            json_string(f, p->names[i]);
        }
        fputc(']', f);
    }
    if (p->data) ok = ok && write_points(f, p);
    fputc('}', f);
    fputs(cli_explore_tail, f);
    return (ok && !ferror(f)) ? VAE_OK : VAE_ERR_IO;
}

/* The points' images as one PNG sprite sheet, SHEET_COLS to a row (through a temporary file:
 * the library writes PNG files). */
static vae_status make_sheet(page *p, unsigned char **sheet, vae_error *err) {
    const size_t n = p->data->count, w = (size_t)p->cols, h = (size_t)p->rows;
    const size_t grid_rows = (n + SHEET_COLS - 1) / SHEET_COLS;
    uint8_t *pixels = calloc(grid_rows * h * SHEET_COLS * w, 1);
    char path[] = "/tmp/vae-explore-XXXXXX";
    int fd = pixels ? mkstemp(path) : -1;
    if (fd < 0) {
        free(pixels);
        snprintf(err->message, sizeof err->message, "no memory or temporary file for thumbnails");
        return VAE_ERR_NO_MEMORY;
    }
    close(fd);
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < h; r++)
            for (size_t c = 0; c < w; c++) {
                float v = p->data->x[i * w * h + r * w + c];
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                pixels[((i / SHEET_COLS) * h + r) * SHEET_COLS * w + (i % SHEET_COLS) * w + c] =
                    (uint8_t)lrintf(255.0f * (1.0f - v)); /* dark ink on white, as drawn */
            }
    vae_status s = vae_png_write_gray(path, pixels, (int)(SHEET_COLS * w), (int)(grid_rows * h), err);
    free(pixels);
    if (s == VAE_OK && !(*sheet = cli_read_file(path, &p->sheet_len))) {
        snprintf(err->message, sizeof err->message, "cannot read back the thumbnails");
        s = VAE_ERR_IO;
    }
    unlink(path);
    return s;
}

static int parse_args(int argc, char **argv, explore_args *a) {
    static const char usage[] =
        "usage: vae explore MODEL [DATA] [-o FILE] [options]\n\n"
        "Writes one self-contained HTML page (offline: no server, no network) in which the\n"
        "model's decoder runs in the browser: a map of the latent space with DATA's encoded\n"
        "means (default for 28x28 image models: the Fashion-MNIST test set), live decoding\n"
        "while dragging over it, a slider per latent dimension, nearest neighbours of a\n"
        "clicked point, interpolations, attribute vectors between classes and, for a\n"
        "conditional model, a label selector. MLP decoders (convolutional ones are refused).\n\n"
        "  -o, --out FILE          default explore.html\n"
        "  -n, --count N           data points shown, default 2000\n"
        "      --labels FILE       IDX labels of DATA (default: found beside it)\n"
        "      --label-column N    CSV data: the column of labels (or last)\n"
        "      --class-names LIST  comma-separated names of the labels 0, 1, ...\n"
        "      --fp16              the weights in half precision (half the size; the page's\n"
        "                          decoder then differs from the model's by about 1e-4\n"
        "                          instead of 1e-7)\n" CLI_DEVICE_HELP;
    *a = (explore_args){.out = "explore.html", .count = 2000, .label_column = VAE_CSV_NO_LABELS};
    const cli_opt opts[] = {
        CLI_STR("out", 'o', &a->out, NULL),
        CLI_INT("count", 'n', &a->count, 1, 100000, NULL),
        CLI_STR("labels", 0, &a->labels, NULL),
        CLI_LABEL_COLUMN(&a->label_column),
        CLI_STR("class-names", 0, &a->class_names, NULL),
        CLI_FLAG("fp16", 0, &a->fp16),
    };
    int first, code;
    if (!cli_parse_options(argc, argv, "explore", opts, (int)(sizeof opts / sizeof *opts), usage,
                           &first, &code))
        return code == EXIT_OK ? -1 : code;
    if (!cli_operands(argc, first, 1, 2, "explore", "MODEL [DATA]", &code)) return code;
    a->model_path = argv[first];
    a->data_path = first + 1 < argc ? argv[first + 1] : NULL;
    return EXIT_OK;
}

/* The model must have an MLP decoder (the page's decoder is dense layers). */
static int check_model(const vae_model *m, const char *path) {
    if (vae_model_config(m)->n_conv == 0) return EXIT_OK;
    fprintf(stderr, "vae: %s: its decoder has transposed convolutions; vae explore runs MLP "
            "decoders in the page\n", path);
    return EXIT_USAGE;
}

/* --class-names "a,b,c" into p->name_list. */
static void split_names(page *p, const char *list) {
    p->name_store = strdup(list);
    int n = 0;
    for (char *s = p->name_store; s && n < 255; n++) { /* empty names stay (",," is a gap) */
        p->name_list[n] = s;
        s = strchr(s, ',');
        if (s) *s++ = '\0';
    }
    p->name_list[n] = NULL;
    p->names = p->name_list;
}

int cmd_explorer(int argc, char **argv) {
    explore_args a;
    int code = parse_args(argc, argv, &a);
    if (code) return code < 0 ? EXIT_OK : code;
    if (!cli_output_ok(a.out)) return EXIT_CANTCREAT;
    cli_apply_threads();
    vae_model *model = NULL;
    vae_train_state st;
    if ((code = cli_load_model(a.model_path, &model, &st)) != EXIT_OK) return code;
    if ((code = check_model(model, a.model_path)) != EXIT_OK) goto done_model;
    const vae_config *cfg = vae_model_config(model);
    page p = {.a = &a, .model = model};
    if (st.data_rows * st.data_cols == cfg->input_dim) p.rows = st.data_rows, p.cols = st.data_cols;
    if (!a.data_path && p.rows == 28 && p.cols == 28) a.data_path = DEFAULT_TEST_IMAGES;
    vae_dataset *data = NULL;
    float *means = NULL;
    unsigned char *sheet = NULL;
    vae_error err = {{0}};
    vae_status s = VAE_OK;
    if (a.data_path) {
        if ((code = cli_load_data_labeled(a.data_path, a.labels, a.label_column, model, &data)) != EXIT_OK)
            goto done;
        if (data->count > (size_t)a.count) data->count = (size_t)a.count; /* the first N */
        means = malloc(sizeof(float) * data->count * (size_t)cfg->latent_dim);
        s = means ? vae_encode_data(model, data, means, NULL, &err) : VAE_ERR_NO_MEMORY;
        p.data = data, p.means = means;
        if (s == VAE_OK && p.rows && !vae_model_data_mean(model)) s = make_sheet(&p, &sheet, &err);
        p.sheet = sheet;
    }
    p.names = a.class_names ? NULL : a.data_path ? cli_class_names(a.data_path) : NULL;
    if (a.class_names) split_names(&p, a.class_names);
    if (s == VAE_OK) s = vae_write_atomic(a.out, write_page, &p, &err);
    if (s == VAE_OK) cli_say("vae: wrote %s\n", a.out);
    else code = cli_report(s, &err);
    free(p.name_store);
done:
    free(sheet);
    free(means);
    vae_dataset_free(data);
done_model:
    vae_model_free(model);
    return code;
}

/* test_data.c — the CSV and .npy readers: good files in their variants, and bad ones that must
 * each give VAE_ERR_FORMAT with the file and the place (row and column, or what the header
 * says) in one message. */
#include "check.h"
#include "vae.h"

#include <string.h>
#include <zlib.h>

static void write_text(const char *name, const char *text) {
    FILE *f = fopen(check_path(name), "wb");
    fputs(text, f);
    fclose(f);
}

static vae_dataset *csv(const char *name, long label_column, vae_status want, const char *msg) {
    vae_csv_options o;
    vae_csv_options_default(&o);
    o.label_column = label_column;
    vae_dataset *ds = NULL;
    vae_error err = {{0}};
    vae_status s = vae_csv_load(check_path(name), &o, &ds, &err);
    CHECK(s == want, "%s: status %d, want %d (%s)", name, s, want, err.message);
    if (msg) CHECK(strstr(err.message, msg) && strstr(err.message, name), "%s: message \"%s\" lacks \"%s\"",
                   name, err.message, msg);
    CHECK((s == VAE_OK) == (ds != NULL), "%s: a failure hands out nothing", name);
    return ds;
}

static void test_csv_good(void) {
    write_text("plain.csv", "1,2,3\n4,5.5,-6e-1\n\n");
    vae_dataset *d = csv("plain.csv", VAE_CSV_NO_LABELS, VAE_OK, NULL);
    if (d) {
        CHECK(d->count == 2 && d->dim == 3 && !d->labels, "shape %zu x %d", d->count, d->dim);
        CHECK(d->x[0] == 1 && d->x[4] == 5.5f && d->x[5] == -0.6f, "values");
        vae_dataset_free(d);
    }
    /* a header, CRLF line ends, spaces, the label in the last column (sklearn's layout) */
    write_text("sk.csv", "150,4,setosa,versicolor,virginica\r\n5.1, 3.5,1.4,0.2,0\r\n4.9,3.0,1.4,0.2,2\r\n");
    d = csv("sk.csv", VAE_CSV_LAST_COLUMN, VAE_OK, NULL);
    if (d) {
        CHECK(d->count == 2 && d->dim == 4 && d->labels && d->labels[1] == 2, "labels");
        CHECK(d->x[1] == 3.5f && d->x[4] == 4.9f, "values after the header");
        vae_dataset_free(d);
    }
    /* the first column as labels: 5.1 is not an integer */
    vae_dataset_free(csv("sk.csv", 0, VAE_ERR_FORMAT, "row 2, column 1: a label must be an integer"));
    /* gzip, found by content */
    gzFile gz = gzopen(check_path("z.csv.gz"), "wb");
    gzputs(gz, "a,b\n1,2\n3,4\n");
    gzclose(gz);
    d = csv("z.csv.gz", VAE_CSV_NO_LABELS, VAE_OK, NULL);
    if (d) {
        CHECK(d->count == 2 && d->dim == 2 && d->x[3] == 4, "gzip");
        vae_dataset_free(d);
    }
}

/* What spreadsheets write: a UTF-8 byte-order mark, CRLF line ends, quoted numbers (RFC 4180).
 * Each file once lost its first data row as a "header" without a word. */
static void test_csv_as_spreadsheets_write_it(void) {
    write_text("bom.csv", "\xef\xbb\xbf" "0.1,0.2,0.3\r\n0.4,0.5,0.6\r\n0.7,0.8,0.9\r\n");
    vae_csv_options o;
    vae_csv_options_default(&o);
    vae_dataset *d = NULL;
    vae_error err = {{0}};
    CHECK(vae_csv_load(check_path("bom.csv"), &o, &d, &err) == VAE_OK, "%s", err.message);
    CHECK(d && d->count == 3 && d->dim == 3 && d->x[0] == 0.1f && d->x[8] == 0.9f,
          "three rows of three");
    CHECK(!o.header, "no header said");
    vae_dataset_free(d), d = NULL;
    write_text("quoted.csv", "\"x\",\"y, the second\"\r\n\"1.5\",\"2\"\r\n3,\"-4e-1\"\r\n");
    CHECK(vae_csv_load(check_path("quoted.csv"), &o, &d, &err) == VAE_OK, "%s", err.message);
    CHECK(d && d->count == 2 && d->dim == 2 && d->x[0] == 1.5f && d->x[3] == -0.4f,
          "quoted numbers");
    CHECK(o.header && strcmp(o.header_text, "x,y, the second") == 0, "header said: %d \"%s\"",
          o.header, o.header_text);
    vae_dataset_free(d);
}

static void test_csv_bad(void) {
    write_text("cell.csv", "x,y\n1,2\n3,oops\n");
    vae_dataset_free(csv("cell.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "row 3, column 2: expected a number, got \"oops\""));
    write_text("ragged.csv", "1,2,3\n4,5\n");
    vae_dataset_free(csv("ragged.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "row 2 has 2 cells, the first data row has 3"));
    write_text("empty-cell.csv", "1,,3\n");
    vae_dataset_free(csv("empty-cell.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "no data rows"));
    write_text("empty-cell2.csv", "1,2,3\n1,,3\n");
    vae_dataset_free(csv("empty-cell2.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "row 2, column 2"));
    write_text("nan.csv", "1,2\nnan,3\n");
    vae_dataset_free(csv("nan.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "row 2, column 1"));
    write_text("huge.csv", "1,2\n1e300,3\n");
    vae_dataset_free(csv("huge.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "row 2, column 1: \"1e300\" is not a finite number that fits a float"));
    write_text("inf.csv", "1,2\n3,inf\n");
    vae_dataset_free(csv("inf.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "row 2, column 2: \"inf\" is not a finite number"));
    write_text("two-headers.csv", "a,b\nc,d\n1,2\n");
    vae_dataset_free(csv("two-headers.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "row 2, column 1: expected a number, got \"c\" (only the first row may be a header)"));
    write_text("quote.csv", "1,\"2\n3,4\n");
    vae_dataset_free(csv("quote.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "unterminated quote"));
    write_text("header-only.csv", "a,b,c\n");
    vae_dataset_free(csv("header-only.csv", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, "no data rows"));
    write_text("label.csv", "1,2,300\n");
    vae_dataset_free(csv("label.csv", VAE_CSV_LAST_COLUMN, VAE_ERR_FORMAT, "integer in 0..255"));
    write_text("one.csv", "7\n");
    vae_dataset_free(csv("one.csv", VAE_CSV_LAST_COLUMN, VAE_ERR_FORMAT, "no data columns"));
    vae_dataset_free(csv("one.csv", 5, VAE_ERR_INVALID_ARGUMENT, "no column 6"));
    vae_dataset_free(csv("missing.csv", VAE_CSV_NO_LABELS, VAE_ERR_OPEN, "cannot open"));
    /* a gzip stream cut short */
    gzFile gz = gzopen(check_path("full.csv.gz"), "wb");
    for (int i = 0; i < 20000; i++) gzprintf(gz, "%d,%d,%d\n", i, i * 7 % 13, i % 5);
    gzclose(gz);
    FILE *f = fopen(check_path("full.csv.gz"), "rb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    f = fopen(check_path("cut.csv.gz"), "wb");
    fwrite(buf, 1, n / 2, f);
    fclose(f);
    vae_dataset_free(csv("cut.csv.gz", VAE_CSV_NO_LABELS, VAE_ERR_FORMAT, NULL));
}

/* A .npy file: header dict text, then `bytes` of data. */
static void write_npy(const char *name, int major, const char *dict, const void *data, size_t bytes) {
    FILE *f = fopen(check_path(name), "wb");
    size_t prefix = major == 1 ? 10 : 12, len = strlen(dict) + 1;
    size_t total = (prefix + len + 63) / 64 * 64, hl = total - prefix;
    unsigned char pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major, 0};
    pre[8] = (unsigned char)(hl & 255), pre[9] = (unsigned char)(hl >> 8);
    fwrite(pre, 1, prefix, f);
    fputs(dict, f);
    for (size_t i = len; i < hl; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 1, bytes, f);
    fclose(f);
}

static vae_dataset *npy(const char *name, vae_status want, const char *msg) {
    vae_dataset *ds = NULL;
    vae_error err = {{0}};
    vae_status s = vae_npy_load(check_path(name), 0, &ds, &err);
    CHECK(s == want, "%s: status %d, want %d (%s)", name, s, want, err.message);
    if (msg) CHECK(strstr(err.message, msg) && strstr(err.message, name), "%s: message \"%s\" lacks \"%s\"",
                   name, err.message, msg);
    CHECK((s == VAE_OK) == (ds != NULL), "%s: a failure hands out nothing", name);
    return ds;
}

static void test_npy(void) {
    float f[6] = {1, 2, 3, 4, 5, 6};
    double d[4] = {0.5, -1, 2, 1e-3};
    uint8_t u[8] = {0, 255, 51, 0, 0, 0, 0, 255};
    write_npy("f.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f, sizeof f);
    vae_dataset *ds = npy("f.npy", VAE_OK, NULL);
    if (ds) CHECK(ds->count == 2 && ds->dim == 3 && ds->x[5] == 6, "float32");
    vae_dataset_free(ds);
    write_npy("d.npy", 2, "{\"descr\": \"<f8\", \"fortran_order\": False, \"shape\": (4,)}", d, sizeof d);
    ds = npy("d.npy", VAE_OK, NULL);
    if (ds) CHECK(ds->count == 4 && ds->dim == 1 && ds->x[3] == 1e-3f, "float64, 1-D, version 2");
    vae_dataset_free(ds);
    write_npy("u.npy", 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2), }", u, sizeof u);
    ds = npy("u.npy", VAE_OK, NULL);
    if (ds) CHECK(ds->dim == 4 && ds->rows == 2 && ds->cols == 2 && ds->x[1] == 1.0f &&
                  ds->x[2] == 0.2f, "uint8 images scaled");
    vae_dataset_free(ds);

    write_npy("be.npy", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", f, sizeof f);
    vae_dataset_free(npy("be.npy", VAE_ERR_FORMAT, "dtype '>f4' is not supported"));
    write_npy("i8.npy", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", f, 24);
    vae_dataset_free(npy("i8.npy", VAE_ERR_FORMAT, "'<i8'"));
    write_npy("fo.npy", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f, sizeof f);
    vae_dataset_free(npy("fo.npy", VAE_ERR_FORMAT, "Fortran order"));
    write_npy("short.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }", f, sizeof f);
    vae_dataset_free(npy("short.npy", VAE_ERR_FORMAT, "needs 36 bytes of data, the file has 24"));
    write_npy("long.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }", f, sizeof f);
    vae_dataset_free(npy("long.npy", VAE_ERR_FORMAT, "needs 12 bytes"));
    write_npy("over.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", f, 8);
    vae_dataset_free(npy("over.npy", VAE_ERR_FORMAT, "overflows"));
    write_npy("big.npy", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999, 2), }", f, 8);
    vae_dataset_free(npy("big.npy", VAE_ERR_FORMAT, "'shape'"));
    write_npy("struct.npy", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", f, 4);
    vae_dataset_free(npy("struct.npy", VAE_ERR_FORMAT, "structured"));
    write_npy("key.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", f, 4);
    vae_dataset_free(npy("key.npy", VAE_ERR_FORMAT, "unknown key 'x'"));
    write_npy("nokey.npy", 1, "{'descr': '<f4', 'shape': (1,), }", f, 4);
    vae_dataset_free(npy("nokey.npy", VAE_ERR_FORMAT, "lacks"));
    write_npy("v9.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", f, 4);
    FILE *fp = fopen(check_path("v9.npy"), "r+b");
    fseek(fp, 6, SEEK_SET);
    fputc(9, fp);
    fclose(fp);
    vae_dataset_free(npy("v9.npy", VAE_ERR_FORMAT, "version 9.0"));
    float nan_data[2] = {1, NAN};
    write_npy("nan.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }", nan_data, 8);
    vae_dataset_free(npy("nan.npy", VAE_ERR_FORMAT, "sample 1, value 2"));
    write_text("text.npy", "not numpy at all");
    vae_dataset_free(npy("text.npy", VAE_ERR_FORMAT, "not a .npy file"));
    write_npy("scalar.npy", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", f, 4);
    vae_dataset_free(npy("scalar.npy", VAE_ERR_FORMAT, "scalar"));
    /* a header length beyond the bound */
    unsigned char pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0, 0x40};
    fp = fopen(check_path("hl.npy"), "wb");
    fwrite(pre, 1, 12, fp);
    fclose(fp);
    vae_dataset_free(npy("hl.npy", VAE_ERR_FORMAT, "header of"));
}

/* Standardization: fit, apply, invert, and the model file keeps it. */
static void test_standardization(void) {
    vae_dataset d = {.count = 4, .dim = 2};
    float x[8] = {1, 5, 2, 5, 3, 5, 4, 5}, mean[2], std[2];
    d.x = x;
    vae_standardize_fit(&d, mean, std);
    CHECK(mean[0] == 2.5f && mean[1] == 5 && fabsf(std[0] - 1.2909944f) < 1e-6f && std[1] == 1,
          "fit: %g %g %g %g", mean[0], mean[1], std[0], std[1]);
    vae_standardize(x, 4, 2, mean, std, 0);
    CHECK(fabsf(x[0] + 1.161895f) < 1e-5f && x[1] == 0, "apply");
    vae_standardize(x, 4, 2, mean, std, 1);
    CHECK(fabsf(x[6] - 4) < 1e-6f && x[7] == 5, "invert");
    vae_config cfg = {.input_dim = 2, .latent_dim = 1, .n_encoder = 1, .encoder = {3},
                      .n_decoder = 1, .decoder = {3}, .likelihood = VAE_LIK_GAUSSIAN,
                      .variance = VAE_VAR_PER_DIM, .variance_floor = 0.01f};
    vae_model *m = NULL, *back = NULL;
    vae_error err;
    vae_model_create(&m, &cfg, 1, &err);
    CHECK(vae_model_set_standardization(m, mean, std, &err) == VAE_OK, "%s", err.message);
    float bad[2] = {1, 0};
    CHECK(vae_model_set_standardization(m, mean, bad, &err) == VAE_ERR_INVALID_ARGUMENT, "std 0");
    CHECK(vae_model_save(check_path("std.safetensors"), m, NULL, NULL, &err) == VAE_OK, "%s",
          err.message);
    CHECK(vae_model_load(check_path("std.safetensors"), &back, NULL, NULL, &err) == VAE_OK, "%s",
          err.message);
    if (back) {
        CHECK(vae_model_data_mean(back) && vae_model_data_mean(back)[0] == 2.5f &&
                  vae_model_data_std(back)[1] == 1, "kept in the file");
        CHECK(vae_model_config(back)->likelihood == VAE_LIK_GAUSSIAN &&
                  vae_model_config(back)->variance == VAE_VAR_PER_DIM &&
                  vae_model_config(back)->variance_floor == 0.01f, "likelihood kept");
        CHECK(memcmp(vae_model_params(back), vae_model_params(m),
                     vae_model_num_params(m) * sizeof(float)) == 0, "weights and log-variances");
    }
    vae_model_free(m), vae_model_free(back);
}

int main(void) {
    if (!check_make_dir("data")) return 1;
    RUN(test_csv_good);
    RUN(test_csv_bad);
    RUN(test_csv_as_spreadsheets_write_it);
    RUN(test_npy);
    RUN(test_standardization);
    check_remove_dir();
    return CHECK_SUMMARY();
}

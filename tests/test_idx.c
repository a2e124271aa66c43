/* test_idx.c — the IDX reader over good files and a corpus of bad ones: each bad file must give
 * VAE_ERR_FORMAT (or OPEN) with a message naming the file and the problem, allocate nothing
 * near what a lying header claims, and never crash. */
#include "check.h"
#include "vae.h"

#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

/* An IDX header: 00 00 type ndims, then big-endian sizes. Returns its length. */
static size_t header(uint8_t *h, int type, int ndims, const uint32_t *dims) {
    h[0] = 0, h[1] = 0, h[2] = (uint8_t)type, h[3] = (uint8_t)ndims;
    for (int i = 0; i < ndims; i++) {
        h[4 + 4 * i] = (uint8_t)(dims[i] >> 24), h[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        h[6 + 4 * i] = (uint8_t)(dims[i] >> 8), h[7 + 4 * i] = (uint8_t)dims[i];
    }
    return 4 + 4 * (size_t)ndims;
}

static void write_file(const char *name, const void *a, size_t na, const void *b, size_t nb) {
    FILE *f = fopen(check_path(name), "wb");
    fwrite(a, 1, na, f);
    if (nb) fwrite(b, 1, nb, f);
    fclose(f);
}

static void write_gz(const char *name, const void *a, size_t na, const void *b, size_t nb) {
    gzFile gz = gzopen(check_path(name), "wb");
    gzwrite(gz, a, (unsigned)na);
    for (size_t off = 0; off < nb; off += 1u << 26) {
        size_t chunk = nb - off < (1u << 26) ? nb - off : (1u << 26);
        gzwrite(gz, (const uint8_t *)b + off, (unsigned)chunk);
    }
    gzclose(gz);
}

static uint8_t pixels[5 * 4 * 3];

static void write_good(void) {
    uint8_t h[16], hl[8];
    for (int i = 0; i < 60; i++) pixels[i] = (uint8_t)(i * 4);
    size_t n = header(h, 8, 3, (uint32_t[]){5, 4, 3});
    write_file("good-images-idx3-ubyte", h, n, pixels, 60);
    write_gz("good-images-idx3-ubyte.gz", h, n, pixels, 60);
    uint8_t labels[5] = {0, 1, 2, 3, 9};
    n = header(hl, 8, 1, (uint32_t[]){5});
    write_file("good-labels-idx1-ubyte", hl, n, labels, 5);
    write_gz("good-labels-idx1-ubyte.gz", hl, n, labels, 5);
    n = header(hl, 8, 1, (uint32_t[]){4});
    write_file("four-labels", hl, n, labels, 4);
}

static void check_good(const char *images, const char *labels) {
    vae_dataset *ds;
    vae_error err = {{0}};
    vae_status s = vae_idx_load(check_path(images), labels ? check_path(labels) : NULL, &ds, &err);
    CHECK(s == VAE_OK, "%s: %s", images, err.message);
    if (s != VAE_OK) return;
    CHECK(ds->count == 5 && ds->dim == 12 && ds->rows == 4 && ds->cols == 3, "shape %zu %d %d %d",
          ds->count, ds->dim, ds->rows, ds->cols);
    for (int i = 0; i < 60; i++) CHECK(ds->x[i] == pixels[i] / 255.0f, "pixel %d", i);
    CHECK(ds->x[59] <= 1.0f && ds->x[0] == 0.0f, "range");
    if (labels) CHECK(ds->labels && ds->labels[4] == 9, "labels");
    else CHECK(ds->labels == NULL, "no labels");
    vae_dataset_free(ds);
}

static void test_good_plain(void) { check_good("good-images-idx3-ubyte", NULL); }
static void test_good_gzip(void) { check_good("good-images-idx3-ubyte.gz", "good-labels-idx1-ubyte.gz"); }
static void test_good_with_labels(void) {
    check_good("good-images-idx3-ubyte", "good-labels-idx1-ubyte");
}

static void test_find_labels(void) {
    char out[512];
    CHECK(vae_idx_find_labels(check_path("good-images-idx3-ubyte.gz"), out, sizeof out) == 1, "found");
    CHECK(strcmp(out, check_path("good-labels-idx1-ubyte.gz")) == 0, "name %s", out);
    CHECK(vae_idx_find_labels(check_path("nolabel-images-idx3-ubyte"), out, sizeof out) == 0,
          "absent file not found");
    CHECK(vae_idx_find_labels(check_path("plain.bin"), out, sizeof out) == 0, "no images in name");
    char tiny[8];
    CHECK(vae_idx_find_labels(check_path("good-images-idx3-ubyte"), tiny, sizeof tiny) == 0,
          "buffer too small is refused");
}

/* Loads a bad file: expects `want`, a message that names the file and contains `needle`. */
static void expect_bad(const char *name, vae_status want, const char *needle) {
    vae_dataset *ds = (vae_dataset *)1;
    vae_error err = {{0}};
    vae_status s = vae_idx_load(check_path(name), NULL, &ds, &err);
    CHECK(s == want, "%s: status %s, expected %s (%s)", name, vae_status_str(s),
          vae_status_str(want), err.message);
    CHECK(ds == NULL, "%s: output not cleared", name);
    CHECK(strstr(err.message, name) != NULL, "%s: message does not name the file: %s", name,
          err.message);
    CHECK(strstr(err.message, needle) != NULL, "%s: message lacks \"%s\": %s", name, needle,
          err.message);
    CHECK(strchr(err.message, '\n') == NULL, "one line");
}

static void test_missing_file(void) { expect_bad("does-not-exist", VAE_ERR_OPEN, "cannot open"); }

static void test_bad_magic(void) {
    uint8_t junk[64] = "PK\3\4 this is a zip file, not IDX";
    write_file("bad-magic", junk, sizeof junk, NULL, 0);
    expect_bad("bad-magic", VAE_ERR_FORMAT, "not an IDX file");
    write_file("empty", junk, 0, NULL, 0);
    expect_bad("empty", VAE_ERR_FORMAT, "magic");
    uint8_t h[40] = {0};
    header(h, 8, 0, NULL);
    write_file("zero-dims", h, 4, NULL, 0);
    expect_bad("zero-dims", VAE_ERR_FORMAT, "not an IDX file");
    h[3] = 9;
    write_file("nine-dims", h, 40, NULL, 0);
    expect_bad("nine-dims", VAE_ERR_FORMAT, "not an IDX file");
}

static void test_unsupported_type(void) {
    uint8_t h[16], data[8 * 4] = {0};
    size_t n = header(h, 0x0D, 3, (uint32_t[]){2, 2, 2});
    write_file("float-idx", h, n, data, sizeof data);
    expect_bad("float-idx", VAE_ERR_FORMAT, "float32");
}

static void test_truncated(void) {
    uint8_t h[16];
    size_t n = header(h, 8, 3, (uint32_t[]){5, 4, 3});
    write_file("short-header", h, 9, NULL, 0);
    expect_bad("short-header", VAE_ERR_FORMAT, "header");
    write_file("short-data", h, n, pixels, 59);
    expect_bad("short-data", VAE_ERR_FORMAT, "truncated");
    write_gz("short-data.gz", h, n, pixels, 59);
    expect_bad("short-data.gz", VAE_ERR_FORMAT, "truncated");
    write_file("long-data", h, n, pixels, 60);
    FILE *f = fopen(check_path("long-data"), "ab");
    fputc(7, f);
    fclose(f);
    expect_bad("long-data", VAE_ERR_FORMAT, "unexpected");
    uint8_t longer[61] = {0};
    memcpy(longer, pixels, 60);
    write_gz("long-data.gz", h, n, longer, 61);
    expect_bad("long-data.gz", VAE_ERR_FORMAT, "unexpected");
}

static void test_zero_and_overflowing_sizes(void) {
    uint8_t h[20];
    size_t n = header(h, 8, 3, (uint32_t[]){0, 28, 28});
    write_file("zero-count", h, n, NULL, 0);
    expect_bad("zero-count", VAE_ERR_FORMAT, "zero");
    n = header(h, 8, 4, (uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu});
    write_file("overflow", h, n, pixels, 60);
    expect_bad("overflow", VAE_ERR_FORMAT, "overflow");
    /* a header claiming 2^31 images of 28x28 (1.7 TB) in a 76-byte file: no allocation */
    n = header(h, 8, 3, (uint32_t[]){0x80000000u, 28, 28});
    write_file("huge-claim", h, n, pixels, 60);
    expect_bad("huge-claim", VAE_ERR_FORMAT, "truncated");
    write_gz("huge-claim.gz", h, n, pixels, 60);
    expect_bad("huge-claim.gz", VAE_ERR_FORMAT, "truncated");
    /* more values per sample than supported */
    n = header(h, 8, 3, (uint32_t[]){1, 8192, 8192});
    write_gz("wide.gz", h, n, NULL, 0);
    expect_bad("wide.gz", VAE_ERR_FORMAT, "truncated");
}

static long max_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_gzip_bomb(void) {
    /* 400 MB of zeros compress to ~400 KB; the header claims only 1000 bytes, so the reader must
     * stop after them and report the excess, using no memory for the rest */
    size_t big = (size_t)400 << 20;
    uint8_t *zeros = calloc(big, 1), h[16];
    size_t n = header(h, 8, 3, (uint32_t[]){10, 10, 10});
    write_gz("bomb.gz", h, n, zeros, big);
    /* and a header that claims the whole 400 MB but is followed by less than that */
    n = header(h, 8, 3, (uint32_t[]){4000, 1024, 1024});
    write_gz("bomb-claim.gz", h, n, zeros, big);
    free(zeros);
    long before = max_rss_kb();
    expect_bad("bomb.gz", VAE_ERR_FORMAT, "unexpected data");
    long after_small = max_rss_kb();
    CHECK(after_small - before < 16 * 1024, "a 1000-byte claim used %ld KB", after_small - before);
    expect_bad("bomb-claim.gz", VAE_ERR_FORMAT, "truncated");
}

static void test_corrupt_gzip(void) {
    uint8_t h[16];
    size_t n = header(h, 8, 3, (uint32_t[]){5, 4, 3});
    write_gz("corrupt.gz", h, n, pixels, 60);
    FILE *f = fopen(check_path("corrupt.gz"), "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    /* flip bytes in the deflate data and the CRC trailer */
    for (long off = 12; off < size; off += 5) {
        fseek(f, off, SEEK_SET);
        int c = fgetc(f);
        fseek(f, off, SEEK_SET);
        fputc(c ^ 0x5a, f);
    }
    fclose(f);
    expect_bad("corrupt.gz", VAE_ERR_FORMAT, "gzip");
    /* a stream cut in the middle */
    write_gz("cut.gz", h, n, pixels, 60);
    f = fopen(check_path("cut.gz"), "r+b");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fclose(f);
    CHECK(truncate(check_path("cut.gz"), size - 12) == 0, "truncate");
    vae_dataset *ds;
    vae_error err = {{0}};
    vae_status s = vae_idx_load(check_path("cut.gz"), NULL, &ds, &err);
    CHECK(s == VAE_ERR_FORMAT, "cut gzip: %s %s", vae_status_str(s), err.message);
}

static void test_labels(void) {
    vae_dataset *ds;
    vae_error err = {{0}};
    vae_status s = vae_idx_load(check_path("good-images-idx3-ubyte"), check_path("four-labels"), &ds,
                                &err);
    CHECK(s == VAE_ERR_FORMAT && strstr(err.message, "4 labels") && strstr(err.message, "5 images"),
          "count mismatch: %s", err.message);
    s = vae_idx_load(check_path("good-labels-idx1-ubyte"), NULL, &ds, &err);
    CHECK(s == VAE_ERR_FORMAT && strstr(err.message, "label file"), "labels as images: %s",
          err.message);
    uint8_t *labels;
    size_t count;
    s = vae_idx_load_labels(check_path("good-images-idx3-ubyte"), &labels, &count, &err);
    CHECK(s == VAE_ERR_FORMAT && labels == NULL, "images as labels: %s", err.message);
    s = vae_idx_load_labels(check_path("good-labels-idx1-ubyte.gz"), &labels, &count, &err);
    CHECK(s == VAE_OK && count == 5 && labels[4] == 9, "labels load: %s", err.message);
    free(labels);
}

static void test_real_fashion_mnist(void) {
    const char *p = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    if (access(p, R_OK) != 0) {
        printf("# skipped: %s not installed\n", p);
        return;
    }
    char labels[512];
    CHECK(vae_idx_find_labels(p, labels, sizeof labels), "labels beside");
    vae_dataset *ds;
    vae_error err;
    vae_status s = vae_idx_load(p, labels, &ds, &err);
    CHECK(s == VAE_OK, "%s", err.message);
    if (s != VAE_OK) return;
    CHECK(ds->count == 10000 && ds->dim == 784 && ds->rows == 28, "shape");
    int hist[10] = {0};
    for (size_t i = 0; i < ds->count; i++) hist[ds->labels[i] < 10 ? ds->labels[i] : 0]++;
    for (int c = 0; c < 10; c++) CHECK(hist[c] == 1000, "class %d has %d", c, hist[c]);
    vae_dataset_free(ds);
}

int main(void) {
    if (!check_make_dir("idx")) return 1;
    write_good();
    RUN(test_good_plain);
    RUN(test_good_gzip);
    RUN(test_good_with_labels);
    RUN(test_find_labels);
    RUN(test_missing_file);
    RUN(test_bad_magic);
    RUN(test_unsupported_type);
    RUN(test_truncated);
    RUN(test_zero_and_overflowing_sizes);
    RUN(test_gzip_bomb);
    RUN(test_corrupt_gzip);
    RUN(test_labels);
    RUN(test_real_fashion_mnist);
    check_remove_dir();
    return CHECK_SUMMARY();
}

/* test_io.c — the file writers: .npy as numpy reads it, and the atomic writer that leaves the
 * previous file whole when writing fails. */
#include "check.h"
#include "vae.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

static void test_npy_layout(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/a.npy", check_dir);
    float v[6] = {1, 2, 3, 4, 5, -0.5f};
    vae_error err;
    CHECK(vae_npy_write_f32(path, v, 2, 3, &err) == VAE_OK, "%s", err.message);
    size_t len = 0;
    unsigned char *b = slurp(path, &len);
    if (!b) return;
    size_t hl = b[8] | (size_t)b[9] << 8;
    CHECK(memcmp(b, "\x93NUMPY\x01\x00", 8) == 0, "magic and version");
    CHECK((10 + hl) % 64 == 0 && b[10 + hl - 1] == '\n', "header padded to 64, newline-ended");
    CHECK(strstr((char *)b + 10, "'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
          "dict: %.80s", b + 10);
    CHECK(len == 10 + hl + sizeof v && memcmp(b + 10 + hl, v, sizeof v) == 0, "data, nothing after");
    free(b);
    double d[2] = {0.25, -1e300};
    snprintf(path, sizeof path, "%s/b.npy", check_dir);
    CHECK(vae_npy_write_f64(path, d, 2, 1, &err) == VAE_OK, "%s", err.message);
    b = slurp(path, &len);
    hl = b[8] | (size_t)b[9] << 8;
    CHECK(strstr((char *)b + 10, "'<f8'") && strstr((char *)b + 10, "(2, 1)") &&
              len == 10 + hl + sizeof d && memcmp(b + 10 + hl, d, sizeof d) == 0, "f64");
    free(b);
}

static vae_status write_hello(FILE *f, void *ctx) { return (fputs(ctx, f) >= 0) ? VAE_OK : VAE_ERR_IO; }
static vae_status write_then_fail(FILE *f, void *ctx) { fputs(ctx, f); return VAE_ERR_IO; }

static void test_atomic_writer(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/keep.txt", check_dir);
    vae_error err;
    CHECK(vae_write_atomic(path, write_hello, "first", &err) == VAE_OK, "%s", err.message);
    CHECK(vae_write_atomic(path, write_then_fail, "second, half written", &err) == VAE_ERR_IO &&
              strstr(err.message, "previous file is untouched"), "failure reported: %s",
          err.message);
    size_t len;
    unsigned char *b = slurp(path, &len);
    CHECK(b && len == 5 && memcmp(b, "first", 5) == 0, "the previous file is whole");
    free(b);
    DIR *d = opendir(check_dir);
    struct dirent *e;
    int temporaries = 0;
    while (d && (e = readdir(d))) temporaries += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    CHECK(temporaries == 0, "%d temporary files left", temporaries);
    CHECK(vae_write_atomic("/proc/no-such-dir/x", write_hello, "x", &err) == VAE_ERR_CREATE,
          "unwritable folder: %s", err.message);
    /* a folder as the target: said as such, no temporary name in the message */
    CHECK(vae_write_atomic(check_dir, write_hello, "x", &err) == VAE_ERR_CREATE &&
              strstr(err.message, "is a folder") && !strstr(err.message, ".tmp."),
          "a folder: %s", err.message);
}

int main(void) {
    if (!check_make_dir("io")) return 1;
    RUN(test_npy_layout);
    RUN(test_atomic_writer);
    check_remove_dir();
    return CHECK_SUMMARY();
}

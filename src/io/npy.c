/* npy.c — NumPy .npy output (format version 1.0), so results open with numpy.load. */
#include "core/internal.h"

#include <string.h>

typedef struct {
    const void *data;
    size_t rows, cols, item;
    const char *descr;
} npy_array;

static vae_status write_npy(FILE *f, void *ctx) {
    const npy_array *a = ctx;
    char dict[128];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }",
                     a->descr, a->rows, a->cols);
    /* magic (6) + version (2) + length (2) + dict, padded with spaces and ended by a newline to
     * a multiple of 64 bytes, as numpy writes it */
    size_t total = (10 + (size_t)n + 1 + 63) / 64 * 64;
    size_t header_len = total - 10;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(header_len & 255),
                             (unsigned char)(header_len >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = (size_t)n; ok && i < header_len - 1; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    size_t count = a->rows * a->cols;
    return (ok && (count == 0 || fwrite(a->data, a->item, count, f) == count)) ? VAE_OK : VAE_ERR_IO;
}

static vae_status npy_write(const char *path, const void *data, size_t rows, size_t cols,
                            size_t item, const char *descr, vae_error *err) {
    size_t count;
    VAE_RETURN_IF(__builtin_mul_overflow(rows, cols, &count) || count > SIZE_MAX / item, err,
                  VAE_ERR_INVALID_ARGUMENT, "%s: %zu x %zu values is too many", path, rows, cols);
    npy_array a = {data, rows, cols, item, descr};
    return vae_write_atomic(path, write_npy, &a, err);
}

/* little-endian hosts only write these descriptors truthfully; x86-64 and arm64 are */
vae_status vae_npy_write_f32(const char *path, const float *data, size_t rows, size_t cols,
                             vae_error *err) {
    return npy_write(path, data, rows, cols, sizeof(float), "<f4", err);
}

vae_status vae_npy_write_f64(const char *path, const double *data, size_t rows, size_t cols,
                             vae_error *err) {
    return npy_write(path, data, rows, cols, sizeof(double), "<f8", err);
}

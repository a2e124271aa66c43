/* png.c — grayscale PNG output through libpng, and image grids for sample sheets. */
#include "core/internal.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <string.h>

vae_status vae_png_write_gray(const char *path, const uint8_t *pixels, int width, int height,
                              vae_error *err) {
    VAE_RETURN_IF(width < 1 || height < 1 || width > (1 << 20) || height > (1 << 20), err,
                  VAE_ERR_INVALID_ARGUMENT, "%s: image size %dx%d out of range", path, width,
                  height);
    FILE *f = fopen(path, "wb");
    VAE_RETURN_IF(!f, err, VAE_ERR_OPEN, "%s: cannot create: %s", path, strerror(errno));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "%s: cannot start the PNG writer", path);
    }
    /* libpng reports errors by longjmp; volatile keeps f valid across it */
    FILE *volatile file = f;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(file);
        return vae_fail(err, VAE_ERR_IO, "%s: error writing PNG", path);
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++) png_write_row(png, pixels + (size_t)y * width);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    int failed = ferror(file) != 0;
    failed |= fclose(file) != 0;
    VAE_RETURN_IF(failed, err, VAE_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return VAE_OK;
}

vae_status vae_png_write_grid(const char *path, const float *images, int count, int rows,
                              int cols, int grid_cols, int scale, vae_error *err) {
    const int gap = 2;
    VAE_RETURN_IF(count < 1 || rows < 1 || cols < 1 || grid_cols < 1 || scale < 1 || scale > 16,
                  err, VAE_ERR_INVALID_ARGUMENT, "%s: bad grid arguments", path);
    int grid_rows = (count + grid_cols - 1) / grid_cols;
    if (grid_cols > count) grid_cols = count;
    long w = (long)grid_cols * (cols * scale + gap) + gap;
    long h = (long)grid_rows * (rows * scale + gap) + gap;
    VAE_RETURN_IF(w > (1 << 20) || h > (1 << 20), err, VAE_ERR_INVALID_ARGUMENT,
                  "%s: grid of %ldx%ld pixels is too large", path, w, h);
    uint8_t *canvas = malloc((size_t)w * (size_t)h);
    VAE_RETURN_IF(!canvas, err, VAE_ERR_NO_MEMORY, "%s: out of memory for the grid", path);
    memset(canvas, 64, (size_t)w * (size_t)h); /* dark gray gaps frame each picture */
    for (int i = 0; i < count; i++) {
        const float *img = images + (size_t)i * rows * cols;
        long x0 = gap + (long)(i % grid_cols) * (cols * scale + gap);
        long y0 = gap + (long)(i / grid_cols) * (rows * scale + gap);
        for (int y = 0; y < rows * scale; y++)
            for (int x = 0; x < cols * scale; x++) {
                float v = img[(y / scale) * cols + x / scale];
                v = !(v >= 0.0f) ? 0.0f : v > 1.0f ? 1.0f : v; /* NaN draws black */
                canvas[(y0 + y) * w + x0 + x] = (uint8_t)(v * 255.0f + 0.5f);
            }
    }
    vae_status s = vae_png_write_gray(path, canvas, (int)w, (int)h, err);
    free(canvas);
    return s;
}

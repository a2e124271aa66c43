/* png.c — grayscale PNG output through libpng, and image grids for sample sheets. */
#include "core/internal.h"

#include <png.h>
#include <setjmp.h>
#include <string.h>

typedef struct {
    const uint8_t *pixels;
    int width, height, channels;
} png_picture;

/* libpng reports errors by longjmp; this returns 0 then, and the writer's caller cleans up */
static vae_status write_png(FILE *f, void *ctx) {
    const png_picture *im = ctx;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        return VAE_ERR_IO;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return VAE_ERR_IO;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)im->width, (png_uint_32)im->height, 8,
                 im->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)im->width * (size_t)im->channels;
    for (int y = 0; y < im->height; y++) png_write_row(png, im->pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return VAE_OK;
}

vae_status vae_png_write(const char *path, const uint8_t *pixels, int width, int height,
                         int channels, vae_error *err) {
    VAE_RETURN_IF(width < 1 || height < 1 || width > (1 << 20) || height > (1 << 20), err,
                  VAE_ERR_INVALID_ARGUMENT, "%s: image size %dx%d out of range", path, width,
                  height);
    VAE_RETURN_IF(channels != 1 && channels != 3, err, VAE_ERR_INVALID_ARGUMENT,
                  "%s: %d channels (1 or 3 are written)", path, channels);
    png_picture im = {pixels, width, height, channels};
    return vae_write_atomic(path, write_png, &im, err);
}

vae_status vae_png_write_gray(const char *path, const uint8_t *pixels, int width, int height,
                              vae_error *err) {
    return vae_png_write(path, pixels, width, height, 1, err);
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

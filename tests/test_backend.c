/* test_backend.c — the CPU backends on the ops table: oneDNN's dense layers against the CPU's
 * (forward values and every gradient within 1e-5 relative), training through each (the same
 * losses within 1e-4), naming and choosing them (AUTO keeps an available one and says which);
 * the dense layers' parameters' gradients in one pass on each table; batch threads, and timing
 * them against the products' split; bf16 products (--precision bf16) within bf16's rounding of
 * fp32's. */
#include "backend/ops_table.h"
#include "model/model_internal.h"
#include "train/workers.h"
#include "check.h"
#include "vae.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <string.h>

static void fill(float *v, size_t n, uint64_t seed) {
    vae_rng r = vae_rng_make(seed, 3);
    vae_rng_normal(&r, v, n);
}

/* |a - b| <= 1e-5 (|b| + scale / 10), scale = max |b| */
static int close_all(const float *a, const float *b, size_t n) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > 1e-5 * (fabs(b[i]) + 0.1 * scale)) return 0;
    return 1;
}

/* Whether this build and CPU run bf16 products (why says why not) */
static int bf16_runs(char *why, size_t size) {
#ifdef VAE_ONEDNN
    return vae_onednn_bf16_ops && op_bf16_check(why, size);
#else
    snprintf(why, size, "this build has no oneDNN");
    return 0;
#endif
}

/* Whether a bf16 test skips here: then its skip line says why; else why names the kernel */
static int bf16_skips(const char *test, char *why, size_t size) {
    if (bf16_runs(why, size)) return 0;
    printf("skip %s (%s)\n", test, vae_onednn_bf16_ops ? why : "this build has no oneDNN");
    return 1;
}

static void test_names(void) {
    vae_backend b;
    vae_error err = {{0}};
    CHECK(vae_backend_parse("onednn", &b, NULL) == VAE_OK && b == VAE_BACKEND_ONEDNN, "onednn");
    CHECK(vae_backend_parse("mkl", &b, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "unknown backend \"mkl\""),
          "mkl refused: %s", err.message);
    CHECK(strcmp(vae_backend_name(VAE_BACKEND_AUTO), "auto") == 0, "auto's name");
    CHECK(vae_backend_available(VAE_BACKEND_OPENBLAS) && vae_backend_available(VAE_BACKEND_AUTO),
          "openblas and auto always");
    CHECK(vae_backend_default() ==
              (vae_onednn_ops ? VAE_BACKEND_ONEDNN : VAE_BACKEND_OPENBLAS),
          "the default: oneDNN where the build has it");
}

static void test_dense_layer_matches(void) {
    if (!vae_onednn_ops) {
        printf("skip test_dense_layer_matches (this build has no oneDNN)\n");
        return;
    }
    enum { B = 37, IN = 61, OUT = 45 };
    float x[B * IN], w[OUT * IN], b[OUT], dy[B * OUT];
    fill(x, B * IN, 1), fill(w, OUT * IN, 2), fill(b, OUT, 3), fill(dy, B * OUT, 4);
    const vae_activation relu = VAE_ACT_RELU;
    float y1[B * OUT], y2[B * OUT], dx1[B * IN], dx2[B * IN];
    float dw1[OUT * IN], dw2[OUT * IN], db1[OUT], db2[OUT];
    for (int accumulate = 0; accumulate <= 1; accumulate++) {
        vae_cpu_ops.linear_forward(y1, x, w, b, B, IN, OUT, &relu);
        vae_onednn_ops->linear_forward(y2, x, w, b, B, IN, OUT, &relu);
        CHECK(close_all(y2, y1, B * OUT), "forward");
        fill(dx1, B * IN, 5), fill(dw1, OUT * IN, 6), fill(db1, OUT, 7);
        memcpy(dx2, dx1, sizeof dx1), memcpy(dw2, dw1, sizeof dw1), memcpy(db2, db1, sizeof db1);
        vae_cpu_ops.linear_backward(dx1, dw1, db1, dy, x, w, B, IN, OUT, accumulate, accumulate);
        vae_onednn_ops->linear_backward(dx2, dw2, db2, dy, x, w, B, IN, OUT, accumulate,
                                        accumulate);
        CHECK(close_all(dx2, dx1, B * IN), "dx (accumulate %d)", accumulate);
        CHECK(close_all(dw2, dw1, OUT * IN), "dw (accumulate %d)", accumulate);
        CHECK(memcmp(db2, db1, sizeof db1) == 0, "db: the same pass (accumulate %d)", accumulate);
    }
}

/* The dense layers' parameters' gradients in one pass (batch threads' second half): on every
 * table, one and three threads, layers of odd widths (rows split in blocks of 16 and a rest)
 * added to what dw and db hold, against each layer's own backward. */
static void check_dense_param_grads(const vae_ops *ops) {
    enum { B = 37, N = 3, MOST = 200 * 61 };
    static const int ins[N] = {61, 5, 45}, outs[N] = {200, 3, 45};
    static float x[N][B * 61], dy[N][B * 200], dw1[N][MOST], dw2[N][MOST];
    float db1[N][200], db2[N][200];
    op_dense_grad g[N];
    for (int l = 0; l < N; l++) {
        const int in = ins[l], out = outs[l];
        fill(x[l], (size_t)B * in, 10 + l), fill(dy[l], (size_t)B * out, 20 + l);
        fill(dw1[l], (size_t)out * in, 30 + l), fill(db1[l], (size_t)out, 40 + l);
        ops->linear_backward(NULL, dw1[l], db1[l], dy[l], x[l], NULL, B, in, out, 0, 1);
        g[l] = (op_dense_grad){dw2[l], db2[l], dy[l], x[l], B, in, out};
    }
    for (int threads = 1; threads <= 3; threads += 2) {
        vae_set_num_threads(threads);
        for (int l = 0; l < N; l++)
            fill(dw2[l], (size_t)outs[l] * ins[l], 30 + l), fill(db2[l], (size_t)outs[l], 40 + l);
        ops->dense_param_grads(g, N);
        for (int l = 0; l < N; l++) {
            CHECK(close_all(dw2[l], dw1[l], (size_t)outs[l] * ins[l]), "%s, %d threads: dw of "
                  "layer %d", ops->name, threads, l);
            CHECK(memcmp(db2[l], db1[l], sizeof(float) * outs[l]) == 0, "%s, %d threads: db of "
                  "layer %d (the same sums in the same order)", ops->name, threads, l);
        }
    }
    vae_set_num_threads(1);
}

static void test_dense_param_grads(void) {
    check_dense_param_grads(&vae_cpu_ops);
    if (vae_onednn_ops) check_dense_param_grads(vae_onednn_ops);
    if (vae_onednn_bf16_ops) check_dense_param_grads(vae_onednn_bf16_ops);
}

/* A Conv2d (8 -> 16 channels, 10x10 -> 5x5) or ConvTranspose2d (its mirror) of the conv
 * preset's kind, k 4, stride 2, padding 1, its passes split among `workers` threads */
static conv_shape test_conv_shape(int transposed, int workers) {
    conv_shape s = {.in_c = transposed ? 16 : 8, .in_h = transposed ? 5 : 10,
                    .out_c = transposed ? 8 : 16, .out_h = transposed ? 10 : 5, .k = 4,
                    .stride = 2, .pad = 1, .workers = workers};
    s.in_w = s.in_h, s.out_w = s.out_h;
    return s;
}

/* oneDNN's convolutions (its convolution and deconvolution primitives, and the im2col passes
 * around its sgemm they fall back on) against the CPU's: a Conv2d and a ConvTranspose2d of the
 * conv preset's kind on B samples (131: a chunk of 128 and a rest), every output and gradient
 * within 1e-5 relative (the primitives sum the bias gradient in an order of their own). */
static void check_conv_backend(int transposed, int B) {
    const conv_shape s = test_conv_shape(transposed, 1);
    const size_t nx = (size_t)B * s.in_c * s.in_h * s.in_w, ny = (size_t)B * s.out_c * s.out_h * s.out_w;
    const size_t nw = (size_t)s.in_c * s.out_c * 16;
    float *x = malloc(4 * nx), *w = malloc(4 * nw), *b = malloc(4 * (size_t)s.out_c);
    float *dy = malloc(4 * ny), *y1 = malloc(4 * ny), *y2 = malloc(4 * ny), *y3 = malloc(4 * ny);
    float *dx1 = malloc(4 * nx), *dx2 = malloc(4 * nx), *dx3 = malloc(4 * nx);
    float *dw1 = malloc(4 * nw), *dw2 = malloc(4 * nw), *dw3 = malloc(4 * nw);
    float *db1 = malloc(4 * (size_t)s.out_c), *db2 = malloc(4 * (size_t)s.out_c);
    float *db3 = malloc(4 * (size_t)s.out_c);
    /* oneDNN's primitives ask for more scratch than the im2col passes */
    float *cols = malloc(4 * vae_onednn_ops->conv_cols_size(&s, B, transposed));
    fill(x, nx, 11), fill(w, nw, 12), fill(b, (size_t)s.out_c, 13), fill(dy, ny, 14);
    fill(dw1, nw, 15), fill(db1, (size_t)s.out_c, 16); /* gradients accumulate */
    memcpy(dw2, dw1, 4 * nw), memcpy(db2, db1, 4 * (size_t)s.out_c);
    memcpy(dw3, dw1, 4 * nw), memcpy(db3, db1, 4 * (size_t)s.out_c);
    const vae_ops *ops[2] = {&vae_cpu_ops, vae_onednn_ops};
    float *y[2] = {y1, y2}, *dx[2] = {dx1, dx2}, *dw[2] = {dw1, dw2}, *db[2] = {db1, db2};
    for (int i = 0; i < 2; i++) {
        (transposed ? ops[i]->convt2d_forward : ops[i]->conv2d_forward)(y[i], x, w, b, B, &s, cols);
        (transposed ? ops[i]->convt2d_backward : ops[i]->conv2d_backward)(dx[i], dw[i], db[i], dy,
                                                                          x, w, B, &s, cols);
    }
#ifdef VAE_ONEDNN /* (only called where oneDNN is) */
    if (transposed) {
        op_convt2d_forward_im2col_onednn(y3, x, w, b, B, &s, cols);
        op_convt2d_backward_im2col_onednn(dx3, dw3, db3, dy, x, w, B, &s, cols);
    } else {
        op_conv2d_forward_im2col_onednn(y3, x, w, b, B, &s, cols);
        op_conv2d_backward_im2col_onednn(dx3, dw3, db3, dy, x, w, B, &s, cols);
    }
#endif
    const char *what = transposed ? "convT" : "conv";
    const float *got[2][4] = {{y2, dx2, dw2, db2}, {y3, dx3, dw3, db3}};
    for (int i = 0; i < 2; i++) {
        const char *how = i ? "im2col" : "primitives";
        CHECK(close_all(got[i][0], y1, ny), "%s forward, %s, batch %d", what, how, B);
        CHECK(close_all(got[i][1], dx1, nx), "%s dx, %s, batch %d", what, how, B);
        CHECK(close_all(got[i][2], dw1, nw), "%s dw, %s, batch %d", what, how, B);
        CHECK(close_all(got[i][3], db1, (size_t)s.out_c), "%s db, %s, batch %d", what, how, B);
    }
    free(x), free(w), free(b), free(dy), free(y1), free(y2), free(dx1), free(dx2);
    free(y3), free(dx3), free(dw3), free(db3);
    free(dw1), free(dw2), free(db1), free(db2), free(cols);
}

/* v (n, c, hw) between NCHW and channel blocks of k (nChw16c, nChw8c); back: blocks to NCHW */
static void reblock(float *to, const float *from, int n, int c, int hw, int k, int back) {
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int j = 0; j < hw; j++) {
                const size_t plain = ((size_t)i * c + ch) * hw + j;
                const size_t block = (((size_t)i * (c / k) + ch / k) * hw + j) * k + ch % k;
                if (back) to[plain] = from[block];
                else to[block] = from[plain];
            }
}

/* A oneDNN table's convolutions on activations in channel blocks (its block on this CPU: what
 * a workspace keeps between two convolutions) against the same on NCHW: input blocked (in),
 * output blocked (out), or both (32 channels each: two or four blocks), B samples (131: a
 * chunk of 128 and a rest), every output and gradient within 1e-5 relative. */
static void check_conv_blocked(const vae_ops *o, int transposed, int in, int out, int B) {
    /* 8 workers: chunks of 128 samples on NCHW as on blocks, so that the sums that make dw
     * run over the same samples (for chunks of 32, 4 partial sums of 32 samples each differ
     * from one sum by their rounding: up to 2e-6 of the largest dw here) */
    conv_shape s = test_conv_shape(transposed, 8);
    if (in) s.in_c = 32;
    if (out) s.out_c = 32;
    const int k = o->conv_block();
    conv_shape sb = s;
    sb.in_blocked = in ? k : 0, sb.out_blocked = out ? k : 0;
    const int ihw = s.in_h * s.in_w, ohw = s.out_h * s.out_w;
    const size_t nx = (size_t)B * s.in_c * ihw, ny = (size_t)B * s.out_c * ohw;
    const size_t nw = (size_t)s.in_c * s.out_c * 16, nb = (size_t)s.out_c;
    const size_t ncols = o->conv_cols_size(&s, B, transposed);
    const size_t ncols_b = o->conv_cols_size(&sb, B, transposed);
    float *x = malloc(4 * nx), *xb = malloc(4 * nx), *w = malloc(4 * nw), *b = malloc(4 * nb);
    float *dy = malloc(4 * ny), *dyb = malloc(4 * ny), *y1 = malloc(4 * ny), *y2 = malloc(4 * ny);
    float *dx1 = malloc(4 * nx), *dx2 = malloc(4 * nx), *t = malloc(4 * (nx > ny ? nx : ny));
    float *dw1 = calloc(nw, 4), *dw2 = calloc(nw, 4), *db1 = calloc(nb, 4), *db2 = calloc(nb, 4);
    float *cols = malloc(4 * (ncols > ncols_b ? ncols : ncols_b));
    fill(x, nx, 21), fill(w, nw, 22), fill(b, nb, 23), fill(dy, ny, 24);
    if (in) reblock(xb, x, B, s.in_c, ihw, k, 0);
    else memcpy(xb, x, 4 * nx);
    if (out) reblock(dyb, dy, B, s.out_c, ohw, k, 0);
    else memcpy(dyb, dy, 4 * ny);
    (transposed ? o->convt2d_forward : o->conv2d_forward)(y1, x, w, b, B, &s, cols);
    (transposed ? o->convt2d_backward : o->conv2d_backward)(dx1, dw1, db1, dy, x, w, B, &s, cols);
    (transposed ? o->convt2d_forward : o->conv2d_forward)(t, xb, w, b, B, &sb, cols);
    if (out) reblock(y2, t, B, s.out_c, ohw, k, 1);
    else memcpy(y2, t, 4 * ny);
    (transposed ? o->convt2d_backward : o->conv2d_backward)(t, dw2, db2, dyb, xb, w, B, &sb, cols);
    if (in) reblock(dx2, t, B, s.in_c, ihw, k, 1);
    else memcpy(dx2, t, 4 * nx);
    char what[48];
    snprintf(what, sizeof what, "%s %s", o->name, transposed ? "convT" : "conv");
    CHECK(close_all(y2, y1, ny), "%s forward, blocks in %d out %d, batch %d", what, in, out, B);
    CHECK(close_all(dx2, dx1, nx), "%s dx, blocks in %d out %d, batch %d", what, in, out, B);
    CHECK(close_all(dw2, dw1, nw), "%s dw, blocks in %d out %d, batch %d", what, in, out, B);
    CHECK(close_all(db2, db1, nb), "%s db, blocks in %d out %d, batch %d", what, in, out, B);
    /* the bias gradient on blocks: the same bits on 3 threads as on 1; and the scratch sized
     * on 1 thread fits the passes on 3 (bf16's weights' gradient takes other inputs there):
     * the data's gradient as on 1, the weights' finite (a pass out of room gives NaNs) */
    float *db3 = calloc(nb, 4);
    vae_set_num_threads(3);
    (transposed ? o->convt2d_backward : o->conv2d_backward)(t, dw2, db3, dyb, xb, w, B, &sb, cols);
    vae_set_num_threads(1);
    CHECK(!memcmp(db3, db2, 4 * nb), "%s db on 3 threads, blocks in %d out %d, batch %d", what,
          in, out, B);
    if (in) reblock(dx2, t, B, s.in_c, ihw, k, 1);
    else memcpy(dx2, t, 4 * nx);
    int finite = 1;
    for (size_t i = 0; i < nw; i++) finite &= isfinite(dw2[i]) != 0;
    CHECK(close_all(dx2, dx1, nx) && finite, "%s on 3 threads in the scratch of 1, blocks in %d "
          "out %d, batch %d", what, in, out, B);
    free(db3);
    free(x), free(xb), free(w), free(b), free(dy), free(dyb), free(y1), free(y2), free(dx1);
    free(dx2), free(t), free(dw1), free(dw2), free(db1), free(db2), free(cols);
}

/* A workspace made before the model took oneDNN's convolutions (whose primitives need more
 * scratch than the im2col passes at a batch of 1: 848 floats against 512 here) is refused,
 * not overrun; a new one runs. */
static void check_stale_workspace(void) {
    vae_config cfg = {.input_dim = 64, .latent_dim = 2, .n_encoder = 1, .encoder = {6},
                      .n_decoder = 1, .decoder = {5}, .activation = VAE_ACT_RELU, .n_conv = 1,
                      .image_channels = 1, .image_rows = 8, .image_cols = 8};
    cfg.conv[0].channels = 16, cfg.conv[0].kernel = 4, cfg.conv[0].stride = 2;
    cfg.conv[0].padding = 1;
    vae_model *m = NULL;
    vae_workspace *old = NULL, *fresh = NULL;
    vae_error err = {{0}};
    float x[64] = {0}, eps[2] = {0};
    const vae_batch batch = {1, x, eps, NULL, NULL};
    CHECK(vae_model_create(&m, &cfg, 3, &err) == VAE_OK &&
              vae_workspace_create(&old, m, 1, &err) == VAE_OK &&
              vae_model_set_backend(m, VAE_BACKEND_ONEDNN, 1, NULL, &err) == VAE_OK,
          "conv model, workspace, then oneDNN: %s", err.message);
    CHECK(vae_forward(m, old, &batch, NULL, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "made before"), "the old workspace refused: %s", err.message);
    CHECK(vae_workspace_create(&fresh, m, 1, &err) == VAE_OK &&
              vae_forward(m, fresh, &batch, NULL, &err) == VAE_OK,
          "a new one runs: %s", err.message);
    vae_workspace_free(old), vae_workspace_free(fresh);
    vae_model_free(m);
}

static void test_conv_matches(void) {
    if (!vae_onednn_ops) {
        printf("skip test_conv_matches (this build has no oneDNN)\n");
        return;
    }
    for (int b = 9; b <= 131; b += 122) check_conv_backend(0, b), check_conv_backend(1, b);
    /* the bf16 table too, where this CPU runs bf16 (blocks and NCHW round the same values) */
    char why[256];
    const vae_ops *tables[2] = {vae_onednn_ops, bf16_runs(why, sizeof why) ? vae_onednn_bf16_ops
                                                                          : NULL};
    CHECK(vae_onednn_ops->conv_block() == 8 || vae_onednn_ops->conv_block() == 16,
          "oneDNN's convolutions take blocks of 8 or 16 channels here: %d",
          vae_onednn_ops->conv_block());
    for (int i = 0; i < 2 && tables[i] && tables[i]->conv_block(); i++)
        for (int t = 0; t <= 1; t++)
            for (int b = 9; b <= 131; b += 122)
                for (int in = 0; in <= 1; in++)
                    for (int out = !in; out <= 1; out++)
                        check_conv_blocked(tables[i], t, in, out, b);
    check_stale_workspace();
    /* AUTO times a convolutional model's layers, convolutions included */
    vae_config cfg = {.input_dim = 64, .latent_dim = 2, .n_encoder = 1, .encoder = {16},
                      .n_decoder = 1, .decoder = {16}, .activation = VAE_ACT_RELU, .n_conv = 1,
                      .image_channels = 1, .image_rows = 8, .image_cols = 8};
    cfg.conv[0].channels = 4, cfg.conv[0].kernel = 4, cfg.conv[0].stride = 2;
    cfg.conv[0].padding = 1;
    vae_model *m;
    vae_error err = {{0}};
    vae_backend chosen = VAE_BACKEND_AUTO;
    CHECK(vae_model_create(&m, &cfg, 3, &err) == VAE_OK &&
              vae_model_set_backend(m, VAE_BACKEND_AUTO, 32, &chosen, &err) == VAE_OK &&
              chosen != VAE_BACKEND_AUTO && chosen == vae_model_backend(m),
          "auto on a conv model: %s (%s)", vae_backend_name(chosen), err.message);
    vae_model_free(m);
}

/* A model with two convolutions each way (16 channels between them, kept in channel blocks by
 * oneDNN's workspace) on 8x8 images */
static vae_status blocks_model(vae_model **m, vae_backend backend, vae_error *err) {
    vae_config cfg = {.input_dim = 64, .latent_dim = 2, .n_encoder = 1, .encoder = {8},
                      .n_decoder = 1, .decoder = {8}, .activation = VAE_ACT_RELU, .n_conv = 2,
                      .image_channels = 1, .image_rows = 8, .image_cols = 8};
    cfg.conv[0].channels = 16, cfg.conv[0].kernel = 4, cfg.conv[0].stride = 2;
    cfg.conv[0].padding = 1;
    cfg.conv[1].channels = 16, cfg.conv[1].kernel = 3, cfg.conv[1].stride = 1;
    cfg.conv[1].padding = 1;
    VAE_TRY(vae_model_create(m, &cfg, 4, err));
    return vae_model_set_backend(*m, backend, 9, NULL, err);
}

/* n rows for a model of 64 inputs and a latent of 2 (blocks_model's): x uniform in [0, 1)
 * and eps standard normal, drawn from seed (x) and seed + 1 (eps) */
static vae_batch batch_of_64(float *x, float *eps, int n, uint64_t seed) {
    vae_rng r = vae_rng_make(seed, 1);
    for (int i = 0; i < n * 64; i++) x[i] = vae_rng_uniform(&r);
    fill(eps, (size_t)n * 2, seed + 1);
    return (vae_batch){n, x, eps, NULL, NULL};
}

/* The whole model on oneDNN with its activations in channel blocks between the convolutions:
 * the loss and every gradient of a batch as OpenBLAS's NCHW passes give them (1e-5 relative);
 * a workspace with batch threads' views goes back to NCHW and trains the same function. */
static void test_conv_model_blocks(void) {
    if (!vae_onednn_ops) {
        printf("skip test_conv_model_blocks (this build has no oneDNN)\n");
        return;
    }
    enum { B = 9 };
    float x[B * 64], eps[B * 2];
    const vae_batch batch = batch_of_64(x, eps, B, 7);
    vae_model *m[2] = {NULL, NULL};
    vae_workspace *ws[2] = {NULL, NULL};
    vae_loss loss[2];
    memset(loss, 0, sizeof loss);
    vae_error err = {{0}};
    const vae_backend backends[2] = {VAE_BACKEND_OPENBLAS, VAE_BACKEND_ONEDNN};
    for (int i = 0; i < 2; i++)
        CHECK(blocks_model(&m[i], backends[i], &err) == VAE_OK &&
                  vae_workspace_create(&ws[i], m[i], B, &err) == VAE_OK &&
                  vae_forward(m[i], ws[i], &batch, &loss[i], &err) == VAE_OK &&
                  vae_backward(m[i], ws[i], &batch, NULL, &err) == VAE_OK,
              "%s: %s", vae_backend_name(backends[i]), err.message);
    CHECK(vae_workspace_conv_blocks(ws[1]) && !vae_workspace_conv_blocks(ws[0]),
          "oneDNN's workspace keeps channel blocks, OpenBLAS's NCHW");
    const double l0 = loss[0].recon + loss[0].kl, l1 = loss[1].recon + loss[1].kl;
    CHECK(fabs(l1 - l0) <= 1e-5 * fabs(l0), "loss: onednn %.7f, openblas %.7f", l1, l0);
    CHECK(close_all(vae_model_grads(m[1]), vae_model_grads(m[0]), vae_model_num_params(m[0])),
          "every gradient");
    vae_workspace *view = NULL;
    CHECK(vae_workspace_view(&view, ws[1], 4, &err) == VAE_OK && !vae_workspace_conv_blocks(ws[1]),
          "a workspace with a view goes back to NCHW: %s", err.message);
    vae_workspace_free(view);
    for (int i = 0; i < 2; i++) vae_workspace_free(ws[i]), vae_model_free(m[i]);
}

/* An evaluation on batch threads (vae_workers_forward): the loss of vae_forward on a workspace
 * of its own (1e-6 relative; the rows' sums in another order), for all rows, one row (a thread
 * without any) and the most rows (IWAE-sized views); more refused. */
static void test_workers_forward(void) {
    enum { B = 5, K = 3, N = B * K };
    float x[N * 64], eps[N * 2];
    batch_of_64(x, eps, N, 13);
    vae_model *m = NULL;
    vae_workspace *whole = NULL, *own = NULL;
    vae_workers w = {0};
    vae_error err = {{0}};
    CHECK(blocks_model(&m, VAE_BACKEND_OPENBLAS, &err) == VAE_OK &&
              vae_workspace_create(&whole, m, N, &err) == VAE_OK &&
              vae_workspace_create(&own, m, N + 1, &err) == VAE_OK &&
              vae_workers_init(&w, whole, B, K, 2, &err) == VAE_OK,
          "setup: %s", err.message);
    const int rows[3] = {B, 1, N};
    for (int i = 0; i < 3; i++) {
        const vae_batch batch = {rows[i], x, eps, NULL, NULL};
        vae_loss split = {0}, plain = {0};
        CHECK(vae_workers_forward(&w, m, &batch, &split, &err) == VAE_OK &&
                  vae_forward(m, own, &batch, &plain, &err) == VAE_OK,
              "%d rows: %s", rows[i], err.message);
        const double a = split.recon + split.kl, b = plain.recon + plain.kl;
        CHECK(fabs(a - b) <= 1e-6 * fabs(b) && split.count == plain.count,
              "%d rows: %.9g on batch threads, %.9g on one workspace", rows[i], a, b);
    }
    const vae_batch over = {N + 1, x, eps, NULL, NULL};
    vae_loss loss = {0};
    CHECK(vae_workers_forward(&w, m, &over, &loss, &err) == VAE_ERR_INVALID_ARGUMENT,
          "more rows than the views hold refused");
    vae_workers_free(&w);
    vae_workspace_free(whole), vae_workspace_free(own);
    vae_model_free(m);
}

/* A small model trained 3 epochs (batches of 20) on count uniform rows drawn from data_seed,
 * then its mean -ELBO; chosen and params (may be NULL) get the backend in use and the weights. */
typedef struct {
    vae_backend backend;
    vae_precision precision;
    int batch_threads, iwae;
    int count;
    uint64_t data_seed;
    vae_backend *chosen;
    float *params;
} small_run;

static double train_small(small_run run) {
    vae_config cfg = {.input_dim = 24, .latent_dim = 3, .n_encoder = 1, .encoder = {32},
                      .n_decoder = 1, .decoder = {32}, .activation = VAE_ACT_RELU};
    vae_model *m;
    vae_error err = {{0}};
    vae_dataset data = {.count = (size_t)run.count, .dim = 24};
    data.x = malloc(sizeof(float) * (size_t)run.count * 24);
    vae_rng r = vae_rng_make(run.data_seed, 1);
    for (int i = 0; i < run.count * 24; i++) data.x[i] = vae_rng_uniform(&r);
    double loss = NAN;
    if (vae_model_create(&m, &cfg, 3, &err) == VAE_OK &&
        vae_model_set_backend(m, run.backend, 20, run.chosen, &err) == VAE_OK) {
        vae_train_options opt;
        vae_train_options_default(&opt);
        opt.epochs = 3, opt.batch_size = 20, opt.batch_threads = run.batch_threads;
        opt.iwae_k = run.iwae, opt.precision = run.precision;
        vae_loss l;
        if (vae_train(m, &data, NULL, &opt, &err) == VAE_OK &&
            vae_eval_elbo(m, &data, 50, 1, &l, &err) == VAE_OK)
            loss = (l.recon + l.kl) / (double)l.count;
        if (run.params) memcpy(run.params, vae_model_params(m), vae_model_num_params(m) * 4);
        vae_model_free(m);
    }
    CHECK(!isnan(loss), "training (%s, batch threads %d, iwae %d): %s",
          vae_backend_name(run.backend), run.batch_threads, run.iwae, err.message);
    free(data.x);
    return loss;
}

static double train_loss(vae_backend backend, vae_backend *chosen) {
    return train_small((small_run){.backend = backend, .count = 200, .data_seed = 5,
                                   .chosen = chosen});
}

static void test_training_agrees(void) {
    vae_backend chosen = VAE_BACKEND_AUTO;
    double blas = train_loss(VAE_BACKEND_OPENBLAS, &chosen);
    CHECK(chosen == VAE_BACKEND_OPENBLAS, "openblas in use");
    double picked = train_loss(VAE_BACKEND_AUTO, &chosen);
    CHECK(chosen != VAE_BACKEND_AUTO && vae_backend_available(chosen), "auto picked %s",
          vae_backend_name(chosen));
    CHECK(fabs(picked - blas) <= 1e-4 * fabs(blas), "auto (%s) %.6f vs openblas %.6f",
          vae_backend_name(chosen), picked, blas);
    if (!vae_backend_available(VAE_BACKEND_ONEDNN)) {
        printf("skip test_training_agrees_onednn (this build has no oneDNN)\n");
        return;
    }
    double dnnl = train_loss(VAE_BACKEND_ONEDNN, &chosen);
    CHECK(chosen == VAE_BACKEND_ONEDNN, "onednn in use");
    printf("# 3 epochs: openblas %.6f, onednn %.6f nats\n", blas, dnnl);
    CHECK(fabs(dnnl - blas) <= 1e-4 * fabs(blas), "onednn %.6f vs openblas %.6f", dnnl, blas);
}

/* Batch threads: two threads each run forward and backward on half of every batch; the result
 * is the same function (losses within 1e-4 of the products' split), the same bits on a rerun,
 * and IWAE training works the same way. */
static double batch_threads_loss(int batch_threads, int iwae, float *params_out) {
    /* 203 rows: a last batch of 3 */
    return train_small((small_run){.backend = VAE_BACKEND_OPENBLAS, .batch_threads = batch_threads,
                                   .iwae = iwae, .count = 203, .data_seed = 6,
                                   .params = params_out});
}

static void test_batch_threads(void) {
    vae_set_num_threads(2);
    static float a[4096], b[4096], c[4096];
    for (int iwae = 0; iwae <= 3; iwae += 3)
        for (int mode = 1; mode <= 2; mode++) { /* 2: on weights prepacked (transposed) */
            double products = batch_threads_loss(0, iwae, c);
            double split = batch_threads_loss(mode, iwae, a);
            double again = batch_threads_loss(mode, iwae, b);
            printf("# iwae %d: products %.6f, batch threads %d %.6f nats\n", iwae, products,
                   mode, split);
            CHECK(fabs(split - products) <= 1e-4 * fabs(products),
                  "the same function: %.6f vs %.6f", split, products);
            CHECK(split == again && memcmp(a, b, sizeof a) == 0, "the same bits on a rerun");
            /* the slices' products (10 rows, not 20) round differently: the weights show the
             * split was taken */
            CHECK(memcmp(a, c, sizeof a) != 0,
                  "the batch was split (weights differ in the last bits)");
        }
    vae_set_num_threads(1);
}

/* vae_train_batch_threads_auto on a conditional model with IWAE steps: an answer of 0 or 1 with
 * two threads, 0 without timing where batch threads do not apply, the model untouched. */
static void test_batch_threads_auto(void) {
    vae_config cfg = {.input_dim = 24, .latent_dim = 3, .n_encoder = 1, .encoder = {32},
                      .n_decoder = 1, .decoder = {32}, .activation = VAE_ACT_RELU,
                      .n_classes = 3};
    vae_model *m;
    vae_error err = {{0}};
    CHECK(vae_model_create(&m, &cfg, 3, &err) == VAE_OK, "model: %s", err.message);
    const size_t n = vae_model_num_params(m);
    float *params = malloc(n * sizeof(float)), *grads = malloc(n * sizeof(float));
    fill(vae_model_grads(m), n, 8); /* gradients a caller has not applied yet */
    memcpy(params, vae_model_params(m), n * sizeof(float));
    memcpy(grads, vae_model_grads(m), n * sizeof(float));
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.batch_size = 50, opt.iwae_k = 3;
    int chosen = -1;
    vae_set_num_threads(2);
    CHECK(vae_train_batch_threads_auto(m, &opt, &chosen, &err) == VAE_OK && chosen >= 0 &&
              chosen <= 2, "two threads: %d (%s)", chosen, err.message);
    printf("# two threads, batch 50, IWAE 3: %s\n",
           chosen == 2 ? "batch threads on prepacked weights" : chosen ? "batch threads"
                                                                       : "the products' split");
    CHECK(!memcmp(params, vae_model_params(m), n * sizeof(float)) &&
              !memcmp(grads, vae_model_grads(m), n * sizeof(float)),
          "parameters and gradients left as they were");
    opt.iwae_k = 0, opt.free_bits = 0.5f, chosen = -1;
    CHECK(vae_train_batch_threads_auto(m, &opt, &chosen, &err) == VAE_OK && chosen == 0,
          "free bits keep the products' split");
    opt.free_bits = 0, opt.batch_size = 0;
    CHECK(vae_train_batch_threads_auto(m, &opt, &chosen, &err) == VAE_ERR_INVALID_ARGUMENT,
          "batch 0 refused");
    vae_set_num_threads(1);
    opt.batch_size = 50, chosen = -1;
    CHECK(vae_train_batch_threads_auto(m, &opt, &chosen, &err) == VAE_OK && chosen == 0,
          "one thread: nothing to split");
    free(params), free(grads);
    vae_model_free(m);
}

/* |a - b| <= 2.2 u sum_k |p_k| |q_k| for each output, u = 2^-8 (bf16's unit roundoff): each
 * input of a product rounded to bf16, then summed in fp32 (a little more than 2u per term).
 * bound holds sum_k |p_k| |q_k| per output. */
static int within_bf16(const float *a, const float *b, const double *bound, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > 2.2 * ldexp(1.0, -8) * bound[i]) return 0;
    return 1;
}

/* bound (m, n) = |p| (m, k) times |q| (k, n), with strides for either layout */
static void abs_product(double *bound, const float *p, size_t ps_row, size_t ps_k, const float *q,
                        size_t qs_k, size_t qs_col, int m, int k, int n) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double sum = 0;
            for (int t = 0; t < k; t++)
                sum += fabs((double)p[i * ps_row + t * ps_k]) * fabs((double)q[t * qs_k + j * qs_col]);
            bound[(size_t)i * n + j] = sum;
        }
}

/* The dense layer on weights rounded once (the table's prepack_weights): the bits of the entries
 * that round them on each call, forward and backward, with and without the weights' gradient. */
static void check_bf16_rounded(const float *x, const float *w, const float *b, const float *dy,
                               int batch, int in, int out) {
    const vae_ops *t = vae_onednn_bf16_ops;
    const size_t nx = (size_t)batch * in, ny = (size_t)batch * out, nw = (size_t)out * in;
    void *rounded = malloc(nw * t->weight_bytes);
    float *y[2], *dx[2], *dw[2], *db[2];
    for (int i = 0; i < 2; i++) {
        y[i] = malloc(4 * ny), dx[i] = malloc(4 * nx), dw[i] = malloc(4 * nw);
        db[i] = malloc(4 * (size_t)out);
    }
    CHECK(!t->prepack_optional, "bf16 rounds its weights once whenever it can");
    t->prepack_weights(rounded, w, out, in);
    const vae_activation relu = VAE_ACT_RELU;
    t->linear_forward(y[0], x, w, b, batch, in, out, &relu);
    t->linear_forward_prepacked(y[1], x, w, rounded, b, batch, in, out, &relu);
    CHECK(!memcmp(y[0], y[1], 4 * ny), "forward on rounded weights: the same bits");
    for (int with_dw = 0; with_dw <= 1; with_dw++) {
        for (int i = 0; i < 2; i++) {
            fill(dx[i], nx, 5), fill(dw[i], nw, 6), fill(db[i], (size_t)out, 7);
            float *gw = with_dw ? dw[i] : NULL, *gb = with_dw ? db[i] : NULL;
            if (i == 0) t->linear_backward(dx[0], gw, gb, dy, x, w, batch, in, out, 1, 1);
            else
                t->linear_backward_prepacked(dx[1], gw, gb, dy, x, w, rounded, batch, in, out, 1,
                                            1);
        }
        CHECK(!memcmp(dx[0], dx[1], 4 * nx) && !memcmp(dw[0], dw[1], 4 * nw) &&
                  !memcmp(db[0], db[1], 4 * (size_t)out),
              "backward on rounded weights (%s): the same bits", with_dw ? "dx, dw" : "dx");
    }
    free(rounded);
    for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(dw[i]), free(db[i]);
}

/* --precision bf16: the dense layer's products with bf16 inputs, against fp32 within bf16's
 * rounding (and not equal to it: the bf16 kernel ran), the bias gradient the same pass. */
static void test_bf16_dense_layer(void) {
    char why[256];
    if (bf16_skips("test_bf16_dense_layer", why, sizeof why)) return;
    printf("# bf16 kernel: %s\n", why);
    enum { B = 37, IN = 61, OUT = 45 };
    static float x[B * IN], w[OUT * IN], b[OUT], dy[B * OUT], y1[B * OUT], y2[B * OUT];
    static float dx1[B * IN], dx2[B * IN], dw1[OUT * IN], dw2[OUT * IN], db1[OUT], db2[OUT];
    static double bound[B * IN > OUT * IN ? B * IN : OUT * IN];
    fill(x, B * IN, 1), fill(w, OUT * IN, 2), fill(b, OUT, 3), fill(dy, B * OUT, 4);
    vae_cpu_ops.linear_forward(y1, x, w, b, B, IN, OUT, NULL);
    vae_onednn_bf16_ops->linear_forward(y2, x, w, b, B, IN, OUT, NULL);
    abs_product(bound, x, IN, 1, w, 1, IN, B, IN, OUT); /* x W^T */
    CHECK(within_bf16(y2, y1, bound, B * OUT), "forward within bf16's rounding");
    CHECK(memcmp(y1, y2, sizeof y1) != 0, "forward: bf16 products, not fp32's");
    for (int accumulate = 0; accumulate <= 1; accumulate++) {
        fill(dx1, B * IN, 5), fill(dw1, OUT * IN, 6), fill(db1, OUT, 7);
        memcpy(dx2, dx1, sizeof dx1), memcpy(dw2, dw1, sizeof dw1), memcpy(db2, db1, sizeof db1);
        vae_cpu_ops.linear_backward(dx1, dw1, db1, dy, x, w, B, IN, OUT, accumulate, accumulate);
        vae_onednn_bf16_ops->linear_backward(dx2, dw2, db2, dy, x, w, B, IN, OUT, accumulate,
                                             accumulate);
        abs_product(bound, dy, OUT, 1, w, IN, 1, B, OUT, IN); /* dy W */
        CHECK(within_bf16(dx2, dx1, bound, B * IN), "dx (accumulate %d)", accumulate);
        abs_product(bound, dy, 1, OUT, x, IN, 1, OUT, B, IN); /* dy^T x */
        CHECK(within_bf16(dw2, dw1, bound, OUT * IN), "dw (accumulate %d)", accumulate);
        CHECK(memcmp(db2, db1, sizeof db1) == 0, "db: the same pass (accumulate %d)", accumulate);
    }
    check_bf16_rounded(x, w, b, dy, B, IN, OUT);
}

/* Where the bf16 convolutions' weight gradient takes fp32 inputs (more threads or AMX: faster
 * there), it is the fp32 primitives' bit for bit: dw, accumulated onto fill(25), against
 * vae_onednn_ops's */
static void check_conv_bf16_weights(int transposed, const conv_shape *s, int B, const float *x,
                                    const float *w, const float *dy, const float *dw,
                                    float *cols) {
    if (op_conv_bf16_weight_grads()) return;
    const size_t nx = (size_t)B * s->in_c * s->in_h * s->in_w;
    const size_t nw = (size_t)s->in_c * s->out_c * s->k * s->k;
    float *dx = malloc(4 * nx), *dw32 = malloc(4 * nw), *db = calloc((size_t)s->out_c, 4);
    fill(dw32, nw, 25);
    (transposed ? vae_onednn_ops->convt2d_backward : vae_onednn_ops->conv2d_backward)(
        dx, dw32, db, dy, x, w, B, s, cols);
    CHECK(!memcmp(dw, dw32, 4 * nw), "%s bf16 dw: the fp32 primitive's",
          transposed ? "convT" : "conv");
    free(dx), free(dw32), free(db);
}

/* The bf16 convolutions (the CPU's passes around bf16 matmuls) against the fp32 ones within
 * bf16's rounding: each output's bound is the same pass on absolute values (sum |w| |x| for y,
 * |w| |dy| for dx, |dy| |x| for dw), run by the fp32 ops. Two threads split the batch, so the
 * bf16 matmuls run side by side. */
static void check_conv_bf16(int transposed) {
    const conv_shape s = test_conv_shape(transposed, 2);
    enum { B = 9 };
    const size_t nx = (size_t)B * s.in_c * s.in_h * s.in_w;
    const size_t ny = (size_t)B * s.out_c * s.out_h * s.out_w;
    const size_t nw = (size_t)s.in_c * s.out_c * 16, nb = (size_t)s.out_c;
    float *v = calloc(5 * nx + 5 * ny + 5 * nw + 4 * nb, sizeof(float));
    float *x = v, *ax = x + nx, *dx1 = ax + nx, *dx2 = dx1 + nx, *dxa = dx2 + nx;
    float *dy = dxa + nx, *ady = dy + ny, *y1 = ady + ny, *y2 = y1 + ny, *ya = y2 + ny;
    float *w = ya + ny, *aw = w + nw, *dw1 = aw + nw, *dw2 = dw1 + nw, *dwa = dw2 + nw;
    float *b = dwa + nw, *db1 = b + nb, *db2 = db1 + nb, *dba = db2 + nb;
    float *cols = malloc(4 * vae_onednn_bf16_ops->conv_cols_size(&s, B, transposed));
    double *bound = malloc(sizeof(double) * (nx > ny ? (nx > nw ? nx : nw) : (ny > nw ? ny : nw)));
    fill(x, nx, 21), fill(w, nw, 22), fill(b, nb, 23), fill(dy, ny, 24), fill(dw1, nw, 25);
    memcpy(dw2, dw1, 4 * nw);
    for (size_t i = 0; i < nx; i++) ax[i] = fabsf(x[i]);
    for (size_t i = 0; i < nw; i++) aw[i] = fabsf(w[i]);
    for (size_t i = 0; i < ny; i++) ady[i] = fabsf(dy[i]);
    const vae_ops *ops[2] = {&vae_cpu_ops, vae_onednn_bf16_ops};
    float *y[2] = {y1, y2}, *dx[2] = {dx1, dx2}, *dw[2] = {dw1, dw2}, *db[2] = {db1, db2};
    for (int i = 0; i < 2; i++) {
        (transposed ? ops[i]->convt2d_forward : ops[i]->conv2d_forward)(y[i], x, w, b, B, &s, cols);
        (transposed ? ops[i]->convt2d_backward : ops[i]->conv2d_backward)(dx[i], dw[i], db[i], dy,
                                                                          x, w, B, &s, cols);
    }
    /* the bounds: forward on |x| |w| without bias; backward on |dy| with |w| (dx) and |x| (dw) */
    float *zero = calloc(nb, sizeof(float));
    (transposed ? vae_cpu_ops.convt2d_forward : vae_cpu_ops.conv2d_forward)(ya, ax, aw, zero, B,
                                                                            &s, cols);
    (transposed ? vae_cpu_ops.convt2d_backward : vae_cpu_ops.conv2d_backward)(dxa, dwa, dba, ady,
                                                                              ax, aw, B, &s, cols);
    const char *what = transposed ? "convT" : "conv";
    for (size_t i = 0; i < ny; i++) bound[i] = ya[i];
    CHECK(within_bf16(y2, y1, bound, ny), "%s bf16 forward within bf16's rounding", what);
    CHECK(memcmp(y1, y2, 4 * ny) != 0, "%s forward: bf16 products, not fp32's", what);
    for (size_t i = 0; i < nx; i++) bound[i] = dxa[i]; /* dx of |dy| through |w| */
    CHECK(within_bf16(dx2, dx1, bound, nx), "%s bf16 dx", what);
    for (size_t i = 0; i < nw; i++) bound[i] = dwa[i]; /* dw of |dy| against |x| */
    CHECK(within_bf16(dw2, dw1, bound, nw), "%s bf16 dw (accumulated)", what);
    CHECK(close_all(db2, db1, nb), "%s db: summed in fp32 (another order)", what);
    check_conv_bf16_weights(transposed, &s, B, x, w, dy, dw2, cols);
    free(v), free(cols), free(bound), free(zero);
}

static void test_bf16_conv(void) {
    char why[256];
    if (bf16_skips("test_bf16_conv", why, sizeof why)) return;
    /* the weights' gradients in bf16 only on one thread without AMX tiles (the products'
     * kernel says whether the CPU has them) */
    const int keep = vae_get_num_threads(), tiles = strstr(why, "amx") != NULL;
    vae_set_num_threads(1);
    CHECK(op_conv_bf16_weight_grads() == !tiles,
          "bf16 conv weight gradients in bf16 on one thread, unless on AMX (%s)", why);
    vae_set_num_threads(2);
    CHECK(!op_conv_bf16_weight_grads(), "bf16 conv weight gradients in fp32 on 2 threads");
    check_conv_bf16(0);
    check_conv_bf16(1);
    vae_set_num_threads(keep);
}

/* Two views' slices of batch (rows [0, cut), [cut, n)) on whole: forward, and with
 * `backward` the data's gradients and then the parameters' into whole's buffer; the slices'
 * -ELBO, NAN on an error. share: whole's weights prepacked once for the views (1: the form the
 * table needs, bf16's rounding; 2: its optional one too, fp32's transposed copy), not (0), or
 * as they were prepacked before (-1). */
static double views_pass(vae_model *m, vae_workspace *whole, vae_workspace *views[2],
                         const vae_batch *batch, int cut, int share, int backward) {
    const int dim = vae_model_config(m)->input_dim, latent = vae_model_config(m)->latent_dim;
    const int lo[3] = {0, cut, batch->n};
    vae_loss loss = {0};
    vae_error err = {{0}};
    vae_status s = VAE_OK;
    if (share >= 0) vae_workspace_share_weights(m, whole, share > 0, share == 2);
    for (int i = 0; i < 2 && s == VAE_OK; i++) {
        const vae_batch part = {lo[i + 1] - lo[i], batch->x + (size_t)lo[i] * dim,
                                batch->eps + (size_t)lo[i] * latent, NULL, NULL};
        s = vae_workspace_view_at(views[i], lo[i], part.n, batch->n, &err);
        if (s == VAE_OK) s = vae_forward_for_backward(m, views[i], &part, &loss, &err);
        if (s == VAE_OK && backward) s = vae_backward(m, views[i], &part, NULL, &err);
    }
    vae_workspace_share_weights(m, whole, 0, 0);
    if (s == VAE_OK && backward) s = vae_view_param_grads(m, whole, views, 2, batch, 1, &err);
    CHECK(s == VAE_OK, "views: %s", err.message);
    return s == VAE_OK ? loss.recon + loss.kl : NAN;
}

/* Batch threads on weights prepacked once and shared with the views (share: views_pass's 1 for
 * bf16's rounding, 2 for fp32's transposed copy), an MLP and a conv model: the loss and
 * gradients of each view using the weights as they are (bf16: the same bits, its products
 * round them the same way; fp32: within the products' rounding, other kernels); while shared,
 * the views read that copy (weights changed since do not reach them until shared again) and
 * the whole refuses a pass of its own (its scratch may hold the copy). */
static void check_shared_weights(vae_model *m, const vae_batch *batch, int share) {
    const size_t n = vae_model_num_params(m);
    float *g[2] = {calloc(n, 4), calloc(n, 4)}, *saved = malloc(4 * n);
    vae_workspace *whole = NULL, *views[2] = {NULL, NULL};
    vae_error err = {{0}};
    CHECK(vae_workspace_create(&whole, m, batch->n, &err) == VAE_OK &&
              vae_workspace_view(&views[0], whole, batch->n, &err) == VAE_OK &&
              vae_workspace_view(&views[1], whole, batch->n, &err) == VAE_OK,
          "workspaces: %s", err.message);
    double loss[2];
    for (int i = 0; i <= 1; i++) {
        vae_workspace_set_grads(whole, g[i]);
        loss[i] = views_pass(m, whole, views, batch, 3, i ? share : 0, 1);
    }
    if (share == 1)
        CHECK(loss[0] == loss[1] && !memcmp(g[0], g[1], 4 * n),
              "shared rounded weights: the same loss (%.9g, %.9g) and gradients", loss[1], loss[0]);
    else
        CHECK(fabs(loss[1] - loss[0]) <= 1e-5 * fabs(loss[0]) && close_all(g[1], g[0], n),
              "transposed weights: the loss (%.9g, %.9g) and gradients within the products' "
              "rounding", loss[1], loss[0]);
    float *p = vae_model_params(m);
    memcpy(saved, p, 4 * n);
    vae_workspace_share_weights(m, whole, 1, share == 2);
    for (int t = 0; t < vae_model_num_tensors(m); t++) { /* the dense weights: the shared ones */
        const vae_tensor_info info = vae_model_tensor(m, t);
        for (int i = 0; info.ndims == 2 && i < info.rows * info.cols; i++) p[info.offset + i] *= 1.5f;
    }
    const double stale = views_pass(m, whole, views, batch, 3, -1, 0), /* -1: as shared */
        fresh = views_pass(m, whole, views, batch, 3, share, 0);
    CHECK(stale == loss[1] && fresh != loss[1],
          "the views read the shared copy: %.9g (then %.9g on the changed weights)", stale, fresh);
    vae_workspace_share_weights(m, whole, 1, share == 2);
    CHECK(vae_forward(m, whole, batch, NULL, &err) == VAE_ERR_INVALID_ARGUMENT,
          "the whole refuses a pass while it shares its weights");
    vae_workspace_share_weights(m, whole, 0, 0);
    CHECK(vae_forward(m, whole, batch, NULL, &err) == VAE_OK, "and runs one after: %s",
          err.message);
    memcpy(p, saved, 4 * n);
    for (int i = 0; i < 2; i++) vae_workspace_free(views[i]);
    vae_workspace_free(whole);
    free(g[0]), free(g[1]), free(saved);
}

static void test_bf16_shared_weights(void) {
    char why[256];
    if (bf16_skips("test_bf16_shared_weights", why, sizeof why)) return;
    enum { B = 7 };
    float x[B * 64], eps[B * 2];
    const vae_batch batch = batch_of_64(x, eps, B, 11);
    vae_config mlp = {.input_dim = 64, .latent_dim = 2, .n_encoder = 1, .encoder = {48},
                      .n_decoder = 1, .decoder = {40}, .activation = VAE_ACT_RELU};
    vae_model *m[2] = {NULL, NULL};
    vae_error err = {{0}};
    CHECK(vae_model_create(&m[0], &mlp, 5, &err) == VAE_OK &&
              vae_model_set_backend(m[0], VAE_BACKEND_ONEDNN, B, NULL, &err) == VAE_OK &&
              blocks_model(&m[1], VAE_BACKEND_ONEDNN, &err) == VAE_OK,
          "models: %s", err.message);
    for (int i = 0; i < 2; i++) {
        CHECK(vae_model_set_cpu_precision(m[i], VAE_PRECISION_BF16, &err) == VAE_OK, "bf16: %s",
              err.message);
        check_shared_weights(m[i], &batch, 1);
        vae_model_free(m[i]);
    }
}

/* Adam's step that rounds the new weights (the bf16 table's adam_step_prepack): the same
 * parameters, moments and cleared gradients as vae_adam_step, and in rounded the bits
 * op_round_bf16 gives them; n above Adam's threaded split and no multiple of its blocks. */
static void check_adam_rounds(const vae_ops *t) {
    enum { N = 70001 };
    float *p[2] = {malloc(4 * N), malloc(4 * N)}, *g[2] = {malloc(4 * N), malloc(4 * N)};
    uint16_t *rounded = malloc(2 * N), *want = malloc(2 * N);
    vae_adam *adam[2] = {NULL, NULL};
    vae_adam_options o;
    vae_adam_options_default(&o);
    vae_error err = {{0}};
    CHECK(vae_adam_create(&adam[0], N, &o, &err) == VAE_OK &&
              vae_adam_create(&adam[1], N, &o, &err) == VAE_OK, "adam: %s", err.message);
    fill(p[0], N, 41), memcpy(p[1], p[0], 4 * N);
    for (int step = 0; step < 2; step++) {
        fill(g[0], N, 42 + step), memcpy(g[1], g[0], 4 * N);
        memset(rounded, 0xff, 2 * N);
        t->adam_step_prepack(adam[0], p[0], g[0], rounded);
        vae_adam_step(adam[1], p[1], g[1]);
    }
    t->prepack_weights(want, p[1], 1, N);
    int zero = 1;
    for (int i = 0; i < N; i++) zero &= g[0][i] == 0.0f;
    CHECK(!memcmp(p[0], p[1], 4 * N) && zero &&
              !memcmp(vae_adam_first_moment(adam[0]), vae_adam_first_moment(adam[1]), 4 * N) &&
              !memcmp(vae_adam_second_moment(adam[0]), vae_adam_second_moment(adam[1]), 4 * N),
          "Adam that rounds: the same step as vae_adam_step");
    CHECK(!memcmp(rounded, want, 2 * N), "and every new parameter rounded as op_round_bf16 does");
    vae_adam_free(adam[0]), vae_adam_free(adam[1]);
    free(p[0]), free(p[1]), free(g[0]), free(g[1]), free(rounded), free(want);
}

/* A pass and its parameters' gradients on ws into g; its -ELBO */
static double own_pass(vae_model *m, vae_workspace *ws, const vae_batch *batch, float *g) {
    vae_loss loss = {0};
    vae_error err = {{0}};
    memset(g, 0, 4 * vae_model_num_params(m));
    vae_workspace_set_grads(ws, g);
    CHECK(vae_forward_for_backward(m, ws, batch, &loss, &err) == VAE_OK &&
              vae_backward(m, ws, batch, NULL, &err) == VAE_OK, "pass: %s", err.message);
    return loss.recon + loss.kl;
}

/* A workspace's own rounded weights (the products split in bf16: rounded once, then by each
 * step's Adam): its passes give the bits of a workspace whose products round the weights on
 * every call, before and after an Adam step that rounds; they read that copy (weights changed
 * without it do not reach them); off, the weights as they are. */
static void check_own_rounded(vae_model *m, const vae_batch *batch) {
    const size_t n = vae_model_num_params(m);
    float *g[2] = {malloc(4 * n), malloc(4 * n)}, *p = vae_model_params(m);
    vae_workspace *ws[2] = {NULL, NULL};
    vae_adam *adam = NULL;
    vae_adam_options o;
    vae_adam_options_default(&o);
    vae_error err = {{0}};
    CHECK(vae_workspace_create(&ws[0], m, batch->n, &err) == VAE_OK &&
              vae_workspace_create(&ws[1], m, batch->n, &err) == VAE_OK &&
              vae_adam_create(&adam, n, &o, &err) == VAE_OK, "workspaces: %s", err.message);
    void *rounded = vae_workspace_own_prepacked(m, ws[0], 1);
    CHECK(rounded != NULL, "bf16's table rounds the weights for a workspace's own passes");
    for (int step = 0; step < 2 && rounded; step++) {
        const double own = own_pass(m, ws[0], batch, g[0]), each = own_pass(m, ws[1], batch, g[1]);
        CHECK(own == each && !memcmp(g[0], g[1], 4 * n),
              "step %d: the same loss (%.9g, %.9g) and gradients", step + 1, own, each);
        vae_model_ops(m)->adam_step_prepack(adam, p, g[0], rounded);
    }
    const float keep = p[0]; /* the first dense weight, changed without Adam */
    p[0] = 2.0f * keep + 1.0f;
    const double stale = own_pass(m, ws[0], batch, g[0]), fresh = own_pass(m, ws[1], batch, g[1]);
    vae_workspace_own_prepacked(m, ws[0], 0);
    const double off = own_pass(m, ws[0], batch, g[0]);
    CHECK(stale != fresh && off == fresh, "the passes read the copy (%.9g, the weights: %.9g), "
          "then, off, the weights (%.9g)", stale, fresh, off);
    p[0] = keep;
    vae_adam_free(adam);
    vae_workspace_free(ws[0]), vae_workspace_free(ws[1]);
    free(g[0]), free(g[1]);
}

static void test_bf16_rounded_by_adam(void) {
    char why[256];
    if (bf16_skips("test_bf16_rounded_by_adam", why, sizeof why)) return;
    check_adam_rounds(vae_onednn_bf16_ops);
    CHECK(!vae_onednn_ops->adam_step_prepack && !vae_cpu_ops.adam_step_prepack,
          "fp32's prepacked form (transposed) is not Adam's to make");
    enum { B = 7 };
    float x[B * 64], eps[B * 2];
    const vae_batch batch = batch_of_64(x, eps, B, 13);
    vae_config mlp = {.input_dim = 64, .latent_dim = 2, .n_encoder = 1, .encoder = {48},
                      .n_decoder = 1, .decoder = {40}, .activation = VAE_ACT_RELU};
    vae_model *m = NULL;
    vae_error err = {{0}};
    CHECK(vae_model_create(&m, &mlp, 5, &err) == VAE_OK &&
              vae_model_set_cpu_precision(m, VAE_PRECISION_BF16, &err) == VAE_OK,
          "model: %s", err.message);
    if (m) check_own_rounded(m, &batch);
    vae_workspace *ws = NULL;
    CHECK(vae_model_set_backend(m, VAE_BACKEND_ONEDNN, B, NULL, &err) == VAE_OK &&
              vae_workspace_create(&ws, m, B, &err) == VAE_OK &&
              !vae_workspace_own_prepacked(m, ws, 1), "fp32: no own copy");
    vae_workspace_free(ws);
    vae_model_free(m);
}

/* Choosing bf16: refused for tf32, kept by the model, undone by choosing a backend; a short
 * training run ends within 0.5% of fp32's loss (issue 16's bound for 10 epochs). */
static void test_bf16_precision(void) {
    vae_config cfg = {.input_dim = 24, .latent_dim = 3, .n_encoder = 1, .encoder = {32},
                      .n_decoder = 1, .decoder = {32}, .activation = VAE_ACT_RELU};
    vae_model *m;
    vae_error err = {{0}};
    CHECK(vae_model_create(&m, &cfg, 3, &err) == VAE_OK, "model");
    CHECK(vae_model_set_cpu_precision(m, VAE_PRECISION_TF32, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "tf32 is a GPU's"), "tf32 refused: %s", err.message);
    char why[256];
    if (!bf16_runs(why, sizeof why)) {
        CHECK(vae_model_set_cpu_precision(m, VAE_PRECISION_BF16, &err) != VAE_OK &&
                  err.message[0], "bf16 refused where it cannot run: %s", err.message);
        vae_model_free(m);
        return;
    }
    CHECK(vae_model_set_cpu_precision(m, VAE_PRECISION_BF16, &err) == VAE_OK &&
              vae_model_cpu_precision(m) == VAE_PRECISION_BF16 &&
              vae_model_backend(m) == VAE_BACKEND_ONEDNN, "bf16 on oneDNN");
    CHECK(vae_model_set_backend(m, VAE_BACKEND_OPENBLAS, 20, NULL, &err) == VAE_OK &&
              vae_model_cpu_precision(m) == VAE_PRECISION_FP32, "a backend's choice: fp32 again");
    vae_model_free(m);
    double fp32 = train_small((small_run){.backend = VAE_BACKEND_ONEDNN, .count = 200,
                                          .data_seed = 5});
    double bf16 = train_small((small_run){.backend = VAE_BACKEND_ONEDNN, .count = 200,
                                          .data_seed = 5, .precision = VAE_PRECISION_BF16});
    printf("# 3 epochs: fp32 %.6f, bf16 %.6f nats\n", fp32, bf16);
    CHECK(fabs(bf16 - fp32) <= 0.005 * fabs(fp32) && bf16 != fp32, "bf16 %.6f vs fp32 %.6f",
          bf16, fp32);
}

/* fp32's prepacked weights: each fp32 table's transposition is exact on shapes that are not
 * multiples of its blocks, its forward on them agrees with the plain one, and views share them
 * only when asked (batch_threads 2): MLP and conv models on both backends. */
static void check_transposed_layer(const vae_ops *t) {
    enum { OUT = 45, IN = 37, B = 9 };
    static float w[OUT * IN], wt[OUT * IN], x[B * IN], b[OUT], y1[B * OUT], y2[B * OUT];
    fill(w, OUT * IN, 31), fill(x, B * IN, 32), fill(b, OUT, 33);
    CHECK(t->prepack_optional && t->weight_bytes == sizeof(float), "%s: optional fp32 copy",
          t->name);
    t->prepack_weights(wt, w, OUT, IN);
    int exact = 1;
    for (int o = 0; o < OUT; o++)
        for (int i = 0; i < IN; i++) exact &= wt[i * OUT + o] == w[o * IN + i];
    CHECK(exact, "%s: the weights transposed", t->name);
    const vae_activation relu = VAE_ACT_RELU;
    t->linear_forward(y1, x, w, b, B, IN, OUT, &relu);
    t->linear_forward_prepacked(y2, x, w, wt, b, B, IN, OUT, &relu);
    CHECK(close_all(y2, y1, B * OUT), "%s: forward on them", t->name);
}

static void test_prepacked_weights(void) {
    check_transposed_layer(&vae_cpu_ops);
    if (vae_onednn_ops) check_transposed_layer(vae_onednn_ops);
    enum { B = 7 };
    float x[B * 64], eps[B * 2];
    const vae_batch batch = batch_of_64(x, eps, B, 12);
    vae_config mlp = {.input_dim = 64, .latent_dim = 2, .n_encoder = 1, .encoder = {48},
                      .n_decoder = 1, .decoder = {40}, .activation = VAE_ACT_RELU};
    const vae_backend backends[2] = {VAE_BACKEND_OPENBLAS, VAE_BACKEND_ONEDNN};
    for (int k = 0; k < (vae_onednn_ops ? 2 : 1); k++)
        for (int conv = 0; conv <= 1; conv++) {
            vae_model *m = NULL;
            vae_error err = {{0}};
            vae_status s = conv ? blocks_model(&m, backends[k], &err)
                                : vae_model_create(&m, &mlp, 5, &err);
            if (s == VAE_OK && !conv) s = vae_model_set_backend(m, backends[k], B, NULL, &err);
            CHECK(s == VAE_OK, "model: %s", err.message);
            check_shared_weights(m, &batch, 2);
            vae_workspace *whole = NULL;
            CHECK(vae_workspace_create(&whole, m, B, &err) == VAE_OK, "%s", err.message);
            vae_workspace_share_weights(m, whole, 1, 0); /* not asked for: nothing shared */
            CHECK(vae_forward(m, whole, &batch, NULL, &err) == VAE_OK,
                  "fp32 weights prepacked only when asked: %s", err.message);
            vae_workspace_free(whole);
            vae_model_free(m);
        }
}

/* oneDNN 2.6's generated GEMM kernels and signals (core/signals.c): a thread sends the process
 * SIGALRM every 100 us, handled by a handler installed as a caller would (on its thread's own
 * stack) on one of the threads that compute, while the oneDNN dense layer runs its products for
 * 0.3 s on 1 and on 2 threads; the results are those of a quiet run, bit for bit, and the heap
 * stays whole. On 2 threads only the team's other thread can take it (this one holds it
 * throughout), a thread made before any oneDNN call (a thread made inside one starts with the
 * signals held, which would hide a team that does not hold them): the test runs first. Without
 * the calling thread's hold, and without the team's, glibc aborted in free() in every run. */
static volatile sig_atomic_t alarms;
static void on_alarm(int sig) { (void)sig, alarms++; }

static void *send_alarms(void *stop) {
    const struct timespec gap = {0, 100000};
    sigset_t alarm;
    sigemptyset(&alarm), sigaddset(&alarm, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &alarm, NULL); /* taken by the threads that compute, not here */
    while (!atomic_load((atomic_int *)stop)) {
        kill(getpid(), SIGALRM);
        nanosleep(&gap, NULL);
    }
    return NULL;
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void products_under_signals(const vae_ops *t, int threads) {
    enum { B = 128, IN = 784, OUT = 400 };
    float *x = malloc(4 * B * IN), *w = malloc(4 * OUT * IN), *b = malloc(4 * OUT);
    float *dy = malloc(4 * B * OUT), *y[2] = {malloc(4 * B * OUT), malloc(4 * B * OUT)};
    float *dx = malloc(4 * B * IN), *dw = malloc(4 * OUT * IN), *db = malloc(4 * OUT);
    fill(x, B * IN, 41), fill(w, OUT * IN, 42), fill(b, OUT, 43), fill(dy, B * OUT, 44);
    vae_set_num_threads(threads);
    int team = 0; /* the team's threads made outside oneDNN, taking signals as a caller's do */
#pragma omp parallel num_threads(threads) reduction(+ : team)
    team += 1;
    t->linear_forward(y[0], x, w, b, B, IN, OUT, NULL); /* quiet */
    struct sigaction on = {.sa_handler = on_alarm}, before;
    sigemptyset(&on.sa_mask);
    sigaction(SIGALRM, &on, &before);
    atomic_int stop = 0;
    pthread_t sender;
    alarms = 0;
    const int started = pthread_create(&sender, NULL, send_alarms, &stop) == 0;
    sigset_t alarm, mask;
    sigemptyset(&alarm), sigaddset(&alarm, SIGALRM);
    /* on 2 threads this one holds SIGALRM throughout: only the team's other threads could take
     * it, and they hold it for good (it waits until the end) */
    pthread_sigmask(threads > 1 ? SIG_BLOCK : SIG_UNBLOCK, &alarm, &mask);
    int same = 1;
    for (double t0 = seconds_now(); seconds_now() - t0 < 0.3;) {
        t->linear_forward(y[1], x, w, b, B, IN, OUT, NULL);
        t->linear_backward(dx, dw, db, dy, x, w, B, IN, OUT, 0, 0);
        same &= !memcmp(y[0], y[1], 4 * B * OUT);
    }
    atomic_store(&stop, 1);
    if (started) pthread_join(sender, NULL);
    pthread_sigmask(SIG_SETMASK, &mask, NULL); /* a held SIGALRM is taken here */
    sigaction(SIGALRM, &before, NULL);
    for (int i = 1; i < 2000; i++) free(malloc((size_t)i * 48)); /* glibc checks the heap */
    CHECK(team == threads && started && alarms > 0 && same,
          "%d threads: %d signals taken, results %s", threads, (int)alarms,
          same ? "the same" : "changed");
    free(x), free(w), free(b), free(dy), free(y[0]), free(y[1]), free(dx), free(dw), free(db);
}

static void test_onednn_takes_signals(void) {
    if (!vae_onednn_ops) {
        printf("skip test_onednn_takes_signals (this build has no oneDNN)\n");
        return;
    }
    products_under_signals(vae_onednn_ops, 2);
    products_under_signals(vae_onednn_ops, 1);
    vae_set_num_threads(1);
}

int main(void) {
    vae_set_num_threads(1);
    RUN(test_onednn_takes_signals); /* first: before any oneDNN call has made the team */
    RUN(test_names);
    RUN(test_dense_layer_matches);
    RUN(test_dense_param_grads);
    RUN(test_conv_matches);
    RUN(test_conv_model_blocks);
    RUN(test_bf16_conv);
    RUN(test_training_agrees);
    RUN(test_batch_threads);
    RUN(test_batch_threads_auto);
    RUN(test_workers_forward);
    RUN(test_bf16_dense_layer);
    RUN(test_bf16_precision);
    RUN(test_bf16_shared_weights);
    RUN(test_bf16_rounded_by_adam);
    RUN(test_prepacked_weights);
    return CHECK_SUMMARY();
}

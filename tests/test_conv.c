/* test_conv.c — Conv2d and ConvTranspose2d against direct double-precision loops, values and
 * every gradient by central differences, across strides, paddings and channel counts. */
#include "check.h"
#include "ref_ops.h"
#include "ops/ops.h"
#include "vae.h"

#include <string.h>

/* sum of r . conv(x) in double: a scalar whose gradient is the backward pass with dy = r */
static double objective(const float *x, const float *w, const float *b, const float *r, int batch,
                        const conv_shape *s, int transposed) {
    size_t nx = (size_t)batch * s->in_c * s->in_h * s->in_w, ny = (size_t)batch * s->out_c * s->out_h * s->out_w;
    size_t nw = (size_t)s->in_c * s->out_c * s->k * s->k;
    double *xd = malloc(sizeof(double) * nx), *wd = malloc(sizeof(double) * nw);
    double *bd = malloc(sizeof(double) * s->out_c), *y = malloc(sizeof(double) * ny);
    for (size_t i = 0; i < nx; i++) xd[i] = x[i];
    for (size_t i = 0; i < nw; i++) wd[i] = w[i];
    for (int i = 0; i < s->out_c; i++) bd[i] = b[i];
    ref_conv(y, xd, wd, bd, batch, s, transposed);
    double sum = 0;
    for (size_t i = 0; i < ny; i++) sum += r[i] * y[i];
    free(xd), free(wd), free(bd), free(y);
    return sum;
}

typedef struct {
    float *x, *w, *b;
    const float *r;
    int batch;
    const conv_shape *s;
    int transposed;
} conv_case;

/* The largest gap between analytic[i] and the central difference of the objective in v[i]
 * (v is one of the case's arrays, changed and restored in place). */
static double diff_error(const conv_case *c, float *v, size_t n, const float *analytic, double h) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + (float)h;
        double hi = objective(c->x, c->w, c->b, c->r, c->batch, c->s, c->transposed);
        v[i] = keep - (float)h;
        double lo = objective(c->x, c->w, c->b, c->r, c->batch, c->s, c->transposed);
        v[i] = keep;
        worst = fmax(worst, fabs((hi - lo) / (2 * h) - analytic[i]));
    }
    return worst;
}

static void check_conv(int in_c, int in_hw, int out_c, int k, int stride, int pad, int transposed) {
    conv_shape s = {.in_c = in_c, .in_h = in_hw, .in_w = in_hw, .out_c = out_c, .k = k,
                    .stride = stride, .pad = pad};
    int out_hw = transposed ? (in_hw - 1) * stride - 2 * pad + k : (in_hw + 2 * pad - k) / stride + 1;
    s.out_h = s.out_w = out_hw;
    enum { B = 2 };
    size_t nx = (size_t)B * in_c * in_hw * in_hw, ny = (size_t)B * out_c * out_hw * out_hw;
    size_t nw = (size_t)in_c * out_c * k * k;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), b[8];
    float *y = malloc(sizeof(float) * ny), *r = malloc(sizeof(float) * ny);
    float *dx = malloc(sizeof(float) * nx), *dw = calloc(nw, sizeof(float)), db[8] = {0};
    float *cols = malloc(sizeof(float) * op_conv_cols_size(&s, B, transposed));
    vae_rng rng = vae_rng_make(41, (uint64_t)(in_c * 1000 + k * 100 + stride * 10 + transposed));
    for (size_t i = 0; i < nx; i++) x[i] = 2 * vae_rng_uniform(&rng) - 1;
    for (size_t i = 0; i < nw; i++) w[i] = 2 * vae_rng_uniform(&rng) - 1;
    for (int i = 0; i < out_c; i++) b[i] = 2 * vae_rng_uniform(&rng) - 1;
    for (size_t i = 0; i < ny; i++) r[i] = 2 * vae_rng_uniform(&rng) - 1;
    (transposed ? op_convt2d_forward : op_conv2d_forward)(y, x, w, b, B, &s, cols);
    double *yd = malloc(sizeof(double) * ny), *xd = malloc(sizeof(double) * nx), *wd = malloc(sizeof(double) * nw), bd[8];
    for (size_t i = 0; i < nx; i++) xd[i] = x[i];
    for (size_t i = 0; i < nw; i++) wd[i] = w[i];
    for (int i = 0; i < out_c; i++) bd[i] = b[i];
    ref_conv(yd, xd, wd, bd, B, &s, transposed);
    double worst = 0;
    for (size_t i = 0; i < ny; i++) worst = fmax(worst, fabs(y[i] - yd[i]));
    CHECK(worst < 1e-4, "%s %d->%d k%d s%d p%d: forward off by %g", transposed ? "convT" : "conv",
          in_c, out_c, k, stride, pad, worst);
    (transposed ? op_convt2d_backward : op_conv2d_backward)(dx, dw, db, r, x, w, B, &s, cols);
    /* every input, weight and bias against central differences of the double objective */
    const double h = 1e-2; /* the objective is linear in each: exact up to rounding */
    conv_case c = {x, w, b, r, B, &s, transposed};
    double err_x = diff_error(&c, x, nx, dx, h), err_w = diff_error(&c, w, nw, dw, h);
    double err_b = diff_error(&c, b, (size_t)out_c, db, h);
    CHECK(err_x < 1e-3 && err_w < 1e-3 && err_b < 1e-3,
          "%s %d->%d k%d s%d p%d: gradient errors x %g w %g b %g", transposed ? "convT" : "conv",
          in_c, out_c, k, stride, pad, err_x, err_w, err_b);
    free(x), free(w), free(y), free(r), free(dx), free(dw), free(cols), free(yd), free(xd), free(wd);
}

static void test_conv2d(void) {
    check_conv(1, 8, 3, 4, 2, 1, 0); /* the conv preset's first layer, scaled down */
    check_conv(3, 5, 2, 3, 1, 1, 0);
    check_conv(2, 7, 4, 3, 2, 0, 0);
    check_conv(2, 6, 2, 1, 1, 0, 0);
    check_conv(2, 5, 2, 3, 2, 2, 0); /* padding wider than the stride */
}

static void test_convt2d(void) {
    check_conv(3, 4, 1, 4, 2, 1, 1); /* 4x4 -> 8x8, as the conv preset's last layer */
    check_conv(2, 5, 3, 3, 1, 1, 1);
    check_conv(4, 3, 2, 3, 2, 0, 1);
    check_conv(2, 4, 2, 5, 3, 1, 1); /* stride 3 */
}

/* The largest |a - b| relative to the largest |b| */
static double rel_gap(const float *a, const float *b, size_t n) {
    double gap = 0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        gap = fmax(gap, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return gap / scale;
}

/* One pass (forward and backward) of a batch big enough for the batch loops to split across
 * threads: outputs[0..3] = y, dx, dw, db */
static void conv_pass(float *const outputs[4], const float *x, const float *w, const float *b,
                      const float *r, int batch, const conv_shape *shape, int transposed,
                      int threads) {
    vae_set_num_threads(threads);
    conv_shape split = *shape; /* the batch split among the threads, as a workspace splits it */
    split.workers = threads;
    const conv_shape *s = &split;
    float *cols = malloc(sizeof(float) * op_conv_cols_size(s, batch, transposed));
    size_t nw = (size_t)s->in_c * s->out_c * s->k * s->k;
    memset(outputs[2], 0, sizeof(float) * nw), memset(outputs[3], 0, sizeof(float) * s->out_c);
    (transposed ? op_convt2d_forward : op_conv2d_forward)(outputs[0], x, w, b, batch, s, cols);
    (transposed ? op_convt2d_backward : op_conv2d_backward)(outputs[1], outputs[2], outputs[3], r,
                                                             x, w, batch, s, cols);
    free(cols);
}

/* sum over i of a[i] * b[i] */
static double dot(const float *a, const double *b, size_t n) {
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* The backward outputs g = {y, dx, dw, db} of a big batch (several chunks) against the
 * reference through the adjoint: <dx, v> = <dy, conv_w(v)> and <dw, u> = <dy, conv_u(x)> for
 * random v, u (no bias), and db = the sums of dy per channel. */
static void adjoint_check(float *const g[4], const float *x, const float *dy, const float *w,
                          int batch, const conv_shape *s, int transposed) {
    const size_t nx = (size_t)batch * s->in_c * s->in_h * s->in_w;
    const size_t ny = (size_t)batch * s->out_c * s->out_h * s->out_w;
    const size_t nw = (size_t)s->in_c * s->out_c * s->k * s->k, hw = (size_t)s->out_h * s->out_w;
    double *v = malloc(sizeof(double) * nx), *xd = malloc(sizeof(double) * nx);
    double *u = malloc(sizeof(double) * nw), *wd = malloc(sizeof(double) * nw);
    double *y = malloc(sizeof(double) * ny), *zero = calloc((size_t)s->out_c, sizeof(double));
    vae_rng rng = vae_rng_make(44, (uint64_t)transposed);
    for (size_t i = 0; i < nx; i++) v[i] = 2 * vae_rng_uniform(&rng) - 1, xd[i] = x[i];
    for (size_t i = 0; i < nw; i++) u[i] = 2 * vae_rng_uniform(&rng) - 1, wd[i] = w[i];
    ref_conv(y, v, wd, zero, batch, s, transposed);
    double want = dot(dy, y, ny), got = dot(g[1], v, nx);
    CHECK(fabs(got - want) <= 1e-4 * fabs(want), "dx: <dx, v> %g, <dy, conv(v)> %g", got, want);
    ref_conv(y, xd, u, zero, batch, s, transposed);
    want = dot(dy, y, ny), got = dot(g[2], u, nw);
    CHECK(fabs(got - want) <= 1e-4 * fabs(want), "dw: <dw, u> %g, <dy, conv_u(x)> %g", got, want);
    double worst = 0;
    for (int c = 0; c < s->out_c; c++) {
        double sum = 0;
        for (int n = 0; n < batch; n++)
            for (size_t i = 0; i < hw; i++) sum += dy[((size_t)n * s->out_c + c) * hw + i];
        worst = fmax(worst, fabs(sum - g[3][c]));
    }
    CHECK(worst < 1e-3, "db off the sums of dy by %g", worst);
    free(v), free(xd), free(u), free(wd), free(y), free(zero);
}

/* The conv preset's inner layers at batch 64 on two threads agree with one thread's passes
 * (themselves checked above) to the products' rounding, and the forward with the reference. */
static void check_threads(int transposed) {
    conv_shape s = {.in_c = transposed ? 64 : 32, .in_h = transposed ? 7 : 14,
                    .out_c = transposed ? 32 : 64, .out_h = transposed ? 14 : 7, .k = 4,
                    .stride = 2, .pad = 1};
    s.in_w = s.in_h, s.out_w = s.out_h;
    enum { B = 64 };
    size_t n[4] = {(size_t)B * s.out_c * s.out_h * s.out_w, (size_t)B * s.in_c * s.in_h * s.in_w,
                   (size_t)s.in_c * s.out_c * 16, (size_t)s.out_c};
    float *x = malloc(sizeof(float) * n[1]), *w = malloc(sizeof(float) * n[2]);
    float *b = malloc(sizeof(float) * n[3]), *r = malloc(sizeof(float) * n[0]);
    float *one[4], *two[4], *three[4];
    for (int i = 0; i < 4; i++)
        one[i] = malloc(sizeof(float) * n[i]), two[i] = malloc(sizeof(float) * n[i]),
        three[i] = malloc(sizeof(float) * n[i]);
    vae_rng rng = vae_rng_make(43, (uint64_t)transposed);
    for (size_t i = 0; i < n[1]; i++) x[i] = 2 * vae_rng_uniform(&rng) - 1;
    for (size_t i = 0; i < n[2]; i++) w[i] = 0.1f * (2 * vae_rng_uniform(&rng) - 1);
    for (size_t i = 0; i < n[3]; i++) b[i] = 2 * vae_rng_uniform(&rng) - 1;
    for (size_t i = 0; i < n[0]; i++) r[i] = 2 * vae_rng_uniform(&rng) - 1;
    const int keep = vae_get_num_threads();
    conv_pass(one, x, w, b, r, B, &s, transposed, 1);
    conv_pass(two, x, w, b, r, B, &s, transposed, 2);
    conv_pass(three, x, w, b, r, B, &s, transposed, 3); /* 64 samples: uneven shares */
    vae_set_num_threads(keep);
    double *yd = malloc(sizeof(double) * n[0]), *xd = malloc(sizeof(double) * n[1]);
    double *wd = malloc(sizeof(double) * n[2]), *bd = malloc(sizeof(double) * n[3]);
    for (size_t i = 0; i < n[1]; i++) xd[i] = x[i];
    for (size_t i = 0; i < n[2]; i++) wd[i] = w[i];
    for (size_t i = 0; i < n[3]; i++) bd[i] = b[i];
    ref_conv(yd, xd, wd, bd, B, &s, transposed);
    double worst = 0;
    for (size_t i = 0; i < n[0]; i++) worst = fmax(worst, fabs(two[0][i] - yd[i]));
    CHECK(worst < 1e-4, "%s, 2 threads: forward off the reference by %g", transposed ? "convT" : "conv", worst);
    adjoint_check(one, x, r, w, B, &s, transposed);
    adjoint_check(three, x, r, w, B, &s, transposed);
    const char *what = transposed ? "convT" : "conv";
    for (int i = 0; i < 4; i++) {
        CHECK(rel_gap(two[i], one[i], n[i]) < 1e-5, "%s: output %d of 2 threads off 1's by %g",
              what, i, rel_gap(two[i], one[i], n[i]));
        CHECK(rel_gap(three[i], one[i], n[i]) < 1e-5, "%s: output %d of 3 threads off 1's by %g",
              what, i, rel_gap(three[i], one[i], n[i]));
    }
    for (int i = 0; i < 4; i++) free(one[i]), free(two[i]), free(three[i]);
    free(x), free(w), free(b), free(r), free(yd), free(xd), free(wd), free(bd);
}

static void test_conv_threads(void) {
    check_threads(0);
    check_threads(1);
}

/* A workspace's scratch, sized for its largest batch, serves every smaller one: here a batch
 * that runs in one chunk where the larger ran in two (the sanitizer build sees any write past
 * the exact-size buffer), with the same results as scratch sized for it. */
static void test_conv_smaller_batch(void) {
    conv_shape s = {.in_c = 32, .in_h = 14, .in_w = 14, .out_c = 64, .out_h = 7, .out_w = 7,
                    .k = 4, .stride = 2, .pad = 1, .workers = 1};
    int most = 1; /* the largest batch the scratch of one chunk holds */
    while (op_conv_cols_size(&s, most + 1, 0) > op_conv_cols_size(&s, most, 0)) most++;
    const int big = most + 1, batch = most;
    const size_t nx = (size_t)batch * 32 * 196, ny = (size_t)batch * 64 * 49, nw = 32 * 64 * 16;
    float *x = malloc(4 * nx), *w = malloc(4 * nw), *b = calloc(64, 4), *dy = malloc(4 * ny);
    float *y[2] = {malloc(4 * ny), malloc(4 * ny)}, *dx[2] = {malloc(4 * nx), malloc(4 * nx)};
    float *dw[2] = {calloc(nw, 4), calloc(nw, 4)}, *db[2] = {calloc(64, 4), calloc(64, 4)};
    vae_rng rng = vae_rng_make(45, 0);
    for (size_t i = 0; i < nx; i++) x[i] = vae_rng_uniform(&rng);
    for (size_t i = 0; i < nw; i++) w[i] = vae_rng_uniform(&rng) - 0.5f;
    for (size_t i = 0; i < ny; i++) dy[i] = vae_rng_uniform(&rng) - 0.5f;
    for (int i = 0; i < 2; i++) {
        float *cols = malloc(4 * op_conv_cols_size(&s, i == 0 ? big : batch, 0));
        op_conv2d_forward(y[i], x, w, b, batch, &s, cols);
        op_conv2d_backward(dx[i], dw[i], db[i], dy, x, w, batch, &s, cols);
        free(cols);
    }
    CHECK(!memcmp(y[0], y[1], 4 * ny) && !memcmp(dx[0], dx[1], 4 * nx) &&
              !memcmp(dw[0], dw[1], 4 * nw) && !memcmp(db[0], db[1], 4 * 64),
          "batch %d in scratch for %d: the same results", batch, big);
    free(x), free(w), free(b), free(dy);
    for (int i = 0; i < 2; i++) free(y[i]), free(dx[i]), free(dw[i]), free(db[i]);
}

int main(void) {
    RUN(test_conv2d);
    RUN(test_convt2d);
    RUN(test_conv_threads);
    RUN(test_conv_smaller_batch);
    return CHECK_SUMMARY();
}

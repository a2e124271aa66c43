/* gemm_limit.c — the matrix-product limit of a training step: times cblas_sgemm on exactly the
 * products one step of `vae train` makes (same shapes, transposes and thread count) and prints
 * the FLOPs per sample, the GEMM rate and the samples/s the products alone would allow. For a
 * model with convolutions these are its dense layers' products (between the convolutions'
 * flattened output and the latent code); build/conv_ops times the convolutions.
 * --onednn times oneDNN's dnnl_sgemm instead (in a build with oneDNN).
 *   gemm_limit [--preset NAME] [--batch B] [--threads T] [--dim D] [--seconds S] [--onednn] */
#include "../cli/blas_kernels.h"
#include "vae.h"

#include <cblas.h>
#ifdef VAE_ONEDNN
#include <dnnl.h>
#endif
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int m, n, k;
} product;

/* One row-major product C = op(A) op(B), beta 0, through the library asked for. */
static int product_run(const product *p, int onednn, const float *A, const float *B, float *C) {
    int lda = p->ta == CblasNoTrans ? p->k : p->m, ldb = p->tb == CblasNoTrans ? p->n : p->k;
#ifdef VAE_ONEDNN
    if (onednn)
        return dnnl_sgemm(p->ta == CblasNoTrans ? 'N' : 'T', p->tb == CblasNoTrans ? 'N' : 'T',
                          p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n) != dnnl_success;
#endif
    if (onednn) return 1;
    cblas_sgemm(CblasRowMajor, p->ta, p->tb, p->m, p->n, p->k, 1.0f, A, lda, B, ldb, 0.0f, C, p->n);
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int add_layer(product *p, int count, int batch, int in, int out, int needs_dx) {
    p[count++] = (product){CblasNoTrans, CblasTrans, batch, out, in};  /* y = x W^T */
    p[count++] = (product){CblasTrans, CblasNoTrans, out, in, batch};  /* dW = dy^T x */
    if (needs_dx) p[count++] = (product){CblasNoTrans, CblasNoTrans, batch, in, out}; /* dx */
    return count;
}

/* The products of a step of m's dense layers, read off its tensor table (each 2-D weight is
 * (out, in)); the model's first layer computes no input gradient */
static int model_products(product *p, const vae_model *m, int batch) {
    int n = 0;
    for (int i = 0; i < vae_model_num_tensors(m); i++) {
        const vae_tensor_info t = vae_model_tensor(m, i);
        if (t.ndims == 2) n = add_layer(p, n, batch, t.cols, t.rows, i > 0);
    }
    return n;
}

int main(int argc, char **argv) {
    choose_blas_kernels(argv); /* OpenBLAS's kernels as vae picks them */
    const char *preset = "pytorch";
    int batch = 128, threads = 0, dim = 784, onednn = 0;
    double seconds = 2.0;
    static const struct option opts[] = {{"preset", 1, 0, 'p'}, {"batch", 1, 0, 'b'},
                                         {"threads", 1, 0, 't'}, {"dim", 1, 0, 'd'},
                                         {"seconds", 1, 0, 's'}, {"onednn", 0, 0, 'o'},
                                         {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "p:b:t:d:s:o", opts, NULL)) != -1) {
        if (c == 'p') preset = optarg;
        else if (c == 'b') batch = atoi(optarg);
        else if (c == 't') threads = atoi(optarg);
        else if (c == 'd') dim = atoi(optarg);
        else if (c == 's') seconds = atof(optarg);
        else if (c == 'o') onednn = 1;
        else return 64;
    }
    vae_config cfg;
    vae_error err;
    if (vae_config_preset(&cfg, preset, dim, &err) != VAE_OK || batch < 1) {
        fprintf(stderr, "gemm_limit: %s\n", err.message);
        return 64;
    }
    vae_set_num_threads(threads);
    vae_model *m;
    if (vae_model_create(&m, &cfg, 1, &err) != VAE_OK) {
        fprintf(stderr, "gemm_limit: %s\n", err.message);
        return 64;
    }
    product p[4 * (2 * VAE_MAX_HIDDEN + 3)];
    const int n = model_products(p, m, batch);
    vae_model_free(m);

    double flops = 0;
    size_t biggest = 0;
    for (int i = 0; i < n; i++) {
        flops += 2.0 * p[i].m * p[i].n * p[i].k;
        size_t a = (size_t)p[i].m * p[i].k, b = (size_t)p[i].k * p[i].n, cc = (size_t)p[i].m * p[i].n;
        size_t mx = a > b ? a : b;
        mx = mx > cc ? mx : cc;
        biggest = mx > biggest ? mx : biggest;
    }
    float *A = malloc(biggest * sizeof(float)), *B = malloc(biggest * sizeof(float)),
          *C = malloc(biggest * sizeof(float));
    for (size_t i = 0; i < biggest; i++) A[i] = B[i] = 0.001f * (float)(i % 1000), C[i] = 0;

    /* whole steps' worth of products, repeated until the time is up (after one warm-up step) */
    long steps = 0;
    double t0 = 0, elapsed = 0;
    for (;;) {
        for (int i = 0; i < n; i++)
            if (product_run(&p[i], onednn, A, B, C)) {
                fprintf(stderr, "gemm_limit: no oneDNN product in this build\n");
                return 1;
            }
        if (steps++ == 0) t0 = now();
        elapsed = now() - t0;
        if (elapsed > seconds && steps > 10) break;
    }
    double per_step = elapsed / (double)(steps - 1);
    printf("library %s preset %s batch %d threads %d products %d flops_per_sample %.0f gemm_gflops %.2f "
           "limit_samples_per_s %.0f\n",
           onednn ? "onednn" : "openblas", preset, batch, vae_get_num_threads(), n, flops / batch, flops / per_step * 1e-9,
           batch / per_step);
    free(A), free(B), free(C);
    return 0;
}

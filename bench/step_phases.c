/* step_phases.c — where a training step's time goes at a given thread count, backend and
 * precision: the batch gather, forward, backward, the gradients' finiteness check and Adam,
 * each timed over the same steps as `vae train` makes them (random inputs in [0,1], standard
 * normal noise). Prints ms per step of each phase, its share, and the samples/s of the whole.
 * With --batch-threads the batch is split across the threads as `vae train --batch-threads on`
 * does: "forward" is then the threads' slices (forward and the data's gradients), "backward"
 * the parameters' gradients over the whole batch; --prepacked as `--batch-threads prepacked`
 * (the dense weights transposed once a pass for the threads' fp32 products).
 *   step_phases [--preset NAME] [--batch B] [--threads T] [--backend openblas|onednn]
 *               [--bf16] [--batch-threads] [--prepacked] [--seconds S] */
#include "../cli/blas_kernels.h"
#include "core/internal.h"
#include "model/model_internal.h"
#include "train/workers.h"
#include "vae.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { GATHER, FORWARD, BACKWARD, CHECK, ADAM, PHASES };
static const char *const phase_names[PHASES] = {"gather", "forward", "backward", "finite",
                                                "adam"};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    vae_model *model;
    vae_workspace *ws;
    vae_adam *adam;
    float *pool, *x, *eps;
    int pool_rows, batch, dim, latent;
    vae_workers workers; /* --batch-threads; none: the products split */
} bench;

static int step(bench *b, unsigned *seed, double *t) {
    vae_error err;
    double t0 = now();
    int rows_of[b->batch];
    for (int r = 0; r < b->batch; r++) rows_of[r] = (int)(rand_r(seed) % (unsigned)b->pool_rows);
#pragma omp parallel for schedule(static) if ((size_t)b->batch * b->dim >= 32768)
    for (int r = 0; r < b->batch; r++) {
        const int row = rows_of[r];
        memcpy(b->x + (size_t)r * b->dim, b->pool + (size_t)row * b->dim,
               (size_t)b->dim * sizeof(float));
    }
    double t1 = now();
    const vae_batch rows = {b->batch, b->x, b->eps, NULL, NULL};
    vae_loss loss = {0};
    /* as vae train's passes: the forward leaves the likelihood's gradient for the backward */
    vae_status s = b->workers.n
                       ? vae_workers_slices(&b->workers, b->model, &rows, NULL, &loss, &err)
                       : vae_forward_for_backward(b->model, b->ws, &rows, &loss, &err);
    double t2 = now();
    if (s == VAE_OK)
        s = b->workers.n ? vae_view_param_grads(b->model, b->ws, b->workers.view, b->workers.n,
                                                &rows, b->workers.k, &err)
                         : vae_backward(b->model, b->ws, &rows, NULL, &err);
    double t3 = now();
    if (s != VAE_OK) goto fail;
    if (!vae_all_finite(vae_model_grads(b->model), vae_model_num_params(b->model))) return 1;
    double t4 = now();
    vae_workspace_adam_step(b->model, b->ws, b->adam); /* as vae train's step */
    double t5 = now();
    t[GATHER] += t1 - t0, t[FORWARD] += t2 - t1, t[BACKWARD] += t3 - t2;
    t[CHECK] += t4 - t3, t[ADAM] += t5 - t4;
    return 0;
fail:
    fprintf(stderr, "step_phases: %s\n", err.message);
    return 1;
}

static int setup(bench *b, const char *preset, vae_backend backend, int bf16, int split) {
    vae_config cfg;
    vae_error err;
    vae_adam_options ao;
    vae_adam_options_default(&ao);
    if (vae_config_preset(&cfg, preset, 784, &err) != VAE_OK ||
        vae_model_create(&b->model, &cfg, 1, &err) != VAE_OK ||
        vae_model_set_backend(b->model, backend, b->batch, NULL, &err) != VAE_OK ||
        (bf16 && vae_model_set_cpu_precision(b->model, VAE_PRECISION_BF16, &err) != VAE_OK) ||
        vae_workspace_create(&b->ws, b->model, b->batch, &err) != VAE_OK ||
        vae_adam_create(&b->adam, vae_model_num_params(b->model), &ao, &err) != VAE_OK ||
        (split && vae_workers_init(&b->workers, b->ws, b->batch, 1, vae_get_num_threads(),
                                   &err) != VAE_OK)) {
        fprintf(stderr, "step_phases: %s\n", err.message);
        return 1;
    }
    if (!split) vae_workspace_own_prepacked(b->model, b->ws, 1); /* bf16: as vae train's */
    b->dim = cfg.input_dim, b->latent = cfg.latent_dim, b->pool_rows = 4096;
    b->pool = malloc((size_t)b->pool_rows * b->dim * sizeof(float));
    b->x = malloc((size_t)b->batch * b->dim * sizeof(float));
    b->eps = malloc((size_t)b->batch * b->latent * sizeof(float));
    if (!b->pool || !b->x || !b->eps) return 1;
    unsigned seed = 1;
    for (size_t i = 0; i < (size_t)b->pool_rows * b->dim; i++)
        b->pool[i] = (float)(rand_r(&seed) % 256) / 255.0f;
    for (int i = 0; i < b->batch * b->latent; i++) { /* Box-Muller */
        double u = (rand_r(&seed) + 1.0) / (RAND_MAX + 2.0), v = rand_r(&seed) / (RAND_MAX + 1.0);
        b->eps[i] = (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
    }
    return 0;
}

int main(int argc, char **argv) {
    choose_blas_kernels(argv); /* OpenBLAS's kernels as vae picks them */
    const char *preset = "pytorch";
    bench b = {0};
    b.batch = 128;
    int threads = 0, bf16 = 0, split = 0;
    vae_backend backend = VAE_BACKEND_OPENBLAS;
    double seconds = 2.0;
    static const struct option opts[] = {{"preset", 1, 0, 'p'},  {"batch", 1, 0, 'b'},
                                         {"threads", 1, 0, 't'}, {"backend", 1, 0, 'k'},
                                         {"bf16", 0, 0, 'f'},    {"seconds", 1, 0, 's'},
                                         {"batch-threads", 0, 0, 'B'},
                                         {"prepacked", 0, 0, 'P'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "p:b:t:k:fs:", opts, NULL)) != -1) {
        if (c == 'p') preset = optarg;
        else if (c == 'b') b.batch = atoi(optarg);
        else if (c == 't') threads = atoi(optarg);
        else if (c == 'k') backend = strcmp(optarg, "onednn") ? VAE_BACKEND_OPENBLAS
                                                               : VAE_BACKEND_ONEDNN;
        else if (c == 'f') bf16 = 1;
        else if (c == 's') seconds = atof(optarg);
        else if (c == 'B') split = split ? split : 1;
        else if (c == 'P') split = 2;
        else return 64;
    }
    if (b.batch < 1) return 64;
    vae_set_num_threads(threads);
    if (setup(&b, preset, backend, bf16, split)) return 1;
    b.workers.prepacked = split == 2;
    unsigned seed = 7;
    double t[PHASES] = {0};
    for (int i = 0; i < 20; i++) /* warm-up: pages, kernels, caches */
        if (step(&b, &seed, t)) return 1;
    memset(t, 0, sizeof t);
    long steps = 0;
    double start = now();
    while (now() - start < seconds) {
        if (step(&b, &seed, t)) return 1;
        steps++;
    }
    double total = 0;
    for (int i = 0; i < PHASES; i++) total += t[i];
    printf("preset %s batch %d threads %d backend %s%s%s: %.0f samples/s;", preset, b.batch,
           threads, backend == VAE_BACKEND_ONEDNN ? "onednn" : "openblas", bf16 ? " bf16" : "",
           b.workers.n ? (b.workers.prepacked ? " batch threads prepacked" : " batch threads")
                       : "",
           (double)steps * b.batch / total);
    for (int i = 0; i < PHASES; i++)
        printf(" %s %.3f ms (%.0f%%)", phase_names[i], 1e3 * t[i] / steps, 100 * t[i] / total);
    printf("\n");
    return 0;
}

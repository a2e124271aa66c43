/* workers.c — batch threads (workers.h). */
#include "train/workers.h"
#include "backend/ops_table.h"
#include "core/internal.h"
#include "model/model_internal.h"

#include <stdlib.h>
#include <string.h>

vae_status vae_train_pass(vae_model *m, vae_workspace *ws, const vae_batch *rows, int k,
                          const vae_objective *objective, vae_loss *loss, vae_error *err) {
    if (k > 1) return vae_iwae_step(m, ws, rows, k, loss, err);
    VAE_TRY(vae_forward_for_backward(m, ws, rows, loss, err));
    return vae_backward(m, ws, rows, objective, err);
}

int vae_workers_threads(const vae_train_options *opt) {
    const int threads = vae_get_num_threads();
    return threads < 2 || opt->free_bits > 0.0f || opt->device == VAE_DEVICE_CUDA ? 0 : threads;
}

vae_status vae_workers_init(vae_workers *w, vae_workspace *whole, int batch, int k, int threads,
                            vae_error *err) {
    *w = (vae_workers){0};
    const int n = threads, slice = (batch + n - 1) / n;
    w->view = calloc((size_t)n, sizeof *w->view);
    w->loss = calloc((size_t)n, sizeof *w->loss);
    w->status = calloc((size_t)n, sizeof *w->status);
    w->err = calloc((size_t)n, sizeof *w->err);
    VAE_RETURN_IF(!w->view || !w->loss || !w->status || !w->err, err, VAE_ERR_NO_MEMORY,
                  "out of memory for %d batch threads", n);
    w->n = n, w->k = k, w->whole = whole, w->whole_rows = batch * k;
    for (int i = 0; i < n; i++) VAE_TRY(vae_workspace_view(&w->view[i], whole, slice * k, err));
    return VAE_OK;
}

void vae_workers_free(vae_workers *w) {
    for (int i = 0; i < w->n && w->view; i++) vae_workspace_free(w->view[i]);
    free(w->view), free(w->loss), free(w->status), free(w->err);
    *w = (vae_workers){0};
}

/* Worker i's slice of rows: [n*i/workers, n*(i+1)/workers) */
static vae_batch slice_of(const vae_batch *rows, int i, int workers, int k, int dim, int latent) {
    const int n = rows->n, lo = n * i / workers, hi = n * (i + 1) / workers;
    return (vae_batch){hi - lo, rows->x + (size_t)lo * dim, rows->eps + (size_t)lo * k * latent,
                       rows->labels ? rows->labels + lo : NULL,
                       rows->mask ? rows->mask + (size_t)lo * dim : NULL};
}

/* The first failed slice's error, or the slices' losses added to loss in order */
static vae_status sum_slices(vae_workers *w, vae_loss *loss, vae_error *err) {
    for (int i = 0; i < w->n; i++) {
        if (w->status[i] != VAE_OK) {
            *err = w->err[i];
            return vae_add_context(err, w->status[i], "batch thread %d", i + 1);
        }
        loss->recon += w->loss[i].recon, loss->kl += w->loss[i].kl;
        loss->count += w->loss[i].count;
    }
    return VAE_OK;
}

vae_status vae_workers_slices(vae_workers *w, vae_model *m, const vae_batch *rows,
                              const vae_objective *objective, vae_loss *loss, vae_error *err) {
    const int n = rows->n, workers = w->n, k = w->k;
    const int dim = vae_model_config(m)->input_dim, latent = vae_model_config(m)->latent_dim;
    vae_workspace_share_weights(m, w->whole, 1, w->prepacked); /* once for every thread */
#pragma omp parallel for schedule(static, 1) num_threads(workers)
    for (int i = 0; i < workers; i++) {
        const vae_batch part = slice_of(rows, i, workers, k, dim, latent);
        w->loss[i] = (vae_loss){0};
        w->status[i] = vae_workspace_view_at(w->view[i], n * i / workers * k, part.n * k, n,
                                             &w->err[i]);
        if (part.n == 0 || w->status[i] != VAE_OK) continue;
        w->status[i] =
            vae_train_pass(m, w->view[i], &part, k, objective, &w->loss[i], &w->err[i]);
    }
    vae_workspace_share_weights(m, w->whole, 0, 0);
    return sum_slices(w, loss, err);
}

vae_status vae_workers_forward(vae_workers *w, const vae_model *m, const vae_batch *rows,
                               vae_loss *loss, vae_error *err) {
    const int n = rows->n, workers = w->n;
    const int dim = vae_model_config(m)->input_dim, latent = vae_model_config(m)->latent_dim;
    VAE_RETURN_IF(n < 1 || n > w->whole_rows, err, VAE_ERR_INVALID_ARGUMENT,
                  "%d rows for batch threads that hold 1..%d", n, w->whole_rows);
    /* bf16's rounding only: the optional form (fp32's transposed copy) is for training
     * passes; an evaluation would make it again for each of its batches */
    vae_workspace_share_weights(m, w->whole, 1, 0);
#pragma omp parallel for schedule(static, 1) num_threads(workers)
    for (int i = 0; i < workers; i++) {
        const vae_batch part = slice_of(rows, i, workers, 1, dim, latent);
        w->loss[i] = (vae_loss){0};
        w->status[i] = vae_workspace_view_at(w->view[i], n * i / workers, part.n, n, &w->err[i]);
        if (part.n && w->status[i] == VAE_OK)
            w->status[i] = vae_forward(m, w->view[i], &part, &w->loss[i], &w->err[i]);
    }
    vae_workspace_share_weights(m, w->whole, 0, 0);
    return sum_slices(w, loss, err);
}

vae_status vae_workers_pass(vae_workers *w, vae_model *m, const vae_batch *rows,
                            const vae_objective *objective, vae_loss *loss, vae_error *err) {
    VAE_TRY(vae_workers_slices(w, m, rows, objective, loss, err));
    return vae_view_param_grads(m, w->whole, w->view, w->n, rows, w->k, err);
}

/* How much faster a split must time to be chosen over the one before (best of three rounds) */
#define AUTO_MARGIN 0.95

/* The part of Adam's cost a split changes: its writes of every parameter. Where each batch
 * thread has read every weight, those writes must take the cache lines back from all of them
 * (two threads, batch 16: Adam 0.54 ms a step against 0.29 after the products' split). Timed
 * as a pass that negates each parameter, split over the threads as Adam's (exact: a second one
 * restores the bits), which needs no moments or copy of the model's size. */
static void negate_params(float *p, long n) {
#pragma omp parallel for simd schedule(static) if (n >= VAE_PARAMS_PARALLEL_MIN)
    for (long i = 0; i < n; i++) p[i] = -p[i];
}

/* Seconds of a step (pass and negate_params) each way (the best of three rounds after a
 * warm-up, the ways alternating so that a change in the machine's load falls on all): time[0]
 * products split, time[1] batch split, time[2] batch split on prepacked weights (1e30 where
 * the table has no such choice). */
static vae_status time_splits(vae_model *m, vae_workspace *ws, vae_workers *w,
                              const vae_batch *rows, const vae_objective *objective,
                              double time[3], vae_error *err) {
    const int ways = vae_model_ops(m)->prepack_optional ? 3 : 2;
    float *params = vae_model_params(m);
    const long n = (long)vae_model_num_params(m);
    time[0] = time[1] = time[2] = 1e30;
    for (int round = 0; round < 4; round++)
        for (int way = 0; way < ways; way++) {
            vae_loss loss = {0};
            w->prepacked = way == 2;
            double t0 = vae_seconds_now();
            vae_status s = way ? vae_workers_pass(w, m, rows, objective, &loss, err)
                               : vae_train_pass(m, ws, rows, w->k, objective, &loss, err);
            negate_params(params, n);
            double t = vae_seconds_now() - t0;
            negate_params(params, n); /* the model's parameters again, bit for bit */
            VAE_TRY(s);
            if (round > 0 && t < time[way]) time[way] = t; /* round 0: caches, JIT kernels */
        }
    w->prepacked = 0;
    return VAE_OK;
}

vae_status vae_train_batch_threads_auto(vae_model *m, const vae_train_options *opt,
                                        int *batch_threads, vae_error *err) {
    *batch_threads = 0;
    VAE_RETURN_IF(opt->batch_size < 1 || opt->iwae_k < 0 || opt->batch_size > (1 << 24), err,
                  VAE_ERR_INVALID_ARGUMENT, "batch %d, IWAE draws %d: not a training run's",
                  opt->batch_size, opt->iwae_k);
    const int threads = vae_workers_threads(opt);
    if (!threads) return VAE_OK;
    const vae_config *c = vae_model_config(m);
    const int batch = opt->batch_size, k = opt->iwae_k > 1 ? opt->iwae_k : 1;
    float *x = vae_calloc_array((size_t)batch * c->input_dim, sizeof(float));
    float *eps = vae_calloc_array((size_t)batch * k * c->latent_dim, sizeof(float));
    float *grads = vae_calloc_array(vae_model_num_params(m), sizeof(float));
    uint8_t *labels = vae_calloc_array((size_t)batch, 1); /* class 0 for a conditional model */
    vae_workspace *ws = NULL;
    vae_workers w = {0};
    vae_status s = x && eps && grads && labels
                       ? vae_workspace_create(&ws, m, batch * k, err)
                       : vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory to time batch threads");
    if (s == VAE_OK) s = vae_workers_init(&w, ws, batch, k, threads, err);
    if (s == VAE_OK) {
        vae_workspace_set_grads(ws, grads); /* the model's own gradients stay as they are */
        const vae_batch rows = {batch, x, eps, c->n_classes ? labels : NULL, NULL};
        const vae_objective objective = {opt->beta, opt->free_bits};
        double time[3];
        s = time_splits(m, ws, &w, &rows, &objective, time, err);
        /* each step away from the default only when clearly faster: within timing noise the
         * simpler split is kept, so that close calls do not flip from run to run */
        if (s == VAE_OK && (time[1] < AUTO_MARGIN * time[0] || time[2] < AUTO_MARGIN * time[0]))
            *batch_threads = time[2] < AUTO_MARGIN * time[1] ? 2 : 1;
    }
    vae_workers_free(&w);
    vae_workspace_free(ws);
    free(x), free(eps), free(grads), free(labels);
    vae_release_free_memory(); /* the run's own buffers come next */
    return s;
}

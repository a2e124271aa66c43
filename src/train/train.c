/* train.c — the training loop: shuffle, batch, forward, backward, Adam; evaluation. */
#include "backend/backend.h"
#include "ops/ops.h"
#include "ops/vecmath.h"
#include "model/model_internal.h"
#include "train/workers.h"

#include <float.h>
#include <math.h>
#include <string.h>

void vae_train_options_default(vae_train_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->epochs = 10;
    opt->batch_size = 128;
    opt->seed = 1;
    vae_adam_options_default(&opt->adam);
    opt->eval_batch_size = 1000;
    opt->beta = 1.0f;
    opt->start.epoch = 1;
}

#define EVAL_WORKSPACE_BYTES (8u << 20)

/* Whether an observed value of x[0, n) lies outside [lo, hi] or is NaN: branch-free, so that it
 * vectorizes, and split over the threads (Fashion-MNIST's 47 million training values took a
 * serial loop 60 ms, every command that reads data) */
VAE_SIMD_CLONES
static int any_outside(const float *x, const uint8_t *mask, size_t n, float lo, float hi) {
    int bad = 0;
    const long count = (long)n;
    if (mask) {
#pragma omp parallel for simd reduction(| : bad) schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) bad |= (!(x[i] >= lo) | !(x[i] <= hi)) & (mask[i] != 0);
    } else {
#pragma omp parallel for simd reduction(| : bad) schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) bad |= !(x[i] >= lo) | !(x[i] <= hi);
    }
    return bad;
}

vae_status vae_check_data(const vae_model *model, const vae_dataset *data, const char *what,
                          vae_error *err) {
    const vae_config *cfg = vae_model_config(model);
    VAE_RETURN_IF(!data || data->count == 0, err, VAE_ERR_INVALID_ARGUMENT, "%s data is empty",
                  what);
    VAE_RETURN_IF(data->dim != cfg->input_dim, err, VAE_ERR_INVALID_ARGUMENT,
                  "%s data has %d values per sample, the model expects %d", what, data->dim,
                  cfg->input_dim);
    VAE_RETURN_IF(data->mask && !cfg->missing, err, VAE_ERR_INVALID_ARGUMENT,
                  "%s data have missing values; a model for them is trained with missing values "
                  "allowed (--missing)", what);
    VAE_RETURN_IF(cfg->n_classes && !data->labels, err, VAE_ERR_INVALID_ARGUMENT,
                  "%s data have no labels, which a conditional model needs", what);
    for (size_t i = 0; cfg->n_classes && i < data->count; i++)
        VAE_RETURN_IF(data->labels[i] >= cfg->n_classes, err, VAE_ERR_INVALID_ARGUMENT,
                      "%s data: sample %zu has label %d, the model knows classes 0..%d", what,
                      i + 1, data->labels[i], cfg->n_classes - 1);
    /* each likelihood's support: a value outside it would make the loss meaningless or NaN */
    const size_t n = data->count * (size_t)data->dim;
    /* Bernoulli [0, 1], Poisson [0, FLT_MAX], Gaussian [-FLT_MAX, FLT_MAX]: finite, NaN never */
    const float lo = cfg->likelihood == VAE_LIK_GAUSSIAN ? -FLT_MAX : 0.0f,
                hi = cfg->likelihood == VAE_LIK_BERNOULLI ? 1.0f : FLT_MAX;
    if (!any_outside(data->x, data->mask, n, lo, hi)) return VAE_OK;
    for (size_t i = 0; i < n; i++) { /* the first value outside, for the message */
        float v = data->x[i];
        if (data->mask && !data->mask[i]) continue;
        VAE_RETURN_IF(!(v >= lo && v <= hi), err, VAE_ERR_INVALID_ARGUMENT,
                      "%s data: sample %zu, value %zu is %g, outside what a %s likelihood "
                      "models%s", what, i / (size_t)data->dim + 1, i % (size_t)data->dim + 1,
                      (double)v, vae_likelihood_name(cfg->likelihood),
                      cfg->likelihood == VAE_LIK_BERNOULLI ? " ([0,1]; try --likelihood gaussian)"
                      : cfg->likelihood == VAE_LIK_POISSON ? " (counts >= 0)" : " (finite)");
    }
    return VAE_OK;
}

/* Evaluates samples [from, to) of data on ws, or on the batch threads of workers (not NULL:
 * batches of at most their rows); each sample's noise comes from its global index. */
static vae_status evaluate_range(const vae_model *model, vae_workspace *ws, vae_workers *workers,
                                 float *eps, const vae_dataset *data, size_t from, size_t to,
                                 int batch_size, uint64_t seed, vae_loss *loss, vae_error *err) {
    const int latent = vae_model_config(model)->latent_dim;
    for (size_t start = from; start < to; start += (size_t)batch_size) {
        size_t left = to - start;
        int batch = left < (size_t)batch_size ? (int)left : batch_size;
        for (int b = 0; b < batch; b++) {
            vae_rng rng = vae_rng_make(seed, VAE_STREAM_EVAL + start + (size_t)b);
            vae_rng_normal(&rng, eps + (size_t)b * latent, (size_t)latent);
        }
        const vae_batch rows = {batch, data->x + start * (size_t)data->dim, eps,
                                data->labels ? data->labels + start : NULL,
                                data->mask ? data->mask + start * (size_t)data->dim : NULL};
        VAE_TRY(workers ? vae_workers_forward(workers, model, &rows, loss, err)
                        : vae_forward(model, ws, &rows, loss, err));
    }
    return VAE_OK;
}

/* Adds a loss's sums across the ranks. */
static int sum_loss(const vae_collective *c, vae_loss *l) {
    double v[3] = {l->recon, l->kl, (double)l->count};
    if (c->sum_doubles(c->ctx, v, 3)) return 1;
    l->recon = v[0], l->kl = v[1], l->count = (size_t)v[2];
    return 0;
}

vae_status vae_eval_elbo(const vae_model *model, const vae_dataset *data, int batch_size,
                        uint64_t seed, vae_loss *loss, vae_error *err) {
    memset(loss, 0, sizeof *loss);
    VAE_TRY(vae_check_data(model, data, "evaluation", err));
    VAE_RETURN_IF(batch_size < 1, err, VAE_ERR_INVALID_ARGUMENT, "batch size must be >= 1");
    vae_workspace *ws;
    VAE_TRY(vae_workspace_create(&ws, model, batch_size, err));
    float *eps = vae_calloc_array((size_t)batch_size * vae_model_config(model)->latent_dim,
                                  sizeof(float));
    vae_dataset view; /* the data in the model's units */
    float *owned = NULL;
    vae_status s = eps ? vae_model_units(model, data, &view, &owned, err)
                       : vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for evaluation");
    if (s == VAE_OK)
        s = evaluate_range(model, ws, NULL, eps, &view, 0, view.count, batch_size, seed, loss,
                           err);
    free(owned);
    free(eps);
    vae_workspace_free(ws);
    return s;
}

/* One CPU training run: what it was given, what it derived, and its buffers. */
typedef struct {
    vae_model *model;
    const vae_dataset *train, *test;
    const vae_train_options *opt;
    size_t steps_per_epoch;
    int k;            /* draws per input: 1, or IWAE's K */
    int rank, ranks;  /* this process's share of every global batch */
    vae_workspace *ws, *eval_ws;
    vae_adam *adam;
    vae_adam *own_adam; /* adam when this run made it */
    size_t *order; /* N: this epoch's permutation */
    float *xb;     /* (B,D) gathered batch */
    uint8_t *yb;   /* (B) its labels, for a conditional model */
    uint8_t *mb;   /* (B,D) its masks, when values are missing */
    float *eps;    /* (max(B, eval B), L) noise */
    int eval_rows;         /* rows per evaluation batch */
    vae_dataset test_view; /* the test set in the model's units */
    float *test_owned;     /* its standardized values, when the model standardizes */
    vae_workers workers; /* batch threads (opt->batch_threads); none: the products split */
} train_state;

static void train_state_free(train_state *t) {
    vae_workspace_free(t->ws);
    vae_workspace_free(t->eval_ws);
    vae_adam_free(t->own_adam);
    free(t->order);
    free(t->xb);
    free(t->yb);
    free(t->mb);
    free(t->eps);
    free(t->test_owned);
    vae_workers_free(&t->workers);
}

/* Training on the GPU backend (backend.h), with the optimizer given or a new one. */
static vae_status train_on_gpu(vae_model *model, const vae_dataset *train,
                               const vae_dataset *test, const vae_train_options *opt,
                               uint64_t first_step, vae_error *err) {
    vae_adam *own = NULL;
    vae_dataset train_view, test_view; /* the device gets the data in the model's units */
    float *train_owned = NULL, *test_owned = NULL;
    vae_status s = vae_model_units(model, train, &train_view, &train_owned, err);
    if (s == VAE_OK && test) s = vae_model_units(model, test, &test_view, &test_owned, err);
    if (s == VAE_OK && !opt->resume_adam)
        s = vae_adam_create(&own, vae_model_num_params(model), &opt->adam, err);
    if (s == VAE_OK)
        s = vae_gpu_train(model, &train_view, test ? &test_view : NULL, opt,
                          own ? own : opt->resume_adam, first_step, err);
    vae_adam_free(own);
    free(train_owned), free(test_owned);
    return s;
}

/* The device asked for: bf16 products run on the CPU */
static vae_device train_device(const vae_train_options *opt) {
    return opt->precision == VAE_PRECISION_BF16 ? VAE_DEVICE_CPU : opt->device;
}

vae_status vae_train_check(const vae_model *model, const vae_dataset *train,
                           const vae_dataset *test, const vae_train_options *opt, vae_error *err) {
    VAE_TRY(vae_check_data(model, train, "training", err));
    if (test) VAE_TRY(vae_check_data(model, test, "test", err));
    VAE_RETURN_IF(opt->epochs < 1, err, VAE_ERR_INVALID_ARGUMENT, "epochs must be >= 1");
    VAE_RETURN_IF(opt->batch_size < 1 || opt->eval_batch_size < 1, err, VAE_ERR_INVALID_ARGUMENT,
                  "batch sizes must be >= 1");
    VAE_RETURN_IF(!(opt->beta >= 0.0f && opt->beta <= 1e6f) ||
                      !(opt->free_bits >= 0.0f && opt->free_bits <= 1e6f),
                  err, VAE_ERR_INVALID_ARGUMENT, "beta and free bits must be finite and >= 0");
    const int batch_size = opt->batch_size;
    const size_t n = train->count;
    const size_t steps_per_epoch = (n + (size_t)batch_size - 1) / (size_t)batch_size;
    const int k = opt->iwae_k > 1 ? opt->iwae_k : 1;
    VAE_RETURN_IF(opt->iwae_k < 0 || (long)batch_size * k > (1L << 24), err,
                  VAE_ERR_INVALID_ARGUMENT, "IWAE draws %d: must be >= 0 and batch x draws <= 2^24",
                  opt->iwae_k);
    VAE_RETURN_IF(k > 1 && (opt->beta != 1.0f || opt->free_bits != 0.0f || opt->kl_warmup), err,
                  VAE_ERR_INVALID_ARGUMENT,
                  "the IWAE bound has no separate KL term: beta, warm-up and free bits do not apply");
    VAE_RETURN_IF(opt->batch_threads < 0 || opt->batch_threads > 2, err,
                  VAE_ERR_INVALID_ARGUMENT,
                  "batch threads %d: expected 0 (off), 1 (on) or 2 (on, weights prepacked)",
                  opt->batch_threads);
    const int rank = opt->collective ? opt->collective->rank : 0;
    const int ranks = opt->collective ? opt->collective->size : 1;
    VAE_RETURN_IF(ranks < 1 || rank < 0 || rank >= ranks ||
                      (ranks > 1 && (!opt->collective->sum_floats || !opt->collective->sum_doubles)),
                  err, VAE_ERR_INVALID_ARGUMENT, "rank %d of %d: not a valid collective", rank, ranks);

    /* where to start: right after an epoch's last step (a run stopped there) the epoch is only
     * reported and evaluated, then the next one begins */
    const vae_train_position start = opt->start;
    VAE_RETURN_IF(start.epoch < 1 || start.epoch > opt->epochs + 1 ||
                      start.step_in_epoch > steps_per_epoch ||
                      (start.epoch == opt->epochs + 1 && start.step_in_epoch > 0),
                  err, VAE_ERR_INVALID_ARGUMENT,
                  "cannot start at epoch %d step %llu: the run has %d epochs of %zu steps",
                  start.epoch, (unsigned long long)start.step_in_epoch, opt->epochs,
                  steps_per_epoch);
    const uint64_t first_step =
        (uint64_t)(start.epoch - 1) * steps_per_epoch + start.step_in_epoch;
    if (opt->resume_adam) {
        VAE_RETURN_IF(vae_adam_num_params(opt->resume_adam) != vae_model_num_params(model), err,
                      VAE_ERR_INVALID_ARGUMENT, "the optimizer state is for %zu parameters, the "
                      "model has %zu", vae_adam_num_params(opt->resume_adam),
                      vae_model_num_params(model));
        VAE_RETURN_IF(vae_adam_steps(opt->resume_adam) != first_step, err,
                      VAE_ERR_INVALID_ARGUMENT,
                      "the optimizer has taken %llu steps, but epoch %d step %llu of batches of "
                      "%d is step %llu (another batch size or data set?)",
                      (unsigned long long)vae_adam_steps(opt->resume_adam), start.epoch,
                      (unsigned long long)start.step_in_epoch, batch_size,
                      (unsigned long long)first_step);
    } else {
        VAE_RETURN_IF(first_step != 0, err, VAE_ERR_INVALID_ARGUMENT,
                      "starting past the first step needs the optimizer state to resume from");
    }

    VAE_RETURN_IF((unsigned)opt->precision > VAE_PRECISION_BF16, err, VAE_ERR_INVALID_ARGUMENT,
                  "unknown precision %d", (int)opt->precision);
    VAE_RETURN_IF(opt->precision == VAE_PRECISION_BF16 && opt->device == VAE_DEVICE_CUDA, err,
                  VAE_ERR_INVALID_ARGUMENT,
                  "bf16 products are the CPU's (oneDNN); a GPU computes fp32 or tf32");
    vae_device device; /* AUTO: the GPU when there is one and it runs this model */
    VAE_TRY(vae_device_resolve(train_device(opt), vae_gpu_supports(model, opt, NULL), &device,
                               err));
    if (device == VAE_DEVICE_CUDA) VAE_TRY(vae_gpu_supports(model, opt, err));
    return VAE_OK;
}


/* Batch threads, when asked and there are threads to split a batch across. */
static vae_status workers_init(train_state *t, vae_error *err) {
    const int threads = t->opt->batch_threads ? vae_workers_threads(t->opt) : 0;
    if (!threads) return VAE_OK;
    VAE_TRY(vae_workers_init(&t->workers, t->ws, t->opt->batch_size, t->k, threads, err));
    t->workers.prepacked = t->opt->batch_threads == 2;
    return VAE_OK;
}

/* The buffers of a CPU run and the optimizer (the one to resume, or a new one). */
static vae_status train_state_init(train_state *t, vae_error *err) {
    const vae_train_options *opt = t->opt;
    const vae_config *cfg = vae_model_config(t->model);
    const int batch_size = opt->batch_size, dim = cfg->input_dim, latent = cfg->latent_dim;
    const int train_rows = batch_size * t->k;
    /* evaluation batches within EVAL_WORKSPACE_BYTES: the sums are the same (noise is drawn
     * per row), and a conv model's 1000 rows would take 130 MiB */
    const size_t fit = EVAL_WORKSPACE_BYTES / vae_workspace_row_bytes(t->model);
    t->eval_rows = fit < 1                                 ? 1
                   : fit < (size_t)opt->eval_batch_size ? (int)fit
                                                         : opt->eval_batch_size;
    const int noise_rows = train_rows > t->eval_rows ? train_rows : t->eval_rows;
    VAE_TRY(vae_workspace_create(&t->ws, t->model, train_rows, err));
    /* the steps add into the gradients: a run starts from zero, whatever a caller's passes
     * or a diverged run left there; written now, their pages are mapped here, not by the
     * first backward's read then write (vae_touch_pages) */
    vae_model_zero_grads(t->model);
    /* the training workspace evaluates too where it holds an evaluation batch (a conv model's,
     * whose rows are large: a workspace of its own would add 8 MiB to the run's peak) */
    if (t->test && t->eval_rows > train_rows)
        VAE_TRY(vae_workspace_create(&t->eval_ws, t->model, t->eval_rows, err));
    if (!opt->resume_adam)
        VAE_TRY(vae_adam_create(&t->own_adam, vae_model_num_params(t->model), &opt->adam, err));
    t->adam = opt->resume_adam ? opt->resume_adam : t->own_adam;
    t->order = vae_calloc_array(t->train->count, sizeof *t->order);
    t->xb = vae_calloc_array((size_t)batch_size * dim, sizeof(float));
    t->yb = vae_calloc_array((size_t)batch_size, 1);
    t->mb = t->train->mask ? vae_calloc_array((size_t)batch_size * dim, 1) : NULL;
    t->eps = vae_calloc_array((size_t)noise_rows * latent, sizeof(float));
    VAE_RETURN_IF(!t->order || !t->xb || !t->yb || !t->eps || (t->train->mask && !t->mb), err,
                  VAE_ERR_NO_MEMORY, "out of memory for the training buffers");
    if (t->test) VAE_TRY(vae_model_units(t->model, t->test, &t->test_view, &t->test_owned, err));
    VAE_TRY(workers_init(t, err));
    /* bf16's products on the whole batch read the dense weights rounded once here, then by each
     * step's Adam, instead of every product rounding its weights again (a pass over each
     * weight, twice a step for most: forward and backward) */
    if (!t->workers.n) vae_workspace_own_prepacked(t->model, t->ws, 1);
    return VAE_OK;
}

/* Rows start.. of this epoch's order into the batch buffers (inputs, in the model's units,
 * labels, masks). */
static void gather_batch(train_state *t, size_t start, int batch) {
    const vae_dataset *d = t->train;
    const size_t dim = (size_t)d->dim;
    /* split over the threads for large batches: 1024 rows of 784 took 9% of a 16-thread step */
#pragma omp parallel for schedule(static) if ((size_t)batch * dim >= OP_PARALLEL_MIN)
    for (int b = 0; b < batch; b++) {
        const size_t row = t->order[start + b];
        if (d->labels) t->yb[b] = d->labels[row];
        if (d->mask) memcpy(t->mb + (size_t)b * dim, d->mask + row * dim, dim);
        memcpy(t->xb + (size_t)b * dim, d->x + row * dim, dim * sizeof(float));
    }
    const float *mean = vae_model_data_mean(t->model), *std = vae_model_data_std(t->model);
    if (mean) vae_standardize(t->xb, (size_t)batch, d->dim, mean, std, 0);
}

/* The objective of a global step: KL warm-up (Bowman et al.) raises the weight linearly to beta. */
static vae_objective step_objective(const vae_train_options *opt, uint64_t global_step) {
    vae_objective objective = {opt->beta, opt->free_bits};
    if (opt->kl_warmup && global_step + 1 < opt->kl_warmup)
        objective.kl_weight =
            (float)((double)opt->beta * (double)(global_step + 1) / (double)opt->kl_warmup);
    return objective;
}

/* With several ranks: the global batch's mean gradient (this rank's share, then the sum) and
 * the summed loss. */
static vae_status sum_across_ranks(train_state *t, int batch, int global_batch, vae_loss *loss,
                                   uint64_t global_step, vae_error *err) {
    if (t->ranks == 1) return VAE_OK;
    float *g = vae_model_grads(t->model);
    const size_t n = vae_model_num_params(t->model);
    const float share = (float)batch / (float)global_batch;
    for (size_t i = 0; i < n; i++) g[i] *= share;
    const vae_collective *c = t->opt->collective;
    VAE_RETURN_IF(c->sum_floats(c->ctx, g, n) || sum_loss(c, loss), err, VAE_ERR_IO,
                  "summing gradients across ranks failed at step %llu",
                  (unsigned long long)global_step + 1);
    return VAE_OK;
}

/* One optimizer step on the global batch `step` of this epoch: this rank's rows gathered, the
 * noise of the whole global batch drawn (the same as one process would), forward and
 * backward, the sums across ranks, the finiteness check, Adam. */
static vae_status train_step(train_state *t, int epoch, size_t step, uint64_t global_step,
                             vae_loss *step_loss, vae_error *err) {
    const vae_train_options *opt = t->opt;
    const int latent = vae_model_config(t->model)->latent_dim, k = t->k;
    size_t start = step * (size_t)opt->batch_size, left = t->train->count - start;
    const int global_batch = left < (size_t)opt->batch_size ? (int)left : opt->batch_size;
    const int first_row = global_batch * t->rank / t->ranks; /* this rank's rows */
    const int batch = global_batch * (t->rank + 1) / t->ranks - first_row;
    gather_batch(t, start + (size_t)first_row, batch);
    vae_rng noise = vae_rng_make(opt->seed, VAE_STREAM_NOISE + global_step);
    vae_rng_normal(&noise, t->eps, (size_t)global_batch * k * latent);
    const float *eps = t->eps + (size_t)first_row * k * latent;

    const vae_objective objective = step_objective(opt, global_step);
    const vae_batch rows = {batch, t->xb, eps, t->train->labels ? t->yb : NULL, t->mb};
    const unsigned long long at = (unsigned long long)global_step + 1;
    if (batch > 0 && t->workers.n)
        VAE_FORWARD_IF_ERROR(vae_workers_pass(&t->workers, t->model, &rows, &objective,
                                              step_loss, err),
                             err, "training step %llu", at);
    if (batch > 0 && !t->workers.n)
        VAE_FORWARD_IF_ERROR(
            vae_train_pass(t->model, t->ws, &rows, k, &objective, step_loss, err), err,
            "training step %llu", at);
    VAE_TRY(sum_across_ranks(t, batch, global_batch, step_loss, global_step, err));
    double loss = (step_loss->recon + step_loss->kl) / global_batch;
    /* a diverged step is not applied: the parameters stay those of the last good step */
    VAE_RETURN_IF(!isfinite(loss) ||
                      !vae_all_finite(vae_model_grads(t->model), vae_model_num_params(t->model)),
                  err, VAE_ERR_DIVERGED,
                  "training diverged at step %llu (epoch %d, batch %zu): %s is not finite "
                  "(loss %g)", (unsigned long long)global_step + 1, epoch, step + 1,
                  isfinite(loss) ? "a gradient" : "the loss", loss);
    vae_workspace_adam_step(t->model, t->ws, t->adam);
    return VAE_OK;
}

/* After a step: progress (which may stop the run, on every rank at once; a checkpoint is
 * written first) and the periodic checkpoint. */
static vae_status after_step(train_state *t, vae_train_position after, uint64_t global_step,
                             vae_error *err) {
    const vae_train_options *opt = t->opt;
    const vae_loss *l = &after.epoch_so_far;
    int stop = opt->progress && opt->progress(opt->user, after.epoch, after.step_in_epoch,
                                               t->steps_per_epoch,
                                               (l->recon + l->kl) / (double)l->count);
    if (t->ranks > 1) { /* every rank stops at the same step, or none */
        double any = stop;
        if (opt->collective->sum_doubles(opt->collective->ctx, &any, 1)) any = 1;
        stop = any > 0;
    }
    if (stop) { /* the caller stops us: save where we are first */
        if (opt->checkpoint) VAE_TRY(opt->checkpoint(opt->user, t->model, t->adam, after, err));
        return vae_fail(err, VAE_ERR_CANCELLED, "training cancelled after step %llu",
                        (unsigned long long)global_step + 1);
    }
    if (opt->checkpoint && opt->checkpoint_every &&
        (global_step + 1) % opt->checkpoint_every == 0 && after.step_in_epoch < t->steps_per_epoch)
        VAE_TRY(opt->checkpoint(opt->user, t->model, t->adam, after, err));
    return VAE_OK;
}

/* The test set's loss after an epoch: this rank's share of it, summed across ranks. */
static vae_status test_epoch(train_state *t, int epoch, vae_epoch_stats *stats, vae_error *err) {
    const vae_dataset *test = &t->test_view;
    vae_loss test_loss = {0};
    double t_eval = vae_seconds_now();
    const size_t from = test->count * (size_t)t->rank / (size_t)t->ranks,
                 to = test->count * (size_t)(t->rank + 1) / (size_t)t->ranks;
    vae_workspace *ws = t->eval_ws ? t->eval_ws : t->ws;
    /* on the training workspace, split as its steps are: with batch threads, their views (the
     * same function; kernels and bf16 weights of the steps', none made for the whole's shapes) */
    vae_workers *workers = t->workers.n && !t->eval_ws ? &t->workers : NULL;
    VAE_FORWARD_IF_ERROR(evaluate_range(t->model, ws, workers, t->eps, test, from, to,
                                        t->eval_rows, t->opt->seed, &test_loss, err),
                         err, "the test set's evaluation after epoch %d", epoch);
    VAE_RETURN_IF(t->ranks > 1 && sum_loss(t->opt->collective, &test_loss), err, VAE_ERR_IO,
                  "summing the evaluation across ranks failed");
    stats->test_recon = test_loss.recon / (double)test_loss.count;
    stats->test_kl = test_loss.kl / (double)test_loss.count;
    stats->test_loss = stats->test_recon + stats->test_kl;
    stats->test_seconds = vae_seconds_now() - t_eval;
    return VAE_OK;
}

/* The end of an epoch: its statistics (and the test set's loss) to on_epoch, then a
 * checkpoint at the start of the next. */
static vae_status end_epoch(train_state *t, int epoch, const vae_loss *epoch_loss,
                            size_t samples_before, double seconds, vae_error *err) {
    const vae_train_options *opt = t->opt;
    vae_epoch_stats stats = {.epoch = epoch, .epochs = opt->epochs, .seconds = seconds};
    stats.train_recon = epoch_loss->recon / (double)epoch_loss->count;
    stats.train_kl = epoch_loss->kl / (double)epoch_loss->count;
    stats.train_loss = stats.train_recon + stats.train_kl;
    stats.samples_per_second =
        seconds > 0 ? (double)(epoch_loss->count - samples_before) / seconds : 0.0;
    stats.test_loss = stats.test_recon = stats.test_kl = NAN;
    if (t->test) VAE_TRY(test_epoch(t, epoch, &stats, err));
    if (opt->on_epoch) opt->on_epoch(opt->user, &stats);
    vae_train_position next = {.epoch = epoch + 1};
    if (opt->checkpoint) VAE_TRY(opt->checkpoint(opt->user, t->model, t->adam, next, err));
    return VAE_OK;
}

/* Epochs start.epoch.. of a run: each one shuffled by its own stream (Fisher-Yates), its steps,
 * its end. A run resumed mid-epoch starts at its step with the epoch's loss so far. */
static vae_status train_epochs(train_state *t, uint64_t first_step, vae_error *err) {
    const vae_train_options *opt = t->opt;
    const vae_train_position start = opt->start;
    uint64_t global_step = first_step;
    for (int epoch = start.epoch; epoch <= opt->epochs; epoch++) {
        vae_epoch_order(t->order, t->train->count, opt->seed, epoch);
        const int resumed = epoch == start.epoch && start.step_in_epoch > 0;
        vae_loss epoch_loss = resumed ? start.epoch_so_far : (vae_loss){0};
        const size_t samples_before = epoch_loss.count; /* for the speed: this run's only */
        double t0 = vae_seconds_now();
        for (size_t step = resumed ? start.step_in_epoch : 0; step < t->steps_per_epoch;
             step++, global_step++) {
            vae_loss step_loss = {0};
            VAE_TRY(train_step(t, epoch, step, global_step, &step_loss, err));
            epoch_loss.recon += step_loss.recon;
            epoch_loss.kl += step_loss.kl;
            epoch_loss.count += step_loss.count;
            VAE_TRY(after_step(t, (vae_train_position){epoch, step + 1, epoch_loss}, global_step,
                               err));
        }
        VAE_TRY(end_epoch(t, epoch, &epoch_loss, samples_before, vae_seconds_now() - t0, err));
    }
    return VAE_OK;
}

vae_status vae_train(vae_model *model, const vae_dataset *train, const vae_dataset *test,
                     const vae_train_options *opt, vae_error *err) {
    VAE_TRY(vae_train_check(model, train, test, opt, err));
    const size_t n = train->count;
    const size_t steps_per_epoch = (n + (size_t)opt->batch_size - 1) / (size_t)opt->batch_size;
    const uint64_t first_step =
        (uint64_t)(opt->start.epoch - 1) * steps_per_epoch + opt->start.step_in_epoch;
    vae_device device; /* AUTO: the GPU when there is one and it runs this model */
    VAE_TRY(vae_device_resolve(train_device(opt), vae_gpu_supports(model, opt, NULL), &device,
                               err));
    if (device == VAE_DEVICE_CUDA) return train_on_gpu(model, train, test, opt, first_step, err);
    if (opt->precision == VAE_PRECISION_BF16)
        VAE_TRY(vae_model_set_cpu_precision(model, VAE_PRECISION_BF16, err));

    train_state t = {.model = model, .train = train, .test = test, .opt = opt,
                     .steps_per_epoch = steps_per_epoch, .k = opt->iwae_k > 1 ? opt->iwae_k : 1,
                     .rank = opt->collective ? opt->collective->rank : 0,
                     .ranks = opt->collective ? opt->collective->size : 1};
    vae_status s = train_state_init(&t, err);
    if (s == VAE_OK) s = train_epochs(&t, first_step, err);
    train_state_free(&t);
    vae_release_free_memory(); /* the workspace's and Adam's, before what the caller does next */
    return s;
}

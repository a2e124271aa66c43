/* train.c — the training loop: shuffle, batch, forward, backward, Adam; evaluation. */
#include "backend/backend.h"
#include "ops/vecmath.h"

#include <math.h>
#include <string.h>
#include <time.h>

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

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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
    for (size_t i = 0; i < n; i++) {
        float v = data->x[i];
        if (data->mask && !data->mask[i]) continue;
        int ok = cfg->likelihood == VAE_LIK_BERNOULLI ? v >= 0.0f && v <= 1.0f
                 : cfg->likelihood == VAE_LIK_POISSON ? v >= 0.0f && isfinite(v)
                                                      : isfinite(v);
        VAE_RETURN_IF(!ok, err, VAE_ERR_INVALID_ARGUMENT,
                      "%s data: sample %zu, value %zu is %g, outside what a %s likelihood "
                      "models%s", what, i / (size_t)data->dim + 1, i % (size_t)data->dim + 1,
                      (double)v, vae_likelihood_name(cfg->likelihood),
                      cfg->likelihood == VAE_LIK_BERNOULLI ? " ([0,1]; try --likelihood gaussian)"
                      : cfg->likelihood == VAE_LIK_POISSON ? " (counts >= 0)" : " (finite)");
    }
    return VAE_OK;
}

/* Evaluates samples [from, to) of data; each sample's noise comes from its global index. */
static vae_status evaluate_range(const vae_model *model, vae_workspace *ws, float *eps,
                                 const vae_dataset *data, size_t from, size_t to, int batch_size,
                                 uint64_t seed, vae_loss *loss) {
    const int latent = vae_model_config(model)->latent_dim;
    for (size_t start = from; start < to; start += (size_t)batch_size) {
        size_t left = to - start;
        int batch = left < (size_t)batch_size ? (int)left : batch_size;
        for (int b = 0; b < batch; b++) {
            vae_rng rng = vae_rng_make(seed, VAE_STREAM_EVAL + start + (size_t)b);
            vae_rng_normal(&rng, eps + (size_t)b * latent, (size_t)latent);
        }
        vae_workspace_set_labels(ws, data->labels ? data->labels + start : NULL);
        vae_workspace_set_mask(ws, data->mask ? data->mask + start * (size_t)data->dim : NULL);
        VAE_TRY(vae_forward(model, ws, data->x + start * (size_t)data->dim, eps, batch, loss));
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
    vae_status s =
        eps ? evaluate_range(model, ws, eps, data, 0, data->count, batch_size, seed, loss)
            : vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for evaluation");
    free(eps);
    vae_workspace_free(ws);
    return s;
}

/* Non-zero when every value is finite: one vectorized pass, no branch per element. */
VAE_SIMD_CLONES
static int all_finite(const float *v, size_t n) {
    float acc = 0.0f;
    const long count = (long)n;
#pragma omp parallel for simd reduction(+ : acc) schedule(static) if (count >= 65536)
    for (long i = 0; i < count; i++) acc += v[i] * 0.0f; /* NaN or Inf turns the sum NaN */
    return acc == 0.0f;
}

typedef struct {
    vae_workspace *ws, *eval_ws;
    vae_adam *adam;
    vae_adam *own_adam; /* adam when this run made it */
    size_t *order; /* N: this epoch's permutation */
    float *xb;     /* (B,D) gathered batch */
    uint8_t *yb;   /* (B) its labels, for a conditional model */
    uint8_t *mb;   /* (B,D) its masks, when values are missing */
    float *eps;    /* (max(B, eval B), L) noise */
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
}

/* Training on the GPU backend (backend.h), with the optimizer given or a new one. */
static vae_status train_on_gpu(vae_model *model, const vae_dataset *train,
                               const vae_dataset *test, const vae_train_options *opt,
                               uint64_t first_step, vae_error *err) {
    vae_adam *own = NULL;
    if (!opt->resume_adam)
        VAE_TRY(vae_adam_create(&own, vae_model_num_params(model), &opt->adam, err));
    vae_status s = vae_gpu_train(model, train, test, opt, own ? own : opt->resume_adam,
                                 first_step, err);
    vae_adam_free(own);
    return s;
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

    VAE_RETURN_IF((unsigned)opt->precision > VAE_PRECISION_TF32, err, VAE_ERR_INVALID_ARGUMENT,
                  "unknown precision %d", (int)opt->precision);
    vae_device device; /* AUTO: the GPU when there is one and it runs this model */
    VAE_TRY(vae_device_resolve(opt->device, vae_gpu_supports(model, opt, NULL), &device, err));
    if (device == VAE_DEVICE_CUDA) VAE_TRY(vae_gpu_supports(model, opt, err));
    return VAE_OK;
}


vae_status vae_train(vae_model *model, const vae_dataset *train, const vae_dataset *test,
                     const vae_train_options *opt, vae_error *err) {
    VAE_TRY(vae_train_check(model, train, test, opt, err));
    const vae_config *cfg = vae_model_config(model);
    const int batch_size = opt->batch_size, dim = cfg->input_dim, latent = cfg->latent_dim;
    const size_t n = train->count;
    const size_t steps_per_epoch = (n + (size_t)batch_size - 1) / (size_t)batch_size;
    const int k = opt->iwae_k > 1 ? opt->iwae_k : 1;
    const int train_rows = batch_size * k;
    const int rank = opt->collective ? opt->collective->rank : 0;
    const int ranks = opt->collective ? opt->collective->size : 1;
    const int noise_rows = train_rows > opt->eval_batch_size ? train_rows : opt->eval_batch_size;
    const vae_train_position start = opt->start;
    const uint64_t first_step =
        (uint64_t)(start.epoch - 1) * steps_per_epoch + start.step_in_epoch;
    vae_device device; /* AUTO: the GPU when there is one and it runs this model */
    VAE_TRY(vae_device_resolve(opt->device, vae_gpu_supports(model, opt, NULL), &device, err));
    if (device == VAE_DEVICE_CUDA) return train_on_gpu(model, train, test, opt, first_step, err);

    train_state t = {0};
    vae_status s = VAE_OK;
    if ((s = vae_workspace_create(&t.ws, model, train_rows, err)) != VAE_OK ||
        (test && (s = vae_workspace_create(&t.eval_ws, model, opt->eval_batch_size, err))) ||
        (!opt->resume_adam &&
         (s = vae_adam_create(&t.own_adam, vae_model_num_params(model), &opt->adam, err))))
        goto done;
    t.adam = opt->resume_adam ? opt->resume_adam : t.own_adam;
    t.order = vae_calloc_array(n, sizeof *t.order);
    t.xb = vae_calloc_array((size_t)batch_size * dim, sizeof(float));
    t.yb = vae_calloc_array((size_t)batch_size, 1);
    t.mb = train->mask ? vae_calloc_array((size_t)batch_size * dim, 1) : NULL;
    t.eps = vae_calloc_array((size_t)noise_rows * latent, sizeof(float));
    if (!t.order || !t.xb || !t.yb || !t.eps || (train->mask && !t.mb)) {
        s = vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for the training buffers");
        goto done;
    }

    size_t global_step = first_step;
    for (int epoch = start.epoch; epoch <= opt->epochs; epoch++) {
        /* Fisher–Yates from a stream of its own per epoch */
        vae_epoch_order(t.order, n, opt->seed, epoch);
        vae_loss epoch_loss = {0};
        if (epoch == start.epoch && start.step_in_epoch > 0) epoch_loss = start.epoch_so_far;
        const size_t samples_before = epoch_loss.count; /* for the speed: this run's only */
        double t0 = now_seconds();
        size_t first = epoch == start.epoch ? start.step_in_epoch : 0;
        for (size_t step = first; step < steps_per_epoch; step++, global_step++) {
            size_t start = step * (size_t)batch_size, left = n - start;
            const int global_batch = left < (size_t)batch_size ? (int)left : batch_size;
            /* this rank's rows of the global batch */
            const int first_row = global_batch * rank / ranks;
            const int batch = global_batch * (rank + 1) / ranks - first_row;
            start += (size_t)first_row;
            for (int b = 0; b < batch; b++) {
                if (train->labels) t.yb[b] = train->labels[t.order[start + b]];
                if (train->mask)
                    memcpy(t.mb + (size_t)b * dim, train->mask + t.order[start + b] * (size_t)dim,
                           (size_t)dim);
                memcpy(t.xb + (size_t)b * dim, train->x + t.order[start + b] * (size_t)dim,
                       (size_t)dim * sizeof(float));
            }
            vae_rng noise = vae_rng_make(opt->seed, VAE_STREAM_NOISE + global_step);
            vae_rng_normal(&noise, t.eps, (size_t)global_batch * k * latent);
            const float *eps = t.eps + (size_t)first_row * k * latent; /* this rank's rows */

            vae_loss step_loss = {0};
            /* KL warm-up (Bowman et al.): the weight climbs linearly to beta */
            vae_objective objective = {opt->beta, opt->free_bits};
            if (opt->kl_warmup && global_step + 1 < opt->kl_warmup)
                objective.kl_weight = (float)((double)opt->beta * (double)(global_step + 1) /
                                              (double)opt->kl_warmup);
            vae_workspace_set_labels(t.ws, t.yb);
            vae_workspace_set_mask(t.ws, t.mb);
            if (batch > 0 &&
                (k > 1 ? (s = vae_iwae_step(model, t.ws, t.xb, eps, batch, k, &step_loss)) != VAE_OK
                       : (s = vae_forward(model, t.ws, t.xb, eps, batch, &step_loss)) != VAE_OK ||
                             (s = vae_backward_objective(model, t.ws, t.xb, batch, &objective)) !=
                                 VAE_OK)) {
                vae_fail(err, s, "forward/backward pass failed at step %zu", global_step + 1);
                goto done;
            }
            if (ranks > 1) { /* the global batch's mean: this rank's share, then the sum */
                float *g = vae_model_grads(model);
                const float share = (float)batch / (float)global_batch;
                for (size_t i = 0; i < vae_model_num_params(model); i++) g[i] *= share;
                if (opt->collective->sum_floats(opt->collective->ctx, g,
                                                vae_model_num_params(model)) ||
                    sum_loss(opt->collective, &step_loss)) {
                    s = vae_fail(err, VAE_ERR_IO, "summing gradients across ranks failed at step "
                                 "%zu", global_step + 1);
                    goto done;
                }
            }
            double loss = (step_loss.recon + step_loss.kl) / global_batch;
            if (!isfinite(loss) || !all_finite(vae_model_grads(model), vae_model_num_params(model))) {
                /* the step is not applied: the parameters stay those of the last good step */
                s = vae_fail(err, VAE_ERR_DIVERGED,
                             "training diverged at step %zu (epoch %d, batch %zu): %s is not "
                             "finite (loss %g)", global_step + 1, epoch, step + 1,
                             isfinite(loss) ? "a gradient" : "the loss", loss);
                goto done;
            }
            vae_adam_step(t.adam, vae_model_params(model), vae_model_grads(model));
            epoch_loss.recon += step_loss.recon;
            epoch_loss.kl += step_loss.kl;
            epoch_loss.count += step_loss.count;
            vae_train_position after = {epoch, step + 1, epoch_loss};
            int stop = opt->progress &&
                       opt->progress(opt->user, epoch, step + 1, steps_per_epoch,
                                     (epoch_loss.recon + epoch_loss.kl) / (double)epoch_loss.count);
            if (ranks > 1) { /* every rank stops at the same step, or none */
                double any = stop;
                if (opt->collective->sum_doubles(opt->collective->ctx, &any, 1)) any = 1;
                stop = any > 0;
            }
            if (stop) {
                /* the caller stops us: save where we are first */
                if (opt->checkpoint &&
                    (s = opt->checkpoint(opt->user, model, t.adam, after, err)) != VAE_OK)
                    goto done;
                s = vae_fail(err, VAE_ERR_CANCELLED, "training cancelled after step %zu",
                             global_step + 1);
                goto done;
            }
            if (opt->checkpoint && opt->checkpoint_every &&
                (global_step + 1) % opt->checkpoint_every == 0 && step + 1 < steps_per_epoch &&
                (s = opt->checkpoint(opt->user, model, t.adam, after, err)) != VAE_OK)
                goto done;
        }
        double seconds = now_seconds() - t0;
        vae_epoch_stats stats = {.epoch = epoch, .epochs = opt->epochs, .seconds = seconds};
        stats.train_recon = epoch_loss.recon / (double)epoch_loss.count;
        stats.train_kl = epoch_loss.kl / (double)epoch_loss.count;
        stats.train_loss = stats.train_recon + stats.train_kl;
        stats.samples_per_second =
            seconds > 0 ? (double)(epoch_loss.count - samples_before) / seconds : 0.0;
        stats.test_loss = stats.test_recon = stats.test_kl = NAN;
        if (test) {
            vae_loss test_loss = {0};
            double t_eval = now_seconds();
            const size_t from = test->count * (size_t)rank / (size_t)ranks,
                         to = test->count * (size_t)(rank + 1) / (size_t)ranks;
            if ((s = evaluate_range(model, t.eval_ws, t.eps, test, from, to, opt->eval_batch_size,
                                    opt->seed, &test_loss)) != VAE_OK) {
                vae_fail(err, s, "evaluation failed after epoch %d", epoch);
                goto done;
            }
            if (ranks > 1 && sum_loss(opt->collective, &test_loss)) {
                s = vae_fail(err, VAE_ERR_IO, "summing the evaluation across ranks failed");
                goto done;
            }
            stats.test_recon = test_loss.recon / (double)test_loss.count;
            stats.test_kl = test_loss.kl / (double)test_loss.count;
            stats.test_loss = stats.test_recon + stats.test_kl;
            stats.test_seconds = now_seconds() - t_eval;
        }
        if (opt->on_epoch) opt->on_epoch(opt->user, &stats);
        vae_train_position next = {.epoch = epoch + 1};
        if (opt->checkpoint && (s = opt->checkpoint(opt->user, model, t.adam, next, err)) != VAE_OK)
            goto done;
    }
    s = VAE_OK;
done:
    train_state_free(&t);
    return s;
}

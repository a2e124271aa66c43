/* gpu_train.c — vae_train's loop on a GPU: epochs, chunks of queued steps, callbacks and
 * checkpoints. The steps themselves run on the device (gpu.h); this file only decides how many
 * to queue before it waits, and keeps the host's model and optimizer in step at every point
 * where a caller can look at them. */
#include "backend/backend.h"
#include "backend/gpu.h"

#include <math.h>
#include <string.h>

/* Steps queued before the host waits: enough to hide the wait, few enough that progress is
 * reported and a cancel is seen within milliseconds. */
#define CHUNK 256

vae_status vae_gpu_supports(const vae_model *model, const vae_train_options *opt, vae_error *err) {
    VAE_TRY(vae_gpu_supports_model(model, err));
    const char *missing =
        opt->collective && opt->collective->size > 1 ? "several processes (MPI)" : NULL;
    VAE_RETURN_IF(missing, err, VAE_ERR_INVALID_ARGUMENT,
                  "the CUDA backend does not train %s yet; use --device cpu", missing);
    return VAE_OK;
}

void vae_epoch_order(size_t *order, size_t n, uint64_t seed, int epoch) {
    vae_rng shuffle = vae_rng_make(seed, VAE_STREAM_SHUFFLE + (uint64_t)epoch);
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n - 1; n > 1 && i > 0; i--) {
        size_t j = (size_t)vae_rng_below(&shuffle, i + 1), tmp = order[i];
        order[i] = order[j], order[j] = tmp;
    }
}

typedef struct {
    vae_gpu *gpu;
    vae_model *model;
    vae_adam *adam;
    char msg[512];
    size_t *order;
    uint32_t *order32;
    double recon[VAE_GPU_HISTORY], kl[VAE_GPU_HISTORY];
} gpu_run;

/* The device's parameters and moments into the host's model and optimizer, which have then
 * taken `steps` steps. */
static vae_status bring_back(gpu_run *r, uint64_t steps, vae_error *err) {
    vae_status s = vae_gpu_download(r->gpu, vae_model_params(r->model),
                                    vae_adam_first_moment(r->adam),
                                    vae_adam_second_moment(r->adam), r->msg);
    VAE_RETURN_IF(s != VAE_OK, err, s, "CUDA: %s", r->msg);
    vae_adam_set_steps(r->adam, steps);
    return VAE_OK;
}

/* Where the chunk starting at step `step` of the epoch (global step `global`) ends: at the
 * epoch's end, after CHUNK steps, or right after a checkpoint step. */
static size_t chunk_end(size_t step, uint64_t global, size_t steps_per_epoch,
                        uint64_t checkpoint_every) {
    size_t end = step + CHUNK < steps_per_epoch ? step + CHUNK : steps_per_epoch;
    if (checkpoint_every) {
        uint64_t to_next = checkpoint_every - global % checkpoint_every; /* steps until one */
        if (step + to_next < end) end = step + (size_t)to_next;
    }
    return end;
}

/* One epoch's steps from `first`, adding their sums to *sum; *global counts steps taken. */
static vae_status run_epoch(gpu_run *r, const vae_train_options *opt, size_t n, int epoch,
                            size_t first, vae_loss *sum, uint64_t *global, vae_error *err) {
    const int batch = opt->batch_size;
    const size_t steps = (n + (size_t)batch - 1) / (size_t)batch;
    const int last = (int)(n - (steps - 1) * (size_t)batch); /* rows of the last step */
    vae_epoch_order(r->order, n, opt->seed, epoch);
    for (size_t i = 0; i < n; i++) r->order32[i] = (uint32_t)r->order[i];
    vae_status s = vae_gpu_epoch_begin(r->gpu, r->order32, n, (uint32_t)first, r->msg);
    VAE_RETURN_IF(s != VAE_OK, err, s, "CUDA: %s", r->msg);
    for (size_t step = first; step < steps;) {
        const size_t end = chunk_end(step, *global, steps, opt->checkpoint_every);
        const int count = (int)(end - step), full = count - (end == steps && last != batch);
        uint64_t bad;
        if ((full && (s = vae_gpu_steps(r->gpu, batch, full, r->msg)) != VAE_OK) ||
            (full < count && (s = vae_gpu_steps(r->gpu, last, 1, r->msg)) != VAE_OK) ||
            (s = vae_gpu_sync(r->gpu, count, r->recon, r->kl, &bad, r->msg)) != VAE_OK)
            return vae_fail(err, s, "CUDA: %s", r->msg);
        for (int i = 0; i < count; i++, step++, (*global)++) {
            const int rows = step + 1 == steps ? last : batch;
            if (*global == bad) {
                double loss = (r->recon[i] + r->kl[i]) / rows;
                VAE_TRY(bring_back(r, *global, err));
                return vae_fail(err, VAE_ERR_DIVERGED,
                                "training diverged at step %llu (epoch %d, batch %zu): %s is not "
                                "finite (loss %g)", (unsigned long long)*global + 1, epoch,
                                step + 1, isfinite(loss) ? "a gradient" : "the loss", loss);
            }
            sum->recon += r->recon[i], sum->kl += r->kl[i], sum->count += (size_t)rows;
        }
        vae_train_position after = {epoch, step, *sum};
        int stop = opt->progress && opt->progress(opt->user, epoch, step, steps,
                                                  (sum->recon + sum->kl) / (double)sum->count);
        int save = opt->checkpoint_every && *global % opt->checkpoint_every == 0 && step < steps;
        if (stop || (save && opt->checkpoint)) VAE_TRY(bring_back(r, *global, err));
        if ((stop || save) && opt->checkpoint)
            VAE_TRY(opt->checkpoint(opt->user, r->model, r->adam, after, err));
        VAE_RETURN_IF(stop, err, VAE_ERR_CANCELLED, "training cancelled after step %llu",
                      (unsigned long long)*global);
    }
    return VAE_OK;
}

static vae_status test_loss(gpu_run *r, const vae_dataset *test, vae_epoch_stats *stats,
                            vae_error *err) {
    vae_loss loss = {0};
    double t0 = vae_seconds_now();
    vae_status s = vae_gpu_evaluate(r->gpu, 0, test->count, &loss, r->msg);
    VAE_RETURN_IF(s != VAE_OK, err, s, "CUDA: evaluation failed after epoch %d: %s",
                  stats->epoch, r->msg);
    stats->test_recon = loss.recon / (double)loss.count;
    stats->test_kl = loss.kl / (double)loss.count;
    stats->test_loss = stats->test_recon + stats->test_kl;
    stats->test_seconds = vae_seconds_now() - t0;
    return VAE_OK;
}

static vae_status train_epochs(gpu_run *r, const vae_dataset *train, const vae_dataset *test,
                               const vae_train_options *opt, uint64_t global, vae_error *err) {
    const size_t n = train->count;
    for (int epoch = opt->start.epoch; epoch <= opt->epochs; epoch++) {
        const int resumed = epoch == opt->start.epoch && opt->start.step_in_epoch > 0;
        vae_loss sum = resumed ? opt->start.epoch_so_far : (vae_loss){0};
        const size_t before = sum.count;
        const double t0 = vae_seconds_now();
        VAE_TRY(run_epoch(r, opt, n, epoch, resumed ? opt->start.step_in_epoch : 0, &sum, &global,
                          err));
        vae_epoch_stats stats = {.epoch = epoch, .epochs = opt->epochs};
        stats.seconds = vae_seconds_now() - t0;
        stats.device = VAE_DEVICE_CUDA;
        stats.launches_per_step = vae_gpu_step_nodes(r->gpu, opt->batch_size);
        stats.device_bytes = vae_gpu_memory(r->gpu);
        stats.train_recon = sum.recon / (double)sum.count;
        stats.train_kl = sum.kl / (double)sum.count;
        stats.train_loss = stats.train_recon + stats.train_kl;
        stats.samples_per_second =
            stats.seconds > 0 ? (double)(sum.count - before) / stats.seconds : 0.0;
        stats.test_loss = stats.test_recon = stats.test_kl = NAN;
        if (test) VAE_TRY(test_loss(r, test, &stats, err));
        if (opt->on_epoch) opt->on_epoch(opt->user, &stats);
        vae_train_position next = {.epoch = epoch + 1};
        VAE_TRY(bring_back(r, global, err));
        if (opt->checkpoint) VAE_TRY(opt->checkpoint(opt->user, r->model, r->adam, next, err));
    }
    return VAE_OK;
}

vae_status vae_gpu_train(vae_model *model, const vae_dataset *train, const vae_dataset *test,
                         const vae_train_options *opt, vae_adam *adam, uint64_t first_step,
                         vae_error *err) {
    VAE_TRY(vae_gpu_supports(model, opt, err));
    VAE_RETURN_IF(train->count > UINT32_MAX, err, VAE_ERR_INVALID_ARGUMENT,
                  "the CUDA backend takes at most 2^32 - 1 training samples");
    vae_gpu_model desc;
    VAE_TRY(vae_gpu_describe(model, &desc, err));
    vae_gpu_objective obj = {.seed = opt->seed, .noise_stream = VAE_STREAM_NOISE,
                             .eval_stream = VAE_STREAM_EVAL, .batch_size = opt->batch_size,
                             .iwae_k = opt->iwae_k,
                             .beta = opt->beta, .free_bits = opt->free_bits,
                             .kl_warmup = opt->kl_warmup, .adam = *vae_adam_get_options(adam),
                             .precision = opt->precision};
    const int k = opt->iwae_k > 1 ? opt->iwae_k : 1; /* train.c bounds batch x k by 2^24 */
    const int rows = opt->batch_size * k > opt->eval_batch_size ? opt->batch_size * k
                                                                : opt->eval_batch_size;
    gpu_run *r = calloc(1, sizeof *r);
    VAE_RETURN_IF(!r, err, VAE_ERR_NO_MEMORY, "out of memory for the GPU trainer");
    r->model = model, r->adam = adam;
    r->order = vae_calloc_array(train->count, sizeof *r->order);
    r->order32 = vae_calloc_array(train->count, sizeof *r->order32);
    vae_status s = VAE_OK;
    if (!r->order || !r->order32)
        s = vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for the epoch's order");
    else if ((s = vae_gpu_create(&r->gpu, &desc, &obj, rows, train, test, r->msg)) != VAE_OK ||
             (s = vae_gpu_upload(r->gpu, vae_model_params(model), vae_adam_first_moment(adam),
                                 vae_adam_second_moment(adam), vae_adam_steps(adam), first_step,
                                 r->msg)) != VAE_OK)
        vae_fail(err, s, "CUDA: %s", r->msg);
    else /* every epoch's end, a cancel and a divergence leave the host's state current */
        s = train_epochs(r, train, test, opt, first_step, err);
    vae_gpu_free(r->gpu);
    free(r->order), free(r->order32);
    free(r);
    return s;
}

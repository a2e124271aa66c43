/* eval.c — how good a model is: the ELBO, the importance-weighted estimate of log p(x), the
 * active latent units. */
#include "backend/backend.h"
#include "loss/loss.h"
#include "model/model_internal.h"

#include <math.h>
#include <string.h>


void vae_eval_options_default(vae_eval_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->importance_samples = 5000;
    opt->chunk = 500;
    opt->batch = 500;
    opt->seed = 1;
}

/* What one thread needs to score one example's importance samples, chunk by chunk. */
typedef struct {
    vae_workspace *ws;
    float *eps, *z; /* (chunk, L) */
    uint8_t *labels; /* (chunk): the example's label, repeated */
    double *log_px, *log_w; /* (chunk): log p(x|z), log p(z) - log q(z|x) */
} iwae_scratch;

static void scratch_free(iwae_scratch *s) {
    vae_workspace_free(s->ws);
    free(s->eps), free(s->z), free(s->log_px), free(s->log_w), free(s->labels);
}

static vae_status scratch_make(iwae_scratch *s, const vae_model *m, int chunk, vae_error *err) {
    memset(s, 0, sizeof *s);
    const size_t latent = (size_t)vae_model_config(m)->latent_dim;
    VAE_TRY(vae_workspace_create_for(&s->ws, m, chunk, 1, err)); /* each runs on one thread */
    s->eps = vae_calloc_array((size_t)chunk * latent, sizeof(float));
    s->z = vae_calloc_array((size_t)chunk * latent, sizeof(float));
    s->log_px = vae_calloc_array((size_t)chunk, sizeof(double));
    s->log_w = vae_calloc_array((size_t)chunk, sizeof(double));
    s->labels = vae_calloc_array((size_t)chunk, 1);
    if (!s->eps || !s->z || !s->log_px || !s->log_w || !s->labels) {
        scratch_free(s);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for %d importance samples", chunk);
    }
    return VAE_OK;
}

/* *log_px = log (1/K) sum_k w_k, w_k = p(x|z_k) p(z_k) / q(z_k|x), with a running log-sum-exp
 * so K can be large without keeping the weights. */
static vae_status iwae_log_px(const vae_model *m, iwae_scratch *s, const float *x,
                              const uint8_t *mask, int label, const float *mu,
                              const float *logvar, int k_total, int chunk, vae_rng *rng,
                              double *log_px) {
    const int latent = vae_model_config(m)->latent_dim;
    memset(s->labels, label, (size_t)chunk); /* read by a conditional model only */
    op_lse lse = OP_LSE_EMPTY;
    for (int done = 0; done < k_total; done += chunk) {
        int c = k_total - done < chunk ? k_total - done : chunk;
        vae_rng_normal(rng, s->eps, (size_t)c * latent);
        vae_model_ops(m)->reparam_draws(s->z, s->log_w, mu, logvar, s->eps, c, latent);
        /* every draw against the one input: x and its mask with stride 0 */
        VAE_TRY(vae_log_likelihood(m, s->ws, s->z, s->labels, c, x, 0, mask, s->log_px, NULL));
        for (int r = 0; r < c; r++) op_lse_add(&lse, s->log_px[r] + s->log_w[r]);
    }
    *log_px = op_lse_value(&lse) - log((double)k_total);
    return VAE_OK;
}

/* The ELBO's parts per example with vae_eval_elbo's noise, and the encoder's means and
 * log-variances of every example. */
static vae_status elbo_pass(const vae_model *m, const vae_dataset *data, const vae_eval_options *o,
                            double *recon, double *kl, float *mu, float *logvar, vae_error *err) {
    const int latent = vae_model_config(m)->latent_dim, batch_max = o->batch;
    vae_workspace *ws = NULL;
    float *eps = vae_calloc_array((size_t)batch_max * latent, sizeof(float));
    vae_status s = vae_workspace_create(&ws, m, batch_max, err);
    if (s == VAE_OK && !eps) s = vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory");
    for (size_t start = 0; s == VAE_OK && start < data->count; start += (size_t)batch_max) {
        size_t left = data->count - start;
        int batch = left < (size_t)batch_max ? (int)left : batch_max;
        for (int b = 0; b < batch; b++) {
            vae_rng rng = vae_rng_make(o->seed, VAE_STREAM_EVAL + start + (size_t)b);
            vae_rng_normal(&rng, eps + (size_t)b * latent, (size_t)latent);
        }
        const vae_batch rows = {batch, data->x + start * (size_t)data->dim, eps,
                                data->labels ? data->labels + start : NULL,
                                data->mask ? data->mask + start * (size_t)data->dim : NULL};
        s = vae_forward(m, ws, &rows, NULL, err);
        if (s != VAE_OK) break;
        memcpy(recon + start, vae_workspace_recon(ws), (size_t)batch * sizeof(double));
        memcpy(kl + start, vae_workspace_kl(ws), (size_t)batch * sizeof(double));
        size_t nz = (size_t)batch * latent;
        memcpy(mu + start * latent, vae_workspace_mu(ws), nz * sizeof(float));
        memcpy(logvar + start * latent, vae_workspace_logvar(ws), nz * sizeof(float));
    }
    vae_workspace_free(ws);
    free(eps);
    return s;
}

/* Burda et al.'s activity: the variance over the data of each unit's posterior mean. */
static int count_active_units(const float *mu, size_t n, int latent) {
    int active = 0;
    for (int j = 0; j < latent; j++) {
        double mean = 0.0, var = 0.0;
        for (size_t i = 0; i < n; i++) mean += mu[i * latent + j];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++) {
            double d = mu[i * latent + j] - mean;
            var += d * d;
        }
        if (n > 1 && var / (double)(n - 1) > 0.01) active++;
    }
    return active;
}

/* Importance sampling for every example, examples spread over the threads. */
static vae_status iwae_pass(const vae_model *m, const vae_dataset *data, const vae_eval_options *o,
                            const float *mu, const float *logvar, double *nll, vae_error *err) {
    const int latent = vae_model_config(m)->latent_dim, threads = vae_thread_limit();
    iwae_scratch *scratch = calloc((size_t)threads, sizeof *scratch);
    VAE_RETURN_IF(!scratch, err, VAE_ERR_NO_MEMORY, "out of memory");
    vae_status s = VAE_OK;
    for (int t = 0; t < threads && s == VAE_OK; t++) s = scratch_make(&scratch[t], m, o->chunk, err);
    volatile int stop = s != VAE_OK, failed = 0;
    size_t done = 0;
    const long n = (long)data->count;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (s == VAE_OK)
    for (long i = 0; i < n; i++) {
        if (stop) continue;
        vae_rng rng = vae_rng_make(o->seed, VAE_STREAM_IWAE + (uint64_t)i);
        double log_px;
        if (iwae_log_px(m, &scratch[vae_thread_index()], data->x + (size_t)i * data->dim,
                        data->mask ? data->mask + (size_t)i * data->dim : NULL,
                        data->labels ? data->labels[i] : 0, mu + (size_t)i * latent,
                        logvar + (size_t)i * latent, o->importance_samples, o->chunk, &rng,
                        &log_px) != VAE_OK) {
            failed = 1, stop = 1;
            continue;
        }
        nll[i] = -log_px;
        size_t now;
#pragma omp atomic capture
        now = ++done;
        if (vae_thread_index() == 0 && o->progress && o->progress(o->user, now, data->count))
            stop = 1;
    }
    if (s == VAE_OK && failed)
        s = vae_fail(err, VAE_ERR_INTERNAL, "scoring importance samples failed");
    else if (s == VAE_OK && stop)
        s = vae_fail(err, VAE_ERR_CANCELLED, "evaluation cancelled");
    for (int t = 0; t < threads; t++) scratch_free(&scratch[t]);
    free(scratch);
    return s;
}

vae_status vae_eval(const vae_model *m, const vae_dataset *data, const vae_eval_options *o,
                    vae_eval_result *res, double *per_sample, vae_error *err) {
    memset(res, 0, sizeof *res);
    const vae_config *cfg = vae_model_config(m);
    VAE_TRY(vae_check_data(m, data, "evaluation", err));
    VAE_RETURN_IF(o->importance_samples < 0 || o->chunk < 1 || o->batch < 1, err,
                  VAE_ERR_INVALID_ARGUMENT, "importance samples must be >= 0, chunk and batch >= 1");
    const size_t n = data->count, latent = (size_t)cfg->latent_dim;
    double *recon = vae_calloc_array(n, sizeof(double)), *kl = vae_calloc_array(n, sizeof(double));
    double *nll = vae_calloc_array(n, sizeof(double));
    float *mu = vae_calloc_array(n * latent, sizeof(float));
    float *logvar = vae_calloc_array(n * latent, sizeof(float));
    vae_status s = VAE_OK;
    if (!recon || !kl || !nll || !mu || !logvar)
        s = vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for evaluating %zu examples", n);
    vae_device device = VAE_DEVICE_CPU;
    vae_dataset view; /* the data in the model's units */
    float *owned = NULL;
    if (s == VAE_OK) s = vae_model_units(m, data, &view, &owned, err);
    if (s == VAE_OK)
        s = vae_device_resolve(o->device, vae_gpu_supports_model(m, NULL), &device, err);
    if (s == VAE_OK && device == VAE_DEVICE_CUDA) {
        s = vae_gpu_eval_terms(m, &view, o, recon, kl, mu, logvar, nll, err);
    } else {
        if (s == VAE_OK) s = elbo_pass(m, &view, o, recon, kl, mu, logvar, err);
        if (s == VAE_OK && o->importance_samples > 0)
            s = iwae_pass(m, &view, o, mu, logvar, nll, err);
    }
    free(owned);
    if (s == VAE_OK) {
        double sum_nll = 0.0, sum_sq = 0.0;
        for (size_t i = 0; i < n; i++) {
            res->recon += recon[i], res->kl += kl[i];
            sum_nll += nll[i], sum_sq += nll[i] * nll[i];
        }
        res->count = n;
        res->recon /= (double)n, res->kl /= (double)n;
        res->neg_elbo = res->recon + res->kl;
        res->latent_dim = cfg->latent_dim;
        res->importance_samples = o->importance_samples;
        res->nll = res->nll_stderr = NAN;
        if (o->importance_samples > 0) {
            res->nll = sum_nll / (double)n;
            double var = n > 1 ? (sum_sq - sum_nll * res->nll) / (double)(n - 1) : 0.0;
            res->nll_stderr = sqrt(var > 0 ? var / (double)n : 0.0);
        }
        double score = o->importance_samples > 0 ? res->nll : res->neg_elbo;
        res->bits_per_dim = score / (cfg->input_dim * log(2.0));
        res->active_units = count_active_units(mu, n, cfg->latent_dim);
        for (size_t i = 0; per_sample && i < n; i++) {
            double *row = per_sample + i * VAE_EVAL_COLUMNS;
            row[VAE_EVAL_NEG_ELBO] = recon[i] + kl[i];
            row[VAE_EVAL_RECON] = recon[i];
            row[VAE_EVAL_KL] = kl[i];
            row[VAE_EVAL_NLL] = o->importance_samples > 0 ? nll[i] : NAN;
        }
    }
    free(recon), free(kl), free(nll), free(mu), free(logvar);
    return s;
}

/* test_eval.c — the estimator of log p(x) proven against the integral itself: for a `seed`
 * preset model (2-D latent) trained briefly on Fashion-MNIST, log p(x) = log ∫ p(x|z) p(z) dz by
 * quadrature on a fine grid, and the importance-weighted estimate approaching it as K grows
 * (K = 1 is the ELBO in expectation, K = 5000 within 0.1 nat, never above beyond Monte-Carlo
 * error). Also: active units, and results that do not depend on threads or batch sizes. */
#include "check.h"
#include "vae.h"

#include <string.h>

#define FMNIST_TEST "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
#define LOG_2PI 1.8378770664093453

static vae_model *model;
static vae_dataset *images;

/* log of the integrand p(x|z) p(z) at n points z (n,2) */
static void log_joint(vae_workspace *ws, const float *z, int n, const float *x, double *out) {
    vae_log_likelihood(model, ws, z, NULL, n, x, 0, NULL, out, NULL);
    for (int i = 0; i < n; i++)
        out[i] -= LOG_2PI + 0.5 * ((double)z[2 * i] * z[2 * i] + (double)z[2 * i + 1] * z[2 * i + 1]);
}

/* log ∫ p(x|z) p(z) dz by the midpoint rule over a square of half-width `half` around center,
 * g points per axis; with elbo_out, also E_q[log p(x|z)] - KL(q||p) by the same grid. */
static double quadrature(const float *x, const float center[2], double half, int g,
                         const float mu[2], const float logvar[2], double *elbo_out) {
    vae_workspace *ws = NULL;
    vae_error err;
    vae_workspace_create(&ws, model, g, &err);
    float *z = malloc(sizeof(float) * 2 * g);
    double *lj = malloc(sizeof(double) * g), step = 2 * half / g;
    double max = -INFINITY, sum = 0, q_mass = 0, q_weighted = 0;
    for (int a = 0; a < g; a++) {
        for (int b = 0; b < g; b++) {
            z[2 * b] = (float)(center[0] - half + (a + 0.5) * step);
            z[2 * b + 1] = (float)(center[1] - half + (b + 0.5) * step);
        }
        log_joint(ws, z, g, x, lj);
        for (int b = 0; b < g; b++) {
            if (lj[b] > max) sum = sum * exp(max - lj[b]) + 1, max = lj[b];
            else sum += exp(lj[b] - max);
            if (elbo_out) { /* q's density at the point times log p(x|z) = lj - log p(z) */
                double lq = -LOG_2PI, lp = lj[b] + LOG_2PI;
                for (int j = 0; j < 2; j++) {
                    double d = z[2 * b + j] - mu[j];
                    lq -= 0.5 * (logvar[j] + d * d / exp(logvar[j]));
                    lp += 0.5 * (double)z[2 * b + j] * z[2 * b + j];
                }
                q_mass += exp(lq) * step * step;
                q_weighted += exp(lq) * step * step * lp;
            }
        }
    }
    if (elbo_out) {
        double kl = 0;
        for (int j = 0; j < 2; j++)
            kl += -0.5 * (1 + logvar[j] - (double)mu[j] * mu[j] - exp(logvar[j]));
        *elbo_out = q_weighted / q_mass - kl;
        CHECK(fabs(q_mass - 1) < 1e-3, "the grid holds q's mass: %g", q_mass);
    }
    free(z), free(lj);
    vae_workspace_free(ws);
    return max + log(sum) + 2 * log(step);
}

/* One image repeated r times: every copy draws from its own stream, so one call gives r
 * independent estimates. */
static vae_dataset *repeat(const float *x, int r) {
    vae_dataset *d = calloc(1, sizeof *d);
    d->count = (size_t)r, d->dim = 784, d->rows = d->cols = 28;
    d->x = malloc(sizeof(float) * 784 * r);
    for (int i = 0; i < r; i++) memcpy(d->x + (size_t)i * 784, x, sizeof(float) * 784);
    return d;
}

/* mean and standard error of r estimates of log p(x) with K samples */
static void iwae_estimates(const float *x, int k, int r, double *mean, double *se) {
    vae_dataset *d = repeat(x, r);
    vae_eval_options o;
    vae_eval_options_default(&o);
    o.importance_samples = k;
    vae_eval_result res;
    vae_error err;
    double *rows = malloc(sizeof(double) * VAE_EVAL_COLUMNS * r);
    CHECK(vae_eval(model, d, &o, &res, rows, &err) == VAE_OK, "%s", err.message);
    *mean = -res.nll, *se = res.nll_stderr;
    free(rows);
    vae_dataset_free(d);
}

#define N_IMAGES 8

static void test_iwae_approaches_quadrature(void) {
    float mu[N_IMAGES * 2], logvar[N_IMAGES * 2];
    vae_workspace *ws = NULL;
    vae_error err;
    vae_workspace_create(&ws, model, N_IMAGES, &err);
    const vae_batch batch = {.n = N_IMAGES, .x = images->x};
    vae_encode(model, ws, &batch, mu, logvar, &err);
    vae_workspace_free(ws);

    int close = 0;
    for (int i = 0; i < N_IMAGES; i++) { /* the first test images, none left out */
        const float *xi = images->x + (size_t)i * 784, *m = mu + 2 * i, *lv = logvar + 2 * i;
        double sd = exp(0.5 * (lv[0] > lv[1] ? lv[0] : lv[1])), elbo;
        /* the integrand lives near q's mean; two grids, one twice as wide and half as fine,
         * must agree, or the grid misses mass */
        double quad = quadrature(xi, m, 12 * sd, 240, m, lv, &elbo);
        double wide = quadrature(xi, m, 24 * sd, 240, m, lv, NULL);
        CHECK(fabs(quad - wide) < 0.01, "image %d: quadrature not converged: %.4f vs %.4f", i,
              quad, wide);

        const int ks[4] = {1, 10, 100, 5000}, reps[4] = {2000, 400, 100, 4};
        double mean[4], se[4];
        for (int j = 0; j < 4; j++) {
            iwae_estimates(xi, ks[j], reps[j], &mean[j], &se[j]);
            CHECK(mean[j] <= quad + 4 * se[j] + 1e-3,
                  "image %d: K=%d estimate %.4f above log p(x) %.4f (se %.4f)", i, ks[j],
                  mean[j], quad, se[j]);
            if (j > 0)
                CHECK(mean[j] > mean[j - 1] - 4 * (se[j] + se[j - 1]),
                      "image %d: K=%d (%.4f) below K=%d (%.4f)", i, ks[j], mean[j], ks[j - 1],
                      mean[j - 1]);
        }
        CHECK(fabs(mean[0] - elbo) < 4 * se[0] + 1e-3,
              "image %d: K=1 mean %.4f (se %.4f) is not the ELBO %.4f", i, mean[0], se[0], elbo);
        CHECK(quad - elbo > 0.0, "image %d: log p(x) %.4f not above the ELBO %.4f", i, quad, elbo);
        close += quad - mean[3] < 0.1;
        printf("# image %d: ELBO %.3f  K=1 %.3f  K=10 %.3f  K=100 %.3f  K=5000 %.3f  "
               "log p(x) by quadrature %.3f  (gap %.3f)\n", i, elbo, mean[0], mean[1], mean[2],
               mean[3], quad, quad - mean[3]);
    }
    /* A Gaussian q that misses part of a multimodal posterior leaves IWAE short of log p(x)
     * even at K=5000 (on these images, one is 3.7 nats short): most, not all, are within 0.1. */
    CHECK(close >= 6, "only %d of %d images within 0.1 nat at K=5000", close, N_IMAGES);
}

static void test_eval_summary(void) {
    vae_dataset sub = *images;
    sub.count = 300, sub.labels = NULL;
    vae_eval_options o;
    vae_eval_options_default(&o);
    o.importance_samples = 50;
    vae_eval_result a, b, c;
    vae_error err;
    double *rows = malloc(sizeof(double) * VAE_EVAL_COLUMNS * sub.count);
    vae_set_num_threads(2);
    CHECK(vae_eval(model, &sub, &o, &a, rows, &err) == VAE_OK, "%s", err.message);
    CHECK(a.count == 300 && a.latent_dim == 2 && a.importance_samples == 50, "shape");
    CHECK(a.nll < a.neg_elbo + 1.0 && a.nll > 0, "nll %.3f vs -elbo %.3f", a.nll, a.neg_elbo);
    CHECK_CLOSE(a.bits_per_dim, a.nll / (784 * log(2.0)), 1e-12, 0, "bits per dim");
    CHECK(a.active_units >= 1 && a.active_units <= 2, "active units %d", a.active_units);
    double sum = 0;
    for (size_t i = 0; i < sub.count; i++) sum += rows[i * VAE_EVAL_COLUMNS + VAE_EVAL_NLL];
    CHECK_CLOSE(sum / sub.count, a.nll, 1e-12, 0, "per-sample rows add up");
    /* the ELBO part is vae_eval_elbo's, draw for draw (batches of 100 round differently) */
    vae_loss l;
    vae_eval_elbo(model, &sub, 100, o.seed, &l, &err);
    CHECK_CLOSE(a.neg_elbo, (l.recon + l.kl) / l.count, 1e-6, 0, "vae_eval_elbo agrees");
    /* again: the same bits; K=0: the same ELBO without the estimate */
    CHECK(vae_eval(model, &sub, &o, &b, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK(a.neg_elbo == b.neg_elbo && a.nll == b.nll, "a rerun differs");
    o.importance_samples = 0;
    CHECK(vae_eval(model, &sub, &o, &c, NULL, &err) == VAE_OK && isnan(c.nll) &&
              c.neg_elbo == a.neg_elbo, "K=0: ELBO only");
    /* one thread, other batch and chunk sizes: the same draws, so equal up to float rounding
     * (matrix products of other shapes round differently) */
    vae_set_num_threads(1);
    o.importance_samples = 50, o.batch = 77, o.chunk = 13;
    CHECK(vae_eval(model, &sub, &o, &b, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK_CLOSE(b.neg_elbo, a.neg_elbo, 1e-6, 0, "ELBO, other threads and batches");
    CHECK_CLOSE(b.nll, a.nll, 1e-6, 0, "nll, other threads and batches");
    vae_set_num_threads(0);
    free(rows);
}

/* A model whose second latent unit is ignored by the encoder is found to have one active unit. */
static void test_active_units(void) {
    vae_config cfg = {.input_dim = 784, .latent_dim = 3, .n_encoder = 1, .encoder = {16},
                      .n_decoder = 1, .decoder = {16}, .activation = VAE_ACT_RELU};
    vae_model *m = NULL;
    vae_error err;
    vae_model_create(&m, &cfg, 3, &err);
    int t = vae_model_find_tensor(m, "mu.weight");
    vae_tensor_info w = vae_model_tensor(m, t);
    float *p = vae_model_params(m) + w.offset;
    for (int j = 0; j < 16; j++) p[1 * 16 + j] = 0, p[2 * 16 + j] = 0; /* units 1, 2: constant */
    for (int j = 0; j < 16; j++) p[0 * 16 + j] *= 50;                 /* unit 0: spread */
    vae_dataset sub = *images;
    sub.count = 200, sub.labels = NULL;
    vae_eval_options o;
    vae_eval_options_default(&o);
    o.importance_samples = 0;
    vae_eval_result r;
    CHECK(vae_eval(m, &sub, &o, &r, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK(r.active_units == 1, "active units %d, expected 1", r.active_units);
    vae_dataset wrong = sub;
    wrong.dim = 100;
    CHECK(vae_eval(m, &wrong, &o, &r, NULL, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "expects 784"), "wrong width: %s", err.message);
    vae_model_free(m);
}

/* Encoding a data set with holes: the holes are not taken for values (vae encode once treated
 * them as observed zeros), and a model without missing values refuses such data. */
static void test_encode_data_with_holes(void) {
    vae_config cfg = {.input_dim = 6, .latent_dim = 2, .n_encoder = 1, .encoder = {5},
                      .n_decoder = 1, .decoder = {5}, .activation = VAE_ACT_TANH, .missing = 1};
    vae_model *m;
    vae_error err;
    CHECK(vae_model_create(&m, &cfg, 3, &err) == VAE_OK, "%s", err.message);
    float x[12] = {0.2f, 0.0f, 0.7f, 0.1f, 0.0f, 0.9f, 0.5f, 0.4f, 0.0f, 0.3f, 0.8f, 0.6f};
    uint8_t mask[12] = {1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1};
    vae_dataset data = {.count = 2, .dim = 6, .x = x, .mask = mask};
    float mu[4], mu_all[4], mu_ref[4];
    CHECK(vae_encode_data(m, &data, mu, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_encode_all(m, x, NULL, 2, mu_all, NULL, &err) == VAE_OK, "%s", err.message);
    vae_workspace *ws;
    vae_workspace_create(&ws, m, 2, &err);
    const vae_batch batch = {.n = 2, .x = x, .mask = mask};
    vae_encode(m, ws, &batch, mu_ref, NULL, &err);
    vae_workspace_free(ws);
    CHECK(memcmp(mu, mu_ref, sizeof mu) == 0, "the masked encoding");
    CHECK(memcmp(mu, mu_all, sizeof mu) != 0, "the holes changed nothing");
    vae_model_free(m);
    cfg.missing = 0;
    CHECK(vae_model_create(&m, &cfg, 3, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_encode_data(m, &data, mu, NULL, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "missing values") != NULL, "refused: %s", err.message);
    vae_model_free(m);
}

static void test_latent_helpers(void) {
    /* quantiles: known values, symmetry, and the round trip through erfc in the far tails */
    CHECK_CLOSE(vae_normal_quantile(0.975), 1.959963984540054, 1e-14, 0, "q(0.975)");
    CHECK_CLOSE(vae_normal_quantile(0.5), 0.0, 0, 1e-15, "q(0.5)");
    CHECK_CLOSE(vae_normal_quantile(0.001), -3.090232306167813, 1e-13, 0, "q(0.001)");
    CHECK_CLOSE(vae_normal_quantile(0.9), -vae_normal_quantile(0.1), 1e-15, 0, "mirror");
    for (double p = 1e-300; p < 0.5; p *= 7.3) {
        double x = vae_normal_quantile(p);
        CHECK_CLOSE(0.5 * erfc(-x / sqrt(2.0)), p, 1e-12, 0, "Phi(q(p)) = p");
    }
    CHECK(isinf(vae_normal_quantile(0)) && isnan(vae_normal_quantile(2)), "edges");
    /* slerp between two unit vectors stays on the unit circle; lerp cuts the chord */
    float a[3] = {1, 0, 0}, b[3] = {0, 1, 0}, mid[3];
    vae_slerp(a, b, 0.5, 3, mid);
    CHECK_CLOSE(mid[0] * mid[0] + mid[1] * mid[1], 1.0, 1e-6, 0, "slerp keeps the norm");
    CHECK_CLOSE(mid[0], sqrt(0.5), 1e-6, 0, "slerp halfway");
    vae_lerp(a, b, 0.25, 3, mid);
    CHECK(mid[0] == 0.75f && mid[1] == 0.25f && mid[2] == 0, "lerp");
    vae_slerp(a, a, 0.3, 3, mid);
    CHECK(mid[0] == 1 && mid[1] == 0, "parallel: no division by zero");
    /* PCA: points spread along (1,1,0)/sqrt2 mostly, (0,0,1) less */
    enum { N = 400 };
    float pts[N * 3], proj[N * 2];
    vae_rng r = vae_rng_make(5, 0);
    for (int i = 0; i < N; i++) {
        float g[3];
        vae_rng_normal(&r, g, 3);
        pts[3 * i] = 3 * g[0] + 0.01f * g[1] + 7, pts[3 * i + 1] = 3 * g[0] - 0.01f * g[1];
        pts[3 * i + 2] = g[2];
    }
    double ex[2];
    vae_error err;
    CHECK(vae_pca2(pts, N, 3, proj, ex, &err) == VAE_OK, "%s", err.message);
    double c = 0, v1 = 0;
    for (int i = 0; i < N; i++) c += proj[2 * i] * (pts[3 * i + 1] * 1.0), v1 += proj[2 * i] * proj[2 * i];
    CHECK(ex[0] > 0.9 && ex[1] > 0.04 && ex[1] < 0.1 && ex[0] + ex[1] > 0.999, "explained %g %g",
          ex[0], ex[1]);
    double mean0 = 0;
    for (int i = 0; i < N; i++) mean0 += proj[2 * i] / N;
    CHECK(fabs(mean0) < 1e-4 && fabs(c) > 0, "centered (%g)", mean0);
}

int main(void) {
    vae_error err;
    if (vae_idx_load(FMNIST_TEST, NULL, &images, &err) != VAE_OK) {
        printf("not ok load_data # %s\n", err.message);
        return 1;
    }
    vae_config cfg;
    vae_config_preset(&cfg, "seed", 784, &err);
    vae_model_create(&model, &cfg, 1, &err);
    vae_dataset train = *images;
    train.labels = NULL;
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 10;
    vae_set_num_threads(2); /* the same model bits on any machine */
    if (vae_train(model, &train, NULL, &opt, &err) != VAE_OK) {
        printf("not ok train # %s\n", err.message);
        return 1;
    }
    RUN(test_iwae_approaches_quadrature);
    RUN(test_eval_summary);
    RUN(test_active_units);
    RUN(test_latent_helpers);
    RUN(test_encode_data_with_holes);
    vae_model_free(model);
    vae_dataset_free(images);
    return CHECK_SUMMARY();
}

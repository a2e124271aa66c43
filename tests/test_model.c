/* test_model.c — configuration, the parameter table, initialization, randomness, the training
 * loop's promises (determinism, divergence, cancellation, learning) and PNG output. */
#include "backend/ops_table.h"
#include "core/internal.h"
#include "check.h"
#include "vae.h"

#include <float.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static void test_presets_and_table(void) {
    vae_config cfg;
    vae_error err;
    vae_model *m;
    CHECK(vae_config_preset(&cfg, "pytorch", 784, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_model_create(&m, &cfg, 1, &err) == VAE_OK, "%s", err.message);
    /* 784*400+400 + 2*(400*20+20) + 20*400+400 + 400*784+784 */
    CHECK(vae_model_num_params(m) == 652824, "pytorch preset has %zu", vae_model_num_params(m));
    CHECK(vae_model_num_tensors(m) == 10, "tensors %d", vae_model_num_tensors(m));
    const char *names[] = {"encoder.0.weight", "encoder.0.bias", "mu.weight", "mu.bias",
                           "logvar.weight", "logvar.bias", "decoder.0.weight", "decoder.0.bias",
                           "output.weight", "output.bias"};
    size_t expect_offset = 0;
    for (int i = 0; i < 10; i++) {
        vae_tensor_info t = vae_model_tensor(m, i);
        CHECK(strcmp(t.name, names[i]) == 0, "tensor %d is %s", i, t.name);
        CHECK(t.offset == expect_offset, "%s offset %zu, expected %zu", t.name, t.offset,
              expect_offset);
        expect_offset += (size_t)t.rows * t.cols;
        CHECK(vae_model_find_tensor(m, names[i]) == i, "find %s", names[i]);
    }
    CHECK(expect_offset == vae_model_num_params(m), "tensors cover the buffer");
    vae_tensor_info mu = vae_model_tensor(m, 2);
    CHECK(mu.rows == 20 && mu.cols == 400, "mu.weight is (out,in) = (20,400): %dx%d", mu.rows,
          mu.cols);
    CHECK(vae_model_find_tensor(m, "nope") == -1, "unknown name");
    vae_model_free(m);

    CHECK(vae_config_preset(&cfg, "seed", 784, &err) == VAE_OK, "%s", err.message);
    CHECK(cfg.latent_dim == 2 && cfg.n_encoder == 3 && cfg.encoder[2] == 32 &&
          cfg.n_decoder == 3 && cfg.decoder[0] == 256, "seed preset shape");
    CHECK(vae_model_create(&m, &cfg, 1, &err) == VAE_OK, "%s", err.message);
    size_t want = (784 * 128 + 128) + (128 * 64 + 64) + (64 * 32 + 32) + 2 * (32 * 2 + 2) +
                  (2 * 256 + 256) + (256 * 128 + 128) + (128 * 64 + 64) + (64 * 784 + 784);
    CHECK(vae_model_num_params(m) == want, "seed preset %zu vs %zu", vae_model_num_params(m), want);
    vae_model_free(m);
    vae_model_free(NULL);
    CHECK(vae_config_preset(&cfg, "keras", 784, &err) == VAE_ERR_INVALID_ARGUMENT &&
          strstr(err.message, "keras"), "unknown preset: %s", err.message);
}

static void test_config_validation(void) {
    vae_config cfg;
    vae_error err;
    vae_config_preset(&cfg, "pytorch", 784, &err);
    cfg.latent_dim = 0;
    CHECK(vae_config_validate(&cfg, &err) == VAE_ERR_INVALID_ARGUMENT &&
          strstr(err.message, "latent"), "%s", err.message);
    vae_config_preset(&cfg, "pytorch", 784, &err);
    cfg.n_encoder = 0;
    CHECK(vae_config_validate(&cfg, &err) == VAE_ERR_INVALID_ARGUMENT, "no encoder layers");
    int sizes[VAE_MAX_HIDDEN], n;
    CHECK(vae_layer_sizes_parse("512,256,128", sizes, &n, &err) == VAE_OK && n == 3 &&
          sizes[1] == 256, "parse");
    CHECK(vae_layer_sizes_parse("512,,3", sizes, &n, &err) == VAE_ERR_INVALID_ARGUMENT, "empty");
    CHECK(vae_layer_sizes_parse("512;3", sizes, &n, &err) == VAE_ERR_INVALID_ARGUMENT &&
          strstr(err.message, "position 4"), "bad separator: %s", err.message);
    CHECK(vae_layer_sizes_parse("-4", sizes, &n, &err) == VAE_ERR_INVALID_ARGUMENT, "negative");
    CHECK(vae_layer_sizes_parse("1,2,3,4,5,6,7,8,9", sizes, &n, &err) == VAE_ERR_INVALID_ARGUMENT,
          "too many");
    vae_activation a;
    CHECK(vae_activation_parse("elu", &a, NULL) == VAE_OK && a == VAE_ACT_ELU, "elu");
    CHECK(vae_activation_parse("leaky-relu", &a, NULL) == VAE_OK && a == VAE_ACT_LEAKY_RELU, "leaky");
    vae_error perr = {{0}};
    CHECK(vae_activation_parse("gelu", &a, &perr) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(perr.message, "unknown activation \"gelu\""),
          "gelu unknown, said: %s", perr.message);
}

static void test_init_like_pytorch(void) {
    vae_config cfg;
    vae_error err;
    vae_model *m;
    vae_config_preset(&cfg, "pytorch", 784, &err);
    vae_model_create(&m, &cfg, 42, &err);
    for (int t = 0; t < vae_model_num_tensors(m); t++) {
        vae_tensor_info info = vae_model_tensor(m, t);
        int fan_in = vae_model_tensor(m, t - t % 2).cols;
        double bound = 1.0f / sqrtf((float)fan_in), sum = 0, sq = 0, maxabs = 0;
        size_t n = (size_t)info.rows * info.cols;
        const float *p = vae_model_params(m) + info.offset;
        for (size_t i = 0; i < n; i++) {
            sum += p[i], sq += (double)p[i] * p[i];
            maxabs = fmax(maxabs, fabs(p[i]));
        }
        CHECK(maxabs <= bound, "%s: |w| %g above 1/sqrt(fan_in) %g", info.name, maxabs, bound);
        if (n >= 8000) { /* U(-b,b): mean 0, variance b^2/3, within 5 standard errors */
            double mean = sum / n, var = sq / n - mean * mean, want = bound * bound / 3;
            CHECK(fabs(mean) < 5 * sqrt(want / n), "%s mean %g", info.name, mean);
            CHECK(fabs(var - want) < 0.03 * want, "%s variance %g vs %g", info.name, var, want);
            CHECK(maxabs > 0.99 * bound, "%s does not fill its range", info.name);
        }
    }
    vae_model *same, *other;
    vae_model_create(&same, &cfg, 42, &err);
    vae_model_create(&other, &cfg, 43, &err);
    size_t bytes = vae_model_num_params(m) * sizeof(float);
    CHECK(memcmp(vae_model_params(m), vae_model_params(same), bytes) == 0, "same seed");
    CHECK(memcmp(vae_model_params(m), vae_model_params(other), bytes) != 0, "other seed");
    vae_model_free(m), vae_model_free(same), vae_model_free(other);
}

static void test_rng(void) {
    vae_rng a = vae_rng_make(5, 0), b = vae_rng_make(5, 0), c = vae_rng_make(5, 1);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = vae_rng_u64(&a), y = vae_rng_u64(&b), z = vae_rng_u64(&c);
        same &= x == y;
        differ += x != z;
    }
    CHECK(same && differ == 100, "streams: same %d differ %d", same, differ);
    enum { N = 200000 };
    static float v[N];
    vae_rng r = vae_rng_make(9, 3);
    vae_rng_normal(&r, v, N);
    double sum = 0, sq = 0, q = 0;
    for (int i = 0; i < N; i++) sum += v[i], sq += (double)v[i] * v[i], q += v[i] * v[i] * v[i] * v[i];
    double mean = sum / N, var = sq / N - mean * mean;
    CHECK(fabs(mean) < 0.01 && fabs(var - 1) < 0.015 && fabs(q / N - 3) < 0.1,
          "normal moments %g %g %g", mean, var, q / N);
    int hist[10] = {0};
    for (int i = 0; i < N; i++) {
        float u = vae_rng_uniform(&r);
        CHECK(u >= 0.0f && u < 1.0f, "uniform %g", u);
        hist[(int)(u * 10)]++;
    }
    for (int k = 0; k < 10; k++) CHECK(abs(hist[k] - N / 10) < 600, "bin %d: %d", k, hist[k]);
    for (int i = 0; i < 1000; i++) CHECK(vae_rng_below(&r, 7) < 7, "below");
}

/* Small synthetic images: 3 prototypes of 16 pixels with noise. */
static vae_dataset *make_data(size_t n, uint64_t seed) {
    vae_dataset *ds = calloc(1, sizeof *ds);
    ds->count = n, ds->dim = 16, ds->rows = 4, ds->cols = 4;
    ds->x = malloc(n * 16 * sizeof(float));
    vae_rng r = vae_rng_make(seed, 77);
    for (size_t i = 0; i < n; i++) {
        int k = (int)vae_rng_below(&r, 3);
        for (int d = 0; d < 16; d++) {
            float proto = (float)(((d + k * 5) % 7) < 3);
            float v = proto * 0.8f + 0.2f * vae_rng_uniform(&r);
            ds->x[i * 16 + d] = v;
        }
    }
    return ds;
}

static vae_model *small_model(uint64_t seed) {
    vae_config cfg = {.input_dim = 16, .latent_dim = 2, .n_encoder = 1, .encoder = {12},
                      .n_decoder = 1, .decoder = {12}, .activation = VAE_ACT_TANH};
    vae_model *m;
    vae_error err;
    if (vae_model_create(&m, &cfg, seed, &err) != VAE_OK) return NULL;
    return m;
}

typedef struct { int epochs_seen; double first, last; int cancel_at; size_t steps; } watch;
static void on_epoch(void *u, const vae_epoch_stats *s) {
    watch *w = u;
    if (w->epochs_seen++ == 0) w->first = s->test_loss;
    w->last = s->test_loss;
}
static int on_progress(void *u, int epoch, size_t step, size_t steps, double loss) {
    (void)epoch, (void)steps, (void)loss;
    watch *w = u;
    w->steps++;
    return w->cancel_at && (int)step >= w->cancel_at;
}

static void test_training_learns_and_is_deterministic(void) {
    vae_dataset *train = make_data(500, 1), *test = make_data(200, 2);
    vae_model *a = small_model(3), *b = small_model(3), *c = small_model(3);
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 8, opt.batch_size = 32, opt.adam.lr = 3e-3f, opt.eval_batch_size = 64;
    watch w = {0};
    opt.on_epoch = on_epoch, opt.progress = on_progress, opt.user = &w;
    vae_error err;
    CHECK(vae_train(a, train, test, &opt, &err) == VAE_OK, "%s", err.message);
    CHECK(w.epochs_seen == 8, "epochs %d", w.epochs_seen);
    CHECK(w.steps == 8 * 16, "steps %zu (the last short batch counts)", w.steps);
    CHECK(w.last < w.first - 0.5, "test loss fell from %g to %g", w.first, w.last);
    /* evaluation batches smaller than the training batch run on the training workspace */
    watch w2 = {0};
    opt.progress = NULL, opt.user = &w2, opt.eval_batch_size = 20;
    CHECK(vae_train(b, train, test, &opt, &err) == VAE_OK, "%s", err.message);
    size_t bytes = vae_model_num_params(a) * sizeof(float);
    CHECK(memcmp(vae_model_params(a), vae_model_params(b), bytes) == 0,
          "same seed, same threads: bit-identical weights");
    CHECK(fabs(w2.last - w.last) <= 1e-9 * fabs(w.last),
          "the test loss does not depend on the evaluation batch: %.12g, %.12g", w.last, w2.last);
    opt.on_epoch = NULL, opt.eval_batch_size = 64;
    opt.seed = 2;
    CHECK(vae_train(c, train, test, &opt, &err) == VAE_OK, "%s", err.message);
    CHECK(memcmp(vae_model_params(a), vae_model_params(c), bytes) != 0, "another seed differs");
    vae_model_free(a), vae_model_free(b), vae_model_free(c);
    vae_dataset_free(train), vae_dataset_free(test);
}

static void test_divergence_is_caught(void) {
    vae_dataset *train = make_data(100, 1);
    vae_model *m = small_model(3);
    /* one poisoned output bias: the first loss is not finite (a poisoned hidden weight could
     * vanish in a ReLU, which maps NaN to 0) */
    const size_t poisoned = vae_model_tensor(m, vae_model_find_tensor(m, "output.bias")).offset;
    vae_model_params(m)[poisoned] = INFINITY;
    size_t bytes = vae_model_num_params(m) * sizeof(float);
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 1, opt.batch_size = 100; /* the first step sees it */
    float *before = malloc(bytes);
    memcpy(before, vae_model_params(m), bytes);
    vae_error err = {{0}};
    CHECK(vae_train(m, train, NULL, &opt, &err) == VAE_ERR_DIVERGED, "status");
    CHECK(strstr(err.message, "step 1") && strstr(err.message, "not finite"), "%s", err.message);
    CHECK(memcmp(before, vae_model_params(m), bytes) == 0, "parameters of the last good step");
    free(before);
    /* gradients left behind (the refused step's, a caller's passes') do not reach the next
     * run: it starts from zero ones */
    vae_model_params(m)[poisoned] = 0.0f;
    vae_model_grads(m)[vae_model_num_params(m) / 2] = NAN;
    CHECK(vae_train(m, train, NULL, &opt, &err) == VAE_OK, "after a diverged run: %s",
          err.message);
    /* a NaN in the data is refused before training, naming where it is */
    train->x[37 * 16 + 5] = NAN;
    CHECK(vae_train(m, train, NULL, &opt, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "sample 38, value 6 is nan"), "%s", err.message);
    vae_model_free(m);
    vae_dataset_free(train);
}

/* vae_check_data: each likelihood's support at its edges, on data large enough for the
 * threads' split; the message names the first value outside, and a missing value is never
 * outside */
static int support_refuses(vae_likelihood lik, int missing, float v, size_t at, char *msg) {
    vae_config cfg = {.input_dim = 16, .latent_dim = 2, .n_encoder = 1, .encoder = {4},
                      .n_decoder = 1, .decoder = {4}, .likelihood = lik, .sigma = 1.0f,
                      .missing = missing};
    vae_model *m = NULL;
    vae_error err = {{0}};
    if (vae_model_create(&m, &cfg, 1, &err) != VAE_OK) return -1;
    vae_dataset *d = make_data(4000, 3); /* 64,000 values */
    uint8_t *mask = missing ? malloc(d->count * 16) : NULL;
    if (mask) memset(mask, 1, d->count * 16), mask[at] = 0;
    d->mask = mask;
    d->x[at] = v;
    vae_status s = vae_check_data(m, d, "test", &err);
    snprintf(msg, 512, "%s", err.message);
    free(mask), d->mask = NULL;
    vae_dataset_free(d), vae_model_free(m);
    return s != VAE_OK;
}

static void test_data_support(void) {
    char msg[512];
    const size_t late = 3900 * 16 + 7;
    CHECK(support_refuses(VAE_LIK_BERNOULLI, 0, 1.0f, late, msg) == 0, "1 is a Bernoulli value");
    CHECK(support_refuses(VAE_LIK_BERNOULLI, 0, -0.0f, late, msg) == 0, "-0 is one");
    CHECK(support_refuses(VAE_LIK_BERNOULLI, 0, nextafterf(1.0f, 2.0f), late, msg) == 1 &&
              strstr(msg, "sample 3901, value 8 is 1") && strstr(msg, "bernoulli"), "%s", msg);
    CHECK(support_refuses(VAE_LIK_POISSON, 0, 0.0f, late, msg) == 0, "0 is a count");
    CHECK(support_refuses(VAE_LIK_POISSON, 0, -FLT_MIN, late, msg) == 1, "a negative count");
    CHECK(support_refuses(VAE_LIK_POISSON, 0, INFINITY, late, msg) == 1, "an infinite count");
    CHECK(support_refuses(VAE_LIK_GAUSSIAN, 0, -FLT_MAX, late, msg) == 0, "-FLT_MAX is real");
    CHECK(support_refuses(VAE_LIK_GAUSSIAN, 0, -INFINITY, late, msg) == 1, "-inf is not");
    CHECK(support_refuses(VAE_LIK_GAUSSIAN, 0, NAN, late, msg) == 1 && strstr(msg, "is nan"),
          "%s", msg);
    CHECK(support_refuses(VAE_LIK_GAUSSIAN, 1, NAN, late, msg) == 0, "a missing value");
    CHECK(support_refuses(VAE_LIK_BERNOULLI, 1, 7.0f, 5, msg) == 0, "a missing value");
}

static void test_cancel_and_bad_options(void) {
    vae_dataset *train = make_data(100, 1);
    vae_model *m = small_model(3);
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.batch_size = 10;
    watch w = {.cancel_at = 3};
    opt.progress = on_progress, opt.user = &w;
    vae_error err;
    CHECK(vae_train(m, train, NULL, &opt, &err) == VAE_ERR_CANCELLED && w.steps == 3,
          "cancel after 3 steps: %zu", w.steps);
    opt.progress = NULL;
    opt.epochs = 0;
    CHECK(vae_train(m, train, NULL, &opt, &err) == VAE_ERR_INVALID_ARGUMENT, "0 epochs");
    opt.epochs = 1;
    opt.adam.lr = -1;
    CHECK(vae_train(m, train, NULL, &opt, &err) == VAE_ERR_INVALID_ARGUMENT, "negative lr");
    vae_train_options_default(&opt);
    opt.batch_threads = 3;
    CHECK(vae_train(m, train, NULL, &opt, &err) == VAE_ERR_INVALID_ARGUMENT &&
          strstr(err.message, "batch threads 3"), "batch threads 3: %s", err.message);
    vae_train_options_default(&opt);
    train->dim = 15;
    CHECK(vae_train(m, train, NULL, &opt, &err) == VAE_ERR_INVALID_ARGUMENT &&
          strstr(err.message, "15"), "dimension mismatch: %s", err.message);
    train->dim = 16;
    vae_model_free(m);
    vae_dataset_free(train);
}

static void test_evaluate_and_encode(void) {
    vae_dataset *data = make_data(70, 5);
    vae_model *m = small_model(4);
    vae_loss l1, l2;
    vae_error err;
    CHECK(vae_eval_elbo(m, data, 7, 9, &l1, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_eval_elbo(m, data, 64, 9, &l2, &err) == VAE_OK, "%s", err.message);
    CHECK(l1.count == 70 && l2.count == 70, "counts");
    CHECK_CLOSE(l1.recon + l1.kl, l2.recon + l2.kl, 1e-6, 0, "noise per sample: batch-size free");
    CHECK(l1.kl > 0 && l1.recon > 0, "positive terms");

    vae_workspace *ws;
    vae_workspace_create(&ws, m, 8, &err);
    float mu[16], lv[16], eps[16] = {0}, probs[8 * 16];
    vae_batch batch = {.n = 8, .x = data->x, .eps = eps};
    vae_encode(m, ws, &batch, mu, lv, &err);
    vae_forward(m, ws, &batch, NULL, &err);
    CHECK(memcmp(mu, vae_workspace_mu(ws), sizeof mu) == 0, "encode = forward's mu");
    CHECK(memcmp(lv, vae_workspace_logvar(ws), sizeof lv) == 0, "encode = forward's logvar");
    CHECK(memcmp(mu, vae_workspace_z(ws), sizeof mu) == 0, "eps = 0 gives z = mu");
    vae_decode(m, ws, mu, NULL, 8, probs, &err);
    for (int i = 0; i < 8 * 16; i++) CHECK(probs[i] > 0 && probs[i] < 1, "probability %g", probs[i]);
    batch.n = 9;
    CHECK(vae_forward(m, ws, &batch, NULL, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "forward: 9 rows, the workspace holds 1..8"),
          "over max batch, said: %s", err.message);
    batch.n = 8;
    vae_model *other = small_model(4);
    CHECK(vae_forward(other, ws, &batch, NULL, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "another model"),
          "workspace of another model, said: %s", err.message);
    CHECK(vae_backward(m, ws, &batch, NULL, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, "last forward"),
          "backward after a decode, said: %s", err.message);
    vae_model_free(other);
    vae_workspace_free(ws);
    vae_model_free(m);
    vae_dataset_free(data);
}

/* One IWAE draw per input with layers narrower than twice the latent: the step's per-input
 * sums once ran past the workspace (seen under AddressSanitizer). */
static void test_iwae_one_draw_narrow_layers(void) {
    vae_config cfg = {.input_dim = 4, .latent_dim = 6, .n_encoder = 1, .encoder = {4},
                      .n_decoder = 1, .decoder = {4}, .activation = VAE_ACT_RELU};
    vae_model *m;
    vae_workspace *ws;
    vae_error err;
    CHECK(vae_model_create(&m, &cfg, 2, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_workspace_create(&ws, m, 3, &err) == VAE_OK, "%s", err.message);
    const float x[12] = {0.1f, 0.9f, 0.5f, 0.3f, 0.7f, 0.2f, 0.4f, 0.8f, 0.6f, 0.0f, 1.0f, 0.5f};
    float eps[18];
    vae_rng r = vae_rng_make(1, 2);
    vae_rng_normal(&r, eps, 18);
    vae_loss loss = {0};
    const vae_batch batch = {.n = 3, .x = x, .eps = eps};
    CHECK(vae_iwae_step(m, ws, &batch, 1, &loss, &err) == VAE_OK, "iwae step: %s", err.message);
    CHECK(isfinite(loss.recon) && loss.count == 3, "bound %g over %zu", loss.recon, loss.count);
    vae_workspace_free(ws);
    vae_model_free(m);
}

/* Which OpenBLAS kernels vae names for a CPU: better ones only over a generic detection, and
 * never ones whose instructions (or saved OS state) the CPU lacks. */
static void test_blas_core_choice(void) {
    const vae_cpu_features none = {0};
    const vae_cpu_features avx2 = {.avx2 = 1, .fma = 1, .os_avx = 1};
    const vae_cpu_features avx512 = {.avx2 = 1, .fma = 1, .avx512f = 1, .avx512bw = 1,
                                     .avx512dq = 1, .avx512vl = 1, .os_avx = 1, .os_avx512 = 1};
    vae_cpu_features no_os512 = avx512, no_vl = avx512, no_os = avx2, no_fma = avx2;
    no_os512.os_avx512 = 0, no_vl.avx512vl = 0, no_os.os_avx = 0, no_fma.fma = 0;
    struct {
        const char *detected;
        const vae_cpu_features *f;
        const char *want; /* NULL: keep */
    } cases[] = {
        {"Prescott", &avx512, "SkylakeX"},  /* a Sapphire Rapids VM OpenBLAS 0.3.21 misses */
        {"Prescott", &avx2, "Haswell"},     /* an AVX2-only CPU */
        {"Prescott", &no_os512, "Haswell"}, /* AVX-512 the OS does not save */
        {"Prescott", &no_vl, "Haswell"},
        {"Prescott", &no_os, NULL},         /* AVX2 the OS does not save */
        {"Prescott", &no_fma, NULL},
        {"Prescott", &none, NULL},
        {"Sandybridge", &avx2, "Haswell"},
        {"Haswell", &avx512, NULL},         /* recognised: OpenBLAS's choice stands */
        {"Zen", &avx512, NULL},
        {"SkylakeX", &avx512, NULL},
        {"Cooperlake", &avx512, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = vae_blas_core_choice(cases[i].detected, cases[i].f);
        CHECK(got == cases[i].want || (got && cases[i].want && strcmp(got, cases[i].want) == 0),
              "case %zu (%s): %s, want %s", i, cases[i].detected, got ? got : "keep",
              cases[i].want ? cases[i].want : "keep");
    }
    vae_cpu_features here;
    vae_cpu_features_detect(&here);
    const char *mine = vae_blas_core_choice("Prescott", &here);
    CHECK(!mine || strcmp(mine, "Haswell") || (here.avx2 && here.fma && here.os_avx),
          "this CPU: %s", mine);
    CHECK(vae_blas_core() && vae_blas_core()[0], "a core name");
}

static void test_adam_first_step(void) {
    /* the first bias-corrected step moves every parameter by lr against its gradient's sign */
    vae_adam *adam;
    vae_adam_options o;
    vae_adam_options_default(&o);
    vae_error err;
    CHECK(vae_adam_create(&adam, 4, &o, &err) == VAE_OK, "create");
    float p[4] = {1, 1, 1, 1}, g[4] = {0.5f, -2e-3f, 30.f, 0.f};
    vae_adam_step(adam, p, g);
    CHECK_CLOSE(p[0], 1 - 1e-3, 1e-6, 0, "p0");
    CHECK_CLOSE(p[1], 1 + 1e-3, 1e-6, 0, "p1");
    CHECK_CLOSE(p[2], 1 - 1e-3, 1e-6, 0, "p2");
    CHECK(p[3] == 1.0f, "zero gradient, no move");
    vae_adam_free(adam);
}

/* Gradients that stop: the first moment decays as 0.9^t and would be subnormal from ~step 830
 * (each read and write of it ~100x slower on x86; it slowed whole epochs by a third). Adam
 * keeps no subnormal moment, moves no parameter for it, and leaves this thread's handling of
 * subnormals as it found it. Both sizes: one thread, and the parallel split (65536+). */
static void test_adam_no_subnormal_moments(void) {
    for (size_t n = 4; n <= 70000; n += 69996) {
        vae_adam *adam;
        vae_adam_options o;
        vae_adam_options_default(&o);
        vae_error err;
        CHECK(vae_adam_create(&adam, n, &o, &err) == VAE_OK, "create");
        float *p = calloc(n, sizeof *p), *g = calloc(n, sizeof *g), moved = 0;
        for (size_t i = 0; i < n; i++) p[i] = 1.0f, g[i] = 1.0f;
        vae_adam_step(adam, p, g); /* Adam clears g: every later step has zero gradients */
        const float after_first = p[n - 1];
        int subnormal = 0;
        for (int t = 2; t <= 900; t++) {
            vae_adam_step(adam, p, g);
            const float *m = vae_adam_first_moment(adam);
            subnormal += fpclassify(m[0]) == FP_SUBNORMAL || fpclassify(m[n - 1]) == FP_SUBNORMAL;
            if (t == 600) moved = p[n - 1] - after_first; /* the moment still moves p */
        }
        CHECK(subnormal == 0, "n %zu: %d steps kept a subnormal moment", n, subnormal);
        CHECK(moved < 0 && vae_adam_first_moment(adam)[n - 1] == 0.0f, "n %zu: m decayed", n);
        volatile float tiny = FLT_MIN;
        CHECK(tiny / 2 > 0, "the caller's thread still computes subnormals");
        free(p), free(g), vae_adam_free(adam);
    }
}

/* The gradient check before Adam (the exponent's bits): every Inf and NaN found wherever it
 * lies, on one thread and split (65536+), and no finite value taken for one. */
static void test_all_finite(void) {
    const float bad[] = {INFINITY, -INFINITY, NAN, -NAN};
    const float good[] = {FLT_MAX, -FLT_MAX, FLT_MIN / 4, -0.0f, 0.0f, 1.0f};
    for (size_t n = 5; n <= 70000; n += 69995) {
        float *v = malloc(n * sizeof *v);
        for (size_t i = 0; i < n; i++) v[i] = good[i % 6];
        CHECK(vae_all_finite(v, n), "n %zu: finite values refused", n);
        const size_t places[3] = {0, n / 2, n - 1};
        for (int k = 0; k < 4; k++)
            for (int p = 0; p < 3; p++) {
                const size_t i = places[p];
                const float keep = v[i];
                v[i] = bad[k];
                CHECK(!vae_all_finite(v, n), "n %zu: %g at %zu missed", n, bad[k], i);
                v[i] = keep;
            }
        free(v);
    }
}

static void test_png_grid(void) {
    char path[] = "/tmp/vae-png-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    float img[3 * 4 * 5];
    for (int i = 0; i < 60; i++) img[i] = (float)i / 59.0f;
    img[7] = NAN; /* must not crash or write garbage */
    vae_error err;
    CHECK(vae_png_write_grid(path, img, 3, 4, 5, 2, 2, &err) == VAE_OK, "%s", err.message);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    CHECK(png_image_begin_read_from_file(&im, path), "read back");
    /* 2 columns of (5*2 + 2) + 2 = 26 wide, 2 rows of (4*2 + 2) + 2 = 22 tall */
    CHECK(im.width == 26 && im.height == 22, "size %ux%u", im.width, im.height);
    im.format = PNG_FORMAT_GRAY;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(im));
    CHECK(png_image_finish_read(&im, NULL, buf, 0, NULL), "decode");
    CHECK(buf[0] == 64, "gap color %d", buf[0]);
    CHECK(buf[2 * 26 + 2] == 0, "first pixel black: %d", buf[2 * 26 + 2]);
    CHECK(buf[(2 + 7) * 26 + 2 + 9] == (uint8_t)(19.0f / 59 * 255 + 0.5f), "last pixel of 1st");
    free(buf);
    CHECK(vae_png_write_grid("/nonexistent-dir/x.png", img, 3, 4, 5, 2, 2, &err) == VAE_ERR_CREATE &&
          strstr(err.message, "/nonexistent-dir/x.png"), "%s", err.message);
    unlink(path);
}

/* The backend seam: a table that counts its calls and forwards them to the CPU's. Training
 * with it must call every op an MLP model uses and give the CPU table's weights bit for bit,
 * which shows that the model, its passes and the training loop compute through the table. */
enum { C_LIN_F, C_LIN_B, C_ACT_F, C_ACT_B, C_REP_F, C_REP_B, C_DRAWS, C_KL_F, C_KL_B, C_RECON,
       C_DECODE, C_ADAM, C_COUNT };
static int calls[C_COUNT];
static void c_lin_f(float *y, const float *x, const float *w, const float *b, int n, int in,
                    int out, const vae_activation *a) {
    calls[C_LIN_F]++, vae_cpu_ops.linear_forward(y, x, w, b, n, in, out, a);
}
static void c_lin_b(float *dx, float *dw, float *db, const float *dy, const float *x,
                    const float *w, int n, int in, int out, int adx, int ap) {
    calls[C_LIN_B]++, vae_cpu_ops.linear_backward(dx, dw, db, dy, x, w, n, in, out, adx, ap);
}
static void c_act_f(float *y, size_t n, vae_activation a) {
    calls[C_ACT_F]++, vae_cpu_ops.activation_forward(y, n, a);
}
static void c_act_b(float *dy, const float *y, size_t n, vae_activation a) {
    calls[C_ACT_B]++, vae_cpu_ops.activation_backward(dy, y, n, a);
}
static void c_rep_f(float *z, const float *mu, const float *lv, const float *eps, size_t n) {
    calls[C_REP_F]++, vae_cpu_ops.reparam_forward(z, mu, lv, eps, n);
}
static void c_rep_b(float *dmu, float *dlv, const float *dz, const float *lv, const float *eps,
                    size_t n) {
    calls[C_REP_B]++, vae_cpu_ops.reparam_backward(dmu, dlv, dz, lv, eps, n);
}
static void c_draws(float *z, double *lw, const float *mu, const float *lv, const float *eps,
                    int rows, int latent) {
    calls[C_DRAWS]++, vae_cpu_ops.reparam_draws(z, lw, mu, lv, eps, rows, latent);
}
static void c_kl_f(double *kl, const float *mu, const float *lv, int n, int latent) {
    calls[C_KL_F]++, vae_cpu_ops.kl_forward(kl, mu, lv, n, latent);
}
static void c_kl_b(float *dmu, float *dlv, const float *mu, const float *lv, int n, int latent,
                   const float *scale) {
    calls[C_KL_B]++, vae_cpu_ops.kl_backward(dmu, dlv, mu, lv, n, latent, scale);
}
static void c_recon(const vae_config *c, double *r, float *d, const float *o, const float *x,
                    size_t st, int n, const float *dl, float *ddl, float sc, const float *rs,
                    const uint8_t *mk) {
    calls[C_RECON]++, vae_cpu_ops.recon(c, r, d, o, x, st, n, dl, ddl, sc, rs, mk);
}
static void c_decode(const vae_config *c, float *mean, const float *out, int n) {
    calls[C_DECODE]++, vae_cpu_ops.decode_mean(c, mean, out, n);
}
static void c_adam(vae_adam *a, float *p, float *g) { calls[C_ADAM]++, vae_cpu_ops.adam_step(a, p, g); }

static void test_backend_seam(void) {
    vae_ops counting = vae_cpu_ops;
    counting.name = "counting";
    counting.linear_forward = c_lin_f, counting.linear_backward = c_lin_b;
    counting.activation_forward = c_act_f, counting.activation_backward = c_act_b;
    counting.reparam_forward = c_rep_f, counting.reparam_backward = c_rep_b;
    counting.reparam_draws = c_draws, counting.kl_forward = c_kl_f, counting.kl_backward = c_kl_b;
    counting.recon = c_recon, counting.decode_mean = c_decode, counting.adam_step = c_adam;
    vae_dataset *data = make_data(96, 5); /* 16 values per sample, as small_model wants */
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 2, opt.batch_size = 32;
    vae_error err;
    for (int iwae = 0; iwae <= 2; iwae += 2) {
        opt.iwae_k = iwae;
        vae_model *cpu = small_model(9), *other = small_model(9);
        vae_model_set_ops(other, &counting);
        memset(calls, 0, sizeof calls);
        CHECK(vae_train(cpu, data, NULL, &opt, &err) == VAE_OK, "%s", err.message);
        CHECK(vae_train(other, data, NULL, &opt, &err) == VAE_OK, "%s", err.message);
        CHECK(memcmp(vae_model_params(cpu), vae_model_params(other),
                     vae_model_num_params(cpu) * sizeof(float)) == 0,
              "the counting table's training equals the CPU table's (iwae %d)", iwae);
        float z[4] = {0.1f, -0.2f, 0.3f, 0.4f}, out[32];
        CHECK(vae_decode_all(other, z, NULL, 2, out, &err) == VAE_OK, "%s", err.message);
        /* an MLP's activations are fused into linear_forward; activation_forward is the
         * convolutions' */
        const int used[] = {C_LIN_F, C_LIN_B, C_ACT_B, C_RECON, C_DECODE, C_ADAM,
                            iwae ? C_DRAWS : C_REP_F, iwae ? C_LIN_B : C_REP_B,
                            iwae ? C_LIN_B : C_KL_F, iwae ? C_LIN_B : C_KL_B};
        for (size_t u = 0; u < sizeof used / sizeof *used; u++)
            CHECK(calls[used[u]] > 0, "op %d never went through the table (iwae %d)", used[u], iwae);
        CHECK(calls[C_ADAM] == 2 * 3, "one Adam step per training step: %d", calls[C_ADAM]);
        vae_model_free(cpu), vae_model_free(other);
    }
    vae_dataset_free(data);
}

int main(void) {
    vae_set_num_threads(1);
    RUN(test_presets_and_table);
    RUN(test_config_validation);
    RUN(test_init_like_pytorch);
    RUN(test_rng);
    RUN(test_training_learns_and_is_deterministic);
    RUN(test_divergence_is_caught);
    RUN(test_data_support);
    RUN(test_cancel_and_bad_options);
    RUN(test_evaluate_and_encode);
    RUN(test_adam_first_step);
    RUN(test_adam_no_subnormal_moments);
    RUN(test_all_finite);
    RUN(test_iwae_one_draw_narrow_layers);
    RUN(test_blas_core_choice);
    RUN(test_png_grid);
    RUN(test_backend_seam);
    return CHECK_SUMMARY();
}

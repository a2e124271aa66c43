/* test_cuda.c — the GPU backend against the CPU: the same seed gives the same noise, the same
 * shuffles and so, up to the order of sums, the same gradients, losses and parameters; a
 * resumed GPU run gives the same bits as one that never stopped; divergence, refusal of what
 * the backend does not run, and falling back to the CPU. Without a GPU the GPU tests print
 * "skip" lines (tests/run.sh counts them) and only the refusals are checked.
 *
 * Bounds: the GPU sums in another order than OpenBLAS (cuBLAS's blocking, column sums over 16
 * row groups), so one step's gradients agree to float rounding of the sums, not bit for bit:
 * each tensor within 2e-5 of its largest gradient (fp32 sums of a few hundred terms carry about
 * 1e-6 relative error each; the bound leaves 20x for the terms' cancellation). */
#include "backend/gpu.h"
#include "check.h"
#include "vae.h"

#include <stdint.h>
#include <string.h>

static int have_gpu;
static char gpu_info[256];

#define NEEDS_GPU()                                                                                \
    do {                                                                                           \
        if (!have_gpu) {                                                                           \
            printf("skip %s (%s)\n", __func__, gpu_info);                                          \
            check_skipped = 1;                                                                     \
            return;                                                                                \
        }                                                                                          \
    } while (0)
static int check_skipped;

/* n samples of width dim: smooth patterns in [0,1] with noise; labels 0..classes-1 when
 * classes > 0 */
static vae_dataset *make_labelled(size_t n, int dim, uint64_t seed, vae_likelihood lik,
                                  int classes) {
    vae_dataset *d = calloc(1, sizeof *d);
    d->count = n, d->dim = dim;
    d->x = malloc(sizeof(float) * n * (size_t)dim);
    vae_rng rng = vae_rng_make(seed, 7);
    if (classes) {
        d->labels = malloc(n);
        for (size_t i = 0; i < n; i++) d->labels[i] = (uint8_t)vae_rng_below(&rng, (uint64_t)classes);
    }
    for (size_t i = 0; i < n; i++) {
        float phase = vae_rng_uniform(&rng) * 6.28f;
        for (int j = 0; j < dim; j++) {
            float v = 0.5f + 0.4f * sinf(phase + 0.3f * (float)j) + 0.1f * (vae_rng_uniform(&rng) - 0.5f);
            d->x[i * (size_t)dim + j] = lik == VAE_LIK_POISSON ? floorf(4.0f * v) : v;
        }
    }
    return d;
}

static vae_dataset *make_data(size_t n, int dim, uint64_t seed, vae_likelihood lik) {
    return make_labelled(n, dim, seed, lik, 0);
}

/* Takes about a fifth of the values out (mask 0, value 0), none of a sample's first value. */
static void remove_values(vae_dataset *d, uint64_t seed) {
    const size_t n = d->count * (size_t)d->dim;
    d->mask = malloc(n);
    vae_rng rng = vae_rng_make(seed, 9);
    for (size_t i = 0; i < n; i++) {
        d->mask[i] = i % (size_t)d->dim == 0 || vae_rng_uniform(&rng) > 0.2f;
        if (!d->mask[i]) d->x[i] = 0.0f;
    }
}

static vae_config small_config(int dim, vae_likelihood lik, vae_variance var, vae_activation act) {
    vae_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.input_dim = dim, cfg.latent_dim = 5;
    cfg.n_encoder = 2, cfg.encoder[0] = 48, cfg.encoder[1] = 24;
    cfg.n_decoder = 2, cfg.decoder[0] = 24, cfg.decoder[1] = 40;
    cfg.activation = act, cfg.likelihood = lik, cfg.variance = var;
    cfg.sigma = 0.5f, cfg.variance_floor = 1e-3f;
    return cfg;
}

typedef struct {
    vae_model *model;
    vae_adam *adam;
    vae_epoch_stats last;
    vae_status status;
    char message[512];
} run_result;

static void keep_stats(void *user, const vae_epoch_stats *s) { ((run_result *)user)->last = *s; }

static void run_free(run_result *r) {
    vae_model_free(r->model);
    vae_adam_free(r->adam);
}

/* Trains a fresh model (seed 3) on device with opt's settings. */
static run_result train_on(vae_device device, const vae_config *cfg, const vae_dataset *train,
                           const vae_dataset *test, vae_train_options opt) {
    run_result r;
    memset(&r, 0, sizeof r);
    vae_error err = {{0}};
    r.status = vae_model_create(&r.model, cfg, 3, &err);
    if (r.status != VAE_OK) {
        memcpy(r.message, err.message, sizeof r.message);
        return r;
    }
    vae_adam_create(&r.adam, vae_model_num_params(r.model), &opt.adam, &err);
    opt.device = device;
    opt.resume_adam = r.adam;
    opt.on_epoch = keep_stats;
    opt.user = &r;
    r.status = vae_train(r.model, train, test, &opt, &err);
    memcpy(r.message, err.message, sizeof r.message);
    return r;
}

/* Each tensor of a within bound * (its largest |b|) of b. */
static void check_tensors(const vae_model *m, const float *a, const float *b, double bound,
                          const char *what) {
    for (int t = 0; t < vae_model_num_tensors(m); t++) {
        vae_tensor_info info = vae_model_tensor(m, t);
        size_t size = (size_t)info.rows * info.cols;
        double peak = 0.0, worst = 0.0;
        for (size_t i = 0; i < size; i++) {
            double d = fabs((double)a[info.offset + i] - b[info.offset + i]);
            if (fabs(b[info.offset + i]) > peak) peak = fabs(b[info.offset + i]);
            if (d > worst) worst = d;
        }
        CHECK(worst <= bound * peak + 1e-12, "%s %s: off by %.3g, largest %.3g", what, info.name,
              worst, peak);
    }
}

/* One step on the CPU and on the GPU from the same weights and noise: Adam's first moment after
 * one step is (1 - beta1) g, so it shows the gradients the GPU computed. */
static void one_step_matches(const vae_config *cfg, vae_train_options opt, const char *what) {
    vae_dataset *data = make_labelled(96, cfg->input_dim, 5, cfg->likelihood, cfg->n_classes);
    if (cfg->missing) remove_values(data, 5);
    opt.epochs = 1, opt.batch_size = 96;
    run_result cpu = train_on(VAE_DEVICE_CPU, cfg, data, NULL, opt);
    run_result gpu = train_on(VAE_DEVICE_CUDA, cfg, data, NULL, opt);
    CHECK(cpu.status == VAE_OK && gpu.status == VAE_OK, "%s: %s / %s", what, cpu.message,
          gpu.message);
    if (cpu.status == VAE_OK && gpu.status == VAE_OK) {
        check_tensors(cpu.model, vae_adam_first_moment(gpu.adam), vae_adam_first_moment(cpu.adam),
                      2e-5, what);
        CHECK_CLOSE(gpu.last.train_recon, cpu.last.train_recon, 1e-5, 0.0, what);
        CHECK_CLOSE(gpu.last.train_kl, cpu.last.train_kl, 1e-5, 1e-7, what);
        CHECK(gpu.last.device == VAE_DEVICE_CUDA && cpu.last.device == VAE_DEVICE_CPU,
              "%s: devices reported %d %d", what, gpu.last.device, cpu.last.device);
        CHECK(vae_adam_steps(gpu.adam) == 1, "%s: Adam took %llu steps", what,
              (unsigned long long)vae_adam_steps(gpu.adam));
    }
    run_free(&cpu), run_free(&gpu);
    vae_dataset_free(data);
}

static void test_cuda_gradients_each_likelihood(void) {
    NEEDS_GPU();
    vae_train_options opt;
    vae_train_options_default(&opt);
    struct {
        vae_likelihood lik;
        vae_variance var;
        const char *name;
    } cases[] = {{VAE_LIK_BERNOULLI, VAE_VAR_FIXED, "bernoulli"},
                 {VAE_LIK_GAUSSIAN, VAE_VAR_FIXED, "gaussian fixed"},
                 {VAE_LIK_GAUSSIAN, VAE_VAR_PER_DIM, "gaussian per value"},
                 {VAE_LIK_GAUSSIAN, VAE_VAR_PER_SAMPLE, "gaussian per sample"},
                 {VAE_LIK_POISSON, VAE_VAR_FIXED, "poisson"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vae_config cfg = small_config(37, cases[i].lik, cases[i].var, VAE_ACT_RELU);
        one_step_matches(&cfg, opt, cases[i].name);
    }
}

static void test_cuda_gradients_each_activation(void) {
    NEEDS_GPU();
    vae_train_options opt;
    vae_train_options_default(&opt);
    const vae_activation acts[] = {VAE_ACT_TANH, VAE_ACT_LEAKY_RELU, VAE_ACT_ELU};
    for (int i = 0; i < 3; i++) {
        vae_config cfg = small_config(33, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, acts[i]);
        one_step_matches(&cfg, opt, vae_activation_name(acts[i]));
    }
}

static void test_cuda_gradients_objectives(void) {
    NEEDS_GPU();
    vae_config cfg = small_config(40, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.beta = 0.25f, opt.kl_warmup = 7;
    one_step_matches(&cfg, opt, "beta and warm-up");
    vae_train_options_default(&opt);
    opt.free_bits = 0.3f; /* some of the 5 units fall under it at initialization */
    one_step_matches(&cfg, opt, "free bits");
    vae_train_options_default(&opt);
    cfg.n_classes = 4; /* the label's columns of the first encoder and decoder layers */
    one_step_matches(&cfg, opt, "conditional");
    cfg.n_encoder = 1; /* the label's column in the fused heads kernel */
    one_step_matches(&cfg, opt, "conditional, one encoder layer");
}

/* IWAE training (K draws per input, weighted gradients) on the GPU: the CPU's gradients. */
static void test_cuda_gradients_iwae(void) {
    NEEDS_GPU();
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.iwae_k = 3;
    vae_config a = small_config(36, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    one_step_matches(&a, opt, "iwae bernoulli");
    vae_config b = small_config(27, VAE_LIK_GAUSSIAN, VAE_VAR_PER_DIM, VAE_ACT_TANH);
    one_step_matches(&b, opt, "iwae gaussian per value");
    vae_config c = small_config(25, VAE_LIK_GAUSSIAN, VAE_VAR_PER_SAMPLE, VAE_ACT_ELU);
    c.n_classes = 3, c.n_encoder = 1;
    opt.iwae_k = 5;
    one_step_matches(&c, opt, "iwae conditional, per-sample variance");
}

/* Models of missing values (MIWAE): [x | mask] into the encoder, only observed values in the
 * likelihood; the ELBO and the IWAE bound. */
static void test_cuda_gradients_missing(void) {
    NEEDS_GPU();
    vae_train_options opt;
    vae_train_options_default(&opt);
    vae_config a = small_config(34, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    a.missing = 1;
    one_step_matches(&a, opt, "missing bernoulli");
    vae_config b = small_config(31, VAE_LIK_GAUSSIAN, VAE_VAR_PER_SAMPLE, VAE_ACT_TANH);
    b.missing = 1, b.n_classes = 2, b.n_encoder = 1;
    one_step_matches(&b, opt, "missing, conditional, per-sample variance");
    opt.iwae_k = 4;
    vae_config c = small_config(28, VAE_LIK_GAUSSIAN, VAE_VAR_PER_DIM, VAE_ACT_RELU);
    c.missing = 1;
    one_step_matches(&c, opt, "missing, iwae, per-value variance");
}

/* A small convolutional model on images of rows x rows: two convolutions, mirrored. */
static vae_config conv_config(int rows, vae_likelihood lik, vae_variance var, vae_activation act) {
    vae_config cfg = small_config(rows * rows, lik, var, act);
    cfg.image_channels = 1, cfg.image_rows = cfg.image_cols = rows;
    cfg.n_conv = 2;
    cfg.conv[0].channels = 4, cfg.conv[0].kernel = rows % 2 ? 3 : 4, cfg.conv[0].stride = 2;
    cfg.conv[0].padding = 1;
    cfg.conv[1].channels = 6, cfg.conv[1].kernel = 3, cfg.conv[1].stride = 1;
    cfg.conv[1].padding = 1;
    cfg.n_encoder = 1, cfg.encoder[0] = 16, cfg.n_decoder = 1, cfg.decoder[0] = 16;
    return cfg;
}

/* Convolutional models (Conv2d and ConvTranspose2d as im2col/col2im around the products). */
static void test_cuda_gradients_conv(void) {
    NEEDS_GPU();
    vae_train_options opt;
    vae_train_options_default(&opt);
    vae_config a = conv_config(8, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    one_step_matches(&a, opt, "conv bernoulli 8x8");
    vae_config b = conv_config(7, VAE_LIK_GAUSSIAN, VAE_VAR_PER_SAMPLE, VAE_ACT_TANH);
    one_step_matches(&b, opt, "conv gaussian per sample 7x7");
    opt.iwae_k = 3;
    vae_config c = conv_config(7, VAE_LIK_GAUSSIAN, VAE_VAR_PER_DIM, VAE_ACT_ELU);
    one_step_matches(&c, opt, "conv iwae, per-value variance");
}

/* Several epochs with a short last batch and test data: the runs stay together. */
static void test_cuda_epochs_follow_cpu(void) {
    NEEDS_GPU();
    vae_config cfg = small_config(64, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    vae_dataset *train = make_data(1000, 64, 11, cfg.likelihood);
    vae_dataset *test = make_data(300, 64, 12, cfg.likelihood);
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 3, opt.batch_size = 64, opt.eval_batch_size = 128; /* 1000 = 15 x 64 + 40 */
    run_result cpu = train_on(VAE_DEVICE_CPU, &cfg, train, test, opt);
    run_result gpu = train_on(VAE_DEVICE_CUDA, &cfg, train, test, opt);
    CHECK(cpu.status == VAE_OK && gpu.status == VAE_OK, "%s / %s", cpu.message, gpu.message);
    if (cpu.status == VAE_OK && gpu.status == VAE_OK) {
        check_tensors(cpu.model, vae_model_params(gpu.model), vae_model_params(cpu.model), 1e-3,
                      "after 3 epochs");
        CHECK_CLOSE(gpu.last.train_loss, cpu.last.train_loss, 1e-4, 0.0, "train loss");
        CHECK_CLOSE(gpu.last.test_loss, cpu.last.test_loss, 1e-4, 0.0, "test loss");
        CHECK(gpu.last.launches_per_step > 0 && gpu.last.device_bytes > 0,
              "launches %d, bytes %zu", gpu.last.launches_per_step, gpu.last.device_bytes);
        CHECK(vae_adam_steps(gpu.adam) == 48, "steps %llu",
              (unsigned long long)vae_adam_steps(gpu.adam));
    }
    /* TF32 products (10-bit mantissas) change the path, not where it goes */
    opt.precision = VAE_PRECISION_TF32;
    run_result tf32 = train_on(VAE_DEVICE_CUDA, &cfg, train, test, opt);
    CHECK(tf32.status == VAE_OK, "tf32: %s", tf32.message);
    if (tf32.status == VAE_OK && cpu.status == VAE_OK)
        CHECK_CLOSE(tf32.last.test_loss, cpu.last.test_loss, 1e-2, 0.0, "tf32 test loss");
    run_free(&tf32);
    run_free(&cpu), run_free(&gpu);
    vae_dataset_free(train), vae_dataset_free(test);
}

/* Keeps a copy of the state at the first checkpoint call. */
typedef struct {
    vae_model *model;
    vae_adam *adam;
    vae_train_position position;
    int taken;
} snapshot;

static vae_status take_snapshot(void *user, const vae_model *model, vae_adam *adam,
                                vae_train_position position, vae_error *err) {
    snapshot *s = user;
    if (s->taken) return VAE_OK;
    s->taken = 1, s->position = position;
    vae_model_create(&s->model, vae_model_config(model), 1, err);
    memcpy(vae_model_params(s->model), vae_model_params((vae_model *)model),
           sizeof(float) * vae_model_num_params(model));
    vae_adam_create(&s->adam, vae_adam_num_params(adam), vae_adam_get_options(adam), err);
    memcpy(vae_adam_first_moment(s->adam), vae_adam_first_moment(adam),
           sizeof(float) * vae_adam_num_params(adam));
    memcpy(vae_adam_second_moment(s->adam), vae_adam_second_moment(adam),
           sizeof(float) * vae_adam_num_params(adam));
    vae_adam_set_steps(s->adam, vae_adam_steps(adam));
    return VAE_OK;
}

/* Stopped mid-epoch at a checkpoint and resumed: the same bits as the straight run. */
static void test_cuda_resume_is_bit_exact(void) {
    NEEDS_GPU();
    vae_config cfg = small_config(50, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    vae_dataset *train = make_data(700, 50, 21, cfg.likelihood);
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 2, opt.batch_size = 64, opt.kl_warmup = 20, opt.free_bits = 0.05f;
    run_result straight = train_on(VAE_DEVICE_CUDA, &cfg, train, NULL, opt);

    snapshot snap = {0};
    vae_train_options first = opt;
    first.checkpoint = take_snapshot, first.checkpoint_every = 7;
    vae_model *m;
    vae_error err;
    vae_model_create(&m, &cfg, 3, &err);
    first.device = VAE_DEVICE_CUDA, first.user = &snap;
    vae_status s1 = vae_train(m, train, NULL, &first, &err);
    CHECK(s1 == VAE_OK && snap.taken, "first run: %s", err.message);
    CHECK(snap.position.epoch == 1 && snap.position.step_in_epoch == 7, "snapshot at %d/%llu",
          snap.position.epoch, (unsigned long long)snap.position.step_in_epoch);
    vae_model_free(m);
    if (snap.taken) {
        vae_train_options rest = opt;
        rest.device = VAE_DEVICE_CUDA;
        rest.resume_adam = snap.adam, rest.start = snap.position;
        vae_status s2 = vae_train(snap.model, train, NULL, &rest, &err);
        CHECK(s2 == VAE_OK, "resumed run: %s", err.message);
        CHECK(straight.status == VAE_OK, "%s", straight.message);
        CHECK(memcmp(vae_model_params(snap.model), vae_model_params(straight.model),
                     sizeof(float) * vae_model_num_params(straight.model)) == 0,
              "resumed parameters differ from the straight run's");
        CHECK(memcmp(vae_adam_second_moment(snap.adam), vae_adam_second_moment(straight.adam),
                     sizeof(float) * vae_model_num_params(straight.model)) == 0,
              "resumed moments differ");
    }
    vae_model_free(snap.model), vae_adam_free(snap.adam);
    run_free(&straight);
    vae_dataset_free(train);
}

/* A step size that blows the weights up: the run stops, naming the step, with finite weights. */
static void test_cuda_divergence_keeps_last_good_step(void) {
    NEEDS_GPU();
    vae_config cfg = small_config(30, VAE_LIK_POISSON, VAE_VAR_FIXED, VAE_ACT_RELU);
    vae_dataset *train = make_data(256, 30, 31, cfg.likelihood);
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 2, opt.batch_size = 32, opt.adam.lr = 1e30f;
    run_result r = train_on(VAE_DEVICE_CUDA, &cfg, train, NULL, opt);
    CHECK(r.status == VAE_ERR_DIVERGED, "status %d: %s", r.status, r.message);
    CHECK(strstr(r.message, "diverged at step") != NULL, "message: %s", r.message);
    const float *p = vae_model_params(r.model);
    size_t bad = 0;
    for (size_t i = 0; i < vae_model_num_params(r.model); i++) bad += !isfinite(p[i]);
    CHECK(bad == 0, "%zu parameters are not finite", bad);
    run_free(&r);
    vae_dataset_free(train);
}

/* vae_eval on the GPU: the same draws (the ELBO's, and the importance samples drawn in chunks
 * whose L * chunk is odd, so each chunk starts a new Box–Muller pair), so every per-example
 * term agrees to the rounding of the sums. */
static void eval_matches(const vae_config *cfg, const char *what) {
    vae_model *m;
    vae_error err;
    vae_model_create(&m, cfg, 4, &err);
    vae_dataset *data = make_labelled(37, cfg->input_dim, 51, cfg->likelihood, cfg->n_classes);
    if (cfg->missing) remove_values(data, 51);
    vae_eval_options o;
    vae_eval_options_default(&o);
    o.importance_samples = 45, o.chunk = 7, o.batch = 16, o.seed = 9;
    double cpu[37 * VAE_EVAL_COLUMNS], gpu[37 * VAE_EVAL_COLUMNS];
    vae_eval_result rc, rg;
    vae_status sc = vae_eval(m, data, &o, &rc, cpu, &err);
    CHECK(sc == VAE_OK, "%s: cpu %s", what, err.message);
    o.device = VAE_DEVICE_CUDA;
    vae_status sg = vae_eval(m, data, &o, &rg, gpu, &err);
    CHECK(sg == VAE_OK, "%s: gpu %s", what, err.message);
    for (int i = 0; sc == VAE_OK && sg == VAE_OK && i < 37 * VAE_EVAL_COLUMNS; i++)
        CHECK_CLOSE(gpu[i], cpu[i], 2e-6, 1e-5, what);
    CHECK(rg.active_units == rc.active_units, "%s: active units %d vs %d", what, rg.active_units,
          rc.active_units);
    CHECK_CLOSE(rg.nll_stderr, rc.nll_stderr, 1e-4, 1e-6, what);
    vae_model_free(m);
    vae_dataset_free(data);
}

static void test_cuda_eval_matches_cpu(void) {
    NEEDS_GPU();
    vae_config a = small_config(44, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    eval_matches(&a, "bernoulli");
    vae_config b = small_config(31, VAE_LIK_GAUSSIAN, VAE_VAR_PER_SAMPLE, VAE_ACT_TANH);
    eval_matches(&b, "gaussian per sample");
    vae_config c = small_config(29, VAE_LIK_POISSON, VAE_VAR_FIXED, VAE_ACT_ELU);
    eval_matches(&c, "poisson");
    vae_config d = small_config(30, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    d.n_classes = 5;
    eval_matches(&d, "conditional");
    vae_config e = small_config(33, VAE_LIK_GAUSSIAN, VAE_VAR_PER_DIM, VAE_ACT_RELU);
    e.missing = 1;
    eval_matches(&e, "missing values");
    vae_config f = conv_config(7, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    eval_matches(&f, "convolutional");
}

/* vae_encode_all and vae_decode_all with the model on the GPU: the CPU's values to the rounding
 * of the products' sums (bounded by 1e-5 of each output's largest magnitude). */
static void test_cuda_encode_decode_match_cpu(void) {
    NEEDS_GPU();
    vae_config cfg = small_config(52, VAE_LIK_GAUSSIAN, VAE_VAR_PER_DIM, VAE_ACT_LEAKY_RELU);
    cfg.n_classes = 3;
    vae_model *m;
    vae_error err;
    vae_model_create(&m, &cfg, 6, &err);
    vae_dataset *data = make_labelled(70, 52, 61, cfg.likelihood, 3);
    float mu[2][70 * 5], lv[2][70 * 5], means[2][70 * 52];
    for (int d = 0; d < 2; d++) {
        CHECK(vae_model_set_device(m, d ? VAE_DEVICE_CUDA : VAE_DEVICE_CPU, VAE_PRECISION_FP32, NULL) ==
                  VAE_OK, "set device");
        CHECK(vae_encode_all(m, data->x, data->labels, 70, mu[d], lv[d], &err) == VAE_OK,
              "encode: %s", err.message);
        CHECK(vae_decode_all(m, mu[d], data->labels, 70, means[d], &err) == VAE_OK,
              "decode: %s", err.message);
    }
    double peak[3] = {0}, worst[3] = {0};
    for (int i = 0; i < 70 * 5; i++) {
        peak[0] = fmax(peak[0], fabs(mu[0][i])), worst[0] = fmax(worst[0], fabs(mu[1][i] - mu[0][i]));
        peak[1] = fmax(peak[1], fabs(lv[0][i])), worst[1] = fmax(worst[1], fabs(lv[1][i] - lv[0][i]));
    }
    for (int i = 0; i < 70 * 52; i++)
        peak[2] = fmax(peak[2], fabs(means[0][i])),
        worst[2] = fmax(worst[2], fabs(means[1][i] - means[0][i]));
    for (int k = 0; k < 3; k++)
        CHECK(worst[k] <= 1e-5 * peak[k], "output %d: off by %.3g of %.3g", k, worst[k], peak[k]);
    vae_model_free(m);
    vae_dataset_free(data);
}

/* A collective whose sums change nothing: rank 0 of 2 computes as if alone on its rows. */
static int sum_floats_nothing(void *ctx, float *v, size_t n) {
    (void)ctx, (void)v, (void)n;
    return 0;
}

static int sum_doubles_nothing(void *ctx, double *v, size_t n) {
    (void)ctx, (void)v, (void)n;
    return 0;
}

/* Runs everywhere: what the GPU backend does not do (several processes, imputation) is refused
 * with the reason, and AUTO runs it on the CPU; a device number out of range is refused. */
static void test_cuda_refusals_and_fallback(void) {
    vae_error err;
    vae_config cfg = small_config(12, VAE_LIK_BERNOULLI, VAE_VAR_FIXED, VAE_ACT_RELU);
    vae_dataset *train = make_data(40, 12, 41, VAE_LIK_BERNOULLI);
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 1, opt.batch_size = 20;
    const vae_collective two = {0, 2, sum_floats_nothing, sum_doubles_nothing, NULL};
    opt.collective = &two;
    run_result r = train_on(VAE_DEVICE_CUDA, &cfg, train, NULL, opt);
    CHECK(r.status == VAE_ERR_INVALID_ARGUMENT, "status %d", r.status);
    CHECK(strstr(r.message, have_gpu ? "several processes" : "CUDA") != NULL, "message: %s",
          r.message);
    run_result a = train_on(VAE_DEVICE_AUTO, &cfg, train, NULL, opt);
    CHECK(a.status == VAE_OK && a.last.device == VAE_DEVICE_CPU, "auto: %d %s on %d", a.status,
          a.message, a.last.device);
    /* imputation stays on the CPU: AUTO runs it there, CUDA is refused */
    cfg.missing = 1;
    vae_model *mm;
    vae_model_create(&mm, &cfg, 1, &err);
    vae_dataset *holes = make_data(6, 12, 3, VAE_LIK_BERNOULLI);
    remove_values(holes, 3);
    float filled[6 * 12];
    vae_model_set_device(mm, VAE_DEVICE_AUTO, VAE_PRECISION_FP32, NULL);
    CHECK(vae_impute(mm, holes, 4, 0, 1, filled, &err) == VAE_OK, "auto impute: %s", err.message);
    vae_model_set_device(mm, VAE_DEVICE_CUDA, VAE_PRECISION_FP32, NULL);
    CHECK(vae_impute(mm, holes, 4, 0, 1, filled, &err) == VAE_ERR_INVALID_ARGUMENT &&
              strstr(err.message, have_gpu ? "impute" : "CUDA"),
          "cuda impute: %s", err.message);
    CHECK(vae_model_set_device(mm, (vae_device)7, VAE_PRECISION_FP32, NULL) == VAE_ERR_INVALID_ARGUMENT,
          "device 7 refused");
    vae_model_free(mm);
    vae_dataset_free(holes);
    run_free(&a), run_free(&r);
    vae_dataset_free(train);
    vae_device d;
    CHECK(vae_device_parse("gpu", &d, NULL) == VAE_OK && d == VAE_DEVICE_CUDA, "gpu is cuda");
    CHECK(vae_device_parse("tpu", &d, NULL) == VAE_ERR_INVALID_ARGUMENT, "tpu refused");
}

/* cuBLAS is opened by the first GPU context, not at the program's start (a CPU run of this
 * build kept ~200 MiB of it resident): not mapped before, and every function found when asked. */
static int cublas_mapped(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    int found = 0;
    while (f && fgets(line, sizeof line, f)) found |= strstr(line, "libcublas") != NULL;
    if (f) fclose(f);
    return found;
}

static void test_cublas_opened_on_demand(void) {
    CHECK(!cublas_mapped(), "cuBLAS is mapped before any GPU context");
    char msg[512] = "";
#ifdef VAE_CUDA
    CHECK(vae_gpu_blas_probe(msg) == 0, "%s", msg);
#else /* a build without CUDA says how to get one */
    CHECK(vae_gpu_blas_probe(msg) != 0 && strstr(msg, "CUDA=1"), "%s", msg);
#endif
}

#define RUN_GPU(test)                                                                              \
    do {                                                                                           \
        check_skipped = 0;                                                                         \
        check_test_failed = 0;                                                                     \
        test();                                                                                    \
        if (check_skipped) break;                                                                  \
        if (check_test_failed) check_failed++, printf("not ok %s\n", #test);                       \
        else check_passed++, printf("ok %s\n", #test);                                             \
        fflush(stdout);                                                                            \
    } while (0)

int main(void) {
    have_gpu = vae_device_available(VAE_DEVICE_CUDA, gpu_info, sizeof gpu_info);
    printf("# GPU: %s\n", gpu_info);
    RUN(test_cublas_opened_on_demand); /* first: before any GPU context opens it */
    RUN_GPU(test_cuda_gradients_each_likelihood);
    RUN_GPU(test_cuda_gradients_each_activation);
    RUN_GPU(test_cuda_gradients_objectives);
    RUN_GPU(test_cuda_gradients_iwae);
    RUN_GPU(test_cuda_gradients_missing);
    RUN_GPU(test_cuda_gradients_conv);
    RUN_GPU(test_cuda_epochs_follow_cpu);
    RUN_GPU(test_cuda_resume_is_bit_exact);
    RUN_GPU(test_cuda_divergence_keeps_last_good_step);
    RUN_GPU(test_cuda_eval_matches_cpu);
    RUN_GPU(test_cuda_encode_decode_match_cpu);
    RUN(test_cuda_refusals_and_fallback);
    return CHECK_SUMMARY();
}

/* test_torch_ref.c — the engine against PyTorch: tests/ref/vae_ref.bin, written by
 * tests/ref/make_ref.py, holds weights, inputs, noise, intermediates, loss terms, gradients and
 * the parameters after 3 Adam steps for one small model per activation, one small
 * convolutional model and one of every other kind (Gaussian with fixed, per-value and
 * per-sample variance, Poisson, IWAE with K=5, conditional, missing values with MIWAE K=5).
 * Forward values and gradients must match to 1e-5 relative, parameters after Adam to 1e-4. */
#include "check.h"
#include "vae.h"

#include <stdint.h>
#include <string.h>

#define MAX_RECORDS 1024

typedef struct {
    char name[96];
    size_t n;
    float *data;
} record;

static record records[MAX_RECORDS];
static int n_records;

static int read_exact(FILE *f, void *p, size_t n) { return fread(p, 1, n, f) == n; }

static int load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[8];
    uint32_t count;
    int ok = read_exact(f, magic, 8) && memcmp(magic, "VAEREF01", 8) == 0 &&
             read_exact(f, &count, 4) && count <= MAX_RECORDS;
    for (uint32_t r = 0; ok && r < count; r++) {
        uint16_t len;
        uint32_t ndim, dims[8];
        record *rec = &records[n_records];
        ok = read_exact(f, &len, 2) && len < sizeof rec->name && read_exact(f, rec->name, len) &&
             read_exact(f, &ndim, 4) && ndim <= 8 && read_exact(f, dims, 4 * ndim);
        if (!ok) break;
        rec->name[len] = '\0';
        rec->n = 1;
        for (uint32_t i = 0; i < ndim; i++) rec->n *= dims[i];
        ok = rec->n < (1u << 24) && (rec->data = malloc(rec->n * sizeof(float) + 1)) &&
             read_exact(f, rec->data, rec->n * sizeof(float));
        n_records++;
    }
    fclose(f);
    return ok;
}

static const record *find_quiet(const char *case_name, const char *name) {
    char full[128];
    snprintf(full, sizeof full, "%s/%s", case_name, name);
    for (int i = 0; i < n_records; i++)
        if (strcmp(records[i].name, full) == 0) return &records[i];
    return NULL;
}

static const record *find(const char *case_name, const char *name) {
    const record *r = find_quiet(case_name, name);
    if (!r) printf("#   missing reference tensor %s/%s\n", case_name, name);
    return r;
}

/* Per element |a - b| <= rtol * (|b| + max|b|/10): relative, with a floor at a tenth of the
 * tensor's scale so values that cancel to near zero do not demand more than float32 holds. */
static void compare(const char *what, const float *got, const record *want, size_t n,
                    double rtol) {
    CHECK(want && want->n == n, "%s: reference has %zu values, engine %zu", what,
          want ? want->n : 0, n);
    if (!want || want->n != n) return;
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want->data[i]));
    int bad = 0;
    for (size_t i = 0; i < n && bad < 3; i++) {
        double tol = rtol * (fabs(want->data[i]) + 0.1 * scale);
        if (fabs((double)got[i] - want->data[i]) > tol) {
            bad++;
            CHECK(0, "%s[%zu]: engine %.9g, PyTorch %.9g", what, i, got[i], want->data[i]);
        }
    }
}

static void check_case(const char *case_name) {
    const record *cfgr = find(case_name, "config");
    CHECK(cfgr != NULL, "config");
    if (!cfgr) return;
    const float *c = cfgr->data;
    vae_config cfg = {0};
    int k = 0;
    cfg.input_dim = (int)c[k++];
    cfg.latent_dim = (int)c[k++];
    cfg.n_encoder = (int)c[k++];
    for (int i = 0; i < cfg.n_encoder; i++) cfg.encoder[i] = (int)c[k++];
    cfg.n_decoder = (int)c[k++];
    for (int i = 0; i < cfg.n_decoder; i++) cfg.decoder[i] = (int)c[k++];
    cfg.activation = (vae_activation)(int)c[k++];
    const record *conv = find_quiet(case_name, "conv_config");
    if (conv) { /* image shape, count, then channels, kernel, stride, padding per layer */
        cfg.image_channels = (int)conv->data[0], cfg.image_rows = (int)conv->data[1];
        cfg.image_cols = (int)conv->data[2], cfg.n_conv = (int)conv->data[3];
        for (int i = 0; i < cfg.n_conv; i++) {
            cfg.conv[i].channels = (int)conv->data[4 + 4 * i];
            cfg.conv[i].kernel = (int)conv->data[5 + 4 * i];
            cfg.conv[i].stride = (int)conv->data[6 + 4 * i];
            cfg.conv[i].padding = (int)conv->data[7 + 4 * i];
        }
    }
    const record *kind = find_quiet(case_name, "kind");
    int draws = 0; /* IWAE's K, 0: the ELBO */
    if (kind) { /* likelihood, variance, sigma, floor, classes, missing, IWAE K */
        cfg.likelihood = (vae_likelihood)(int)kind->data[0];
        cfg.variance = (vae_variance)(int)kind->data[1];
        cfg.sigma = kind->data[2], cfg.variance_floor = kind->data[3];
        cfg.n_classes = (int)kind->data[4], cfg.missing = (int)kind->data[5];
        draws = (int)kind->data[6];
    } else if (!conv) {
        CHECK(strcmp(vae_activation_name(cfg.activation), case_name) == 0, "activation %s",
              case_name);
    }

    vae_model *m;
    vae_error err;
    CHECK(vae_model_create(&m, &cfg, 1, &err) == VAE_OK, "create: %s", err.message);
    char name[128];
    for (int t = 0; t < vae_model_num_tensors(m); t++) {
        vae_tensor_info info = vae_model_tensor(m, t);
        snprintf(name, sizeof name, "param/%s", info.name);
        const record *r = find(case_name, name);
        CHECK(r && r->n == (size_t)info.rows * info.cols, "%s shape", info.name);
        if (r && r->n == (size_t)info.rows * info.cols)
            memcpy(vae_model_params(m) + info.offset, r->data, r->n * sizeof(float));
    }
    const record *x = find(case_name, "x"), *eps[3] = {find(case_name, "eps0"),
                                                       find(case_name, "eps1"),
                                                       find(case_name, "eps2")};
    if (!x || !eps[0] || !eps[1] || !eps[2]) {
        CHECK(0, "inputs missing");
        vae_model_free(m);
        return;
    }
    const int batch = (int)(x->n / (size_t)cfg.input_dim);
    const size_t nz = (size_t)batch * cfg.latent_dim;
    const size_t nout = (size_t)batch * (cfg.variance == VAE_VAR_PER_SAMPLE ? 2 : 1) * cfg.input_dim;
    uint8_t labels[64] = {0}, *mask = NULL;
    const record *lr = find_quiet(case_name, "labels"), *mr = find_quiet(case_name, "mask");
    for (int b = 0; lr && b < batch && b < 64; b++) labels[b] = (uint8_t)lr->data[b];
    if (mr && cfg.missing) {
        mask = malloc(mr->n);
        for (size_t i = 0; mask && i < mr->n; i++) mask[i] = mr->data[i] != 0.0f;
    }
    vae_workspace *ws;
    CHECK(vae_workspace_create(&ws, m, batch * (draws > 1 ? draws : 1), &err) == VAE_OK, "workspace");

    vae_loss loss = {0};
    vae_model_zero_grads(m);
    vae_batch rows = {batch, x->data, eps[0]->data, cfg.n_classes ? labels : NULL, mask};
    vae_status s0 = draws > 1 ? vae_iwae_step(m, ws, &rows, draws, &loss, &err)
                              : vae_forward(m, ws, &rows, &loss, &err);
    if (s0 == VAE_OK && draws <= 1) s0 = vae_backward(m, ws, &rows, NULL, &err);
    CHECK(s0 == VAE_OK, "passes: %s", err.message);
    compare("mu", vae_workspace_mu(ws), find(case_name, "mu"), nz, 1e-5);
    compare("logvar", vae_workspace_logvar(ws), find(case_name, "logvar"), nz, 1e-5);
    if (draws <= 1) { /* an IWAE step keeps no single z */
        compare("z", vae_workspace_z(ws), find(case_name, "z"), nz, 1e-5);
        compare("logits", vae_workspace_logits(ws), find(case_name, "logits"), nout, 1e-5);
    }
    float recon = (float)loss.recon, kl = (float)loss.kl, mean = (float)((loss.recon + loss.kl) / batch);
    compare("recon", &recon, find(case_name, "recon_sum"), 1, 1e-5);
    compare("kl", &kl, find(case_name, "kl_sum"), 1, 1e-5);
    compare("loss", &mean, find(case_name, "loss"), 1, 1e-5);
    for (int t = 0; t < vae_model_num_tensors(m); t++) {
        vae_tensor_info info = vae_model_tensor(m, t);
        snprintf(name, sizeof name, "grad/%s", info.name);
        compare(name, vae_model_grads(m) + info.offset, find(case_name, name),
                (size_t)info.rows * info.cols, 1e-5);
    }

    vae_adam *adam;
    vae_adam_options ao;
    vae_adam_options_default(&ao);
    CHECK(vae_adam_create(&adam, vae_model_num_params(m), &ao, &err) == VAE_OK, "adam");
    for (int s = 0; s < 3; s++) {
        vae_model_zero_grads(m);
        rows.eps = eps[s]->data;
        if (draws > 1) {
            vae_iwae_step(m, ws, &rows, draws, NULL, &err);
        } else {
            vae_forward(m, ws, &rows, NULL, &err);
            vae_backward(m, ws, &rows, NULL, &err);
        }
        vae_adam_step(adam, vae_model_params(m), vae_model_grads(m));
    }
    CHECK(vae_adam_steps(adam) == 3, "steps");
    for (int t = 0; t < vae_model_num_tensors(m); t++) {
        vae_tensor_info info = vae_model_tensor(m, t);
        snprintf(name, sizeof name, "adam3/%s", info.name);
        compare(name, vae_model_params(m) + info.offset, find(case_name, name),
                (size_t)info.rows * info.cols, 1e-4);
    }
    vae_adam_free(adam);
    vae_workspace_free(ws);
    vae_model_free(m);
    free(mask);
}

static void test_reference_file_loads(void) {
    const char *path = getenv("VAE_REF_FILE") ? getenv("VAE_REF_FILE") : "tests/ref/vae_ref.bin";
    CHECK(load(path), "cannot read %s (run from the repository root)", path);
    CHECK(n_records > 100, "only %d tensors", n_records);
}
static void test_torch_relu(void) { check_case("relu"); }
static void test_torch_tanh(void) { check_case("tanh"); }
static void test_torch_leaky_relu(void) { check_case("leaky_relu"); }
static void test_torch_elu(void) { check_case("elu"); }
static void test_torch_conv(void) { check_case("conv"); }
static void test_torch_gauss_fixed(void) { check_case("gauss_fixed"); }
static void test_torch_gauss_dim(void) { check_case("gauss_dim"); }
static void test_torch_gauss_sample(void) { check_case("gauss_sample"); }
static void test_torch_poisson(void) { check_case("poisson"); }
static void test_torch_iwae5(void) { check_case("iwae5"); }
static void test_torch_conditional(void) { check_case("conditional"); }
static void test_torch_miwae5(void) { check_case("miwae5"); }

int main(void) {
    RUN(test_reference_file_loads);
    RUN(test_torch_relu);
    RUN(test_torch_tanh);
    RUN(test_torch_leaky_relu);
    RUN(test_torch_elu);
    RUN(test_torch_conv);
    RUN(test_torch_gauss_fixed);
    RUN(test_torch_gauss_dim);
    RUN(test_torch_gauss_sample);
    RUN(test_torch_poisson);
    RUN(test_torch_iwae5);
    RUN(test_torch_conditional);
    RUN(test_torch_miwae5);
    return CHECK_SUMMARY();
}

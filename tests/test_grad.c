/* test_grad.c — every backward pass against central differences of the double reference:
 * each op alone, each activation, the loss terms, and the whole model for every activation. */
#include "check.h"
#include "loss/loss.h"
#include "model/model_internal.h"
#include "ops/ops.h"
#include "ref_ops.h"
#include "vae.h"

#include <stdint.h>
#include <string.h>

#define H 1e-6 /* central-difference step, in double */

static void fill_uniform(vae_rng *rng, float *v, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * vae_rng_uniform(rng);
}

/* Largest |v| — gradients are compared with a floor relative to their tensor's scale. */
static double max_abs(const float *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(v[i]) > m ? fabs(v[i]) : m;
    return m;
}

static void check_grad(const char *what, const float *analytic, const double *numeric, size_t n) {
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fabs(numeric[i]) > scale ? fabs(numeric[i]) : scale;
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++) {
        double tol = 1e-3 * fabs(numeric[i]) + 1e-5 * scale + 1e-9;
        if (fabs(analytic[i] - numeric[i]) > tol) {
            bad++;
            CHECK(0, "%s[%zu]: analytic %.9g, numeric %.9g", what, i, analytic[i], numeric[i]);
        }
    }
    CHECK(scale > 0 || n == 0, "%s: numeric gradient is all zero, the check proves nothing", what);
}

/* ---- linear: L = sum r * (x W^T + b) */
enum { LB = 3, LIN = 5, LOUT = 4 };
static double linear_loss(const float *x, const float *w, const float *b, const float *r) {
    double xd[LB * LIN], wd[LOUT * LIN], bd[LOUT], y[LB * LOUT], s = 0;
    for (int i = 0; i < LB * LIN; i++) xd[i] = x[i];
    for (int i = 0; i < LOUT * LIN; i++) wd[i] = w[i];
    for (int i = 0; i < LOUT; i++) bd[i] = b[i];
    ref_linear(y, xd, wd, bd, LB, LIN, LOUT);
    for (int i = 0; i < LB * LOUT; i++) s += r[i] * y[i];
    return s;
}

static void numeric_wrt(float *v, size_t n, double *out, double (*f)(void *), void *ctx) {
    for (size_t i = 0; i < n; i++) {
        float keep = v[i];
        /* perturb in float: h must survive rounding, so scale it to the value */
        float h = (float)fmax(1e-3 * fabs(keep), 1e-3);
        v[i] = keep + h;
        double hi = f(ctx);
        v[i] = keep - h;
        double lo = f(ctx);
        v[i] = keep;
        out[i] = (hi - lo) / ((double)(keep + h) - (double)(keep - h));
    }
}

typedef struct { float *x, *w, *b, *r; } linear_ctx;
static double linear_f(void *p) {
    linear_ctx *c = p;
    return linear_loss(c->x, c->w, c->b, c->r);
}

static void test_linear_backward(void) {
    vae_rng rng = vae_rng_make(7, 1);
    float x[LB * LIN], w[LOUT * LIN], b[LOUT], r[LB * LOUT], y[LB * LOUT];
    fill_uniform(&rng, x, LB * LIN, -1, 1);
    fill_uniform(&rng, w, LOUT * LIN, -1, 1);
    fill_uniform(&rng, b, LOUT, -1, 1);
    fill_uniform(&rng, r, LB * LOUT, -1, 1);
    /* the fast forward equals the reference */
    op_linear_forward(y, x, w, b, LB, LIN, LOUT, NULL);
    double xd[LB * LIN], wd[LOUT * LIN], bd[LOUT], yd[LB * LOUT];
    for (int i = 0; i < LB * LIN; i++) xd[i] = x[i];
    for (int i = 0; i < LOUT * LIN; i++) wd[i] = w[i];
    for (int i = 0; i < LOUT; i++) bd[i] = b[i];
    ref_linear(yd, xd, wd, bd, LB, LIN, LOUT);
    for (int i = 0; i < LB * LOUT; i++) CHECK_CLOSE(y[i], yd[i], 1e-5, 1e-6, "linear forward");

    float dx[LB * LIN], dw[LOUT * LIN] = {0}, db[LOUT] = {0};
    memset(dx, 0xff, sizeof dx); /* garbage: accumulate_dx = 0 must overwrite it */
    memset(dw, 0xff, sizeof dw), memset(db, 0xff, sizeof db); /* written, not added */
    op_linear_backward(dx, dw, db, r, x, w, LB, LIN, LOUT, 0, 0);
    linear_ctx c = {x, w, b, r};
    double ndx[LB * LIN], ndw[LOUT * LIN], ndb[LOUT];
    numeric_wrt(x, LB * LIN, ndx, linear_f, &c);
    numeric_wrt(w, LOUT * LIN, ndw, linear_f, &c);
    numeric_wrt(b, LOUT, ndb, linear_f, &c);
    check_grad("linear dx", dx, ndx, LB * LIN);
    check_grad("linear dW", dw, ndw, LOUT * LIN);
    check_grad("linear db", db, ndb, LOUT);

    /* accumulation: a second backward adds the same again */
    op_linear_backward(dx, dw, db, r, x, w, LB, LIN, LOUT, 1, 1);
    for (int i = 0; i < LB * LIN; i++) CHECK_CLOSE(dx[i], 2 * ndx[i], 1e-3, 1e-5, "dx accumulates");
    for (int i = 0; i < LOUT; i++) CHECK_CLOSE(db[i], 2 * ndb[i], 1e-3, 1e-5, "db accumulates");
    for (int i = 0; i < LOUT * LIN; i++) CHECK_CLOSE(dw[i], 2 * ndw[i], 1e-3, 1e-5, "dW accumulates");

    /* the fused bias + activation pass equals bias, then activation */
    vae_activation relu = VAE_ACT_RELU, tanh_act = VAE_ACT_TANH;
    float y2[LB * LOUT];
    op_linear_forward(y2, x, w, b, LB, LIN, LOUT, &relu);
    for (int i = 0; i < LB * LOUT; i++) CHECK(y2[i] == (y[i] > 0 ? y[i] : 0), "fused relu");
    op_linear_forward(y2, x, w, b, LB, LIN, LOUT, &tanh_act);
    for (int i = 0; i < LB * LOUT; i++) CHECK(y2[i] == tanhf(y[i]), "fused tanh");
}

/* ---- activations: L = sum r * act(x) */
enum { AN = 64 };
typedef struct { float *x, *r; vae_activation act; } act_ctx;
static double act_f(void *p) {
    act_ctx *c = p;
    double y[AN], s = 0;
    for (int i = 0; i < AN; i++) y[i] = c->x[i];
    ref_activation(y, AN, c->act, NULL);
    for (int i = 0; i < AN; i++) s += c->r[i] * y[i];
    return s;
}

static void check_activation(vae_activation act) {
    vae_rng rng = vae_rng_make(11, (uint64_t)act);
    float x[AN], r[AN], y[AN], dy[AN];
    fill_uniform(&rng, x, AN, -3, 3);
    fill_uniform(&rng, r, AN, -1, 1);
    for (int i = 0; i < AN; i++)
        if (fabsf(x[i]) < 0.01f) x[i] = 0.5f; /* keep finite differences off the kink */
    memcpy(y, x, sizeof x);
    op_activation_forward(y, AN, act);
    double yd[AN];
    for (int i = 0; i < AN; i++) yd[i] = x[i];
    ref_activation(yd, AN, act, NULL);
    for (int i = 0; i < AN; i++) CHECK_CLOSE(y[i], yd[i], 1e-6, 1e-7, vae_activation_name(act));
    memcpy(dy, r, sizeof r);
    op_activation_backward(dy, y, AN, act);
    act_ctx c = {x, r, act};
    double num[AN];
    numeric_wrt(x, AN, num, act_f, &c);
    check_grad(vae_activation_name(act), dy, num, AN);
}

static void test_activation_relu(void) { check_activation(VAE_ACT_RELU); }
static void test_activation_tanh(void) { check_activation(VAE_ACT_TANH); }
static void test_activation_leaky_relu(void) { check_activation(VAE_ACT_LEAKY_RELU); }
static void test_activation_elu(void) { check_activation(VAE_ACT_ELU); }

/* ---- BCE with logits: L = sum_b recon[b] */
enum { BB = 3, BD = 7 };
typedef struct { float *l, *x; } bce_ctx;
static double bce_f(void *p) {
    bce_ctx *c = p;
    double s = 0;
    for (int i = 0; i < BB * BD; i++) s += ref_bce_logits(c->l[i], c->x[i]);
    return s;
}

static void test_bce_logits(void) {
    vae_rng rng = vae_rng_make(13, 0);
    float l[BB * BD], x[BB * BD], dl[BB * BD];
    fill_uniform(&rng, l, BB * BD, -6, 6);
    fill_uniform(&rng, x, BB * BD, 0, 1);
    double recon[BB];
    op_bce_logits(recon, dl, l, x, BD, BB, BD, 1.0f);
    for (int b = 0; b < BB; b++) {
        double want = 0;
        for (int d = 0; d < BD; d++) want += ref_bce_logits(l[b * BD + d], x[b * BD + d]);
        CHECK_CLOSE(recon[b], want, 1e-6, 1e-6, "bce forward");
    }
    bce_ctx c = {l, x};
    double num[BB * BD];
    numeric_wrt(l, BB * BD, num, bce_f, &c);
    check_grad("bce dlogits", dl, num, BB * BD);

    /* stability: huge logits stay finite and exact; l = 0 costs log 2 per pixel */
    float big[4] = {100.f, -100.f, 0.f, 88.f}, t[4] = {0.f, 1.f, 0.5f, 1.f};
    double r4[1];
    op_bce_logits(r4, NULL, big, t, 4, 1, 4, 1.0f);
    CHECK_CLOSE(r4[0], 100.0 + 100.0 + log(2.0) + 0.0, 1e-6, 1e-6, "bce at extreme logits");
    float p[4];
    op_sigmoid(p, big, 4);
    CHECK(p[0] == 1.0f && p[1] >= 0.0f && p[1] < 1e-30f && p[2] == 0.5f, "sigmoid %g %g %g", p[0],
          p[1], p[2]);
}

/* ---- KL and the reparameterization */
enum { KB = 4, KL_ = 3 };
typedef struct { float *mu, *lv, *eps, *r; int which; } kl_ctx;
static double kl_f(void *p) {
    kl_ctx *c = p;
    double s = 0;
    for (int b = 0; b < KB; b++) {
        double mu[KL_], lv[KL_];
        for (int j = 0; j < KL_; j++) mu[j] = c->mu[b * KL_ + j], lv[j] = c->lv[b * KL_ + j];
        s += ref_kl(mu, lv, KL_);
        /* plus a linear functional of z, to test the reparameterization jointly */
        for (int j = 0; j < KL_; j++)
            s += c->r[b * KL_ + j] * (mu[j] + exp(0.5 * lv[j]) * c->eps[b * KL_ + j]);
    }
    return s;
}

static void test_kl_and_reparam(void) {
    vae_rng rng = vae_rng_make(17, 0);
    float mu[KB * KL_], lv[KB * KL_], eps[KB * KL_], r[KB * KL_], z[KB * KL_];
    fill_uniform(&rng, mu, KB * KL_, -2, 2);
    fill_uniform(&rng, lv, KB * KL_, -3, 2);
    vae_rng_normal(&rng, eps, KB * KL_);
    fill_uniform(&rng, r, KB * KL_, -1, 1);
    double kl[KB];
    op_kl_forward(kl, mu, lv, KB, KL_);
    for (int b = 0; b < KB; b++) {
        double m[KL_], v[KL_];
        for (int j = 0; j < KL_; j++) m[j] = mu[b * KL_ + j], v[j] = lv[b * KL_ + j];
        CHECK_CLOSE(kl[b], ref_kl(m, v, KL_), 1e-6, 1e-7, "kl forward");
        CHECK(kl[b] >= 0, "KL is never negative: %g", kl[b]);
    }
    op_reparam_forward(z, mu, lv, eps, KB * KL_);
    for (int i = 0; i < KB * KL_; i++)
        CHECK_CLOSE(z[i], mu[i] + exp(0.5 * lv[i]) * eps[i], 1e-6, 1e-6, "reparam forward");
    float dmu[KB * KL_] = {0}, dlv[KB * KL_] = {0};
    op_reparam_backward(dmu, dlv, r, lv, eps, KB * KL_);
    const float ones[KL_] = {1, 1, 1};
    op_kl_backward(dmu, dlv, mu, lv, KB, KL_, ones);
    kl_ctx c = {mu, lv, eps, r, 0};
    double nmu[KB * KL_], nlv[KB * KL_];
    numeric_wrt(mu, KB * KL_, nmu, kl_f, &c);
    numeric_wrt(lv, KB * KL_, nlv, kl_f, &c);
    check_grad("d/dmu (kl + r.z)", dmu, nmu, KB * KL_);
    check_grad("d/dlogvar (kl + r.z)", dlv, nlv, KB * KL_);

    /* KL of q = p is zero */
    float zero[KL_] = {0};
    double k0;
    op_kl_forward(&k0, zero, zero, 1, KL_);
    CHECK(k0 == 0.0, "KL(N(0,1)||N(0,1)) = %g", k0);
}

/* ---- the whole model, every parameter, in double central differences */
static const uint8_t LABELS[4] = {2, 0, 1, 2};

/* every third value of the batch missing, at places that differ between samples */
static const uint8_t MASK[4 * 7] = {1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1,
                                    1, 0, 1, 1, 0, 1, 1, 1, 0, 1};

/* A training pass's forward leaves the likelihood's gradient for the backward: the same loss
 * and gradients, bit for bit, as the public forward and backward (in the model's grads, from
 * `loss`); and a forward on other data in between drops it (its backward is that data's). */
static void check_fused_forward(vae_model *m, vae_workspace *ws, const vae_batch *batch,
                                const vae_objective *objective, const vae_loss *loss) {
    const size_t n = vae_model_num_params(m), bytes = n * sizeof(float);
    float *want = malloc(bytes);
    memcpy(want, vae_model_grads(m), bytes);
    vae_error err;
    vae_loss fused = {0};
    vae_model_zero_grads(m);
    CHECK(vae_forward_for_backward(m, ws, batch, &fused, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_backward(m, ws, batch, objective, &err) == VAE_OK, "%s", err.message);
    CHECK(fused.recon == loss->recon && fused.kl == loss->kl, "fused loss %.9g %.9g",
          fused.recon, loss->recon);
    CHECK(memcmp(want, vae_model_grads(m), bytes) == 0, "fused forward: other gradients");

    const int dim = vae_model_config(m)->input_dim;
    float *x2 = malloc(sizeof(float) * (size_t)batch->n * dim);
    for (int i = 0; i < batch->n * dim; i++) x2[i] = batch->x[i] * 0.5f + 0.25f;
    vae_batch other = *batch;
    other.x = x2;
    vae_model_zero_grads(m); /* the public pass on the other data */
    CHECK(vae_forward(m, ws, &other, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_backward(m, ws, &other, objective, &err) == VAE_OK, "%s", err.message);
    memcpy(want, vae_model_grads(m), bytes);
    vae_model_zero_grads(m); /* fused on the batch, then a plain forward on the other data */
    CHECK(vae_forward_for_backward(m, ws, batch, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_forward(m, ws, &other, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_backward(m, ws, &other, objective, &err) == VAE_OK, "%s", err.message);
    CHECK(memcmp(want, vae_model_grads(m), bytes) == 0, "a later forward drops the fused gradient");
    free(want), free(x2);
}

/* Batch threads' views (model_internal.h): the batch cut into slices of one row, none and
 * the rest, each run on a view of one whole workspace, then the parameters' gradients over the
 * whole batch: the same loss and gradients as the public pass (in the model's grads on entry)
 * within the products' rounding; views out of order or out of the whole refused. */
static void check_views(vae_model *m, const vae_batch *batch, int iwae, int k,
                        const vae_objective *objective, const vae_loss *loss) {
    const size_t n = vae_model_num_params(m);
    const int dim = vae_model_config(m)->input_dim, latent = vae_model_config(m)->latent_dim;
    float *got = calloc(n, sizeof(float));
    vae_workspace *whole, *views[3];
    vae_error err;
    CHECK(vae_workspace_create(&whole, m, batch->n * k, &err) == VAE_OK, "%s", err.message);
    vae_workspace_set_grads(whole, got);
    const int cut[4] = {0, 1, 1, batch->n};
    vae_loss sum = {0};
    for (int i = 0; i < 3; i++) {
        const int lo = cut[i], rows = cut[i + 1] - lo;
        const vae_batch part = {rows, batch->x + (size_t)lo * dim,
                                batch->eps + (size_t)lo * k * latent,
                                batch->labels ? batch->labels + lo : NULL,
                                batch->mask ? batch->mask + (size_t)lo * dim : NULL};
        CHECK(vae_workspace_view(&views[i], whole, batch->n * k, &err) == VAE_OK &&
                  vae_workspace_view_at(views[i], lo * k, rows * k, batch->n, &err) == VAE_OK,
              "view %d: %s", i, err.message);
        vae_status s = !rows ? VAE_OK
                       : iwae  ? vae_iwae_step(m, views[i], &part, k, &sum, &err)
                               : vae_forward_for_backward(m, views[i], &part, &sum, &err);
        if (s == VAE_OK && rows && !iwae) s = vae_backward(m, views[i], &part, objective, &err);
        CHECK(s == VAE_OK, "slice %d: %s", i, err.message);
    }
    vae_workspace *swapped[3] = {views[0], views[2], views[1]};
    CHECK(vae_view_param_grads(m, whole, swapped, 3, batch, k, &err) == VAE_ERR_INVALID_ARGUMENT,
          "views out of order refused");
    CHECK(vae_workspace_view_at(views[2], 1, batch->n * k, batch->n, &err) ==
              VAE_ERR_INVALID_ARGUMENT, "a view past its whole refused");
    CHECK(vae_view_param_grads(m, whole, views, 3, batch, k, &err) == VAE_OK, "%s", err.message);
    CHECK_CLOSE(sum.recon + sum.kl, loss->recon + loss->kl, 1e-6, 0, "the slices' loss");
    const float *want = vae_model_grads(m);
    const double scale = max_abs(want, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += fabs(got[i] - want[i]) > 1e-5 * fabs(want[i]) + 1e-6 * scale;
    CHECK(bad == 0 && scale > 0, "%zu of %zu gradients of the views differ", bad, n);
    for (int i = 0; i < 3; i++) vae_workspace_free(views[i]);
    vae_workspace_free(whole);
    free(got);
}

static void check_model_config(vae_config cfg, vae_objective objective) {
    const vae_activation act = cfg.activation;
    ref_labels = LABELS;
    ref_mask = cfg.missing ? MASK : NULL;
    vae_model *m;
    vae_error err;
    CHECK(vae_model_create(&m, &cfg, 3 + act, &err) == VAE_OK, "create: %s", err.message);
    enum { B = 4 };
    vae_rng rng = vae_rng_make(19, (uint64_t)act);
    float x[B * 7], eps[B * 3];
    fill_uniform(&rng, x, B * 7, 0, 1);
    if (cfg.likelihood == VAE_LIK_GAUSSIAN) fill_uniform(&rng, x, B * 7, -1.5f, 2.5f);
    if (cfg.likelihood == VAE_LIK_POISSON)
        for (int i = 0; i < B * 7; i++) x[i] = (float)(int)(6 * vae_rng_uniform(&rng));
    vae_rng_normal(&rng, eps, B * 3);
    /* wider weights than the init so activations leave their linear range */
    size_t n = vae_model_num_params(m);
    float *p = vae_model_params(m);
    for (size_t i = 0; i < n; i++) p[i] *= cfg.likelihood == VAE_LIK_POISSON ? 0.7f : 2.0f;
    int lv = vae_model_find_tensor(m, "likelihood.logvar"); /* learned variances off their init */
    for (int d = 0; lv >= 0 && d < 7; d++) p[vae_model_tensor(m, lv).offset + d] = 0.3f * d - 1.0f;

    vae_workspace *ws;
    CHECK(vae_workspace_create(&ws, m, B, &err) == VAE_OK, "workspace");
    const vae_batch batch = {B, x, eps, LABELS, cfg.missing ? MASK : NULL};
    vae_loss loss = {0};
    vae_model_zero_grads(m);
    CHECK(vae_forward(m, ws, &batch, &loss, &err) == VAE_OK, "forward: %s", err.message);
    CHECK(vae_backward(m, ws, &batch, &objective, &err) == VAE_OK, "backward: %s", err.message);
    ref_kl_weight = objective.kl_weight, ref_free_bits = objective.free_bits;
    if (objective.free_bits > 0) { /* the test means something only if the floor splits the units */
        int below = 0, above = 0;
        for (int j = 0; j < 3; j++) {
            double unit = 0;
            for (int b = 0; b < B; b++) {
                double mu = vae_workspace_mu(ws)[b * 3 + j], lv = vae_workspace_logvar(ws)[b * 3 + j];
                unit += -0.5 * (1 + lv - mu * mu - exp(lv)) / B;
            }
            below += unit < objective.free_bits, above += unit > objective.free_bits;
        }
        CHECK(below > 0 && above > 0, "free bits: %d units below, %d above", below, above);
    }
    CHECK(loss.count == B, "count %zu", loss.count);

    double *pd = malloc(sizeof(double) * n), *num = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) pd[i] = p[i];
    double recon, kl;
    double ref = ref_model_loss(m, pd, x, eps, B, &recon, &kl, NULL);
    CHECK_CLOSE(loss.recon, recon, 1e-5, 1e-6, "model recon vs double reference");
    CHECK_CLOSE(loss.kl, kl, 1e-5, 1e-6, "model kl vs double reference");
    if (objective.kl_weight == 1 && objective.free_bits == 0)
        CHECK_CLOSE((loss.recon + loss.kl) / B, ref, 1e-5, 1e-6, "model loss");

    size_t skipped = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = pd[i];
        uint64_t pat_hi = 0, pat_lo = 0;
        pd[i] = keep + H;
        double hi = ref_model_loss(m, pd, x, eps, B, NULL, NULL, &pat_hi);
        pd[i] = keep - H;
        double lo = ref_model_loss(m, pd, x, eps, B, NULL, NULL, &pat_lo);
        pd[i] = keep;
        if (pat_hi != pat_lo) { /* crossed a kink: the difference quotient means nothing */
            num[i] = vae_model_grads(m)[i];
            skipped++;
            continue;
        }
        num[i] = (hi - lo) / (2 * H);
    }
    char what[64];
    for (int t = 0; t < vae_model_num_tensors(m); t++) {
        vae_tensor_info info = vae_model_tensor(m, t);
        snprintf(what, sizeof what, "%s %s d/%s", vae_likelihood_name(cfg.likelihood),
                 vae_activation_name(act), info.name);
        check_grad(what, vae_model_grads(m) + info.offset, num + info.offset,
                   (size_t)info.rows * info.cols);
    }
    CHECK(skipped * 50 < n, "%zu of %zu parameters skipped at kinks", skipped, n);
    CHECK(max_abs(vae_model_grads(m), n) > 0, "gradients are all zero");
    if (objective.free_bits == 0) check_views(m, &batch, 0, 1, &objective, &loss);
    check_fused_forward(m, ws, &batch, &objective, &loss);
    ref_kl_weight = 1, ref_free_bits = 0, ref_mask = NULL;
    free(pd), free(num);
    vae_workspace_free(ws);
    vae_model_free(m);
}

static const vae_config SMALL = {.input_dim = 7, .latent_dim = 3, .n_encoder = 2, .encoder = {6, 5},
                                 .n_decoder = 2, .decoder = {5, 6}};

static void check_model_objective(vae_activation act, vae_objective objective) {
    vae_config cfg = SMALL;
    cfg.activation = act;
    check_model_config(cfg, objective);
}

static void check_model(vae_activation act) { check_model_objective(act, (vae_objective){1, 0}); }

static void check_likelihood(vae_likelihood lik, vae_variance var) {
    vae_config cfg = SMALL;
    cfg.activation = VAE_ACT_TANH, cfg.likelihood = lik, cfg.variance = var;
    cfg.sigma = 0.7f, cfg.variance_floor = 0.05f;
    check_model_config(cfg, (vae_objective){1, 0});
}
static void test_model_grad_gaussian_fixed(void) { check_likelihood(VAE_LIK_GAUSSIAN, VAE_VAR_FIXED); }
static void test_model_grad_gaussian_dim(void) { check_likelihood(VAE_LIK_GAUSSIAN, VAE_VAR_PER_DIM); }
static void test_model_grad_gaussian_sample(void) {
    check_likelihood(VAE_LIK_GAUSSIAN, VAE_VAR_PER_SAMPLE);
}
static void test_model_grad_poisson(void) { check_likelihood(VAE_LIK_POISSON, VAE_VAR_FIXED); }

static void test_model_grad_relu(void) { check_model(VAE_ACT_RELU); }
static void test_model_grad_tanh(void) { check_model(VAE_ACT_TANH); }
static void test_model_grad_leaky_relu(void) { check_model(VAE_ACT_LEAKY_RELU); }
static void test_model_grad_elu(void) { check_model(VAE_ACT_ELU); }
/* beta-VAE / warm-up weight, and free bits at a level that some units are below */
static void test_model_grad_beta(void) { check_model_objective(VAE_ACT_TANH, (vae_objective){0.3f, 0}); }
static void test_model_grad_free_bits(void) {
    check_model_objective(VAE_ACT_ELU, (vae_objective){2.5f, 0.9f});
}

/* The batch MEAN is the objective: the same sample twice has the gradient of it once. */
static void test_gradient_is_batch_mean(void) {
    vae_config cfg;
    vae_error err;
    vae_config_preset(&cfg, "seed", 10, &err);
    vae_model *m;
    vae_model_create(&m, &cfg, 5, &err);
    vae_workspace *ws;
    vae_workspace_create(&ws, m, 2, &err);
    vae_rng rng = vae_rng_make(23, 0);
    float x[20], eps[4];
    fill_uniform(&rng, x, 10, 0, 1);
    memcpy(x + 10, x, 10 * sizeof *x);
    vae_rng_normal(&rng, eps, 2);
    memcpy(eps + 2, eps, 2 * sizeof *eps);
    size_t n = vae_model_num_params(m);
    float *g1 = malloc(n * sizeof *g1);
    vae_model_zero_grads(m);
    vae_batch batch = {.n = 1, .x = x, .eps = eps};
    vae_forward(m, ws, &batch, NULL, &err);
    vae_backward(m, ws, &batch, NULL, &err);
    memcpy(g1, vae_model_grads(m), n * sizeof *g1);
    vae_model_zero_grads(m);
    batch.n = 2;
    vae_forward(m, ws, &batch, NULL, &err);
    vae_backward(m, ws, &batch, NULL, &err);
    for (size_t i = 0; i < n; i++) CHECK_CLOSE(vae_model_grads(m)[i], g1[i], 1e-5, 1e-7, "mean");
    free(g1);
    vae_workspace_free(ws);
    vae_model_free(m);
}

/* Training on the importance-weighted bound: every parameter against central differences of
 * the double reference, for a Bernoulli and a per-dimension-variance Gaussian model. */
static void check_iwae_cfg(vae_likelihood lik, int k, int classes, int missing) {
    vae_config cfg = SMALL;
    cfg.n_classes = classes, cfg.missing = missing;
    ref_labels = LABELS;
    ref_mask = missing ? MASK : NULL;
    cfg.activation = VAE_ACT_TANH, cfg.likelihood = lik;
    cfg.variance = VAE_VAR_PER_DIM, cfg.variance_floor = 0.05f;
    vae_model *m;
    vae_error err;
    vae_model_create(&m, &cfg, 7, &err);
    enum { B = 3 };
    vae_rng rng = vae_rng_make(29, (uint64_t)k);
    float x[B * 7], *eps = malloc(sizeof(float) * B * k * 3);
    fill_uniform(&rng, x, B * 7, lik == VAE_LIK_GAUSSIAN ? -1.0f : 0.0f, 1);
    vae_rng_normal(&rng, eps, (size_t)B * k * 3);
    size_t n = vae_model_num_params(m);
    float *p = vae_model_params(m);
    for (size_t i = 0; i < n; i++) p[i] *= 1.5f;
    vae_workspace *ws;
    vae_workspace_create(&ws, m, B * k, &err);
    const vae_batch batch = {B, x, eps, LABELS, missing ? MASK : NULL};
    vae_loss loss = {0};
    vae_model_zero_grads(m);
    CHECK(vae_iwae_step(m, ws, &batch, k, &loss, &err) == VAE_OK, "iwae step: %s", err.message);
    double *pd = malloc(sizeof(double) * n), *num = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) pd[i] = p[i];
    CHECK_CLOSE(loss.recon / B, ref_iwae_loss(m, pd, x, eps, B, k, NULL), 1e-5, 1e-6, "bound");
    size_t skipped = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = pd[i];
        uint64_t pat_hi = 0, pat_lo = 0;
        pd[i] = keep + H;
        double hi = ref_iwae_loss(m, pd, x, eps, B, k, &pat_hi);
        pd[i] = keep - H;
        double lo = ref_iwae_loss(m, pd, x, eps, B, k, &pat_lo);
        pd[i] = keep;
        num[i] = (hi - lo) / (2 * H);
        if (pat_hi != pat_lo) num[i] = vae_model_grads(m)[i], skipped++;
    }
    char what[64];
    for (int t = 0; t < vae_model_num_tensors(m); t++) {
        vae_tensor_info info = vae_model_tensor(m, t);
        snprintf(what, sizeof what, "iwae k=%d %s d/%s", k, vae_likelihood_name(lik), info.name);
        check_grad(what, vae_model_grads(m) + info.offset, num + info.offset,
                   (size_t)info.rows * info.cols);
    }
    CHECK(skipped == 0, "tanh has no kinks: %zu skipped", skipped);
    check_views(m, &batch, 1, k, NULL, &loss);
    ref_mask = NULL;
    free(pd), free(num), free(eps);
    vae_workspace_free(ws);
    vae_model_free(m);
}

static void check_iwae(vae_likelihood lik, int k, int classes) { check_iwae_cfg(lik, k, classes, 0); }
/* MIWAE: missing values masked out of the likelihood, the mask an input of the encoder */
static void test_miwae_grad_bernoulli(void) { check_iwae_cfg(VAE_LIK_BERNOULLI, 4, 0, 1); }
static void test_miwae_grad_gaussian(void) { check_iwae_cfg(VAE_LIK_GAUSSIAN, 3, 3, 1); }
static void test_model_grad_missing(void) {
    vae_config cfg = SMALL;
    cfg.activation = VAE_ACT_TANH, cfg.missing = 1, cfg.likelihood = VAE_LIK_GAUSSIAN;
    cfg.variance = VAE_VAR_PER_SAMPLE, cfg.variance_floor = 0.05f;
    check_model_config(cfg, (vae_objective){1, 0});
}

static void test_iwae_grad_bernoulli(void) { check_iwae(VAE_LIK_BERNOULLI, 5, 0); }
static void test_iwae_grad_gaussian(void) { check_iwae(VAE_LIK_GAUSSIAN, 4, 0); }
static void test_iwae_grad_k1(void) { check_iwae(VAE_LIK_BERNOULLI, 1, 0); }
static void test_iwae_grad_conditional(void) { check_iwae(VAE_LIK_BERNOULLI, 3, 3); }
/* a conditional VAE: the one-hot label joins encoder and decoder inputs */
static void test_model_grad_conditional(void) {
    vae_config cfg = SMALL;
    cfg.activation = VAE_ACT_ELU, cfg.n_classes = 3;
    check_model_config(cfg, (vae_objective){1, 0});
}

/* A convolutional VAE: 1x8x8 images, Conv2d 3x4s2p1 (8 -> 4) and 4x3s1p1 (4 -> 4), dense
 * layers, then the decoder's mirror of ConvTranspose2d layers; every parameter. */
static void check_conv_model(vae_likelihood lik, vae_variance var) {
    vae_config cfg = {.input_dim = 64, .latent_dim = 2, .n_encoder = 1, .encoder = {6},
                      .n_decoder = 1, .decoder = {5}, .activation = VAE_ACT_TANH,
                      .likelihood = lik, .variance = var, .variance_floor = 0.05f,
                      .n_conv = 2, .image_channels = 1, .image_rows = 8, .image_cols = 8};
    cfg.conv[0].channels = 3, cfg.conv[0].kernel = 4, cfg.conv[0].stride = 2, cfg.conv[0].padding = 1;
    cfg.conv[1].channels = 4, cfg.conv[1].kernel = 3, cfg.conv[1].stride = 1, cfg.conv[1].padding = 1;
    vae_model *m;
    vae_error err;
    CHECK(vae_model_create(&m, &cfg, 11, &err) == VAE_OK, "create: %s", err.message);
    if (!m) return;
    enum { B = 2 };
    vae_rng rng = vae_rng_make(31, (uint64_t)lik);
    float x[B * 64], eps[B * 2];
    fill_uniform(&rng, x, B * 64, 0, 1);
    vae_rng_normal(&rng, eps, B * 2);
    size_t n = vae_model_num_params(m);
    float *p = vae_model_params(m);
    for (size_t i = 0; i < n; i++) p[i] *= 1.5f;
    vae_workspace *ws;
    vae_workspace_create(&ws, m, B, &err);
    vae_loss loss = {0};
    vae_model_zero_grads(m);
    const vae_batch batch = {.n = B, .x = x, .eps = eps};
    CHECK(vae_forward(m, ws, &batch, &loss, &err) == VAE_OK &&
              vae_backward(m, ws, &batch, NULL, &err) == VAE_OK,
          "passes: %s", err.message);
    double *pd = malloc(sizeof(double) * n), *num = malloc(sizeof(double) * n);
    for (size_t i = 0; i < n; i++) pd[i] = p[i];
    double recon, kl;
    double ref = ref_model_loss(m, pd, x, eps, B, &recon, &kl, NULL);
    CHECK_CLOSE((loss.recon + loss.kl) / B, ref, 1e-5, 1e-6, "conv model loss vs reference");
    for (size_t i = 0; i < n; i++) {
        double keep = pd[i];
        pd[i] = keep + H;
        double hi = ref_model_loss(m, pd, x, eps, B, NULL, NULL, NULL);
        pd[i] = keep - H;
        double lo = ref_model_loss(m, pd, x, eps, B, NULL, NULL, NULL);
        pd[i] = keep;
        num[i] = (hi - lo) / (2 * H);
    }
    char what[64];
    for (int t = 0; t < vae_model_num_tensors(m); t++) {
        vae_tensor_info info = vae_model_tensor(m, t);
        snprintf(what, sizeof what, "conv %s d/%s", vae_likelihood_name(lik), info.name);
        check_grad(what, vae_model_grads(m) + info.offset, num + info.offset,
                   (size_t)info.rows * info.cols);
    }
    vae_tensor_info w0 = vae_model_tensor(m, 0);
    CHECK(w0.ndims == 4 && w0.dims[0] == 3 && w0.dims[1] == 1 && w0.dims[2] == 4,
          "encoder.conv.0.weight is (3, 1, 4, 4): %d %d %d %d", w0.dims[0], w0.dims[1], w0.dims[2], w0.dims[3]);
    check_views(m, &batch, 0, 1, NULL, &loss);
    free(pd), free(num);
    vae_workspace_free(ws);
    vae_model_free(m);
}

static void test_conv_model_bernoulli(void) { check_conv_model(VAE_LIK_BERNOULLI, VAE_VAR_FIXED); }
static void test_conv_model_gaussian(void) { check_conv_model(VAE_LIK_GAUSSIAN, VAE_VAR_PER_SAMPLE); }

int main(void) {
    RUN(test_linear_backward);
    RUN(test_activation_relu);
    RUN(test_activation_tanh);
    RUN(test_activation_leaky_relu);
    RUN(test_activation_elu);
    RUN(test_bce_logits);
    RUN(test_kl_and_reparam);
    RUN(test_model_grad_relu);
    RUN(test_model_grad_tanh);
    RUN(test_model_grad_leaky_relu);
    RUN(test_model_grad_elu);
    RUN(test_gradient_is_batch_mean);
    RUN(test_model_grad_beta);
    RUN(test_model_grad_free_bits);
    RUN(test_model_grad_gaussian_fixed);
    RUN(test_model_grad_gaussian_dim);
    RUN(test_model_grad_gaussian_sample);
    RUN(test_model_grad_poisson);
    RUN(test_iwae_grad_bernoulli);
    RUN(test_iwae_grad_gaussian);
    RUN(test_iwae_grad_k1);
    RUN(test_iwae_grad_conditional);
    RUN(test_model_grad_conditional);
    RUN(test_conv_model_bernoulli);
    RUN(test_miwae_grad_bernoulli);
    RUN(test_miwae_grad_gaussian);
    RUN(test_model_grad_missing);
    RUN(test_conv_model_gaussian);
    return CHECK_SUMMARY();
}

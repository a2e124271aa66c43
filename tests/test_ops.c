/* test_ops.c — the fast paths against plain references: the vectorized exp and log1p against
 * libm over their whole domains, the sigmoid, and the thread count's (non-)effect on results. */
#include "check.h"
#include "ops/ops.h"
#include "ops/vecmath.h"
#include "vae.h"

#include <string.h>

static void test_vexp_against_libm(void) {
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f * (float)i / 2000000.0f;
        double want = exp((double)x), got = vexp_nonpositive(x);
        double rel = fabs(got - want) / want;
        if (rel > worst) worst = rel;
    }
    CHECK(worst < 4e-7, "worst relative error of exp on [-87, 0]: %g", worst);
    CHECK(vexp_nonpositive(0.0f) == 1.0f, "exp(0) = %g", vexp_nonpositive(0.0f));
    double worst_abs = 0; /* subnormal results: absolute error within a few of the least steps */
    for (int i = 0; i <= 100000; i++) {
        float x = -87.0f - 20.0f * (float)i / 100000.0f;
        worst_abs = fmax(worst_abs, fabs(vexp_nonpositive(x) - exp((double)x)));
    }
    CHECK(worst_abs < 1e-44, "worst absolute error on [-107, -87]: %g", worst_abs);
    CHECK(vexp_nonpositive(-1000.0f) == 0.0f, "exp(-1000) = %g", vexp_nonpositive(-1000.0f));
}

static void test_vlog1p_against_libm(void) {
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        float e = (float)i / 2000000.0f;
        double want = log1p((double)e), got = vlog1p_unit(e);
        double err = want > 0 ? fabs(got - want) / want : fabs(got);
        if (err > worst) worst = err;
    }
    CHECK(worst < 4e-7, "worst relative error of log1p on [0, 1]: %g", worst);
    CHECK(vlog1p_unit(1e-30f) > 0.99e-30f && vlog1p_unit(1e-30f) < 1.01e-30f, "tiny argument");
}

/* the 8-lane forms do the scalar forms' operations: the same values, lane by lane */
static void test_vector_forms_match_scalar(void) {
    int mismatches = 0;
    for (int i = 0; i < 200000; i += 8) {
        float x[8], e[8];
        for (int k = 0; k < 8; k++) x[k] = -110.0f * (float)(i + k) / 200000.0f;
        vf8 ve = vexp8_nonpositive(vf8_load(x));
        for (int k = 0; k < 8; k++) {
            mismatches += ve[k] != vexp_nonpositive(x[k]);
            e[k] = (float)(i + k) / 200000.0f;
        }
        vf8 vl = vlog1p8_unit(vf8_load(e));
        for (int k = 0; k < 8; k++) mismatches += vl[k] != vlog1p_unit(e[k]);
    }
    CHECK(mismatches == 0, "%d lanes differ from the scalar form", mismatches);
    float nan8[8] = {NAN, 0, -1, NAN, -200, 0, 0, 0};
    vf8 v = vexp8_nonpositive(vf8_load(nan8));
    CHECK(v[0] == 0.0f && v[1] == 1.0f && v[4] == 0.0f, "NaN and huge arguments: %g %g %g", v[0],
          v[1], v[4]);
}

static void test_sigmoid(void) {
    enum { N = 100001 };
    static float l[N], p[N];
    for (int i = 0; i < N; i++) l[i] = -100.0f + 200.0f * (float)i / (N - 1);
    op_sigmoid(p, l, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double want = 1.0 / (1.0 + exp(-(double)l[i]));
        /* relative where float is normal, absolute where the result is subnormal */
        double err = l[i] > -87.0f ? fabs(p[i] - want) / want : fabs(p[i] - want) * 1e38;
        if (err > worst) worst = err;
        CHECK(p[i] >= 0.0f && p[i] <= 1.0f, "sigmoid(%g) = %g", l[i], p[i]);
    }
    CHECK(worst < 1e-6, "worst relative error of sigmoid on [-100, 100]: %g", worst);
}

/* Elementwise ops split over threads give the same bits as on one thread. */
static void test_threads_change_no_elementwise_bit(void) {
    enum { B = 256, D = 1000 };
    float *a = malloc(sizeof(float) * B * D), *b = malloc(sizeof(float) * B * D);
    float bias[D];
    vae_rng rng = vae_rng_make(3, 3);
    for (int i = 0; i < B * D; i++) a[i] = 4.0f * vae_rng_uniform(&rng) - 2.0f;
    for (int j = 0; j < D; j++) bias[j] = vae_rng_uniform(&rng) - 0.5f;
    memcpy(b, a, sizeof(float) * B * D);
    vae_activation acts[] = {VAE_ACT_RELU, VAE_ACT_TANH, VAE_ACT_LEAKY_RELU, VAE_ACT_ELU};
    for (int k = 0; k < 4; k++) {
        vae_set_num_threads(1);
        op_bias_activation(a, bias, B, D, &acts[k]);
        vae_set_num_threads(2);
        op_bias_activation(b, bias, B, D, &acts[k]);
        CHECK(memcmp(a, b, sizeof(float) * B * D) == 0, "%s", vae_activation_name(acts[k]));
    }
    free(a), free(b);
}

int main(void) {
    RUN(test_vexp_against_libm);
    RUN(test_vlog1p_against_libm);
    RUN(test_vector_forms_match_scalar);
    RUN(test_sigmoid);
    RUN(test_threads_change_no_elementwise_bit);
    return CHECK_SUMMARY();
}

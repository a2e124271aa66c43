/* adam.c — Adam (Kingma & Ba 2015) with bias correction: one flat loop over the parameter buffer. */
#include "core/internal.h"
#include "ops/vecmath.h"

#include <math.h>

struct vae_adam {
    vae_adam_options opt;
    size_t n;
    uint64_t t;
    float *m, *v; /* first and second moments, n each */
};

void vae_adam_options_default(vae_adam_options *opt) {
    opt->lr = 1e-3f;
    opt->beta1 = 0.9f;
    opt->beta2 = 0.999f;
    opt->epsilon = 1e-8f;
}

vae_status vae_adam_create(vae_adam **out, size_t num_params, const vae_adam_options *opt,
                           vae_error *err) {
    *out = NULL;
    VAE_RETURN_IF(!(opt->lr > 0.0f) || !isfinite(opt->lr), err, VAE_ERR_INVALID_ARGUMENT,
                  "learning rate must be a positive number");
    VAE_RETURN_IF(!(opt->beta1 >= 0.0f && opt->beta1 < 1.0f) ||
                      !(opt->beta2 >= 0.0f && opt->beta2 < 1.0f),
                  err, VAE_ERR_INVALID_ARGUMENT, "Adam betas must lie in [0, 1)");
    VAE_RETURN_IF(!(opt->epsilon > 0.0f), err, VAE_ERR_INVALID_ARGUMENT,
                  "Adam epsilon must be positive");
    vae_adam *a = calloc(1, sizeof *a);
    VAE_RETURN_IF(!a, err, VAE_ERR_NO_MEMORY, "out of memory for the optimizer");
    a->opt = *opt;
    a->n = num_params;
    a->m = vae_calloc_array(num_params, sizeof(float));
    a->v = vae_calloc_array(num_params, sizeof(float));
    if (!a->m || !a->v) {
        vae_adam_free(a);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for Adam's moments");
    }
    /* its first step reads the moments, then writes them */
    vae_touch_pages(a->m, num_params * sizeof(float));
    vae_touch_pages(a->v, num_params * sizeof(float));
    *out = a;
    return VAE_OK;
}

void vae_adam_free(vae_adam *adam) {
    if (!adam) return;
    free(adam->m);
    free(adam->v);
    free(adam);
}

uint64_t vae_adam_steps(const vae_adam *adam) { return adam->t; }

/* The step's constants: the betas, epsilon and the bias-corrected step size */
typedef struct {
    float b1, b2, eps, step, inv_sqrt_c2;
} adam_consts;

static adam_consts next_step(vae_adam *a) {
    a->t++;
    const float b1 = a->opt.beta1, b2 = a->opt.beta2;
    /* bias corrections in double: beta^t underflows gracefully and stays exact for small t */
    const float c1 = (float)(1.0 - pow(b1, (double)a->t));
    const float c2 = (float)(1.0 - pow(b2, (double)a->t));
    return (adam_consts){b1, b2, a->opt.epsilon, a->opt.lr / c1, 1.0f / sqrtf(c2)};
}

/* Parameter i's update; the gradient is cleared, which spares the next backward's GEMMs a
 * zeroing pass over their outputs. */
static inline void update(const adam_consts *k, float *restrict params, float *restrict grads,
                           float *restrict mom1, float *restrict mom2, long i) {
    float g = grads[i];
    grads[i] = 0.0f;
    float m = mom1[i] = k->b1 * mom1[i] + (1.0f - k->b1) * g;
    float v = mom2[i] = k->b2 * mom2[i] + (1.0f - k->b2) * g * g;
    /* p -= lr * (m/c1) / (sqrt(v/c2) + eps), as PyTorch computes it */
    params[i] -= k->step * m / (sqrtf(v) * k->inv_sqrt_c2 + k->eps);
}

/* Memory-bound: 4 streams in, 4 out; one pass, vectorized, split over the threads. */
VAE_SIMD_CLONES
void vae_adam_step(vae_adam *a, float *params, float *grads) {
    const adam_consts k = next_step(a);
    float *restrict mom1 = a->m, *restrict mom2 = a->v;
    const long n = (long)a->n;
#pragma omp parallel if (n >= VAE_PARAMS_PARALLEL_MIN)
    {
        /* the moments of weights whose gradient stays 0 decay into subnormals (fpenv.c) */
        const unsigned fpenv = vae_flush_subnormals();
#pragma omp for simd schedule(static)
        for (long i = 0; i < n; i++) update(&k, params, grads, mom1, mom2, i);
        vae_restore_subnormals(fpenv);
    }
}

/* The same in blocks, each block's new parameters handed to round while they are in L1 */
VAE_SIMD_CLONES
void vae_adam_step_rounded(vae_adam *a, float *params, float *grads, uint16_t *rounded,
                           void (*round)(uint16_t *dst, const float *src, long n)) {
    enum { BLOCK = 4096 };
    const adam_consts k = next_step(a);
    float *restrict mom1 = a->m, *restrict mom2 = a->v;
    const long n = (long)a->n, blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel if (n >= VAE_PARAMS_PARALLEL_MIN)
    {
        const unsigned fpenv = vae_flush_subnormals();
#pragma omp for schedule(static)
        for (long b = 0; b < blocks; b++) {
            const long lo = b * BLOCK, hi = n - lo < BLOCK ? n : lo + BLOCK;
#pragma omp simd
            for (long i = lo; i < hi; i++) update(&k, params, grads, mom1, mom2, i);
            round(rounded + lo, params + lo, hi - lo);
        }
        vae_restore_subnormals(fpenv);
    }
}

const vae_adam_options *vae_adam_get_options(const vae_adam *adam) { return &adam->opt; }
size_t vae_adam_num_params(const vae_adam *adam) { return adam->n; }
float *vae_adam_first_moment(vae_adam *adam) { return adam->m; }
float *vae_adam_second_moment(vae_adam *adam) { return adam->v; }
void vae_adam_set_steps(vae_adam *adam, uint64_t steps) { adam->t = steps; }

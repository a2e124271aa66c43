/* activation.c — elementwise nonlinearities; derivatives taken from the output. Each value is
 * computed alone, so splitting the loops over threads changes no bit. */
#include "ops/ops.h"
#include "ops/vecmath.h"

#include <math.h>

VAE_SIMD_CLONES
static void bias_relu(float *y, const float *b, int batch, int out) {
#pragma omp parallel for schedule(static) if ((long)batch * out >= OP_PARALLEL_MIN)
    for (int i = 0; i < batch; i++) {
        float *row = y + (size_t)i * out;
#pragma omp simd
        for (int j = 0; j < out; j++) {
            float v = row[j] + b[j];
            row[j] = v > 0.0f ? v : 0.0f;
        }
    }
}

VAE_SIMD_CLONES
static void bias_only(float *y, const float *b, int batch, int out) {
#pragma omp parallel for schedule(static) if ((long)batch * out >= OP_PARALLEL_MIN)
    for (int i = 0; i < batch; i++) {
        float *row = y + (size_t)i * out;
#pragma omp simd
        for (int j = 0; j < out; j++) row[j] += b[j];
    }
}

void op_bias_activation(float *y, const float *b, int batch, int out, const vae_activation *act) {
    if (!act) {
        bias_only(y, b, batch, out);
    } else if (*act == VAE_ACT_RELU) {
        bias_relu(y, b, batch, out);
    } else {
        bias_only(y, b, batch, out);
        op_activation_forward(y, (size_t)batch * out, *act);
    }
}

void op_activation_forward(float *y, size_t n, vae_activation act) {
    const long count = (long)n;
    switch (act) {
    case VAE_ACT_RELU: /* y = max(x, 0) */
#pragma omp parallel for simd schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case VAE_ACT_TANH:
#pragma omp parallel for schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) y[i] = tanhf(y[i]);
        break;
    case VAE_ACT_LEAKY_RELU: /* y = x > 0 ? x : a x */
#pragma omp parallel for simd schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) y[i] = y[i] > 0.0f ? y[i] : VAE_LEAKY_SLOPE * y[i];
        break;
    case VAE_ACT_ELU: /* y = x > 0 ? x : e^x - 1 */
#pragma omp parallel for schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) y[i] = y[i] > 0.0f ? y[i] : expm1f(y[i]);
        break;
    }
}

VAE_SIMD_CLONES
void op_activation_backward(float *dy, const float *y, size_t n, vae_activation act) {
    const long count = (long)n;
    switch (act) {
    case VAE_ACT_RELU: /* y > 0 exactly when x > 0 */
#pragma omp parallel for simd schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case VAE_ACT_TANH: /* tanh' = 1 - y^2 */
#pragma omp parallel for simd schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) dy[i] *= 1.0f - y[i] * y[i];
        break;
    case VAE_ACT_LEAKY_RELU:
#pragma omp parallel for simd schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) dy[i] = y[i] > 0.0f ? dy[i] : VAE_LEAKY_SLOPE * dy[i];
        break;
    case VAE_ACT_ELU: /* for x <= 0: d/dx (e^x - 1) = e^x = y + 1 */
#pragma omp parallel for simd schedule(static) if (count >= OP_PARALLEL_MIN)
        for (long i = 0; i < count; i++) dy[i] = y[i] > 0.0f ? dy[i] : dy[i] * (y[i] + 1.0f);
        break;
    }
}

VAE_SIMD_CLONES
void op_sigmoid(float *p, const float *logits, size_t n) {
    const long count = (long)n;
#pragma omp parallel for simd schedule(static) if (count >= OP_PARALLEL_MIN)
    for (long i = 0; i < count; i++) {
        /* exp of a non-positive number only: no overflow for either sign */
        float e = vexp_nonpositive(-fabsf(logits[i])), inv = 1.0f / (1.0f + e);
        p[i] = logits[i] >= 0.0f ? inv : e * inv;
    }
}

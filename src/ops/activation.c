/* activation.c — elementwise nonlinearities; derivatives taken from the output. */
#include "ops.h"

#include <math.h>

void op_activation_forward(float *y, size_t n, vae_activation act) {
    switch (act) {
    case VAE_ACT_RELU: /* y = max(x, 0) */
        for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case VAE_ACT_TANH:
        for (size_t i = 0; i < n; i++) y[i] = tanhf(y[i]);
        break;
    case VAE_ACT_LEAKY_RELU: /* y = x > 0 ? x : a x */
        for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : VAE_LEAKY_SLOPE * y[i];
        break;
    case VAE_ACT_ELU: /* y = x > 0 ? x : e^x - 1 */
        for (size_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : expm1f(y[i]);
        break;
    }
}

void op_activation_backward(float *dy, const float *y, size_t n, vae_activation act) {
    switch (act) {
    case VAE_ACT_RELU: /* y > 0 exactly when x > 0 */
        for (size_t i = 0; i < n; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case VAE_ACT_TANH: /* tanh' = 1 - y^2 */
        for (size_t i = 0; i < n; i++) dy[i] *= 1.0f - y[i] * y[i];
        break;
    case VAE_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++) dy[i] = y[i] > 0.0f ? dy[i] : VAE_LEAKY_SLOPE * dy[i];
        break;
    case VAE_ACT_ELU: /* for x <= 0: d/dx (e^x - 1) = e^x = y + 1 */
        for (size_t i = 0; i < n; i++) dy[i] = y[i] > 0.0f ? dy[i] : dy[i] * (y[i] + 1.0f);
        break;
    }
}

void op_sigmoid(float *p, const float *logits, size_t n) {
    for (size_t i = 0; i < n; i++) {
        /* exp of a non-positive number only: no overflow for either sign */
        float e = expf(-fabsf(logits[i]));
        p[i] = logits[i] >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    }
}

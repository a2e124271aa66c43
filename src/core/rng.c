/* rng.c — a counter-based generator: output n of a stream is mix(key + n * golden), the
 * splitmix64 finalizer. Any position is reachable at once, so per-thread and per-step streams
 * need no shared state and do not depend on the thread count. */
#include "internal.h"

#include <math.h>

static const uint64_t GOLDEN = 0x9e3779b97f4a7c15ULL;

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

vae_rng vae_rng_make(uint64_t seed, uint64_t stream) {
    vae_rng rng;
    rng.key = mix64(mix64(seed ^ 0x5eedULL) + mix64(stream * GOLDEN + 1));
    rng.counter = 0;
    return rng;
}

uint64_t vae_rng_u64(vae_rng *rng) {
    rng->counter++;
    return mix64(rng->key + rng->counter * GOLDEN);
}

float vae_rng_uniform(vae_rng *rng) {
    return (float)(vae_rng_u64(rng) >> 40) * (1.0f / 16777216.0f);
}

uint64_t vae_rng_below(vae_rng *rng, uint64_t bound) {
    /* Rejection of the top partial block: no modulo bias. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % bound);
    uint64_t r;
    do r = vae_rng_u64(rng);
    while (r >= limit);
    return r % bound;
}

void vae_rng_normal(vae_rng *rng, float *out, size_t n) {
    /* Box–Muller in double: u1 in (0,1] keeps log finite; both outputs of each pair are used. */
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < n; i += 2) {
        double u1 = ((double)(vae_rng_u64(rng) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
        double u2 = (double)(vae_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u1));
        out[i] = (float)(r * cos(two_pi * u2));
        if (i + 1 < n) out[i + 1] = (float)(r * sin(two_pi * u2));
    }
}

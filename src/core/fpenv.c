/* fpenv.c — the floats' special values: subnormals flushed to zero for a stretch of one thread's
 * work, and the check that a buffer holds no Inf or NaN. On x86 an operation that reads or makes a
 * subnormal float takes a microcode assist, ~100 times slower than a normal one. Training makes
 * them steadily: Adam's first moment of a weight whose gradient stays 0 (a pixel that is 0 in
 * every image) decays as 0.9^t and is subnormal after ~800 steps, which slowed the second epoch of
 * the canonical model by a third. The values lost are below 1.2e-38, far under the rounding of any
 * parameter they touch. The thread's previous state is handed back for the caller to restore: the
 * library leaves its caller's threads as it found them. */
#include "internal.h"
#include "ops/vecmath.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>

enum { FLUSH_TO_ZERO = 0x8000, DENORMALS_ARE_ZERO = 0x0040 }; /* MXCSR's FTZ and DAZ bits */

unsigned vae_flush_subnormals(void) {
    const unsigned before = _mm_getcsr();
    _mm_setcsr(before | FLUSH_TO_ZERO | DENORMALS_ARE_ZERO);
    return before;
}

void vae_restore_subnormals(unsigned before) { _mm_setcsr(before); }
#else /* elsewhere the state is left as it is */
unsigned vae_flush_subnormals(void) { return 0; }
void vae_restore_subnormals(unsigned before) { (void)before; }
#endif

/* The largest exponent field of the values: all ones only for Inf and NaN. An integer max has
 * no chain of dependent adds to wait on, as a float sum of v * 0 has: half the time of that. */
VAE_SIMD_CLONES
int vae_all_finite(const float *v, size_t n) {
    uint32_t worst = 0;
    const long count = (long)n;
#pragma omp parallel for simd reduction(max : worst) schedule(static) if (count >= 65536)
    for (long i = 0; i < count; i++) {
        uint32_t e;
        memcpy(&e, v + i, sizeof e); /* the float's bits (one vector load) */
        e &= 0x7f800000u;
        worst = e > worst ? e : worst;
    }
    return worst != 0x7f800000u;
}

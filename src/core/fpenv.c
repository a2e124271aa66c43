/* fpenv.c — subnormal floats flushed to zero for a stretch of one thread's work. On x86 an
 * operation that reads or makes a subnormal float takes a microcode assist, ~100 times slower
 * than a normal one. Training makes them steadily: Adam's first moment of a weight whose
 * gradient stays 0 (a pixel that is 0 in every image) decays as 0.9^t and is subnormal after
 * ~800 steps, which slowed the second epoch of the canonical model by a third. The values lost
 * are below 1.2e-38, far under the rounding of any parameter they touch. The thread's previous
 * state is handed back for the caller to restore: the library leaves its caller's threads as it
 * found them. */
#include "internal.h"

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

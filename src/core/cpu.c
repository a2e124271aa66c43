/* cpu.c — which OpenBLAS kernels suit this CPU. Debian's OpenBLAS 0.3.21 does not recognise
 * newer CPUs, notably in virtual machines that hide the model name: it then falls back to SSE3
 * "Prescott" kernels, several times slower than the AVX2 or AVX-512 ones the CPU can run. The
 * program asks here, before OpenBLAS starts, whether to name better kernels itself
 * (OPENBLAS_CORETYPE); never ones whose instructions the CPU or the OS's saved state lack. */
#include "internal.h"

#include <string.h>
#include <strings.h>
#ifdef __x86_64__
#include <cpuid.h>
#endif

#ifdef __x86_64__
/* The OS's enabled register state (XCR0): AVX needs XMM and YMM saved, AVX-512 also the
 * opmask and both halves of the ZMM registers. */
static unsigned long long xcr0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

void vae_cpu_features_detect(vae_cpu_features *f) {
    memset(f, 0, sizeof *f);
#ifdef __x86_64__
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const int osxsave = (c >> 27) & 1;
    f->fma = (c >> 12) & 1;
    const unsigned long long state = osxsave ? xcr0() : 0;
    f->os_avx = (state & 0x6) == 0x6;
    f->os_avx512 = (state & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return;
    f->avx2 = (b >> 5) & 1;
    f->avx512f = (b >> 16) & 1, f->avx512dq = (b >> 17) & 1;
    f->avx512bw = (b >> 30) & 1, f->avx512vl = (b >> 31) & 1;
#endif
}

/* Cores OpenBLAS 0.3.21 falls back to, or older ones than the CPU's features allow. */
static int generic(const char *core) {
    static const char *const names[] = {"prescott", "core2", "penryn", "dunnington", "nehalem",
                                        "sandybridge", "atom", "katmai", "coppermine",
                                        "northwood", "banias", "opteron", "opteron_sse3",
                                        "barcelona", "bobcat", "bulldozer", "piledriver",
                                        "steamroller", "excavator", "unknown"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcasecmp(core, names[i]) == 0) return 1;
    return 0;
}

const char *vae_blas_core_choice(const char *detected, const vae_cpu_features *f) {
    if (!detected || !generic(detected)) return NULL; /* it knows the CPU: keep its choice */
    if (f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl && f->fma && f->os_avx512)
        return "SkylakeX";
    if (f->avx2 && f->fma && f->os_avx) return "Haswell";
    return NULL;
}

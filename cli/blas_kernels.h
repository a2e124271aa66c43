/* blas_kernels.h — OpenBLAS's kernels for this CPU, for vae and the bench programs that time
 * OpenBLAS's products (gemm_limit, step_phases), which would otherwise time its slow generic
 * kernels where it does not know the CPU.
 *
 * OpenBLAS picks its kernels when it starts, before main, and falls back to slow generic ones
 * on CPUs it does not know. When better ones suit this CPU (vae_blas_core_choice) and the user
 * named none, the program runs itself again, once, with OPENBLAS_CORETYPE set; if that fails
 * it goes on with what it has. */
#ifndef VAE_BLAS_KERNELS_H
#define VAE_BLAS_KERNELS_H

#include "vae.h"

#include <stdlib.h>
#include <unistd.h>

static inline void choose_blas_kernels(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("VAE_BLAS_CHOSEN")) return;
    vae_cpu_features f;
    vae_cpu_features_detect(&f);
    const char *better = vae_blas_core_choice(vae_blas_core(), &f);
    if (setenv("VAE_BLAS_CHOSEN", better ? better : "kept", 1) != 0 || !better) return;
    if (setenv("OPENBLAS_CORETYPE", better, 1) == 0) execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
}

#endif

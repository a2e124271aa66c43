/* threads.c — the one threading knob. libvae links OpenBLAS's OpenMP build, so matrix products
 * and our elementwise loops run on the same OpenMP pool of threads. */
#include "internal.h"

#include <cblas.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void vae_set_num_threads(int n) {
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

/* Built without OpenMP (the fuzzing build), only OpenBLAS has threads. */
int vae_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return openblas_get_num_threads();
#endif
}

int vae_thread_index(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int vae_thread_limit(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *vae_blas_info(void) { return openblas_get_config(); }

const char *vae_blas_core(void) { return openblas_get_corename(); }

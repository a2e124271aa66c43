/* threads.c — the one threading knob. libvae links OpenBLAS's OpenMP build, so matrix products
 * and our elementwise loops run on the same OpenMP pool of threads. */
#include "internal.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

void vae_set_num_threads(int n) {
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int vae_get_num_threads(void) { return omp_get_max_threads(); }

const char *vae_blas_info(void) { return openblas_get_config(); }

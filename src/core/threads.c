/* threads.c — the one threading knob: OpenBLAS's pool, which every matrix product uses. */
#include "internal.h"

#include <cblas.h>
#include <unistd.h>

void vae_set_num_threads(int n) {
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    openblas_set_num_threads(n);
}

int vae_get_num_threads(void) { return openblas_get_num_threads(); }

const char *vae_blas_info(void) { return openblas_get_config(); }

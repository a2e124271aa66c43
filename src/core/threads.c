/* threads.c — the one threading knob. libvae links OpenBLAS's OpenMP build, so matrix products
 * and our elementwise loops run on the same OpenMP pool of threads. */
#include "internal.h"

#include <cblas.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Per-CPU busy and total jiffies from /proc/stat into busy[], total[] (up to max CPUs);
 * returns the CPUs read, 0 when it cannot be read. */
static int cpu_times(unsigned long long *busy, unsigned long long *total, int max) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return 0;
    char line[512];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        unsigned long long v[8] = {0};
        int cpu;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 5)
            continue; /* the "cpu " total line, or not a CPU */
        total[n] = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
        busy[n] = total[n] - v[3] - v[4]; /* all but idle and iowait */
        n++;
    }
    fclose(f);
    return n;
}

/* The cores other processes leave free: sampled over 50 ms, a core at least half idle counts.
 * Threads that share a core with a busy process make every parallel step wait for the slowest
 * of them (a measured 3.8x slowdown on 2 cores with one busy), so they are not started. */
static int free_cores(int online) {
    enum { MAX_CPUS = 4096 };
    unsigned long long *b0 = calloc(4 * MAX_CPUS, sizeof *b0);
    if (!b0) return online;
    unsigned long long *t0 = b0 + MAX_CPUS, *b1 = t0 + MAX_CPUS, *t1 = b1 + MAX_CPUS;
    int n = cpu_times(b0, t0, MAX_CPUS), idle = online;
    const struct timespec pause = {0, 50 * 1000 * 1000};
    if (n > 0 && nanosleep(&pause, NULL) == 0 && cpu_times(b1, t1, MAX_CPUS) == n) {
        idle = 0;
        for (int i = 0; i < n; i++) {
            const unsigned long long dt = t1[i] - t0[i], db = b1[i] - b0[i];
            idle += dt == 0 || 2 * db <= dt;
        }
    }
    free(b0);
    return idle < 1 ? 1 : idle > online ? online : idle;
}

void vae_set_num_threads(int n) {
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = free_cores(cores > 0 ? (int)cores : 1);
    }
    openblas_set_num_threads(n);
    const int blas = openblas_get_num_threads(); /* it caps n at the threads it was built for */
    if (blas >= 1 && blas < n) n = blas;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
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

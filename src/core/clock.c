/* clock.c — the library's one clock for durations. */
#include "core/internal.h"

#include <time.h>

double vae_seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

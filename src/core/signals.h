/* signals.h — asynchronous signals held off the threads running oneDNN's generated kernels
 * (signals.c). */
#ifndef VAE_SIGNALS_H
#define VAE_SIGNALS_H

#include <signal.h>

typedef struct {
    sigset_t old; /* the calling thread's mask before */
} vae_signals_held;

/* Before a call into oneDNN: the calling thread's asynchronous signals held (a signal that
 * comes meanwhile waits), and those of the OpenMP threads it leads held for good; then
 * vae_release_signals with the same h, which restores the calling thread's mask (the held
 * signals are then handled). */
void vae_hold_signals(vae_signals_held *h);
void vae_release_signals(const vae_signals_held *h);

#endif

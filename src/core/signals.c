/* signals.c — why oneDNN's calls hold signals. oneDNN 2.6's generated f32 GEMM kernels (its
 * sgemm, and the primitives that run on it) point the stack pointer into a heap buffer while
 * they run (oneDNN issue 4845, fixed upstream in 2026): a signal handled on that thread meanwhile
 * has its frame written over the heap, and the process aborts later in free() ("corrupted size
 * vs. prev_size"). Any handler does it: Python's for Ctrl-C, this program's for its checkpoint on
 * Ctrl-C, a profiler's. Measured here: a SIGALRM every millisecond during dnnl_sgemm calls
 * corrupted the heap in every run; Ctrl-C during `fit` in Python aborted 4 runs of 6.
 *
 * So a oneDNN call holds the asynchronous signals on its thread (faults are not held: a fault
 * held would kill the process) and lets them through when it returns, a few milliseconds
 * later at most. The threads of the OpenMP team that the call's parallel regions use run the
 * same kernels; they hold the signals for good, from the first oneDNN call that leads a team
 * of their size on: a process-wide signal then goes to a thread outside oneDNN's kernels (the
 * leader, between calls), and a signal meant for one of them waits. Those are OpenMP's pool
 * threads, which handle no signal of this library's or its caller's. */
#include "core/signals.h"

#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Every signal but those the thread's own instruction raises */
static void asynchronous(sigset_t *set) {
    sigfillset(set);
    const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
    for (size_t i = 0; i < sizeof faults / sizeof *faults; i++) sigdelset(set, faults[i]);
}

/* The largest team this thread has led whose other threads hold the signals: a thread's own
 * OpenMP pool, which only it leads (inside a parallel region nothing new is started) */
static _Thread_local int team_holding = 1;

static void team_hold(const sigset_t *set) {
#ifdef _OPENMP
    if (omp_in_parallel()) return;
    const int n = omp_get_max_threads();
    if (n <= team_holding) return;
#pragma omp parallel num_threads(n)
    if (omp_get_thread_num() != 0) pthread_sigmask(SIG_BLOCK, set, NULL);
    team_holding = n;
#else
    (void)set;
#endif
}

void vae_hold_signals(vae_signals_held *h) {
    sigset_t set;
    asynchronous(&set);
    pthread_sigmask(SIG_BLOCK, &set, &h->old);
    team_hold(&set); /* with the leader's signals held, new pool threads start holding them */
}

void vae_release_signals(const vae_signals_held *h) { pthread_sigmask(SIG_SETMASK, &h->old, NULL); }

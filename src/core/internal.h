/* internal.h — helpers shared by every libvae source file; includes nothing of ours but vae.h. */
#ifndef VAE_INTERNAL_H
#define VAE_INTERNAL_H

#include "vae.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Writes a formatted message into err (when not NULL) and returns status, so a failure reads as
 * one statement: return vae_fail(err, VAE_ERR_FORMAT, "%s: bad magic", path); */
vae_status vae_fail(vae_error *err, vae_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define VAE_RETURN_IF(cond, err, status, ...)                                                      \
    do {                                                                                           \
        if (cond) return vae_fail((err), (status), __VA_ARGS__);                                   \
    } while (0)

/* Puts the caller's context before the message a failed call left in err ("step 12: forward:
 * row 3 has label 11, ...") and returns status: errors keep what went wrong and gain where. */
vae_status vae_add_context(vae_error *err, vae_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns a failed call's status from the enclosing function with the caller's context added
 * (zstd's FORWARD_IF_ERROR): VAE_FORWARD_IF_ERROR(vae_forward(...), err, "step %d", n); */
#define VAE_FORWARD_IF_ERROR(expr, err, ...)                                                       \
    do {                                                                                           \
        vae_status vae_forward_status_ = (expr);                                                   \
        if (vae_forward_status_ != VAE_OK)                                                         \
            return vae_add_context((err), vae_forward_status_, __VA_ARGS__);                       \
    } while (0)

#define VAE_TRY(expr)                                                                              \
    do {                                                                                           \
        vae_status vae_try_status_ = (expr);                                                       \
        if (vae_try_status_ != VAE_OK) return vae_try_status_;                                     \
    } while (0)

/* Data in the model's units (standardization is applied inside the library, by every call that
 * takes data values): *view is data itself when the model keeps no standardization, else a copy
 * with x standardized (labels and mask borrowed), whose values *owned holds (free it; NULL when
 * nothing was copied). */
vae_status vae_model_units(const vae_model *m, const vae_dataset *data, vae_dataset *view,
                           float **owned, vae_error *err);
/* n rows of values in the model's units back into the data's, in place (decoded means). */
void vae_data_units(const vae_model *m, float *x, size_t n);

/* Always on: only for broken internal invariants, never for input validation. */
#define VAE_ASSERT(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) vae_assert_fail(#cond, __FILE__, __LINE__);                                   \
    } while (0)
_Noreturn void vae_assert_fail(const char *cond, const char *file, int line);

/* A 64-bit fingerprint of len bytes (not cryptographic). */
uint64_t vae_hash_bytes(const void *data, size_t len, uint64_t seed);

/* Stream ids of the seed's independent random streams (vae_rng_make's second argument). */
#define VAE_STREAM_SHUFFLE (1ULL << 40) /* + epoch */
#define VAE_STREAM_NOISE (2ULL << 40)   /* + global step */
#define VAE_STREAM_EVAL (3ULL << 40)    /* + sample index: results do not depend on eval batch */
#define VAE_STREAM_IWAE (4ULL << 40)    /* + sample index */

/* The number of the calling OpenMP thread and the most there can be (0 and 1 without OpenMP). */
int vae_thread_index(void);
int vae_thread_limit(void);

/* Checks that data fit the model: not empty, its width, every value inside the likelihood's
 * support; `what` ("training", "test") starts the message. */
vae_status vae_check_data(const vae_model *model, const vae_dataset *data, const char *what,
                          vae_error *err);

/* With a mask (N,D; 1 observed), refuses a sample or a column with nothing observed: neither
 * can be learned from. NULL is fine. */
vae_status vae_check_missing(const uint8_t *mask, size_t n, size_t d, const char *path,
                             vae_error *err);

/* calloc of count*size with an overflow check; NULL on overflow or exhaustion. */
void *vae_calloc_array(size_t count, size_t size);
/* Writes a zero into every 4 KiB page of memory that is all zeros already (calloc'd), so that
 * the kernel gives each page its frame now, on this thread, rather than at a first access that
 * reads: that maps the shared zero page, and the write after it must replace the mapping and
 * flush it from every core the process runs on (17 us a page measured; Adam's moments and the
 * gradients took 20 ms each of a training run's first step that way). */
void vae_touch_pages(void *zeros, size_t bytes);
/* Gives the allocator's free memory back to the system (glibc's malloc_trim; a no-op
 * elsewhere): after a phase that freed tens of MiB. Freed chunks of the brk heap stay resident
 * otherwise, and whatever is allocated next in fresh pages adds to the process's peak (the
 * conv preset's run with --batch-threads auto peaked 2.8 MiB over issue 16's budget so: its
 * timing's buffers, then the training's, then the pictures' decoder on new pages). */
void vae_release_free_memory(void);

/* Seconds on the monotonic clock (for durations: epochs, evaluations, timing backends). */
double vae_seconds_now(void);
/* Subnormal floats read and made as zero on this thread until the returned state is restored
 * (fpenv.c: they are ~100x slower to compute on x86); a no-op where the CPU has no such mode. */
unsigned vae_flush_subnormals(void);
void vae_restore_subnormals(unsigned before);
/* Adam's pass over the parameters splits over the threads from this many (vae_adam_step; the
 * batch-threads timing splits its stand-in for Adam's writes the same way) */
#define VAE_PARAMS_PARALLEL_MIN 65536
/* vae_adam_step that also hands every block of new parameters (params + i, n of them, while
 * they are in L1) to round(rounded + i, params + i, n): bf16's table keeps the dense weights its
 * products read rounded in the pass that changes them, instead of in a pass of their own */
void vae_adam_step_rounded(vae_adam *adam, float *params, float *grads, uint16_t *rounded,
                           void (*round)(uint16_t *dst, const float *src, long n));
/* Non-zero when none of the n values is Inf or NaN: one vectorized pass, split over the threads
 * for large n (the training loop's check of every gradient before Adam). */
int vae_all_finite(const float *v, size_t n);

#endif

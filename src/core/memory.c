/* memory.c — allocation helpers: overflow-checked arrays, and the pages of big buffers. */
#include "internal.h"

#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

void *vae_calloc_array(size_t count, size_t size) {
    size_t bytes;
    if (__builtin_mul_overflow(count, size, &bytes)) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void vae_release_free_memory(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

void vae_touch_pages(void *zeros, size_t bytes) {
    volatile char *p = zeros; /* volatile: a store of the zero already there is not dropped */
    for (size_t i = 0; i < bytes; i += 4096) p[i] = 0;
}

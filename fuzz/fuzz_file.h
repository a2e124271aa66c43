/* fuzz_file.h — our readers take paths, so each fuzz input becomes an in-memory file (memfd)
 * named by its /proc/self/fd path: no disk writes, nothing left behind. */
#ifndef VAE_FUZZ_FILE_H
#define VAE_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    int fd;
    char path[64];
} fuzz_file;

/* Returns 0 on success; the caller closes f->fd. */
static inline int fuzz_file_make(fuzz_file *f, const uint8_t *data, size_t size) {
    f->fd = memfd_create("vae-fuzz", 0);
    if (f->fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(f->fd, data + done, size - done);
        if (n <= 0) {
            close(f->fd);
            return -1;
        }
        done += (size_t)n;
    }
    snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
    return 0;
}

#endif

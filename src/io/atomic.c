/* atomic.c — every file vae writes appears whole or not at all: written to a temporary file
 * beside its target, flushed to disk, renamed over it, and the rename made durable. */
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

vae_status vae_write_atomic(const char *path, vae_write_fn write, void *ctx, vae_error *err) {
    /* beside the target, so the final rename stays in one file system */
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16), *dir_copy = strdup(path);
    vae_status s = VAE_OK;
    if (!tmp || !dir_copy) {
        s = vae_fail(err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
        goto done;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* said before any temporary name */
        s = vae_fail(err, VAE_ERR_CREATE, "%s is a folder; name a file to write", path);
        tmp[0] = '\0';
        goto done;
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        s = vae_fail(err, VAE_ERR_CREATE, "%s: cannot create it: %s", path, strerror(errno));
        tmp[0] = '\0';
        goto done;
    }
    fchmod(fd, 0644);
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        s = vae_fail(err, VAE_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto done;
    }
    errno = 0;
    vae_status written = write(f, ctx);
    int ok = written == VAE_OK && !ferror(f) && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved_errno = errno;
    if (fclose(f) != 0 && ok) ok = 0, saved_errno = errno;
    if (!ok) {
        s = vae_fail(err, written != VAE_OK ? written : VAE_ERR_IO,
                     "%s: write failed (%s); the previous file is untouched", path,
                     saved_errno ? strerror(saved_errno) : "error in the writer");
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = vae_fail(err, VAE_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp,
                     strerror(errno));
        goto done;
    }
    tmp[0] = '\0'; /* it is the file now */
    int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL)
            s = vae_fail(err, VAE_ERR_IO, "%s: cannot sync its folder: %s", path, strerror(errno));
        close(dfd);
    }
done:
    if (tmp && tmp[0]) unlink(tmp);
    free(tmp);
    free(dir_copy);
    return s;
}

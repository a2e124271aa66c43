/* status.c — status names and error messages. */
#include "internal.h"

#include <string.h>

const char *vae_version(void) { return VAE_VERSION_STRING; }

const char *vae_status_str(vae_status status) {
    switch (status) {
    case VAE_OK: return "ok";
    case VAE_ERR_INVALID_ARGUMENT: return "invalid argument";
    case VAE_ERR_NO_MEMORY: return "out of memory";
    case VAE_ERR_OPEN: return "cannot open file";
    case VAE_ERR_IO: return "I/O error";
    case VAE_ERR_FORMAT: return "format error";
    case VAE_ERR_CANCELLED: return "cancelled";
    case VAE_ERR_DIVERGED: return "training diverged";
    case VAE_ERR_INTERNAL: return "internal error";
    case VAE_ERR_CREATE: return "cannot create file";
    }
    return "unknown status";
}

vae_status vae_fail(vae_error *err, vae_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

vae_status vae_add_context(vae_error *err, vae_status status, const char *fmt, ...) {
    if (!err) return status;
    char message[sizeof err->message];
    snprintf(message, sizeof message, "%s", err->message[0] ? err->message : vae_status_str(status));
    va_list ap;
    va_start(ap, fmt);
    int at = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    size_t used = at < 0 ? 0 : (size_t)at, room = sizeof err->message;
    if (used + 3 < room) { /* then ": " and the message, as much as fits */
        size_t len = strlen(message);
        if (len > room - used - 3) len = room - used - 3;
        memcpy(err->message + used, ": ", 2);
        memcpy(err->message + used + 2, message, len);
        err->message[used + 2 + len] = '\0';
    }
    return status;
}

_Noreturn void vae_assert_fail(const char *cond, const char *file, int line) {
    /* The one place the library prints: an invariant broke, so no caller can recover. */
    fprintf(stderr, "libvae: internal invariant failed: %s (%s:%d)\n", cond, file, line);
    abort();
}

vae_status vae_check_missing(const uint8_t *mask, size_t n, size_t d, const char *path,
                             vae_error *err) {
    if (!mask) return VAE_OK;
    for (size_t i = 0; i < n; i++) {
        size_t seen = 0;
        for (size_t j = 0; j < d; j++) seen += mask[i * d + j];
        VAE_RETURN_IF(!seen, err, VAE_ERR_FORMAT, "%s: sample %zu has every value missing", path,
                      i + 1);
    }
    for (size_t j = 0; j < d; j++) {
        size_t seen = 0;
        for (size_t i = 0; i < n && !seen; i++) seen += mask[i * d + j];
        VAE_RETURN_IF(!seen, err, VAE_ERR_FORMAT, "%s: column %zu is missing in every sample",
                      path, j + 1);
    }
    return VAE_OK;
}

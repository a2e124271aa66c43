/* common.c — exit codes, error reports and checked option parsing. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int cli_exit_code(vae_status status) {
    switch (status) {
    case VAE_OK: return EXIT_OK;
    case VAE_ERR_INVALID_ARGUMENT: return EXIT_USAGE;
    case VAE_ERR_NO_MEMORY: return EXIT_SOFTWARE;
    case VAE_ERR_OPEN: return EXIT_NOINPUT;
    case VAE_ERR_IO: return EXIT_IOERR;
    case VAE_ERR_FORMAT: return EXIT_DATAERR;
    case VAE_ERR_CANCELLED: return EXIT_INTERRUPTED;
    case VAE_ERR_DIVERGED: return EXIT_DIVERGED;
    case VAE_ERR_INTERNAL: return EXIT_SOFTWARE;
    }
    return EXIT_SOFTWARE;
}

int cli_report(vae_status status, const vae_error *err) {
    const char *msg = err && err->message[0] ? err->message : vae_status_str(status);
    fprintf(stderr, "vae: %s\n", msg);
    return cli_exit_code(status);
}

int cli_parse_int(const char *name, const char *text, long min, long max, int *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < min || v > max) {
        fprintf(stderr, "vae: --%s: expected an integer in %ld..%ld, got \"%s\"\n", name, min,
                max, text);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int cli_parse_device(const char *text, vae_device *out) {
    if (vae_device_parse(text, out) == VAE_OK) return 1;
    fprintf(stderr, "vae: --device: expected cpu, cuda or auto, got \"%s\"\n", text);
    return 0;
}

int cli_parse_precision(const char *text, vae_precision *out) {
    if (vae_precision_parse(text, out) == VAE_OK) return 1;
    fprintf(stderr, "vae: --precision: expected fp32 or tf32, got \"%s\"\n", text);
    return 0;
}

int cli_parse_u64(const char *name, const char *text, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || text[0] == '-') {
        fprintf(stderr, "vae: --%s: expected a non-negative integer, got \"%s\"\n", name, text);
        return 0;
    }
    *out = (uint64_t)v;
    return 1;
}

int cli_parse_float(const char *name, const char *text, double min, double max, float *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || v < min || v > max) {
        fprintf(stderr, "vae: --%s: expected a number in [%g, %g], got \"%s\"\n", name, min, max,
                text);
        return 0;
    }
    *out = (float)v;
    return 1;
}

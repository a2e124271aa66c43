/* common.c — exit codes, error reports and checked option parsing. */
#include "cli.h"

#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
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
    case VAE_ERR_CREATE: return EXIT_CANTCREAT;
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

/* Set once by main, before any command runs (the backend: oneDNN where this build has it). */
static cli_compute compute = {.device = VAE_DEVICE_AUTO, .precision = VAE_PRECISION_FP32,
                              .backend = VAE_BACKEND_OPENBLAS};

const cli_compute *cli_compute_options(void) { return &compute; }

/* The value of option `name` at argv[*i] ("--name V" or "--name=V"), or NULL when argv[*i] is
 * not it; *i then points at its last word. */
static const char *option_value(const char *name, int argc, char **argv, int *i, int *missing) {
    const size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) != 0) return NULL;
    if (argv[*i][len] == '=') return argv[*i] + len + 1;
    if (argv[*i][len] != '\0') return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

int cli_take_compute_options(int *argc, char **argv) {
    int kept = 0, missing = 0, openblas_named = 0;
    compute.backend = vae_backend_default();
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--") == 0) { /* the rest is the command's */
            while (i < *argc) argv[kept++] = argv[i++];
            break;
        }
        const int at = i;
        const char *device = option_value("--device", *argc, argv, &i, &missing);
        const char *precision = device ? NULL : option_value("--precision", *argc, argv, &i, &missing);
        const char *backend = device || precision ? NULL
                              : option_value("--backend", *argc, argv, &i, &missing);
        const char *threads = device || precision || backend ? NULL
                              : strcmp(argv[i], "-t") == 0
                                  ? (i + 1 < *argc ? argv[++i] : (missing = 1, NULL))
                                  : option_value("--threads", *argc, argv, &i, &missing);
        if (missing) {
            fprintf(stderr, "vae: %s needs a value\n", argv[at]);
            return 0;
        }
        vae_error err = {{0}};
        if (device && vae_device_parse(device, &compute.device, &err) != VAE_OK) {
            fprintf(stderr, "vae: --device: %s\n", err.message);
            return 0;
        }
        if (precision && vae_precision_parse(precision, &compute.precision, &err) != VAE_OK) {
            fprintf(stderr, "vae: --precision: %s\n", err.message);
            return 0;
        }
        if (compute.precision == VAE_PRECISION_BF16) /* the CPU's; a GPU keeps fp32 */
            compute.cpu_bf16 = 1, compute.precision = VAE_PRECISION_FP32;
        if (backend && vae_backend_parse(backend, &compute.backend, &err) != VAE_OK) {
            fprintf(stderr, "vae: --backend: %s\n", err.message);
            return 0;
        }
        if (backend) openblas_named = compute.backend == VAE_BACKEND_OPENBLAS;
        if (threads && !cli_parse_int("threads", threads, 1, 1024, &compute.threads)) return 0;
        const int taken = device || precision || backend || threads;
        const int quiet = !taken && (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet"));
        compute.quiet |= quiet;
        if (!taken && !quiet) argv[kept++] = argv[i];
    }
    /* tf32 is a GPU's: on the CPU it would quietly compute fp32 */
    if (compute.device == VAE_DEVICE_CPU && compute.precision == VAE_PRECISION_TF32) {
        fprintf(stderr, "vae: --precision tf32 is a GPU's; --device cpu computes fp32 or bf16\n");
        return 0;
    }
    /* bf16's products are oneDNN's: a run asked for OpenBLAS would otherwise run on oneDNN */
    if (compute.cpu_bf16 && openblas_named) {
        fprintf(stderr, "vae: --precision bf16 runs its products on oneDNN; --backend openblas "
                        "has none (use --backend onednn or auto, or leave it out)\n");
        return 0;
    }
    *argc = kept;
    argv[kept] = NULL;
    return 1;
}

int cli_output_ok(const char *path) {
    if (!path) return 1;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "vae: %s is a folder; name a file to write\n", path);
        return 0;
    }
    char *copy = strdup(path);
    const char *dir = copy ? dirname(copy) : ".";
    const int ok = access(dir, W_OK | X_OK) == 0;
    if (!ok) fprintf(stderr, "vae: cannot create %s: %s\n", path, strerror(errno));
    free(copy);
    return ok;
}

int cli_picture_ok(const char *path, int *code) {
    if (path && !cli_has_suffix(path, ".png")) {
        fprintf(stderr, "vae: %s: pictures are written as PNG; name the file .png\n", path);
        *code = EXIT_USAGE;
        return 0;
    }
    *code = EXIT_CANTCREAT;
    return cli_output_ok(path);
}

void cli_say(const char *fmt, ...) {
    if (compute.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

void cli_apply_threads(void) {
    vae_set_num_threads(compute.threads);
    if (compute.threads > vae_get_num_threads())
        fprintf(stderr, "vae: --threads %d: the BLAS runs at most %d; using %d\n", compute.threads,
                vae_get_num_threads(), vae_get_num_threads());
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

int cli_write_base64(FILE *f, const unsigned char *p, size_t n) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        char out[4] = {digits[v >> 18 & 63], digits[v >> 12 & 63],
                       i + 1 < n ? digits[v >> 6 & 63] : '=', i + 2 < n ? digits[v & 63] : '='};
        if (fwrite(out, 1, 4, f) != 4) return 0;
    }
    return 1;
}

unsigned char *cli_read_file(const char *path, size_t *len) {
    FILE *in = fopen(path, "rb");
    if (!in) return NULL;
    unsigned char *buf = NULL, chunk[65536];
    size_t cap = 0, got;
    int ok = 1;
    *len = 0;
    while (ok && (got = fread(chunk, 1, sizeof chunk, in)) > 0) {
        if (*len + got > cap) {
            cap = (*len + got) * 2;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) ok = 0;
            else buf = grown;
        }
        if (ok) memcpy(buf + *len, chunk, got), *len += got;
    }
    ok = ok && !ferror(in);
    fclose(in);
    if (!ok || !buf) free(buf), buf = NULL;
    return buf;
}

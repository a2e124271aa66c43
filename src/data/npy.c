/* npy.c — reading NumPy .npy arrays: a magic string, a version, a header that is a Python dict
 * literal ({'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }), then the raw values.
 * The header is parsed by a small strict scanner: it is Python syntax, not JSON. */
#include "core/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAX_HEADER ((size_t)1 << 20)
#define NPY_MAX_DIMS 3

typedef struct {
    const char *p, *end;
} scanner;

static void skip_space(scanner *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\t')) s->p++;
}

static int expect(scanner *s, char c) {
    skip_space(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return 1;
    }
    return 0;
}

/* A quoted string ('...' or "...") without escapes, into buf. */
static int string(scanner *s, char *buf, size_t size) {
    skip_space(s);
    if (s->p >= s->end || (*s->p != '\'' && *s->p != '"')) return 0;
    char quote = *s->p++;
    size_t n = 0;
    while (s->p < s->end && *s->p != quote) {
        if (*s->p == '\\' || n + 1 >= size) return 0;
        buf[n++] = *s->p++;
    }
    if (s->p >= s->end) return 0;
    s->p++;
    buf[n] = '\0';
    return 1;
}

static int word(scanner *s, const char *w) {
    skip_space(s);
    size_t n = strlen(w);
    if ((size_t)(s->end - s->p) >= n && memcmp(s->p, w, n) == 0) {
        s->p += n;
        return 1;
    }
    return 0;
}

/* (a, b, ...) of non-negative integers; "(n,)" for one. */
static int shape_tuple(scanner *s, uint64_t *dims, int *ndims) {
    if (!expect(s, '(')) return 0;
    *ndims = 0;
    for (;;) {
        skip_space(s);
        if (expect(s, ')')) return 1;
        if (*ndims == NPY_MAX_DIMS) return -1;
        if (s->p >= s->end || *s->p < '0' || *s->p > '9') return 0;
        uint64_t v = 0;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
            if (v > (UINT64_MAX - 9) / 10) return 0;
            v = v * 10 + (uint64_t)(*s->p++ - '0');
        }
        dims[(*ndims)++] = v;
        if (!expect(s, ',')) return expect(s, ')');
    }
}

typedef struct {
    char descr[16];
    int fortran;
    int ndims;
    uint64_t dims[NPY_MAX_DIMS];
} npy_header;

static vae_status parse_header(const char *text, size_t len, npy_header *h, const char *path,
                               vae_error *err) {
    scanner s = {text, text + len};
    int seen_descr = 0, seen_order = 0, seen_shape = 0;
    VAE_RETURN_IF(!expect(&s, '{'), err, VAE_ERR_FORMAT, "%s: .npy header is not a dict", path);
    while (!expect(&s, '}')) {
        char key[32];
        VAE_RETURN_IF(!string(&s, key, sizeof key) || !expect(&s, ':'), err, VAE_ERR_FORMAT,
                      "%s: .npy header: expected 'key': value at byte %ld", path,
                      (long)(s.p - text));
        if (strcmp(key, "descr") == 0) {
            VAE_RETURN_IF(!string(&s, h->descr, sizeof h->descr), err, VAE_ERR_FORMAT,
                          "%s: .npy header: 'descr' must be a simple type string (structured "
                          "arrays are not supported)", path);
            seen_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (word(&s, "True")) h->fortran = 1;
            else VAE_RETURN_IF(!word(&s, "False"), err, VAE_ERR_FORMAT,
                               "%s: .npy header: 'fortran_order' must be True or False", path);
            seen_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            int r = shape_tuple(&s, h->dims, &h->ndims);
            VAE_RETURN_IF(r < 0, err, VAE_ERR_FORMAT, "%s: .npy arrays of more than %d "
                          "dimensions are not supported", path, NPY_MAX_DIMS);
            VAE_RETURN_IF(!r, err, VAE_ERR_FORMAT, "%s: .npy header: 'shape' must be a tuple of "
                          "non-negative integers", path);
            seen_shape = 1;
        } else {
            return vae_fail(err, VAE_ERR_FORMAT, "%s: .npy header: unknown key '%s'", path, key);
        }
        if (!expect(&s, ',')) {
            VAE_RETURN_IF(!expect(&s, '}'), err, VAE_ERR_FORMAT,
                          "%s: .npy header: expected ',' or '}' at byte %ld", path,
                          (long)(s.p - text));
            break;
        }
    }
    VAE_RETURN_IF(!seen_descr || !seen_order || !seen_shape, err, VAE_ERR_FORMAT,
                  "%s: .npy header lacks 'descr', 'fortran_order' or 'shape'", path);
    return VAE_OK;
}

typedef struct {
    FILE *f;
    char *header;
    void *raw;
    vae_dataset *ds;
} npy_state;

/* The magic, the version and the header's text into st->header; *prefix gets the bytes before
 * the header, *header_len its length. */
static vae_status npy_header_text(const char *path, npy_state *st, size_t *prefix,
                                  size_t *header_len, vae_error *err) {
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, st->f);
    VAE_RETURN_IF(got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0, err, VAE_ERR_FORMAT,
                  "%s: not a .npy file (no \\x93NUMPY magic)", path);
    int major = pre[6];
    VAE_RETURN_IF(major < 1 || major > 3, err, VAE_ERR_FORMAT, "%s: .npy version %d.%d is not "
                  "supported (1 to 3 are)", path, major, pre[7]);
    *header_len = (size_t)pre[8] | (size_t)pre[9] << 8, *prefix = 10;
    if (major >= 2) {
        VAE_RETURN_IF(fread(pre + 10, 1, 2, st->f) != 2, err, VAE_ERR_FORMAT,
                      "%s: .npy file truncated in its header", path);
        *header_len |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        *prefix = 12;
    }
    VAE_RETURN_IF(*header_len > NPY_MAX_HEADER, err, VAE_ERR_FORMAT,
                  "%s: .npy header of %zu bytes (more than %zu)", path, *header_len,
                  NPY_MAX_HEADER);
    st->header = malloc(*header_len + 1);
    VAE_RETURN_IF(!st->header, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
    VAE_RETURN_IF(fread(st->header, 1, *header_len, st->f) != *header_len, err, VAE_ERR_FORMAT,
                  "%s: .npy file truncated in its header", path);
    st->header[*header_len] = '\0';
    return VAE_OK;
}

/* The element type: its size and kind (0 float32, 1 float64, 2 uint8). */
static vae_status npy_dtype(const char *path, const npy_header *h, size_t *item, int *kind,
                            vae_error *err) {
    if (strcmp(h->descr, "<f4") == 0) *item = 4, *kind = 0;
    else if (strcmp(h->descr, "<f8") == 0) *item = 8, *kind = 1;
    else if (strcmp(h->descr, "|u1") == 0 || strcmp(h->descr, "<u1") == 0) *item = 1, *kind = 2;
    else
        return vae_fail(err, VAE_ERR_FORMAT, "%s: .npy dtype '%s' is not supported (little-endian "
                        "float32 '<f4', float64 '<f8' or uint8 '|u1' are)", path, h->descr);
    VAE_RETURN_IF(h->fortran, err, VAE_ERR_FORMAT, "%s: .npy array is in Fortran order; save it "
                  "in C order (numpy.ascontiguousarray)", path);
    VAE_RETURN_IF(h->ndims < 1, err, VAE_ERR_FORMAT, "%s: .npy array is a scalar, not samples",
                  path);
    return VAE_OK;
}

/* The raw values (kind as npy_dtype says) into st->ds's floats; NaN a missing value when
 * allowed, anything else not a finite float refused with its sample and position. */
static vae_status npy_values(const char *path, npy_state *st, int kind, uint64_t values,
                             uint64_t width, int allow_missing, vae_error *err) {
    float *x = st->ds->x;
    for (uint64_t i = 0; i < values; i++) {
        double v = kind == 0 ? ((float *)st->raw)[i]
                   : kind == 1 ? ((double *)st->raw)[i] : ((uint8_t *)st->raw)[i] / 255.0;
        if (allow_missing && v != v) { /* NaN: missing */
            if (!st->ds->mask) {
                st->ds->mask = malloc(values);
                VAE_RETURN_IF(!st->ds->mask, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
                memset(st->ds->mask, 1, values);
            }
            st->ds->mask[i] = 0;
            x[i] = 0.0f;
            continue;
        }
        VAE_RETURN_IF(!(v == v) || v > 3.4e38 || v < -3.4e38, err, VAE_ERR_FORMAT,
                      "%s: sample %llu, value %llu is %g (not a finite float)", path,
                      (unsigned long long)(i / width + 1), (unsigned long long)(i % width + 1), v);
        x[i] = (float)v;
    }
    return VAE_OK;
}

static vae_status npy_read(const char *path, int allow_missing, vae_dataset **out, npy_state *st,
                           vae_error *err) {
    st->f = fopen(path, "rb");
    VAE_RETURN_IF(!st->f, err, VAE_ERR_OPEN, "%s: cannot open: %s", path, strerror(errno));
    struct stat info;
    VAE_RETURN_IF(fstat(fileno(st->f), &info) != 0, err, VAE_ERR_IO, "%s: %s", path,
                  strerror(errno));
    size_t prefix = 0, header_len = 0, item = 0;
    VAE_TRY(npy_header_text(path, st, &prefix, &header_len, err));
    npy_header h = {0};
    VAE_TRY(parse_header(st->header, header_len, &h, path, err));
    int kind = 0;
    VAE_TRY(npy_dtype(path, &h, &item, &kind, err));
    uint64_t count = h.dims[0], width = 1;
    for (int i = 1; i < h.ndims; i++)
        VAE_RETURN_IF(__builtin_mul_overflow(width, h.dims[i], &width), err, VAE_ERR_FORMAT,
                      "%s: .npy shape overflows", path);
    uint64_t values, bytes;
    VAE_RETURN_IF(__builtin_mul_overflow(count, width, &values) ||
                      __builtin_mul_overflow(values, (uint64_t)item, &bytes),
                  err, VAE_ERR_FORMAT, "%s: .npy shape overflows", path);
    VAE_RETURN_IF(count == 0 || width == 0, err, VAE_ERR_FORMAT, "%s: .npy array is empty", path);
    VAE_RETURN_IF(width > (1u << 24), err, VAE_ERR_FORMAT, "%s: %llu values per sample is too "
                  "many", path, (unsigned long long)width);
    uint64_t have = (uint64_t)info.st_size - (prefix + header_len);
    VAE_RETURN_IF((uint64_t)info.st_size < prefix + header_len || have != bytes, err,
                  VAE_ERR_FORMAT, "%s: the header's shape needs %llu bytes of data, the file has "
                  "%llu", path, (unsigned long long)bytes,
                  (unsigned long long)((uint64_t)info.st_size < prefix + header_len ? 0 : have));
    st->raw = malloc(bytes);
    st->ds = calloc(1, sizeof *st->ds);
    if (st->ds) st->ds->x = vae_calloc_array(values, sizeof(float));
    VAE_RETURN_IF(!st->raw || !st->ds || !st->ds->x, err, VAE_ERR_NO_MEMORY,
                  "%s: out of memory for %llu values", path, (unsigned long long)values);
    VAE_RETURN_IF(fread(st->raw, 1, bytes, st->f) != bytes, err, VAE_ERR_IO, "%s: read error",
                  path);
    VAE_TRY(npy_values(path, st, kind, values, width, allow_missing, err));
    st->ds->count = (size_t)count, st->ds->dim = (int)width;
    VAE_TRY(vae_check_missing(st->ds->mask, (size_t)count, (size_t)width, path, err));
    if (h.ndims == 3 && h.dims[1] <= 65535 && h.dims[2] <= 65535)
        st->ds->rows = (int)h.dims[1], st->ds->cols = (int)h.dims[2];
    *out = st->ds, st->ds = NULL;
    return VAE_OK;
}

vae_status vae_npy_load(const char *path, int allow_missing, vae_dataset **out, vae_error *err) {
    *out = NULL;
    npy_state st = {0};
    vae_status s = npy_read(path, allow_missing, out, &st, err);
    if (st.f) fclose(st.f);
    free(st.header), free(st.raw);
    vae_dataset_free(st.ds);
    return s;
}

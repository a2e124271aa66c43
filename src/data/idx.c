/* idx.c — the IDX format of MNIST: magic 00 00 <type> <ndims>, ndims big-endian uint32 sizes,
 * then the data. Plain or gzip. Nothing in a header is trusted before it is checked against the
 * bytes actually there. */
#include "core/internal.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAX_DIMS 4
/* A gzip stream's size is unknown until it is read, so its buffer grows as bytes arrive, from
 * this much up to what the header claims: memory follows real data, not a header's promise. */
#define IDX_GZ_FIRST_CHUNK ((size_t)1 << 20)

typedef struct {
    int ndims;
    uint32_t dims[IDX_MAX_DIMS];
    size_t count;  /* product of dims: bytes of data */
    uint8_t *data; /* malloc'ed */
} idx_raw;

static const char *type_name(int type) {
    switch (type) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    }
    return "unknown";
}

/* Reads exactly n bytes or reports why not: end of stream or a zlib error. */
static vae_status gz_read_exact(gzFile gz, void *buf, size_t n, size_t *got, const char *path,
                                const char *what, vae_error *err) {
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(gz, (uint8_t *)buf + *got, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(gz, &zerr);
            return vae_fail(err, VAE_ERR_FORMAT, "%s: corrupt gzip stream while reading %s: %s",
                            path, what, msg);
        }
        if (r == 0) {
            int zerr;
            const char *msg = gzerror(gz, &zerr);
            /* zlib reports a stream cut short as Z_BUF_ERROR only through gzerror */
            if (zerr != Z_OK)
                return vae_fail(err, VAE_ERR_FORMAT, "%s: %s while reading %s", path,
                                zerr == Z_BUF_ERROR ? "gzip stream truncated" : msg, what);
            return VAE_ERR_IO; /* plain end of data: the caller words it */
        }
        *got += (size_t)r;
    }
    return VAE_OK;
}

/* The file through zlib (which reads plain files as they are), whether it is gzip, and a
 * plain file's size (0 when unknown). */
static vae_status idx_open(const char *path, gzFile *gz, int *is_gzip, off_t *file_size,
                           vae_error *err) {
    FILE *f = fopen(path, "rb");
    VAE_RETURN_IF(!f, err, VAE_ERR_OPEN, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    unsigned char head[2] = {0, 0};
    *file_size = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : 0;
    size_t n_head = fread(head, 1, 2, f);
    *is_gzip = n_head == 2 && head[0] == 0x1f && head[1] == 0x8b;
    int fd = dup(fileno(f));
    fclose(f);
    VAE_RETURN_IF(fd < 0, err, VAE_ERR_OPEN, "%s: cannot open: %s", path, strerror(errno));
    if (lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return vae_fail(err, VAE_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    }
    *gz = gzdopen(fd, "rb");
    if (!*gz) {
        close(fd);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "%s: cannot start the gzip reader", path);
    }
    gzbuffer(*gz, 1 << 17);
    return VAE_OK;
}

/* The magic bytes and the sizes: out->ndims and dims, and the data's byte count. */
static vae_status idx_header(gzFile gz, const char *path, idx_raw *out, size_t *count,
                             vae_error *err) {
    uint8_t header[4 + 4 * IDX_MAX_DIMS];
    size_t got;
    vae_status s = gz_read_exact(gz, header, 4, &got, path, "the header", err);
    if (s == VAE_ERR_IO)
        return vae_fail(err, VAE_ERR_FORMAT, "%s: file ends after %zu bytes, inside the "
                        "4-byte IDX magic", path, got);
    VAE_TRY(s);
    VAE_RETURN_IF(header[0] != 0 || header[1] != 0 || header[3] < 1 || header[3] > IDX_MAX_DIMS,
                  err, VAE_ERR_FORMAT,
                  "%s: not an IDX file: magic bytes %02x %02x %02x %02x, expected "
                  "00 00 08 0N with 1 <= N <= %d", path, header[0], header[1], header[2],
                  header[3], IDX_MAX_DIMS);
    VAE_RETURN_IF(header[2] != IDX_TYPE_UBYTE, err, VAE_ERR_FORMAT,
                  "%s: IDX data type 0x%02x (%s) is not supported, expected 0x08 "
                  "(unsigned byte)", path, header[2], type_name(header[2]));
    out->ndims = header[3];
    s = gz_read_exact(gz, header + 4, 4 * (size_t)out->ndims, &got, path, "the sizes", err);
    if (s == VAE_ERR_IO)
        return vae_fail(err, VAE_ERR_FORMAT, "%s: file ends inside the header (%d sizes "
                        "expected at byte 4)", path, out->ndims);
    VAE_TRY(s);
    *count = 1;
    for (int i = 0; i < out->ndims; i++) {
        const uint8_t *p = header + 4 + 4 * i;
        out->dims[i] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        VAE_RETURN_IF(out->dims[i] == 0, err, VAE_ERR_FORMAT, "%s: size %d (at byte %d) is zero",
                      path, i, 4 + 4 * i);
        VAE_RETURN_IF(__builtin_mul_overflow(*count, (size_t)out->dims[i], count), err,
                      VAE_ERR_FORMAT,
                      "%s: the sizes in the header overflow (product beyond %zu bytes)", path,
                      SIZE_MAX);
    }
    return VAE_OK;
}

/* A plain file's size is known: a lying header is refused before anything is allocated. */
static vae_status idx_check_size(const char *path, off_t file_size, size_t header_bytes,
                                 size_t count, vae_error *err) {
    size_t have = (size_t)file_size - header_bytes;
    VAE_RETURN_IF(have < count, err, VAE_ERR_FORMAT,
                  "%s: truncated: the header claims %zu bytes of data, the file has %zu after "
                  "its %zu-byte header", path, count, have, header_bytes);
    VAE_RETURN_IF(have > count, err, VAE_ERR_FORMAT,
                  "%s: %zu unexpected bytes after the %zu bytes of data the header claims", path,
                  have - count, count);
    return VAE_OK;
}

/* count bytes of data into *data (malloc'ed): a gzip stream's claim is trusted only as far as
 * its bytes go, so the buffer grows as they arrive; then nothing may follow them. */
static vae_status idx_data(gzFile gz, const char *path, int is_gzip, size_t count,
                           uint8_t **data, vae_error *err) {
    size_t cap = is_gzip && count > IDX_GZ_FIRST_CHUNK ? IDX_GZ_FIRST_CHUNK : count, got;
    *data = malloc(cap);
    VAE_RETURN_IF(!*data, err, VAE_ERR_NO_MEMORY, "%s: out of memory for %zu bytes", path, cap);
    for (size_t filled = 0; filled < count;) {
        if (filled == cap) {
            size_t next = cap > count / 2 ? count : 2 * cap;
            uint8_t *bigger = realloc(*data, next);
            VAE_RETURN_IF(!bigger, err, VAE_ERR_NO_MEMORY, "%s: out of memory for %zu bytes",
                          path, next);
            *data = bigger, cap = next;
        }
        vae_status s = gz_read_exact(gz, *data + filled, cap - filled, &got, path, "the data",
                                     err);
        filled += got;
        if (s == VAE_ERR_IO)
            return vae_fail(err, VAE_ERR_FORMAT, "%s: truncated: the header claims %zu bytes of "
                            "data, the stream ends after %zu", path, count, filled);
        VAE_TRY(s);
    }
    /* one byte more: trailing data means the header does not describe this file (and a
     * gzip stream's checksum is verified only when its end is read) */
    uint8_t extra;
    vae_status s = gz_read_exact(gz, &extra, 1, &got, path, "the end of the stream", err);
    VAE_RETURN_IF(s == VAE_OK, err, VAE_ERR_FORMAT,
                  "%s: unexpected data after the %zu bytes the header claims", path, count);
    return s == VAE_ERR_IO ? VAE_OK : s;
}

static vae_status idx_read(const char *path, idx_raw *out, vae_error *err) {
    memset(out, 0, sizeof *out);
    gzFile gz = NULL;
    int is_gzip = 0;
    off_t file_size = 0;
    VAE_TRY(idx_open(path, &gz, &is_gzip, &file_size, err));
    size_t count = 0;
    uint8_t *data = NULL;
    vae_status s = idx_header(gz, path, out, &count, err);
    if (s == VAE_OK && !is_gzip && file_size > 0)
        s = idx_check_size(path, file_size, 4 + 4 * (size_t)out->ndims, count, err);
    if (s == VAE_OK) s = idx_data(gz, path, is_gzip, count, &data, err);
    int close_code = gzclose(gz);
    if (s == VAE_OK && close_code != Z_OK)
        s = vae_fail(err, VAE_ERR_IO, "%s: error closing the file (zlib code %d)", path,
                     close_code);
    if (s != VAE_OK) {
        free(data);
        return s;
    }
    out->count = count;
    out->data = data;
    return VAE_OK;
}

vae_status vae_idx_load_labels(const char *path, uint8_t **labels, size_t *count,
                               vae_error *err) {
    *labels = NULL;
    *count = 0;
    idx_raw raw;
    VAE_TRY(idx_read(path, &raw, err));
    if (raw.ndims != 1) {
        free(raw.data);
        return vae_fail(err, VAE_ERR_FORMAT,
                        "%s: a label file has 1 dimension, this one has %d (an image file?)",
                        path, raw.ndims);
    }
    *labels = raw.data;
    *count = raw.count;
    return VAE_OK;
}

vae_status vae_idx_load(const char *images_path, const char *labels_path, vae_dataset **out,
                        vae_error *err) {
    *out = NULL;
    idx_raw raw;
    VAE_TRY(idx_read(images_path, &raw, err));
    if (raw.ndims < 2) {
        free(raw.data);
        return vae_fail(err, VAE_ERR_FORMAT,
                        "%s: an image file has at least 2 dimensions (count, values), this one "
                        "has 1 (a label file?)", images_path);
    }
    size_t dim = raw.count / raw.dims[0];
    if (dim > (size_t)(1 << 24)) {
        free(raw.data);
        return vae_fail(err, VAE_ERR_FORMAT, "%s: %zu values per sample, at most %d supported",
                        images_path, dim, 1 << 24);
    }
    vae_dataset *ds = calloc(1, sizeof *ds);
    float *x = vae_calloc_array(raw.count, sizeof(float));
    if (!ds || !x) {
        free(ds), free(x), free(raw.data);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "%s: out of memory for %zu values", images_path,
                        raw.count);
    }
    for (size_t i = 0; i < raw.count; i++) x[i] = (float)raw.data[i] / 255.0f;
    free(raw.data);
    ds->count = raw.dims[0];
    ds->dim = (int)dim;
    if (raw.ndims == 3) ds->rows = (int)raw.dims[1], ds->cols = (int)raw.dims[2];
    ds->x = x;
    if (labels_path) {
        size_t n_labels;
        vae_status s = vae_idx_load_labels(labels_path, &ds->labels, &n_labels, err);
        if (s == VAE_OK && n_labels != ds->count)
            s = vae_fail(err, VAE_ERR_FORMAT, "%s: %zu labels, but %s has %zu images",
                         labels_path, n_labels, images_path, ds->count);
        if (s != VAE_OK) {
            vae_dataset_free(ds);
            return s;
        }
    }
    *out = ds;
    return VAE_OK;
}

void vae_dataset_free(vae_dataset *ds) {
    if (!ds) return;
    free(ds->x);
    free(ds->labels);
    free(ds->mask);
    free(ds);
}

uint64_t vae_dataset_hash(const vae_dataset *ds) {
    uint64_t shape[2] = {ds->count, (uint64_t)ds->dim};
    return vae_hash_bytes(ds->x, ds->count * (size_t)ds->dim * sizeof(float),
                          vae_hash_bytes(shape, sizeof shape, 0));
}

/* Replaces the first `from` in the file-name part of s by `to`; 0 when there is none. */
static int replace_in_basename(char *s, size_t size, const char *from, const char *to) {
    char *base = strrchr(s, '/');
    base = base ? base + 1 : s;
    char *at = strstr(base, from);
    if (!at) return 0;
    size_t len = strlen(s), lf = strlen(from), lt = strlen(to);
    if (len - lf + lt + 1 > size) return 0;
    memmove(at + lt, at + lf, strlen(at + lf) + 1);
    memcpy(at, to, lt);
    return 1;
}

int vae_idx_find_labels(const char *images_path, char *out, size_t out_size) {
    if (strlen(images_path) + 1 > out_size) return 0;
    strcpy(out, images_path);
    if (!replace_in_basename(out, out_size, "images", "labels")) return 0;
    replace_in_basename(out, out_size, "idx3", "idx1");
    return access(out, R_OK) == 0;
}

/* csv.c — numeric CSV (plain or gzip): an optional header line, comma-separated numbers, one
 * sample per row, optionally one integer label column. The first bad cell stops the read with
 * its row and column. */
#include "core/internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define CSV_MAX_LINE ((size_t)1 << 26) /* 64 MiB: longer is not a row of numbers */

void vae_csv_options_default(vae_csv_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->label_column = VAE_CSV_NO_LABELS;
}

/* One line without its end; grows *buf. Returns the length, -1 at the end, -2 when too long or
 * out of memory, -3 on a corrupt gzip stream. */
static long read_line(gzFile gz, char **buf, size_t *cap) {
    size_t len = 0;
    for (;;) {
        if (*cap - len < 2) {
            size_t grown = *cap ? *cap * 2 : 4096;
            if (grown > CSV_MAX_LINE) return -2;
            char *p = realloc(*buf, grown);
            if (!p) return -2;
            *buf = p, *cap = grown;
        }
        if (!gzgets(gz, *buf + len, (int)(*cap - len))) {
            int zerr;
            gzerror(gz, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END) return -3;
            if (len == 0) return -1;
            break;
        }
        len += strlen(*buf + len);
        if (len > 0 && (*buf)[len - 1] == '\n') break;
    }
    while (len > 0 && ((*buf)[len - 1] == '\n' || (*buf)[len - 1] == '\r')) len--;
    (*buf)[len] = '\0';
    return (long)len;
}

/* Splits a line at commas in place; returns the number of cells (cells[] gets up to max). */
static size_t split(char *line, char **cells, size_t max) {
    size_t n = 0;
    char *p = line;
    for (;;) {
        if (n < max) cells[n] = p;
        n++;
        char *comma = strchr(p, ',');
        if (!comma) break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

static int parse_number(const char *cell, double *out) {
    while (*cell == ' ' || *cell == '\t') cell++;
    if (!*cell) return 0;
    char *end;
    errno = 0;
    double v = strtod(cell, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == cell || *end || errno == ERANGE || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* An empty cell, "nan" or "NA" (any case, spaces around): a missing value. */
static int is_missing(const char *cell) {
    while (*cell == ' ' || *cell == '\t') cell++;
    size_t n = strlen(cell);
    while (n > 0 && (cell[n - 1] == ' ' || cell[n - 1] == '\t')) n--;
    return n == 0 || (n == 3 && strncasecmp(cell, "nan", 3) == 0) ||
           (n == 2 && strncasecmp(cell, "na", 2) == 0);
}

static size_t count_cells(const char *line) {
    size_t n = 1;
    for (; *line; line++) n += *line == ',';
    return n;
}

typedef struct {
    gzFile gz;
    char *line, **cells;
    size_t cap;
    float *x;
    uint8_t *labels, *mask;
} csv_state;

static void csv_state_free(csv_state *s) {
    if (s->gz) gzclose(s->gz);
    free(s->line), free(s->cells), free(s->x), free(s->labels), free(s->mask);
}

static vae_status csv_read(const char *path, const vae_csv_options *opt, vae_dataset **out,
                           csv_state *s, vae_error *err) {
    s->gz = gzopen(path, "rb");
    VAE_RETURN_IF(!s->gz, err, VAE_ERR_OPEN, "%s: cannot open: %s", path,
                  errno ? strerror(errno) : "out of memory");
    size_t columns = 0, rows = 0, cap_rows = 0, width = 0, row_number = 0, row_number_first = 0;
    int label = -1; /* the label column's index once known */
    for (;;) {
        long len = read_line(s->gz, &s->line, &s->cap);
        VAE_RETURN_IF(len == -2, err, VAE_ERR_FORMAT, "%s: row %zu is longer than %zu bytes",
                      path, row_number + 1, CSV_MAX_LINE);
        VAE_RETURN_IF(len == -3, err, VAE_ERR_FORMAT, "%s: corrupt gzip stream after row %zu",
                      path, row_number);
        if (len == -1) break;
        row_number++;
        if (len == 0) continue; /* blank lines, e.g. at the end */
        if (row_number_first == 0) { /* the first row: a header if any cell is not a number */
            row_number_first = row_number;
            int header = 0;
            char *copy = strdup(s->line);
            VAE_RETURN_IF(!copy, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
            for (char *cell = copy; cell && !header;) {
                char *comma = strchr(cell, ',');
                if (comma) *comma = '\0';
                double v;
                header = !parse_number(cell, &v) && !(opt->allow_missing && is_missing(cell));
                cell = comma ? comma + 1 : NULL;
            }
            free(copy);
            if (header) continue; /* sklearn's files start "150,4,setosa,...": skipped */
        }
        if (columns == 0) { /* the first data row fixes the width */
            columns = count_cells(s->line);
            VAE_RETURN_IF(columns > (1u << 24), err, VAE_ERR_FORMAT, "%s: row %zu has %zu "
                          "columns", path, row_number, columns);
            s->cells = calloc(columns, sizeof *s->cells);
            VAE_RETURN_IF(!s->cells, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
            if (opt->label_column != VAE_CSV_NO_LABELS) {
                long want = opt->label_column == VAE_CSV_LAST_COLUMN ? (long)columns - 1
                                                                     : opt->label_column;
                VAE_RETURN_IF(want < 0 || (size_t)want >= columns, err, VAE_ERR_INVALID_ARGUMENT,
                              "%s: no column %ld for labels (the rows have %zu)", path, want + 1,
                              columns);
                label = (int)want;
            }
            width = columns - (label >= 0);
            VAE_RETURN_IF(width == 0, err, VAE_ERR_FORMAT, "%s: no data columns besides the labels",
                          path);
        }
        size_t n = split(s->line, s->cells, columns);
        VAE_RETURN_IF(n != columns, err, VAE_ERR_FORMAT,
                      "%s: row %zu has %zu cells, the first data row has %zu", path, row_number,
                      n, columns);
        if (rows == cap_rows) {
            size_t grown = cap_rows ? cap_rows * 2 : 1024, bytes;
            VAE_RETURN_IF(__builtin_mul_overflow(grown, width * sizeof(float), &bytes), err,
                          VAE_ERR_NO_MEMORY, "%s: too many rows", path);
            float *x = realloc(s->x, bytes);
            uint8_t *l = label >= 0 ? realloc(s->labels, grown) : NULL;
            uint8_t *mk = opt->allow_missing ? realloc(s->mask, grown * width) : NULL;
            VAE_RETURN_IF(!x || (label >= 0 && !l) || (opt->allow_missing && !mk), err,
                          VAE_ERR_NO_MEMORY, "%s: out of memory at row %zu", path, row_number);
            s->x = x;
            if (l) s->labels = l;
            if (mk) s->mask = mk;
            cap_rows = grown;
        }
        size_t k = 0;
        for (size_t c = 0; c < columns; c++) {
            double v;
            const char *cell = s->cells[c];
            if (opt->allow_missing && (int)c != label && is_missing(cell)) {
                s->mask[rows * width + k] = 0;
                s->x[rows * width + k++] = 0.0f;
                continue;
            }
            if (s->mask && (int)c != label) s->mask[rows * width + k] = 1;
            if (!parse_number(cell, &v))
                return vae_fail(err, VAE_ERR_FORMAT, "%s: row %zu, column %zu: expected a number, "
                                "got \"%.40s\"", path, row_number, c + 1, cell);
            if ((int)c == label) {
                VAE_RETURN_IF(v != floor(v) || v < 0 || v > 255, err, VAE_ERR_FORMAT,
                              "%s: row %zu, column %zu: a label must be an integer in 0..255, "
                              "got %.40s", path, row_number, c + 1, cell);
                s->labels[rows] = (uint8_t)v;
            } else {
                VAE_RETURN_IF(fabs(v) > 3.4e38, err, VAE_ERR_FORMAT,
                              "%s: row %zu, column %zu: %g does not fit a float", path,
                              row_number, c + 1, v);
                s->x[rows * width + k++] = (float)v;
            }
        }
        rows++;
    }
    VAE_RETURN_IF(rows == 0, err, VAE_ERR_FORMAT, "%s: no data rows", path);
    if (s->mask && !memchr(s->mask, 0, rows * width)) { /* nothing was missing after all */
        free(s->mask);
        s->mask = NULL;
    }
    VAE_TRY(vae_check_missing(s->mask, rows, width, path, err));
    vae_dataset *ds = calloc(1, sizeof *ds);
    VAE_RETURN_IF(!ds, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
    ds->count = rows, ds->dim = (int)width, ds->x = s->x, ds->labels = s->labels;
    ds->mask = s->mask;
    s->x = NULL, s->labels = NULL, s->mask = NULL;
    *out = ds;
    return VAE_OK;
}

vae_status vae_csv_load(const char *path, const vae_csv_options *opt, vae_dataset **out,
                        vae_error *err) {
    *out = NULL;
    vae_csv_options defaults;
    if (!opt) vae_csv_options_default(&defaults), opt = &defaults;
    csv_state s = {0};
    errno = 0;
    vae_status st = csv_read(path, opt, out, &s, err);
    csv_state_free(&s);
    return st;
}

/* csv.c — numeric CSV (plain or gzip), read with libcsv (RFC 4180: quoted fields, CRLF): an
 * optional header line, numbers, one sample per row, optionally one integer label column. A
 * UTF-8 byte-order mark is skipped. The first bad cell stops the read with its row and column. */
#include "core/internal.h"

#include <csv.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define CSV_MAX_ROW ((size_t)1 << 26) /* 64 MiB: longer is not a row of numbers */
#define CSV_CHUNK 65536

void vae_csv_options_default(vae_csv_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->label_column = VAE_CSV_NO_LABELS;
}

/* 1 and *out for a finite number that fits a float (spaces around allowed); 0 for text; -1 for
 * a number that does not fit (inf, nan, 1e400). */
static int parse_number(const char *cell, double *out) {
    while (*cell == ' ' || *cell == '\t') cell++;
    if (!*cell) return 0;
    char *end;
    errno = 0;
    double v = strtod(cell, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == cell || *end) return 0;
    if (errno == ERANGE || !isfinite(v) || fabs(v) > 3.4e38) return -1;
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

/* What the reader keeps between libcsv's callbacks: the row being assembled (its cells back
 * to back, NUL-terminated, at offsets), and the data so far. */
typedef struct {
    const char *path;
    const vae_csv_options *opt;
    vae_error *err;
    vae_status status;       /* the first failure; parsing stops after it */
    char *text;              /* the row's cells */
    size_t text_len, text_cap;
    size_t *starts;          /* each cell's offset in text */
    size_t n_cells, cap_cells;
    size_t row_number;       /* rows seen, header included */
    size_t columns, width, rows, cap_rows;
    int label;               /* the label column's index, or -1 */
    size_t header_row;       /* the header's row number, 0 without */
    float *x;
    uint8_t *labels, *mask;
    vae_csv_options *report; /* where the header is said */
} csv_state;

static void fail(csv_state *s, vae_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(csv_state *s, vae_status status, const char *fmt, ...) {
    if (s->status != VAE_OK) return;
    s->status = status;
    if (!s->err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err->message, sizeof s->err->message, fmt, ap);
    va_end(ap);
}

static const char *cell(const csv_state *s, size_t i) { return s->text + s->starts[i]; }

static void on_field(void *data, size_t len, void *user) {
    csv_state *s = user;
    if (s->status != VAE_OK) return;
    if (s->text_len + len + 1 > CSV_MAX_ROW) {
        fail(s, VAE_ERR_FORMAT, "%s: row %zu is longer than %zu bytes", s->path,
             s->row_number + 1, CSV_MAX_ROW);
        return;
    }
    if (s->text_len + len + 1 > s->text_cap || s->n_cells == s->cap_cells) {
        size_t tcap = s->text_cap ? s->text_cap : 4096, ccap = s->cap_cells ? s->cap_cells : 64;
        while (tcap < s->text_len + len + 1) tcap *= 2;
        if (s->n_cells == ccap) ccap *= 2;
        char *t = realloc(s->text, tcap);
        size_t *st = t ? realloc(s->starts, ccap * sizeof *st) : NULL;
        if (t) s->text = t, s->text_cap = tcap;
        if (!st) {
            fail(s, VAE_ERR_NO_MEMORY, "%s: out of memory at row %zu", s->path, s->row_number + 1);
            return;
        }
        s->starts = st, s->cap_cells = ccap;
    }
    s->starts[s->n_cells++] = s->text_len;
    if (len) memcpy(s->text + s->text_len, data, len);
    s->text[s->text_len + len] = '\0';
    s->text_len += len + 1;
}

/* The first row: a header when one of its cells is not a number (sklearn's files start
 * "150,4,setosa,..."). It is said in opt->header. */
static int is_header(csv_state *s) {
    for (size_t c = 0; c < s->n_cells; c++) {
        double v;
        const char *t = cell(s, c);
        if (parse_number(t, &v) != 1 && !(s->opt->allow_missing && is_missing(t))) return 1;
    }
    return 0;
}

/* The first data row fixes the width and where the labels are. */
static void first_data_row(csv_state *s) {
    s->columns = s->n_cells;
    if (s->columns > (1u << 24)) {
        fail(s, VAE_ERR_FORMAT, "%s: row %zu has %zu columns", s->path, s->row_number, s->columns);
        return;
    }
    if (s->opt->label_column != VAE_CSV_NO_LABELS) {
        long want = s->opt->label_column == VAE_CSV_LAST_COLUMN ? (long)s->columns - 1
                                                                 : s->opt->label_column;
        if (want < 0 || (size_t)want >= s->columns) {
            fail(s, VAE_ERR_INVALID_ARGUMENT, "%s: no column %ld for labels (the rows have %zu)",
                 s->path, want + 1, s->columns);
            return;
        }
        s->label = (int)want;
    }
    s->width = s->columns - (s->label >= 0);
    if (s->width == 0)
        fail(s, VAE_ERR_FORMAT, "%s: no data columns besides the labels", s->path);
}

static int grow_rows(csv_state *s) {
    if (s->rows < s->cap_rows) return 1;
    size_t grown = s->cap_rows ? s->cap_rows * 2 : 1024, bytes;
    if (__builtin_mul_overflow(grown, s->width * sizeof(float), &bytes)) {
        fail(s, VAE_ERR_NO_MEMORY, "%s: too many rows", s->path);
        return 0;
    }
    float *x = realloc(s->x, bytes);
    if (x) s->x = x;
    uint8_t *l = x && s->label >= 0 ? realloc(s->labels, grown) : NULL;
    if (l) s->labels = l;
    uint8_t *mk = x && s->opt->allow_missing ? realloc(s->mask, grown * s->width) : NULL;
    if (mk) s->mask = mk;
    if (!x || (s->label >= 0 && !l) || (s->opt->allow_missing && !mk)) {
        fail(s, VAE_ERR_NO_MEMORY, "%s: out of memory at row %zu", s->path, s->row_number);
        return 0;
    }
    s->cap_rows = grown;
    return 1;
}

/* One data cell into the row being stored; 0 after a failure. */
static int store_cell(csv_state *s, size_t c, size_t *k) {
    const char *t = cell(s, c);
    const size_t at = s->rows * s->width + *k;
    if (s->opt->allow_missing && (int)c != s->label && is_missing(t)) {
        s->mask[at] = 0, s->x[at] = 0.0f, (*k)++;
        return 1;
    }
    if (s->mask && (int)c != s->label) s->mask[at] = 1;
    double v;
    const int parsed = parse_number(t, &v);
    if (parsed < 0) {
        fail(s, VAE_ERR_FORMAT, "%s: row %zu, column %zu: \"%.40s\" is not a finite number that "
             "fits a float", s->path, s->row_number, c + 1, t);
        return 0;
    }
    if (parsed == 0) {
        fail(s, VAE_ERR_FORMAT, "%s: row %zu, column %zu: expected a number, got \"%.40s\"%s",
             s->path, s->row_number, c + 1, t,
             s->header_row && s->row_number == s->header_row + 1
                 ? " (only the first row may be a header)" : "");
        return 0;
    }
    if ((int)c == s->label) {
        if (v != floor(v) || v < 0 || v > 255) {
            fail(s, VAE_ERR_FORMAT, "%s: row %zu, column %zu: a label must be an integer in "
                 "0..255, got %.40s", s->path, s->row_number, c + 1, t);
            return 0;
        }
        s->labels[s->rows] = (uint8_t)v;
    } else {
        s->x[at] = (float)v, (*k)++;
    }
    return 1;
}

/* The header's cells, comma-separated, as far as they fit opt->header_text. */
static void say_header(csv_state *s) {
    vae_csv_options *o = s->report;
    size_t at = 0;
    o->header = 1;
    o->header_text[0] = '\0';
    for (size_t c = 0; c < s->n_cells && at + 1 < sizeof o->header_text; c++)
        at += (size_t)snprintf(o->header_text + at, sizeof o->header_text - at, "%s%s",
                               c ? "," : "", cell(s, c));
}

/* A whole row: the header, or the samples' values and labels. */
static void take_row(csv_state *s) {
    const size_t n = s->n_cells;
    s->row_number++;
    if (s->row_number == 1 && is_header(s)) {
        s->header_row = 1;
        say_header(s);
        return;
    }
    if (s->columns == 0) first_data_row(s);
    if (s->status == VAE_OK && n != s->columns)
        fail(s, VAE_ERR_FORMAT, "%s: row %zu has %zu cells, the first data row has %zu", s->path,
             s->row_number, n, s->columns);
    size_t k = 0;
    for (size_t c = 0; s->status == VAE_OK && c < n && grow_rows(s); c++)
        if (!store_cell(s, c, &k)) break;
    if (s->status == VAE_OK) s->rows++;
}

static void on_row(int terminator, void *user) {
    (void)terminator;
    csv_state *s = user;
    if (s->status == VAE_OK) take_row(s);
    s->n_cells = 0, s->text_len = 0; /* the next row starts empty */
}

/* Feeds the file to libcsv in chunks, skipping a UTF-8 byte-order mark. */
static vae_status parse_file(gzFile gz, csv_state *s) {
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return vae_fail(s->err, VAE_ERR_NO_MEMORY, "%s: out of memory", s->path);
    unsigned char *buf = malloc(CSV_CHUNK);
    int first = 1, got;
    vae_status st = buf ? VAE_OK : VAE_ERR_NO_MEMORY;
    while (st == VAE_OK && s->status == VAE_OK && (got = gzread(gz, buf, CSV_CHUNK)) > 0) {
        size_t skip = first && got >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3) ? 3 : 0;
        first = 0;
        if (csv_parse(&p, buf + skip, (size_t)got - skip, on_field, on_row, s) !=
                (size_t)got - skip &&
            s->status == VAE_OK)
            fail(s, VAE_ERR_FORMAT, "%s: row %zu: %s (RFC 4180: a quoted field ends with a quote "
                 "before the comma or line end; a quote inside is doubled)", s->path,
                 s->row_number + 1, csv_strerror(csv_error(&p)));
    }
    if (st == VAE_OK && s->status == VAE_OK) {
        int zerr;
        gzerror(gz, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END)
            fail(s, VAE_ERR_FORMAT, "%s: corrupt gzip stream after row %zu", s->path,
                 s->row_number);
        else if (csv_fini(&p, on_field, on_row, s) != 0)
            fail(s, VAE_ERR_FORMAT, "%s: row %zu: %s (an unterminated quote?)", s->path,
                 s->row_number + 1, csv_strerror(csv_error(&p)));
    }
    csv_free(&p);
    free(buf);
    if (st != VAE_OK) return vae_fail(s->err, st, "%s: out of memory", s->path);
    return s->status;
}

static vae_status csv_read(const char *path, vae_csv_options *opt, vae_dataset **out,
                           csv_state *s, gzFile gz, vae_error *err) {
    *s = (csv_state){.path = path, .opt = opt, .err = err, .label = -1, .report = opt};
    VAE_TRY(parse_file(gz, s));
    VAE_RETURN_IF(s->rows == 0, err, VAE_ERR_FORMAT, "%s: no data rows", path);
    if (s->mask && !memchr(s->mask, 0, s->rows * s->width)) { /* nothing was missing */
        free(s->mask);
        s->mask = NULL;
    }
    VAE_TRY(vae_check_missing(s->mask, s->rows, s->width, path, err));
    vae_dataset *ds = calloc(1, sizeof *ds);
    VAE_RETURN_IF(!ds, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
    ds->count = s->rows, ds->dim = (int)s->width, ds->x = s->x, ds->labels = s->labels;
    ds->mask = s->mask;
    s->x = NULL, s->labels = NULL, s->mask = NULL;
    *out = ds;
    return VAE_OK;
}

vae_status vae_csv_load(const char *path, vae_csv_options *opt, vae_dataset **out,
                        vae_error *err) {
    *out = NULL;
    vae_csv_options defaults;
    if (!opt) vae_csv_options_default(&defaults), opt = &defaults;
    opt->header = 0, opt->header_text[0] = '\0';
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    VAE_RETURN_IF(!gz, err, VAE_ERR_OPEN, "%s: cannot open: %s", path,
                  errno ? strerror(errno) : "out of memory");
    csv_state s;
    vae_status st = csv_read(path, opt, out, &s, gz, err);
    gzclose(gz);
    free(s.text), free(s.starts), free(s.x), free(s.labels), free(s.mask);
    return st;
}

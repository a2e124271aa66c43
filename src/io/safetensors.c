/* safetensors.c — model files in the safetensors format (see vae.h), written crash-safely and
 * read with every field validated before it is trusted. JSON goes through jansson. */
#include "core/internal.h"
#include "model/model_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <jansson.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this file assumes a little-endian host"
#endif

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* 100 MB, as the reference reader */
#define ST_MAX_DIMS 8
#define ST_FORMAT "vae-1"
#define ST_NAME_MAX 64

/* ---------------------------------------------------------------- the tensors of a file */

/* "[a,b,...]" into buf */
static const char *shape_text(const vae_file_tensor *t, char *buf, size_t size) {
    size_t at = 0;
    for (int i = 0; i < t->ndims && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%d", i ? "," : "[", t->dims[i]);
    if (at < size) snprintf(buf + at, size - at, "]");
    return buf;
}

/* ---------------------------------------------------------------- metadata */

static int set_str(json_t *meta, const char *key, const char *value) {
    return json_object_set_new(meta, key, json_string(value)) == 0;
}

static int set_u64(json_t *meta, const char *key, uint64_t value) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, value);
    return set_str(meta, key, buf);
}

static int set_hex(json_t *meta, const char *key, uint64_t value) {
    char buf[32];
    snprintf(buf, sizeof buf, "%016" PRIx64, value);
    return set_str(meta, key, buf);
}

static int set_float(json_t *meta, const char *key, double value) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.9g", value);
    return set_str(meta, key, buf);
}

/* shortest decimal that reads back as the same double */
static int set_double(json_t *meta, const char *key, double value) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", value);
    return set_str(meta, key, buf);
}

static void join_sizes(char *buf, size_t size, const int *v, int n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%d" : "%d", v[i]);
}

static json_t *build_metadata(const vae_model *m, vae_adam *adam, const vae_train_state *st) {
    const vae_config *c = vae_model_config(m);
    json_t *meta = json_object();
    char buf[256];
    int ok = meta != NULL;
    ok = ok && set_str(meta, "format", ST_FORMAT) && set_str(meta, "producer", "vae " VAE_VERSION_STRING);
    ok = ok && set_u64(meta, "input_dim", (uint64_t)c->input_dim);
    ok = ok && set_u64(meta, "latent_dim", (uint64_t)c->latent_dim);
    join_sizes(buf, sizeof buf, c->encoder, c->n_encoder);
    ok = ok && set_str(meta, "encoder", buf);
    join_sizes(buf, sizeof buf, c->decoder, c->n_decoder);
    ok = ok && set_str(meta, "decoder", buf);
    ok = ok && set_str(meta, "activation", vae_activation_name(c->activation));
    ok = ok && set_str(meta, "likelihood", vae_likelihood_name(c->likelihood));
    if (c->n_classes) ok = ok && set_u64(meta, "classes", (uint64_t)c->n_classes);
    if (c->missing) ok = ok && set_str(meta, "missing", "mask");
    if (c->n_conv) {
        snprintf(buf, sizeof buf, "%d,%d,%d", c->image_channels, c->image_rows, c->image_cols);
        ok = ok && set_str(meta, "image_shape", buf);
        size_t at = 0;
        for (int i = 0; i < c->n_conv && at < sizeof buf; i++)
            at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%dx%ds%dp%d", i ? "," : "",
                                   c->conv[i].channels, c->conv[i].kernel, c->conv[i].stride,
                                   c->conv[i].padding);
        ok = ok && set_str(meta, "conv", buf);
    }
    if (c->likelihood == VAE_LIK_GAUSSIAN) {
        ok = ok && set_str(meta, "variance", vae_variance_name(c->variance));
        ok = ok && set_float(meta, "sigma", c->sigma);
        ok = ok && set_float(meta, "variance_floor", c->variance_floor);
    }
    ok = ok && set_hex(meta, "config_hash", vae_config_hash(c));
    if (vae_model_data_mean(m)) ok = ok && set_str(meta, "standardize", "1");
    if (st) {
        ok = ok && set_str(meta, "preset", st->preset);
        snprintf(buf, sizeof buf, "%d,%d", st->data_rows, st->data_cols);
        ok = ok && set_str(meta, "data_shape", buf);
        ok = ok && set_hex(meta, "data_hash", st->data_hash);
        ok = ok && set_u64(meta, "seed", st->seed);
        ok = ok && set_str(meta, "rng", "counter-based splitmix64: streams derive from seed, "
                                        "epoch and global step; no other state");
        ok = ok && set_u64(meta, "batch_size", (uint64_t)st->batch_size);
        ok = ok && set_u64(meta, "epochs", (uint64_t)st->epochs);
        ok = ok && set_u64(meta, "epoch", (uint64_t)st->position.epoch);
        ok = ok && set_u64(meta, "step_in_epoch", st->position.step_in_epoch);
        ok = ok && set_float(meta, "beta", st->beta) && set_float(meta, "free_bits", st->free_bits);
        ok = ok && set_u64(meta, "kl_warmup", st->kl_warmup);
        ok = ok && set_u64(meta, "iwae_k", (uint64_t)st->iwae_k);
        const vae_loss *so_far = &st->position.epoch_so_far;
        ok = ok && set_double(meta, "epoch_recon_sum", so_far->recon);
        ok = ok && set_double(meta, "epoch_kl_sum", so_far->kl);
        ok = ok && set_u64(meta, "epoch_samples", so_far->count);
    }
    if (adam) {
        const vae_adam_options *o = vae_adam_get_options(adam);
        ok = ok && set_str(meta, "optimizer", "adam");
        ok = ok && set_float(meta, "adam_lr", o->lr) && set_float(meta, "adam_beta1", o->beta1);
        ok = ok && set_float(meta, "adam_beta2", o->beta2);
        ok = ok && set_float(meta, "adam_epsilon", o->epsilon);
        ok = ok && set_u64(meta, "adam_steps", vae_adam_steps(adam));
    }
    if (!ok) {
        json_decref(meta);
        return NULL;
    }
    return meta;
}

/* ---------------------------------------------------------------- writing */

static int write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

typedef struct {
    const vae_file_tensor *tensors;
    size_t n;
    const char *header;
    size_t header_len, padded;
} st_writer;

/* length, header padded with spaces (the data then starts 8-byte aligned), tensors */
static vae_status write_safetensors(FILE *f, void *ctx) {
    const st_writer *w = ctx;
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)w->padded >> (8 * i));
    int ok = write_all(f, len_le, 8) && write_all(f, w->header, w->header_len);
    for (size_t i = w->header_len; ok && i < w->padded; i++) ok = fputc(' ', f) != EOF;
    for (size_t i = 0; ok && i < w->n; i++)
        ok = write_all(f, w->tensors[i].data, w->tensors[i].count * sizeof(float));
    return ok ? VAE_OK : VAE_ERR_IO;
}

/* The JSON header: the metadata, then each tensor's dtype, shape and data offsets. */
static char *build_header(vae_model *model, vae_adam *adam, const vae_train_state *state,
                          const vae_file_tensor *tensors, size_t n) {
    json_t *root = json_object(), *meta = build_metadata(model, adam, state);
    int ok = root && meta && json_object_set_new(root, "__metadata__", meta) == 0;
    if (!root || !meta) json_decref(meta);
    uint64_t offset = 0;
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t bytes = (uint64_t)tensors[i].count * sizeof(float);
        json_t *shape = json_array();
        for (int d = 0; shape && d < tensors[i].ndims; d++)
            json_array_append_new(shape, json_integer(tensors[i].dims[d]));
        json_t *entry = json_pack("{s:s, s:o, s:[II]}", "dtype", "F32", "shape", shape,
                                  "data_offsets", (json_int_t)offset, (json_int_t)(offset + bytes));
        ok = entry && json_object_set_new(root, tensors[i].name, entry) == 0;
        offset += bytes;
    }
    char *header = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return header;
}

vae_status vae_model_save(const char *path, const vae_model *model_in, vae_adam *adam,
                          const vae_train_state *state, vae_error *err) {
    vae_model *model = (vae_model *)model_in; /* read only: the table holds views */
    VAE_RETURN_IF(adam && vae_adam_num_params(adam) != vae_model_num_params(model), err,
                  VAE_ERR_INVALID_ARGUMENT, "%s: optimizer and model sizes differ", path);
    vae_file_tensor *tensors = calloc(vae_model_file_tensor_capacity(model), sizeof *tensors);
    VAE_RETURN_IF(!tensors, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
    /* the model's description, less the moments of an optimizer not given */
    size_t listed = vae_model_file_tensors(model, adam, tensors), n = 0;
    for (size_t i = 0; i < listed; i++)
        if (tensors[i].data) tensors[n++] = tensors[i];
    char *header = build_header(model, adam, state, tensors, n);
    if (!header) {
        free(tensors);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "%s: cannot build the header", path);
    }
    size_t header_len = strlen(header);
    st_writer w = {.tensors = tensors, .n = n, .header = header, .header_len = header_len,
                   .padded = (header_len + 7) / 8 * 8};
    vae_status s = vae_write_atomic(path, write_safetensors, &w, err);
    free(header);
    free(tensors);
    return s;
}

/* ---------------------------------------------------------------- reading */

static const char *const KNOWN_DTYPES[] = {"BOOL", "U8",  "I8",  "I16", "U16", "F16", "BF16",
                                           "I32",  "U32", "F32", "F64", "I64", "U64",
                                           "F8_E4M3", "F8_E5M2"};

typedef struct {
    const char *name;
    uint64_t begin, end;
    int ndims;
    uint64_t dims[ST_MAX_DIMS];
} st_entry;

static int by_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static const char *meta_get(json_t *meta, const char *key) {
    json_t *v = json_object_get(meta, key);
    return v ? json_string_value(v) : NULL;
}

/* Unsigned decimal metadata value in [0, max]; a clear message when absent or malformed. */
static vae_status meta_u64(json_t *meta, const char *key, uint64_t max, uint64_t *out,
                           const char *path, vae_error *err) {
    const char *s = meta_get(meta, key);
    VAE_RETURN_IF(!s, err, VAE_ERR_FORMAT, "%s: metadata has no \"%s\"", path, key);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    VAE_RETURN_IF(end == s || *end || errno || s[0] == '-' || v > max, err, VAE_ERR_FORMAT,
                  "%s: metadata \"%s\" is \"%.40s\", expected an integer in 0..%" PRIu64, path,
                  key, s, max);
    *out = v;
    return VAE_OK;
}

static vae_status meta_hex(json_t *meta, const char *key, uint64_t *out, const char *path,
                           vae_error *err) {
    const char *s = meta_get(meta, key);
    VAE_RETURN_IF(!s, err, VAE_ERR_FORMAT, "%s: metadata has no \"%s\"", path, key);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 16);
    VAE_RETURN_IF(end == s || *end || errno || s[0] == '-', err, VAE_ERR_FORMAT,
                  "%s: metadata \"%s\" is \"%.40s\", expected a hexadecimal number", path, key, s);
    *out = v;
    return VAE_OK;
}

static vae_status meta_double(json_t *meta, const char *key, double *out, const char *path,
                              vae_error *err) {
    const char *s = meta_get(meta, key);
    VAE_RETURN_IF(!s, err, VAE_ERR_FORMAT, "%s: metadata has no \"%s\"", path, key);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    VAE_RETURN_IF(end == s || *end || errno || !isfinite(v), err, VAE_ERR_FORMAT,
                  "%s: metadata \"%s\" is \"%.40s\", expected a finite number", path, key, s);
    *out = v;
    return VAE_OK;
}

static vae_status meta_float(json_t *meta, const char *key, float *out, const char *path,
                             vae_error *err) {
    double v;
    VAE_TRY(meta_double(meta, key, &v, path, err));
    *out = (float)v;
    return VAE_OK;
}

static vae_status config_from_metadata(json_t *meta, vae_config *cfg, const char *path,
                                       vae_error *err) {
    memset(cfg, 0, sizeof *cfg);
    const char *format = meta_get(meta, "format");
    VAE_RETURN_IF(!format || strcmp(format, ST_FORMAT) != 0, err, VAE_ERR_FORMAT,
                  "%s: metadata \"format\" is %s%.40s%s, expected \"%s\" (not a vae model file?)",
                  path, format ? "\"" : "", format ? format : "missing", format ? "\"" : "",
                  ST_FORMAT);
    uint64_t v;
    VAE_TRY(meta_u64(meta, "input_dim", 1 << 24, &v, path, err));
    cfg->input_dim = (int)v;
    VAE_TRY(meta_u64(meta, "latent_dim", 1 << 24, &v, path, err));
    cfg->latent_dim = (int)v;
    const char *enc = meta_get(meta, "encoder"), *dec = meta_get(meta, "decoder");
    const char *act = meta_get(meta, "activation"), *lik = meta_get(meta, "likelihood");
    VAE_RETURN_IF(!enc || !dec || !act, err, VAE_ERR_FORMAT,
                  "%s: metadata lacks \"encoder\", \"decoder\" or \"activation\"", path);
    vae_error inner;
    VAE_RETURN_IF(vae_layer_sizes_parse(enc, cfg->encoder, &cfg->n_encoder, &inner) ||
                      vae_layer_sizes_parse(dec, cfg->decoder, &cfg->n_decoder, &inner),
                  err, VAE_ERR_FORMAT, "%s: metadata: %s", path, inner.message);
    VAE_RETURN_IF(vae_activation_parse(act, &cfg->activation, NULL) != VAE_OK, err, VAE_ERR_FORMAT,
                  "%s: metadata: unknown activation \"%.40s\"", path, act);
    VAE_RETURN_IF(!lik || vae_likelihood_parse(lik, &cfg->likelihood, NULL) != VAE_OK, err,
                  VAE_ERR_FORMAT,
                  "%s: metadata: likelihood %s%.40s%s is not one of bernoulli, gaussian, poisson",
                  path, lik ? "\"" : "", lik ? lik : "missing", lik ? "\"" : "");
    const char *conv = meta_get(meta, "conv"), *image = meta_get(meta, "image_shape");
    if (conv || image) {
        char tail;
        VAE_RETURN_IF(!conv || !image ||
                          sscanf(image, "%d,%d,%d%c", &cfg->image_channels, &cfg->image_rows,
                                 &cfg->image_cols, &tail) != 3,
                      err, VAE_ERR_FORMAT, "%s: metadata: \"conv\" needs \"image_shape\" as "
                      "CHANNELS,ROWS,COLS", path);
        VAE_RETURN_IF(vae_conv_layers_parse(conv, cfg, &inner) != VAE_OK, err, VAE_ERR_FORMAT,
                      "%s: metadata: %s", path, inner.message);
    }
    const char *missing = meta_get(meta, "missing");
    VAE_RETURN_IF(missing && strcmp(missing, "mask") != 0, err, VAE_ERR_FORMAT,
                  "%s: metadata \"missing\" is \"%.40s\", expected \"mask\"", path, missing);
    cfg->missing = missing != NULL;
    if (json_object_get(meta, "classes")) {
        uint64_t classes;
        VAE_TRY(meta_u64(meta, "classes", 256, &classes, path, err));
        cfg->n_classes = (int)classes;
    }
    if (cfg->likelihood == VAE_LIK_GAUSSIAN) {
        const char *var = meta_get(meta, "variance");
        VAE_RETURN_IF(!var || vae_variance_parse(var, &cfg->variance, NULL) != VAE_OK, err,
                      VAE_ERR_FORMAT, "%s: metadata: a gaussian likelihood needs \"variance\" "
                      "(fixed, dim or sample)", path);
        VAE_TRY(meta_float(meta, "sigma", &cfg->sigma, path, err));
        VAE_TRY(meta_float(meta, "variance_floor", &cfg->variance_floor, path, err));
    }
    VAE_RETURN_IF(vae_config_validate(cfg, &inner) != VAE_OK, err, VAE_ERR_FORMAT,
                  "%s: metadata: %s", path, inner.message);
    uint64_t hash;
    VAE_TRY(meta_hex(meta, "config_hash", &hash, path, err));
    VAE_RETURN_IF(hash != vae_config_hash(cfg), err, VAE_ERR_FORMAT,
                  "%s: metadata \"config_hash\" does not match the architecture it describes",
                  path);
    return VAE_OK;
}

static vae_status state_from_metadata(json_t *meta, vae_train_state *st, const char *path,
                                      vae_error *err) {
    memset(st, 0, sizeof *st);
    const char *opt = meta_get(meta, "optimizer");
    st->has_optimizer = opt && strcmp(opt, "adam") == 0;
    if (st->has_optimizer)
        VAE_TRY(meta_u64(meta, "adam_steps", UINT64_MAX, &st->optimizer_steps, path, err));
    const char *preset = meta_get(meta, "preset"), *shape = meta_get(meta, "data_shape");
    if (!preset && !shape && !json_object_get(meta, "seed")) return VAE_OK; /* weights only */
    if (preset) snprintf(st->preset, sizeof st->preset, "%s", preset);
    if (shape) {
        char tail;
        VAE_RETURN_IF(sscanf(shape, "%d,%d%c", &st->data_rows, &st->data_cols, &tail) != 2 ||
                          st->data_rows < 0 || st->data_cols < 0 || st->data_rows > 65535 ||
                          st->data_cols > 65535,
                      err, VAE_ERR_FORMAT, "%s: metadata \"data_shape\" is \"%.40s\", expected "
                      "ROWS,COLS", path, shape);
    }
    uint64_t v;
    VAE_TRY(meta_u64(meta, "seed", UINT64_MAX, &st->seed, path, err));
    VAE_TRY(meta_u64(meta, "batch_size", 1 << 20, &v, path, err));
    st->batch_size = (int)v;
    VAE_TRY(meta_u64(meta, "epochs", 1000000, &v, path, err));
    st->epochs = (int)v;
    VAE_TRY(meta_u64(meta, "epoch", 1000001, &v, path, err));
    st->position.epoch = (int)v;
    VAE_TRY(meta_u64(meta, "step_in_epoch", UINT64_MAX, &st->position.step_in_epoch, path, err));
    vae_loss *so_far = &st->position.epoch_so_far;
    /* the epoch's running sums; a file from before they were kept has them only at 0 */
    if (st->position.step_in_epoch > 0 || json_object_get(meta, "epoch_recon_sum")) {
        VAE_TRY(meta_double(meta, "epoch_recon_sum", &so_far->recon, path, err));
        VAE_TRY(meta_double(meta, "epoch_kl_sum", &so_far->kl, path, err));
        VAE_TRY(meta_u64(meta, "epoch_samples", UINT64_MAX, &v, path, err));
        so_far->count = (size_t)v;
    }
    VAE_TRY(meta_hex(meta, "data_hash", &st->data_hash, path, err));
    /* the objective: absent in files written before it could be chosen, which trained the ELBO */
    st->beta = 1.0f;
    if (json_object_get(meta, "beta")) VAE_TRY(meta_float(meta, "beta", &st->beta, path, err));
    if (json_object_get(meta, "free_bits"))
        VAE_TRY(meta_float(meta, "free_bits", &st->free_bits, path, err));
    if (json_object_get(meta, "kl_warmup"))
        VAE_TRY(meta_u64(meta, "kl_warmup", UINT64_MAX, &st->kl_warmup, path, err));
    if (json_object_get(meta, "iwae_k")) {
        uint64_t k;
        VAE_TRY(meta_u64(meta, "iwae_k", 1u << 20, &k, path, err));
        st->iwae_k = (int)k;
    }
    VAE_RETURN_IF(!(st->beta >= 0) || !(st->free_bits >= 0), err, VAE_ERR_FORMAT,
                  "%s: metadata: beta and free_bits must be >= 0", path);
    return VAE_OK;
}

/* Checks one tensor entry of the header; fills e. */
static vae_status check_entry(const char *path, const char *name, json_t *value,
                              uint64_t data_len, st_entry *e, vae_error *err) {
    VAE_RETURN_IF(!json_is_object(value), err, VAE_ERR_FORMAT,
                  "%s: header entry \"%.60s\" is not an object", path, name);
    json_t *dtype = json_object_get(value, "dtype"), *shape = json_object_get(value, "shape");
    json_t *offsets = json_object_get(value, "data_offsets");
    VAE_RETURN_IF(!json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offsets) ||
                      json_object_size(value) != 3,
                  err, VAE_ERR_FORMAT,
                  "%s: tensor \"%.60s\" needs exactly \"dtype\" (string), \"shape\" (array) and "
                  "\"data_offsets\" (array)", path, name);
    const char *dt = json_string_value(dtype);
    int known = 0;
    for (size_t i = 0; i < sizeof KNOWN_DTYPES / sizeof *KNOWN_DTYPES; i++)
        known |= strcmp(dt, KNOWN_DTYPES[i]) == 0;
    VAE_RETURN_IF(!known, err, VAE_ERR_FORMAT, "%s: tensor \"%.60s\" has unknown dtype \"%.20s\"",
                  path, name, dt);
    VAE_RETURN_IF(strcmp(dt, "F32") != 0, err, VAE_ERR_FORMAT,
                  "%s: tensor \"%.60s\" has dtype %s; vae reads F32 only", path, name, dt);
    size_t ndims = json_array_size(shape);
    VAE_RETURN_IF(ndims > ST_MAX_DIMS, err, VAE_ERR_FORMAT,
                  "%s: tensor \"%.60s\" has %zu dimensions, at most %d supported", path, name,
                  ndims, ST_MAX_DIMS);
    e->name = name;
    e->ndims = (int)ndims;
    uint64_t count = 1, bytes;
    for (size_t i = 0; i < ndims; i++) {
        json_t *d = json_array_get(shape, i);
        VAE_RETURN_IF(!json_is_integer(d) || json_integer_value(d) < 0, err, VAE_ERR_FORMAT,
                      "%s: tensor \"%.60s\": shape[%zu] is not a non-negative integer", path, name,
                      i);
        e->dims[i] = (uint64_t)json_integer_value(d);
        VAE_RETURN_IF(__builtin_mul_overflow(count, e->dims[i], &count), err, VAE_ERR_FORMAT,
                      "%s: tensor \"%.60s\": the shape's element count overflows", path, name);
    }
    VAE_RETURN_IF(__builtin_mul_overflow(count, (uint64_t)sizeof(float), &bytes), err,
                  VAE_ERR_FORMAT, "%s: tensor \"%.60s\": its byte size overflows", path, name);
    json_t *b = json_array_get(offsets, 0), *en = json_array_get(offsets, 1);
    VAE_RETURN_IF(json_array_size(offsets) != 2 || !json_is_integer(b) || !json_is_integer(en) ||
                      json_integer_value(b) < 0 || json_integer_value(en) < json_integer_value(b),
                  err, VAE_ERR_FORMAT,
                  "%s: tensor \"%.60s\": data_offsets must be [begin, end] with 0 <= begin <= end",
                  path, name);
    e->begin = (uint64_t)json_integer_value(b);
    e->end = (uint64_t)json_integer_value(en);
    VAE_RETURN_IF(e->end > data_len, err, VAE_ERR_FORMAT,
                  "%s: tensor \"%.60s\" ends at byte %" PRIu64 " of a %" PRIu64
                  "-byte data section (truncated file?)", path, name, e->end, data_len);
    VAE_RETURN_IF(e->end - e->begin != bytes, err, VAE_ERR_FORMAT,
                  "%s: tensor \"%.60s\": data_offsets span %" PRIu64 " bytes, its shape needs %"
                  PRIu64, path, name, e->end - e->begin, bytes);
    return VAE_OK;
}

typedef struct {
    FILE *f;
    char *header;
    json_t *root;
    st_entry *entries;
    size_t n_entries;
    uint64_t header_len;
    vae_file_tensor *tensors;
    vae_model *model;
    vae_adam *adam;
} load_state;

static void load_state_free(load_state *ls) {
    if (ls->f) fclose(ls->f);
    free(ls->header);
    json_decref(ls->root);
    free(ls->entries);
    free(ls->tensors);
    vae_model_free(ls->model);
    vae_adam_free(ls->adam);
}

static vae_status read_entries(const char *path, load_state *ls, uint64_t data_len,
                               vae_error *err);

/* The header: its length word, the JSON (metadata of strings), every tensor entry checked, and
 * the entries' offsets tiling the data section exactly. */
static vae_status read_header(const char *path, load_state *ls, json_t **meta_out,
                              vae_error *err) {
    ls->f = fopen(path, "rb");
    VAE_RETURN_IF(!ls->f, err, VAE_ERR_OPEN, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    VAE_RETURN_IF(fstat(fileno(ls->f), &sb) != 0 || !S_ISREG(sb.st_mode), err, VAE_ERR_FORMAT,
                  "%s: not a regular file", path);
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char len_le[8];
    VAE_RETURN_IF(size < 8 || fread(len_le, 1, 8, ls->f) != 8, err, VAE_ERR_FORMAT,
                  "%s: %" PRIu64 " bytes, too short for the 8-byte header length", path, size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | len_le[i];
    VAE_RETURN_IF(header_len > ST_MAX_HEADER, err, VAE_ERR_FORMAT,
                  "%s: header length %" PRIu64 " is above the 100 MB limit (not safetensors?)",
                  path, header_len);
    VAE_RETURN_IF(header_len > size - 8, err, VAE_ERR_FORMAT,
                  "%s: header length %" PRIu64 " is beyond the file's %" PRIu64 " bytes", path,
                  header_len, size);
    ls->header_len = header_len;
    ls->header = malloc(header_len + 1);
    VAE_RETURN_IF(!ls->header, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
    VAE_RETURN_IF(fread(ls->header, 1, header_len, ls->f) != header_len, err, VAE_ERR_IO,
                  "%s: read error in the header", path);
    json_error_t jerr;
    /* jansson rejects invalid UTF-8 and duplicate keys here, and nesting beyond 2048 levels */
    ls->root = json_loadb(ls->header, header_len, JSON_REJECT_DUPLICATES, &jerr);
    VAE_RETURN_IF(!ls->root, err, VAE_ERR_FORMAT, "%s: header JSON, byte %d: %s", path,
                  jerr.position + 8, jerr.text);
    VAE_RETURN_IF(!json_is_object(ls->root), err, VAE_ERR_FORMAT,
                  "%s: the header is not a JSON object", path);
    json_t *meta = json_object_get(ls->root, "__metadata__");
    VAE_RETURN_IF(!json_is_object(meta), err, VAE_ERR_FORMAT,
                  "%s: the header has no \"__metadata__\" object (not a vae model file)", path);
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        VAE_RETURN_IF(!json_is_string(value), err, VAE_ERR_FORMAT,
                      "%s: metadata \"%.60s\" is not a string", path, key);
    }
    *meta_out = meta;
    return read_entries(path, ls, size - 8 - header_len, err);
}

/* Every tensor entry, then their offsets: sorted, they must tile the data exactly. */
static vae_status read_entries(const char *path, load_state *ls, uint64_t data_len,
                               vae_error *err) {
    const size_t n = json_object_size(ls->root) - 1;
    ls->n_entries = n;
    ls->entries = calloc(n ? n : 1, sizeof *ls->entries);
    VAE_RETURN_IF(!ls->entries, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
    size_t k = 0;
    const char *key;
    json_t *value;
    json_object_foreach(ls->root, key, value) {
        if (strcmp(key, "__metadata__") == 0) continue;
        VAE_TRY(check_entry(path, key, value, data_len, &ls->entries[k++], err));
    }
    qsort(ls->entries, n, sizeof *ls->entries, by_begin);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        VAE_RETURN_IF(ls->entries[i].begin < at, err, VAE_ERR_FORMAT,
                      "%s: tensors \"%.60s\" and \"%.60s\" overlap", path,
                      ls->entries[i - 1].name, ls->entries[i].name);
        VAE_RETURN_IF(ls->entries[i].begin > at, err, VAE_ERR_FORMAT,
                      "%s: %" PRIu64 " unused bytes before tensor \"%.60s\"", path,
                      ls->entries[i].begin - at, ls->entries[i].name);
        at = ls->entries[i].end;
    }
    VAE_RETURN_IF(at != data_len, err, VAE_ERR_FORMAT,
                  "%s: the tensors cover %" PRIu64 " bytes but the data section has %" PRIu64
                  " (trailing bytes)", path, at, data_len);
    return VAE_OK;
}

/* A checkpoint's optimizer: its options and step count from the metadata. */
static vae_status read_optimizer(const char *path, json_t *meta, load_state *ls,
                                 vae_error *err) {
    vae_adam_options ao;
    vae_adam_options_default(&ao);
    const char *opt = meta_get(meta, "optimizer");
    VAE_RETURN_IF(!opt || strcmp(opt, "adam") != 0, err, VAE_ERR_FORMAT,
                  "%s: holds no optimizer state (a model file, not a training checkpoint)", path);
    VAE_TRY(meta_float(meta, "adam_lr", &ao.lr, path, err));
    VAE_TRY(meta_float(meta, "adam_beta1", &ao.beta1, path, err));
    VAE_TRY(meta_float(meta, "adam_beta2", &ao.beta2, path, err));
    VAE_TRY(meta_float(meta, "adam_epsilon", &ao.epsilon, path, err));
    uint64_t steps;
    VAE_TRY(meta_u64(meta, "adam_steps", UINT64_MAX, &steps, path, err));
    vae_error inner;
    VAE_RETURN_IF(vae_adam_create(&ls->adam, vae_model_num_params(ls->model), &ao, &inner), err,
                  VAE_ERR_FORMAT, "%s: metadata: %s", path, inner.message);
    vae_adam_set_steps(ls->adam, steps);
    return VAE_OK;
}

/* The file's entry of a tensor of the model's description, or NULL. */
static const st_entry *entry_named(const load_state *ls, const char *name) {
    for (size_t j = 0; j < ls->n_entries; j++)
        if (strcmp(ls->entries[j].name, name) == 0) return &ls->entries[j];
    return NULL;
}

/* One tensor: its entry's shape checked against the description, its values read and finite. */
static vae_status read_tensor(const char *path, load_state *ls, const vae_file_tensor *t,
                              const st_entry *e, vae_error *err) {
    int dims_ok = e->ndims == t->ndims;
    for (int d = 0; dims_ok && d < t->ndims; d++) dims_ok = e->dims[d] == (uint64_t)t->dims[d];
    char expected[64];
    VAE_RETURN_IF(!dims_ok, err, VAE_ERR_FORMAT,
                  "%s: tensor \"%s\" has the wrong shape for the architecture (expected %s)",
                  path, t->name, shape_text(t, expected, sizeof expected));
    VAE_RETURN_IF(fseeko(ls->f, (off_t)(8 + ls->header_len + e->begin), SEEK_SET) != 0 ||
                      fread(t->data, sizeof(float), t->count, ls->f) != t->count,
                  err, VAE_ERR_IO, "%s: read error in tensor \"%s\"", path, t->name);
    for (size_t v = 0; v < t->count; v++) /* a NaN weight would give plausible nonsense */
        VAE_RETURN_IF(!isfinite(t->data[v]), err, VAE_ERR_FORMAT,
                      "%s: tensor \"%s\" holds %g at index %zu; a model holds finite values",
                      path, t->name, (double)t->data[v], v);
    return VAE_OK;
}

/* The tensors of the model's description, each one present and read; the optimizer's moments
 * present in a checkpoint but not asked for are skipped; no tensor outside the description. */
static vae_status read_tensors(const char *path, load_state *ls, vae_error *err) {
    ls->tensors = calloc(vae_model_file_tensor_capacity(ls->model), sizeof *ls->tensors);
    VAE_RETURN_IF(!ls->tensors, err, VAE_ERR_NO_MEMORY, "%s: out of memory", path);
    const size_t n = vae_model_file_tensors(ls->model, ls->adam, ls->tensors);
    size_t found = 0, moments = 0, moments_found = 0;
    for (size_t i = 0; i < n; i++) {
        const vae_file_tensor *t = &ls->tensors[i];
        const st_entry *e = entry_named(ls, t->name);
        VAE_RETURN_IF(!e && t->data, err, VAE_ERR_FORMAT, "%s: tensor \"%s\" is missing%s", path,
                      t->name, t->role >= TENSOR_ADAM_M ? " (a checkpoint's optimizer moment)" : "");
        found += e != NULL;
        moments += t->role >= TENSOR_ADAM_M, moments_found += e && t->role >= TENSOR_ADAM_M;
        if (e && t->data) VAE_TRY(read_tensor(path, ls, t, e, err));
    }
    /* moments not asked for: a model file has none, a checkpoint all of them */
    VAE_RETURN_IF(moments_found && moments_found != moments, err, VAE_ERR_FORMAT,
                  "%s: holds %zu of the %zu optimizer moments its architecture has", path,
                  moments_found, moments);
    for (size_t j = 0; found != ls->n_entries && j < ls->n_entries; j++) {
        int listed = 0;
        for (size_t i = 0; i < n && !listed; i++)
            listed = strcmp(ls->tensors[i].name, ls->entries[j].name) == 0;
        VAE_RETURN_IF(!listed, err, VAE_ERR_FORMAT, "%s: unexpected tensor \"%.60s\"", path,
                      ls->entries[j].name);
    }
    return VAE_OK;
}

static vae_status load(const char *path, vae_model **model_out, vae_adam **adam_out,
                       vae_train_state *state_out, load_state *ls, vae_error *err) {
    json_t *meta = NULL;
    VAE_TRY(read_header(path, ls, &meta, err));
    /* the architecture, then the tensors its description lists */
    vae_config cfg;
    VAE_TRY(config_from_metadata(meta, &cfg, path, err));
    vae_train_state st;
    VAE_TRY(state_from_metadata(meta, &st, path, err));
    VAE_TRY(vae_model_create(&ls->model, &cfg, 0, err));
    if (adam_out) VAE_TRY(read_optimizer(path, meta, ls, err));
    const char *standardized = meta_get(meta, "standardize");
    if (standardized && strcmp(standardized, "1") == 0)
        VAE_FORWARD_IF_ERROR(vae_model_reserve_standardization(ls->model, err), err, "%s", path);
    VAE_TRY(read_tensors(path, ls, err));
    if (vae_model_data_mean(ls->model)) { /* checks the values read */
        vae_error inner = {{0}};
        VAE_RETURN_IF(vae_model_set_standardization(ls->model, vae_model_data_mean(ls->model),
                                                    vae_model_data_std(ls->model), &inner) != VAE_OK,
                      err, VAE_ERR_FORMAT, "%s: %s", path, inner.message);
    }
    *model_out = ls->model, ls->model = NULL;
    if (adam_out) *adam_out = ls->adam, ls->adam = NULL;
    if (state_out) *state_out = st;
    return VAE_OK;
}

vae_status vae_model_load(const char *path, vae_model **model, vae_adam **adam,
                          vae_train_state *state, vae_error *err) {
    *model = NULL;
    if (adam) *adam = NULL;
    load_state ls = {0};
    vae_status s = load(path, model, adam, state, &ls, err);
    load_state_free(&ls);
    return s;
}

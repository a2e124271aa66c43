/* test_checkpoint.c — model files: round trips, the exact safetensors layout, bit-identical
 * resume, a full disk that must not hurt the previous file, and a corpus of bad files that must
 * each give one clear error. */
#include "check.h"
#include "vae.h"

#include <dirent.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static vae_model *tiny_model(uint64_t seed) {
    vae_config cfg = {.input_dim = 16, .latent_dim = 2, .n_encoder = 1, .encoder = {12},
                      .n_decoder = 2, .decoder = {6, 12}, .activation = VAE_ACT_ELU};
    vae_model *m = NULL;
    vae_error err;
    vae_model_create(&m, &cfg, seed, &err);
    return m;
}

static vae_dataset *make_data(size_t n) {
    vae_dataset *ds = calloc(1, sizeof *ds);
    ds->count = n, ds->dim = 16, ds->rows = 4, ds->cols = 4;
    ds->x = malloc(n * 16 * sizeof(float));
    vae_rng r = vae_rng_make(11, 0);
    for (size_t i = 0; i < n * 16; i++) ds->x[i] = vae_rng_uniform(&r);
    return ds;
}

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(*len + 1);
    if (fread(buf, 1, *len, f) != *len) *len = 0;
    fclose(f);
    return buf;
}

static void test_round_trip(void) {
    vae_model *m = tiny_model(1), *back = NULL;
    vae_error err = {{0}};
    vae_train_state st = {.preset = "", .data_rows = 4, .data_cols = 4, .seed = 99,
                          .batch_size = 8, .epochs = 5, .position = {3, 2, {1234.5678901234567, 0.1, 17}},
                          .data_hash = 0xabcULL};
    CHECK(vae_model_save(check_path("m.safetensors"), m, NULL, &st, &err) == VAE_OK, "%s",
          err.message);
    vae_train_state got;
    CHECK(vae_model_load(check_path("m.safetensors"), &back, NULL, &got, &err) == VAE_OK, "%s",
          err.message);
    if (!back) return;
    CHECK(vae_config_hash(vae_model_config(back)) == vae_config_hash(vae_model_config(m)),
          "architecture");
    CHECK(memcmp(vae_model_params(back), vae_model_params(m),
                 vae_model_num_params(m) * sizeof(float)) == 0, "weights bit for bit");
    CHECK(got.seed == 99 && got.batch_size == 8 && got.epochs == 5 && got.position.epoch == 3 &&
          got.position.step_in_epoch == 2 &&
          got.position.epoch_so_far.recon == 1234.5678901234567 &&
          got.position.epoch_so_far.kl == 0.1 && got.position.epoch_so_far.count == 17 &&
          got.data_hash == 0xabc && got.data_rows == 4 &&
          !got.has_optimizer, "state");
    vae_model_free(back);
    vae_adam *adam = NULL;
    CHECK(vae_model_load(check_path("m.safetensors"), &back, &adam, NULL, &err) ==
              VAE_ERR_FORMAT && strstr(err.message, "no optimizer state"),
          "asking a model file for moments: %s", err.message);
    CHECK(back == NULL && adam == NULL, "a failed load hands out nothing");

    /* with the optimizer: moments and step count come back */
    vae_adam_options o;
    vae_adam_options_default(&o);
    o.lr = 3e-4f;
    vae_adam_create(&adam, vae_model_num_params(m), &o, &err);
    for (size_t i = 0; i < vae_model_num_params(m); i++)
        vae_adam_first_moment(adam)[i] = (float)i, vae_adam_second_moment(adam)[i] = 0.5f * i;
    vae_adam_set_steps(adam, 1234);
    CHECK(vae_model_save(check_path("c.safetensors"), m, adam, &st, &err) == VAE_OK, "%s",
          err.message);
    vae_adam *adam_back = NULL;
    CHECK(vae_model_load(check_path("c.safetensors"), &back, &adam_back, &got, &err) == VAE_OK, "%s",
          err.message);
    if (adam_back) {
        CHECK(vae_adam_steps(adam_back) == 1234 && got.has_optimizer &&
              got.optimizer_steps == 1234, "steps");
        CHECK(vae_adam_get_options(adam_back)->lr == 3e-4f, "lr");
        size_t bytes = vae_model_num_params(m) * sizeof(float);
        CHECK(memcmp(vae_adam_first_moment(adam_back), vae_adam_first_moment(adam), bytes) == 0 &&
              memcmp(vae_adam_second_moment(adam_back), vae_adam_second_moment(adam), bytes) == 0,
              "moments");
    }
    /* a checkpoint also opens as a plain model */
    vae_model *plain = NULL;
    CHECK(vae_model_load(check_path("c.safetensors"), &plain, NULL, NULL, &err) == VAE_OK, "%s",
          err.message);
    vae_model_free(plain);
    vae_adam_free(adam), vae_adam_free(adam_back);
    vae_model_free(back), vae_model_free(m);
}

/* The layout the reference reader demands: 8-byte LE length, padded header, string metadata,
 * tensors tiling the rest exactly. */
static void test_strict_layout(void) {
    size_t len;
    unsigned char *raw = slurp(check_path("c.safetensors"), &len);
    CHECK(raw && len > 8, "read");
    if (!raw) return;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | raw[i];
    CHECK(n % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)n);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)raw + 8, n, 0, &jerr);
    CHECK(root != NULL, "header parses: %s", jerr.text);
    if (!root) return;
    json_t *meta = json_object_get(root, "__metadata__"), *v;
    const char *key;
    json_object_foreach(meta, key, v) CHECK(json_is_string(v), "metadata %s is a string", key);
    uint64_t max_end = 0;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        CHECK(!strcmp(json_string_value(json_object_get(v, "dtype")), "F32"), "%s dtype", key);
        uint64_t end = (uint64_t)json_integer_value(json_array_get(json_object_get(v, "data_offsets"), 1));
        if (end > max_end) max_end = end;
    }
    CHECK(8 + n + max_end == len, "file length %zu = 8 + %llu + %llu", len, (unsigned long long)n,
          (unsigned long long)max_end);
    CHECK(json_object_get(root, "adam.m.output.bias") && json_object_get(root, "adam.v.mu.weight"),
          "moments named adam.m.* / adam.v.*");
    json_decref(root);
    free(raw);
}

/* ---- resume */
typedef struct {
    const char *path;
    vae_train_state state;
    int cancel_after; /* steps in this run; 0: never */
    int steps;
} run_ctx;

static vae_status save_cb(void *user, const vae_model *m, vae_adam *adam,
                          vae_train_position pos, vae_error *err) {
    run_ctx *c = user;
    c->state.position = pos;
    return vae_model_save(c->path, m, adam, &c->state, err);
}
static int cancel_cb(void *user, int epoch, size_t step, size_t steps, double loss) {
    (void)epoch, (void)step, (void)steps, (void)loss;
    run_ctx *c = user;
    return c->cancel_after && ++c->steps >= c->cancel_after;
}

static void record_epoch_loss(void *user, const vae_epoch_stats *s) {
    ((double *)user)[s->epoch] = s->train_loss;
}

static void test_resume_is_bit_identical(void) {
    vae_dataset *data = make_data(90); /* 90 / 16 = 6 steps per epoch, the last short */
    vae_train_options opt;
    vae_train_options_default(&opt);
    opt.epochs = 3, opt.batch_size = 16, opt.seed = 5, opt.adam.lr = 2e-3f;
    vae_error err = {{0}};
    vae_model *whole = tiny_model(2);
    double whole_loss[4] = {0};
    opt.on_epoch = record_epoch_loss, opt.user = whole_loss;
    CHECK(vae_train(whole, data, NULL, &opt, &err) == VAE_OK, "%s", err.message);

    for (int cut = 1; cut <= 13; cut += 4) { /* inside epochs, and at an epoch's end (6, 12) */
        vae_model *m = tiny_model(2);
        run_ctx ctx = {.path = check_path("resume.safetensors"), .cancel_after = cut};
        ctx.state.seed = 5, ctx.state.batch_size = 16, ctx.state.epochs = 3;
        vae_train_options o = opt;
        o.checkpoint = save_cb, o.progress = cancel_cb, o.user = &ctx, o.checkpoint_every = 4;
        o.on_epoch = NULL;
        CHECK(vae_train(m, data, NULL, &o, &err) == VAE_ERR_CANCELLED, "cut %d: %s", cut,
              err.message);
        vae_model_free(m);
        vae_adam *adam = NULL;
        vae_train_state st;
        CHECK(vae_model_load(ctx.path, &m, &adam, &st, &err) == VAE_OK, "%s", err.message);
        if (!m) continue;
        vae_train_options r = opt;
        r.resume_adam = adam;
        r.start = st.position;
        double resumed_loss[4] = {0};
        r.user = resumed_loss;
        CHECK(vae_train(m, data, NULL, &r, &err) == VAE_OK, "resume after %d: %s", cut,
              err.message);
        CHECK(memcmp(vae_model_params(m), vae_model_params(whole),
                     vae_model_num_params(m) * sizeof(float)) == 0,
              "stopped after step %d and resumed: weights differ from the uninterrupted run", cut);
        for (int e = st.position.epoch; e <= 3; e++)
            CHECK(resumed_loss[e] == whole_loss[e], "cut %d, epoch %d: loss %.17g, not %.17g",
                  cut, e, resumed_loss[e], whole_loss[e]);
        /* a wrong position for the optimizer's step count is refused */
        vae_train_options bad = r;
        bad.start.step_in_epoch = (bad.start.step_in_epoch + 1) % 6;
        CHECK(vae_train(m, data, NULL, &bad, &err) == VAE_ERR_INVALID_ARGUMENT, "bad position");
        vae_adam_free(adam);
        vae_model_free(m);
    }
    vae_model_free(whole);
    vae_dataset_free(data);
}

static int count_temporaries(void) {
    DIR *d = opendir(check_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static void test_full_disk_keeps_previous_file(void) {
    vae_config cfg;
    vae_error err = {{0}};
    vae_config_preset(&cfg, "seed", 784, &err);
    vae_model *m;
    vae_model_create(&m, &cfg, 3, &err);
    const char *p = check_path("big.safetensors");
    CHECK(vae_model_save(p, m, NULL, NULL, &err) == VAE_OK, "%s", err.message);
    size_t len0;
    unsigned char *before = slurp(p, &len0);
    vae_model_params(m)[0] += 1.0f; /* the next save has other bytes */
    /* a file size limit makes write fail part way, as a full disk does */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim = {200000, RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    lim.rlim_max = old.rlim_max;
    setrlimit(RLIMIT_FSIZE, &lim);
    vae_status s = vae_model_save(p, m, NULL, NULL, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(s == VAE_ERR_IO && strstr(err.message, "write failed") &&
          strstr(err.message, "untouched"), "%s: %s", vae_status_str(s), err.message);
    size_t len1;
    unsigned char *after = slurp(p, &len1);
    CHECK(after && len0 == len1 && memcmp(before, after, len0) == 0, "previous file intact");
    CHECK(count_temporaries() == 0, "no temporary file left behind");
    vae_model *back = NULL;
    CHECK(vae_model_load(p, &back, NULL, NULL, &err) == VAE_OK, "still loads: %s", err.message);
    vae_model_free(back);
    CHECK(vae_model_save("/nonexistent-dir/x.safetensors", m, NULL, NULL, &err) == VAE_ERR_CREATE,
          "%s", err.message);
    free(before), free(after);
    vae_model_free(m);
}

/* ---- the bad-file corpus */

/* Writes a safetensors file with this header text (padded) and `data` bytes. */
static void write_st(const char *name, const char *header, const void *data, size_t data_len,
                     uint64_t claimed_len) {
    FILE *f = fopen(check_path(name), "wb");
    size_t n = strlen(header), padded = (n + 7) / 8 * 8;
    uint64_t len = claimed_len ? claimed_len : padded;
    for (int i = 0; i < 8; i++) fputc((int)(len >> (8 * i)) & 0xff, f);
    fwrite(header, 1, n, f);
    for (size_t i = n; i < padded; i++) fputc(' ', f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
}

static char *good_header;
static unsigned char *good_data;
static size_t good_data_len;

static void load_good(void) {
    size_t len;
    unsigned char *raw = slurp(check_path("m.safetensors"), &len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | raw[i];
    good_header = calloc(n + 1, 1);
    memcpy(good_header, raw + 8, n);
    for (size_t i = n; i > 0 && good_header[i - 1] == ' '; i--) good_header[i - 1] = '\0';
    good_data_len = len - 8 - n;
    good_data = malloc(good_data_len);
    memcpy(good_data, raw + 8 + n, good_data_len);
    free(raw);
}

/* The good header with the first `from` replaced by `to`. */
static char *edit(const char *from, const char *to) {
    const char *at = strstr(good_header, from);
    if (!at) {
        printf("#   corpus: \"%s\" not in the header\n", from);
        return strdup(good_header);
    }
    size_t lf = strlen(from), lt = strlen(to), pre = (size_t)(at - good_header);
    char *out = malloc(strlen(good_header) - lf + lt + 1);
    memcpy(out, good_header, pre);
    memcpy(out + pre, to, lt);
    strcpy(out + pre + lt, at + lf);
    return out;
}

static void expect_bad(const char *name, const char *needle) {
    vae_model *m = (vae_model *)1;
    vae_error err = {{0}};
    vae_status s = vae_model_load(check_path(name), &m, NULL, NULL, &err);
    CHECK(s == VAE_ERR_FORMAT || s == VAE_ERR_IO, "%s: status %s (%s)", name, vae_status_str(s),
          err.message);
    CHECK(m == NULL, "%s: no model returned", name);
    CHECK(strstr(err.message, name) != NULL, "%s: message does not name the file: %s", name,
          err.message);
    CHECK(strstr(err.message, needle) != NULL, "%s: message lacks \"%s\": %s", name, needle,
          err.message);
    CHECK(strchr(err.message, '\n') == NULL, "%s: one line", name);
}

static void corpus(const char *name, const char *from, const char *to, const char *needle) {
    char *h = edit(from, to);
    write_st(name, h, good_data, good_data_len, 0);
    free(h);
    expect_bad(name, needle);
}

static void test_bad_files(void) {
    load_good();
    /* sanity: the rewriter reproduces a good file */
    write_st("same.safetensors", good_header, good_data, good_data_len, 0);
    vae_model *m = NULL;
    vae_error err = {{0}};
    CHECK(vae_model_load(check_path("same.safetensors"), &m, NULL, NULL, &err) == VAE_OK,
          "rewritten good file: %s", err.message);
    vae_model_free(m);

    write_st("truncated", good_header, good_data, good_data_len - 5, 0);
    expect_bad("truncated", "truncated");
    write_st("trailing", good_header, good_data, good_data_len, 0);
    FILE *f = fopen(check_path("trailing"), "ab");
    fputs("xyz", f);
    fclose(f);
    expect_bad("trailing", "trailing");
    write_st("lying-length", good_header, good_data, good_data_len, 5000000);
    expect_bad("lying-length", "beyond the file");
    write_st("huge-length", good_header, good_data, good_data_len, (uint64_t)1 << 40);
    expect_bad("huge-length", "100 MB");
    f = fopen(check_path("tiny"), "wb");
    fputs("abc", f);
    fclose(f);
    expect_bad("tiny", "too short");
    write_st("not-json", "{\"__metadata__\": {\"format\": \"vae-1\"", good_data, good_data_len, 0);
    expect_bad("not-json", "header JSON");
    write_st("not-object", "[1, 2, 3]", NULL, 0, 0);
    expect_bad("not-object", "not a JSON object");
    corpus("wrong-dtype", "\"F32\"", "\"F16\"", "F32 only");
    corpus("unknown-dtype", "\"F32\"", "\"Q4\"", "unknown dtype");
    corpus("overflow-shape", "\"shape\":[12,16]", "\"shape\":[4611686018427387904,16]",
           "overflows");
    corpus("negative-shape", "\"shape\":[12,16]", "\"shape\":[-12,16]", "non-negative");
    corpus("overlap", "\"data_offsets\":[768,816]", "\"data_offsets\":[760,808]", "overlap");
    corpus("wrong-span", "\"data_offsets\":[768,816]", "\"data_offsets\":[768,812]", "span");
    corpus("offset-outside", "\"data_offsets\":[768,816]", "\"data_offsets\":[99999768,99999816]",
           "ends at byte");
    corpus("meta-not-string", "\"seed\":\"99\"", "\"seed\":99", "not a string");
    corpus("bad-hash", "\"activation\":\"elu\"", "\"activation\":\"tanh\"", "config_hash");
    corpus("bad-number", "\"batch_size\":\"8\"", "\"batch_size\":\"8x\"", "batch_size");
    corpus("wrong-format", "\"format\":\"vae-1\"", "\"format\":\"gguf\"", "format");
    corpus("extra-field", "\"dtype\":\"F32\",", "\"dtype\":\"F32\",\"x\":1,", "exactly");
    corpus("duplicate-key", "\"seed\":\"99\"", "\"seed\":\"99\",\"seed\":\"98\"", "header JSON");
    corpus("non-utf8", "\"producer\":\"vae", "\"producer\":\"\xff\xfe", "header JSON");
    corpus("no-metadata", "__metadata__", "__metadata_x", "__metadata__");
    /* a tensor renamed: its data is there, the name the architecture needs is not */
    corpus("missing-tensor", "\"output.bias\"", "\"output.biaz\"", "output.bias");
    /* shapes swapped: offsets and sizes stay consistent, the architecture does not */
    corpus("wrong-shape", "\"shape\":[12,16]", "\"shape\":[16,12]", "wrong shape");

    /* nesting 100000 deep must be refused, not overflow the stack */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 64);
    strcpy(deep, "{\"__metadata__\":{},\"x\":");
    size_t at = strlen(deep);
    for (size_t i = 0; i < depth; i++) deep[at++] = '[';
    for (size_t i = 0; i < depth; i++) deep[at++] = ']';
    deep[at++] = '}';
    deep[at] = '\0';
    write_st("deep-nesting", deep, NULL, 0, 0);
    free(deep);
    expect_bad("deep-nesting", "header JSON");
    free(good_header), free(good_data);
}

/* Replaces every float of the file equal to `from` with `to`; returns how many. */
static int patch_floats(const char *path, float from, float to) {
    size_t len;
    unsigned char *buf = slurp(path, &len);
    int n = 0;
    for (size_t i = 0; buf && i + 4 <= len; i++)
        if (memcmp(buf + i, &from, 4) == 0) memcpy(buf + i, &to, 4), n++, i += 3;
    FILE *f = buf ? fopen(path, "wb") : NULL;
    if (f) fwrite(buf, 1, len, f), fclose(f);
    free(buf);
    return n;
}

/* A standardized run's checkpoint opens as a plain model too (it once failed with
 * 'unexpected tensor "standardize.mean"'); a bad standard deviation in the file gives a clean
 * message, also to a caller without an error struct; a NaN weight is refused by name. */
static void test_standardized_checkpoint_and_bad_values(void) {
    vae_model *m = tiny_model(4), *back = NULL;
    vae_adam *adam = NULL;
    vae_error err = {{0}};
    float mean[16], std[16];
    for (int i = 0; i < 16; i++) mean[i] = 0.25f, std[i] = 0.123456f;
    CHECK(vae_model_set_standardization(m, mean, std, &err) == VAE_OK, "%s", err.message);
    vae_adam_options ao;
    vae_adam_options_default(&ao);
    vae_adam_create(&adam, vae_model_num_params(m), &ao, &err);
    const char *path = check_path("std.safetensors");
    CHECK(vae_model_save(path, m, adam, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK(vae_model_load(path, &back, NULL, NULL, &err) == VAE_OK, "without Adam: %s",
          err.message);
    CHECK(back && vae_model_data_std(back) && vae_model_data_std(back)[3] == 0.123456f,
          "standardization kept");
    vae_model_free(back), back = NULL;
    CHECK(patch_floats(path, 0.123456f, -1.0f) == 16, "patched the std");
    CHECK(vae_model_load(path, &back, NULL, NULL, &err) == VAE_ERR_FORMAT &&
              strstr(err.message, "std.safetensors: standardization of value 1") != NULL,
          "bad std: %s", err.message);
    CHECK(vae_model_load(path, &back, NULL, NULL, NULL) == VAE_ERR_FORMAT && !back,
          "bad std without an error struct");
    /* a weight set to NaN: a model file of m, with one known value patched */
    const vae_tensor_info t = vae_model_tensor(m, vae_model_find_tensor(m, "decoder.1.bias"));
    vae_model_params(m)[t.offset + 2] = 0.654321f;
    CHECK(vae_model_save(path, m, NULL, NULL, &err) == VAE_OK, "%s", err.message);
    CHECK(patch_floats(path, 0.654321f, NAN) == 1, "patched a bias");
    CHECK(vae_model_load(path, &back, NULL, NULL, &err) == VAE_ERR_FORMAT &&
              strstr(err.message, "tensor \"decoder.1.bias\" holds nan at index 2") != NULL,
          "NaN weight: %s", err.message);
    vae_adam_free(adam);
    vae_model_free(m);
}

/* The tensors a file may hold are the model's description (model.c): a checkpoint whose
 * optimizer moments are incomplete is refused even when the moments are not asked for, and
 * when they are, the missing one is named. */
static void test_tensors_follow_the_description(void) {
    vae_model *m = tiny_model(5), *back = NULL;
    vae_adam *adam = NULL;
    vae_error err = {{0}};
    vae_adam_options ao;
    vae_adam_options_default(&ao);
    vae_adam_create(&adam, vae_model_num_params(m), &ao, &err);
    const char *path = check_path("moments.safetensors");
    CHECK(vae_model_save(path, m, adam, NULL, &err) == VAE_OK, "%s", err.message);
    size_t len;
    unsigned char *raw = slurp(path, &len);
    /* one moment renamed (same length: the layout stays valid) */
    char *at = raw ? strstr((char *)raw + 8, "\"adam.v.output.bias\"") : NULL;
    CHECK(at != NULL, "the checkpoint holds adam.v.output.bias");
    if (at) memcpy(at + 1, "adam.w", 6);
    FILE *f = raw ? fopen(path, "wb") : NULL;
    if (f) fwrite(raw, 1, len, f), fclose(f);
    CHECK(vae_model_load(path, &back, NULL, NULL, &err) == VAE_ERR_FORMAT &&
              strstr(err.message, "optimizer moments") != NULL,
          "incomplete moments: %s", err.message);
    vae_adam *loaded = NULL; /* asked for, the missing moment is named */
    CHECK(vae_model_load(path, &back, &loaded, NULL, &err) == VAE_ERR_FORMAT &&
              strstr(err.message, "\"adam.v.output.bias\" is missing") != NULL,
          "a missing moment: %s", err.message);
    free(raw);
    vae_model_free(back);
    vae_adam_free(adam);
    vae_model_free(m);
}

int main(void) {
    if (!check_make_dir("ckpt")) return 1;
    vae_set_num_threads(1);
    RUN(test_round_trip);
    RUN(test_strict_layout);
    RUN(test_resume_is_bit_identical);
    RUN(test_full_disk_keeps_previous_file);
    RUN(test_bad_files);
    RUN(test_standardized_checkpoint_and_bad_values);
    RUN(test_tensors_follow_the_description);
    check_remove_dir();
    return CHECK_SUMMARY();
}

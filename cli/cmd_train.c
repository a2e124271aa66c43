/* cmd_train.c — `vae train`: read data, train, report each epoch, write pictures. */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#define PATH_SIZE 4096

static volatile sig_atomic_t interrupted;
/* The first SIGINT/SIGTERM lets the step finish and a checkpoint be written; a second one
 * exits at once (the last checkpoint on disk is whole either way: writes are atomic). */
static void on_signal(int sig) {
    (void)sig;
    if (interrupted) _exit(EXIT_INTERRUPTED);
    interrupted = 1;
}

typedef struct {
    const char *checkpoint_path; /* NULL: no checkpoints */
    vae_train_state state;       /* what checkpoints record besides weights and moments */
    int quiet;
    cli_bar bar;             /* steps of the epoch, on a terminal (epoch lines say the rest) */
    FILE *log, *jsonl;       /* per-epoch CSV and JSON lines */
    size_t test_count;       /* test samples, for the evaluation rate */
    /* the output folder, made at the first epoch or checkpoint (open_outputs) */
    const char *out, *resume;
    int first_epoch, force, writer;
    int opened;              /* 1 made, -1 failed (open_error says why), 0 not yet */
    char open_error[512];
} train_view;

static int open_outputs(train_view *v);

static int on_progress(void *user, int epoch, size_t step, size_t steps, double running_loss) {
    train_view *v = user;
    if (v->bar.on) {
        char label[32], note[48];
        snprintf(label, sizeof label, "epoch %d", epoch);
        snprintf(note, sizeof note, "loss %.3f", running_loss);
        v->bar.label = label; /* drawn before the call returns */
        cli_bar_update(&v->bar, step, steps, note);
    }
    return interrupted;
}

static void on_epoch(void *user, const vae_epoch_stats *s) {
    train_view *v = user;
    if (v->writer) open_outputs(v); /* a failure stops the run at the checkpoint that follows */
    if (!v->quiet) {
        printf("epoch %d/%d train %.3f (recon %.3f kl %.3f)", s->epoch, s->epochs, s->train_loss,
               s->train_recon, s->train_kl);
        if (!isnan(s->test_loss))
            printf(" test %.3f (recon %.3f kl %.3f)", s->test_loss, s->test_recon, s->test_kl);
        printf(" %.0f samples/s %.2f s", s->samples_per_second, s->seconds);
        if (s->device == VAE_DEVICE_CUDA)
            printf(" [cuda: %d launches/step, %.0f MB]", s->launches_per_step,
                   (double)s->device_bytes / 1e6);
        if (s->test_seconds > 0) printf(" eval %.0f samples/s", v->test_count / s->test_seconds);
        printf("\n");
        fflush(stdout);
    }
    if (v->log) {
        fprintf(v->log, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.1f,%.4f,%.4f\n", s->epoch,
                s->train_loss, s->train_recon, s->train_kl, s->test_loss, s->test_recon,
                s->test_kl, s->samples_per_second, s->seconds, s->test_seconds);
        fflush(v->log);
    }
    if (v->jsonl) {
        json_t *j = json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "epoch",
                              s->epoch, "epochs", s->epochs, "train_loss", s->train_loss,
                              "train_recon", s->train_recon, "train_kl", s->train_kl,
                              "samples_per_s", s->samples_per_second, "epoch_s", s->seconds,
                              "test_loss", isnan(s->test_loss) ? 0.0 : s->test_loss,
                              "test_recon", isnan(s->test_recon) ? 0.0 : s->test_recon,
                              "test_kl", isnan(s->test_kl) ? 0.0 : s->test_kl);
        if (j && isnan(s->test_loss)) /* JSON has no NaN: no test data, no test fields */
            json_object_del(j, "test_loss"), json_object_del(j, "test_recon"),
                json_object_del(j, "test_kl");
        if (j) json_dumpf(j, v->jsonl, JSON_COMPACT);
        fputc('\n', v->jsonl);
        fflush(v->jsonl);
        json_decref(j);
    }
}

static vae_status on_checkpoint(void *user, const vae_model *model, vae_adam *adam,
                                vae_train_position position, vae_error *err) {
    train_view *v = user;
    if (!v->checkpoint_path) return VAE_OK;
    if (!open_outputs(v)) {
        if (err) snprintf(err->message, sizeof err->message, "%s", v->open_error);
        return VAE_ERR_IO;
    }
    v->state.position = position;
    return vae_model_save(v->checkpoint_path, model, adam, &v->state, err);
}

static const char TRAIN_USAGE[] =
        "usage: vae train [options]\n"
        "\n"
        "Trains a VAE on IDX image files (values scaled to [0,1]) with a Bernoulli likelihood\n"
        "(or another, --likelihood),\n"
        "prints train and test negative ELBO (nats per sample) after every epoch, and writes\n"
        "samples.png, reconstructions.png and train_log.csv into the output folder.\n"
        "\n"
        "data:\n"
        "  -d, --data DIR            folder with train-/t10k-images-idx3-ubyte[.gz]\n"
        "                            (default " DEFAULT_DATA_DIR ")\n"
        "      --train FILE          training data: IDX images (gzipped or not), .npy, or\n"
        "                            .csv/.csv.gz (numbers; a header line is skipped)\n"
        "      --test FILE           test data; IDX labels beside either are found by name\n"
        "      --label-column N      CSV: the 1-based column of integer labels, or last\n"
        "      --exclude-label L     leave the training samples labelled L out\n"
        "      --missing             data with missing values (CSV: empty, nan or NA cells;\n"
        "                            .npy: NaN): the likelihood counts observed values only,\n"
        "                            the encoder also sees the mask (MIWAE with --iwae K)\n"
        "      --conditional         a conditional VAE: the one-hot label joins the encoder's\n"
        "                            and the decoder's input (vae sample --label L)\n"
        "      --standardize         scale each column of the training data to mean 0 and\n"
        "                            standard deviation 1 (kept in the model file, applied\n"
        "                            by every command; use with --likelihood gaussian)\n"
        "      --train-labels FILE   labels of the training images\n"
        "      --test-labels FILE    labels of the test images\n"
        "      --no-test             do not evaluate on test data\n"
        "model:\n"
        "  -p, --preset NAME         pytorch (784-400-(20)-400-784), seed\n"
        "                            (784-128-64-32-(2)-256-128-64-784) or conv (Conv2d\n"
        "                            32x4s2p1,64x4s2p1, 256, (20), mirrored); default pytorch\n"
        "      --conv LAYERS         convolutions before the dense encoder layers, mirrored by\n"
        "                            transposed ones in the decoder: CHANNELSxKERNEL[sSTRIDE]\n"
        "                            [pPADDING],... e.g. 32x4s2p1,64x4s2p1 (images only)\n"
        "      --encoder SIZES       hidden encoder widths, e.g. 512,256 (overrides the preset)\n"
        "      --decoder SIZES       hidden decoder widths\n"
        "  -z, --latent N            latent dimension\n"
        "  -a, --activation NAME     relu, tanh, leaky_relu or elu (default relu)\n"
        "      --likelihood NAME     p(x|z): bernoulli (default; x in [0,1]), gaussian\n"
        "                            (real x) or poisson (counts)\n"
        "      --variance KIND       gaussian: fixed (default), dim (one learned per value)\n"
        "                            or sample (decoded per sample)\n"
        "      --sigma S             gaussian, fixed: the standard deviation, default 1\n"
        "      --variance-floor V    gaussian, learned: the smallest variance, default 1e-3\n"
        "training:\n"
        "  -e, --epochs N            default 10\n"
        "  -b, --batch N             minibatch size, default 128\n"
        "  -l, --lr X                Adam learning rate, default 1e-3\n"
        "  -s, --seed N              seed of initialization, shuffling and noise, default 1\n"
        "objective (the reported losses stay the -ELBO, but with --iwae):\n"
        "      --beta X              weight of the KL term (beta-VAE), default 1\n"
        "      --kl-warmup STEPS     raise the KL weight linearly from 0 to beta over STEPS\n"
        "      --free-bits X         nats per latent unit below which its batch-mean KL is\n"
        "                            not pushed down (Kingma et al. 2016), default 0\n"
        "      --iwae K              train on the importance-weighted bound with K draws per\n"
        "                            input (Burda et al. 2016); the train loss is that bound\n"
        "  -t, --threads N           threads for matrix products, default: one per core that\n"
        "                            other processes leave free\n"
        "      --device D            cpu, cuda (one NVIDIA GPU; MLP models with the ELBO,\n"
        "                            beta, warm-up and free bits) or auto (default: cuda when\n"
        "                            this build has it, a GPU is there and it runs the model)\n"
        "      --precision P         the matrix products: fp32 (default), tf32 (a GPU's) or\n"
        "                            bf16 (the CPU's dense and conv layers, on oneDNN: bf16\n"
        "                            inputs, fp32 sums; needs AVX512_BF16 or AMX)\n"
        "      --backend B           the CPU's matrix products: onednn (default where this\n"
        "                            build has it), openblas or auto (the faster for this\n"
        "                            model here, timed at the start)\n"
        "      --batch-threads MODE  on: the CPU's threads split each batch (each thread forward\n"
        "                            and backward on its slice, gradients summed in slice\n"
        "                            order) instead of each product, for many cores and small\n"
        "                            batches; prepacked: on, the dense weights transposed\n"
        "                            once a step for the threads' products (fp32; pays where\n"
        "                            each thread has few rows); off (default); auto: the\n"
        "                            fastest here, timed at the start (the banner says which;\n"
        "                            give it for reruns)\n"
        "checkpoints:\n"
        "  -o, --out DIR             output folder, default vae-out: model.safetensors at the\n"
        "                            end, checkpoint.safetensors (weights, Adam moments, state)\n"
        "                            after every epoch and on Ctrl-C\n"
        "      --force               replace the run already in the output folder (without\n"
        "                            it, a folder holding a model or checkpoint is refused)\n"
        "  -c, --checkpoint-every N  also write the checkpoint every N steps (default 0: off)\n"
        "  -r, --resume DIR          continue the run whose checkpoint is in DIR, exactly (same\n"
        "                            architecture, data, batch and seed; --epochs may grow)\n"
        "output:\n"
        "  -q, --quiet               print nothing but errors\n"
        "  -h, --help                this help\n"
        "\n"
        "The same seed and thread count give bit-identical results, resumed or not.\n";

typedef struct {
    const char *data_dir, *train, *test, *train_labels, *test_labels, *out, *preset, *resume;
    const char *encoder, *decoder, *activation, *likelihood, *variance, *conv;
    const char *batch_threads; /* on, off or auto */
    int batch_threads_auto;
    float sigma, variance_floor;
    long label_column;
    int n_classes; /* of the training labels, for --conditional */
    int standardize, conditional, missing;
    int exclude_label, exclude_set; /* --exclude-label L */
    int sigma_set, floor_set;
    int latent, no_test, quiet, force;
    int preset_set, batch_set, seed_set, lr_set, epochs_set; /* given on the command line */
    int objective_set;
    uint64_t checkpoint_every;
    vae_train_options train_opt;
} train_args;

/* 1: parsed; 0: exit with *code */
static int parse_args(int argc, char **argv, train_args *a, int *code) {
    memset(a, 0, sizeof *a);
    a->data_dir = DEFAULT_DATA_DIR;
    a->preset = "pytorch";
    a->sigma = 1.0f, a->variance_floor = 1e-3f;
    a->label_column = VAE_CSV_NO_LABELS;
    vae_train_options_default(&a->train_opt);
    a->train_opt.device = cli_compute_options()->device;
    a->train_opt.precision = cli_compute_options()->cpu_bf16 ? VAE_PRECISION_BF16
                                                             : cli_compute_options()->precision;
    a->quiet = cli_compute_options()->quiet; /* -q is taken with the options every command has */
    vae_train_options *t = &a->train_opt;
    const cli_opt table[] = {
        CLI_STR("data", 'd', &a->data_dir, NULL),
        CLI_STR("train", 0, &a->train, NULL),
        CLI_STR("test", 0, &a->test, NULL),
        CLI_STR("train-labels", 0, &a->train_labels, NULL),
        CLI_STR("test-labels", 0, &a->test_labels, NULL),
        CLI_FLAG("no-test", 0, &a->no_test),
        CLI_STR("preset", 'p', &a->preset, &a->preset_set),
        CLI_STR("encoder", 0, &a->encoder, NULL),
        CLI_STR("decoder", 0, &a->decoder, NULL),
        CLI_INT("latent", 'z', &a->latent, 1, 1 << 24, NULL),
        CLI_STR("activation", 'a', &a->activation, NULL),
        CLI_INT("epochs", 'e', &t->epochs, 1, 1000000, &a->epochs_set),
        CLI_INT("batch", 'b', &t->batch_size, 1, 1 << 20, &a->batch_set),
        CLI_FLOAT("lr", 'l', &t->adam.lr, 1e-12, 10.0, &a->lr_set),
        CLI_U64("seed", 's', &t->seed, &a->seed_set),
        CLI_STR("out", 'o', &a->out, NULL),
        CLI_FLAG("force", 0, &a->force),
        CLI_U64("checkpoint-every", 'c', &a->checkpoint_every, NULL),
        CLI_STR("resume", 'r', &a->resume, NULL),
        CLI_FLOAT("beta", 0, &t->beta, 0, 1e6, &a->objective_set),
        CLI_U64("kl-warmup", 0, &t->kl_warmup, &a->objective_set),
        CLI_FLOAT("free-bits", 0, &t->free_bits, 0, 1e6, &a->objective_set),
        CLI_INT("iwae", 0, &t->iwae_k, 1, 4096, &a->objective_set),
        CLI_STR("likelihood", 0, &a->likelihood, NULL),
        CLI_STR("variance", 0, &a->variance, NULL),
        CLI_FLOAT("sigma", 0, &a->sigma, 1e-6, 1e5, &a->sigma_set),
        CLI_FLOAT("variance-floor", 0, &a->variance_floor, 1e-12, 1e5, &a->floor_set),
        CLI_LABEL_COLUMN(&a->label_column),
        CLI_FLAG("standardize", 0, &a->standardize),
        CLI_FLAG("conditional", 0, &a->conditional),
        CLI_STR("conv", 0, &a->conv, NULL),
        CLI_FLAG("missing", 0, &a->missing),
        CLI_INT("exclude-label", 0, &a->exclude_label, 0, 255, &a->exclude_set),
        CLI_STR("batch-threads", 0, &a->batch_threads, NULL),
    };
    int first;
    if (!cli_parse_options(argc, argv, "train", table, (int)(sizeof table / sizeof *table),
                           TRAIN_USAGE, &first, code) ||
        !cli_operands(argc, first, 0, 0, "train", "options only, its data with --train", code))
        return 0;
    if (a->batch_threads) {
        t->batch_threads = !strcmp(a->batch_threads, "on")          ? 1
                           : !strcmp(a->batch_threads, "prepacked") ? 2
                                                                    : 0;
        a->batch_threads_auto = !strcmp(a->batch_threads, "auto");
        if (!t->batch_threads && !a->batch_threads_auto && strcmp(a->batch_threads, "off")) {
            fprintf(stderr,
                    "vae: train: --batch-threads %.40s: expected on, prepacked, off or auto\n",
                    a->batch_threads);
            *code = EXIT_USAGE;
            return 0;
        }
    }
    if (a->sigma_set && !a->variance) a->variance = "fixed"; /* --sigma alone: a fixed sigma */
    if (!a->out && !a->resume) a->out = "vae-out";
    return 1;
}

/* "DIR/NAME" or "DIR/NAME.gz", whichever exists (plain first). */
static int find_in_dir(char *out, const char *dir, const char *name) {
    snprintf(out, PATH_SIZE, "%s/%s", dir, name);
    if (access(out, R_OK) == 0) return 1;
    snprintf(out, PATH_SIZE, "%s/%s.gz", dir, name);
    return access(out, R_OK) == 0;
}

static vae_status load_split(const char *images, const char *labels, long label_column,
                             vae_dataset **out, vae_error *err) {
    return cli_read_dataset(images, labels, label_column, out, err);
}

static vae_status build_config(const train_args *a, const vae_dataset *data, vae_config *cfg,
                               vae_error *err) {
    vae_status s = vae_config_preset(cfg, a->preset, data->dim, err);
    if (s != VAE_OK) return s;
    if (a->conv && (s = vae_conv_layers_parse(a->conv, cfg, err))) return s;
    if (cfg->n_conv && data->rows > 0) /* images: their shape, one channel */
        cfg->image_channels = 1, cfg->image_rows = data->rows, cfg->image_cols = data->cols;
    if (a->encoder && (s = vae_layer_sizes_parse(a->encoder, cfg->encoder, &cfg->n_encoder, err)))
        return s;
    if (a->decoder && (s = vae_layer_sizes_parse(a->decoder, cfg->decoder, &cfg->n_decoder, err)))
        return s;
    if (a->latent) cfg->latent_dim = a->latent;
    if (a->likelihood && (s = vae_likelihood_parse(a->likelihood, &cfg->likelihood, err)))
        return s;
    if (a->variance && cfg->likelihood != VAE_LIK_GAUSSIAN) {
        snprintf(err->message, sizeof err->message, "--variance and --sigma need --likelihood gaussian");
        return VAE_ERR_INVALID_ARGUMENT;
    }
    if (a->variance && (s = vae_variance_parse(a->variance, &cfg->variance, err))) return s;
    /* flags that would do nothing for this variance are said */
    CLI_FAIL_IF(a->sigma_set && cfg->variance != VAE_VAR_FIXED, err, VAE_ERR_INVALID_ARGUMENT,
                "--sigma is a fixed variance's; --variance %s learns it", a->variance);
    CLI_FAIL_IF(a->floor_set && (cfg->likelihood != VAE_LIK_GAUSSIAN ||
                                 cfg->variance == VAE_VAR_FIXED),
                err, VAE_ERR_INVALID_ARGUMENT,
                "--variance-floor bounds a learned variance (--likelihood gaussian "
                "--variance dim or sample)");
    cfg->sigma = a->sigma, cfg->variance_floor = a->variance_floor;
    cfg->n_classes = a->conditional ? a->n_classes : 0;
    cfg->missing = a->missing;
    if (a->activation && (s = vae_activation_parse(a->activation, &cfg->activation, err)))
        return s;
    return vae_config_validate(cfg, err);
}

/* Decoded prior samples and test reconstructions (z = mu), when the data are images. */
static vae_status write_pictures(const vae_model *model, const vae_dataset *shown, uint64_t seed,
                                 const char *dir, vae_error *err) {
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/samples.png", dir);
    vae_status s = cli_write_samples(path, NULL, model, shown->rows, shown->cols, 100, seed, -1, err);
    if (s != VAE_OK) return s;
    snprintf(path, sizeof path, "%s/reconstructions.png", dir);
    return cli_write_reconstructions(path, model, shown, 20, err);
}

#define LOG_HEADER "epoch,train_loss,train_recon,train_kl,test_loss,test_recon,test_kl," \
                   "samples_per_s,epoch_s,eval_s\n"

/* The epoch a log line is about: CSV lines start with it, JSON lines hold it; 0 otherwise. */
static long epoch_of_line(const char *line) {
    if (line[0] == '{') {
        json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
        long epoch = j ? (long)json_integer_value(json_object_get(j, "epoch")) : 0;
        json_decref(j);
        return epoch;
    }
    char *end;
    long epoch = strtol(line, &end, 10);
    return end != line && *end == ',' ? epoch : 0;
}

/* Opens DIR/NAME for the epochs to come, starting with header (may be NULL). A resumed run
 * keeps the lines of the epochs its checkpoint had finished and drops any written after it (a
 * run killed between logging an epoch and saving its checkpoint would otherwise log that epoch
 * twice). */
static FILE *open_log(const char *out_dir, const char *resume_dir, int first_epoch,
                      const char *name, const char *header) {
    char path[PATH_SIZE];
    char *kept = NULL;
    size_t kept_len = 0;
    if (resume_dir) {
        snprintf(path, sizeof path, "%s/%s", resume_dir, name);
        FILE *old = fopen(path, "r");
        FILE *mem = old ? open_memstream(&kept, &kept_len) : NULL;
        char line[4096];
        while (mem && fgets(line, sizeof line, old)) {
            long epoch = epoch_of_line(line);
            if (epoch >= 1 && epoch < first_epoch) fputs(line, mem);
        }
        if (mem) fclose(mem);
        if (old) fclose(old);
    }
    snprintf(path, sizeof path, "%s/%s", out_dir, name);
    FILE *log = fopen(path, "w");
    if (log) {
        if (header) fputs(header, log);
        if (kept) fwrite(kept, 1, kept_len, log);
        fflush(log);
    }
    free(kept);
    return log;
}

/* Removes NAME.tmp.XXXXXX files in dir: what a writer killed mid-write (SIGKILL, power loss)
 * leaves behind. The file it was replacing is whole: the rename never happened. */
static void remove_stale_temporaries(const char *dir, const char *name) {
    DIR *d = opendir(dir);
    if (!d) return;
    size_t len = strlen(name);
    struct dirent *e;
    char path[PATH_SIZE];
    while ((e = readdir(d)))
        if (strncmp(e->d_name, name, len) == 0 && strncmp(e->d_name + len, ".tmp.", 5) == 0 &&
            strlen(e->d_name + len + 5) == 6) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
}

/* The output folder, its logs (and, replacing a run with --force, without the old model),
 * made when the run first has something to keep: a run refused or failed before then leaves
 * no trace. Returns 0, with v->open_error, when they cannot be made. */
static int open_outputs(train_view *v) {
    if (v->opened) return v->opened > 0;
    v->opened = -1;
    if (mkdir(v->out, 0777) != 0 && errno != EEXIST) {
        snprintf(v->open_error, sizeof v->open_error, "cannot create %s: %s", v->out,
                 strerror(errno));
        return 0;
    }
    remove_stale_temporaries(v->out, "checkpoint.safetensors");
    remove_stale_temporaries(v->out, "model.safetensors");
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/model.safetensors", v->out);
    if (v->force) unlink(path);
    v->log = open_log(v->out, v->resume, v->first_epoch, "train_log.csv", LOG_HEADER);
    v->jsonl = v->log ? open_log(v->out, v->resume, v->first_epoch, "train_log.jsonl", NULL) : NULL;
    if (!v->log || !v->jsonl) {
        snprintf(v->open_error, sizeof v->open_error, "cannot create %s/train_log.*: %s", v->out,
                 strerror(errno));
        return 0;
    }
    v->opened = 1;
    return 1;
}

/* Whether dir can take the run's files, found out without leaving a trace: an existing folder
 * must take a file, a new one must be creatable (it is removed again). 0 and why if not. */
static int output_folder_usable(const char *dir, char *why, size_t size) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(why, size, "%s exists and is not a folder", dir);
            return 0;
        }
        char probe[PATH_SIZE];
        snprintf(probe, sizeof probe, "%s/.vae-probe-XXXXXX", dir);
        int fd = mkstemp(probe);
        if (fd < 0) {
            snprintf(why, size, "cannot write into %s: %s", dir, strerror(errno));
            return 0;
        }
        close(fd);
        unlink(probe);
        return 1;
    }
    if (mkdir(dir, 0777) != 0) {
        snprintf(why, size, "cannot create %s: %s", dir, strerror(errno));
        return 0;
    }
    rmdir(dir);
    return 1;
}

/* The file of another run in dir (model or checkpoint), or NULL. */
static const char *earlier_run(const char *dir) {
    static const char *const names[] = {"model.safetensors", "checkpoint.safetensors"};
    char path[PATH_SIZE];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (access(path, F_OK) == 0) return names[i];
    }
    return NULL;
}

/* A run to resume: the checkpoint's model, optimizer and state, checked against what the
 * command line asks for now. */
static vae_status load_resume(const train_args *a, const vae_dataset *train, vae_model **model,
                              vae_adam **adam, vae_train_state *st, vae_error *err) {
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", a->resume);
    vae_status s = vae_model_load(path, model, adam, st, err);
    if (s != VAE_OK) return s;
    const vae_config *cfg = vae_model_config(*model);
    const char *why = NULL;
    if (a->preset_set || a->encoder || a->decoder || a->latent || a->activation || a->likelihood ||
        a->variance || a->conditional || a->conv || a->missing) {
        vae_config asked;
        s = build_config(a, train, &asked, err);
        if (s != VAE_OK) return s;
        if (vae_config_hash(&asked) != vae_config_hash(cfg)) why = "a different architecture";
    }
    if (!why && cfg->input_dim != train->dim) why = "data of another width";
    if (!why && st->data_hash != vae_dataset_hash(train)) why = "other training data";
    if (!why && a->batch_set && a->train_opt.batch_size != st->batch_size)
        why = "another batch size";
    if (!why && a->seed_set && a->train_opt.seed != st->seed) why = "another seed";
    if (!why && a->objective_set &&
        (a->train_opt.beta != st->beta || a->train_opt.kl_warmup != st->kl_warmup ||
         a->train_opt.free_bits != st->free_bits || a->train_opt.iwae_k != st->iwae_k))
        why = "another objective (--beta, --kl-warmup, --free-bits, --iwae)";
    if (!why && a->lr_set && a->train_opt.adam.lr != vae_adam_get_options(*adam)->lr)
        why = "another learning rate";
    if (why) {
        snprintf(err->message, sizeof err->message,
                 "%.380s: cannot resume with %s than the checkpoint was trained with", path, why);
        return VAE_ERR_INVALID_ARGUMENT;
    }
    return VAE_OK;
}

/* The classes a conditional model gets: every label from 0 to the largest must occur (a class
 * no sample has is a sparse label set, said rather than learned). */
static vae_status label_classes(const vae_dataset *train, const char *path, int *classes,
                                vae_error *err) {
    if (!train->labels) {
        snprintf(err->message, sizeof err->message, "--conditional needs labels for %s (IDX "
                 "labels beside it, --train-labels, or --label-column for CSV)", path);
        return VAE_ERR_INVALID_ARGUMENT;
    }
    size_t seen[256] = {0};
    for (size_t i = 0; i < train->count; i++) {
        seen[train->labels[i]]++;
        if (train->labels[i] + 1 > *classes) *classes = train->labels[i] + 1;
    }
    for (int k = 0; k < *classes; k++) {
        if (seen[k]) continue;
        int last = k;
        while (last + 1 < *classes && !seen[last + 1]) last++;
        char which[48];
        if (last > k) snprintf(which, sizeof which, "labels %d..%d never occur", k, last);
        else snprintf(which, sizeof which, "label %d never occurs", k);
        snprintf(err->message, sizeof err->message, "--conditional: %s in %s, so the model would "
                 "have %d classes; number the classes 0..K-1", which, path, *classes);
        return VAE_ERR_INVALID_ARGUMENT;
    }
    return VAE_OK;
}

/* Flags that contradict each other or the command: 0, or the exit code after saying why. */
static int conflicting_flags(const train_args *a) {
    if (a->out && cli_has_suffix(a->out, ".safetensors")) {
        fprintf(stderr, "vae: train: -o names the run's folder (which gets model.safetensors); "
                "%s would become a folder of that name\n", a->out);
        return EXIT_USAGE;
    }
    if (a->test && a->no_test) {
        fprintf(stderr, "vae: train: --test %s and --no-test: give one or the other\n", a->test);
        return EXIT_USAGE;
    }
    return 0;
}

/* The output folder checked before any file is touched: not another run's (without --force or
 * --resume), and usable. 0, or the exit code after saying why. */
static int output_refused(const train_args *a) {
    const char *other = a->resume || a->force ? NULL : earlier_run(a->out);
    if (other) {
        fprintf(stderr, "vae: %s holds another run (%s): continue it with --resume %s, or "
                "replace it with --force\n", a->out, other, a->out);
        return EXIT_USAGE;
    }
    char why[PATH_SIZE + 128];
    if (!output_folder_usable(a->out, why, sizeof why)) {
        fprintf(stderr, "vae: %s\n", why);
        return EXIT_CANTCREAT;
    }
    return 0;
}

/* One `vae train`: its arguments, data, model and what the callbacks write; the phases below
 * fill it in turn, and train_run_free releases it. */
typedef struct {
    train_args a;
    train_view view;
    vae_dataset *train, *test;
    vae_model *model;
    vae_adam *adam;
    vae_error err;
    char train_path[PATH_SIZE], test_path[PATH_SIZE], checkpoint_path[PATH_SIZE];
    int writer; /* rank 0: the process that talks and writes */
} train_run;

/* The data folder's files when --train is not given; --no-test and --resume's folder. */
static int default_paths(train_run *r) {
    train_args *a = &r->a;
    if (!a->train) {
        if (!find_in_dir(r->train_path, a->data_dir, "train-images-idx3-ubyte")) {
            fprintf(stderr, "vae: no train-images-idx3-ubyte[.gz] in %s (install Debian's "
                    "dataset-fashion-mnist, or name files with --train/--test)\n", a->data_dir);
            return EXIT_NOINPUT;
        }
        a->train = r->train_path;
        if (!a->test && !a->no_test &&
            find_in_dir(r->test_path, a->data_dir, "t10k-images-idx3-ubyte"))
            a->test = r->test_path;
    }
    if (a->no_test) a->test = NULL;
    if (a->resume && !a->out) a->out = a->resume;
    return EXIT_OK;
}

/* --exclude-label: the training samples of one class left out (to hold it out as anomalies). */
static vae_status exclude_label(train_run *r) {
    vae_dataset *train = r->train;
    const int label = r->a.exclude_label;
    CLI_FAIL_IF(!train->labels, &r->err, VAE_ERR_INVALID_ARGUMENT,
                    "--exclude-label needs labels for %s", r->a.train);
    size_t kept = 0, d = (size_t)train->dim;
    for (size_t i = 0; i < train->count; i++) {
        if (train->labels[i] == label) continue;
        memmove(train->x + kept * d, train->x + i * d, d * sizeof(float));
        if (train->mask) memmove(train->mask + kept * d, train->mask + i * d, d);
        train->labels[kept++] = train->labels[i];
    }
    /* a flag that would do nothing is said */
    CLI_FAIL_IF(kept == train->count, &r->err, VAE_ERR_INVALID_ARGUMENT,
                    "--exclude-label %d: no training sample has that label", label);
    CLI_FAIL_IF(!kept, &r->err, VAE_ERR_INVALID_ARGUMENT,
                    "--exclude-label %d leaves no training data", label);
    train->count = kept;
    return VAE_OK;
}

/* The training and test data, as asked for, with the label checks. */
static vae_status load_data(train_run *r) {
    train_args *a = &r->a;
    vae_status s = load_split(a->train, a->train_labels, a->label_column, &r->train, &r->err);
    if (s == VAE_OK && a->test)
        s = load_split(a->test, a->test_labels, a->label_column, &r->test, &r->err);
    if (s == VAE_OK && a->exclude_set) s = exclude_label(r);
    if (s == VAE_OK && a->conditional) s = label_classes(r->train, a->train, &a->n_classes, &r->err);
    if (s != VAE_OK) return s;
    CLI_FAIL_IF(r->test && r->test->dim != r->train->dim, &r->err, VAE_ERR_FORMAT,
                    "%s has %d values per sample but %s has %d", a->test, r->test->dim, a->train,
                    r->train->dim);
    return VAE_OK;
}

/* The model: the run being resumed (its options take over), or a new one and its state. */
static vae_status make_model(train_run *r) {
    train_args *a = &r->a;
    vae_train_state *st = &r->view.state;
    if (a->resume) {
        CLI_TRY(load_resume(a, r->train, &r->model, &r->adam, st, &r->err));
        a->train_opt.batch_size = st->batch_size;
        a->train_opt.seed = st->seed;
        a->train_opt.beta = st->beta, a->train_opt.free_bits = st->free_bits;
        a->train_opt.kl_warmup = st->kl_warmup;
        a->train_opt.iwae_k = st->iwae_k;
        a->train_opt.adam = *vae_adam_get_options(r->adam);
        if (!a->epochs_set) a->train_opt.epochs = st->epochs;
        a->train_opt.resume_adam = r->adam;
        a->train_opt.start = st->position;
    } else {
        vae_config cfg;
        CLI_TRY(build_config(a, r->train, &cfg, &r->err));
        CLI_TRY(vae_model_create(&r->model, &cfg, a->train_opt.seed, &r->err));
        snprintf(st->preset, sizeof st->preset, "%s",
                 a->encoder || a->decoder || a->latent || a->activation ? "" : a->preset);
        st->data_rows = r->train->rows, st->data_cols = r->train->cols;
        st->seed = a->train_opt.seed;
        st->batch_size = a->train_opt.batch_size;
        st->data_hash = vae_dataset_hash(r->train);
        st->beta = a->train_opt.beta, st->free_bits = a->train_opt.free_bits;
        st->kl_warmup = a->train_opt.kl_warmup;
        st->iwae_k = a->train_opt.iwae_k;
    }
    st->epochs = a->train_opt.epochs;
    /* the library would quietly split the products instead (a flag that would do nothing) */
    CLI_FAIL_IF(a->train_opt.batch_threads && a->train_opt.free_bits > 0.0f, &r->err,
                VAE_ERR_INVALID_ARGUMENT,
                "--batch-threads %s: free bits floor each latent unit's KL over the whole "
                "batch, which a thread's slice does not see (leave it off or auto)",
                a->batch_threads);
    CLI_FAIL_IF(a->train_opt.batch_threads && a->train_opt.device == VAE_DEVICE_CUDA, &r->err,
                VAE_ERR_INVALID_ARGUMENT,
                "--batch-threads %s: the threads split the CPU's work; --device cuda runs each "
                "batch whole on the GPU", a->batch_threads);
    return VAE_OK;
}

/* --standardize: the training data's statistics kept in a new model (the library applies them
 * to every data value it is given and inverts them for every value it returns). */
static vae_status standardize_data(train_run *r) {
    vae_model *model = r->model;
    if (!r->a.resume && r->a.standardize) {
        const size_t dim = (size_t)r->train->dim;
        float *mean = malloc(sizeof(float) * dim), *std = malloc(sizeof(float) * dim);
        vae_status s = mean && std ? VAE_OK : VAE_ERR_NO_MEMORY;
        if (s == VAE_OK) vae_standardize_fit(r->train, mean, std);
        if (s == VAE_OK) s = vae_model_set_standardization(model, mean, std, &r->err);
        free(mean), free(std);
        CLI_TRY(s);
    }
    CLI_FAIL_IF(r->a.resume && r->a.standardize && !vae_model_data_mean(model), &r->err,
                    VAE_ERR_INVALID_ARGUMENT,
                    "--standardize: the run being resumed was trained without it");
    return VAE_OK;
}

/* Everything checked before a file is touched (a refused run changes nothing), the same
 * weights on every process. 1 to go on; 0 to stop with *code (EXIT_OK: nothing to do). */
static int ready_to_train(train_run *r, int *code) {
    train_args *a = &r->a;
    /* several processes (mpirun): the same weights everywhere; rank 0 alone talks and writes */
    r->writer = cli_parallel_rank() == 0;
    a->train_opt.collective = cli_parallel_collective();
    if (cli_parallel_broadcast(vae_model_params(r->model), vae_model_num_params(r->model))) {
        snprintf(r->err.message, sizeof r->err.message, "broadcasting the initial weights failed");
        *code = cli_report(VAE_ERR_IO, &r->err);
        return 0;
    }
    if (!r->writer) a->quiet = r->view.quiet = 1, r->view.bar.on = 0;
    snprintf(r->checkpoint_path, sizeof r->checkpoint_path, "%s/checkpoint.safetensors", a->out);
    vae_status s = vae_train_check(r->model, r->train, r->test, &a->train_opt, &r->err);
    if (s != VAE_OK) {
        *code = cli_report(s, &r->err);
        return 0;
    }
    if (a->resume && r->view.state.position.epoch > a->train_opt.epochs) {
        fprintf(stderr, "vae: the run in %s has finished its %d epochs: nothing to do (give "
                "--epochs N, N > %d, to train it further)\n", a->resume, a->train_opt.epochs,
                a->train_opt.epochs);
        *code = EXIT_OK;
        return 0;
    }
    return !r->writer || (*code = output_refused(a)) == 0;
}

/* The callbacks' view of the run, and the banner. */
static void announce(train_run *r) {
    train_args *a = &r->a;
    train_view *view = &r->view;
    if (r->writer) view->checkpoint_path = r->checkpoint_path;
    view->out = a->out, view->resume = a->resume, view->force = a->force;
    view->writer = r->writer;
    view->first_epoch = a->resume ? view->state.position.epoch : 1;
    view->test_count = r->test ? r->test->count : 0;
    a->train_opt.progress = on_progress;
    a->train_opt.on_epoch = on_epoch;
    a->train_opt.checkpoint = on_checkpoint;
    a->train_opt.checkpoint_every = a->checkpoint_every;
    a->train_opt.user = view;
    if (a->quiet) return;
    fprintf(stderr, "vae: %zu training samples of %d values, %zu test samples; %zu parameters; "
            "%d thread%s, %s", r->train->count, r->train->dim, r->test ? r->test->count : 0,
            vae_model_num_params(r->model), vae_get_num_threads(),
            vae_get_num_threads() > 1 ? "s" : "",
            vae_model_backend(r->model) == VAE_BACKEND_ONEDNN ? "oneDNN" : "OpenBLAS");
    if (vae_model_backend(r->model) == VAE_BACKEND_OPENBLAS)
        fprintf(stderr, " (%s kernels)", vae_blas_core());
    if (vae_model_cpu_precision(r->model) == VAE_PRECISION_BF16)
        fputs(", bf16 products", stderr);
    if (cli_compute_options()->backend == VAE_BACKEND_AUTO) fputs(", chosen by timing", stderr);
    if (vae_get_num_threads() > 1 && a->train_opt.free_bits == 0.0f &&
        (a->batch_threads_auto || a->train_opt.batch_threads))
        fprintf(stderr, "; the threads split %s%s",
                a->train_opt.batch_threads == 2   ? "each batch, on prepacked weights"
                : a->train_opt.batch_threads == 1 ? "each batch"
                                                  : "the products",
                a->batch_threads_auto ? " (--batch-threads auto: timed)" : "");
    if (cli_parallel_size() > 1) fprintf(stderr, " x %d ranks", cli_parallel_size());
    fputc('\n', stderr);
    char info[256];
    if (a->train_opt.device != VAE_DEVICE_CPU &&
        vae_device_available(VAE_DEVICE_CUDA, info, sizeof info))
        fprintf(stderr, "vae: device %s; GPU: %s (%s)\n", vae_device_name(a->train_opt.device),
                info, vae_precision_name(a->train_opt.precision));
    else if (a->train_opt.precision == VAE_PRECISION_TF32) /* --device auto, no GPU here */
        fputs("vae: no GPU here: the CPU computes fp32 (tf32 is a GPU's)\n", stderr);
    if (a->resume)
        fprintf(stderr, "vae: resuming %s at epoch %d, step %llu\n", a->resume,
                view->state.position.epoch, (unsigned long long)view->state.position.step_in_epoch);
}

/* vae_train with SIGINT/SIGTERM caught (the step ends and a checkpoint is written). */
static vae_status train_with_signals(train_run *r) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    double started = cli_now_seconds();
    vae_status s = vae_train(r->model, r->train, r->test, &r->a.train_opt, &r->err);
    double seconds = cli_now_seconds() - started;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (cli_parallel_size() > 1 && !r->a.quiet)
        fprintf(stderr, "vae: %d ranks; %.2f s of %.2f s in communication (%.1f%%)\n",
                cli_parallel_size(), cli_parallel_comm_seconds(), seconds,
                100.0 * cli_parallel_comm_seconds() / (seconds > 0 ? seconds : 1));
    return s;
}

/* After a run that ended (or stopped): the exit code, and for rank 0 the model file and its
 * pictures. */
static int finish(train_run *r, vae_status s) {
    train_view *view = &r->view;
    if (s == VAE_ERR_CANCELLED) { /* every rank stopped at the same step; rank 0 saved it */
        if (r->writer)
            fprintf(stderr, "vae: %s; checkpoint in %s (continue with --resume %s)\n",
                    r->err.message, r->checkpoint_path, r->a.out);
        return EXIT_INTERRUPTED;
    }
    if ((s != VAE_OK && view->opened < 0) || (s == VAE_OK && r->writer && !open_outputs(view))) {
        fprintf(stderr, "vae: %s\n", view->open_error); /* the folder could not be made */
        return EXIT_CANTCREAT;
    }
    if (s != VAE_OK) return cli_report(s, &r->err);
    if (!r->writer) return EXIT_OK;
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/model.safetensors", r->a.out);
    view->state.position = (vae_train_position){.epoch = r->a.train_opt.epochs + 1};
    if ((s = vae_model_save(path, r->model, NULL, &view->state, &r->err)) != VAE_OK)
        return cli_report(s, &r->err);
    const vae_dataset *shown = r->test ? r->test : r->train;
    if (shown->rows > 0) {
        s = write_pictures(r->model, shown, r->a.train_opt.seed, r->a.out, &r->err);
        if (s != VAE_OK) return cli_report(s, &r->err);
        if (!r->a.quiet)
            cli_say("vae: wrote %s/model.safetensors, samples.png, reconstructions.png, "
                    "train_log.csv\n", r->a.out);
    }
    return EXIT_OK;
}

/* Closes the logs (a failed close is an I/O error) and frees the run. */
static int train_run_free(train_run *r, int code) {
    if (r->view.jsonl && fclose(r->view.jsonl) != 0 && code == EXIT_OK) {
        fprintf(stderr, "vae: error writing %s/train_log.jsonl\n", r->a.out);
        code = EXIT_IOERR;
    }
    if (r->view.log && fclose(r->view.log) != 0 && code == EXIT_OK) {
        fprintf(stderr, "vae: error writing %s/train_log.csv\n", r->a.out);
        code = EXIT_IOERR;
    }
    vae_adam_free(r->adam);
    vae_model_free(r->model);
    vae_dataset_free(r->train);
    vae_dataset_free(r->test);
    return code;
}

int cmd_train(int argc, char **argv) {
    train_run r = {0};
    int code;
    if (!parse_args(argc, argv, &r.a, &code)) return code;
    if ((code = conflicting_flags(&r.a)) != 0 || (code = default_paths(&r)) != 0) return code;
    r.view = (train_view){.quiet = r.a.quiet};
    cli_bar_init(&r.view.bar, "epoch", r.a.quiet);
    r.view.bar.plain = 0; /* off a terminal, the epoch lines are the progress */
    vae_status s = load_data(&r);
    if (s == VAE_OK) s = make_model(&r);
    if (s == VAE_OK) s = standardize_data(&r);
    if (s != VAE_OK) return train_run_free(&r, cli_report(s, &r.err));
    if (!ready_to_train(&r, &code)) return train_run_free(&r, code);
    cli_apply_threads();
    vae_status s2 = vae_model_set_backend(r.model, cli_compute_options()->backend,
                                          r.a.train_opt.batch_size, NULL, &r.err);
    if (s2 == VAE_OK && r.a.train_opt.precision == VAE_PRECISION_BF16)
        s2 = vae_model_set_cpu_precision(r.model, VAE_PRECISION_BF16, &r.err);
    if (s2 == VAE_OK && r.a.batch_threads_auto)
        s2 = vae_train_batch_threads_auto(r.model, &r.a.train_opt, &r.a.train_opt.batch_threads,
                                          &r.err);
    if (s2 != VAE_OK) return train_run_free(&r, cli_report(s2, &r.err));
    announce(&r); /* the banner says the threads started and the backend chosen */
    return train_run_free(&r, finish(&r, train_with_signals(&r)));
}

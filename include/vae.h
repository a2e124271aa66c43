/* vae.h — libvae, a variational autoencoder toolkit in C.
 *
 * THE MODEL
 *   An encoder (dense layers, optionally after convolutions for images) maps x (D values) to a
 *   hidden code h; two SEPARATE linear heads give the posterior mean mu and log-variance logvar
 *   of q(z|x) (L values each); the reparameterization z = mu + exp(logvar/2) * eps uses noise
 *   eps of the LATENT's shape (L values, standard normal); a decoder (the encoder's mirror) maps
 *   z to the parameters of p(x|z): Bernoulli logits (the default), a Gaussian's means (and
 *   variances) or Poisson log-rates (vae_likelihood). The per-sample objective is the negative
 *   ELBO in nats; for the Bernoulli likelihood
 *       recon = sum_d max(l,0) - l*x + log(1 + exp(-|l|))      (BCE with logits, stable form)
 *       kl    = -1/2 sum_j (1 + logvar - mu^2 - exp(logvar))    (analytic KL(q(z|x) || N(0,I)))
 *       loss  = recon + kl   >=  -log p(x)                      (a bound, not log p(x) itself)
 *   Training minimizes the batch mean of loss with Adam (or beta-weighted, warmed-up and
 *   free-bits variants of it, or the importance-weighted bound), on the CPU or one GPU
 *   (vae_device). Conditional models and models of data with missing values take the label or
 *   the mask as further inputs.

 * CONVENTIONS
 *   - Every function that can fail returns a vae_status (VAE_OK is 0) and takes a vae_error*
 *     (it may be NULL) into which it writes a one-line message: file, position and what was
 *     expected, after the context it was called in ("training step 12: forward: ..."). A file
 *     that cannot be read is VAE_ERR_OPEN or VAE_ERR_FORMAT, one that cannot be written
 *     VAE_ERR_CREATE or VAE_ERR_IO. The library never prints and never exits.
 *   - Integer returns, one convention: a count or index is >= 0 (-1: not found); a predicate
 *     (vae_device_available, vae_idx_find_labels) is non-zero for yes; a callback returns 0 to
 *     go on and non-zero (or a status other than VAE_OK) to stop or fail.
 *   - Every *_create has a *_free; *_free(NULL) does nothing. The caller owns what it creates.
 *     Pointers returned by accessors are views into an object: do not free them.
 *   - Buffers are float32, row-major, batch-major: a batch of B samples of width D is B*D floats.
 *   - Randomness is explicit and seeded: the same seed and the same thread count give
 *     bit-identical results. Noise is counter-based, so it does not depend on the thread count.
 *   - Parameters, gradients and optimizer moments are each ONE contiguous float buffer; a table
 *     of named tensors (vae_model_tensor) gives the offset and shape of each piece. Weight
 *     matrices are stored (out, in) as in PyTorch's nn.Linear, so tensors map one to one.
 *
 * A MINIMAL PROGRAM
 *     vae_config cfg; vae_model *m; vae_dataset *train; vae_error err;
 *     vae_config_preset(&cfg, "pytorch", 784, &err);
 *     vae_idx_load("train-images-idx3-ubyte.gz", NULL, &train, &err);
 *     vae_model_create(&m, &cfg, 1, &err);
 *     vae_train_options opt; vae_train_options_default(&opt);
 *     vae_train(m, train, NULL, &opt, &err);
 *     ...
 *     vae_model_free(m); vae_dataset_free(train);
 */
#ifndef VAE_H
#define VAE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version, defined here once (the Makefile reads it for the shared library's name and
 * SONAME, libvae.so.MAJOR, and for vae.pc). MAJOR changes when the ABI breaks. */
#define VAE_VERSION_MAJOR 0
#define VAE_VERSION_MINOR 1
#define VAE_VERSION_PATCH 0
#define VAE_STR_(x) #x
#define VAE_STR(x) VAE_STR_(x)
#define VAE_VERSION_STRING                                                                  \
    VAE_STR(VAE_VERSION_MAJOR) "." VAE_STR(VAE_VERSION_MINOR) "." VAE_STR(VAE_VERSION_PATCH)
/* The library's version at run time ("0.1.0"): a program can compare it with the header's. */
const char *vae_version(void);

/* ---------------------------------------------------------------- status and errors */

/* Values are never renumbered; new ones go at the end. */
typedef enum {
    VAE_OK = 0,
    VAE_ERR_INVALID_ARGUMENT = 1, /* a caller passed something out of range */
    VAE_ERR_NO_MEMORY = 2,
    VAE_ERR_OPEN = 3,             /* a file could not be opened */
    VAE_ERR_IO = 4,               /* a read or write failed part way */
    VAE_ERR_FORMAT = 5,           /* a file's content is not what it should be */
    VAE_ERR_CANCELLED = 6,        /* a callback asked to stop */
    VAE_ERR_DIVERGED = 7,         /* NaN or Inf in the loss or gradients */
    VAE_ERR_INTERNAL = 8,         /* a broken invariant: a bug in libvae */
    VAE_ERR_CREATE = 9            /* an output file cannot be created there */
} vae_status;

/* A static string naming the status ("format error", ...). Never NULL. */
const char *vae_status_str(vae_status status);

/* Detailed message of the last failure of a call that was given this struct. */
typedef struct {
    char message[512];
} vae_error;

/* ---------------------------------------------------------------- threads and BLAS */

/* Sets the number of threads that matrix products use (process-wide: OpenBLAS keeps one pool).
 * n <= 0 means one per core that other processes leave free, sampled over 50 ms (threads that
 * share a core with a busy process make every parallel step wait for the slowest of them). */
void vae_set_num_threads(int n);
int vae_get_num_threads(void);
/* A static description of the BLAS in use, e.g. "OpenBLAS 0.3.21 ... Haswell MAX_THREADS=64". */
const char *vae_blas_info(void);
/* The name of the matrix kernels OpenBLAS uses ("Haswell", "SkylakeX", "Prescott", ...). */
const char *vae_blas_core(void);

/* What decides which kernels can run: the CPU's instruction sets and whether the OS saves the
 * registers they use (AVX: YMM; AVX-512: opmask and ZMM). */
typedef struct {
    int avx2, fma, avx512f, avx512bw, avx512dq, avx512vl;
    int os_avx, os_avx512;
} vae_cpu_features;
/* This CPU's features (cpuid, xgetbv); all zero elsewhere than x86-64. */
void vae_cpu_features_detect(vae_cpu_features *f);
/* Better OpenBLAS kernels (an OPENBLAS_CORETYPE value) than `detected` for a CPU with these
 * features, or NULL to keep them: when OpenBLAS fell back to a generic core (it does not
 * recognise many newer CPUs, in virtual machines especially), "SkylakeX" where AVX-512 (F, BW,
 * DQ, VL) and its OS state are there, else "Haswell" where AVX2 and FMA are; never kernels
 * whose instructions are missing. OpenBLAS reads OPENBLAS_CORETYPE when it starts, so a
 * program acts on this before (vae re-executes itself once with it set). */
const char *vae_blas_core_choice(const char *detected, const vae_cpu_features *f);

/* ---------------------------------------------------------------- random numbers */

/* A counter-based generator: a key (from the seed and a stream id) and a position. Any position
 * can be reached at once, which makes streams splittable per thread, per step and per rank. */
typedef struct {
    uint64_t key;
    uint64_t counter;
} vae_rng;

/* A generator for stream `stream` of seed `seed`; different streams are independent. */
vae_rng vae_rng_make(uint64_t seed, uint64_t stream);
uint64_t vae_rng_u64(vae_rng *rng);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float vae_rng_uniform(vae_rng *rng);
/* Uniform integer in [0, bound), bound > 0, without modulo bias. */
uint64_t vae_rng_below(vae_rng *rng, uint64_t bound);
/* Fills out[0..n) with standard normal draws (Box–Muller). */
void vae_rng_normal(vae_rng *rng, float *out, size_t n);

/* ---------------------------------------------------------------- devices */

/* Where training runs. CPU: this machine's cores (OpenBLAS and OpenMP). CUDA: one NVIDIA GPU,
 * in a build made with `make CUDA=1` (MLP models with the ELBO objective, beta, warm-up and free
 * bits, every likelihood and activation; convolutions, IWAE training, conditional and
 * missing-value models are refused there with the reason). AUTO: CUDA when this build has it,
 * a GPU is present and the model and options are ones it runs, else the CPU. */
typedef enum { VAE_DEVICE_CPU = 0, VAE_DEVICE_CUDA = 1, VAE_DEVICE_AUTO = 2 } vae_device;
/* "cpu", "cuda" (or "gpu"), "auto" */
vae_status vae_device_parse(const char *name, vae_device *out, vae_error *err);
const char *vae_device_name(vae_device device);
/* Non-zero when this build has the device's backend and the device is there; info (may be NULL)
 * gets its description ("NVIDIA H200, 132 SMs, 139.8 GiB") or the reason it cannot be used. */
int vae_device_available(vae_device device, char *info, size_t info_size);

/* The matrix products' arithmetic: FP32 (the default), TF32 on a GPU (tensor cores with 10-bit
 * mantissas for the products' inputs, FP32 accumulation), BF16 on the CPU (the dense and conv
 * layers' products with bf16 inputs, 8-bit mantissas, and FP32 accumulation, on oneDNN; weights,
 * activations, gradients and Adam stay FP32). */
typedef enum {
    VAE_PRECISION_FP32 = 0,
    VAE_PRECISION_TF32 = 1,
    VAE_PRECISION_BF16 = 2
} vae_precision;
/* "fp32", "tf32", "bf16" */
vae_status vae_precision_parse(const char *name, vae_precision *out, vae_error *err);
const char *vae_precision_name(vae_precision precision);

/* The library that multiplies matrices on the CPU: OpenBLAS (a new or loaded model's until
 * vae_model_set_backend), oneDNN (Intel's, what PyTorch's CPU path uses; in builds that have
 * it; the program's and the Python package's default there), or AUTO: whichever multiplies the
 * model's own layer shapes faster on this CPU, measured once when it is chosen. */
typedef enum { VAE_BACKEND_OPENBLAS = 0, VAE_BACKEND_ONEDNN = 1, VAE_BACKEND_AUTO = 2 } vae_backend;
/* "openblas", "onednn", "auto" */
vae_status vae_backend_parse(const char *name, vae_backend *out, vae_error *err);
const char *vae_backend_name(vae_backend backend);
/* Non-zero when this build has the backend (OpenBLAS and AUTO always). */
int vae_backend_available(vae_backend backend);
/* The program's and the Python package's default: oneDNN where this build has it (the faster
 * in the configurations measured: README, "Two CPU backends"), else OpenBLAS. A fixed choice,
 * not AUTO's measurement, so that reruns give the same bits. */
vae_backend vae_backend_default(void);

/* ---------------------------------------------------------------- model configuration */

#define VAE_MAX_HIDDEN 8
#define VAE_MAX_CONV 6

typedef enum {
    VAE_ACT_RELU = 0,
    VAE_ACT_TANH = 1,
    VAE_ACT_LEAKY_RELU = 2, /* slope VAE_LEAKY_SLOPE below zero, as PyTorch's default */
    VAE_ACT_ELU = 3         /* alpha = 1 */
} vae_activation;

#define VAE_LEAKY_SLOPE 0.01f

/* Parses "relu", "tanh", "leaky_relu" (or "leaky-relu", "lrelu"), "elu". */
vae_status vae_activation_parse(const char *name, vae_activation *out, vae_error *err);
const char *vae_activation_name(vae_activation act);

/* p(x|z): what the decoder's outputs parameterize, per value of x. */
typedef enum {
    VAE_LIK_BERNOULLI = 0, /* x in [0,1]; one logit per value (the default) */
    VAE_LIK_GAUSSIAN = 1,  /* real x; a mean per value, the variance as `variance` says */
    VAE_LIK_POISSON = 2    /* counts x >= 0; a log-rate per value */
} vae_likelihood;

/* The Gaussian's variance: fixed (sigma^2), one learned per value of x (a parameter tensor
 * "likelihood.logvar", shape (D)), or decoded per sample (the output layer gives D means,
 * then D raw log-variances). Learned variances are floor + exp(raw): never below the floor, so
 * the likelihood cannot collapse onto a single training value. */
typedef enum { VAE_VAR_FIXED = 0, VAE_VAR_PER_DIM = 1, VAE_VAR_PER_SAMPLE = 2 } vae_variance;

vae_status vae_likelihood_parse(const char *name, vae_likelihood *out, vae_error *err);
const char *vae_likelihood_name(vae_likelihood lik);
/* "fixed", "dim" (or "per-dim"), "sample" (or "per-sample") */
vae_status vae_variance_parse(const char *name, vae_variance *out, vae_error *err);
const char *vae_variance_name(vae_variance var);

typedef struct {
    int input_dim;                     /* D */
    int latent_dim;                    /* L */
    int n_encoder;                     /* number of hidden encoder layers, 1..VAE_MAX_HIDDEN */
    int encoder[VAE_MAX_HIDDEN];       /* their widths, input side first */
    int n_decoder;                     /* number of hidden decoder layers, 1..VAE_MAX_HIDDEN */
    int decoder[VAE_MAX_HIDDEN];       /* their widths, latent side first */
    vae_activation activation;         /* between hidden layers; heads and output are linear */
    vae_likelihood likelihood;         /* BERNOULLI when zero-initialized */
    vae_variance variance;             /* GAUSSIAN only */
    float sigma;                       /* GAUSSIAN with FIXED variance: the standard deviation */
    float variance_floor;              /* GAUSSIAN with a learned variance: its lower bound */
    /* Convolutions for images (PyTorch's Conv2d, NCHW): the input is image_channels x
     * image_rows x image_cols (their product is input_dim); the encoder starts with n_conv
     * convolutions (each followed by the activation) before its dense layers, and the decoder
     * ends with their mirror: a dense layer to the last convolution's output shape, then
     * transposed convolutions back to the image, the last one giving the likelihood's
     * parameters per pixel. n_conv = 0: an MLP. */
    int n_conv;
    struct {
        int channels, kernel, stride, padding;
    } conv[VAE_MAX_CONV];
    int image_channels, image_rows, image_cols;
    int missing;                       /* 1: data may have missing values (MIWAE, Mattei &
                                          Frellsen 2019): the encoder sees the zero-filled x
                                          and the mask, the likelihood only observed values */
    int n_classes;                     /* C > 0: a conditional VAE (Sohn et al. 2015): the
                                          label's one-hot code joins the encoder's input and
                                          the decoder's input; 0: unconditional */
} vae_config;

/* Fills cfg with a named preset for data of width input_dim:
 *   "pytorch": D-400-(20)-400-D, relu (the canonical PyTorch example)
 *   "seed":    D-128-64-32-(2)-256-128-64-D, relu (the seed article's network, done right)
 *   "conv":    1x28x28 images: Conv2d 32x4s2p1, 64x4s2p1, dense 256, (20), dense 256, the
 *              mirrored ConvTranspose2d layers; relu */
vae_status vae_config_preset(vae_config *cfg, const char *name, int input_dim, vae_error *err);
/* Parses convolutions "32x4s2p1,64x4s2p1" (channels x kernel, then optional stride and
 * padding, default 1 and 0) into cfg->conv and cfg->n_conv. */
vae_status vae_conv_layers_parse(const char *text, vae_config *cfg, vae_error *err);
/* Parses a comma-separated list of widths ("512,256") into sizes[]; *count gets their number. */
vae_status vae_layer_sizes_parse(const char *text, int *sizes, int *count, vae_error *err);
/* Checks every field; a message names the first bad one. */
vae_status vae_config_validate(const vae_config *cfg, vae_error *err);

/* ---------------------------------------------------------------- the model */

typedef struct vae_model vae_model;

/* Creates a model with PyTorch's nn.Linear initialization: weights and biases uniform in
 * +-1/sqrt(fan_in), drawn from `seed`. Gradients start at zero. */
vae_status vae_model_create(vae_model **out, const vae_config *cfg, uint64_t seed, vae_error *err);
void vae_model_free(vae_model *model);
const vae_config *vae_model_config(const vae_model *model); /* view */

/* The flat buffers (views, num_params floats each). */
size_t vae_model_num_params(const vae_model *model);
float *vae_model_params(vae_model *model);
float *vae_model_grads(vae_model *model);
void vae_model_zero_grads(vae_model *model);

/* Where vae_encode_all, vae_decode_all and vae_impute run for this model, like PyTorch's
 * module.to(device): CPU (a new or loaded model's), CUDA, or AUTO (a GPU when there is one and
 * it runs the model). Training and evaluation take theirs from their options. Nothing is kept
 * on the device between calls. */
vae_status vae_model_set_device(vae_model *model, vae_device device, vae_precision precision,
                                vae_error *err);
vae_device vae_model_device(const vae_model *model);
/* The CPU backend of a model's passes (a new or loaded model's: OpenBLAS). AUTO times both on
 * the model's layers (dense and convolutions) at `batch` rows and keeps the faster; *chosen (may be NULL) gets the
 * one in use. Results agree to the products' rounding (1e-5 relative), not bit for bit. */
vae_status vae_model_set_backend(vae_model *model, vae_backend backend, int batch,
                                 vae_backend *chosen, vae_error *err);
vae_backend vae_model_backend(const vae_model *model);
vae_precision vae_model_precision(const vae_model *model);
/* The CPU's products for this model: FP32, or BF16 (oneDNN's; refused, saying why, in a build
 * without oneDNN or on a CPU without bf16 product instructions (AVX512_BF16, AMX), where
 * oneDNN would emulate them). Set the backend first: vae_model_set_backend goes back to FP32.
 * In vae_model_cpu_precision: FP32 or BF16. */
vae_status vae_model_set_cpu_precision(vae_model *model, vae_precision precision,
                                       vae_error *err);
vae_precision vae_model_cpu_precision(const vae_model *model);

/* The table of named tensors: "encoder.0.weight" (out,in), "encoder.0.bias" (out), ...,
 * "mu.weight", "mu.bias", "logvar.weight", "logvar.bias", "decoder.0.weight", ...,
 * "output.weight", "output.bias". Biases have cols == 1. */
typedef struct {
    const char *name; /* view */
    size_t offset;    /* in floats, into params and grads */
    int rows, cols;   /* as a matrix: a convolution's weight is (dims[0], the rest) */
    int ndims;        /* its shape as PyTorch has it: 1 (bias), 2 (linear), 4 (convolution) */
    int dims[4];
} vae_tensor_info;
int vae_model_num_tensors(const vae_model *model);
vae_tensor_info vae_model_tensor(const vae_model *model, int index);
/* Index of the tensor with this name, or -1. */
int vae_model_find_tensor(const vae_model *model, const char *name);

/* Standardization of the data, kept with the model (saved in its file as the tensors
 * "standardize.mean" and "standardize.std"): x' = (x - mean) / std. The library applies it to
 * the data values every data-set call is given (vae_train, vae_eval_elbo, vae_eval,
 * vae_encode_all, vae_encode_data, vae_impute) and inverts it for the values it returns
 * (vae_decode_all, vae_impute): callers work in the data's own units throughout. The pass
 * functions (vae_forward ... vae_log_likelihood) work in the model's units. NULL, NULL removes
 * it. */
vae_status vae_model_set_standardization(vae_model *model, const float *mean, const float *std,
                                         vae_error *err);
/* The model's standardization (D values each), or NULL without one. */
const float *vae_model_data_mean(const vae_model *model);
const float *vae_model_data_std(const vae_model *model);

/* ---------------------------------------------------------------- forward and backward */

/* Activations of one batch, sized once for at most max_batch samples: no allocation happens in
 * a training step. One workspace per thread of work; it belongs to one model. */
typedef struct vae_workspace vae_workspace;
vae_status vae_workspace_create(vae_workspace **out, const vae_model *model, int max_batch,
                                vae_error *err);
void vae_workspace_free(vae_workspace *ws);

/* Sums over a batch (double, so long runs report exact metrics). */
typedef struct {
    double recon; /* sum of per-sample BCE, nats */
    double kl;    /* sum of per-sample KL, nats */
    size_t count; /* samples summed */
} vae_loss;

/* The rows of one pass, as views the caller owns (read during the call only): the pass
 * functions below take their inputs here, never through the workspace. Values are in the
 * model's units (standardized when the model standardizes; the data-set functions further
 * down take data in its own units). */
typedef struct {
    int n;                 /* B rows, 1..the workspace's max_batch */
    const float *x;        /* (B,D) inputs */
    const float *eps;      /* (B,L) standard normal noise; (B*k,L) for vae_iwae_step, input b's
                              draws in rows b*k..b*k+k-1 */
    const uint8_t *labels; /* (B) classes 0..C-1 for a conditional model, else NULL */
    const uint8_t *mask;   /* (B,D) 1 observed, 0 missing (NULL: all observed); the likelihood
                              counts observed values only, a model with cfg.missing encodes it */
} vae_batch;

/* Forward pass: encoder, z = mu + sigma * eps, decoder, the per-sample loss. Keeps what backward
 * needs in ws and ADDS the batch's sums to *loss (which may be NULL). */
vae_status vae_forward(const vae_model *model, vae_workspace *ws, const vae_batch *batch,
                       vae_loss *loss, vae_error *err);
/* What the gradient is of: the batch mean of the reconstruction term plus kl_weight times the
 * KL term, where with free_bits = λ > 0 each latent unit's batch-mean KL counts as
 * max(λ, KL_j) (Kingma et al. 2016: a unit below λ nats gets no KL gradient). {1, 0} is the
 * ELBO; kl_weight = β gives the β-VAE; a weight rising from 0 is KL warm-up. */
typedef struct {
    float kl_weight;
    float free_bits;
} vae_objective;
/* Backward pass of the last forward on ws, with the same batch: the likelihood's gradient,
 * then the decoder, the reparameterization and KL, the encoder. ADDS the gradient of the batch
 * MEAN of the objective (NULL: the negative ELBO) to vae_model_grads(). Start from zero
 * gradients (a new model has them; vae_adam_step and vae_model_zero_grads clear them). */
vae_status vae_backward(vae_model *model, vae_workspace *ws, const vae_batch *batch,
                        const vae_objective *objective, vae_error *err);
/* One training pass on the importance-weighted bound with k draws per input (Burda et al.):
 * batch->eps holds n*k rows. ADDS the gradient of the batch mean of -log (1/k) sum_i w_i to
 * vae_model_grads() and ADDS the batch's bound to loss->recon (loss->kl stays; the bound has
 * no separate KL). The workspace must hold n*k rows. k = 1 is the ELBO with a sampled KL. */
vae_status vae_iwae_step(vae_model *model, vae_workspace *ws, const vae_batch *batch, int k,
                         vae_loss *loss, vae_error *err);
/* Per-sample terms of the last forward (views, `batch` doubles each). */
const double *vae_workspace_recon(const vae_workspace *ws);
const double *vae_workspace_kl(const vae_workspace *ws);
/* Views of the last forward's tensors: mu and logvar (B,L), z (B,L), the decoder's outputs
 * (B, D or 2D: the likelihood's parameters). */
const float *vae_workspace_mu(const vae_workspace *ws);
const float *vae_workspace_logvar(const vae_workspace *ws);
const float *vae_workspace_z(const vae_workspace *ws);
const float *vae_workspace_logits(const vae_workspace *ws);

/* Encoder only: mu and logvar (B,L) of batch->x (with its labels and mask; eps unused); either
 * output may be NULL. */
vae_status vae_encode(const vae_model *model, vae_workspace *ws, const vae_batch *batch,
                      float *mu, float *logvar, vae_error *err);
/* Decoder only: the means of p(x|z) (n,D) of z (n,L) (labels: n classes for a conditional
 * model, else NULL), in the model's units. */
vae_status vae_decode(const vae_model *model, vae_workspace *ws, const float *z,
                      const uint8_t *labels, int n, float *means, vae_error *err);

/* log p(x|z) of each of the n rows of z under the decoder, in nats. Row r is scored against
 * x + r*x_stride (and its mask, laid out like x; NULL: all observed): x_stride D for a batch
 * of inputs, 0 for many latent points against one input (importance sampling, quadrature).
 * labels: n classes for a conditional model, else NULL. */
vae_status vae_log_likelihood(const vae_model *model, vae_workspace *ws, const float *z,
                              const uint8_t *labels, int n, const float *x, size_t x_stride,
                              const uint8_t *mask, double *log_px, vae_error *err);

/* ---------------------------------------------------------------- optimizer */

typedef struct {
    float lr;      /* 1e-3 */
    float beta1;   /* 0.9 */
    float beta2;   /* 0.999 */
    float epsilon; /* 1e-8 */
} vae_adam_options;
void vae_adam_options_default(vae_adam_options *opt);

typedef struct vae_adam vae_adam;
vae_status vae_adam_create(vae_adam **out, size_t num_params, const vae_adam_options *opt,
                           vae_error *err);
void vae_adam_free(vae_adam *adam);
/* One bias-corrected Adam step: params -= lr * mhat / (sqrt(vhat) + eps); then sets grads to
 * zero, ready for the next backward (one pass over the buffers instead of two). */
void vae_adam_step(vae_adam *adam, float *params, float *grads);
uint64_t vae_adam_steps(const vae_adam *adam);
/* For checkpoints: the options, the moments (views, num_params floats each) and the count of
 * steps taken, which a resumed optimizer must continue from. */
const vae_adam_options *vae_adam_get_options(const vae_adam *adam);
size_t vae_adam_num_params(const vae_adam *adam);
float *vae_adam_first_moment(vae_adam *adam);
float *vae_adam_second_moment(vae_adam *adam);
void vae_adam_set_steps(vae_adam *adam, uint64_t steps);

/* ---------------------------------------------------------------- data */

typedef struct {
    size_t count;    /* N samples */
    int dim;         /* D values per sample */
    int rows, cols;  /* image shape when the data are 2-D images (rows*cols == dim), else 0 */
    float *x;        /* (N,D) in [0,1], owned; a missing value is 0 here */
    uint8_t *labels; /* N labels or NULL, owned */
    uint8_t *mask;   /* (N,D): 1 observed, 0 missing; NULL when nothing is missing; owned */
} vae_dataset;
void vae_dataset_free(vae_dataset *ds);

/* Per-column mean and sample standard deviation of data's observed values (a constant column
 * gets std 1). */
void vae_standardize_fit(const vae_dataset *data, float *mean, float *std);
/* x (n, dim) in place: (x - mean) / std, or back with invert != 0. */
void vae_standardize(float *x, size_t n, int dim, const float *mean, const float *std, int invert);

/* A 64-bit fingerprint of the data (count, shape, every value): a resumed run refuses other data. */
uint64_t vae_dataset_hash(const vae_dataset *ds);

/* Reads an IDX image file (the MNIST format: big-endian header, unsigned bytes), gzipped or
 * not, scaled to [0,1]. The header's claimed size is checked against the bytes actually there
 * before anything large is allocated, and a gzip stream is read no further than the claim.
 * labels_path (may be NULL) names an IDX label file whose count must match. */
vae_status vae_idx_load(const char *images_path, const char *labels_path, vae_dataset **out,
                        vae_error *err);
/* Numeric CSV (RFC 4180: quoted fields, CRLF line ends; a UTF-8 byte-order mark is skipped),
 * plain or gzip (by content), read with libcsv. The first row is a header when any of its
 * cells is not a number (it is skipped and said in opt->header, so sklearn's
 * "150,4,setosa,..." first lines work); every other row must have the first data row's number
 * of cells, each a finite number that fits a float. A label column, when
 * asked for, must hold integers 0..255. Values are used as they are (no scaling); the first bad
 * cell is reported with its row and column (1-based). */
#define VAE_CSV_NO_LABELS (-1)
#define VAE_CSV_LAST_COLUMN (-2)
typedef struct {
    long label_column; /* 0-based, VAE_CSV_LAST_COLUMN, or VAE_CSV_NO_LABELS (default) */
    int allow_missing; /* 0: refuse; 1: an empty cell, "nan" or "NA" is a missing value */
    /* set by vae_csv_load: 1 when the first row was a header (skipped), and its cells */
    int header;
    char header_text[64];
} vae_csv_options;
void vae_csv_options_default(vae_csv_options *opt);
vae_status vae_csv_load(const char *path, vae_csv_options *opt, vae_dataset **out,
                        vae_error *err);

/* NumPy .npy (versions 1-3): little-endian float32 ('<f4'), float64 ('<f8') or uint8 ('|u1'),
 * C order, shape (N), (N, D) or (N, H, W) (images). uint8 values are scaled to [0,1] like IDX
 * images, floats used as they are. Anything else (big-endian, Fortran order, other types,
 * a size that does not match the file) is refused with the reason. With allow_missing, a NaN
 * is a missing value (see vae_dataset.mask); a sample or a column with nothing observed is
 * refused. */
vae_status vae_npy_load(const char *path, int allow_missing, vae_dataset **out, vae_error *err);

/* Reads an IDX label file: N unsigned bytes; *labels is malloc'ed (free() it). */
vae_status vae_idx_load_labels(const char *path, uint8_t **labels, size_t *count, vae_error *err);
/* The usual label file beside an image file ("train-images-idx3-ubyte.gz" ->
 * "train-labels-idx1-ubyte.gz", "x-images.idx3-ubyte" -> "x-labels.idx1-ubyte") written into
 * out (size out_size). Returns 1 if such a name exists and the file is there, else 0. */
int vae_idx_find_labels(const char *images_path, char *out, size_t out_size);

/* ---------------------------------------------------------------- training */

typedef struct {
    int epoch, epochs;
    double train_loss, train_recon, train_kl; /* per sample, nats, averaged over the epoch */
    double test_loss, test_recon, test_kl;    /* per sample; NaN without test data */
    double samples_per_second;                /* training throughput of the epoch */
    double seconds;                           /* wall time of the epoch's training steps */
    double test_seconds;                      /* wall time of the test evaluation, 0 without */
    vae_device device;                        /* where the epoch ran: CPU or CUDA */
    int launches_per_step;                    /* CUDA: kernels and copies in a step's graph */
    size_t device_bytes;                      /* CUDA: device memory held by the trainer */
} vae_epoch_stats;

/* Called after each step; return non-zero to stop training (vae_train returns CANCELLED). */
typedef int (*vae_progress_fn)(void *user, int epoch, size_t step, size_t steps_per_epoch,
                               double running_loss);
/* Called after each epoch with its statistics. */
typedef void (*vae_epoch_fn)(void *user, const vae_epoch_stats *stats);

/* Where training stands: the epoch in progress (1-based), the steps of it already done and
 * their summed loss (so a run resumed mid-epoch reports the same epoch loss as one that never
 * stopped). A checkpoint saves it; a resumed run starts there. */
typedef struct {
    int epoch;
    uint64_t step_in_epoch;
    vae_loss epoch_so_far;
} vae_train_position;

/* Called every checkpoint_every steps, after each epoch, and when training is cancelled, with
 * the optimizer and the position after the last applied step; a status other than VAE_OK stops
 * training with that status (the message in *err is kept). */
typedef vae_status (*vae_checkpoint_fn)(void *user, const vae_model *model, vae_adam *adam,
                                        vae_train_position position, vae_error *err);

/* Data-parallel training across processes, supplied by the program (vae's MPI build does it
 * with MPI_Allreduce): every rank runs vae_train with the same options, data and initial
 * weights; each takes its share of every global batch (rows batch*rank/size .. batch*(rank+1)/
 * size of it, with the noise a single process would draw for those rows) and of the test set,
 * and the gradients and loss sums are added up across ranks before the identical Adam step.
 * The result equals one process with the same global batch up to the order of the sums (free
 * bits, which floors per-unit KL of each rank's share, is the exception). */
typedef struct {
    int rank, size;
    /* Sums n values elementwise across the ranks, in place; non-zero on failure. */
    int (*sum_floats)(void *ctx, float *values, size_t n);
    int (*sum_doubles)(void *ctx, double *values, size_t n);
    void *ctx;
} vae_collective;

typedef struct {
    int epochs;            /* 10 */
    int batch_size;        /* 128 */
    uint64_t seed;         /* 1: shuffling and noise */
    vae_adam_options adam; /* defaults of vae_adam_options_default */
    int eval_batch_size;   /* 1000 */
    float beta;            /* 1: the KL term's weight (beta-VAE when != 1) */
    uint64_t kl_warmup;    /* 0: steps over which the KL weight rises linearly from 0 to beta */
    float free_bits;       /* 0: nats per latent unit below which its KL gets no gradient */
    int iwae_k;            /* 0: the ELBO; K >= 2: the importance-weighted bound with K draws
                              per input (the epoch's train loss is then that bound) */
    vae_progress_fn progress;
    vae_epoch_fn on_epoch;
    vae_checkpoint_fn checkpoint;
    uint64_t checkpoint_every; /* steps between checkpoint calls; 0: only per epoch and on cancel */
    void *user;
    /* Resuming: an optimizer with the saved moments and step count (caller-owned; NULL: a new
     * one is made from `adam`) and the position to start from ({1, 0} for a fresh run). The
     * position must agree with the optimizer's step count. Shuffling and noise depend only on
     * the seed, the epoch and the global step, so a resumed run replays nothing and computes
     * the same bits as one that never stopped. */
    vae_adam *resume_adam;
    vae_train_position start;
    const vae_collective *collective; /* NULL: one process */
    vae_device device;                /* CPU (default), CUDA or AUTO */
    /* FP32 (default); TF32: a GPU's products; BF16: the CPU's (the run is on the CPU, and the
     * model keeps computing in BF16 afterwards: vae_model_set_cpu_precision) */
    vae_precision precision;
    /* 0: the CPU's threads split each step's matrix products (the default); 1: they split each
     * batch instead, every thread running forward and backward on its slice with single-threaded
     * products, the gradients then summed in slice order (better where a batch's products are
     * too small for many cores). The same bits for a given thread count; other thread counts
     * differ by the sums' rounding. Runs with free bits (a per-batch floor) keep 0. 2: as 1,
     * the threads' fp32 dense layers on a copy of the weights transposed once a step (prepacked:
     * the products then read them as they are instead of packing them on each call, which pays
     * where each thread has few rows; bf16 rounds its weights once a step in either case).
     * vae_train_batch_threads_auto says which is faster here. */
    int batch_threads;
} vae_train_options;
void vae_train_options_default(vae_train_options *opt);

/* Trains with minibatches reshuffled every epoch (the last short batch is used too), starting
 * from zero gradients (vae_model_grads is cleared first). Evaluates on test (may be NULL) after
 * each epoch. Stops with VAE_ERR_DIVERGED, naming the step, when the
 * loss or a gradient is not finite; the parameters are then those of the last good step.
 * On a GPU (opt->device) the steps run in chunks of up to 256 queued steps: progress is called
 * once per chunk and a cancel takes effect at the chunk's end; checkpoint_every and the epochs
 * end chunks, so checkpoints fall on the same steps as on the CPU. */
vae_status vae_train(vae_model *model, const vae_dataset *train, const vae_dataset *test,
                     const vae_train_options *opt, vae_error *err);

/* Whether batch threads (opt->batch_threads = 1, or 2 with prepacked weights) run opt's
 * training steps on model (its backend set) faster than threaded products with this process's
 * threads: *batch_threads = 0, 1 or 2, from a forward and backward pass (or an IWAE step) of
 * opt->batch_size zero inputs timed each way (2 only for fp32 products), the best of three
 * rounds each; batch threads only when they take under 95% of the products' time, prepacked
 * only when under 95% of theirs. 0 without timing where batch threads do not apply (one
 * thread, free bits, opt->device CUDA). The model's parameters and gradients are left as they
 * were. Timings vary from run to run, and so may the answer: for bit-identical reruns, pass
 * the answer given, not this choice, to the next run. */
vae_status vae_train_batch_threads_auto(vae_model *model, const vae_train_options *opt,
                                        int *batch_threads, vae_error *err);
/* Everything vae_train checks before its first step (the data, the options, where to start,
 * the optimizer to resume, the device), without training: a program can refuse a run before
 * it creates any file. */
vae_status vae_train_check(const vae_model *model, const vae_dataset *train,
                           const vae_dataset *test, const vae_train_options *opt, vae_error *err);

/* Mean negative ELBO of a data set with one noise draw per sample from stream `seed`. */
vae_status vae_eval_elbo(const vae_model *model, const vae_dataset *data, int batch_size,
                        uint64_t seed, vae_loss *loss, vae_error *err);

/* ---------------------------------------------------------------- measuring a model */

typedef struct {
    /* K of the importance-weighted estimate of log p(x) (Burda et al. 2016):
     * log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x). 5000; 0: ELBO only. */
    int importance_samples;
    int chunk;     /* latent points decoded per pass, 500 */
    int batch;     /* examples per encoder/ELBO pass, 500 */
    uint64_t seed; /* 1: the ELBO uses the same noise as vae_eval_elbo with this seed */
    /* Called from one thread with examples done and total; non-zero stops the evaluation with
     * VAE_ERR_CANCELLED. May be NULL. */
    int (*progress)(void *user, size_t done, size_t total);
    void *user;
    vae_device device;       /* CPU (default), CUDA or AUTO: the same draws on either */
    vae_precision precision; /* FP32 (default) or TF32: a GPU's matrix products */
} vae_eval_options;
void vae_eval_options_default(vae_eval_options *opt);

/* Means per example, in nats. The likelihood is Bernoulli over values in [0,1] used as they
 * are (not binarized), so log p(x) is a density-like score, comparable between models on the
 * same data. */
typedef struct {
    size_t count;
    double neg_elbo, recon, kl; /* one reparameterized draw per example, analytic KL */
    double nll;                 /* -log p(x) by importance sampling; NaN when K = 0 */
    double nll_stderr;          /* standard error of nll's mean over the examples */
    double bits_per_dim;        /* nll (neg_elbo when K = 0) / (D ln 2) */
    int active_units;           /* latent units with Cov_x(E_q[z_u]) > 0.01 (Burda et al.) */
    int latent_dim, importance_samples;
} vae_eval_result;

/* Per-example columns of vae_eval's per_sample output, in this order. */
enum { VAE_EVAL_NEG_ELBO, VAE_EVAL_RECON, VAE_EVAL_KL, VAE_EVAL_NLL, VAE_EVAL_COLUMNS };

/* Evaluates the model on data: the ELBO and its parts, the importance-weighted -log p(x), the
 * active units. per_sample (may be NULL) receives count rows of VAE_EVAL_COLUMNS doubles. The
 * examples are spread over the threads; each example's random draws come from its own stream
 * (seed, index), so results do not depend on the thread count or the batch sizes. */
vae_status vae_eval(const vae_model *model, const vae_dataset *data, const vae_eval_options *opt,
                    vae_eval_result *result, double *per_sample, vae_error *err);

/* Fills in the missing values of data (vae_dataset.mask) with a model trained with missing
 * values: k draws z ~ q(z|x_obs), weighted by p(x_obs|z) p(z) / q(z|x_obs) and normalized
 * (MIWAE). multiple = 0: the weighted mean of the decoded values (single imputation); M > 0:
 * M imputations, each a draw z resampled by the weights (sampling importance resampling) and
 * then the missing values drawn from p(x|z). out gets max(1, M) completed copies (N,D) back to back; observed
 * values are copied unchanged. Draws come from stream (seed, sample index). */
vae_status vae_impute(const vae_model *model, const vae_dataset *data, int k, int multiple,
                      uint64_t seed, float *out, vae_error *err);

/* ---------------------------------------------------------------- the latent space */

/* Encoder means and log-variances (n,L) of n inputs (n,D), in batches (either output may be
 * NULL). labels (n, one per input) for a conditional model, else NULL. */
vae_status vae_encode_all(const vae_model *model, const float *x, const uint8_t *labels, size_t n,
                          float *mu, float *logvar, vae_error *err);
/* vae_encode_all of a data set (n = data->count): with its labels, and for a model of missing
 * values with its masks (the holes are not taken for values); a model without missing values
 * refuses data that have them. */
vae_status vae_encode_data(const vae_model *model, const vae_dataset *data, float *mu,
                           float *logvar, vae_error *err);
/* The means of p(x|z) (n,D) of n latent points (n,L), in batches; labels as above. */
vae_status vae_decode_all(const vae_model *model, const float *z, const uint8_t *labels, size_t n,
                          float *probs, vae_error *err);
/* The standard normal quantile function Φ⁻¹(p), 0 < p < 1 (to 1e-15 relative). */
double vae_normal_quantile(double p);
/* Points along the path from a to b (each of dim values) at t in [0,1]: linear, or spherical
 * (along the great circle, which keeps the norm typical of the prior; linear when a and b are
 * nearly parallel). */
void vae_lerp(const float *a, const float *b, double t, int dim, float *out);
void vae_slerp(const float *a, const float *b, double t, int dim, float *out);
/* Projects n points (n,dim) onto their first two principal components (n,2), centered; the
 * fractions of variance they explain go to explained[2] (may be NULL). dim == 2 copies. */
vae_status vae_pca2(const float *points, size_t n, int dim, float *out, double explained[2],
                    vae_error *err);

/* ---------------------------------------------------------------- model files */

/* Model files are safetensors (https://huggingface.co/docs/safetensors): an 8-byte
 * little-endian header length, a JSON header padded with spaces to a multiple of 8 bytes that
 * maps each tensor name to {"dtype":"F32","shape":[...],"data_offsets":[begin,end]} plus a
 * "__metadata__" object of strings, then the raw little-endian tensors, back to back, nothing
 * after. Tensors are named as in vae_model_tensor(); a training checkpoint adds Adam's moments
 * as "adam.m.<name>" and "adam.v.<name>". The metadata holds the architecture, the likelihood,
 * the data shape and the training state (see vae_train_state), so `safetensors` in Python or a
 * 20-line numpy reader opens the weights, and vae can rebuild the model from the file alone. */

typedef struct {
    char preset[32];         /* "" when the architecture was given layer by layer */
    int data_rows, data_cols; /* image shape of the training data, 0 when not images */
    uint64_t seed;
    int batch_size, epochs;  /* as asked for */
    vae_train_position position; /* where training stands */
    uint64_t data_hash;      /* vae_dataset_hash of the training data, 0 if unknown */
    float beta, free_bits;   /* the objective trained (1 and 0 for the ELBO) */
    uint64_t kl_warmup;      /* steps of KL warm-up */
    int iwae_k;              /* 0 or the IWAE draws trained with */
    int has_optimizer;       /* on load: the file holds Adam's moments */
    uint64_t optimizer_steps; /* on load: Adam's step count when it does */
} vae_train_state;

/* Writes the model (and, when adam is not NULL, its moments) to path crash-safely: into a
 * temporary file in the same folder, fsync, rename over path, fsync the folder. On any failure
 * path is left as it was and no temporary file remains. state may be NULL. */
vae_status vae_model_save(const char *path, const vae_model *model, vae_adam *adam,
                          const vae_train_state *state, vae_error *err);
/* Reads a model file, validating everything before trusting it (header length <= 100 MB,
 * well-formed UTF-8 JSON, known dtypes, shapes without overflow, offsets inside the file and
 * covering it exactly without overlap, tensors matching the architecture in the metadata).
 * With adam not NULL the file must hold the moments and *adam gets an optimizer carrying them;
 * state (may be NULL) gets the training state. */
vae_status vae_model_load(const char *path, vae_model **model, vae_adam **adam,
                          vae_train_state *state, vae_error *err);
/* A 64-bit fingerprint of an architecture: a resumed run refuses another one. */
uint64_t vae_config_hash(const vae_config *cfg);

/* ---------------------------------------------------------------- writing files */

/* Fills an open file; returns VAE_OK, or the status of what failed (VAE_ERR_IO for a write). */
typedef vae_status (*vae_write_fn)(FILE *f, void *ctx);
/* Writes path crash-safely: write() fills a temporary file in the same folder, which is
 * fsync'ed and renamed over path, and the folder fsync'ed. On any failure path is as it was
 * and no temporary file remains. Every file libvae writes goes through here. */
vae_status vae_write_atomic(const char *path, vae_write_fn write, void *ctx, vae_error *err);

/* Writes a (rows, cols) array as NumPy .npy (version 1.0, little-endian '<f4' or '<f8',
 * C order), which numpy.load opens. */
vae_status vae_npy_write_f32(const char *path, const float *data, size_t rows, size_t cols,
                             vae_error *err);
vae_status vae_npy_write_f64(const char *path, const double *data, size_t rows, size_t cols,
                             vae_error *err);

/* ---------------------------------------------------------------- pictures */

/* Writes an 8-bit PNG of w*h pixels (row-major) with 1 (gray) or 3 (RGB) channels. */
vae_status vae_png_write(const char *path, const uint8_t *pixels, int width, int height,
                         int channels, vae_error *err);
/* vae_png_write with one channel. */
vae_status vae_png_write_gray(const char *path, const uint8_t *pixels, int width, int height,
                              vae_error *err);
/* Writes count images (rows x cols floats in [0,1] each, back to back) as a grid of grid_cols
 * columns with a 2-pixel gap, scaled up `scale` times. */
vae_status vae_png_write_grid(const char *path, const float *images, int count, int rows, int cols,
                              int grid_cols, int scale, vae_error *err);

#ifdef __cplusplus
}
#endif
#endif /* VAE_H */

/* gpu.h — the GPU backend's interface, in plain C types so that the CUDA side (the .cu files
 * of src/cuda, compiled by nvcc as C++) and the C side (gpu_train.c, which drives training) share nothing
 * but this header and vae.h. A build without CUDA links gpu_none.c instead, whose functions say
 * so; the model, loss and training code never include a CUDA header.
 *
 * The device holds the whole training state (parameters, gradients, Adam's moments, the data,
 * every activation) and runs each training step as one captured CUDA graph: the batch is
 * gathered by the epoch's permutation, noise is drawn on the device from the same counter-based
 * generator as the CPU's (the same seed gives the same eps), and the step counters live on the
 * device, so the same graph serves every step of every epoch. */
#ifndef VAE_GPU_H
#define VAE_GPU_H

#include "vae.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VAE_GPU_MAX_LAYERS (2 * VAE_MAX_HIDDEN + 3)

/* One layer: dense, y (B,out) = act(x (B,in) W^T + b), W (out,in) at `weight`, b at `bias`
 * (offsets in floats into the flat parameter and gradient buffers); or a convolution (PyTorch's
 * Conv2d, weight (out_c, in_c, k, k)) or transposed convolution (ConvTranspose2d, weight
 * (in_c, out_c, k, k)) of NCHW images, one bias per output channel. in and out count values. */
enum { VAE_GPU_DENSE = 0, VAE_GPU_CONV = 1, VAE_GPU_CONVT = 2 };
typedef struct {
    int kind;
    int in, out;
    size_t weight, bias;
    int in_c, in_h, in_w, out_c, out_h, out_w, k, stride, pad;
} vae_gpu_layer;

/* What the device needs of a model: its layers in forward order (the encoder's convolutions
 * and hidden layers, then the decoder's hidden layers, projection and transposed convolutions,
 * then the output layer; the two heads apart), the likelihood. The encoder's last layer and
 * the decoder's first are dense. */
typedef struct {
    int input_dim, latent_dim;
    int n_encoder, n_decoder; /* layers before the heads, and after them before the output */
    int n_classes;            /* C > 0: conditional; the first encoder and decoder layers take
                                 the one-hot label as their last C inputs */
    int missing;              /* a model of missing values: the first encoder layer takes
                                 [x | mask] (2D inputs), the likelihood the observed values */
    vae_gpu_layer layers[VAE_GPU_MAX_LAYERS];
    vae_gpu_layer mu, logvar;
    vae_activation activation;
    vae_likelihood likelihood;
    vae_variance variance;
    float sigma, variance_floor;
    size_t dim_logvar; /* offset of the per-value raw log-variances; used with VAE_VAR_PER_DIM */
    size_t num_params;
} vae_gpu_model;

/* What is trained: the objective, the optimizer and the noise's seed. */
typedef struct {
    uint64_t seed;
    uint64_t noise_stream, eval_stream; /* VAE_STREAM_NOISE and VAE_STREAM_EVAL */
    int batch_size;                     /* the full batch (the last one may be shorter) */
    int iwae_k;                         /* K >= 2: the IWAE bound with K draws per input; the
                                           device then holds batch_size * K rows */
    float beta, free_bits;
    uint64_t kl_warmup;
    vae_adam_options adam;
    vae_precision precision;
} vae_gpu_objective;

typedef struct vae_gpu vae_gpu;

/* Non-zero when a CUDA device can be used; info gets its description or the reason not. */
int vae_gpu_available(char *info, size_t info_size);
/* 0 when cuBLAS opens and has every function the backend calls, GPU or not (it is opened at
 * run time, by vae_gpu_create: src/cuda/cublas_lib.cuh); else non-zero, the reason in msg (512
 * bytes). Once opened, the library stays loaded (as after any GPU context). */
int vae_gpu_blas_probe(char *msg);

/* Creates the device state for batches of at most max_rows rows and uploads the data sets
 * (test may be NULL). msg (512 bytes) gets the reason on failure; returns VAE_OK or a status. */
vae_status vae_gpu_create(vae_gpu **out, const vae_gpu_model *model, const vae_gpu_objective *obj,
                          int max_rows, const vae_dataset *train, const vae_dataset *test,
                          char *msg);
void vae_gpu_free(vae_gpu *g);

/* Parameters and Adam's state to the device (m, v NULL: zero moments; global_step: the steps
 * taken so far), and back (any pointer may be NULL). */
vae_status vae_gpu_upload(vae_gpu *g, const float *params, const float *m, const float *v,
                          uint64_t adam_steps, uint64_t global_step, char *msg);
vae_status vae_gpu_download(vae_gpu *g, float *params, float *m, float *v, char *msg);

/* Starts an epoch: the permutation of the training set (n indices) and the step to start at. */
vae_status vae_gpu_epoch_begin(vae_gpu *g, const uint32_t *order, size_t n, uint32_t epoch_step,
                               char *msg);
/* Queues `count` training steps of `batch` rows each (one graph launch each; the graph of each
 * batch size is captured at its first use). Nothing waits. */
vae_status vae_gpu_steps(vae_gpu *g, int batch, int count, char *msg);
/* Waits for the queued steps and reads back the last `count` steps' summed recon and KL terms
 * (count <= VAE_GPU_HISTORY) and the first step, counted from 0, that was not finite (its
 * loss or a gradient; UINT64_MAX when none: from that step on no update was applied). */
#define VAE_GPU_HISTORY 1024
vae_status vae_gpu_sync(vae_gpu *g, int count, double *recon, double *kl, uint64_t *bad_step,
                        char *msg);
/* The negative ELBO's sums over test samples [from, to) in batches of at most max_rows, each
 * sample's noise from stream (seed, VAE_STREAM_EVAL + index) as on the CPU. */
vae_status vae_gpu_evaluate(vae_gpu *g, size_t from, size_t to, vae_loss *loss, char *msg);

/* Evaluation of the data set given as `train`: each example's -log p(x|z) and KL with one
 * draw from stream (seed, stream + index), and the posteriors mu, logvar (N, L) each, as
 * vae_eval's ELBO pass; then, after it, the importance-weighted -log p(x) of each example with
 * k draws from stream (seed, stream + index) drawn in calls of `chunk` rows, as vae_eval's.
 * progress (may be NULL) is called now and then; non-zero cancels. */
vae_status vae_gpu_elbo_terms(vae_gpu *g, uint64_t stream, double *recon, double *kl, float *mu,
                              float *logvar, char *msg);
vae_status vae_gpu_iwae(vae_gpu *g, int k, int chunk, uint64_t stream, double *nll,
                        int (*progress)(void *user, size_t done, size_t total), void *user,
                        char *msg);

/* The posterior means and log-variances (N, L) of the `train` set, with its masks for a model
 * of missing values (either output may be NULL), and
 * the means of p(x|z) (n, D) of n host latent points z (n, L) (labels: n, conditional only). */
vae_status vae_gpu_encode(vae_gpu *g, float *mu, float *logvar, char *msg);
vae_status vae_gpu_decode(vae_gpu *g, const float *z, const uint8_t *labels, size_t n,
                          float *means, char *msg);

/* Nodes (kernels and copies) in the captured step graph of `batch` rows, 0 before its capture;
 * the device memory this state holds (bytes). */
int vae_gpu_step_nodes(const vae_gpu *g, int batch);
size_t vae_gpu_memory(const vae_gpu *g);

#ifdef __cplusplus
}
#endif
#endif

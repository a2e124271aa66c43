/* gpu.cu — the GPU backend's state and passes (gpu.h): device buffers, the MLP's forward and
 * backward passes as cuBLAS products between the fused kernels of kernels.cu, the training step
 * captured once per batch size as a CUDA graph, and the evaluation of the test set.
 *
 * Row-major (rows, in) activations are column-major (in, rows) matrices to cuBLAS, and a
 * row-major weight W (out, in) is column-major (in, out): so y = x W^T is
 * gemm(T, N, out, rows, in, W, x), dx = dy W is gemm(N, N, in, rows, out, W, dy) and
 * dW = dy^T x is gemm(N, T, in, out, rows, x, dy). */
#include "backend/gpu.h"
#include "cublas_lib.cuh"
#include "kernels.cuh"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define MSG 512
#define MAX_BUFFERS 64
#define BLAS_WORKSPACE (32u << 20)

struct step_graph {
    int batch, nodes;
    cudaGraphExec_t exec;
};

struct vae_gpu {
    vae_gpu_model m;
    vae_gpu_objective obj;
    int max_rows, widest;
    cudaStream_t stream;
    cublas_lib api; /* cuBLAS, opened by vae_gpu_create */
    cublasHandle_t blas;
    void *buffers[MAX_BUFFERS];
    int n_buffers;
    size_t bytes;
    float *params, *grads, *mom1, *mom2;
    const float *train_x, *test_x;
    size_t n_train, n_test;
    uint32_t *order;
    uint8_t *train_labels, *test_labels; /* a conditional model's labels of the data sets */
    float *xb;                        /* (max_rows, D) the gathered batch */
    uint8_t *yb;                      /* (max_rows) its labels (or decode's) */
    uint8_t *train_mask, *test_mask;  /* a model of missing values: the data's masks, or NULL
                                         when nothing is missing */
    uint8_t *mb;                      /* (max_rows, D) the batch's masks */
    float *xin;                       /* (max_rows, 2D) the encoder's input [x | mask] */
    /* convolutions */
    float *conv_cols[VAE_GPU_MAX_LAYERS]; /* a convolution's im2col of its input, for backward */
    float *scratch_cols;              /* any convolution's columns (taps, B positions) */
    float *cm_a, *cm_b;               /* activations channel-major (C, B positions) */
    float *zero_bias, *dbias_cols;    /* a transposed-convolution output adds its own bias */
    float *act[VAE_GPU_MAX_LAYERS];   /* (max_rows, out) each layer's output; the output
                                         layer's before its bias */
    float *heads, *dheads;            /* (2, max_rows, L): mu then logvar, and their gradients */
    float *eps, *z, *dz;              /* (max_rows, L) */
    float *ga, *gb;                   /* (max_rows, widest) gradients of activations */
    double *part_recon;               /* per-block reconstruction sums of the last pass */
    double *kl_rows;                  /* (max_rows) each row's KL in the last pass */
    double *hist_recon, *hist_kl;     /* (VAE_GPU_HISTORY) each step's sums, by step */
    gpu_counters *counters;
    step_graph graphs[2];             /* the full batch's and the short last batch's */
    int n_recon;                      /* blocks of the last pass's reconstruction sums */
    cublasStatus_t blas_status;       /* the first failure of a queued product */
    /* evaluation, allocated at its first use */
    float *eval_mu, *eval_lv;         /* (N, L) the posterior of every example */
    double *eval_rows;                /* (2, max_rows) per-row recon and KL */
    double *log_w;                    /* (examples per group, k) importance weights */
    size_t log_w_size;
    double *eval_nll;                 /* (N) */
    double *host_rows;                /* (max_rows) on the host: per-row sums read back */
    double *iw_log_w, *iw_bounds;     /* IWAE training: (B k) log-weights, (B) bounds */
    float *iw_weights;                /* (B k) normalized weights / B */
};

static vae_status cuda_fail(char *msg, cudaError_t e, const char *what) {
    snprintf(msg, MSG, "%s: %s", what, cudaGetErrorString(e));
    return e == cudaErrorMemoryAllocation ? VAE_ERR_NO_MEMORY : VAE_ERR_INTERNAL;
}

#define CU(call, what)                                                                             \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) return cuda_fail(msg, e_, (what));                                  \
    } while (0)

int vae_gpu_available(char *info, size_t info_size) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        if (info && info_size)
            snprintf(info, info_size, "no CUDA device (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return 0;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) return 0;
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    if (info && info_size)
        snprintf(info, info_size, "%s, %d SMs, %.1f GiB, CUDA %d.%d", p.name,
                 p.multiProcessorCount, (double)p.totalGlobalMem / (1u << 30), runtime / 1000,
                 runtime % 1000 / 10);
    return 1;
}

int vae_gpu_blas_probe(char *msg) {
    cublas_lib api;
    if (cublas_lib_open(&api, msg)) return -1;
    cublas_lib_close(&api);
    return 0;
}

/* cudaMalloc'ed and remembered for vae_gpu_free */
static vae_status dalloc(vae_gpu *g, void **out, size_t bytes, const char *what, char *msg) {
    *out = NULL;
    if (g->n_buffers == MAX_BUFFERS) {
        snprintf(msg, MSG, "too many device buffers");
        return VAE_ERR_INTERNAL;
    }
    cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear it */
        snprintf(msg, MSG, "out of GPU memory for %s (%.1f MB): %s", what, bytes / 1e6,
                 cudaGetErrorString(e));
        return VAE_ERR_NO_MEMORY;
    }
    g->buffers[g->n_buffers++] = *out;
    g->bytes += bytes;
    return VAE_OK;
}

#define ALLOC(ptr, count, what)                                                                    \
    do {                                                                                           \
        vae_status s_ = dalloc(g, (void **)&(ptr), (size_t)(count) * sizeof *(ptr), (what), msg);   \
        if (s_ != VAE_OK) return s_;                                                               \
    } while (0)

static vae_status allocate(vae_gpu *g, const vae_dataset *train, const vae_dataset *test,
                           char *msg) {
    const vae_gpu_model *m = &g->m;
    const size_t rows = (size_t)g->max_rows, dim = (size_t)m->input_dim, lat = m->latent_dim;
    const int n_layers = m->n_encoder + m->n_decoder + 1;
    ALLOC(g->params, m->num_params, "the parameters");
    ALLOC(g->grads, m->num_params, "the gradients");
    ALLOC(g->mom1, m->num_params, "Adam's moments");
    ALLOC(g->mom2, m->num_params, "Adam's moments");
    float *data;
    ALLOC(data, train->count * dim, "the training data");
    g->train_x = data;
    if (train->count)
        CU(cudaMemcpy(data, train->x, train->count * dim * sizeof(float), cudaMemcpyHostToDevice),
           "copying the training data");
    if (test) {
        ALLOC(data, test->count * dim, "the test data");
        g->test_x = data;
        CU(cudaMemcpy(data, test->x, test->count * dim * sizeof(float), cudaMemcpyHostToDevice),
           "copying the test data");
    }
    ALLOC(g->order, train->count, "the epoch's order");
    ALLOC(g->xb, rows * dim, "the batch");
    if (m->missing) {
        ALLOC(g->mb, rows * dim, "the batch's masks");
        ALLOC(g->xin, rows * 2 * dim, "the encoder's input");
        if (train->mask) {
            ALLOC(g->train_mask, train->count * dim, "the masks");
            CU(cudaMemcpy(g->train_mask, train->mask, train->count * dim, cudaMemcpyHostToDevice),
               "copying the masks");
        }
        if (test && test->mask) {
            ALLOC(g->test_mask, test->count * dim, "the masks");
            CU(cudaMemcpy(g->test_mask, test->mask, test->count * dim, cudaMemcpyHostToDevice),
               "copying the masks");
        }
    }
    if (m->n_classes) {
        ALLOC(g->yb, rows, "the batch's labels");
        ALLOC(g->train_labels, train->count, "the labels");
        if (train->count)
            CU(cudaMemcpy(g->train_labels, train->labels, train->count, cudaMemcpyHostToDevice),
               "copying the labels");
        if (test) {
            ALLOC(g->test_labels, test->count, "the labels");
            CU(cudaMemcpy(g->test_labels, test->labels, test->count, cudaMemcpyHostToDevice),
               "copying the labels");
        }
    }
    g->widest = m->mu.in;
    for (int l = 0; l < n_layers; l++) {
        ALLOC(g->act[l], rows * m->layers[l].out, "activations");
        if (m->layers[l].out > g->widest) g->widest = m->layers[l].out;
        if (m->layers[l].in > g->widest) g->widest = m->layers[l].in;
    }
    size_t cols = 0, cm = 0;
    for (int l = 0; l < n_layers; l++) {
        const vae_gpu_layer *c = &m->layers[l];
        if (c->kind == VAE_GPU_DENSE) continue;
        const size_t taps = (size_t)(c->kind == VAE_GPU_CONV ? c->in_c : c->out_c) * c->k * c->k;
        const size_t at = (size_t)(c->kind == VAE_GPU_CONV ? c->out_h * c->out_w : c->in_h * c->in_w);
        if (c->kind == VAE_GPU_CONV) ALLOC(g->conv_cols[l], taps * rows * at, "convolution columns");
        if (taps * rows * at > cols) cols = taps * rows * at;
        if (rows * (size_t)c->in > cm) cm = rows * (size_t)c->in;
        if (rows * (size_t)c->out > cm) cm = rows * (size_t)c->out;
    }
    if (cols > UINT32_MAX || cm > UINT32_MAX) {
        snprintf(msg, MSG, "a convolution's %zu columns for %d rows are more than the GPU "
                 "kernels index (2^32 values); use smaller batches", cols > cm ? cols : cm,
                 g->max_rows);
        return VAE_ERR_INVALID_ARGUMENT;
    }
    if (cols) {
        const int width = m->layers[n_layers - 1].out;
        ALLOC(g->scratch_cols, cols, "convolution columns");
        ALLOC(g->cm_a, cm, "convolution activations");
        ALLOC(g->cm_b, cm, "convolution activations");
        ALLOC(g->zero_bias, width, "the output's bias");
        ALLOC(g->dbias_cols, width, "the output's bias");
        CU(cudaMemset(g->zero_bias, 0, width * sizeof(float)), "clearing");
    }
    ALLOC(g->heads, 2 * rows * lat, "the heads");
    ALLOC(g->dheads, 2 * rows * lat, "the heads' gradients");
    ALLOC(g->eps, rows * lat, "the noise");
    ALLOC(g->z, rows * lat, "the latent draws");
    ALLOC(g->dz, rows * lat, "the latent gradients");
    ALLOC(g->ga, rows * g->widest, "gradients");
    ALLOC(g->gb, rows * g->widest, "gradients");
    ALLOC(g->part_recon, GPU_MAX_PARTIALS, "loss sums");
    ALLOC(g->kl_rows, rows, "loss sums");
    ALLOC(g->hist_recon, VAE_GPU_HISTORY, "the loss history");
    ALLOC(g->hist_kl, VAE_GPU_HISTORY, "the loss history");
    ALLOC(g->counters, 1, "the step counters");
    if (g->obj.iwae_k > 1) {
        ALLOC(g->iw_log_w, rows, "the importance weights");
        ALLOC(g->iw_weights, rows, "the importance weights");
        ALLOC(g->iw_bounds, rows, "the bounds");
    }
    void *workspace;
    vae_status s = dalloc(g, &workspace, BLAS_WORKSPACE, "cuBLAS's workspace", msg);
    if (s != VAE_OK) return s;
    /* a fixed workspace lets cuBLAS run inside graph capture without allocating */
    if (g->api.set_workspace(g->blas, workspace, BLAS_WORKSPACE) != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, MSG, "cuBLAS refused its workspace");
        return VAE_ERR_INTERNAL;
    }
    return VAE_OK;
}

vae_status vae_gpu_create(vae_gpu **out, const vae_gpu_model *model, const vae_gpu_objective *obj,
                          int max_rows, const vae_dataset *train, const vae_dataset *test,
                          char *msg) {
    *out = NULL;
    vae_gpu *g = (vae_gpu *)calloc(1, sizeof *g);
    if (!g) {
        snprintf(msg, MSG, "out of memory");
        return VAE_ERR_NO_MEMORY;
    }
    g->m = *model, g->obj = *obj, g->max_rows = max_rows;
    g->n_train = train->count, g->n_test = test ? test->count : 0;
    g->blas_status = CUBLAS_STATUS_SUCCESS;
    g->host_rows = (double *)malloc(sizeof(double) * (size_t)max_rows);
    vae_status s = VAE_OK;
    cudaError_t e = cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking);
    if (!g->host_rows) {
        snprintf(msg, MSG, "out of memory");
        s = VAE_ERR_NO_MEMORY;
    } else if ((model->input_dim + 31) / 32 > GPU_MAX_PARTIALS) {
        snprintf(msg, MSG, "%d values per sample: the GPU takes at most %d", model->input_dim,
                 32 * GPU_MAX_PARTIALS);
        s = VAE_ERR_INVALID_ARGUMENT;
    } else if (!gpu_heads_forward_fits(model->mu.in, model->latent_dim)) {
        snprintf(msg, MSG, "the last encoder layer's %d units and the latent's %d do not fit the "
                 "GPU kernel's 40 KB of shared memory", model->mu.in, model->latent_dim);
        s = VAE_ERR_INVALID_ARGUMENT;
    } else if (e != cudaSuccess) {
        s = cuda_fail(msg, e, "creating a stream");
    } else if (cublas_lib_open(&g->api, msg)) {
        s = VAE_ERR_OPEN;
    } else if (g->api.create(&g->blas) != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, MSG, "cuBLAS could not start");
        s = VAE_ERR_INTERNAL;
    } else {
        g->api.set_stream(g->blas, g->stream);
        g->api.set_math_mode(g->blas, obj->precision == VAE_PRECISION_TF32
                                       ? CUBLAS_TF32_TENSOR_OP_MATH
                                       : CUBLAS_DEFAULT_MATH);
        s = allocate(g, train, test, msg);
    }
    if (s != VAE_OK) {
        vae_gpu_free(g);
        return s;
    }
    *out = g;
    return VAE_OK;
}

void vae_gpu_free(vae_gpu *g) {
    if (!g) return;
    if (g->stream) cudaStreamSynchronize(g->stream);
    for (int i = 0; i < 2; i++)
        if (g->graphs[i].exec) cudaGraphExecDestroy(g->graphs[i].exec);
    for (int i = 0; i < g->n_buffers; i++) cudaFree(g->buffers[i]);
    if (g->blas) g->api.destroy(g->blas);
    cublas_lib_close(&g->api);
    if (g->stream) cudaStreamDestroy(g->stream);
    free(g->host_rows);
    free(g);
}

/* ------------------------------------------------------------------ products */

static void gemm(vae_gpu *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    const float one = 1.0f;
    cublasStatus_t st =
        g->api.sgemm(g->blas, ta, tb, m, n, k, &one, a, lda, b, ldb, &beta, c, ldc);
    if (st != CUBLAS_STATUS_SUCCESS && g->blas_status == CUBLAS_STATUS_SUCCESS) g->blas_status = st;
}

/* The two heads share their input: one batched product over mu's and logvar's weights, which
 * lie `head_stride` floats apart in the flat buffer. */
static void gemm_heads(vae_gpu *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                       int k, const float *a, int lda, long long stride_a, const float *b,
                       int ldb, long long stride_b, float *c, int ldc, long long stride_c) {
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = g->api.sgemm_strided_batched(g->blas, ta, tb, m, n, k, &one, a, lda,
                                                     stride_a, b, ldb, stride_b, &zero, c, ldc,
                                                     stride_c, 2);
    if (st != CUBLAS_STATUS_SUCCESS && g->blas_status == CUBLAS_STATUS_SUCCESS) g->blas_status = st;
}

/* The first failure of a queued cuBLAS product, if any. */
static vae_status blas_check(const vae_gpu *g, char *msg) {
    if (g->blas_status == CUBLAS_STATUS_SUCCESS) return VAE_OK;
    snprintf(msg, MSG, "a cuBLAS product failed (status %d)", (int)g->blas_status);
    return VAE_ERR_INTERNAL;
}

static long long head_stride(const vae_gpu *g) {
    return (long long)g->m.logvar.weight - (long long)g->m.mu.weight;
}

/* The labels of a pass's rows: row r's is labels[(row0 + r) / per]; NULL: unconditional. */
typedef struct {
    const uint8_t *labels;
    int per;
    size_t row0;
} pass_labels;

static pass_labels labels_of(const vae_gpu *g, const uint8_t *labels, int per, size_t row0) {
    pass_labels p = {g->m.n_classes ? labels : NULL, per, row0};
    return p;
}

/* The inputs of layer l that come from the previous layer (or the data, or z): a conditional
 * model's first encoder and first decoder layers take the one-hot label in their last C. */
static int layer_inputs(const vae_gpu *g, int l) {
    const int first = l == 0 || l == g->m.n_encoder;
    return g->m.layers[l].in - (first ? g->m.n_classes : 0);
}

/* What the labels add to layer l's products, for the kernels (nothing but for a first layer) */
static gpu_labels layer_labels(const vae_gpu *g, int l, pass_labels p, const float *weights) {
    const vae_gpu_layer *layer = &g->m.layers[l];
    const int k = layer_inputs(g, l);
    gpu_labels lab = {k < layer->in ? p.labels : NULL, weights + layer->weight + k, layer->in,
                      p.per, p.row0};
    return lab;
}

/* y (rows, out) = x (rows, k) W[:, :k]^T for layer l, without the bias or the label's column */
static void linear_forward(vae_gpu *g, int l, const float *x, float *y, int rows) {
    const vae_gpu_layer *layer = &g->m.layers[l];
    const int k = layer_inputs(g, l);
    gemm(g, CUBLAS_OP_T, CUBLAS_OP_N, layer->out, rows, k, g->params + layer->weight, layer->in,
         x, k, 0.0f, y, layer->out);
}

/* dW = dy^T x (and the label columns' sums); dx (may be NULL) = dy W */
static void linear_backward(vae_gpu *g, int l, const float *x, const float *dy, float *dx,
                            int rows, pass_labels p) {
    const vae_gpu_layer *layer = &g->m.layers[l];
    const int k = layer_inputs(g, l);
    gemm(g, CUBLAS_OP_N, CUBLAS_OP_T, k, layer->out, rows, x, k, dy, layer->out, 0.0f,
         g->grads + layer->weight, layer->in);
    const gpu_labels lab = layer_labels(g, l, p, g->params);
    if (lab.labels)
        gpu_label_columns(g->stream, dy, rows, layer->out, lab, g->m.n_classes,
                          g->grads + layer->weight + k);
    if (dx) /* never for a layer with label inputs: those are first layers */
        gemm(g, CUBLAS_OP_N, CUBLAS_OP_N, k, rows, layer->out, g->params + layer->weight,
             layer->in, dy, layer->out, 0.0f, dx, k);
}

/* Row-major C (M, N) = op(A) op(B) + beta C: cuBLAS's column-major product of the transposes. */
static void gemm_rm(vae_gpu *g, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const float *a, int lda, const float *b, int ldb, float beta, float *c,
                    int ldc) {
    gemm(g, tb, ta, n, m, k, b, ldb, a, lda, beta, c, ldc);
}

/* A convolution's image pass: for Conv2d the input under the output positions, for the
 * transposed one the output under the input positions (conv.c's im2col arguments). */
static gpu_conv conv_pass(const vae_gpu_layer *l) {
    gpu_conv s = {l->in_c, l->in_h, l->in_w, l->out_h, l->out_w, l->k, l->stride, l->pad};
    if (l->kind == VAE_GPU_CONVT) {
        gpu_conv t = {l->out_c, l->out_h, l->out_w, l->in_h, l->in_w, l->k, l->stride, l->pad};
        s = t;
    }
    return s;
}

/* Layer l forward from in (rows, its inputs) into act[l]: dense, convolution or transposed
 * convolution; with `activate` its bias and activation (a dense output layer leaves its bias
 * to the likelihood; a transposed one adds it). */
static void layer_forward(vae_gpu *g, int l, const float *in, int rows, pass_labels p,
                          int activate) {
    const vae_gpu_layer *c = &g->m.layers[l];
    const int act = activate ? (int)g->m.activation : -1;
    const float *w = g->params + c->weight, *b = g->params + c->bias;
    if (c->kind == VAE_GPU_DENSE) {
        linear_forward(g, l, in, g->act[l], rows);
        if (activate)
            gpu_bias_act(g->stream, g->act[l], b, layer_labels(g, l, p, g->params), rows, c->out,
                         g->m.activation);
        return;
    }
    const gpu_conv s = conv_pass(c);
    const int taps = s.c * s.k * s.k, ld = rows * s.oh * s.ow;
    if (c->kind == VAE_GPU_CONV) { /* y (out_c, B positions) = W (out_c, taps) cols */
        gpu_im2col(g->stream, g->conv_cols[l], in, s, rows);
        gemm_rm(g, CUBLAS_OP_N, CUBLAS_OP_N, c->out_c, ld, taps, w, taps, g->conv_cols[l], ld,
                0.0f, g->cm_a, ld);
        gpu_from_channel_major(g->stream, g->act[l], g->cm_a, rows, c->out_c,
                               (size_t)c->out_h * c->out_w, b, act);
        return;
    }
    /* transposed: cols (taps, B inputs) = W^T x, then onto each output image */
    gpu_to_channel_major(g->stream, g->cm_a, in, NULL, rows, c->in_c, (size_t)c->in_h * c->in_w,
                         g->m.activation);
    gemm_rm(g, CUBLAS_OP_T, CUBLAS_OP_N, taps, ld, c->in_c, w, taps, g->cm_a, ld, 0.0f,
            g->scratch_cols, ld);
    gpu_col2im(g->stream, g->act[l], g->scratch_cols, s, rows, b, act);
}

/* Layer l backward: grad (rows, its outputs) is d loss / d its output, after the activation
 * when `activated` (then taken through it, in place or into scratch); adds nothing, writes its
 * weight and bias gradients, and dx (may be NULL) = d loss / d in. */
static void layer_backward(vae_gpu *g, int l, const float *in, float *grad, float *dx, int rows,
                           pass_labels p, int activated) {
    const vae_gpu_layer *c = &g->m.layers[l];
    const vae_activation act = g->m.activation;
    float *dw = g->grads + c->weight, *db = g->grads + c->bias;
    const float *w = g->params + c->weight;
    if (c->kind == VAE_GPU_DENSE) {
        if (activated) gpu_act_backward(g->stream, grad, g->act[l], db, rows, c->out, act);
        linear_backward(g, l, in, grad, dx, rows, p);
        return;
    }
    const gpu_conv s = conv_pass(c);
    const int taps = s.c * s.k * s.k, ld = rows * s.oh * s.ow;
    if (c->kind == VAE_GPU_CONV) {
        const size_t ohw = (size_t)c->out_h * c->out_w;
        gpu_to_channel_major(g->stream, g->cm_a, grad, activated ? g->act[l] : NULL, rows,
                             c->out_c, ohw, act);
        gpu_channel_sums(g->stream, g->cm_a, rows, c->out_c, ohw, 1, db);
        gemm_rm(g, CUBLAS_OP_N, CUBLAS_OP_T, c->out_c, taps, ld, g->cm_a, ld, g->conv_cols[l], ld,
                0.0f, dw, taps);
        if (!dx) return;
        gemm_rm(g, CUBLAS_OP_T, CUBLAS_OP_N, taps, ld, c->out_c, w, taps, g->cm_a, ld, 0.0f,
                g->scratch_cols, ld);
        gpu_col2im(g->stream, dx, g->scratch_cols, s, rows, NULL, -1);
        return;
    }
    const size_t ihw = (size_t)c->in_h * c->in_w;
    if (activated) gpu_act_grad(g->stream, grad, g->act[l], (size_t)rows * c->out, act);
    gpu_channel_sums(g->stream, grad, rows, c->out_c, (size_t)c->out_h * c->out_w, 0, db);
    gpu_im2col(g->stream, g->scratch_cols, grad, s, rows);
    gpu_to_channel_major(g->stream, g->cm_a, in, NULL, rows, c->in_c, ihw, act);
    gemm_rm(g, CUBLAS_OP_N, CUBLAS_OP_T, c->in_c, taps, ld, g->cm_a, ld, g->scratch_cols, ld,
            0.0f, dw, taps);
    if (!dx) return;
    gemm_rm(g, CUBLAS_OP_N, CUBLAS_OP_N, c->in_c, ld, taps, w, taps, g->scratch_cols, ld, 0.0f,
            g->cm_b, ld);
    gpu_from_channel_major(g->stream, dx, g->cm_b, rows, c->in_c, ihw, NULL, -1);
}

/* The output layer's bias as the likelihood adds it (a transposed convolution added its own),
 * and where the likelihood's column sums of its gradient go. */
static const float *output_bias(const vae_gpu *g) {
    const vae_gpu_layer *o = &g->m.layers[g->m.n_encoder + g->m.n_decoder];
    return o->kind == VAE_GPU_CONVT ? g->zero_bias : g->params + o->bias;
}

static float *output_bias_grad(vae_gpu *g) {
    const vae_gpu_layer *o = &g->m.layers[g->m.n_encoder + g->m.n_decoder];
    return o->kind == VAE_GPU_CONVT ? g->dbias_cols : g->grads + o->bias;
}

/* ------------------------------------------------------------------ passes */

/* The likelihood, with the observed values' mask of the rows scored (NULL: all observed) */
static gpu_lik likelihood_of(const vae_gpu_model *m, const uint8_t *mask) {
    gpu_lik lik = {m->likelihood, m->variance, m->sigma, m->variance_floor, m->input_dim,
                   m->missing ? mask : NULL};
    return lik;
}

/* The encoder's input for rows of x (and their masks): x itself, or for a model of missing
 * values [x | mask] built in xin. */
static const float *encoder_input(vae_gpu *g, const float *x, const uint8_t *mask, int rows) {
    if (!g->m.missing) return x;
    gpu_widen(g->stream, x, mask, rows, g->m.input_dim, g->xin);
    return g->xin;
}

/* x (rows, D) through the encoder's hidden layers, then the heads and the reparameterization
 * (mu, logvar, eps, z and each row's KL) */
static void encode(vae_gpu *g, const float *x, int rows, gpu_noise noise, pass_labels p) {
    const vae_gpu_model *m = &g->m;
    const float *in = x;
    const int last = m->n_encoder - 1;
    for (int l = 0; l < last; l++) {
        layer_forward(g, l, in, rows, p, 1);
        in = g->act[l];
    }
    /* the last (dense) layer's bias and activation are done by the heads' kernel */
    linear_forward(g, last, in, g->act[last], rows);
    const long long plane = (long long)g->max_rows * m->latent_dim;
    gpu_heads_forward(g->stream, g->act[last], g->params + m->layers[last].bias,
                      layer_labels(g, last, p, g->params), m->activation, m->mu.in, g->params + m->mu.weight, g->params + m->logvar.weight,
                      g->params + m->mu.bias, g->params + m->logvar.bias, g->heads,
                      g->heads + plane, g->eps, g->z, rows, m->latent_dim, noise, g->counters,
                      g->kl_rows);
}

/* z (rows, L) through the decoder to the output layer's products, before its bias */
static void decode(vae_gpu *g, const float *z, int rows, pass_labels p) {
    const vae_gpu_model *m = &g->m;
    const int out_layer = m->n_encoder + m->n_decoder;
    const float *in = z;
    for (int l = m->n_encoder; l < out_layer; l++) {
        layer_forward(g, l, in, rows, p, 1);
        in = g->act[l];
    }
    layer_forward(g, out_layer, in, rows, p, 0);
}

/* x (rows, D, with its masks) through encoder (fed x_in), reparameterization and decoder to
 * the loss's per-block sums; with `train`, the loss's gradient with respect to the output (into
 * ga) and the output layer's bias and the per-value variances' gradients. */
static void forward(vae_gpu *g, const float *x, const float *x_in, const uint8_t *mask, int rows,
                    gpu_noise noise, int train, pass_labels p) {
    const vae_gpu_model *m = &g->m;
    const int out_layer = m->n_encoder + m->n_decoder;
    encode(g, x_in, rows, noise, p);
    decode(g, g->z, rows, p);
    const int per_dim = m->likelihood == VAE_LIK_GAUSSIAN && m->variance == VAE_VAR_PER_DIM;
    g->n_recon = gpu_likelihood(g->stream, g->act[out_layer], output_bias(g), x, rows, 1,
                                NULL, likelihood_of(m, mask), g->params + m->dim_logvar,
                                train ? g->ga : NULL, output_bias_grad(g),
                                train && per_dim ? g->grads + m->dim_logvar : NULL,
                                g->part_recon);
}

/* The decoder's layers backward from ga (d loss / d output), down to the first decoder
 * layer's output gradient, which it returns (its weight gradient included). */
static float *decoder_backward(vae_gpu *g, int rows, pass_labels p) {
    const vae_gpu_model *m = &g->m;
    const int out_layer = m->n_encoder + m->n_decoder;
    float *grad = g->ga, *spare = g->gb;
    for (int l = out_layer;; l--) {
        const float *in = l == m->n_encoder ? g->z : g->act[l - 1];
        layer_backward(g, l, in, grad, l == m->n_encoder ? NULL : spare, rows, p, l != out_layer);
        if (l == m->n_encoder) return grad;
        float *t = grad;
        grad = spare, spare = t;
    }
}

/* From dmu and dlv (dheads, rows) through the heads and the encoder's layers. */
static void encoder_backward(vae_gpu *g, const float *x, int rows, pass_labels p) {
    const vae_gpu_model *m = &g->m;
    const int lat = m->latent_dim, hidden = m->mu.in, last = m->n_encoder - 1;
    const long long plane = (long long)g->max_rows * lat;
    const float *h = g->act[last];
    gemm_heads(g, CUBLAS_OP_N, CUBLAS_OP_T, hidden, lat, rows, h, hidden, 0, g->dheads, lat, plane,
               g->grads + m->mu.weight, hidden, head_stride(g));
    /* dh = dmu Wmu + dlv Wlv through the last encoder layer's activation, with its bias's */
    gpu_heads_backward(g->stream, g->dheads, g->dheads + plane, g->params + m->mu.weight,
                       g->params + m->logvar.weight, h, g->ga, g->grads + m->layers[last].bias,
                       rows, hidden, lat, m->activation);
    float *grad = g->ga, *spare = g->gb;
    for (int l = last; l >= 0; l--) {
        const float *in = l == 0 ? x : g->act[l - 1];
        if (l == last) /* its activation and bias were taken by the heads' kernel */
            linear_backward(g, l, in, grad, l == 0 ? NULL : spare, rows, p);
        else
            layer_backward(g, l, in, grad, l == 0 ? NULL : spare, rows, p, 1);
        float *t = grad;
        grad = spare, spare = t;
    }
}

/* The ELBO's step after its forward pass: every parameter's gradient. */
static void backward(vae_gpu *g, const float *x, int rows, pass_labels p) {
    const vae_gpu_model *m = &g->m;
    const vae_gpu_objective *obj = &g->obj;
    const vae_gpu_layer *first = &m->layers[m->n_encoder];
    const long long plane = (long long)g->max_rows * m->latent_dim;
    const float *grad = decoder_backward(g, rows, p);
    /* dz from the first decoder layer's gradient, then through the reparameterization and KL */
    gpu_latent_backward(g->stream, grad, g->params + first->weight, first->in, first->out,
                        g->heads, g->heads + plane, g->eps, g->dheads, g->dheads + plane, rows,
                        m->latent_dim, obj->beta, obj->kl_warmup, obj->free_bits, g->counters);
    encoder_backward(g, x, rows, p);
}

/* An IWAE step's passes over `inputs` inputs with k draws each (vae_iwae_step's twin): the
 * encoder on the inputs, the decoder on every draw, the normalized weights, then the weighted
 * gradients back. The step's loss is the bound, in the bounds' sums. */
static void iwae_passes(vae_gpu *g, const float *x_in, int inputs, gpu_noise noise,
                        pass_labels p) {
    const vae_gpu_model *m = &g->m;
    const int k = g->obj.iwae_k, rows = inputs * k, lat = m->latent_dim;
    const int out_layer = m->n_encoder + m->n_decoder;
    const long long plane = (long long)g->max_rows * lat;
    const vae_gpu_layer *first = &m->layers[m->n_encoder];
    const pass_labels draws = labels_of(g, p.labels, k, 0);
    encode(g, x_in, inputs, noise, p);
    gpu_iwae_step_draws(g->stream, g->heads, g->heads + plane, g->eps, g->z, g->iw_log_w, rows,
                        lat, k, noise, g->counters);
    decode(g, g->z, rows, draws);
    gpu_row_nll(g->stream, g->act[out_layer], output_bias(g), g->xb, rows, 0, k,
                likelihood_of(m, g->mb), g->params + m->dim_logvar, g->iw_log_w, 1);
    gpu_iwae_weights(g->stream, g->iw_log_w, inputs, k, g->iw_weights, g->iw_bounds);
    const int per_dim = m->likelihood == VAE_LIK_GAUSSIAN && m->variance == VAE_VAR_PER_DIM;
    gpu_likelihood(g->stream, g->act[out_layer], output_bias(g), g->xb, rows, k,
                   g->iw_weights, likelihood_of(m, g->mb), g->params + m->dim_logvar, g->ga,
                   output_bias_grad(g), per_dim ? g->grads + m->dim_logvar : NULL, g->part_recon);
    const float *grad = decoder_backward(g, rows, draws);
    gpu_iwae_latent_backward(g->stream, grad, g->params + first->weight, first->in, first->out,
                             g->z, g->eps, g->heads + plane, g->iw_weights, g->dheads,
                             g->dheads + plane, inputs, k, lat);
    encoder_backward(g, x_in, inputs, p);
}

/* One training step of `rows` rows: gather, forward, backward, checks, Adam. */
static void train_step(vae_gpu *g, int rows) {
    const vae_gpu_model *m = &g->m;
    const gpu_source from = {g->train_x, g->train_labels, g->train_mask};
    const gpu_batch to = {g->xb, g->xin, g->yb, g->mb};
    gpu_gather(g->stream, from, to, g->order, g->counters, g->obj.batch_size, rows,
               m->input_dim);
    const float *x_in = m->missing ? g->xin : g->xb;
    gpu_noise noise = {g->obj.seed, g->obj.noise_stream, 0, 0};
    const pass_labels p = labels_of(g, g->yb, 1, 0);
    const int iwae = g->obj.iwae_k > 1;
    if (iwae) {
        iwae_passes(g, x_in, rows, noise, p);
    } else {
        forward(g, g->xb, x_in, g->mb, rows, noise, 1, p);
        backward(g, x_in, rows, p);
    }
    const long long plane = (long long)g->max_rows * m->latent_dim;
    /* the IWAE bound has no KL term of its own: the bounds are the step's loss */
    gpu_step_sums sums = {iwae ? g->iw_bounds : g->part_recon, g->kl_rows,
                          iwae ? rows : g->n_recon, iwae ? 0 : rows, rows, m->latent_dim,
                          g->dheads, g->dheads + plane, g->grads + m->mu.bias,
                          g->grads + m->logvar.bias, g->hist_recon, g->hist_kl, VAE_GPU_HISTORY};
    gpu_step_finish(g->stream, g->grads, m->num_params, g->counters, sums, g->obj.adam);
    gpu_adam(g->stream, g->params, g->grads, g->mom1, g->mom2, m->num_params, g->counters,
             g->obj.adam);
}

/* The step's graph for this batch size, captured at its first use. */
static vae_status step_graph_for(vae_gpu *g, int rows, step_graph **out, char *msg) {
    for (int i = 0; i < 2; i++)
        if (g->graphs[i].exec && g->graphs[i].batch == rows) {
            *out = &g->graphs[i];
            return VAE_OK;
        }
    step_graph *slot = !g->graphs[0].exec ? &g->graphs[0] : &g->graphs[1];
    if (slot->exec) cudaGraphExecDestroy(slot->exec), slot->exec = NULL;
    cudaGraph_t graph;
    CU(cudaStreamBeginCapture(g->stream, cudaStreamCaptureModeThreadLocal), "starting a capture");
    train_step(g, rows);
    CU(cudaStreamEndCapture(g->stream, &graph), "capturing the training step");
    const vae_status products = blas_check(g, msg);
    if (products != VAE_OK) {
        cudaGraphDestroy(graph);
        return products;
    }
    size_t nodes = 0;
    cudaGraphGetNodes(graph, NULL, &nodes);
    cudaError_t e = cudaGraphInstantiate(&slot->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) return cuda_fail(msg, e, "instantiating the step's graph");
    slot->batch = rows, slot->nodes = (int)nodes;
    *out = slot;
    return VAE_OK;
}

/* ------------------------------------------------------------------ the interface */

vae_status vae_gpu_upload(vae_gpu *g, const float *params, const float *m, const float *v,
                          uint64_t adam_steps, uint64_t global_step, char *msg) {
    const size_t bytes = g->m.num_params * sizeof(float);
    CU(cudaMemcpy(g->params, params, bytes, cudaMemcpyHostToDevice), "copying the parameters");
    CU(m ? cudaMemcpy(g->mom1, m, bytes, cudaMemcpyHostToDevice) : cudaMemset(g->mom1, 0, bytes),
       "copying Adam's moments");
    CU(v ? cudaMemcpy(g->mom2, v, bytes, cudaMemcpyHostToDevice) : cudaMemset(g->mom2, 0, bytes),
       "copying Adam's moments");
    CU(cudaMemset(g->grads, 0, bytes), "clearing the gradients");
    gpu_counters c;
    memset(&c, 0, sizeof c);
    c.global_step = global_step, c.adam_steps = adam_steps, c.bad_step = GPU_NO_BAD_STEP;
    CU(cudaMemcpy(g->counters, &c, sizeof c, cudaMemcpyHostToDevice), "setting the counters");
    return VAE_OK;
}

vae_status vae_gpu_download(vae_gpu *g, float *params, float *m, float *v, char *msg) {
    const size_t bytes = g->m.num_params * sizeof(float);
    CU(cudaStreamSynchronize(g->stream), "training on the GPU");
    if (params) CU(cudaMemcpy(params, g->params, bytes, cudaMemcpyDeviceToHost), "reading back");
    if (m) CU(cudaMemcpy(m, g->mom1, bytes, cudaMemcpyDeviceToHost), "reading back");
    if (v) CU(cudaMemcpy(v, g->mom2, bytes, cudaMemcpyDeviceToHost), "reading back");
    return VAE_OK;
}

vae_status vae_gpu_epoch_begin(vae_gpu *g, const uint32_t *order, size_t n, uint32_t epoch_step,
                               char *msg) {
    CU(cudaMemcpyAsync(g->order, order, n * sizeof *order, cudaMemcpyHostToDevice, g->stream),
       "copying the epoch's order");
    CU(cudaMemcpyAsync((char *)g->counters + offsetof(gpu_counters, epoch_step), &epoch_step,
                       sizeof epoch_step, cudaMemcpyHostToDevice, g->stream),
       "setting the epoch's step");
    /* the host's order and step must stay until the copies are done */
    CU(cudaStreamSynchronize(g->stream), "copying the epoch's order");
    return VAE_OK;
}

vae_status vae_gpu_steps(vae_gpu *g, int batch, int count, char *msg) {
    step_graph *graph;
    vae_status s = step_graph_for(g, batch, &graph, msg);
    if (s != VAE_OK) return s;
    for (int i = 0; i < count; i++) CU(cudaGraphLaunch(graph->exec, g->stream), "a training step");
    return VAE_OK;
}

vae_status vae_gpu_sync(vae_gpu *g, int count, double *recon, double *kl, uint64_t *bad_step,
                        char *msg) {
    static_assert(VAE_GPU_HISTORY > 0, "history");
    if (count > VAE_GPU_HISTORY) {
        snprintf(msg, MSG, "%d steps queued, at most %d can be read back", count, VAE_GPU_HISTORY);
        return VAE_ERR_INTERNAL;
    }
    CU(cudaStreamSynchronize(g->stream), "training on the GPU");
    gpu_counters c;
    double hr[VAE_GPU_HISTORY], hk[VAE_GPU_HISTORY];
    CU(cudaMemcpy(&c, g->counters, sizeof c, cudaMemcpyDeviceToHost), "reading the counters");
    CU(cudaMemcpy(hr, g->hist_recon, sizeof hr, cudaMemcpyDeviceToHost), "reading the losses");
    CU(cudaMemcpy(hk, g->hist_kl, sizeof hk, cudaMemcpyDeviceToHost), "reading the losses");
    for (int i = 0; i < count; i++) {
        const uint64_t step = c.global_step - (uint64_t)count + (uint64_t)i;
        recon[i] = hr[step % VAE_GPU_HISTORY], kl[i] = hk[step % VAE_GPU_HISTORY];
    }
    *bad_step = c.bad_step == GPU_NO_BAD_STEP ? UINT64_MAX : c.bad_step;
    return VAE_OK;
}

vae_status vae_gpu_evaluate(vae_gpu *g, size_t from, size_t to, vae_loss *loss, char *msg) {
    const int dim = g->m.input_dim;
    double pr[GPU_MAX_PARTIALS], *pk = g->host_rows;
    memset(loss, 0, sizeof *loss);
    for (size_t start = from; start < to; start += (size_t)g->max_rows) {
        const int rows = to - start < (size_t)g->max_rows ? (int)(to - start) : g->max_rows;
        gpu_noise noise = {g->obj.seed, g->obj.eval_stream, start, 1};
        const float *x = g->test_x + start * dim;
        const uint8_t *mask = g->test_mask ? g->test_mask + start * dim : NULL;
        forward(g, x, encoder_input(g, x, mask, rows), mask, rows, noise, 0,
                labels_of(g, g->test_labels ? g->test_labels + start : NULL, 1, 0));
        CU(cudaGetLastError(), "evaluating");
        CU(cudaMemcpyAsync(pr, g->part_recon, g->n_recon * sizeof(double), cudaMemcpyDeviceToHost,
                           g->stream), "reading the sums");
        CU(cudaMemcpyAsync(pk, g->kl_rows, rows * sizeof(double), cudaMemcpyDeviceToHost,
                           g->stream), "reading the sums");
        CU(cudaStreamSynchronize(g->stream), "evaluating");
        const vae_status products = blas_check(g, msg);
        if (products != VAE_OK) return products;
        for (int i = 0; i < g->n_recon; i++) loss->recon += pr[i];
        for (int i = 0; i < rows; i++) loss->kl += pk[i];
        loss->count += (size_t)rows;
    }
    return VAE_OK;
}

vae_status vae_gpu_elbo_terms(vae_gpu *g, uint64_t stream, double *recon, double *kl, float *mu,
                              float *logvar, char *msg) {
    const vae_gpu_model *m = &g->m;
    const int lat = m->latent_dim, dim = m->input_dim, out_layer = m->n_encoder + m->n_decoder;
    const size_t n = g->n_train, rows_max = (size_t)g->max_rows;
    const long long plane = (long long)rows_max * lat;
    if (!g->eval_mu) {
        ALLOC(g->eval_mu, n * lat, "the posteriors");
        ALLOC(g->eval_lv, n * lat, "the posteriors");
        ALLOC(g->eval_rows, rows_max, "per-example terms");
    }
    for (size_t start = 0; start < n; start += rows_max) {
        const int rows = n - start < rows_max ? (int)(n - start) : (int)rows_max;
        const float *x = g->train_x + start * dim;
        gpu_noise noise = {g->obj.seed, stream, start, 1};
        const pass_labels p =
            labels_of(g, g->train_labels ? g->train_labels + start : NULL, 1, 0);
        const uint8_t *mask = g->train_mask ? g->train_mask + start * dim : NULL;
        encode(g, encoder_input(g, x, mask, rows), rows, noise, p);
        decode(g, g->z, rows, p);
        gpu_row_nll(g->stream, g->act[out_layer], output_bias(g), x, rows,
                    0, 1, likelihood_of(m, mask), g->params + m->dim_logvar, g->eval_rows, 0);
        const size_t nz = (size_t)rows * lat * sizeof(float);
        CU(cudaMemcpyAsync(g->eval_mu + start * lat, g->heads, nz, cudaMemcpyDeviceToDevice,
                           g->stream), "keeping the posteriors");
        CU(cudaMemcpyAsync(g->eval_lv + start * lat, g->heads + plane, nz,
                           cudaMemcpyDeviceToDevice, g->stream), "keeping the posteriors");
        CU(cudaMemcpyAsync(recon + start, g->eval_rows, rows * sizeof(double),
                           cudaMemcpyDeviceToHost, g->stream), "reading the terms");
        CU(cudaMemcpyAsync(kl + start, g->kl_rows, rows * sizeof(double),
                           cudaMemcpyDeviceToHost, g->stream), "reading the terms");
        CU(cudaStreamSynchronize(g->stream), "evaluating the ELBO");
    }
    CU(cudaMemcpy(mu, g->eval_mu, n * lat * sizeof(float), cudaMemcpyDeviceToHost), "reading mu");
    CU(cudaMemcpy(logvar, g->eval_lv, n * lat * sizeof(float), cudaMemcpyDeviceToHost),
       "reading logvar");
    return blas_check(g, msg);
}

vae_status vae_gpu_iwae(vae_gpu *g, int k, int chunk, uint64_t stream, double *nll,
                        int (*progress)(void *user, size_t done, size_t total), void *user,
                        char *msg) {
    const vae_gpu_model *m = &g->m;
    const int lat = m->latent_dim, dim = m->input_dim, out_layer = m->n_encoder + m->n_decoder;
    const size_t n = g->n_train, rows_max = (size_t)g->max_rows;
    if (!g->eval_mu) {
        snprintf(msg, MSG, "importance sampling needs the ELBO pass first");
        return VAE_ERR_INTERNAL;
    }
    /* a group of examples whose k draws each fill the row budget; one example when k is more */
    const size_t group = (size_t)k >= rows_max ? 1 : rows_max / (size_t)k;
    if (g->log_w_size < group * k) {
        ALLOC(g->log_w, group * k, "the importance weights");
        g->log_w_size = group * k;
    }
    if (!g->eval_nll) ALLOC(g->eval_nll, n, "the estimates");
    int groups_since_sync = 0;
    for (size_t first = 0; first < n; first += group) {
        const size_t examples = n - first < group ? n - first : group, total = examples * k;
        for (size_t row0 = 0; row0 < total; row0 += rows_max) {
            const int rows = total - row0 < rows_max ? (int)(total - row0) : (int)rows_max;
            gpu_iwae_draws(g->stream, g->z, g->log_w + row0, g->eval_mu + first * lat,
                           g->eval_lv + first * lat, rows, lat, row0, k, chunk, g->obj.seed,
                           stream + first);
            decode(g, g->z, rows,
                   labels_of(g, g->train_labels ? g->train_labels + first : NULL, k, row0));
            gpu_row_nll(g->stream, g->act[out_layer], output_bias(g),
                        g->train_x + first * dim, rows, row0, k,
                        likelihood_of(m, g->train_mask ? g->train_mask + first * dim : NULL),
                        g->params + m->dim_logvar, g->log_w + row0, 1);
        }
        gpu_log_mean_exp(g->stream, g->log_w, (int)examples, k, g->eval_nll + first);
        /* report (and allow a cancel) every few groups: each wait costs a round trip */
        if (progress && (++groups_since_sync == 16 || first + examples == n)) {
            groups_since_sync = 0;
            CU(cudaStreamSynchronize(g->stream), "importance sampling");
            if (progress(user, first + examples, n)) {
                snprintf(msg, MSG, "evaluation cancelled");
                return VAE_ERR_CANCELLED;
            }
        }
    }
    CU(cudaStreamSynchronize(g->stream), "importance sampling");
    CU(cudaMemcpy(nll, g->eval_nll, n * sizeof(double), cudaMemcpyDeviceToHost), "reading back");
    return blas_check(g, msg);
}

vae_status vae_gpu_encode(vae_gpu *g, float *mu, float *logvar, char *msg) {
    const vae_gpu_model *m = &g->m;
    const int lat = m->latent_dim;
    const size_t n = g->n_train, rows_max = (size_t)g->max_rows;
    const long long plane = (long long)rows_max * lat;
    for (size_t start = 0; start < n; start += rows_max) {
        const int rows = n - start < rows_max ? (int)(n - start) : (int)rows_max;
        gpu_noise noise = {0, 0, start, 1}; /* draws nobody reads */
        const float *x = g->train_x + start * m->input_dim;
        const uint8_t *mask = g->train_mask ? g->train_mask + start * m->input_dim : NULL;
        encode(g, encoder_input(g, x, mask, rows), rows, noise,
               labels_of(g, g->train_labels ? g->train_labels + start : NULL, 1, 0));
        const size_t nz = (size_t)rows * lat * sizeof(float);
        if (mu) CU(cudaMemcpyAsync(mu + start * lat, g->heads, nz, cudaMemcpyDeviceToHost,
                                   g->stream), "reading mu");
        if (logvar) CU(cudaMemcpyAsync(logvar + start * lat, g->heads + plane, nz,
                                       cudaMemcpyDeviceToHost, g->stream), "reading logvar");
        CU(cudaStreamSynchronize(g->stream), "encoding");
    }
    return blas_check(g, msg);
}

vae_status vae_gpu_decode(vae_gpu *g, const float *z, const uint8_t *labels, size_t n,
                          float *means, char *msg) {
    const vae_gpu_model *m = &g->m;
    const int lat = m->latent_dim, dim = m->input_dim, out_layer = m->n_encoder + m->n_decoder;
    const size_t rows_max = (size_t)g->max_rows;
    for (size_t start = 0; start < n; start += rows_max) {
        const int rows = n - start < rows_max ? (int)(n - start) : (int)rows_max;
        CU(cudaMemcpyAsync(g->z, z + start * lat, (size_t)rows * lat * sizeof(float),
                           cudaMemcpyHostToDevice, g->stream), "copying z");
        if (g->m.n_classes)
            CU(cudaMemcpyAsync(g->yb, labels + start, (size_t)rows, cudaMemcpyHostToDevice,
                               g->stream), "copying the labels");
        decode(g, g->z, rows, labels_of(g, g->yb, 1, 0));
        gpu_decode_mean(g->stream, g->act[out_layer], output_bias(g),
                        rows, likelihood_of(m, NULL), g->ga);
        CU(cudaMemcpyAsync(means + start * dim, g->ga, (size_t)rows * dim * sizeof(float),
                           cudaMemcpyDeviceToHost, g->stream), "reading the means");
        CU(cudaStreamSynchronize(g->stream), "decoding");
    }
    return blas_check(g, msg);
}

int vae_gpu_step_nodes(const vae_gpu *g, int batch) {
    for (int i = 0; i < 2; i++)
        if (g->graphs[i].exec && g->graphs[i].batch == batch) return g->graphs[i].nodes;
    return 0;
}

size_t vae_gpu_memory(const vae_gpu *g) { return g->bytes; }

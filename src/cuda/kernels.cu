/* kernels.cu — the GPU backend's fused kernels (see kernels.cuh). Column reductions use blocks of
 * 32 columns x ROWS threads: each thread walks a fixed set of rows, then the block adds the
 * partial sums in a fixed order, so results never depend on scheduling. */
#include "kernels.cuh"

#include <math.h>

#define ROWS 16        /* threads per column in a column block */
#define THREADS 256    /* elementwise blocks */
#define MAX_BLOCKS 1024 /* grid-stride loops beyond this */
#define HALF_LOG_2PI 0.9189385332046727
#define GOLDEN 0x9e3779b97f4a7c15ULL

static int blocks_for(size_t n) {
    size_t b = (n + THREADS - 1) / THREADS;
    return b < 1 ? 1 : b > MAX_BLOCKS ? MAX_BLOCKS : (int)b;
}

/* ------------------------------------------------------------------ the CPU's generator */

__device__ static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* vae_rng_make's key */
__device__ static uint64_t rng_key(uint64_t seed, uint64_t stream) {
    return mix64(mix64(seed ^ 0x5eedULL) + mix64(stream * GOLDEN + 1));
}

/* Value i of vae_rng_normal on a fresh stream: Box–Muller pair i/2 from outputs 2p+1 and 2p+2,
 * its cosine for even i and sine for odd i, in double as on the CPU. */
__device__ static float normal_at(uint64_t key, uint64_t i) {
    const uint64_t p = i >> 1;
    const uint64_t a = mix64(key + (2 * p + 1) * GOLDEN), b = mix64(key + (2 * p + 2) * GOLDEN);
    const double u1 = ((double)(a >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    const double u2 = (double)(b >> 11) * (1.0 / 9007199254740992.0);
    const double r = sqrt(-2.0 * log(u1)), angle = 6.283185307179586 * u2;
    return (float)(r * ((i & 1) ? sin(angle) : cos(angle)));
}

/* ------------------------------------------------------------------ reductions */

/* The block's sum of v (THREADS or 32*ROWS threads), valid in thread 0. */
__device__ static double block_sum(double v, double *shared) {
    const int t = threadIdx.x + threadIdx.y * blockDim.x, n = blockDim.x * blockDim.y;
    shared[t] = v;
    __syncthreads();
    for (int half = n / 2; half > 0; half /= 2) {
        if (t < half) shared[t] += shared[t + half];
        __syncthreads();
    }
    double total = shared[0];
    __syncthreads();
    return total;
}

/* The column sum over the block's ROWS threads of column threadIdx.x, valid for threadIdx.y 0. */
__device__ static float column_sum(float v, float (*shared)[32]) {
    shared[threadIdx.y][threadIdx.x] = v;
    __syncthreads();
    float total = 0.0f;
    if (threadIdx.y == 0)
        for (int k = 0; k < ROWS; k++) total += shared[k][threadIdx.x];
    __syncthreads();
    return total;
}

/* ------------------------------------------------------------------ activations */

__device__ static float act_forward(float v, vae_activation act) {
    switch (act) {
    case VAE_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case VAE_ACT_TANH: return tanhf(v);
    case VAE_ACT_LEAKY_RELU: return v > 0.0f ? v : VAE_LEAKY_SLOPE * v;
    case VAE_ACT_ELU: return v > 0.0f ? v : expm1f(v);
    }
    return v;
}

/* d act / d x from the output y, times dy */
__device__ static float act_backward(float dy, float y, vae_activation act) {
    switch (act) {
    case VAE_ACT_RELU: return y > 0.0f ? dy : 0.0f;
    case VAE_ACT_TANH: return dy * (1.0f - y * y);
    case VAE_ACT_LEAKY_RELU: return y > 0.0f ? dy : VAE_LEAKY_SLOPE * dy;
    case VAE_ACT_ELU: return y > 0.0f ? dy : dy * (y + 1.0f);
    }
    return dy;
}

/* ------------------------------------------------------------------ kernels */

__global__ static void gather_kernel(gpu_source from, gpu_batch to, const uint32_t *order,
                                     const gpu_counters *c, int batch, int dim) {
    const int r = blockIdx.y, d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= dim) return;
    const size_t src = order[(size_t)c->epoch_step * batch + r], i = (size_t)r * dim + d;
    const float v = from.x[src * dim + d];
    to.x[i] = v;
    if (from.labels && d == 0) to.labels[r] = from.labels[src];
    if (to.x_in) { /* a model of missing values: the encoder sees the mask too */
        const uint8_t m = from.masks ? from.masks[src * dim + d] : 1;
        to.masks[i] = m;
        to.x_in[(size_t)r * 2 * dim + d] = v;
        to.x_in[(size_t)r * 2 * dim + dim + d] = (float)m;
    }
}

void gpu_gather(cudaStream_t s, gpu_source from, gpu_batch to, const uint32_t *order,
                const gpu_counters *c, int batch, int rows, int dim) {
    dim3 grid((dim + THREADS - 1) / THREADS, rows);
    gather_kernel<<<grid, THREADS, 0, s>>>(from, to, order, c, batch, dim);
}

__global__ static void widen_kernel(const float *x, const uint8_t *mask, size_t n, int dim,
                                    float *x_in) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / dim;
        const int d = (int)(i % dim);
        x_in[r * 2 * dim + d] = x[i];
        x_in[r * 2 * dim + dim + d] = mask ? (float)mask[i] : 1.0f;
    }
}

void gpu_widen(cudaStream_t s, const float *x, const uint8_t *mask, int rows, int dim,
               float *x_in) {
    const size_t n = (size_t)rows * dim;
    widen_kernel<<<blocks_for(n), THREADS, 0, s>>>(x, mask, n, dim, x_in);
}

/* What row r's label adds to output c of a layer: its one-hot code times the weight */
__device__ static float label_term(const gpu_labels *lab, size_t r, int c) {
    if (!lab->labels) return 0.0f;
    return lab->w[(size_t)c * lab->ld + lab->labels[(lab->row0 + r) / lab->per]];
}

__global__ static void bias_act_kernel(float *y, const float *b, gpu_labels lab, size_t n,
                                       int cols, vae_activation act) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % cols);
        y[i] = act_forward(y[i] + b[c] + label_term(&lab, i / cols, c), act);
    }
}

void gpu_bias_act(cudaStream_t s, float *y, const float *b, gpu_labels lab, int rows, int cols,
                  vae_activation act) {
    const size_t n = (size_t)rows * cols;
    bias_act_kernel<<<blocks_for(n), THREADS, 0, s>>>(y, b, lab, n, cols, act);
}

__global__ static void label_columns_kernel(const float *dy, int rows, int cols, gpu_labels lab,
                                            int classes, float *dw) {
    const size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (t >= (size_t)cols * classes) return;
    const int c = (int)(t / classes), k = (int)(t % classes);
    float sum = 0.0f;
    for (int r = 0; r < rows; r++)
        if (lab.labels[(lab.row0 + r) / lab.per] == k) sum += dy[(size_t)r * cols + c];
    dw[(size_t)c * lab.ld + k] = sum;
}

void gpu_label_columns(cudaStream_t s, const float *dy, int rows, int cols, gpu_labels lab,
                       int classes, float *dw) {
    const size_t n = (size_t)cols * classes;
    label_columns_kernel<<<(unsigned)((n + THREADS - 1) / THREADS), THREADS, 0, s>>>(
        dy, rows, cols, lab, classes, dw);
}

/* The warp's sum of v, in the same order every time. */
__device__ static float warp_sum(float v) {
    for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

/* One block per row: the last hidden layer's bias and activation (h, in place, and into shared
 * memory), the two heads' products (warps over the 2L outputs, lanes over the hidden units),
 * then the reparameterization and the row's KL. */
__global__ static void heads_forward_kernel(float *h, const float *b_h, gpu_labels lab,
                                            vae_activation act, int hidden, const float *w_mu, const float *w_lv,
                                            const float *b_mu, const float *b_lv, float *mu,
                                            float *lv, float *eps, float *z, int latent,
                                            gpu_noise noise, const gpu_counters *c,
                                            double *kl_rows) {
    extern __shared__ float shared_rows[]; /* hidden values of h, then the 2L heads */
    float *hs = shared_rows, *heads = shared_rows + hidden;
    __shared__ double kl_shared[THREADS];
    const int r = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float *hr = h + (size_t)r * hidden;
    for (int k = threadIdx.x; k < hidden; k += blockDim.x)
        hr[k] = hs[k] = act_forward(hr[k] + b_h[k] + label_term(&lab, r, k), act);
    __syncthreads();
    for (int o = warp; o < 2 * latent; o += blockDim.x / 32) {
        const float *w = o < latent ? w_mu + (size_t)o * hidden : w_lv + (size_t)(o - latent) * hidden;
        float acc = 0.0f;
        for (int k = lane; k < hidden; k += 32) acc += hs[k] * w[k];
        acc = warp_sum(acc);
        if (lane == 0) heads[o] = acc;
    }
    __syncthreads();
    const uint64_t key = noise.per_sample ? rng_key(noise.seed, noise.base + noise.first + r)
                                          : rng_key(noise.seed, noise.base + c->global_step);
    double kl = 0.0;
    for (int j = threadIdx.x; j < latent; j += blockDim.x) {
        const size_t i = (size_t)r * latent + j;
        const float m = heads[j] + b_mu[j], l = heads[latent + j] + b_lv[j];
        const float e = normal_at(key, noise.per_sample ? (uint64_t)j : (uint64_t)i);
        mu[i] = m, lv[i] = l, eps[i] = e;
        z[i] = m + expf(0.5f * l) * e;
        /* KL = -1/2 (1 + lv - mu^2 - exp(lv)) */
        kl += -0.5 * (1.0 + (double)l - (double)m * m - exp((double)l));
    }
    const double total = block_sum(kl, kl_shared);
    if (threadIdx.x == 0) kl_rows[r] = total;
}

int gpu_heads_forward_fits(int hidden, int latent) {
    return (size_t)(hidden + 2 * latent) * sizeof(float) <= 40 * 1024;
}

void gpu_heads_forward(cudaStream_t s, float *h, const float *b_h, gpu_labels lab,
                       vae_activation act, int hidden, const float *w_mu, const float *w_lv,
                       const float *b_mu, const float *b_lv, float *mu, float *lv, float *eps,
                       float *z, int rows, int latent, gpu_noise noise, const gpu_counters *c,
                       double *kl_rows) {
    const size_t shared = (size_t)(hidden + 2 * latent) * sizeof(float);
    heads_forward_kernel<<<rows, THREADS, shared, s>>>(h, b_h, lab, act, hidden, w_mu, w_lv, b_mu,
                                                        b_lv, mu, lv, eps, z, latent, noise, c,
                                                        kl_rows);
}

/* -log p(x|o) of one value and its gradients (times scale) with respect to the mean or logit
 * and to the raw log-variance: the device twin of op_recon. */
__device__ static double value_nll(const gpu_lik *lik, float o, float raw, float x,
                                   float scale, float *g, float *graw) {
    *graw = 0.0f;
    if (lik->kind == VAE_LIK_BERNOULLI) {
        /* max(l,0) - l x + log1p(e^-|l|); gradient s(l) - x */
        const float e = expf(-fabsf(o)), inv = 1.0f / (1.0f + e);
        *g = scale * ((o >= 0.0f ? inv : e * inv) - x);
        return (double)((o > 0.0f ? o : 0.0f) - o * x + log1pf(e));
    }
    if (lik->kind == VAE_LIK_POISSON) { /* o = log-rate */
        const float rate = expf(o);
        *g = scale * (rate - x);
        return (double)rate - (double)x * o + lgamma((double)x + 1.0);
    }
    float var, dvar_draw = 0.0f;
    if (lik->variance == VAE_VAR_FIXED) {
        var = lik->sigma * lik->sigma;
    } else {
        dvar_draw = expf(raw);
        var = lik->floor + dvar_draw;
    }
    const float diff = o - x, inv = 1.0f / var;
    *g = scale * diff * inv;
    *graw = 0.5f * inv * (1.0f - diff * diff * inv) * dvar_draw * scale;
    return HALF_LOG_2PI + 0.5 * log((double)var) + 0.5 * (double)diff * diff * inv;
}

__global__ static void likelihood_kernel(const float *out, const float *bias, const float *x,
                                         int rows, int per, const float *row_scale, gpu_lik lik,
                                         const float *dim_logvar, float *dout, float *dbias,
                                         float *d_dim_logvar, double *part_recon) {
    __shared__ float cols[ROWS][32];
    __shared__ double sums[32 * ROWS];
    const int dim = lik.dim, c = blockIdx.x * 32 + threadIdx.x;
    const int per_sample = lik.kind == VAE_LIK_GAUSSIAN && lik.variance == VAE_VAR_PER_SAMPLE;
    const int width = per_sample ? 2 * dim : dim;
    const float mean_scale = 1.0f / (float)rows;
    double nll = 0.0;
    float gsum = 0.0f, rsum = 0.0f;
    if (c < dim) {
        const float b = bias[c], braw = per_sample ? bias[dim + c] : 0.0f;
        for (int r = threadIdx.y; r < rows; r += ROWS) {
            const float *o = out + (size_t)r * width;
            float raw = lik.variance == VAE_VAR_PER_DIM ? dim_logvar[c]
                        : per_sample                     ? o[dim + c] + braw
                                                         : 0.0f;
            float g = 0.0f, graw = 0.0f;
            const float scale = row_scale ? row_scale[r] : mean_scale;
            const size_t xi = (size_t)(r / per) * dim + c;
            if (!lik.mask || lik.mask[xi]) /* a missing value adds nothing, gets no gradient */
                nll += value_nll(&lik, o[c] + b, raw, x[xi], scale, &g, &graw);
            if (dout) {
                dout[(size_t)r * width + c] = g;
                if (per_sample) dout[(size_t)r * width + dim + c] = graw;
            }
            gsum += g, rsum += graw;
        }
    }
    const double total = block_sum(nll, sums);
    if (threadIdx.x == 0 && threadIdx.y == 0) part_recon[blockIdx.x] = total;
    if (!dout) return;
    const float gcol = column_sum(gsum, cols), rcol = column_sum(rsum, cols);
    if (threadIdx.y != 0 || c >= dim) return;
    dbias[c] = gcol;
    if (per_sample) dbias[dim + c] = rcol;
    if (d_dim_logvar) d_dim_logvar[c] = rcol;
}

int gpu_likelihood(cudaStream_t s, const float *out, const float *bias, const float *x, int rows,
                   int per, const float *row_scale, gpu_lik lik, const float *dim_logvar,
                   float *dout, float *dbias, float *d_dim_logvar, double *part_recon) {
    const int blocks = (lik.dim + 31) / 32;
    likelihood_kernel<<<blocks, dim3(32, ROWS), 0, s>>>(out, bias, x, rows, per, row_scale, lik,
                                                         dim_logvar, dout, dbias, d_dim_logvar,
                                                         part_recon);
    return blocks;
}

__global__ static void act_backward_kernel(float *dy, const float *y, float *db, int rows,
                                           int cols, vae_activation act) {
    __shared__ float shared[ROWS][32];
    const int c = blockIdx.x * 32 + threadIdx.x;
    float sum = 0.0f;
    if (c < cols)
        for (int r = threadIdx.y; r < rows; r += ROWS) {
            const size_t i = (size_t)r * cols + c;
            const float g = act_backward(dy[i], y[i], act);
            dy[i] = g;
            sum += g;
        }
    const float total = column_sum(sum, shared);
    if (threadIdx.y == 0 && c < cols) db[c] = total;
}

void gpu_act_backward(cudaStream_t s, float *dy, const float *y, float *db, int rows, int cols,
                      vae_activation act) {
    act_backward_kernel<<<(cols + 31) / 32, dim3(32, ROWS), 0, s>>>(dy, y, db, rows, cols, act);
}

/* One block per row: dz = dd W (W the first decoder layer's (H, L) weight), then the gradients
 * of mu and logvar. With free bits every block first takes the batch-mean KL of each unit over
 * all rows (the same sum in every block: rows are split by thread in a fixed pattern). */
__global__ static void latent_backward_kernel(const float *dd, const float *w_dec, int ld,
                                              int hidden,
                                              const float *mu, const float *lv, const float *eps,
                                              float *dmu, float *dlv, int rows, int latent,
                                              float beta, uint64_t warmup, float free_bits,
                                              const gpu_counters *c) {
    extern __shared__ float dz[]; /* L */
    __shared__ double kl_shared[THREADS];
    __shared__ float scale[64];
    const int r = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float *ddr = dd + (size_t)r * hidden;
    for (int j = warp; j < latent; j += blockDim.x / 32) {
        float acc = 0.0f;
        for (int k = lane; k < hidden; k += 32) acc += ddr[k] * w_dec[(size_t)k * ld + j];
        acc = warp_sum(acc);
        if (lane == 0) dz[j] = acc;
    }
    /* KL warm-up (Bowman et al.): the weight climbs linearly to beta, as in vae_train */
    const uint64_t step = c->global_step;
    float weight = beta;
    if (warmup && step + 1 < warmup)
        weight = (float)((double)beta * (double)(step + 1) / (double)warmup);
    const float k_all = weight * (1.0f / (float)rows);
    for (int j0 = 0; j0 < latent; j0 += 64) { /* units j0.. in this pass */
        const int units = latent - j0 < 64 ? latent - j0 : 64;
        if (threadIdx.x < units) scale[threadIdx.x] = k_all;
        if (free_bits > 0.0f) { /* a unit whose batch-mean KL is under the free bits gets none */
            const int groups = blockDim.x / units;
            const int j = j0 + threadIdx.x % units, g = threadIdx.x / units;
            double kl = 0.0;
            for (int rr = g; g < groups && rr < rows; rr += groups) {
                const size_t i = (size_t)rr * latent + j;
                kl += -0.5 * (1.0 + (double)lv[i] - (double)mu[i] * mu[i] - exp((double)lv[i]));
            }
            kl_shared[threadIdx.x] = g < groups ? kl : 0.0;
            __syncthreads();
            if (threadIdx.x < units) {
                double mean = 0.0;
                for (int t = 0; t < groups; t++) mean += kl_shared[t * units + threadIdx.x];
                if (mean / rows < free_bits) scale[threadIdx.x] = 0.0f;
            }
        }
        __syncthreads();
        for (int u = threadIdx.x; u < units; u += blockDim.x) {
            const int j = j0 + u;
            const size_t i = (size_t)r * latent + j;
            const float m = mu[i], l = lv[i], g = dz[j], k = scale[u];
            /* through z = mu + exp(lv/2) eps, plus the KL's own gradient */
            dmu[i] = g + k * m;
            dlv[i] = g * eps[i] * expf(0.5f * l) * 0.5f + k * (expf(l) - 1.0f) * 0.5f;
        }
        __syncthreads();
    }
}

void gpu_latent_backward(cudaStream_t s, const float *dd, const float *w_dec, int ld, int hidden,
                         const float *mu, const float *lv, const float *eps, float *dmu,
                         float *dlv, int rows, int latent, float beta, uint64_t warmup,
                         float free_bits, const gpu_counters *c) {
    latent_backward_kernel<<<rows, THREADS, latent * sizeof(float), s>>>(
        dd, w_dec, ld, hidden, mu, lv, eps, dmu, dlv, rows, latent, beta, warmup, free_bits, c);
}

/* dh = dmu W_mu + dlv W_lv for 32 hidden units per block (the heads' input gradient, K = 2L),
 * then through the activation, and its column sums: the bias gradient of the last encoder
 * layer. */
__global__ static void heads_backward_kernel(const float *dmu, const float *dlv,
                                             const float *w_mu, const float *w_lv,
                                             const float *h, float *dh, float *db, int rows,
                                             int hidden, int latent, vae_activation act) {
    __shared__ float shared[ROWS][32];
    const int col = blockIdx.x * 32 + threadIdx.x;
    float sum = 0.0f;
    if (col < hidden)
        for (int r = threadIdx.y; r < rows; r += ROWS) {
            const float *gm = dmu + (size_t)r * latent, *gl = dlv + (size_t)r * latent;
            float acc = 0.0f;
            for (int j = 0; j < latent; j++)
                acc += gm[j] * w_mu[(size_t)j * hidden + col] + gl[j] * w_lv[(size_t)j * hidden + col];
            const size_t i = (size_t)r * hidden + col;
            const float g = act_backward(acc, h[i], act);
            dh[i] = g;
            sum += g;
        }
    const float total = column_sum(sum, shared);
    if (threadIdx.y == 0 && col < hidden) db[col] = total;
}

void gpu_heads_backward(cudaStream_t s, const float *dmu, const float *dlv, const float *w_mu,
                        const float *w_lv, const float *h, float *dh, float *db, int rows,
                        int hidden, int latent, vae_activation act) {
    heads_backward_kernel<<<(hidden + 31) / 32, dim3(32, ROWS), 0, s>>>(
        dmu, dlv, w_mu, w_lv, h, dh, db, rows, hidden, latent, act);
}

__global__ static void step_finish_kernel(const float *grads, size_t n, gpu_counters *c,
                                          gpu_step_sums sums, vae_adam_options adam) {
    __shared__ double shared[THREADS];
    const unsigned long long step = c->global_step;
    int bad = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        bad |= !isfinite(grads[i]);
    if (blockIdx.x == 0) { /* the heads' bias gradients: column sums of dmu and dlv */
        for (int o = threadIdx.x; o < 2 * sums.latent; o += blockDim.x) {
            const int j = o % sums.latent;
            const float *d = o < sums.latent ? sums.dmu : sums.dlv;
            float acc = 0.0f;
            for (int r = 0; r < sums.rows; r++) acc += d[(size_t)r * sums.latent + j];
            (o < sums.latent ? sums.db_mu : sums.db_lv)[j] = acc;
            bad |= !isfinite(acc);
        }
    }
    if (bad) atomicMin(&c->bad_step, step);
    if (blockIdx.x != 0) return;
    double recon = 0.0, kl = 0.0;
    for (int i = threadIdx.x; i < sums.n_recon; i += blockDim.x) recon += sums.part_recon[i];
    for (int i = threadIdx.x; i < sums.n_kl; i += blockDim.x) kl += sums.kl_rows[i];
    recon = block_sum(recon, shared);
    kl = block_sum(kl, shared);
    if (threadIdx.x != 0) return;
    sums.hist_recon[step % sums.history] = recon, sums.hist_kl[step % sums.history] = kl;
    if (!isfinite(recon + kl)) atomicMin(&c->bad_step, step);
    /* bias corrections in double, as vae_adam_step computes them */
    const double t = (double)(c->adam_steps + 1);
    const float c1 = (float)(1.0 - pow((double)adam.beta1, t));
    const float c2 = (float)(1.0 - pow((double)adam.beta2, t));
    c->adam_lr_c1 = adam.lr / c1;
    c->adam_inv_sqrt_c2 = 1.0f / sqrtf(c2);
}

void gpu_step_finish(cudaStream_t s, const float *grads, size_t n, gpu_counters *c,
                     gpu_step_sums sums, vae_adam_options adam) {
    step_finish_kernel<<<blocks_for(n), THREADS, 0, s>>>(grads, n, c, sums, adam);
}

__global__ static void adam_kernel(float *params, const float *grads, float *mom1, float *mom2,
                                   size_t n, gpu_counters *c, vae_adam_options adam) {
    const int apply = c->bad_step == GPU_NO_BAD_STEP;
    if (apply) {
        const float b1 = adam.beta1, b2 = adam.beta2, eps = adam.epsilon;
        const float step = c->adam_lr_c1, inv_sqrt_c2 = c->adam_inv_sqrt_c2;
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
             i += (size_t)gridDim.x * blockDim.x) {
            const float g = grads[i];
            const float m = mom1[i] = b1 * mom1[i] + (1.0f - b1) * g;
            const float v = mom2[i] = b2 * mom2[i] + (1.0f - b2) * g * g;
            params[i] -= step * m / (sqrtf(v) * inv_sqrt_c2 + eps);
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        if (apply) c->adam_steps++;
        c->global_step++;
        c->epoch_step++;
    }
}

void gpu_adam(cudaStream_t s, float *params, const float *grads, float *m, float *v, size_t n,
              gpu_counters *c, vae_adam_options adam) {
    adam_kernel<<<blocks_for(n), THREADS, 0, s>>>(params, grads, m, v, n, c, adam);
}

/* ------------------------------------------------------------------ evaluation */

/* Value w of a vae_rng_normal call that starts at pair `first_pair` of a stream. */
__device__ static float normal_from(uint64_t key, uint64_t first_pair, uint64_t w) {
    return normal_at(key, 2 * first_pair + w);
}

__global__ static void iwae_draws_kernel(float *z, double *log_w, const float *mu,
                                         const float *lv, int rows, int latent, size_t row0,
                                         int k, int chunk, uint64_t seed, uint64_t stream) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const size_t g = row0 + (size_t)r, example = g / (size_t)k;
    const uint64_t t = g % (size_t)k, q = t / (uint64_t)chunk, rr = t % (uint64_t)chunk;
    /* the CPU draws each chunk of `chunk` rows with one vae_rng_normal call of chunk*L values:
     * a call uses whole Box–Muller pairs, so chunk q starts at pair q * ceil(chunk L / 2) */
    const uint64_t first_pair = q * (((uint64_t)chunk * latent + 1) / 2);
    const uint64_t key = rng_key(seed, stream + example);
    const float *m = mu + example * latent, *l = lv + example * latent;
    double log_prior = 0.0, log_q = 0.0;
    const double log_2pi = 1.8378770664093453;
    for (int j = 0; j < latent; j++) {
        const float e = normal_from(key, first_pair, rr * latent + j);
        const float zz = m[j] + expf(0.5f * l[j]) * e;
        z[(size_t)r * latent + j] = zz;
        log_prior -= 0.5 * (log_2pi + (double)zz * zz);
        log_q -= 0.5 * (log_2pi + l[j] + (double)e * e);
    }
    log_w[r] = log_prior - log_q;
}

void gpu_iwae_draws(cudaStream_t s, float *z, double *log_w, const float *mu, const float *lv,
                    int rows, int latent, size_t row0, int k, int chunk, uint64_t seed,
                    uint64_t stream) {
    iwae_draws_kernel<<<(rows + 127) / 128, 128, 0, s>>>(z, log_w, mu, lv, rows, latent, row0, k,
                                                         chunk, seed, stream);
}

__global__ static void row_nll_kernel(const float *out, const float *bias, const float *x,
                                      int rows, size_t row0, int k, gpu_lik lik,
                                      const float *dim_logvar, double *dst, int subtract) {
    __shared__ double shared[THREADS];
    const int r = blockIdx.x, dim = lik.dim;
    const int per_sample = lik.kind == VAE_LIK_GAUSSIAN && lik.variance == VAE_VAR_PER_SAMPLE;
    const float *o = out + (size_t)r * (per_sample ? 2 * dim : dim);
    const size_t x_row = ((row0 + (size_t)r) / (size_t)k) * dim;
    const float *xr = x + x_row;
    double nll = 0.0;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) {
        if (lik.mask && !lik.mask[x_row + c]) continue;
        const float raw = lik.variance == VAE_VAR_PER_DIM ? dim_logvar[c]
                          : per_sample                     ? o[dim + c] + bias[dim + c]
                                                           : 0.0f;
        float g, graw;
        nll += value_nll(&lik, o[c] + bias[c], raw, xr[c], 1.0f, &g, &graw);
    }
    const double total = block_sum(nll, shared);
    if (threadIdx.x == 0) dst[r] = subtract ? dst[r] - total : total;
}

void gpu_row_nll(cudaStream_t s, const float *out, const float *bias, const float *x, int rows,
                 size_t row0, int k, gpu_lik lik, const float *dim_logvar, double *dst,
                 int subtract) {
    row_nll_kernel<<<rows, THREADS, 0, s>>>(out, bias, x, rows, row0, k, lik, dim_logvar, dst,
                                            subtract);
}

/* nll[e] = -log (1/k) sum_i exp(log_w[e k + i]), with the maximum taken out first */
/* log sum_i exp(w[i]) over k values, the largest taken out first, in every thread of the
 * block (THREADS of them) */
__device__ static double block_log_sum_exp(const double *w, int k, double *shared) {
    double top = -INFINITY;
    for (int i = threadIdx.x; i < k; i += blockDim.x) top = fmax(top, w[i]);
    shared[threadIdx.x] = top;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + half]);
        __syncthreads();
    }
    top = shared[0];
    __syncthreads();
    double sum = 0.0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) sum += exp(w[i] - top);
    sum = block_sum(sum, shared);
    return top + log(sum);
}

__global__ static void log_mean_exp_kernel(const double *log_w, int k, double *nll) {
    __shared__ double shared[THREADS];
    const double lse = block_log_sum_exp(log_w + (size_t)blockIdx.x * k, k, shared);
    if (threadIdx.x == 0) nll[blockIdx.x] = -(lse - log((double)k));
}

void gpu_log_mean_exp(cudaStream_t s, const double *log_w, int examples, int k, double *nll) {
    log_mean_exp_kernel<<<examples, THREADS, 0, s>>>(log_w, k, nll);
}

/* The mean of p(x|z) per value from the output layer's products (before its bias): sigmoid of
 * the logit, the Gaussian's mean, or exp of the log-rate (op_decode_mean's twin). */
__global__ static void decode_mean_kernel(const float *out, const float *bias, int rows,
                                          gpu_lik lik, float *means) {
    const int dim = lik.dim;
    const int width = lik.kind == VAE_LIK_GAUSSIAN && lik.variance == VAE_VAR_PER_SAMPLE ? 2 * dim : dim;
    const size_t n = (size_t)rows * dim;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / dim;
        const int c = (int)(i % dim);
        const float o = out[r * width + c] + bias[c];
        float v = o;
        if (lik.kind == VAE_LIK_BERNOULLI) {
            const float e = expf(-fabsf(o)), inv = 1.0f / (1.0f + e);
            v = o >= 0.0f ? inv : e * inv;
        } else if (lik.kind == VAE_LIK_POISSON) {
            v = expf(o);
        }
        means[i] = v;
    }
}

void gpu_decode_mean(cudaStream_t s, const float *out, const float *bias, int rows, gpu_lik lik,
                     float *means) {
    decode_mean_kernel<<<blocks_for((size_t)rows * lik.dim), THREADS, 0, s>>>(out, bias, rows, lik,
                                                                              means);
}

/* ------------------------------------------------------------------ IWAE training */

__global__ static void iwae_step_draws_kernel(const float *mu, const float *lv, float *eps,
                                              float *z, double *log_w, int rows, int latent,
                                              int k, gpu_noise noise, const gpu_counters *c) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const uint64_t key = rng_key(noise.seed, noise.base + c->global_step);
    const float *m = mu + (size_t)(r / k) * latent, *l = lv + (size_t)(r / k) * latent;
    const double log_2pi = 1.8378770664093453;
    double log_prior = 0.0, log_q = 0.0;
    for (int j = 0; j < latent; j++) {
        const size_t i = (size_t)r * latent + j;
        const float e = normal_at(key, i);
        const float zz = m[j] + expf(0.5f * l[j]) * e;
        eps[i] = e, z[i] = zz;
        log_prior -= 0.5 * (log_2pi + (double)zz * zz);
        log_q -= 0.5 * (log_2pi + l[j] + (double)e * e);
    }
    log_w[r] = log_prior - log_q;
}

void gpu_iwae_step_draws(cudaStream_t s, const float *mu, const float *lv, float *eps, float *z,
                         double *log_w, int rows, int latent, int k, gpu_noise noise,
                         const gpu_counters *c) {
    iwae_step_draws_kernel<<<(rows + 127) / 128, 128, 0, s>>>(mu, lv, eps, z, log_w, rows, latent,
                                                              k, noise, c);
}

__global__ static void iwae_weights_kernel(const double *log_w, int inputs, int k, float *weights,
                                           double *bounds) {
    __shared__ double shared[THREADS];
    const double *w = log_w + (size_t)blockIdx.x * k;
    const double lse = block_log_sum_exp(w, k, shared);
    for (int i = threadIdx.x; i < k; i += blockDim.x)
        weights[(size_t)blockIdx.x * k + i] = (float)(exp(w[i] - lse) / inputs);
    if (threadIdx.x == 0) bounds[blockIdx.x] = -(lse - log((double)k));
}

void gpu_iwae_weights(cudaStream_t s, const double *log_w, int inputs, int k, float *weights,
                      double *bounds) {
    iwae_weights_kernel<<<inputs, THREADS, 0, s>>>(log_w, inputs, k, weights, bounds);
}

/* One block per input: its draws one after another (the CPU's order of the sums). */
__global__ static void iwae_latent_backward_kernel(const float *dd, const float *w_dec, int ld,
                                                   int hidden, const float *z, const float *eps,
                                                   const float *lv, const float *weights,
                                                   float *dmu, float *dlv, int inputs, int k,
                                                   int latent) {
    extern __shared__ float shared_latent[]; /* dz, then the two sums: 3L */
    float *dz = shared_latent, *acc_mu = dz + latent, *acc_lv = acc_mu + latent;
    const int b = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int j = threadIdx.x; j < latent; j += blockDim.x) acc_mu[j] = acc_lv[j] = 0.0f;
    for (int t = 0; t < k; t++) {
        const size_t r = (size_t)b * k + t;
        const float *ddr = dd + r * hidden;
        for (int j = warp; j < latent; j += blockDim.x / 32) {
            float acc = 0.0f;
            for (int h = lane; h < hidden; h += 32) acc += ddr[h] * w_dec[(size_t)h * ld + j];
            acc = warp_sum(acc);
            if (lane == 0) dz[j] = acc;
        }
        __syncthreads();
        for (int j = threadIdx.x; j < latent; j += blockDim.x) {
            const size_t i = r * latent + j;
            /* -log p(z) adds w z; z = mu + sigma eps carries it to mu and log sigma^2 */
            const float g = dz[j] + weights[r] * z[i];
            acc_mu[j] += g;
            acc_lv[j] += g * eps[i] * 0.5f * expf(0.5f * lv[(size_t)b * latent + j]);
        }
        __syncthreads();
    }
    for (int j = threadIdx.x; j < latent; j += blockDim.x) {
        dmu[(size_t)b * latent + j] = acc_mu[j];
        dlv[(size_t)b * latent + j] = acc_lv[j] - 0.5f / (float)inputs; /* log q's part */
    }
}

void gpu_iwae_latent_backward(cudaStream_t s, const float *dd, const float *w_dec, int ld,
                              int hidden, const float *z, const float *eps, const float *lv,
                              const float *weights, float *dmu, float *dlv, int inputs, int k,
                              int latent) {
    iwae_latent_backward_kernel<<<inputs, THREADS, 3 * latent * sizeof(float), s>>>(
        dd, w_dec, ld, hidden, z, eps, lv, weights, dmu, dlv, inputs, k, latent);
}

/* ------------------------------------------------------------------ convolutions */

/* Index arithmetic in 32 bits (allocate() keeps every convolution buffer under 2^32 values):
 * 64-bit division costs several times more on the GPU. */

/* cols (C k k, ld) of `batch` images x (C, H, W) each, output positions (OH, OW): the input
 * under each kernel tap, zero outside the image (im2col in conv.c). Column n*OH*OW + p; one
 * grid row per tap. */
__global__ static void im2col_kernel(float *cols, const float *x, gpu_conv s, unsigned ld) {
    const unsigned ohw = (unsigned)(s.oh * s.ow), row = blockIdx.y;
    const int ch = (int)(row / (unsigned)(s.k * s.k)), ki = (int)(row / s.k % s.k);
    const int kj = (int)(row % s.k);
    float *out = cols + (size_t)row * ld;
    for (unsigned col = blockIdx.x * blockDim.x + threadIdx.x; col < ld;
         col += gridDim.x * blockDim.x) {
        const unsigned n = col / ohw, p = col % ohw;
        const int iy = (int)(p / s.ow) * s.stride - s.pad + ki;
        const int ix = (int)(p % s.ow) * s.stride - s.pad + kj;
        out[col] = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w
                       ? x[((size_t)(n * s.c + ch) * s.h + iy) * s.w + ix] : 0.0f;
    }
}

static unsigned grid_for(unsigned n) {
    const unsigned b = (n + THREADS - 1) / THREADS;
    return b < 1 ? 1 : b > MAX_BLOCKS ? MAX_BLOCKS : b;
}

void gpu_im2col(cudaStream_t st, float *cols, const float *x, gpu_conv s, int batch) {
    const unsigned ld = (unsigned)batch * s.oh * s.ow;
    im2col_kernel<<<dim3(grid_for(ld), s.c * s.k * s.k), THREADS, 0, st>>>(cols, x, s, ld);
}

/* The adjoint: each image value the sum of the column entries that read it, taps in conv.c's
 * order; then plus the channel's bias (may be NULL) and through the activation (act < 0:
 * none). */
__global__ static void col2im_kernel(float *x, const float *cols, gpu_conv s, unsigned batch,
                                     const float *bias, int act) {
    const unsigned ohw = (unsigned)(s.oh * s.ow), ld = batch * ohw;
    const unsigned hw = (unsigned)(s.h * s.w), n_all = batch * s.c * hw;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n_all;
         i += gridDim.x * blockDim.x) {
        const unsigned p = i % hw, img = i / hw, ch = img % s.c, n = img / s.c;
        const int ix = (int)(p % s.w), iy = (int)(p / s.w);
        float sum = 0.0f;
        for (int ki = 0; ki < s.k; ki++) {
            const int ty = iy + s.pad - ki;
            if (ty < 0 || ty % s.stride || ty / s.stride >= s.oh) continue;
            for (int kj = 0; kj < s.k; kj++) {
                const int tx = ix + s.pad - kj;
                if (tx < 0 || tx % s.stride || tx / s.stride >= s.ow) continue;
                const unsigned row = (ch * s.k + ki) * s.k + kj;
                sum += cols[(size_t)row * ld + n * ohw + (unsigned)(ty / s.stride) * s.ow +
                            tx / s.stride];
            }
        }
        if (bias) sum += bias[ch];
        x[i] = act >= 0 ? act_forward(sum, (vae_activation)act) : sum;
    }
}

void gpu_col2im(cudaStream_t st, float *x, const float *cols, gpu_conv s, int batch,
                const float *bias, int act) {
    const unsigned n = (unsigned)batch * s.c * s.h * s.w;
    col2im_kernel<<<grid_for(n), THREADS, 0, st>>>(x, cols, s, (unsigned)batch, bias, act);
}

/* (B, C, HW) -> (C, B HW), times act'(y) when y is given */
__global__ static void to_channel_major_kernel(float *dst, const float *src, const float *y,
                                               unsigned batch, unsigned c, unsigned hw, int act) {
    const unsigned n_all = batch * c * hw;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n_all;
         i += gridDim.x * blockDim.x) {
        const unsigned p = i % hw, img = i / hw, ch = img % c, n = img / c;
        const float v = y ? act_backward(src[i], y[i], (vae_activation)act) : src[i];
        dst[(ch * batch + n) * hw + p] = v;
    }
}

void gpu_to_channel_major(cudaStream_t st, float *dst, const float *src, const float *y,
                          int batch, int c, size_t hw, vae_activation act) {
    const unsigned n = (unsigned)(batch * c * hw);
    to_channel_major_kernel<<<grid_for(n), THREADS, 0, st>>>(dst, src, y, (unsigned)batch,
                                                              (unsigned)c, (unsigned)hw, (int)act);
}

/* (C, B HW) -> (B, C, HW), plus the channel's bias (may be NULL), through act (< 0: none) */
__global__ static void from_channel_major_kernel(float *dst, const float *src, unsigned batch,
                                                 unsigned c, unsigned hw, const float *bias,
                                                 int act) {
    const unsigned n_all = batch * c * hw;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n_all;
         i += gridDim.x * blockDim.x) {
        const unsigned p = i % hw, img = i / hw, ch = img % c, n = img / c;
        const float v = src[(ch * batch + n) * hw + p] + (bias ? bias[ch] : 0.0f);
        dst[i] = act >= 0 ? act_forward(v, (vae_activation)act) : v;
    }
}

void gpu_from_channel_major(cudaStream_t st, float *dst, const float *src, int batch, int c,
                            size_t hw, const float *bias, int act) {
    const unsigned n = (unsigned)(batch * c * hw);
    from_channel_major_kernel<<<grid_for(n), THREADS, 0, st>>>(dst, src, (unsigned)batch,
                                                                (unsigned)c, (unsigned)hw, bias,
                                                                act);
}

/* db[ch] = the sum of channel ch over the batch and positions: channel-major (C, B HW) or
 * image-major (B, C, HW); one block per channel, a fixed order */
__global__ static void channel_sums_kernel(const float *v, unsigned batch, unsigned c,
                                           unsigned hw, int channel_major, float *db) {
    __shared__ double shared[THREADS];
    const unsigned ch = blockIdx.x, n_all = batch * hw;
    float sum = 0.0f;
    for (unsigned i = threadIdx.x; i < n_all; i += blockDim.x)
        sum += channel_major ? v[ch * n_all + i] : v[((i / hw) * c + ch) * hw + i % hw];
    const double total = block_sum((double)sum, shared);
    if (threadIdx.x == 0) db[ch] = (float)total;
}

void gpu_channel_sums(cudaStream_t st, const float *v, int batch, int c, size_t hw,
                      int channel_major, float *db) {
    channel_sums_kernel<<<c, THREADS, 0, st>>>(v, (unsigned)batch, (unsigned)c, (unsigned)hw,
                                               channel_major, db);
}

__global__ static void act_grad_kernel(float *dy, const float *y, size_t n, vae_activation act) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dy[i] = act_backward(dy[i], y[i], act);
}

void gpu_act_grad(cudaStream_t st, float *dy, const float *y, size_t n, vae_activation act) {
    act_grad_kernel<<<blocks_for(n), THREADS, 0, st>>>(dy, y, n, act);
}

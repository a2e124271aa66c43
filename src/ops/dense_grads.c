/* dense_grads.c — the parameters' gradients of a model's dense layers in one parallel pass,
 * for batch threads (whose slices leave them for one pass over the whole batch). The pass
 * splits the work by hand: each task is a block of one layer's output rows over the whole
 * batch, one product on one thread (a BLAS called inside an OpenMP region runs on the calling
 * thread). A threaded product of one such layer splits poorly many ways (the 16-core server:
 * OpenBLAS's threaded products of a step reach 223-448 GFLOP/s against 75 on each thread alone)
 * and runs the layers one after another; tasks from every layer at once keep every thread on a
 * product of its own. Each task owns its rows of dw and db: no partial sums to add, and the
 * bits do not depend on which thread ran which task (they may on the thread count, which sets
 * the blocks). */
#include "ops/ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* At most this many tasks (a fixed table: the pass allocates nothing) */
enum { MAX_TASKS = 256, ROW_ALIGN = 16 };

typedef struct {
    int layer, lo, hi;
} task;

static double flops_of(const op_dense_grad *g) { return (double)g->batch * g->in * g->out; }

/* Blocks of rows for each of n <= MAX_TASKS layers, about 2 tasks per thread of similar flops
 * (every layer at least one); the tasks' count */
static int plan(task *t, const op_dense_grad *g, int n, int threads) {
    double total = 0;
    for (int l = 0; l < n; l++) total += flops_of(&g[l]);
    const double share = total / (2.0 * threads);
    int count = 0;
    for (int l = 0; l < n; l++) {
        int blocks = share > 0 ? (int)(flops_of(&g[l]) / share + 0.5) : 1;
        const int most = (g[l].out + ROW_ALIGN - 1) / ROW_ALIGN;
        if (blocks > most) blocks = most;
        if (blocks < 1) blocks = 1;
        if (blocks > MAX_TASKS - (n - l - 1) - count) blocks = MAX_TASKS - (n - l - 1) - count;
        for (int b = 0; b < blocks; b++) {
            const int lo = (int)((long)g[l].out * b / blocks) / ROW_ALIGN * ROW_ALIGN;
            const int hi = b + 1 == blocks
                               ? g[l].out
                               : (int)((long)g[l].out * (b + 1) / blocks) / ROW_ALIGN * ROW_ALIGN;
            if (hi > lo) t[count++] = (task){l, lo, hi};
        }
    }
    return count;
}

/* db[lo, hi) += the column sums of dy's columns [lo, hi) (row stride out), rows in order */
static void column_sums(float *db, const float *dy, int batch, int out, int lo, int hi) {
    for (int i = 0; i < batch; i++) {
        const float *row = dy + (size_t)i * out;
#pragma omp simd
        for (int j = lo; j < hi; j++) db[j] += row[j];
    }
}

/* The pass over at most MAX_TASKS layers */
static void pass(op_gemm_fn gemm, const op_dense_grad *g, int n) {
    task t[MAX_TASKS];
#ifdef _OPENMP
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    const int threads = 1;
#endif
    const int count = plan(t, g, n, threads);
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1 && count > 1)
    for (int i = 0; i < count; i++) {
        const op_dense_grad *d = &g[t[i].layer];
        const int lo = t[i].lo, rows = t[i].hi - lo;
        /* dw[lo, hi) += dy[:, lo, hi)^T x */
        gemm(1, 0, rows, d->in, d->batch, d->dy + lo, d->out, d->x, d->in, 1.0f,
             d->dw + (size_t)lo * d->in, d->in);
        column_sums(d->db, d->dy, d->batch, d->out, lo, t[i].hi);
    }
}

void op_dense_param_grads_with(op_gemm_fn gemm, const op_dense_grad *g, int n) {
    for (int first = 0; first < n; first += MAX_TASKS)
        pass(gemm, g + first, n - first < MAX_TASKS ? n - first : MAX_TASKS);
}

void op_dense_param_grads(const op_dense_grad *g, int n) {
    op_dense_param_grads_with(op_gemm, g, n);
}

#ifdef VAE_ONEDNN
void op_dense_param_grads_onednn(const op_dense_grad *g, int n) {
    op_dense_param_grads_with(op_gemm_onednn, g, n);
}

/* bf16's products gain from one large matmul on all threads (AMX tiles; each task would round
 * the whole batch's x to bf16 again): the layers one at a time, each product threaded. */
void op_dense_param_grads_bf16(const op_dense_grad *g, int n) {
    for (int l = 0; l < n; l++)
        op_linear_backward_bf16(NULL, g[l].dw, g[l].db, g[l].dy, g[l].x, NULL, g[l].batch,
                                g[l].in, g[l].out, 0, 1);
}
#endif

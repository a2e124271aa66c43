/* conv_ops.c — what the conv preset's four convolution layers cost against their matrix
 * products: each layer's forward and backward op as --backend onednn runs them (oneDNN's
 * convolution primitives with their reorders; the im2col passes around its sgemm before)
 * timed at a batch and thread count, next to the same products alone (one sgemm per product
 * over the whole batch): what an im2col implementation could at best reach.
 *   conv_ops [--batch B] [--threads T] [--seconds S]     (a build with oneDNN) */
#include "ops/ops.h"
#include "vae.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef VAE_ONEDNN
#include <dnnl.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const char *name;
    conv_shape s;
    int transposed, needs_dx;
} layer;

/* The conv preset: Conv2d 1->32 and 32->64 (k4 s2 p1), mirrored by ConvTranspose2d; the
 * 32-channel activations between two convolutions in channel blocks, as a training workspace
 * keeps them with oneDNN (1 here marks them; main sets the table's block, 16 or 8) */
static layer layers[] = {
    {"conv 1->32 28->14", {1, 28, 28, 32, 14, 14, 4, 2, 1, 0, 0, 1}, 0, 0},
    {"conv 32->64 14->7", {32, 14, 14, 64, 7, 7, 4, 2, 1, 0, 1, 0}, 0, 1},
    {"convT 64->32 7->14", {64, 7, 7, 32, 14, 14, 4, 2, 1, 0, 0, 1}, 1, 1},
    {"convT 32->1 14->28", {32, 14, 14, 1, 28, 28, 4, 2, 1, 0, 1, 0}, 1, 1},
};

static float *filled(size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) p[i] = 0.001f * (float)(i % 997) - 0.3f;
    return p;
}

/* Seconds per call of the layer's forward (which 0) or backward (1), and of its products alone */
static void time_layer(const layer *l, int batch, double seconds, double *op_s, double *gemm_s) {
    const conv_shape *s = &l->s;
    const size_t in = (size_t)s->in_c * s->in_h * s->in_w;
    const size_t out = (size_t)s->out_c * s->out_h * s->out_w;
    const size_t nw = (size_t)s->in_c * s->out_c * s->k * s->k;
    float *x = filled(in * batch), *y = filled(out * batch), *w = filled(nw), *b = filled(4096);
    float *dx = filled(in * batch), *dw = filled(nw), *db = filled(4096);
    float *cols = filled(op_conv_cols_size_onednn(s, batch, l->transposed));
    /* the products: forward (m, n, k) and backward's dW and dcols over the whole batch */
    const int kk = l->transposed ? s->out_c * s->k * s->k : s->in_c * s->k * s->k;
    const int ch = l->transposed ? s->in_c : s->out_c;
    const int pos = l->transposed ? s->in_h * s->in_w * batch : s->out_h * s->out_w * batch;
    float *big = filled((size_t)kk * pos), *small = filled((size_t)ch * pos);
    for (int which = 0; which < 2; which++) {
        long reps = 0;
        double t0 = now();
        do {
            if (which == 0 && !l->transposed) op_conv2d_forward_onednn(y, x, w, b, batch, s, cols);
            if (which == 0 && l->transposed) op_convt2d_forward_onednn(y, x, w, b, batch, s, cols);
            if (which == 1 && !l->transposed)
                op_conv2d_backward_onednn(l->needs_dx ? dx : NULL, dw, db, y, x, w, batch, s, cols);
            if (which == 1 && l->transposed)
                op_convt2d_backward_onednn(dx, dw, db, y, x, w, batch, s, cols);
            reps++;
        } while (now() - t0 < seconds / 4);
        op_s[which] = (now() - t0) / reps;
        reps = 0;
        t0 = now();
        do {
            if (which == 0) /* (ch, kk) (kk, pos) or its adjoint: one product either way */
                dnnl_sgemm('N', 'N', ch, pos, kk, 1.0f, w, kk, big, pos, 0.0f, small, pos);
            else {
                dnnl_sgemm('N', 'T', ch, kk, pos, 1.0f, small, pos, big, pos, 1.0f, dw, kk);
                if (l->needs_dx)
                    dnnl_sgemm('T', 'N', kk, pos, ch, 1.0f, w, kk, small, pos, 0.0f, big, pos);
            }
            reps++;
        } while (now() - t0 < seconds / 4);
        gemm_s[which] = (now() - t0) / reps;
    }
    free(x), free(y), free(w), free(b), free(dx), free(dw), free(db), free(cols), free(big),
        free(small);
}

int main(int argc, char **argv) {
    int batch = 128, threads = 0;
    double seconds = 2.0;
    static const struct option opts[] = {{"batch", 1, 0, 'b'}, {"threads", 1, 0, 't'},
                                         {"seconds", 1, 0, 's'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "b:t:s:", opts, NULL)) != -1) {
        if (c == 'b') batch = atoi(optarg);
        else if (c == 't') threads = atoi(optarg);
        else if (c == 's') seconds = atof(optarg);
        else return 64;
    }
    vae_set_num_threads(threads);
    double total_op = 0, total_gemm = 0;
    const int block = op_conv_block_onednn();
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) {
        conv_shape *s = &layers[i].s;
        s->workers = vae_get_num_threads(); /* as a training workspace splits them */
        s->in_blocked *= block, s->out_blocked *= block;
        double op[2], gemm[2];
        time_layer(&layers[i], batch, seconds / 4, op, gemm);
        printf("threads %d batch %d %-20s forward %.3f ms (products %.3f) backward %.3f ms "
               "(products %.3f)\n", vae_get_num_threads(), batch, layers[i].name, 1e3 * op[0],
               1e3 * gemm[0], 1e3 * op[1], 1e3 * gemm[1]);
        total_op += op[0] + op[1], total_gemm += gemm[0] + gemm[1];
    }
    printf("threads %d batch %d all conv layers: %.3f ms per step, products alone %.3f ms\n",
           vae_get_num_threads(), batch, 1e3 * total_op, 1e3 * total_gemm);
    return 0;
}
#else
int main(void) {
    fprintf(stderr, "conv_ops: this build has no oneDNN\n");
    return 1;
}
#endif

/* conv_onednn.c — the oneDNN backend's convolutions on oneDNN's own convolution and
 * deconvolution primitives (what PyTorch's CPU path runs), instead of im2col around a product:
 * its JIT kernels work on channel-blocked layouts without a column matrix (build/conv_ops, the
 * conv preset's four layers at batch 128 on 2 threads: 11.3 ms a step, against 26.7 for im2col
 * around oneDNN's sgemm).
 * Weights keep PyTorch's layouts; activations are NCHW, or the primitives' channel blocks (of
 * 16 or 8: conv_block) where the model keeps them so between two convolutions
 * (conv_shape.in_blocked, out_blocked).
 * Each call reorders the operands in another layout than the primitive asked for, in the
 * caller's scratch, and back. A batch goes through in chunks (chunk_size), so that the scratch
 * does not grow with an evaluation's batch. Primitives are made per call: oneDNN's primitive
 * cache makes that cheap, and the layer keeps no state. Where oneDNN refuses a primitive, a
 * call on NCHW runs the im2col passes on oneDNN's sgemm instead (conv.c), whose scratch the
 * size below includes. */
#include "ops/ops.h"

#ifdef VAE_ONEDNN
#include "ops/onednn_call.h"
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Inside a parallel region: a batch thread's slice (forward_or) */
static int in_parallel(void) {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

/* The threads oneDNN runs a primitive on here: one inside a parallel region */
static int threads(void) {
#ifdef _OPENMP
    return in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

/* Whether a pass's input or output activations are in channel blocks */
static int blocked(const conv_shape *s) { return s->in_blocked || s->out_blocked; }

/* The most samples one primitive call takes. Activations in channel blocks need no copies in
 * the scratch, and the primitives run faster on more samples (the conv preset's layers on 2
 * threads: backward weights 2.5 -> 1.7 ms a step from 32 to 128): 128. Else 16 per thread the
 * workspace was laid out for (s->workers, so that its scratch and its passes agree), 32 to
 * 128: the conv preset's scratch is 1.2 MiB at 32, and with batch threads that run on 2
 * threads was at its memory budget. */
static int chunk_size(const conv_shape *s) {
    if (blocked(s)) return 128;
    const int c = 16 * (s->workers > 1 ? s->workers : 1);
    return c < 32 ? 32 : c > 128 ? 128 : c;
}

typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_memory_desc_t src, wei, bias, dst; /* the plain layouts: NCHW, OIHW (convT: IOHW), x */
    dnnl_primitive_desc_t fwd, bwd_data, bwd_weights;
    int bias_apart; /* the forward adds no bias: forward_chunk does */
    int out_block; /* the output's activations in channel blocks of this many (0: NCHW) */
} plan;

static void plan_free(plan *p) {
    if (p->fwd) dnnl_primitive_desc_destroy(p->fwd);
    if (p->bwd_data) dnnl_primitive_desc_destroy(p->bwd_data);
    if (p->bwd_weights) dnnl_primitive_desc_destroy(p->bwd_weights);
    if (p->stream) dnnl_stream_destroy(p->stream);
    if (p->engine) dnnl_engine_destroy(p->engine);
}

/* The model's layout of activations: NCHW, or channel blocks of 8 or 16 */
static dnnl_format_tag_t model_layout(int block) {
    return block == 16 ? dnnl_nChw16c : block == 8 ? dnnl_nChw8c : dnnl_nchw;
}

/* The layout asked for activations of c channels: the primitive's choice (blocks of 16 or 8
 * channels), but plain NCHW for fewer than a block, which the blocks would pad (the decoder's
 * last ConvTranspose2d, 32 -> 1 channel, ran 8x slower on 16 padded channels) */
static dnnl_format_tag_t layout(int c) { return c % 16 ? dnnl_nchw : dnnl_format_tag_any; }

/* The initializers of a (de)convolution's descriptors */
typedef dnnl_status_t fwd_init(dnnl_convolution_desc_t *, dnnl_prop_kind_t, dnnl_alg_kind_t,
                               const dnnl_memory_desc_t *, const dnnl_memory_desc_t *,
                               const dnnl_memory_desc_t *, const dnnl_memory_desc_t *,
                               const dnnl_dims_t, const dnnl_dims_t, const dnnl_dims_t);
typedef dnnl_status_t data_init(dnnl_convolution_desc_t *, dnnl_alg_kind_t,
                                const dnnl_memory_desc_t *, const dnnl_memory_desc_t *,
                                const dnnl_memory_desc_t *, const dnnl_dims_t, const dnnl_dims_t,
                                const dnnl_dims_t);
typedef dnnl_status_t weights_init(dnnl_convolution_desc_t *, dnnl_alg_kind_t,
                                   const dnnl_memory_desc_t *, const dnnl_memory_desc_t *,
                                   const dnnl_memory_desc_t *, const dnnl_memory_desc_t *,
                                   const dnnl_dims_t, const dnnl_dims_t, const dnnl_dims_t);

/* Whether oneDNN may run primitives on AMX tiles on this CPU. A bf16 weights' gradient is
 * slower than fp32's on the same inputs before rounding on AMX tiles, and without them on more
 * than one thread: the conv preset's 32 -> 64 Conv2d and 64 -> 32 ConvTranspose2d at batch 128
 * on a Sapphire Rapids' 16 threads (oneDNN 2.6's avx512_core_amx_bf16 kernels) 0.81-0.83 ms
 * against fp32's 0.49-0.51 (doc/measured/16-cores-3/conv.txt); on a Zen 4's 2 threads
 * (AVX512_BF16's jit_bf16 kernel) 2.1 ms a step against 1.8, and in that machine's slow state
 * the bf16 preset's backward 19.7 ms against 12.2. On one thread without tiles it is faster,
 * 2.8 ms against 3.7 (Zen 4). */
static int tiles_here(void) {
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx;
}

/* What a call computes: bit 0 a ConvTranspose2d (else a Conv2d), bit 1 its products' inputs in
 * bf16 (--precision bf16: the inputs of each primitive reordered to bf16, its outputs and sums
 * fp32; the weights' gradient's inputs only on one thread without AMX, else fp32: tiles_here) */
enum { TRANSPOSED = 1, BF16 = 2 };

/* Which weights' gradient a plan makes: none, the one for the threads oneDNN runs on here, or
 * the one for one thread or for more (a workspace's scratch fits both: its thread count may
 * change between the passes) */
enum { WEIGHTS_NONE, WEIGHTS_HERE, WEIGHTS_ONE_THREAD, WEIGHTS_MORE_THREADS };

/* The primitives' descriptors for n samples of the layer: forward always (the backward ones'
 * hint), backward data and weights when asked. 0 when oneDNN made them all. */
static int plan_make(plan *p, const conv_shape *s, int n, int kind, int data, int weights) {
    memset(p, 0, sizeof *p);
    const int transposed = kind & TRANSPOSED;
    const dnnl_data_type_t in_t = kind & BF16 ? dnnl_bf16 : dnnl_f32;
    const dnnl_dims_t src = {n, s->in_c, s->in_h, s->in_w};
    const dnnl_dims_t dst = {n, s->out_c, s->out_h, s->out_w};
    /* Conv2d weights (out_c, in_c, k, k); ConvTranspose2d's (in_c, out_c, k, k), which
     * oneDNN's deconvolution names (out, in, k, k) stored as iohw */
    const dnnl_dims_t wei = {s->out_c, s->in_c, s->k, s->k}, bias = {s->out_c};
    const dnnl_dims_t strides = {s->stride, s->stride}, pad = {s->pad, s->pad};
    const dnnl_alg_kind_t alg = transposed ? dnnl_deconvolution_direct : dnnl_convolution_direct;
    /* the layouts left to the primitive: of its inputs (in_t) and of its outputs (fp32) */
    dnnl_memory_desc_t src_in, src_out, wei_in, wei_out, dst_in, dst_out;
    if (dnnl_engine_create(&p->engine, dnnl_cpu, 0) ||
        dnnl_stream_create(&p->stream, p->engine, dnnl_stream_default_flags) ||
        dnnl_memory_desc_init_by_tag(&p->src, 4, src, dnnl_f32, model_layout(s->in_blocked)) ||
        dnnl_memory_desc_init_by_tag(&p->dst, 4, dst, dnnl_f32, model_layout(s->out_blocked)) ||
        dnnl_memory_desc_init_by_tag(&p->wei, 4, wei, dnnl_f32,
                                     transposed ? dnnl_iohw : dnnl_oihw) ||
        dnnl_memory_desc_init_by_tag(&p->bias, 1, bias, dnnl_f32, dnnl_x) ||
        dnnl_memory_desc_init_by_tag(&src_in, 4, src, in_t, layout(s->in_c)) ||
        dnnl_memory_desc_init_by_tag(&src_out, 4, src, dnnl_f32, layout(s->in_c)) ||
        dnnl_memory_desc_init_by_tag(&dst_in, 4, dst, in_t, layout(s->out_c)) ||
        dnnl_memory_desc_init_by_tag(&dst_out, 4, dst, dnnl_f32, layout(s->out_c)) ||
        dnnl_memory_desc_init_by_tag(&wei_in, 4, wei, in_t, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wei_out, 4, wei, dnnl_f32, dnnl_format_tag_any))
        return 1;
    /* oneDNN describes both with one descriptor type, initialized by the same arguments */
    fwd_init *init_fwd =
        transposed ? dnnl_deconvolution_forward_desc_init : dnnl_convolution_forward_desc_init;
    data_init *init_data = transposed ? dnnl_deconvolution_backward_data_desc_init
                                      : dnnl_convolution_backward_data_desc_init;
    weights_init *init_weights = transposed ? dnnl_deconvolution_backward_weights_desc_init
                                            : dnnl_convolution_backward_weights_desc_init;
    dnnl_convolution_desc_t f, d;
    /* a deconvolution's bias is added apart (forward_chunk): oneDNN 2.6 adds it in a pass
     * that took half of the 64 -> 32 ConvTranspose2d's forward (build/conv_ops) */
    p->bias_apart = transposed, p->out_block = s->out_blocked;
    int bad = init_fwd(&f, dnnl_forward_training, alg, &src_in, &wei_in,
                       p->bias_apart ? NULL : &p->bias, &dst_out, strides, pad, pad) ||
              dnnl_primitive_desc_create(&p->fwd, &f, NULL, p->engine, NULL) ||
              (data && (init_data(&d, alg, &src_out, &wei_in, &dst_in, strides, pad, pad) ||
                        dnnl_primitive_desc_create(&p->bwd_data, &d, NULL, p->engine, p->fwd)));
    if (bad || !weights) return bad;
    /* inputs in the kind's type, but for bf16 fp32's on more threads or AMX tiles; the bias's
     * gradient is summed apart, in fp32 from the plain output gradient */
    const int more = weights == WEIGHTS_HERE ? threads() > 1 : weights == WEIGHTS_MORE_THREADS;
    const int fp32 = (kind & BF16) && (more || tiles_here());
    dnnl_convolution_desc_t w;
    return init_weights(&w, alg, fp32 ? &src_out : &src_in, &wei_out, NULL,
                        fp32 ? &dst_out : &dst_in, strides, pad, pad) ||
           dnnl_primitive_desc_create(&p->bwd_weights, &w, NULL, p->engine, p->fwd);
}

static const dnnl_memory_desc_t *md_of(const_dnnl_primitive_desc_t pd, dnnl_query_t what) {
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

/* Floats of a layout, rounded up to 64 bytes */
static size_t floats_of(const dnnl_memory_desc_t *md) {
    return (dnnl_memory_desc_get_size(md) + 63) / 64 * 16;
}

/* Floats of the scratch a copy of plain data in layout `want` takes: none where the layouts
 * agree (bring and result use the data itself) */
static size_t copy_floats(const dnnl_memory_desc_t *plain, const dnnl_memory_desc_t *want) {
    return dnnl_memory_desc_equal(plain, want) ? 0 : floats_of(want);
}

/* The scratch a pass needs. Forward: its operands' copies in the primitive's layouts.
 * Backward: for the weights' gradient, the output gradient's and the input's copies and the
 * weights' gradient (the bias's is summed from the plain output gradient); then for the data's
 * gradient, the output gradient's copy (the same one when both primitives take the same
 * layout, kept at the start), the weights' and the input gradient's in the room the first part
 * is done with. */
static size_t plan_floats(const plan *p) {
    size_t f = copy_floats(&p->src, md_of(p->fwd, dnnl_query_src_md)) +
               copy_floats(&p->wei, md_of(p->fwd, dnnl_query_weights_md)) +
               copy_floats(&p->dst, md_of(p->fwd, dnnl_query_dst_md));
    size_t bw = 0, bd = 0;
    if (p->bwd_weights)
        bw = copy_floats(&p->dst, md_of(p->bwd_weights, dnnl_query_diff_dst_md)) +
             copy_floats(&p->src, md_of(p->bwd_weights, dnnl_query_src_md)) +
             floats_of(md_of(p->bwd_weights, dnnl_query_diff_weights_md));
    if (p->bwd_data)
        bd = copy_floats(&p->dst, md_of(p->bwd_data, dnnl_query_diff_dst_md)) +
             copy_floats(&p->wei, md_of(p->bwd_data, dnnl_query_weights_md)) +
             copy_floats(&p->src, md_of(p->bwd_data, dnnl_query_diff_src_md));
    size_t most = f > bw ? f : bw;
    return most > bd ? most : bd;
}

/* Memories a call made, destroyed together */
typedef struct {
    const plan *p;
    float *scratch, *end; /* the next free room; past the room plan_floats counted */
    dnnl_memory_t m[16];
    int n, bad;
} pool;

/* A pool on the scratch of one chunk's pass */
static pool pool_on(const plan *p, float *scratch) {
    return (pool){.p = p, .scratch = scratch, .end = scratch + plan_floats(p)};
}

/* A memory in layout md on data (NULL: the next room of the scratch) */
static dnnl_memory_t memory(pool *k, const dnnl_memory_desc_t *md, const float *data) {
    dnnl_memory_t m = NULL;
    if (!data) data = k->scratch, k->scratch += floats_of(md);
    /* never past the room the workspace was given (an internal error: the pass then fails
     * as a refused primitive does, rather than writing over other buffers) */
    if (k->bad || k->n == 16 || k->scratch > k->end ||
        dnnl_memory_create(&m, md, k->p->engine, (void *)data)) {
        k->bad = 1;
        return NULL;
    }
    return k->m[k->n++] = m;
}

static void pool_free(pool *k) {
    for (int i = 0; i < k->n; i++) dnnl_memory_destroy(k->m[i]);
    k->n = 0;
}

/* to = from in to's layout (to += from when accumulating) */
static void reorder(pool *k, dnnl_memory_t from, dnnl_memory_t to, int accumulate) {
    if (k->bad) return;
    const dnnl_memory_desc_t *a, *b;
    dnnl_memory_get_memory_desc(from, &a), dnnl_memory_get_memory_desc(to, &b);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    k->bad = dnnl_primitive_attr_create(&attr) || dnnl_post_ops_create(&post) ||
             (accumulate && dnnl_post_ops_append_sum(post, 1.0f)) ||
             dnnl_primitive_attr_set_post_ops(attr, post) ||
             dnnl_reorder_primitive_desc_create(&pd, a, k->p->engine, b, k->p->engine, attr) ||
             dnnl_primitive_create(&prim, pd);
    if (!k->bad) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        k->bad = op_onednn_run(prim, k->p->stream, 2, args);
    }
    dnnl_primitive_destroy(prim), dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(post), dnnl_primitive_attr_destroy(attr);
}

/* The plain data in the layout `want`: itself when the layouts agree, else a reordered copy */
static dnnl_memory_t bring(pool *k, const dnnl_memory_desc_t *plain, const float *data,
                           const dnnl_memory_desc_t *want) {
    dnnl_memory_t m = memory(k, plain, data);
    if (k->bad || dnnl_memory_desc_equal(plain, want)) return m;
    dnnl_memory_t copy = memory(k, want, NULL);
    if (copy) reorder(k, m, copy, 0);
    return copy;
}

/* A memory for a result that belongs in plain data: the data itself when the layouts agree,
 * else room in the scratch, brought back by `settle` */
static dnnl_memory_t result(pool *k, const dnnl_memory_desc_t *plain, float *data,
                            const dnnl_memory_desc_t *want, dnnl_memory_t *plain_m) {
    *plain_m = memory(k, plain, data);
    return k->bad || dnnl_memory_desc_equal(plain, want) ? *plain_m : memory(k, want, NULL);
}

static void settle(pool *k, dnnl_memory_t m, dnnl_memory_t plain_m, int accumulate) {
    if (!k->bad && m != plain_m) reorder(k, m, plain_m, accumulate);
}

/* Runs pd's primitive on args */
static void run(pool *k, const_dnnl_primitive_desc_t pd, int n, const dnnl_exec_arg_t *args) {
    if (k->bad) return;
    dnnl_primitive_t prim = NULL;
    k->bad = dnnl_primitive_create(&prim, pd) || op_onednn_run(prim, k->p->stream, n, args);
    dnnl_primitive_destroy(prim);
}

/* The sum of hw vectors of B values (p, B apart) into sum, two partial sums per lane */
static inline void block_sums_of(float *sum, const float *p, size_t hw, int B) {
    float a[16] = {0}, b[16] = {0};
    size_t j = 0;
    for (; j + 1 < hw; j += 2)
        for (int l = 0; l < B; l++) a[l] += p[j * B + l], b[l] += p[j * B + B + l];
    for (; j < hw; j++)
        for (int l = 0; l < B; l++) a[l] += p[j * B + l];
    for (int l = 0; l < B; l++) sum[l] = a[l] + b[l];
}

/* The same with the block a constant where it is one of oneDNN's: the lanes then vectorize
 * (with B a variable they ran one float at a time); each lane adds in the same order */
static void block_sums(float *sum, const float *p, size_t hw, int B) {
    if (B == 16) block_sums_of(sum, p, hw, 16);
    else if (B == 8) block_sums_of(sum, p, hw, 8);
    else block_sums_of(sum, p, hw, B);
}

/* q[j * B + l] += add[l] for hw vectors of B values */
static inline void block_add_of(float *restrict q, const float *restrict add, size_t hw,
                                int B) {
    for (size_t j = 0; j < hw; j++)
        for (int l = 0; l < B; l++) q[j * B + l] += add[l];
}

static void block_add(float *q, const float *add, size_t hw, int B) {
    if (B == 16) block_add_of(q, add, hw, 16);
    else if (B == 8) block_add_of(q, add, hw, 8);
    else block_add_of(q, add, hw, B);
}

/* db[c] += the sum of channel c over n samples of v (hw values a channel), in the plan's
 * output layout. On blocks, a block's samples go in GROUPS fixed groups, each group's sample
 * sums added in turn, then the groups' in turn: the same bits on any thread count, and work
 * for as many threads as groups where the conv preset has two blocks. */
static void bias_grad(float *db, const float *v, const plan *p) {
    enum { GROUPS = 16 };
    const int n = (int)p->dst.dims[0], c = (int)p->dst.dims[1];
    const size_t hw = (size_t)p->dst.dims[2] * p->dst.dims[3];
    const int B = p->out_block;
    if (!B) {
        op_conv_bias_grad(db, v, n, c, hw);
        return;
    }
    const int blocks = c / B;
    for (int cb = 0; cb < blocks; cb++) {
        float part[GROUPS][16] = {{0}};
#pragma omp parallel for schedule(static) if ((size_t)n * B * hw >= OP_PARALLEL_MIN)
        for (int g = 0; g < GROUPS; g++)
            for (int i = n * g / GROUPS; i < n * (g + 1) / GROUPS; i++) {
                float sum[16];
                block_sums(sum, v + ((size_t)i * blocks + cb) * hw * B, hw, B);
                for (int l = 0; l < B; l++) part[g][l] += sum[l];
            }
        for (int g = 0; g < GROUPS; g++)
            for (int l = 0; l < B; l++) db[cb * B + l] += part[g][l];
    }
}

/* v[n, c, :] += b[c] in the plan's output layout */
static void bias_add(float *v, const float *b, const plan *p) {
    const int n = (int)p->dst.dims[0], c = (int)p->dst.dims[1];
    const size_t hw = (size_t)p->dst.dims[2] * p->dst.dims[3];
    const int B = p->out_block;
    if (!B) {
        op_conv_bias_add(v, b, n, c, hw);
        return;
    }
    const int blocks = c / B;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw >= OP_PARALLEL_MIN)
    for (int nb = 0; nb < n * blocks; nb++)
        block_add(v + (size_t)nb * hw * B, b + (size_t)(nb % blocks) * B, hw, B);
}

/* y = the layer's forward of one chunk; 0 when oneDNN ran it */
static int forward_chunk(const plan *p, float *y, const float *x, const float *w,
                         const float *b, float *scratch) {
    pool k = pool_on(p, scratch);
    dnnl_memory_t mx = bring(&k, &p->src, x, md_of(p->fwd, dnnl_query_src_md));
    dnnl_memory_t mw = bring(&k, &p->wei, w, md_of(p->fwd, dnnl_query_weights_md));
    dnnl_memory_t mb = p->bias_apart ? NULL : memory(&k, &p->bias, b), py;
    dnnl_memory_t my = result(&k, &p->dst, y, md_of(p->fwd, dnnl_query_dst_md), &py);
    if (!k.bad) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, mw},
                                  {DNNL_ARG_DST, my}, {DNNL_ARG_BIAS, mb}};
        run(&k, p->fwd, p->bias_apart ? 3 : 4, args);
    }
    settle(&k, my, py, 0);
    pool_free(&k);
    if (!k.bad && p->bias_apart) bias_add(y, b, p);
    return k.bad;
}

/* The gradients of one chunk: gw, gb += (plain, when gw), dx = (when dx); 0 when oneDNN ran
 * them */
static int backward_chunk(const plan *p, float *dx, float *gw, float *gb, const float *dy,
                          const float *x, const float *w, float *scratch) {
    pool k = pool_on(p, scratch);
    dnnl_memory_t mdy = NULL;
    if (gw) {
        const_dnnl_primitive_desc_t pd = p->bwd_weights;
        mdy = bring(&k, &p->dst, dy, md_of(pd, dnnl_query_diff_dst_md));
        float *after_dy = k.scratch;
        dnnl_memory_t mx = bring(&k, &p->src, x, md_of(pd, dnnl_query_src_md));
        dnnl_memory_t pw = memory(&k, &p->wei, gw);
        dnnl_memory_t mdw = memory(&k, md_of(pd, dnnl_query_diff_weights_md), NULL);
        if (!k.bad) {
            dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_DST, mdy},
                                      {DNNL_ARG_DIFF_WEIGHTS, mdw}};
            run(&k, pd, 3, args);
        }
        reorder(&k, mdw, pw, 1); /* written apart, added in the plain layout */
        if (!k.bad) bias_grad(gb, dy, p);
        k.scratch = after_dy;
    }
    if (dx && !k.bad) {
        const_dnnl_primitive_desc_t pd = p->bwd_data;
        const dnnl_memory_desc_t *want = md_of(pd, dnnl_query_diff_dst_md), *have = NULL;
        if (mdy) dnnl_memory_get_memory_desc(mdy, &have);
        if (!mdy || !dnnl_memory_desc_equal(have, want)) {
            k.scratch = scratch;
            mdy = bring(&k, &p->dst, dy, want);
        }
        dnnl_memory_t mw = bring(&k, &p->wei, w, md_of(pd, dnnl_query_weights_md)), pdx;
        dnnl_memory_t mdx = result(&k, &p->src, dx, md_of(pd, dnnl_query_diff_src_md), &pdx);
        if (!k.bad) {
            dnnl_exec_arg_t args[] = {{DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_WEIGHTS, mw},
                                      {DNNL_ARG_DIFF_SRC, mdx}};
            run(&k, pd, 3, args);
        }
        settle(&k, mdx, pdx, 0);
    }
    pool_free(&k);
    return k.bad;
}

static size_t weight_floats(const conv_shape *s) {
    return (size_t)s->in_c * s->out_c * s->k * s->k;
}

/* The two plans a batch needs: full chunks and the rest; 0 when both were made */
static int plans_make(plan pl[2], const conv_shape *s, int batch, int kind, int data,
                      int weights) {
    memset(pl, 0, 2 * sizeof *pl);
    if (batch < 1) return 1; /* (no pass asks for none; the fallback does nothing with it) */
    const int chunk = chunk_size(s), n = batch < chunk ? batch : chunk, rest = batch % n;
    return plan_make(&pl[0], s, n, kind, data, weights) ||
           (rest && plan_make(&pl[1], s, rest, kind, data, weights));
}

static void plans_free(plan pl[2]) { plan_free(&pl[0]), plan_free(&pl[1]); }

/* The plan of the chunk at sample n0: the full chunks', or the rest's */
static const plan *plan_at(const plan pl[2], const conv_shape *s, int batch, int n0) {
    const int chunk = chunk_size(s);
    return batch - n0 >= chunk || batch < chunk ? &pl[0] : &pl[1];
}

/* The scratch of a batch: the backward's plain weight and bias gradients, then a chunk's; or
 * the im2col passes' (the fallback's), when more */
static size_t cols_size(const conv_shape *s, int batch, int kind) {
    size_t need = blocked(s) ? 0 : op_conv_cols_size(s, batch, kind & TRANSPOSED);
    for (int weights = WEIGHTS_ONE_THREAD; weights <= WEIGHTS_MORE_THREADS; weights++) {
        plan pl[2];
        if (!plans_make(pl, s, batch, kind, 1, weights)) { /* (none for batch < 1) */
            const size_t prim = weight_floats(s) + (size_t)s->out_c + plan_floats(&pl[0]);
            if (prim > need) need = prim;
        }
        plans_free(pl);
    }
    return need;
}

/* The forward of a batch on the primitives; 0 when oneDNN ran it all */
static int forward(int kind, float *y, const float *x, const float *w, const float *b,
                   int batch, const conv_shape *s, float *cols) {
    plan pl[2];
    int bad = plans_make(pl, s, batch, kind, 0, WEIGHTS_NONE);
    const size_t in = (size_t)s->in_c * s->in_h * s->in_w;
    const size_t out = (size_t)s->out_c * s->out_h * s->out_w;
    for (int n0 = 0; !bad && n0 < batch; n0 += chunk_size(s))
        bad = forward_chunk(plan_at(pl, s, batch, n0), y + n0 * out, x + n0 * in, w, b, cols);
    plans_free(pl);
    return bad;
}

/* The backward of a batch; dw and db are added to only once every chunk ran */
static int backward(int kind, float *dx, float *dw, float *db, const float *dy,
                    const float *x, const float *w, int batch, const conv_shape *s, float *cols) {
    plan pl[2];
    int bad = plans_make(pl, s, batch, kind, dx != NULL, dw ? WEIGHTS_HERE : WEIGHTS_NONE);
    const size_t in = (size_t)s->in_c * s->in_h * s->in_w;
    const size_t out = (size_t)s->out_c * s->out_h * s->out_w;
    const size_t nw = weight_floats(s);
    float *gw = dw ? cols : NULL, *gb = cols + nw, *scratch = cols + nw + (size_t)s->out_c;
    if (dw) memset(cols, 0, sizeof(float) * (nw + (size_t)s->out_c));
    for (int n0 = 0; !bad && n0 < batch; n0 += chunk_size(s))
        bad = backward_chunk(plan_at(pl, s, batch, n0), dx ? dx + n0 * in : NULL, gw, gb,
                             dy + n0 * out, x + n0 * in, w, scratch);
    plans_free(pl);
    if (bad || !dw) return bad;
    for (size_t i = 0; i < nw; i++) dw[i] += gw[i];
    for (int c = 0; c < s->out_c; c++) db[c] += gb[c];
    return 0;
}

typedef void conv_forward_fn(float *y, const float *x, const float *w, const float *b,
                             int batch, const conv_shape *s, float *cols);
typedef void conv_backward_fn(float *dx, float *dw, float *db, const float *dy, const float *x,
                              const float *w, int batch, const conv_shape *s, float *cols);

/* n NaNs: the results of a pass on activations in channel blocks that oneDNN refused (the
 * im2col passes read NCHW only), so that training stops on non-finite gradients instead of
 * going on with wrong values */
static void spoil(float *v, size_t n) {
    for (size_t i = 0; v && i < n; i++) v[i] = NAN;
}

/* The forward on the primitives; else the im2col passes, which a batch thread's slice takes
 * (oneDNN's primitives run there too, but each thread then holds buffers of its own: the conv
 * preset with batch threads on 2 threads, 290 MiB against 277, over its budget). On blocks,
 * which a slice never has, the primitives run wherever they are called (the per-thread
 * workspaces of vae eval's importance sampling: 2.75 s against 3.4 for -k 100 on 1000 images,
 * 2 MB more) */
static void forward_or(conv_forward_fn *im2col, int kind, float *y, const float *x,
                       const float *w, const float *b, int batch, const conv_shape *s,
                       float *cols) {
    if (blocked(s)) {
        if (forward(kind, y, x, w, b, batch, s, cols))
            spoil(y, (size_t)batch * s->out_c * s->out_h * s->out_w);
    } else if (in_parallel() || forward(kind, y, x, w, b, batch, s, cols))
        im2col(y, x, w, b, batch, s, cols);
}

static void backward_or(conv_backward_fn *im2col, int kind, float *dx, float *dw, float *db,
                        const float *dy, const float *x, const float *w, int batch,
                        const conv_shape *s, float *cols) {
    if (blocked(s)) {
        if (backward(kind, dx, dw, db, dy, x, w, batch, s, cols)) {
            spoil(dx, (size_t)batch * s->in_c * s->in_h * s->in_w);
            spoil(dw, dw ? weight_floats(s) : 0), spoil(db, dw ? (size_t)s->out_c : 0);
        }
    } else if (in_parallel() || backward(kind, dx, dw, db, dy, x, w, batch, s, cols))
        im2col(dx, dw, db, dy, x, w, batch, s, cols);
}

/* A Conv2d of 32 channels each way, which the probes below ask oneDNN about */
static const conv_shape probe = {.in_c = 32, .in_h = 8, .in_w = 8, .out_c = 32, .out_h = 8,
                                 .out_w = 8, .k = 3, .stride = 1, .pad = 1, .workers = 1};

/* The channel block oneDNN's convolutions take their activations in on this CPU (what a
 * Conv2d of 32 channels asks for: 16 with AVX-512, 8 with AVX2), 0 where it is no block of 8
 * or 16 channels */
static int conv_block(int kind) {
    plan p;
    int block = 0;
    if (!plan_make(&p, &probe, 16, kind, 0, WEIGHTS_NONE)) {
        const dnnl_memory_desc_t *md = md_of(p.fwd, dnnl_query_src_md);
        const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
        if (md->format_kind == dnnl_blocked && b->inner_nblks == 1 && b->inner_idxs[0] == 1 &&
            (b->inner_blks[0] == 8 || b->inner_blks[0] == 16))
            block = (int)b->inner_blks[0];
    }
    plan_free(&p);
    return block;
}

/* Whether the bf16 primitives' weight gradients take bf16 inputs here (on one thread without
 * AMX tiles) */
int op_conv_bf16_weight_grads(void) {
    plan p;
    const int bad = plan_make(&p, &probe, 16, BF16, 0, WEIGHTS_HERE);
    dnnl_data_type_t t = dnnl_f32;
    if (!bad) t = md_of(p.bwd_weights, dnnl_query_src_md)->data_type;
    plan_free(&p);
    return !bad && t == dnnl_bf16;
}

/* The table's entries of a suffix: fp32 (_onednn) or bf16 (_bf16) primitives, each falling
 * back on the im2col passes with the same products */
#define PRIMITIVE_OPS(suffix, bf16)                                                                \
    int op_conv_block##suffix(void) { return conv_block(bf16); }                                   \
    size_t op_conv_cols_size##suffix(const conv_shape *s, int batch, int transposed) {            \
        return cols_size(s, batch, transposed | bf16);                                             \
    }                                                                                              \
    void op_conv2d_forward##suffix(float *y, const float *x, const float *w, const float *b,      \
                                   int batch, const conv_shape *s, float *cols) {                 \
        forward_or(op_conv2d_forward_im2col##suffix, bf16, y, x, w, b, batch, s, cols);           \
    }                                                                                              \
    void op_conv2d_backward##suffix(float *dx, float *dw, float *db, const float *dy,             \
                                    const float *x, const float *w, int batch,                    \
                                    const conv_shape *s, float *cols) {                           \
        backward_or(op_conv2d_backward_im2col##suffix, bf16, dx, dw, db, dy, x, w, batch, s,      \
                    cols);                                                                         \
    }                                                                                              \
    void op_convt2d_forward##suffix(float *y, const float *x, const float *w, const float *b,     \
                                    int batch, const conv_shape *s, float *cols) {                \
        forward_or(op_convt2d_forward_im2col##suffix, TRANSPOSED | bf16, y, x, w, b, batch, s,    \
                   cols);                                                                          \
    }                                                                                              \
    void op_convt2d_backward##suffix(float *dx, float *dw, float *db, const float *dy,            \
                                     const float *x, const float *w, int batch,                   \
                                     const conv_shape *s, float *cols) {                          \
        backward_or(op_convt2d_backward_im2col##suffix, TRANSPOSED | bf16, dx, dw, db, dy, x, w,  \
                    batch, s, cols);                                                               \
    }

PRIMITIVE_OPS(_onednn, 0)
PRIMITIVE_OPS(_bf16, BF16)
#endif

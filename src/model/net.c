/* net.c — forward and backward passes of the whole VAE over a preallocated workspace. */
#include "loss/loss.h"
#include "model/model_internal.h"
#include "ops/ops.h"

#include <math.h>
#include <string.h>

struct vae_workspace {
    const vae_model *model; /* the model whose shapes sized this workspace */
    int max_batch;
    int conv_workers;                 /* threads a convolution's pass may split its batch among */
    int conv_blocks; /* activations between two convolutions kept in channel blocks of this
                        many, the model's table's (0: NCHW; a whole with views, whose slices'
                        im2col passes read NCHW, has none) */
    int last_batch;                   /* batch of the last forward, 0 before any */
    int recon_grad_ready;             /* the last forward also left the likelihood's gradient
                                         in grad_a (and d_dim_logvar): a training pass's; a
                                         pass that clears last_batch makes it moot */
    float *outputs[VAE_MAX_LAYERS];   /* (B, out) of each layer, after its activation */
    float *eps, *z;                   /* (B, L) */
    float *dmu, *dlogvar, *dz;        /* (B, L) */
    float *grad_a, *grad_b;           /* (B, widest layer): ping-pong gradient buffers */
    double *recon, *kl;               /* (B) */
    /* An IWAE step's own buffers, declared here once; each shares the memory of a buffer the
     * step does not use while it needs them: */
    float *draws_x;   /* (B*K, D): each input repeated for its draws; grad_b's memory, free
                         until the decoder's backward */
    double *log_w;    /* (B*K): log p(z) - log q(z|x) (+ log p(x|z)); kl's (no analytic KL) */
    float *weight;    /* (B*K): normalized weights / n; dlogvar's (written after their use) */
    float *grads;     /* where backward adds the parameters' gradients: the model's (NULL) or a
                         worker's own buffer (data-parallel steps, train.c) */
    float *kl_scale;                  /* (L): the KL gradient's weight per latent unit */
    float *d_dim_logvar;              /* (D): a per-dimension variance's gradient, from forward */
    double *kl_mean;                  /* (L): batch-mean KL per unit, for free bits */
    float *arena;                     /* one allocation behind every float buffer above */
    /* a conditional or missing-value model's first-layer inputs: x|mask|y (B, D+D+C), z|y
     * (B, L+C), and the gradient of z|y */
    float *xy, *zy, *dzy;
    uint8_t *row_labels; /* (B): an IWAE pass's labels, each input's repeated for its draws */
    float *cols;         /* a convolution's im2col scratch, for a whole batch */
    size_t cols_floats;  /* its size, as the model's ops table asked when it was made */
    const vae_ops *cols_ops; /* that table */
    uint8_t *mask_rows;  /* (B, D): an IWAE pass's masks, each input's repeated */
    /* Batch threads (vae_workspace_view): a view runs a slice of a batch on rows of a whole
     * workspace's buffers, with scratch of its own (cols, kl_scale, kl_mean, d_dim_logvar).
     * Its backward computes the data's gradients only and keeps each layer's output gradient
     * in dout, so that the parameters' gradients come from passes over the whole batch
     * (vae_view_param_grads) instead of a gradient buffer per thread. */
    float *dout[VAE_MAX_LAYERS]; /* (B, out) per layer: a whole's (made with its first view)
                                    or a view's rows of them; NULL elsewhere */
    float *dout_arena;           /* a whole's: the memory behind dout */
    vae_workspace *whole;        /* a view's whole workspace; NULL: not a view */
    int first_row;               /* a view's first row in its whole */
    int view_rows;               /* the most rows a view takes (its scratch's size) */
    int mean_inputs;             /* a view's: the inputs its gradients are means over */
    /* A whole's dense weights in the form its table's products read best, which its views'
     * passes read (vae_workspace_share_weights): prepacked once a pass instead of on every
     * call of every thread (bf16's rounding), or at all (fp32's transposed copy); or which its
     * own passes read (vae_workspace_own_prepacked: bf16's, kept current by Adam) */
    void *prepacked;              /* where they are: cols (the views' only), or own_prepacked
                                     (num_params weights' room; dense weights only) */
    void *own_prepacked;
    size_t own_prepacked_size;    /* its bytes */
    const vae_ops *prepacked_ops; /* the table that prepacked them; NULL: not shared now */
    int prepacked_for_views;      /* shared with the views: the whole runs no pass of its own */
};

/* Rows of in (width w) into out, each followed, when mask_width > 0, by its mask (1 where no
 * mask is set) with the masked values zeroed, then, when classes > 0, by the one-hot code of
 * its label: the input of a conditional or missing-value model's first layer. */
static void widen_rows(float *out, const float *in, int rows, int w, const uint8_t *mask,
                       int mask_width, int classes, const uint8_t *labels) {
    const int width = w + mask_width + classes;
    for (int r = 0; r < rows; r++) {
        float *o = out + (size_t)r * width;
        const float *row = in + (size_t)r * w;
        const uint8_t *mk = mask ? mask + (size_t)r * w : NULL;
        if (mask_width) {
            for (int j = 0; j < w; j++) {
                o[j] = mk && !mk[j] ? 0.0f : row[j];
                o[w + j] = mk ? (float)mk[j] : 1.0f;
            }
        } else {
            memcpy(o, row, sizeof(float) * (size_t)w);
        }
        if (classes) {
            memset(o + w + mask_width, 0, sizeof(float) * (size_t)classes);
            o[w + mask_width + labels[r]] = 1.0f;
        }
    }
}

/* Floats per row of a workspace's arena; *widest gets the widest buffer's width. */
static size_t arena_row_floats(const vae_model *model, size_t *widest) {
    size_t per_sample = 0;
    *widest = (size_t)model->cfg.input_dim;
    for (int l = 0; l < model->n_layers; l++) {
        per_sample += (size_t)model->layers[l].out;
        if ((size_t)model->layers[l].out > *widest) *widest = (size_t)model->layers[l].out;
    }
    /* vae_iwae_step sums each input's draws into grad_b as two (B, L) blocks: with one draw
     * per input and layers narrower than 2L, grad_b must still hold them */
    if (*widest < 2 * (size_t)model->cfg.latent_dim) *widest = 2 * (size_t)model->cfg.latent_dim;
    return per_sample + 5 * (size_t)model->cfg.latent_dim + 2 * *widest;
}

conv_shape vae_layer_conv(const vae_layer *layer, int workers) {
    conv_shape shape = layer->conv;
    shape.workers = workers;
    return shape;
}

/* The block the activations between layers l and l + 1 may be kept in (0: NCHW): two
 * convolutions of the same direction, channels a multiple of the block, a table that takes
 * blocks */
static int blocks_between(const vae_model *m, const vae_ops *ops, int l, int block) {
    if (!block || !ops->conv_block || l < 0 || l + 1 >= m->n_layers) return 0;
    const vae_layer *a = &m->layers[l], *b = &m->layers[l + 1];
    return a->kind != LAYER_DENSE && a->kind == b->kind && a->conv.out_c % block == 0 ? block
                                                                                      : 0;
}

conv_shape vae_layer_conv_at(const vae_model *m, const vae_ops *ops, int l, int workers,
                             int block) {
    conv_shape shape = vae_layer_conv(&m->layers[l], workers);
    shape.in_blocked = blocks_between(m, ops, l - 1, block);
    shape.out_blocked = blocks_between(m, ops, l, block);
    return shape;
}

size_t vae_model_cols_floats(const vae_model *model, int batch, int workers, int block) {
    return vae_model_cols_floats_for(model, model->ops, batch, workers, block);
}

size_t vae_model_cols_floats_for(const vae_model *model, const vae_ops *ops, int batch,
                                 int workers, int block) {
    size_t cols = 0;
    for (int l = 0; l < model->n_layers; l++) {
        const vae_layer *layer = &model->layers[l];
        const conv_shape shape = vae_layer_conv_at(model, ops, l, workers, block);
        size_t need = layer->kind == LAYER_DENSE
                          ? 0
                          : ops->conv_cols_size(&shape, batch, layer->kind == LAYER_CONVT);
        if (need > cols) cols = need;
    }
    return cols;
}

size_t vae_workspace_row_bytes(const vae_model *model) {
    size_t widest, classes = (size_t)model->cfg.n_classes, dim = (size_t)model->cfg.input_dim;
    size_t floats = arena_row_floats(model, &widest) + 2 * (model->cfg.latent_dim + classes);
    floats += dim * (model->cfg.missing ? 2 : 1) + classes; /* xy */
    return floats * sizeof(float) + 2 * sizeof(double) + (model->cfg.missing ? dim : 0) + 1;
}

vae_status vae_workspace_create(vae_workspace **out, const vae_model *model, int max_batch,
                                vae_error *err) {
    return vae_workspace_create_for(out, model, max_batch, vae_get_num_threads(), err);
}

vae_status vae_workspace_create_for(vae_workspace **out, const vae_model *model, int max_batch,
                                    int conv_workers, vae_error *err) {
    *out = NULL;
    VAE_RETURN_IF(max_batch < 1, err, VAE_ERR_INVALID_ARGUMENT, "batch size %d must be >= 1",
                  max_batch);
    vae_workspace *ws = calloc(1, sizeof *ws);
    VAE_RETURN_IF(!ws, err, VAE_ERR_NO_MEMORY, "out of memory for the workspace");
    ws->model = model;
    ws->max_batch = max_batch;
    ws->conv_workers = conv_workers > 1 ? conv_workers : 1;
    /* (asked of the table only for models with convolutions: it plans a primitive) */
    ws->conv_blocks = model->cfg.n_conv && model->ops->conv_block ? model->ops->conv_block() : 0;
    size_t widest, per_sample = arena_row_floats(model, &widest), total;
    int overflow = __builtin_mul_overflow(per_sample, (size_t)max_batch, &total);
    ws->arena = overflow ? NULL : vae_calloc_array(total, sizeof(float));
    ws->recon = vae_calloc_array((size_t)max_batch, sizeof(double));
    ws->kl = vae_calloc_array((size_t)max_batch, sizeof(double));
    ws->kl_scale = vae_calloc_array((size_t)model->cfg.latent_dim, sizeof(float));
    ws->kl_mean = vae_calloc_array((size_t)model->cfg.latent_dim, sizeof(double));
    ws->d_dim_logvar = vae_calloc_array((size_t)model->cfg.input_dim, sizeof(float));
    const size_t classes = (size_t)model->cfg.n_classes;
    const size_t enc_in = (size_t)model->cfg.input_dim * (model->cfg.missing ? 2 : 1) + classes;
    if (model->cfg.missing)
        ws->mask_rows = vae_calloc_array((size_t)max_batch * model->cfg.input_dim, 1);
    if (classes || model->cfg.missing)
        ws->xy = vae_calloc_array((size_t)max_batch * enc_in, sizeof(float));
    if (classes) {
        ws->zy = vae_calloc_array((size_t)max_batch * (model->cfg.latent_dim + classes), sizeof(float));
        ws->dzy = vae_calloc_array((size_t)max_batch * (model->cfg.latent_dim + classes), sizeof(float));
        ws->row_labels = vae_calloc_array((size_t)max_batch, 1);
    }
    const size_t cols = vae_model_cols_floats(model, max_batch, ws->conv_workers,
                                              ws->conv_blocks);
    if (cols) ws->cols = vae_calloc_array(cols, sizeof(float));
    ws->cols_floats = cols, ws->cols_ops = model->ops;
    if (!ws->arena || !ws->recon || !ws->kl || !ws->kl_scale || !ws->kl_mean || !ws->d_dim_logvar ||
        (cols && !ws->cols) ||
        (classes && (!ws->xy || !ws->zy || !ws->dzy || !ws->row_labels)) ||
        (model->cfg.missing && (!ws->xy || !ws->mask_rows))) {
        vae_workspace_free(ws);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for a workspace of batch %d",
                        max_batch);
    }
    float *p = ws->arena;
    size_t b = (size_t)max_batch, latent = (size_t)model->cfg.latent_dim;
    for (int l = 0; l < model->n_layers; l++) {
        ws->outputs[l] = p;
        p += b * (size_t)model->layers[l].out;
    }
    ws->eps = p, p += b * latent;
    ws->z = p, p += b * latent;
    ws->dmu = p, p += b * latent;
    ws->dlogvar = p, p += b * latent;
    ws->dz = p, p += b * latent;
    ws->grad_a = p, p += b * widest;
    ws->grad_b = p;
    ws->draws_x = ws->grad_b, ws->log_w = ws->kl, ws->weight = ws->dlogvar;
    *out = ws;
    return VAE_OK;
}

void vae_workspace_free(vae_workspace *ws) {
    if (!ws) return;
    free(ws->kl_scale), free(ws->kl_mean), free(ws->d_dim_logvar), free(ws->cols);
    if (ws->whole) { /* a view: the rest is its whole's */
        free(ws);
        return;
    }
    free(ws->arena);
    free(ws->recon);
    free(ws->kl);
    free(ws->xy), free(ws->zy), free(ws->dzy), free(ws->row_labels);
    free(ws->mask_rows);
    free(ws->dout_arena);
    free(ws->own_prepacked);
    free(ws);
}

/* The buffer backward adds gradients to. */
#define G(m, ws) ((ws)->grads ? (ws)->grads : (m)->grads)

void vae_workspace_set_grads(vae_workspace *ws, float *grads) { ws->grads = grads; }

/* The inputs a pass's gradients are means over: its own n, or a view's whole batch */
static int mean_of(const vae_workspace *ws, int n) { return ws->whole ? ws->mean_inputs : n; }

/* Where a backward that starts at layer l finds the gradient of l's output: grad_a, or a
 * view's kept dout[l] */
static float *entry_grad(vae_workspace *ws, int l) { return ws->whole ? ws->dout[l] : ws->grad_a; }

/* Where backward adds the gradient of the parameters at offset: G, or NULL on a view, which
 * leaves them to vae_view_param_grads */
static float *param_grad(const vae_model *m, vae_workspace *ws, size_t offset) {
    return ws->whole ? NULL : G(m, ws) + offset;
}

/* g += a pass's gradient of the per-value log-variances, where the model has them */
static void add_dim_logvar_grad(const vae_model *m, float *g, const float *d_dim_logvar) {
    if (!m->has_dim_logvar) return;
    for (int d = 0; d < m->cfg.input_dim; d++) g[m->dim_logvar + d] += d_dim_logvar[d];
}

/* A whole workspace's kept output gradients (not the heads', whose are dmu and dlogvar), made
 * with its first view. */
static vae_status whole_dout(vae_workspace *whole, vae_error *err) {
    if (whole->dout_arena) return VAE_OK;
    const vae_model *m = whole->model;
    size_t per_row = 0, total;
    for (int l = 0; l < m->n_layers; l++)
        if (l != m->mu_layer && l != m->logvar_layer) per_row += (size_t)m->layers[l].out;
    int overflow = __builtin_mul_overflow(per_row, (size_t)whole->max_batch, &total);
    whole->dout_arena = overflow ? NULL : vae_calloc_array(total, sizeof(float));
    VAE_RETURN_IF(!whole->dout_arena, err, VAE_ERR_NO_MEMORY,
                  "out of memory for the layers' gradients of a batch of %d", whole->max_batch);
    float *p = whole->dout_arena;
    for (int l = 0; l < m->n_layers; l++) {
        if (l == m->mu_layer || l == m->logvar_layer) continue;
        whole->dout[l] = p;
        p += (size_t)whole->max_batch * (size_t)m->layers[l].out;
    }
    return VAE_OK;
}

int vae_workspace_conv_blocks(const vae_workspace *ws) {
    const vae_model *m = ws->model;
    for (int l = 0; l < m->n_layers; l++) {
        const conv_shape s = vae_layer_conv_at(m, m->ops, l, ws->conv_workers, ws->conv_blocks);
        if (s.in_blocked || s.out_blocked) return ws->conv_blocks;
    }
    return 0;
}

/* A whole's passes keep NCHW activations once it has views (their slices run the im2col
 * passes), with the scratch that takes */
static vae_status whole_plain(vae_workspace *whole, vae_error *err) {
    if (!whole->conv_blocks) return VAE_OK;
    const size_t need = vae_model_cols_floats(whole->model, whole->max_batch,
                                              whole->conv_workers, 0);
    if (need > whole->cols_floats) {
        float *cols = vae_calloc_array(need, sizeof(float));
        VAE_RETURN_IF(!cols, err, VAE_ERR_NO_MEMORY,
                      "out of memory for the convolutions' scratch of a batch of %d",
                      whole->max_batch);
        free(whole->cols);
        whole->cols = cols, whole->cols_floats = need;
    }
    whole->conv_blocks = 0;
    whole->last_batch = 0, whole->recon_grad_ready = 0; /* its activations' layout changed */
    return VAE_OK;
}

vae_status vae_workspace_view(vae_workspace **out, vae_workspace *whole, int max_rows,
                              vae_error *err) {
    *out = NULL;
    VAE_RETURN_IF(whole->whole || max_rows < 1 || max_rows > whole->max_batch, err,
                  VAE_ERR_INVALID_ARGUMENT, "a view of %d rows of a workspace of %d: not one",
                  max_rows, whole->max_batch);
    VAE_TRY(whole_dout(whole, err));
    VAE_TRY(whole_plain(whole, err));
    const vae_model *m = whole->model;
    vae_workspace *v = calloc(1, sizeof *v);
    VAE_RETURN_IF(!v, err, VAE_ERR_NO_MEMORY, "out of memory for a workspace view");
    v->model = m, v->whole = whole, v->conv_workers = 1, v->view_rows = max_rows;
    v->kl_scale = vae_calloc_array((size_t)m->cfg.latent_dim, sizeof(float));
    v->kl_mean = vae_calloc_array((size_t)m->cfg.latent_dim, sizeof(double));
    v->d_dim_logvar = vae_calloc_array((size_t)m->cfg.input_dim, sizeof(float));
    const size_t cols = vae_model_cols_floats(m, max_rows, 1, 0);
    if (cols) v->cols = vae_calloc_array(cols, sizeof(float));
    v->cols_floats = cols, v->cols_ops = m->ops;
    if (!v->kl_scale || !v->kl_mean || !v->d_dim_logvar || (cols && !v->cols)) {
        vae_workspace_free(v);
        return vae_fail(err, VAE_ERR_NO_MEMORY, "out of memory for a workspace view");
    }
    *out = v;
    return vae_workspace_view_at(v, 0, max_rows, max_rows, err);
}

vae_status vae_workspace_view_at(vae_workspace *v, int first, int rows, int mean_inputs,
                                 vae_error *err) {
    const vae_workspace *w = v->whole;
    VAE_RETURN_IF(!w || first < 0 || rows < 0 || rows > v->view_rows ||
                      first > w->max_batch - rows || mean_inputs < 1,
                  err, VAE_ERR_INVALID_ARGUMENT,
                  "rows %d..%d of a workspace of %d, for a view of at most %d: out of range",
                  first + 1, first + rows, w ? w->max_batch : 0, v->view_rows);
    const vae_model *m = v->model;
    const size_t r = (size_t)first, latent = (size_t)m->cfg.latent_dim;
    const size_t classes = (size_t)m->cfg.n_classes, dim = (size_t)m->cfg.input_dim;
    const size_t enc_in = dim * (m->cfg.missing ? 2 : 1) + classes;
    size_t widest;
    arena_row_floats(m, &widest);
    for (int l = 0; l < m->n_layers; l++) {
        v->outputs[l] = w->outputs[l] + r * (size_t)m->layers[l].out;
        v->dout[l] = w->dout[l] ? w->dout[l] + r * (size_t)m->layers[l].out : NULL;
    }
    v->eps = w->eps + r * latent, v->z = w->z + r * latent, v->dz = w->dz + r * latent;
    v->dmu = w->dmu + r * latent, v->dlogvar = w->dlogvar + r * latent;
    v->grad_a = w->grad_a + r * widest, v->grad_b = w->grad_b + r * widest;
    v->recon = w->recon + r, v->kl = w->kl + r;
    v->draws_x = v->grad_b, v->log_w = v->kl, v->weight = v->dlogvar;
    v->xy = w->xy ? w->xy + r * enc_in : NULL;
    v->zy = w->zy ? w->zy + r * (latent + classes) : NULL;
    v->dzy = w->dzy ? w->dzy + r * (latent + classes) : NULL;
    v->row_labels = w->row_labels ? w->row_labels + r : NULL;
    v->mask_rows = w->mask_rows ? w->mask_rows + r * dim : NULL;
    v->max_batch = rows, v->first_row = first, v->mean_inputs = mean_inputs;
    v->last_batch = 0, v->recon_grad_ready = 0;
    memset(v->d_dim_logvar, 0, dim * sizeof *v->d_dim_logvar); /* a view that runs no rows */
    return VAE_OK;
}

/* A pass of `rows` rows (n for most, n*k for IWAE) on ws: the right workspace, a size it holds,
 * a label in range for every row of a conditional model. */
static vae_status check_pass(const vae_model *m, const vae_workspace *ws, int n, int rows,
                             const uint8_t *labels, const char *what, vae_error *err) {
    VAE_RETURN_IF(ws->model != m, err, VAE_ERR_INVALID_ARGUMENT,
                  "%s: the workspace belongs to another model", what);
    VAE_RETURN_IF(n < 1 || rows < 1 || rows > ws->max_batch, err, VAE_ERR_INVALID_ARGUMENT,
                  "%s: %d rows, the workspace holds 1..%d", what, rows, ws->max_batch);
    VAE_RETURN_IF(ws->prepacked_ops && ws->prepacked_for_views, err, VAE_ERR_INVALID_ARGUMENT,
                  "%s: the workspace shares its weights with its views (its scratch may hold "
                  "them)", what);
    /* oneDNN's convolutions ask for more scratch than the im2col passes; sizes are asked
     * only of another table (the oneDNN ones plan primitives to answer: not on every pass) */
    VAE_RETURN_IF(ws->cols_ops != m->ops &&
                      vae_model_cols_floats(m, ws->whole ? ws->view_rows : ws->max_batch,
                                            ws->conv_workers, ws->conv_blocks) >
                          ws->cols_floats,
                  err, VAE_ERR_INVALID_ARGUMENT,
                  "%s: the workspace was made before the model's backend changed; make a new one",
                  what);
    if (!m->cfg.n_classes) return VAE_OK;
    VAE_RETURN_IF(!labels, err, VAE_ERR_INVALID_ARGUMENT,
                  "%s: a conditional model needs the label of every row", what);
    for (int r = 0; r < n; r++)
        VAE_RETURN_IF(labels[r] >= m->cfg.n_classes, err, VAE_ERR_INVALID_ARGUMENT,
                      "%s: row %d has label %d, the model knows classes 0..%d", what, r + 1,
                      labels[r], m->cfg.n_classes - 1);
    return VAE_OK;
}

/* ws's own memory for m's weights in its table's prepacked form (num_params weights' room), or
 * NULL without it */
static void *own_prepacked(const vae_model *m, vae_workspace *ws) {
    const size_t size = m->num_params * m->ops->weight_bytes;
    if (ws->own_prepacked_size < size) {
        free(ws->own_prepacked);
        ws->own_prepacked = malloc(size);
        ws->own_prepacked_size = ws->own_prepacked ? size : 0;
    }
    return ws->own_prepacked;
}

/* m's dense weights prepacked for its table into dst (at each weight's index) */
static void prepack_dense(const vae_model *m, void *dst) {
    for (int l = 0; l < m->n_layers; l++) {
        const vae_layer *layer = &m->layers[l];
        if (layer->kind == LAYER_DENSE)
            m->ops->prepack_weights((char *)dst + layer->weight * m->ops->weight_bytes,
                                    m->params + layer->weight, layer->out, layer->in);
    }
}

void vae_workspace_share_weights(const vae_model *m, vae_workspace *whole, int on,
                                 int optional) {
    whole->prepacked_ops = NULL;
    const vae_ops *ops = m->ops;
    if (whole->whole || !on || !ops->prepack_weights || (ops->prepack_optional && !optional))
        return;
    whole->prepacked = whole->cols; /* idle while the views run, each on scratch of its own */
    if (whole->cols_floats * sizeof(float) < m->num_params * ops->weight_bytes)
        whole->prepacked = own_prepacked(m, whole);
    if (!whole->prepacked) return; /* the views' products on the weights as they are */
    prepack_dense(m, whole->prepacked);
    whole->prepacked_ops = ops;
    whole->prepacked_for_views = 1;
}

void *vae_workspace_own_prepacked(const vae_model *m, vae_workspace *ws, int on) {
    ws->prepacked_ops = NULL;
    const vae_ops *ops = m->ops;
    if (ws->whole || !on || !ops->prepack_weights || !ops->adam_step_prepack ||
        !(ws->prepacked = own_prepacked(m, ws)))
        return NULL;
    prepack_dense(m, ws->prepacked);
    ws->prepacked_ops = ops;
    ws->prepacked_for_views = 0;
    return ws->prepacked;
}

void vae_workspace_adam_step(vae_model *m, const vae_workspace *ws, vae_adam *adam) {
    if (ws->prepacked_ops == m->ops && !ws->prepacked_for_views)
        m->ops->adam_step_prepack(adam, m->params, m->grads, ws->prepacked);
    else
        m->ops->adam_step(adam, m->params, m->grads);
}

/* A dense layer's weights as ws (or a view's whole) holds them prepacked for m's table, or
 * NULL */
static const void *prepacked_weights(const vae_model *m, const vae_workspace *ws,
                                     const vae_layer *layer) {
    const vae_workspace *holder = ws->whole ? ws->whole : ws;
    if (holder->prepacked_ops != m->ops) return NULL;
    return (const char *)holder->prepacked + layer->weight * m->ops->weight_bytes;
}

/* A dense layer's forward (act NULL: no activation), on ws's prepacked weights where it has
 * them */
static void dense_forward(const vae_model *m, const vae_workspace *ws, const vae_layer *layer,
                          float *y, const float *x, int batch, const vae_activation *act) {
    const float *w = m->params + layer->weight, *b = m->params + layer->bias;
    const void *packed = prepacked_weights(m, ws, layer);
    if (packed)
        m->ops->linear_forward_prepacked(y, x, w, packed, b, batch, layer->in, layer->out, act);
    else
        m->ops->linear_forward(y, x, w, b, batch, layer->in, layer->out, act);
}

/* A dense layer's backward (ops_table.h's linear_backward), on ws's prepacked weights where it
 * has them and its table reads them there */
static void dense_backward(const vae_model *m, const vae_workspace *ws, const vae_layer *layer,
                           float *dx, float *dw, float *db, const float *dy, const float *x,
                           int batch, int accumulate_dx) {
    const float *w = m->params + layer->weight;
    const void *packed = prepacked_weights(m, ws, layer);
    if (packed && m->ops->linear_backward_prepacked)
        m->ops->linear_backward_prepacked(dx, dw, db, dy, x, w, packed, batch, layer->in,
                                          layer->out, accumulate_dx, 1);
    else
        m->ops->linear_backward(dx, dw, db, dy, x, w, batch, layer->in, layer->out,
                                accumulate_dx, 1);
}

/* One layer forward: linear, then the activation unless the layer is a head or the output. */
static void layer_forward(const vae_model *m, vae_workspace *ws, int l, const float *in, int batch,
                          int activate) {
    const vae_layer *layer = &m->layers[l];
    if (layer->kind == LAYER_DENSE) {
        dense_forward(m, ws, layer, ws->outputs[l], in, batch,
                      activate ? &m->cfg.activation : NULL);
        return;
    }
    const conv_shape shape = vae_layer_conv_at(m, m->ops, l, ws->conv_workers, ws->conv_blocks);
    (layer->kind == LAYER_CONV ? m->ops->conv2d_forward : m->ops->convt2d_forward)(
        ws->outputs[l], in, m->params + layer->weight, m->params + layer->bias, batch, &shape,
        ws->cols);
    if (activate) m->ops->activation_forward(ws->outputs[l], (size_t)batch * layer->out, m->cfg.activation);
}

/* x (B,D) with its labels and masks -> outputs[mu_layer], outputs[logvar_layer] (B,L) */
static void encoder_forward(const vae_model *m, vae_workspace *ws, const float *x,
                            const uint8_t *labels, const uint8_t *mask, int batch) {
    const float *in = x;
    if (m->cfg.missing || m->cfg.n_classes) {
        widen_rows(ws->xy, x, batch, m->cfg.input_dim, mask,
                   m->cfg.missing ? m->cfg.input_dim : 0, m->cfg.n_classes, labels);
        in = ws->xy;
    }
    for (int l = 0; l < m->mu_layer; l++) {
        layer_forward(m, ws, l, in, batch, 1);
        in = ws->outputs[l];
    }
    layer_forward(m, ws, m->mu_layer, in, batch, 0);
    layer_forward(m, ws, m->logvar_layer, in, batch, 0);
}

/* z (B,L) with its labels -> outputs[output_layer]: the likelihood's parameters (B, D or 2D) */
static void decoder_forward(const vae_model *m, vae_workspace *ws, const float *z,
                            const uint8_t *labels, int batch) {
    const float *in = z;
    if (m->cfg.n_classes) {
        widen_rows(ws->zy, z, batch, m->cfg.latent_dim, NULL, 0, m->cfg.n_classes, labels);
        in = ws->zy;
    }
    for (int l = m->first_decoder_layer; l < m->output_layer; l++) {
        layer_forward(m, ws, l, in, batch, 1);
        in = ws->outputs[l];
    }
    layer_forward(m, ws, m->output_layer, in, batch, 0);
}

/* The forward pass; with_grad: the likelihood's gradient too, from the same pass over the
 * outputs (one exp per value instead of two), for the backward that follows. */
static vae_status forward(const vae_model *m, vae_workspace *ws, const vae_batch *batch,
                          vae_loss *loss, int with_grad, vae_error *err) {
    const int n = batch->n;
    VAE_TRY(check_pass(m, ws, n, n, batch->labels, "forward", err));
    size_t nz = (size_t)n * m->cfg.latent_dim;
    encoder_forward(m, ws, batch->x, batch->labels, batch->mask, n);
    const float *mu = ws->outputs[m->mu_layer], *logvar = ws->outputs[m->logvar_layer];
    memcpy(ws->eps, batch->eps, nz * sizeof *ws->eps);
    m->ops->reparam_forward(ws->z, mu, logvar, ws->eps, nz);
    decoder_forward(m, ws, ws->z, batch->labels, n);
    m->ops->recon(&m->cfg, ws->recon, with_grad ? entry_grad(ws, m->output_layer) : NULL,
                  ws->outputs[m->output_layer], batch->x, (size_t)m->cfg.input_dim, n,
                  m->params + m->dim_logvar, with_grad ? ws->d_dim_logvar : NULL,
                  1.0f / (float)mean_of(ws, n), NULL, batch->mask);
    m->ops->kl_forward(ws->kl, mu, logvar, n, m->cfg.latent_dim);
    ws->last_batch = n;
    ws->recon_grad_ready = with_grad;
    if (loss) {
        for (int b = 0; b < n; b++) loss->recon += ws->recon[b], loss->kl += ws->kl[b];
        loss->count += (size_t)n;
    }
    return VAE_OK;
}

vae_status vae_forward(const vae_model *m, vae_workspace *ws, const vae_batch *batch,
                       vae_loss *loss, vae_error *err) {
    return forward(m, ws, batch, loss, 0, err);
}

vae_status vae_forward_for_backward(const vae_model *m, vae_workspace *ws,
                                    const vae_batch *batch, vae_loss *loss, vae_error *err) {
    return forward(m, ws, batch, loss, 1, err);
}

/* Backward through layers hi..lo (descending). On entry grad_a (a view: dout[hi]) holds
 * dL/d(output of layer hi) (before the output layer's absent activation when hi is the output
 * layer). The gradient with respect to the input of layer lo goes to dinput (NULL: not needed),
 * accumulated if asked. Parameter gradients are added (the optimizer clears them as it consumes
 * them, so no GEMM has to zero its output first); a view leaves them to vae_view_param_grads
 * and keeps each layer's output gradient in dout instead of two alternating buffers. */
static void layers_backward(vae_model *m, vae_workspace *ws, int hi, int lo, const float *input,
                            float *dinput, int accumulate, int batch) {
    const int view = ws->whole != NULL;
    float *grad = entry_grad(ws, hi), *spare = ws->grad_b;
    for (int l = hi; l >= lo; l--) {
        const vae_layer *layer = &m->layers[l];
        if (l != m->output_layer)
            m->ops->activation_backward(grad, ws->outputs[l], (size_t)batch * layer->out,
                                   m->cfg.activation);
        const float *in = l == lo ? input : ws->outputs[l - 1];
        float *dx = l == lo ? dinput : view ? ws->dout[l - 1] : spare;
        float *dw = param_grad(m, ws, layer->weight), *db = param_grad(m, ws, layer->bias);
        if (!dx && !dw) break; /* a view's first layer: its gradient is kept, nothing to pass on */
        if (layer->kind == LAYER_DENSE)
            dense_backward(m, ws, layer, dx, dw, db, grad, in, batch, l == lo ? accumulate : 0);
        else { /* never at a point where gradients are accumulated: those are dense heads */
            const conv_shape shape =
                vae_layer_conv_at(m, m->ops, l, ws->conv_workers, ws->conv_blocks);
            (layer->kind == LAYER_CONV ? m->ops->conv2d_backward : m->ops->convt2d_backward)(
                dx, dw, db, grad, in, m->params + layer->weight, batch, &shape, ws->cols);
        }
        spare = grad;
        grad = dx;
    }
}

/* From dmu and dlogvar (B,L) through the two heads, which share their input h, and the encoder's
 * hidden layers (the data need no gradient). */
static void encoder_backward(vae_model *m, vae_workspace *ws, const float *x, int batch) {
    const int last_hidden = m->mu_layer - 1;
    const float *h = ws->outputs[last_hidden];
    const vae_layer *head_mu = &m->layers[m->mu_layer], *head_lv = &m->layers[m->logvar_layer];
    float *dh = entry_grad(ws, last_hidden); /* a view keeps its heads' dmu and dlogvar */
    dense_backward(m, ws, head_mu, dh, param_grad(m, ws, head_mu->weight),
                   param_grad(m, ws, head_mu->bias), ws->dmu, h, batch, 0);
    dense_backward(m, ws, head_lv, dh, param_grad(m, ws, head_lv->weight),
                   param_grad(m, ws, head_lv->bias), ws->dlogvar, h, batch, 1);
    layers_backward(m, ws, last_hidden, 0, m->cfg.n_classes || m->cfg.missing ? ws->xy : x, NULL,
                    0, batch);
}

/* The decoder's layers backward to dz (rows, L), through the label's columns when conditional. */
static void decoder_backward(vae_model *m, vae_workspace *ws, int rows) {
    const int latent = m->cfg.latent_dim, classes = m->cfg.n_classes;
    if (!classes) {
        layers_backward(m, ws, m->output_layer, m->first_decoder_layer, ws->z, ws->dz, 0, rows);
        return;
    }
    layers_backward(m, ws, m->output_layer, m->first_decoder_layer, ws->zy, ws->dzy, 0, rows);
    for (int r = 0; r < rows; r++)
        memcpy(ws->dz + (size_t)r * latent, ws->dzy + (size_t)r * (latent + classes),
               sizeof(float) * (size_t)latent);
}

/* The likelihood's backward: dL/d(decoder outputs) of the batch mean into grad_a, and the
 * gradient of a per-value variance into its parameters. */
static void recon_backward(vae_model *m, vae_workspace *ws, const vae_batch *batch) {
    const int n = batch->n;
    if (!ws->recon_grad_ready) /* else the forward computed it */
        m->ops->recon(&m->cfg, NULL, entry_grad(ws, m->output_layer),
                      ws->outputs[m->output_layer], batch->x, (size_t)m->cfg.input_dim, n,
                      m->params + m->dim_logvar, ws->d_dim_logvar, 1.0f / (float)mean_of(ws, n),
                      NULL, batch->mask);
    ws->recon_grad_ready = 0;
    if (!ws->whole) add_dim_logvar_grad(m, G(m, ws), ws->d_dim_logvar); /* a view keeps it */
}

/* The KL gradient's weight per latent unit: kl_weight / n, 0 for a unit under its free bits. */
static void kl_scales(const vae_model *m, vae_workspace *ws, int n, const vae_objective *o) {
    const float scale = 1.0f / (float)mean_of(ws, n); /* the objective is the batch mean */
    const int latent = m->cfg.latent_dim;
    for (int j = 0; j < latent; j++) ws->kl_scale[j] = o->kl_weight * scale;
    if (o->free_bits > 0.0f) {
        m->ops->kl_dim_means(ws->kl_mean, ws->outputs[m->mu_layer], ws->outputs[m->logvar_layer], n,
                        latent);
        for (int j = 0; j < latent; j++)
            if (ws->kl_mean[j] < o->free_bits) ws->kl_scale[j] = 0.0f;
    }
}

vae_status vae_backward(vae_model *m, vae_workspace *ws, const vae_batch *batch,
                        const vae_objective *objective, vae_error *err) {
    static const vae_objective elbo = {1.0f, 0.0f};
    const vae_objective *o = objective ? objective : &elbo;
    const int n = batch->n;
    VAE_TRY(check_pass(m, ws, n, n, batch->labels, "backward", err));
    VAE_RETURN_IF(n != ws->last_batch, err, VAE_ERR_INVALID_ARGUMENT,
                  "backward of %d rows, but the last forward on this workspace had %d", n,
                  ws->last_batch);
    VAE_RETURN_IF(!(o->kl_weight >= 0.0f) || !(o->free_bits >= 0.0f), err,
                  VAE_ERR_INVALID_ARGUMENT, "the KL weight and free bits must be >= 0");
    VAE_RETURN_IF(ws->whole && o->free_bits > 0.0f, err, VAE_ERR_INVALID_ARGUMENT,
                  "free bits floor the whole batch's KL: not a slice's");
    kl_scales(m, ws, n, o);
    const size_t nz = (size_t)n * m->cfg.latent_dim;
    const float *mu = ws->outputs[m->mu_layer], *logvar = ws->outputs[m->logvar_layer];

    recon_backward(m, ws, batch);  /* dL/d(decoder outputs) */
    decoder_backward(m, ws, n);    /* -> dz */
    /* z = mu + exp(lv/2) eps, plus the KL's direct dependence on mu and lv */
    memset(ws->dmu, 0, nz * sizeof *ws->dmu);
    memset(ws->dlogvar, 0, nz * sizeof *ws->dlogvar);
    m->ops->reparam_backward(ws->dmu, ws->dlogvar, ws->dz, logvar, ws->eps, nz);
    m->ops->kl_backward(ws->dmu, ws->dlogvar, mu, logvar, n, m->cfg.latent_dim, ws->kl_scale);
    encoder_backward(m, ws, batch->x, n);
    return VAE_OK;
}

/* IWAE (Burda et al. 2016): K draws per input, each decoded; the objective per input is
 * -log (1/K) sum_k w_k with log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x). Its gradient is
 * the normalized weights times the gradients of log w_k, so the decoder pass runs once over
 * the B*K rows, each row's gradient scaled by its weight. */
/* The K draws of every input: the encoder, z_r and log p(z_r) - log q(z_r|x) (into log_w),
 * each input's x, label and mask repeated for its draws (into xk, row_labels, mask_rows). */
static void iwae_draws(const vae_model *m, vae_workspace *ws, const vae_batch *batch, int k,
                       float *xk, double *log_w) {
    const int n = batch->n, dim = m->cfg.input_dim, latent = m->cfg.latent_dim;
    const size_t rows = (size_t)n * k;
    encoder_forward(m, ws, batch->x, batch->labels, batch->mask, n);
    const float *mu = ws->outputs[m->mu_layer], *logvar = ws->outputs[m->logvar_layer];
    memcpy(ws->eps, batch->eps, rows * latent * sizeof *ws->eps);
    for (int b = 0; b < n; b++) {
        const size_t r0 = (size_t)b * k;
        for (int i = 0; i < k; i++)
            memcpy(xk + (r0 + i) * dim, batch->x + (size_t)b * dim, sizeof(float) * (size_t)dim);
        m->ops->reparam_draws(ws->z + r0 * latent, log_w + r0, mu + (size_t)b * latent,
                         logvar + (size_t)b * latent, batch->eps + r0 * latent, k, latent);
    }
    for (size_t r = 0; m->cfg.n_classes && r < rows; r++)
        ws->row_labels[r] = batch->labels[r / (size_t)k];
    for (size_t r = 0; batch->mask && r < rows; r++)
        memcpy(ws->mask_rows + r * dim, batch->mask + (r / (size_t)k) * dim, (size_t)dim);
}

/* Each input's bound -log (1/K) sum_r w_r from its log-weights (log_w += log p(x|z_r)), summed
 * over the batch, and the normalized weights / n, one per row, into weight. */
static double iwae_weights(const vae_workspace *ws, int n, int k, double *log_w, float *weight) {
    double bound = 0.0;
    for (int b = 0; b < n; b++) {
        double *lw = log_w + (size_t)b * k;
        for (int i = 0; i < k; i++) lw[i] -= ws->recon[(size_t)b * k + i];
        double lse = op_log_sum_exp(lw, (size_t)k);
        for (int i = 0; i < k; i++)
            weight[(size_t)b * k + i] = (float)(exp(lw[i] - lse) / mean_of(ws, n));
        bound += -(lse - log((double)k));
    }
    return bound;
}

/* From dz of the B*K rows to dmu and dlogvar of the n inputs: -log p(z) adds w z to dz;
 * z = mu + sigma eps sums each input's K rows; -log q(z|x) adds 1/2 per input to dlv (an
 * input's weights sum to 1/n). */
static void iwae_latent_backward(const vae_model *m, vae_workspace *ws, int n, int k,
                                 const float *weight) {
    const int latent = m->cfg.latent_dim;
    const float *logvar = ws->outputs[m->logvar_layer];
    float *acc_mu = ws->grad_b, *acc_lv = ws->grad_b + (size_t)n * latent;
    memset(acc_mu, 0, sizeof(float) * 2 * (size_t)n * latent);
    for (size_t r = 0; r < (size_t)n * k; r++) {
        const size_t b = r / (size_t)k;
        for (int j = 0; j < latent; j++) {
            size_t i = r * latent + j, ib = b * latent + j;
            float dz = ws->dz[i] + weight[r] * ws->z[i];
            acc_mu[ib] += dz;
            acc_lv[ib] += dz * ws->eps[i] * 0.5f * expf(0.5f * logvar[ib]);
        }
    }
    for (size_t ib = 0; ib < (size_t)n * latent; ib++) {
        ws->dmu[ib] = acc_mu[ib];
        ws->dlogvar[ib] = acc_lv[ib] - 0.5f / (float)mean_of(ws, n);
    }
}

/* IWAE (Burda et al. 2016): K draws per input, each decoded; the objective per input is
 * -log (1/K) sum_k w_k with log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x). Its gradient is
 * the normalized weights times the gradients of log w_k, so the decoder pass runs once over
 * the B*K rows, each row's gradient scaled by its weight. */
vae_status vae_iwae_step(vae_model *m, vae_workspace *ws, const vae_batch *batch, int k,
                         vae_loss *loss, vae_error *err) {
    const int n = batch->n, dim = m->cfg.input_dim;
    int rows;
    VAE_RETURN_IF(k < 1 || __builtin_mul_overflow(n, k, &rows), err, VAE_ERR_INVALID_ARGUMENT,
                  "IWAE: %d draws of %d inputs", k, n);
    VAE_TRY(check_pass(m, ws, n, rows, batch->labels, "IWAE step", err));
    float *xk = ws->draws_x;
    double *log_w = ws->log_w;
    iwae_draws(m, ws, batch, k, xk, log_w);
    const uint8_t *mk = batch->mask ? ws->mask_rows : NULL;
    decoder_forward(m, ws, ws->z, ws->row_labels, rows); /* labels filled if conditional */
    const float *out = ws->outputs[m->output_layer];
    m->ops->recon(&m->cfg, ws->recon, NULL, out, xk, (size_t)dim, rows, m->params + m->dim_logvar,
             NULL, 1.0f, NULL, mk);
    float *weight = ws->weight;
    double bound = iwae_weights(ws, n, k, log_w, weight);
    if (loss) loss->recon += bound, loss->count += (size_t)n;
    ws->last_batch = 0; /* a backward now would mix passes */
    if (!isfinite(bound)) return VAE_OK; /* the caller sees the loss */
    /* the likelihood's weighted gradients -> the decoder -> dz over the B*K rows */
    m->ops->recon(&m->cfg, NULL, entry_grad(ws, m->output_layer), out, xk, (size_t)dim, rows,
             m->params + m->dim_logvar, ws->d_dim_logvar, 1.0f, weight, mk);
    if (!ws->whole) add_dim_logvar_grad(m, G(m, ws), ws->d_dim_logvar); /* a view keeps it */
    decoder_backward(m, ws, rows);
    iwae_latent_backward(m, ws, n, k, weight);
    encoder_backward(m, ws, batch->x, n);
    return VAE_OK;
}

/* The input of layer l on ws (a whole or a view), whose first layer read x */
static const float *layer_input(const vae_model *m, const vae_workspace *ws, int l,
                                const float *x) {
    if (l == 0) return m->cfg.n_classes || m->cfg.missing ? ws->xy : x;
    if (l == m->mu_layer || l == m->logvar_layer) return ws->outputs[m->mu_layer - 1];
    if (l == m->first_decoder_layer) return m->cfg.n_classes ? ws->zy : ws->z;
    return ws->outputs[l - 1];
}

/* The parameters' gradients of n inputs (k draws each) whose output gradients src keeps, added
 * to target's buffer, with target's threads and scratch: the dense layers' in one pass of the
 * backend's (a product per block of rows on each thread), each convolution's one product. */
static void param_grads(vae_model *m, const vae_workspace *src, vae_workspace *target,
                        const float *x, int n, int k) {
    enum { DENSE_MAX = 32 }; /* the layers one pass takes (the MLP presets have 5) */
    op_dense_grad dense[DENSE_MAX];
    int n_dense = 0;
    float *g = G(m, target);
    for (int l = 0; l < m->n_layers; l++) {
        const vae_layer *layer = &m->layers[l];
        const int rows = l < m->first_decoder_layer ? n : n * k;
        const float *dy = l == m->mu_layer       ? src->dmu
                          : l == m->logvar_layer ? src->dlogvar
                                                 : src->dout[l];
        const float *in = layer_input(m, src, l, x), *w = m->params + layer->weight;
        if (layer->kind == LAYER_DENSE) {
            dense[n_dense++] = (op_dense_grad){g + layer->weight, g + layer->bias, dy, in, rows,
                                               layer->in, layer->out};
            if (n_dense == DENSE_MAX) m->ops->dense_param_grads(dense, n_dense), n_dense = 0;
            continue;
        }
        /* src's activations are in its layout (plain: a whole with views, or a view) */
        const conv_shape shape =
            vae_layer_conv_at(m, m->ops, l, target->conv_workers, src->conv_blocks);
        (layer->kind == LAYER_CONV ? m->ops->conv2d_backward : m->ops->convt2d_backward)(
            NULL, g + layer->weight, g + layer->bias, dy, in, w, rows, &shape, target->cols);
    }
    m->ops->dense_param_grads(dense, n_dense);
}

vae_status vae_view_param_grads(vae_model *m, vae_workspace *whole, vae_workspace *const *views,
                                int n_views, const vae_batch *batch, int k, vae_error *err) {
    int next = 0; /* the row the next view must start at: the views tile the batch */
    for (int i = 0; i < n_views; i++) {
        VAE_RETURN_IF(views[i]->whole != whole || views[i]->first_row != next, err,
                      VAE_ERR_INVALID_ARGUMENT, "view %d is not the next slice of the batch",
                      i + 1);
        next += views[i]->max_batch;
    }
    VAE_RETURN_IF(next != batch->n * k || k < 1, err, VAE_ERR_INVALID_ARGUMENT,
                  "the views hold %d rows, the batch %d inputs of %d draws", next, batch->n, k);
    if (k == 1) { /* the views' rows of every buffer tile the whole's: one pass over them */
        param_grads(m, whole, whole, batch->x, batch->n, 1);
    } else { /* a view's encoder rows lie among its decoder's: a pass per view */
        const size_t dim = (size_t)m->cfg.input_dim;
        for (int i = 0; i < n_views; i++)
            if (views[i]->max_batch)
                param_grads(m, views[i], whole, batch->x + (size_t)views[i]->first_row / k * dim,
                            views[i]->max_batch / k, k);
    }
    for (int i = 0; i < n_views; i++) add_dim_logvar_grad(m, G(m, whole), views[i]->d_dim_logvar);
    return VAE_OK;
}

vae_status vae_encode(const vae_model *m, vae_workspace *ws, const vae_batch *batch, float *mu,
                      float *logvar, vae_error *err) {
    const int n = batch->n;
    VAE_TRY(check_pass(m, ws, n, n, batch->labels, "encode", err));
    encoder_forward(m, ws, batch->x, batch->labels, batch->mask, n);
    size_t nz = (size_t)n * m->cfg.latent_dim;
    if (mu) memcpy(mu, ws->outputs[m->mu_layer], nz * sizeof *mu);
    if (logvar) memcpy(logvar, ws->outputs[m->logvar_layer], nz * sizeof *logvar);
    ws->last_batch = 0; /* a backward now would mix passes */
    return VAE_OK;
}

vae_status vae_decode(const vae_model *m, vae_workspace *ws, const float *z,
                      const uint8_t *labels, int n, float *means, vae_error *err) {
    VAE_TRY(check_pass(m, ws, n, n, labels, "decode", err));
    decoder_forward(m, ws, z, labels, n);
    m->ops->decode_mean(&m->cfg, means, ws->outputs[m->output_layer], n);
    ws->last_batch = 0;
    return VAE_OK;
}

vae_status vae_log_likelihood(const vae_model *m, vae_workspace *ws, const float *z,
                              const uint8_t *labels, int n, const float *x, size_t x_stride,
                              const uint8_t *mask, double *log_px, vae_error *err) {
    VAE_TRY(check_pass(m, ws, n, n, labels, "log-likelihood", err));
    decoder_forward(m, ws, z, labels, n);
    m->ops->recon(&m->cfg, log_px, NULL, ws->outputs[m->output_layer], x, x_stride, n,
             m->params + m->dim_logvar, NULL, 1.0f, NULL, mask);
    for (int b = 0; b < n; b++) log_px[b] = -log_px[b];
    ws->last_batch = 0;
    return VAE_OK;
}

const double *vae_workspace_recon(const vae_workspace *ws) { return ws->recon; }
const double *vae_workspace_kl(const vae_workspace *ws) { return ws->kl; }
const float *vae_workspace_mu(const vae_workspace *ws) {
    return ws->outputs[ws->model->mu_layer];
}
const float *vae_workspace_logvar(const vae_workspace *ws) {
    return ws->outputs[ws->model->logvar_layer];
}
const float *vae_workspace_z(const vae_workspace *ws) { return ws->z; }
const float *vae_workspace_logits(const vae_workspace *ws) {
    return ws->outputs[ws->model->output_layer];
}

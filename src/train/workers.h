/* workers.h — a training pass, and batch threads: a pass whose batch is split across threads,
 * each running forward and backward (or an IWAE step) on its slice with single-threaded
 * products, on a view of the run's workspace (model_internal.h); the parameters' gradients
 * then come from passes over the whole batch on all threads (vae_view_param_grads), so that
 * threads need no gradient buffers of their own. The training loop (train.c) runs its steps on them
 * when asked, and the choice between them and threaded products
 * (vae_train_batch_threads_auto) times both. */
#ifndef VAE_WORKERS_H
#define VAE_WORKERS_H

#include "vae.h"

typedef struct {
    int n, k;              /* threads (0: none made), draws per input */
    int whole_rows;        /* the rows of the batches they take: batch * k */
    int prepacked;         /* 1: their dense layers on weights prepacked in the optional form
                              of the table's (ops_table.h: fp32's transposed), once a pass */
    vae_workspace *whole;  /* the run's workspace, for whole batches: the views' rows */
    vae_workspace **view;  /* one per thread, for a slice of the batch */
    vae_loss *loss;        /* each slice's loss */
    vae_status *status;    /* each slice's outcome and error */
    vae_error *err;
} vae_workers;

/* One training pass of rows on ws: an IWAE step of k draws (k > 1), or forward and backward;
 * loss gets its terms, the gradients are added to ws's buffer. */
vae_status vae_train_pass(vae_model *m, vae_workspace *ws, const vae_batch *rows, int k,
                          const vae_objective *objective, vae_loss *loss, vae_error *err);

/* The threads batch threads would have for opt's run (asked for or not): this process's, or 0
 * where they do not apply (fewer than two; free bits, a floor on the whole batch's KL; a GPU). */
int vae_workers_threads(const vae_train_options *opt);

/* threads workers for batches of up to `batch` inputs of k draws each, on whole (a workspace
 * of batch * k rows, which it must outlive); on failure *w holds what was made, for
 * vae_workers_free. */
vae_status vae_workers_init(vae_workers *w, vae_workspace *whole, int batch, int k, int threads,
                            vae_error *err);
void vae_workers_free(vae_workers *w);

/* One pass over rows split across the workers: loss gets the slices' summed losses, the
 * whole's gradient buffer (vae_workspace_set_grads; the model's by default) the batch's mean
 * gradient added, computed as the products' split does for the parameters, each thread's rows'
 * data gradients on their own. */
vae_status vae_workers_pass(vae_workers *w, vae_model *m, const vae_batch *rows,
                            const vae_objective *objective, vae_loss *loss, vae_error *err);
/* vae_forward of rows (1..whole_rows of them, one draw each: an evaluation) split across the
 * workers: loss gets the slices' losses, summed in order; the same function as vae_forward on
 * the whole, its products on each thread's rows (bf16: on the weights rounded once for all). */
vae_status vae_workers_forward(vae_workers *w, const vae_model *m, const vae_batch *rows,
                               vae_loss *loss, vae_error *err);
/* Its two phases: each thread's slice (forward and the data's gradients), then
 * vae_view_param_grads over w->view. */
vae_status vae_workers_slices(vae_workers *w, vae_model *m, const vae_batch *rows,
                              const vae_objective *objective, vae_loss *loss, vae_error *err);

#endif

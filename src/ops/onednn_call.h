/* onednn_call.h — the two ways this library runs oneDNN's kernels, each with the asynchronous
 * signals held meanwhile (core/signals.c: oneDNN 2.6's generated GEMM kernels corrupt the heap
 * when a signal is handled while they run). Builds with oneDNN only. */
#ifndef VAE_ONEDNN_CALL_H
#define VAE_ONEDNN_CALL_H

#include <dnnl.h>

/* dnnl_sgemm's product c = op(a) op(b) + beta c (alpha 1), row-major */
void op_onednn_sgemm(char ta, char tb, int m, int n, int k, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc);
/* A primitive run on its arguments and waited for; nonzero when oneDNN refused */
int op_onednn_run(dnnl_primitive_t prim, dnnl_stream_t stream, int n,
                  const dnnl_exec_arg_t *args);

#endif

/* onednn_call.c — oneDNN's kernels run with the signals held (onednn_call.h). */
#ifdef VAE_ONEDNN
#include "ops/onednn_call.h"
#include "core/signals.h"

void op_onednn_sgemm(char ta, char tb, int m, int n, int k, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc) {
    vae_signals_held held;
    vae_hold_signals(&held);
    dnnl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    vae_release_signals(&held);
}

int op_onednn_run(dnnl_primitive_t prim, dnnl_stream_t stream, int n,
                  const dnnl_exec_arg_t *args) {
    vae_signals_held held;
    vae_hold_signals(&held);
    const int bad = dnnl_primitive_execute(prim, stream, n, args) || dnnl_stream_wait(stream);
    vae_release_signals(&held);
    return bad;
}
#endif

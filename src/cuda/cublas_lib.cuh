/* cublas_lib.cuh — cuBLAS opened when a GPU context is made, not linked into the program.
 * Linked, its two libraries (600 MB of code and tables) were mapped and relocated at every start
 * of vae, GPU or not: ~200 MiB resident for `vae --version` on a machine without a GPU, against
 * 9 MiB for the CPU build, and every CPU run of the CUDA build over issue 16's memory budget.
 * Each vae_gpu holds its own table (no global state; dlopen counts the opens); the library
 * stays loaded once a GPU context has opened it. */
#ifndef VAE_CUBLAS_LIB_CUH
#define VAE_CUBLAS_LIB_CUH

#include <cublas_v2.h>

typedef struct {
    void *lib; /* dlopen's handle; NULL when not opened */
    decltype(&cublasCreate) create;
    decltype(&cublasDestroy) destroy;
    decltype(&cublasSetStream) set_stream;
    decltype(&cublasSetMathMode) set_math_mode;
    decltype(&cublasSetWorkspace) set_workspace;
    decltype(&cublasSgemm) sgemm;
    decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
} cublas_lib;

/* Opens cuBLAS (the soname the build linked against, then the same file in the build's CUDA
 * directory) and finds every function above. Returns 0, or -1 with the reason in msg (512
 * bytes) and *lib cleared. */
int cublas_lib_open(cublas_lib *lib, char *msg);
void cublas_lib_close(cublas_lib *lib);

#endif

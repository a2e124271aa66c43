/* cublas_lib.cu — cuBLAS's functions found at run time (cublas_lib.cuh says why). */
#include "cublas_lib.cuh"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#ifndef VAE_CUBLAS_SONAME
#define VAE_CUBLAS_SONAME "libcublas.so"
#endif
#ifndef VAE_CUDA_LIBDIR
#define VAE_CUDA_LIBDIR "/usr/local/cuda/lib64"
#endif

#define MSG 512
/* cublas_v2.h maps most names to versioned ones (cublasSgemm is cublasSgemm_v2): the symbol to
 * look up is the name after that expansion. */
#define SYMBOL_NAME(fn) SYMBOL_STRING(fn)
#define SYMBOL_STRING(fn) #fn
#define FIND(field, fn)                                                                            \
    do {                                                                                           \
        lib->field = (decltype(&fn))dlsym(lib->lib, SYMBOL_NAME(fn));                              \
        if (!lib->field) missing = SYMBOL_NAME(fn);                                                \
    } while (0)

/* Once opened it stays (NODELETE): a later context finds it loaded instead of mapping and
 * relocating 600 MB again, and no kernel it registered with the CUDA runtime is unloaded under
 * it. */
#define OPEN_FLAGS (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)

int cublas_lib_open(cublas_lib *lib, char *msg) {
    memset(lib, 0, sizeof *lib);
    lib->lib = dlopen(VAE_CUBLAS_SONAME, OPEN_FLAGS);
    if (!lib->lib) lib->lib = dlopen(VAE_CUDA_LIBDIR "/" VAE_CUBLAS_SONAME, OPEN_FLAGS);
    if (!lib->lib) {
        const char *why = dlerror();
        snprintf(msg, MSG, "cuBLAS could not be opened (%s)", why ? why : VAE_CUBLAS_SONAME);
        return -1;
    }
    const char *missing = NULL;
    FIND(create, cublasCreate);
    FIND(destroy, cublasDestroy);
    FIND(set_stream, cublasSetStream);
    FIND(set_math_mode, cublasSetMathMode);
    FIND(set_workspace, cublasSetWorkspace);
    FIND(sgemm, cublasSgemm);
    FIND(sgemm_strided_batched, cublasSgemmStridedBatched);
    if (!missing) return 0;
    snprintf(msg, MSG, "%s has no %s: not the cuBLAS vae was built with", VAE_CUBLAS_SONAME,
             missing);
    cublas_lib_close(lib);
    return -1;
}

void cublas_lib_close(cublas_lib *lib) {
    if (lib->lib) dlclose(lib->lib);
    memset(lib, 0, sizeof *lib);
}

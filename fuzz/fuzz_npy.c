/* fuzz_npy.c — libFuzzer target for the .npy reader. */
#include "fuzz_file.h"
#include "vae.h"

#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file f;
    if (fuzz_file_make(&f, data, size) != 0) return 0;
    vae_dataset *ds = NULL;
    vae_error err;
    if (vae_npy_load(f.path, size & 1, &ds, &err) == VAE_OK) {
        if (!ds || ds->count == 0 || ds->dim < 1) abort();
        for (size_t i = 0; i < ds->count * (size_t)ds->dim; i++)
            if (!isfinite(ds->x[i])) abort();
        vae_dataset_free(ds);
    } else if (ds || !err.message[0]) {
        abort();
    }
    close(f.fd);
    return 0;
}

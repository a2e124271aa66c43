/* fuzz_idx.c — libFuzzer target for the IDX reader (plain or gzip, images with or without
 * labels). The first byte picks the mode; with labels, the next two bytes say where the image
 * file ends and the label file begins. */
#include "fuzz_file.h"
#include "vae.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    const int with_labels = data[0] & 1;
    size_t split = (size_t)data[1] << 8 | data[2];
    data += 3, size -= 3;
    if (!with_labels || split > size) split = size;
    fuzz_file images, labels;
    if (fuzz_file_make(&images, data, split) != 0) return 0;
    if (with_labels && fuzz_file_make(&labels, data + split, size - split) != 0) {
        close(images.fd);
        return 0;
    }
    vae_error err;
    vae_dataset *ds = NULL;
    if (vae_idx_load(images.path, with_labels ? labels.path : NULL, &ds, &err) == VAE_OK) {
        if (!ds || (ds->count && !ds->x)) abort();
        float sum = 0; /* touch every value: a wrong size shows up under ASan */
        for (size_t i = 0; i < ds->count * (size_t)ds->dim; i++) sum += ds->x[i];
        if (!(sum >= 0)) abort(); /* scaled bytes are in [0, 1] */
        vae_dataset_free(ds);
    } else if (ds || !err.message[0]) {
        abort();
    }
    close(images.fd);
    if (with_labels) close(labels.fd);
    return 0;
}

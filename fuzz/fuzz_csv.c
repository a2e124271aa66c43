/* fuzz_csv.c — libFuzzer target for the CSV reader (plain or gzip): strict and without labels,
 * then with the last column as labels and missing values allowed. */
#include "fuzz_file.h"
#include "vae.h"

#include <math.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file f;
    if (fuzz_file_make(&f, data, size) != 0) return 0;
    for (int pass = 0; pass < 2; pass++) {
        vae_csv_options o;
        vae_csv_options_default(&o);
        if (pass) o.label_column = VAE_CSV_LAST_COLUMN, o.allow_missing = 1;
        vae_dataset *ds = NULL;
        vae_error err;
        if (vae_csv_load(f.path, &o, &ds, &err) == VAE_OK) {
            if (!ds || ds->count == 0 || ds->dim < 1) abort();
            for (size_t i = 0; i < ds->count * (size_t)ds->dim; i++)
                if (!isfinite(ds->x[i]) || (ds->mask && ds->mask[i] > 1)) abort();
            if (ds->mask && !pass) abort(); /* a strict read has no missing values */
            vae_dataset_free(ds);
        } else if (ds || !err.message[0]) {
            abort();
        }
    }
    close(f.fd);
    return 0;
}

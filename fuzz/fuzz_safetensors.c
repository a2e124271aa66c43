/* fuzz_safetensors.c — libFuzzer target for the model-file reader: any bytes must give either
 * a model that matches its metadata or a clean error, never a crash, leak or overflow. */
#include "fuzz_file.h"
#include "vae.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_file f;
    if (fuzz_file_make(&f, data, size) != 0) return 0;
    vae_error err = {{0}};
    vae_model *model = NULL;
    vae_adam *adam = NULL;
    vae_train_state state;
    /* as a plain model, then as a training checkpoint (a different validation path) */
    if (vae_model_load(f.path, &model, NULL, &state, &err) == VAE_OK) {
        if (!model || vae_model_num_params(model) == 0) abort();
        vae_model_free(model);
        if (vae_model_load(f.path, &model, &adam, &state, &err) == VAE_OK) {
            if (!adam) abort();
            vae_adam_free(adam);
            vae_model_free(model);
        }
    } else if (model || !err.message[0]) {
        abort(); /* a failure hands out nothing and says why */
    }
    close(f.fd);
    return 0;
}

/* device.c — naming devices and precisions, and whether a device can be used. */
#include "backend/backend.h"

#include <string.h>

vae_status vae_device_parse(const char *name, vae_device *out, vae_error *err) {
    if (!strcmp(name, "cpu")) *out = VAE_DEVICE_CPU;
    else if (!strcmp(name, "cuda") || !strcmp(name, "gpu")) *out = VAE_DEVICE_CUDA;
    else if (!strcmp(name, "auto")) *out = VAE_DEVICE_AUTO;
    else
        return vae_fail(err, VAE_ERR_INVALID_ARGUMENT,
                        "unknown device \"%.40s\" (expected cpu, cuda or auto)", name);
    return VAE_OK;
}

const char *vae_device_name(vae_device device) {
    switch (device) {
    case VAE_DEVICE_CPU: return "cpu";
    case VAE_DEVICE_CUDA: return "cuda";
    case VAE_DEVICE_AUTO: return "auto";
    }
    return "unknown";
}

int vae_device_available(vae_device device, char *info, size_t info_size) {
    if (device == VAE_DEVICE_CPU || device == VAE_DEVICE_AUTO) {
        if (info && info_size) snprintf(info, info_size, "%s", vae_blas_info());
        if (device == VAE_DEVICE_CPU) return 1;
    }
    char scratch[256];
    int ok = vae_gpu_available(scratch, sizeof scratch);
    if (device == VAE_DEVICE_AUTO) return 1; /* the CPU is always there */
    if (info && info_size) snprintf(info, info_size, "%s", scratch);
    return ok;
}

vae_status vae_precision_parse(const char *name, vae_precision *out, vae_error *err) {
    if (!strcmp(name, "fp32")) *out = VAE_PRECISION_FP32;
    else if (!strcmp(name, "tf32")) *out = VAE_PRECISION_TF32;
    else if (!strcmp(name, "bf16")) *out = VAE_PRECISION_BF16;
    else
        return vae_fail(err, VAE_ERR_INVALID_ARGUMENT,
                        "unknown precision \"%.40s\" (expected fp32, tf32 or bf16)", name);
    return VAE_OK;
}

const char *vae_precision_name(vae_precision precision) {
    return precision == VAE_PRECISION_TF32 ? "tf32" : precision == VAE_PRECISION_BF16 ? "bf16" : "fp32";
}

vae_status vae_device_resolve(vae_device asked, vae_status supported, vae_device *out,
                              vae_error *err) {
    char info[256];
    const int gpu = asked != VAE_DEVICE_CPU && vae_gpu_available(info, sizeof info);
    VAE_RETURN_IF((unsigned)asked > VAE_DEVICE_AUTO, err, VAE_ERR_INVALID_ARGUMENT,
                  "unknown device %d", (int)asked);
    VAE_RETURN_IF(asked == VAE_DEVICE_CUDA && !gpu, err, VAE_ERR_INVALID_ARGUMENT,
                  "no CUDA device: %s", info);
    *out = asked == VAE_DEVICE_CPU || (asked == VAE_DEVICE_AUTO && (!gpu || supported != VAE_OK))
               ? VAE_DEVICE_CPU
               : VAE_DEVICE_CUDA;
    return VAE_OK;
}

"""_lib.py — libvae through ctypes: finding the library, its structs and its functions.

The structs mirror include/vae.h field for field; python/tests/test_abi.py compiles a C program
that prints their sizes and offsets and compares them with these, so a change to the header
cannot silently shift a field here. ctypes releases the GIL around every call into the
library, so long calls (fit, score_samples, ...) let other Python threads run."""
import ctypes
import ctypes.util
import os
import subprocess
import sys

c_float_p = ctypes.POINTER(ctypes.c_float)
c_double_p = ctypes.POINTER(ctypes.c_double)
c_uint8_p = ctypes.POINTER(ctypes.c_uint8)

# ------------------------------------------------------------------ structs (vae.h)

MAX_HIDDEN = 8
MAX_CONV = 6


class Error(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char * 512)]


class ConvLayer(ctypes.Structure):
    _fields_ = [("channels", ctypes.c_int), ("kernel", ctypes.c_int), ("stride", ctypes.c_int),
                ("padding", ctypes.c_int)]


class Config(ctypes.Structure):
    _fields_ = [("input_dim", ctypes.c_int), ("latent_dim", ctypes.c_int),
                ("n_encoder", ctypes.c_int), ("encoder", ctypes.c_int * MAX_HIDDEN),
                ("n_decoder", ctypes.c_int), ("decoder", ctypes.c_int * MAX_HIDDEN),
                ("activation", ctypes.c_int), ("likelihood", ctypes.c_int),
                ("variance", ctypes.c_int), ("sigma", ctypes.c_float),
                ("variance_floor", ctypes.c_float), ("n_conv", ctypes.c_int),
                ("conv", ConvLayer * MAX_CONV), ("image_channels", ctypes.c_int),
                ("image_rows", ctypes.c_int), ("image_cols", ctypes.c_int),
                ("missing", ctypes.c_int), ("n_classes", ctypes.c_int)]


class Dataset(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("dim", ctypes.c_int), ("rows", ctypes.c_int),
                ("cols", ctypes.c_int), ("x", c_float_p), ("labels", c_uint8_p),
                ("mask", c_uint8_p)]


class AdamOptions(ctypes.Structure):
    _fields_ = [("lr", ctypes.c_float), ("beta1", ctypes.c_float), ("beta2", ctypes.c_float),
                ("epsilon", ctypes.c_float)]


class Loss(ctypes.Structure):
    _fields_ = [("recon", ctypes.c_double), ("kl", ctypes.c_double), ("count", ctypes.c_size_t)]


class TrainPosition(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_int), ("step_in_epoch", ctypes.c_uint64),
                ("epoch_so_far", Loss)]


class EpochStats(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_int), ("epochs", ctypes.c_int),
                ("train_loss", ctypes.c_double), ("train_recon", ctypes.c_double),
                ("train_kl", ctypes.c_double), ("test_loss", ctypes.c_double),
                ("test_recon", ctypes.c_double), ("test_kl", ctypes.c_double),
                ("samples_per_second", ctypes.c_double), ("seconds", ctypes.c_double),
                ("test_seconds", ctypes.c_double), ("device", ctypes.c_int),
                ("launches_per_step", ctypes.c_int), ("device_bytes", ctypes.c_size_t)]


PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t,
                               ctypes.c_size_t, ctypes.c_double)
EPOCH_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(EpochStats))
EVAL_PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                                    ctypes.c_size_t)


class TrainOptions(ctypes.Structure):
    _fields_ = [("epochs", ctypes.c_int), ("batch_size", ctypes.c_int),
                ("seed", ctypes.c_uint64), ("adam", AdamOptions),
                ("eval_batch_size", ctypes.c_int), ("beta", ctypes.c_float),
                ("kl_warmup", ctypes.c_uint64), ("free_bits", ctypes.c_float),
                ("iwae_k", ctypes.c_int), ("progress", PROGRESS_FN), ("on_epoch", EPOCH_FN),
                ("checkpoint", ctypes.c_void_p), ("checkpoint_every", ctypes.c_uint64),
                ("user", ctypes.c_void_p), ("resume_adam", ctypes.c_void_p),
                ("start", TrainPosition), ("collective", ctypes.c_void_p),
                ("device", ctypes.c_int), ("precision", ctypes.c_int),
                ("batch_threads", ctypes.c_int)]


class EvalOptions(ctypes.Structure):
    _fields_ = [("importance_samples", ctypes.c_int), ("chunk", ctypes.c_int),
                ("batch", ctypes.c_int), ("seed", ctypes.c_uint64),
                ("progress", EVAL_PROGRESS_FN), ("user", ctypes.c_void_p),
                ("device", ctypes.c_int), ("precision", ctypes.c_int)]


class EvalResult(ctypes.Structure):
    _fields_ = [("count", ctypes.c_size_t), ("neg_elbo", ctypes.c_double),
                ("recon", ctypes.c_double), ("kl", ctypes.c_double), ("nll", ctypes.c_double),
                ("nll_stderr", ctypes.c_double), ("bits_per_dim", ctypes.c_double),
                ("active_units", ctypes.c_int), ("latent_dim", ctypes.c_int),
                ("importance_samples", ctypes.c_int)]


class TrainState(ctypes.Structure):
    _fields_ = [("preset", ctypes.c_char * 32), ("data_rows", ctypes.c_int),
                ("data_cols", ctypes.c_int), ("seed", ctypes.c_uint64),
                ("batch_size", ctypes.c_int), ("epochs", ctypes.c_int),
                ("position", TrainPosition), ("data_hash", ctypes.c_uint64),
                ("beta", ctypes.c_float), ("free_bits", ctypes.c_float),
                ("kl_warmup", ctypes.c_uint64), ("iwae_k", ctypes.c_int),
                ("has_optimizer", ctypes.c_int), ("optimizer_steps", ctypes.c_uint64)]


class Rng(ctypes.Structure):
    _fields_ = [("key", ctypes.c_uint64), ("counter", ctypes.c_uint64)]


class CpuFeatures(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in
                ("avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "os_avx",
                 "os_avx512")]


# the structs test_abi.py checks against the header, by their C names
STRUCTS = {"vae_error": Error, "vae_config": Config, "vae_dataset": Dataset,
           "vae_adam_options": AdamOptions, "vae_loss": Loss,
           "vae_train_position": TrainPosition, "vae_epoch_stats": EpochStats,
           "vae_train_options": TrainOptions, "vae_eval_options": EvalOptions,
           "vae_eval_result": EvalResult, "vae_train_state": TrainState,
           "vae_cpu_features": CpuFeatures, "vae_rng": Rng}

# ------------------------------------------------------------------ finding the library

_HERE = os.path.dirname(os.path.abspath(__file__))


def library_candidates():
    """Where libvae.so is looked for, in order: $VAE_LIBRARY; a copy installed inside this
    package (pip install copies the build's); the source tree's build/ when this package is
    used from it; the system's (make install)."""
    found = []
    if os.environ.get("VAE_LIBRARY"):
        found.append(os.environ["VAE_LIBRARY"])
    found.append(os.path.join(_HERE, "libvae.so.0"))
    found.append(os.path.join(_HERE, "..", "..", "build", "libvae.so.0"))
    system = ctypes.util.find_library("vae")
    found.append(system or "libvae.so.0")
    return found


def _choose_kernels(path):
    """OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded, and falls back to slow generic
    kernels on CPUs it does not recognise (virtual machines especially). The vae program
    re-executes itself with better ones; a Python process cannot, so a child process loads the
    library first, asks it for the choice (vae_blas_core_choice), and the variable is set
    here before this process loads it: the same kernels as the program, the same bits."""
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("VAE_BLAS_CHOSEN"):
        return
    probe = ("import ctypes, sys\n"
             "sys.path.insert(0, %r)\n"
             "from _lib import CpuFeatures\n"
             "lib = ctypes.CDLL(%r)\n"
             "lib.vae_blas_core.restype = ctypes.c_char_p\n"
             "lib.vae_blas_core_choice.restype = ctypes.c_char_p\n"
             "f = CpuFeatures(); lib.vae_cpu_features_detect(ctypes.byref(f))\n"
             "c = lib.vae_blas_core_choice(lib.vae_blas_core(), ctypes.byref(f))\n"
             "print((c or b'').decode())\n") % (_HERE, path)
    env = dict(os.environ, VAE_BLAS_CHOSEN="probe")
    try:
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                             env=env, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    os.environ["VAE_BLAS_CHOSEN"] = out or "kept"
    if out:
        os.environ["OPENBLAS_CORETYPE"] = out


def _load():
    errors = []
    for path in library_candidates():
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            _choose_kernels(path)
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    raise ImportError("vae: libvae.so not found (build it with `make`, install it with "
                      "`make install`, or name it in VAE_LIBRARY): " + "; ".join(errors))


lib, path = _load()

# ------------------------------------------------------------------ signatures

_P = ctypes.c_void_p
_ERR = ctypes.POINTER(Error)
_SIGNATURES = {
    "vae_version": (ctypes.c_char_p, []),
    "vae_status_str": (ctypes.c_char_p, [ctypes.c_int]),
    "vae_set_num_threads": (None, [ctypes.c_int]),
    "vae_get_num_threads": (ctypes.c_int, []),
    "vae_blas_core": (ctypes.c_char_p, []),
    "vae_config_preset": (ctypes.c_int, [ctypes.POINTER(Config), ctypes.c_char_p, ctypes.c_int,
                                         _ERR]),
    "vae_conv_layers_parse": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(Config), _ERR]),
    "vae_config_validate": (ctypes.c_int, [ctypes.POINTER(Config), _ERR]),
    "vae_activation_parse": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), _ERR]),
    "vae_likelihood_parse": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), _ERR]),
    "vae_variance_parse": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), _ERR]),
    "vae_device_parse": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), _ERR]),
    "vae_precision_parse": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), _ERR]),
    "vae_activation_name": (ctypes.c_char_p, [ctypes.c_int]),
    "vae_likelihood_name": (ctypes.c_char_p, [ctypes.c_int]),
    "vae_variance_name": (ctypes.c_char_p, [ctypes.c_int]),
    "vae_model_create": (ctypes.c_int, [ctypes.POINTER(_P), ctypes.POINTER(Config),
                                        ctypes.c_uint64, _ERR]),
    "vae_model_free": (None, [_P]),
    "vae_model_config": (ctypes.POINTER(Config), [_P]),
    "vae_model_num_params": (ctypes.c_size_t, [_P]),
    "vae_model_params": (c_float_p, [_P]),
    "vae_model_set_device": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_int, _ERR]),
    "vae_backend_parse": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), _ERR]),
    "vae_backend_available": (ctypes.c_int, [ctypes.c_int]),
    "vae_backend_default": (ctypes.c_int, []),
    "vae_model_set_backend": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_int,
                                             ctypes.POINTER(ctypes.c_int), _ERR]),
    "vae_model_backend": (ctypes.c_int, [_P]),
    "vae_model_set_standardization": (ctypes.c_int, [_P, c_float_p, c_float_p, _ERR]),
    "vae_model_data_mean": (c_float_p, [_P]),
    "vae_model_data_std": (c_float_p, [_P]),
    "vae_standardize_fit": (None, [ctypes.POINTER(Dataset), c_float_p, c_float_p]),
    "vae_train_options_default": (None, [ctypes.POINTER(TrainOptions)]),
    "vae_train_check": (ctypes.c_int, [_P, ctypes.POINTER(Dataset), ctypes.POINTER(Dataset),
                                       ctypes.POINTER(TrainOptions), _ERR]),
    "vae_train_batch_threads_auto": (ctypes.c_int, [_P, ctypes.POINTER(TrainOptions),
                                                    ctypes.POINTER(ctypes.c_int), _ERR]),
    "vae_train": (ctypes.c_int, [_P, ctypes.POINTER(Dataset), ctypes.POINTER(Dataset),
                                 ctypes.POINTER(TrainOptions), _ERR]),
    "vae_eval_options_default": (None, [ctypes.POINTER(EvalOptions)]),
    "vae_eval": (ctypes.c_int, [_P, ctypes.POINTER(Dataset), ctypes.POINTER(EvalOptions),
                                ctypes.POINTER(EvalResult), c_double_p, _ERR]),
    "vae_encode_data": (ctypes.c_int, [_P, ctypes.POINTER(Dataset), c_float_p, c_float_p,
                                       _ERR]),
    "vae_decode_all": (ctypes.c_int, [_P, c_float_p, c_uint8_p, ctypes.c_size_t, c_float_p,
                                      _ERR]),
    "vae_impute": (ctypes.c_int, [_P, ctypes.POINTER(Dataset), ctypes.c_int, ctypes.c_int,
                                  ctypes.c_uint64, c_float_p, _ERR]),
    "vae_model_save": (ctypes.c_int, [ctypes.c_char_p, _P, _P, ctypes.POINTER(TrainState),
                                      _ERR]),
    "vae_model_load": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_P), ctypes.POINTER(_P),
                                      ctypes.POINTER(TrainState), _ERR]),
    "vae_dataset_hash": (ctypes.c_uint64, [ctypes.POINTER(Dataset)]),
    "vae_rng_make": (Rng, [ctypes.c_uint64, ctypes.c_uint64]),
    "vae_rng_normal": (None, [ctypes.POINTER(Rng), c_float_p, ctypes.c_size_t]),
    "vae_adam_options_default": (None, [ctypes.POINTER(AdamOptions)]),
    "vae_adam_create": (ctypes.c_int, [ctypes.POINTER(_P), ctypes.c_size_t,
                                       ctypes.POINTER(AdamOptions), _ERR]),
    "vae_adam_free": (None, [_P]),
}
for _name, (_res, _args) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.restype = _res
    if _args or _res is not None:
        _f.argtypes = _args

version = lib.vae_version().decode()


def status_name(status):
    return lib.vae_status_str(status).decode()

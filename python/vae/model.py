"""model.py — vae.VAE: a variational autoencoder with scikit-learn's conventions over libvae.

Arrays go to the library without a copy when they are float32 and C-contiguous (others are
converted once); every library failure is raised as VAEError with the library's message."""
import ctypes
import inspect
import math
import os
import signal
import sys
import tempfile
import threading
import time

import numpy as np

from . import _lib
from ._lib import lib

__all__ = ["VAE", "VAEError", "VAEInputError", "NotFittedError"]

_INVALID_ARGUMENT, _FORMAT, _CANCELLED = 1, 5, 6


class VAEError(RuntimeError):
    """A failure reported by libvae; .status is its status code, .status_name its name."""

    def __init__(self, message, status=0):
        super().__init__(message)
        self.status = status
        self.status_name = _lib.status_name(status) if status else ""


class VAEInputError(VAEError, ValueError):
    """Input the library or the checks before it refused (a ValueError too, as numpy's)."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a trained model was called before fit() or load()."""


def _raise(status, err, context=None):
    message = err.message.decode("utf-8", "replace") or _lib.status_name(status)
    if context:
        message = "%s: %s" % (context, message)
    cls = VAEInputError if status in (_INVALID_ARGUMENT, _FORMAT) else VAEError
    raise cls(message, status)


def _call(fn, *args, context=None):
    """Calls a libvae function whose last argument is a vae_error*, raising on failure."""
    err = _lib.Error()
    status = fn(*args, ctypes.byref(err))
    if status != 0:
        _raise(status, err, context)


def _parse(fn, name, what):
    out, err = ctypes.c_int(), _lib.Error()
    if fn(str(name).encode(), ctypes.byref(out), ctypes.byref(err)) != 0:
        raise ValueError("%s: %s" % (what, err.message.decode()))
    return out.value


def _all_finite(X):
    """True when X holds no NaN or Inf: one float64 sum (NaN and Inf propagate; float32
    values cannot overflow it), without a temporary as large as X."""
    return bool(np.isfinite(np.add.reduce(X, axis=None, dtype=np.float64)))


def _ptr(array, ctype):
    return array.ctypes.data_as(ctypes.POINTER(ctype)) if array is not None else None


class _Data:
    """A vae_dataset over numpy arrays (no copy of float32 C-contiguous data); keeps the
    arrays alive as long as the struct is used."""

    def __init__(self, x, labels=None, mask=None, shape=None):
        self.x, self.labels, self.mask = x, labels, mask
        self.struct = _lib.Dataset(count=x.shape[0], dim=x.shape[1],
                                   rows=shape[0] if shape else 0, cols=shape[1] if shape else 0,
                                   x=_ptr(x, ctypes.c_float), labels=_ptr(labels, ctypes.c_uint8),
                                   mask=_ptr(mask, ctypes.c_uint8))

    @property
    def ref(self):
        return ctypes.byref(self.struct)


class VAE:
    """A variational autoencoder: an encoder q(z|x) with separate mean and log-variance heads,
    the reparameterization z = mu + sigma * eps, a decoder p(x|z), trained on the ELBO (or its
    beta / warm-up / free-bits variants, or the importance-weighted bound) with Adam.

    Parameters are those of `vae train` (see `vae train --help`); they are stored as given and
    used by fit(), as scikit-learn's estimators do:
      preset: "pytorch" (D-400-(20)-400-D), "seed", "conv", or None with encoder/decoder/latent
      encoder, decoder: hidden widths (tuples); latent: latent units; activation: "relu",
        "tanh", "leaky_relu", "elu"
      likelihood: "bernoulli" (x in [0,1]), "gaussian", "poisson"; variance: "fixed", "dim",
        "sample" (Gaussian); sigma, variance_floor
      conv: "32x4s2p1,64x4s2p1" for images of image_shape (rows, cols)
      conditional: y labels (0..255) given to fit() condition the model; missing: NaN values
        are missing (MIWAE); standardize: columns scaled to mean 0, std 1 inside the model
      epochs, batch_size, lr, beta, kl_warmup, free_bits, iwae: training
      seed: initialization, shuffling and noise; threads: None = one per free core
      device: "cpu", "cuda", "auto"; precision: "fp32", "tf32" (a GPU's), "bf16" (the CPU's
        dense and conv layers on oneDNN: bf16 inputs, fp32 sums; needs AVX512_BF16 or AMX)
      backend: the CPU's matrix products, "openblas", "onednn" or "auto" (the faster on this
        CPU for the model's layers, timed when the model is made or loaded); None: oneDNN
        where the library has it, else OpenBLAS (as the program's default)
      batch_threads: True: the threads split each batch instead of each product
        (`--batch-threads on`); "prepacked": so, the dense weights transposed once a step
        for the threads' fp32 products (pays where each thread has few rows); "auto": the
        fastest here, timed when fit starts (batch_threads_ says which: False, True or
        "prepacked"; give it for bit-identical reruns)
      verbose: 1 = a progress bar on stderr, 0 = quiet
    """

    def __init__(self, preset="pytorch", encoder=None, decoder=None, latent=None,
                 activation="relu", likelihood="bernoulli", variance="fixed", sigma=1.0,
                 variance_floor=1e-3, conv=None, image_shape=None, conditional=False,
                 missing=False, standardize=False, epochs=10, batch_size=128, lr=1e-3, beta=1.0,
                 kl_warmup=0, free_bits=0.0, iwae=0, seed=1, threads=None, device="cpu",
                 precision="fp32", backend=None, batch_threads=False, verbose=1):
        self.preset = preset
        self.encoder = encoder
        self.decoder = decoder
        self.latent = latent
        self.activation = activation
        self.likelihood = likelihood
        self.variance = variance
        self.sigma = sigma
        self.variance_floor = variance_floor
        self.conv = conv
        self.image_shape = image_shape
        self.conditional = conditional
        self.missing = missing
        self.standardize = standardize
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.free_bits = free_bits
        self.iwae = iwae
        self.seed = seed
        self.threads = threads
        self.device = device
        self.precision = precision
        self.backend = backend
        self.batch_threads = batch_threads
        self.verbose = verbose

    # ------------------------------------------------------------ scikit-learn's protocol

    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p for p in sig.parameters if p != "self")

    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError("Invalid parameter %r for estimator %s. Valid parameters are: "
                                 "%s." % (name, type(self).__name__, valid))
            setattr(self, name, value)
        return self

    def __repr__(self):
        default = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = ["%s=%r" % (n, v) for n, v in self.get_params().items() if v != default.get(n)]
        return "VAE(%s)" % ", ".join(changed)

    def _more_tags(self):
        # outputs are float32 whatever the input; a Monte-Carlo score is not deterministic
        # per row under reordering (see the docs' exclusions)
        return {"preserves_dtype": [np.float32], "X_types": ["2darray"]}

    # ------------------------------------------------------------ the model in C

    def __del__(self):
        self._release()

    def _release(self):
        model = self.__dict__.pop("_model", None)
        if model:
            lib.vae_model_free(model)

    def _check_fitted(self):
        if not self.__dict__.get("_model"):
            raise NotFittedError("This VAE instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments (or VAE.load) before using it.")

    @property
    def config_(self):
        self._check_fitted()
        return lib.vae_model_config(self._model).contents

    @property
    def latent_dim_(self):
        return self.config_.latent_dim

    def _check_variance(self, cfg):
        """The variance's options that would do nothing for this likelihood are refused, as
        the program refuses them."""
        gaussian = lib.vae_likelihood_name(cfg.likelihood).decode() == "gaussian"
        if self.variance != "fixed" and not gaussian:
            raise ValueError("variance=%r needs likelihood=\"gaussian\"" % (self.variance,))
        # (as float32: a loaded model's parameters hold the float32 defaults)
        if np.float32(self.sigma) != np.float32(1.0) and (not gaussian or
                                                          self.variance != "fixed"):
            raise ValueError("sigma is a fixed Gaussian variance's (likelihood=\"gaussian\", "
                             "variance=\"fixed\")")
        if np.float32(self.variance_floor) != np.float32(1e-3) and (not gaussian or
                                                                    self.variance == "fixed"):
            raise ValueError("variance_floor bounds a learned variance (likelihood="
                             "\"gaussian\", variance=\"dim\" or \"sample\")")

    def _config(self, dim, n_classes):
        cfg = _lib.Config()
        if self.preset:
            _call(lib.vae_config_preset, ctypes.byref(cfg), str(self.preset).encode(), dim)
        else:
            cfg.input_dim = dim
            cfg.latent_dim = 20
            cfg.n_encoder = cfg.n_decoder = 1
            cfg.encoder[0] = cfg.decoder[0] = 400
        for field, widths in (("encoder", self.encoder), ("decoder", self.decoder)):
            if widths is not None:
                widths = [int(w) for w in np.atleast_1d(widths)]
                if not 1 <= len(widths) <= _lib.MAX_HIDDEN:
                    raise ValueError("%s: 1 to %d hidden layers" % (field, _lib.MAX_HIDDEN))
                setattr(cfg, "n_" + field, len(widths))
                for i, w in enumerate(widths):
                    getattr(cfg, field)[i] = w
        if self.latent is not None:
            cfg.latent_dim = int(self.latent)
        cfg.activation = _parse(lib.vae_activation_parse, self.activation, "activation")
        cfg.likelihood = _parse(lib.vae_likelihood_parse, self.likelihood, "likelihood")
        cfg.variance = _parse(lib.vae_variance_parse, self.variance, "variance")
        cfg.sigma = float(self.sigma)
        cfg.variance_floor = float(self.variance_floor)
        self._check_variance(cfg)
        if self.conv:
            _call(lib.vae_conv_layers_parse, str(self.conv).encode(), ctypes.byref(cfg))
        if cfg.n_conv:
            rows, cols = self.image_shape or (int(round(math.sqrt(dim))),) * 2
            cfg.image_channels, cfg.image_rows, cfg.image_cols = 1, rows, cols
        cfg.missing = int(bool(self.missing))
        cfg.n_classes = n_classes
        _call(lib.vae_config_validate, ctypes.byref(cfg), context="the architecture")
        return cfg

    # ------------------------------------------------------------ arrays in

    def _array(self, X, what="X", dim=None, allow_nan=None):
        """X as a float32 C-contiguous 2-D array (X itself when it already is one), checked
        before any work: shape, finiteness (NaN only for a missing-value model)."""
        if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError("%s: a sparse matrix was passed, but dense data is required; use "
                            "X.toarray()" % what)
        X = np.asarray(X)
        if X.dtype == object:
            X = X.astype(np.float64)
        if np.iscomplexobj(X):
            raise ValueError("%s: Complex data not supported" % what)
        if X.ndim != 2:  # in scikit-learn's words, which its users (and checks) know
            raise ValueError("%s: expected a 2-D array (samples, features), got %d-D with shape "
                             "%s. Reshape your data either using X.reshape(-1, 1) if it has a "
                             "single feature or X.reshape(1, -1) if it is a single sample"
                             % (what, X.ndim, X.shape))
        for axis, name in ((0, "sample"), (1, "feature")):
            if X.shape[axis] == 0:
                raise ValueError("%s: found array with 0 %s(s) (shape=%s) while a minimum of 1 "
                                 "is required." % (what, name, X.shape))
        if dim is not None and X.shape[1] != dim:
            raise ValueError("%s has %d features, but this VAE is expecting %d features as input"
                             % (what, X.shape[1], dim))
        if not np.issubdtype(X.dtype, np.number) and X.dtype != bool:
            raise ValueError("%s: dtype %s is not numeric" % (what, X.dtype))
        X = np.ascontiguousarray(X, dtype=np.float32)
        if allow_nan is None:
            allow_nan = bool(self.missing)
        if not _all_finite(X):  # the elementwise checks (a mask as large as X) only then
            if np.isinf(X).any():
                raise ValueError("%s: Input contains infinity or a value too large for float32"
                                 % what)
            if not allow_nan:
                raise ValueError("%s: Input contains NaN; a model of data with missing values "
                                 "is made with VAE(missing=True)" % what)
        return X

    def _labels(self, y, n, required):
        if y is None:
            if required:
                raise ValueError("this conditional VAE needs labels y (integers 0..255)")
            return None
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError("y: expected %d labels in a 1-D array, got shape %s" % (n, y.shape))
        if y.size and (not np.all(np.isfinite(y.astype(np.float64))) or
                       np.any(y != np.round(y)) or y.min() < 0 or y.max() > 255):
            raise ValueError("y: labels must be integers 0..255")
        return np.ascontiguousarray(y, dtype=np.uint8)

    def _use_backend(self, batch):
        if self.backend is None:  # the program's default
            backend = lib.vae_backend_default()
        else:
            backend = _parse(lib.vae_backend_parse, self.backend, "backend")
        _call(lib.vae_model_set_backend, self._model, backend, int(batch), None)

    def _use_threads(self):
        """The library's thread count is process-wide: each call sets this model's (None: one
        per core that other processes leave free)."""
        lib.vae_set_num_threads(int(self.threads) if self.threads is not None else 0)

    def _data(self, X, y=None, what="X"):
        """A library data set of X (and y for a conditional model): NaN become a mask (and 0)
        for a missing-value model."""
        self._check_fitted()
        self._use_threads()
        cfg = self.config_
        X = self._array(X, what, dim=cfg.input_dim, allow_nan=bool(cfg.missing))
        labels = self._labels(y, X.shape[0], cfg.n_classes > 0) if cfg.n_classes else None
        return self._dataset(X, labels, bool(cfg.missing))

    def _dataset(self, X, labels, may_have_nan):
        """X (checked by _array) and labels as a library data set; only a missing-value model's
        X can hold NaN, which become its mask (and 0)."""
        mask = None
        nan = np.isnan(X) if may_have_nan and not _all_finite(X) else None
        if nan is not None and nan.any():
            mask = np.ascontiguousarray(~nan, dtype=np.uint8)
            X = np.where(nan, np.float32(0), X)
            if (mask.sum(axis=1) == 0).any():
                raise ValueError("X: sample %d has no observed value"
                                 % (int(np.argmin(mask.sum(axis=1))) + 1))
        return _Data(X, labels, mask, getattr(self, "image_shape_", None))

    # ------------------------------------------------------------ training

    def fit(self, X, y=None, epochs=None, batch_size=None, validation_data=None, callback=None):
        """Trains a new model on X (n_samples, n_features); y: labels for a conditional model
        (ignored otherwise, as scikit-learn's transformers do). validation_data: X_val or
        (X_val, y_val), evaluated after each epoch. callback(stats): called after each epoch
        with that epoch's dict (also appended to history_); returning True stops training.
        Ctrl-C stops at the end of the step, leaves the model usable and raises
        KeyboardInterrupt. Returns self."""
        X = self._array(X)
        n_classes = 0
        labels = None
        if self.conditional:
            labels = self._labels(y, X.shape[0], True)
            n_classes = int(labels.max()) + 1
        self._release()
        self.n_features_in_ = X.shape[1]
        self.image_shape_ = tuple(self.image_shape) if self.image_shape else (
            (int(math.isqrt(X.shape[1])),) * 2 if math.isqrt(X.shape[1]) ** 2 == X.shape[1]
            else None)
        cfg = self._config(X.shape[1], n_classes)
        model = ctypes.c_void_p()
        _call(lib.vae_model_create, ctypes.byref(model), ctypes.byref(cfg), int(self.seed))
        self._model = model
        self._use_threads()
        self._use_backend(batch_size if batch_size is not None else self.batch_size)
        if self.standardize:
            self._fit_standardization(X)
        train = self._dataset(X, labels, bool(self.missing))
        test = None
        if validation_data is not None:
            vx, vy = validation_data if isinstance(validation_data, tuple) else (validation_data, None)
            test = self._data(vx, vy, "validation_data")
        self.history_ = []
        self._train(train, test, epochs, batch_size, callback)
        return self

    def _fit_standardization(self, X):
        d = X.shape[1]
        mean, std = np.empty(d, np.float32), np.empty(d, np.float32)
        data = self._dataset(X, None, bool(self.missing))
        lib.vae_standardize_fit(data.ref, _ptr(mean, ctypes.c_float), _ptr(std, ctypes.c_float))
        _call(lib.vae_model_set_standardization, self._model, _ptr(mean, ctypes.c_float),
              _ptr(std, ctypes.c_float))

    def _options(self, epochs, batch_size):
        opt = _lib.TrainOptions()
        lib.vae_train_options_default(ctypes.byref(opt))
        opt.epochs = int(epochs if epochs is not None else self.epochs)
        opt.batch_size = int(batch_size if batch_size is not None else self.batch_size)
        opt.seed = int(self.seed)
        opt.adam.lr = float(self.lr)
        opt.beta = float(self.beta)
        opt.kl_warmup = int(self.kl_warmup)
        opt.free_bits = float(self.free_bits)
        opt.iwae_k = int(self.iwae)
        opt.device = _parse(lib.vae_device_parse, self.device, "device")
        opt.precision = _parse(lib.vae_precision_parse, self.precision, "precision")
        if self.precision == "tf32" and self.device == "cpu":  # else fp32's, unsaid
            raise ValueError("precision=\"tf32\" is a GPU's; device=\"cpu\" computes "
                             "\"fp32\" or \"bf16\"")
        if self.precision == "bf16" and self.backend == "openblas":  # else oneDNN's, unasked
            raise ValueError("precision=\"bf16\" runs its products on oneDNN; "
                             "backend=\"openblas\" has none (use \"onednn\", \"auto\" or None)")
        if self.batch_threads not in (False, True, 0, 1, "prepacked", "auto"):
            raise ValueError("batch_threads: expected False, True, \"prepacked\" or \"auto\","
                             " got %r" % (self.batch_threads,))
        opt.batch_threads = (2 if self.batch_threads == "prepacked" else
                             int(self.batch_threads is True or self.batch_threads == 1))
        if opt.batch_threads and self.device == "cuda":  # else the GPU's whole batch, unsaid
            raise ValueError("batch_threads=%r: the threads split the CPU's work; device="
                             "\"cuda\" runs each batch whole on the GPU" % (self.batch_threads,))
        if opt.batch_threads and opt.free_bits > 0:  # else the products' split, unasked
            raise ValueError("batch_threads=%r: free bits floor each latent unit's KL over the "
                             "whole batch, which a thread's slice does not see (False or "
                             "\"auto\")" % (self.batch_threads,))
        return opt

    def _train(self, train, test, epochs, batch_size, callback):
        opt = self._options(epochs, batch_size)
        _call(lib.vae_train_check, self._model, train.ref, test.ref if test else None,
              ctypes.byref(opt))
        if self.batch_threads == "auto":
            chosen = ctypes.c_int()
            _call(lib.vae_train_batch_threads_auto, self._model, ctypes.byref(opt),
                  ctypes.byref(chosen))
            opt.batch_threads = chosen.value
        self.batch_threads_ = "prepacked" if opt.batch_threads == 2 else bool(opt.batch_threads)
        adam = ctypes.c_void_p()
        _call(lib.vae_adam_create, ctypes.byref(adam), lib.vae_model_num_params(self._model),
              ctypes.byref(opt.adam))
        run = _Run(self, opt, train.struct.count, callback)
        try:
            with run.signals():
                # one call per epoch, each resuming where the last stopped (the same bits as
                # one call: shuffling and noise depend only on the seed, epoch and step): a
                # callback's stop takes effect exactly at an epoch's end
                total = opt.epochs
                for epoch in range(1, total + 1):
                    opt.epochs, opt.start = epoch, _lib.TrainPosition(epoch=epoch)
                    opt.resume_adam = adam
                    opt.progress, opt.on_epoch = run.progress_fn, run.epoch_fn
                    err = _lib.Error()
                    status = lib.vae_train(self._model, train.ref, test.ref if test else None,
                                           ctypes.byref(opt), ctypes.byref(err))
                    if run.error is not None:
                        raise run.error
                    if status == _CANCELLED and run.interrupted:
                        break
                    if status != 0:
                        _raise(status, err, "training")
                    if run.stop:
                        break
        finally:
            lib.vae_adam_free(adam)
            run.close()
        self.n_iter_ = len(self.history_)
        if run.interrupted:
            raise KeyboardInterrupt("training stopped after epoch %d, step %d; the model is "
                                    "usable" % (run.epoch, run.step))

    # ------------------------------------------------------------ using the model

    def transform(self, X, y=None, sample=False, seed=None):
        """The posterior means E[z|x] (n, latent) of X; sample=True: one draw
        z = mu + sigma * eps per row instead (row i's noise from stream (seed, i), as
        `vae encode --sample`)."""
        data = self._data(X, y)
        n, latent = data.struct.count, self.config_.latent_dim
        mu = np.empty((n, latent), np.float32)
        logvar = np.empty((n, latent), np.float32) if sample else None
        _call(lib.vae_encode_data, self._model, data.ref, _ptr(mu, ctypes.c_float),
              _ptr(logvar, ctypes.c_float), context="transform")
        if not sample:
            return mu
        eps = self._normal(n, latent, self.seed if seed is None else seed, per_row=True)
        return (mu + np.exp(0.5 * logvar.astype(np.float64)) * eps).astype(np.float32)

    def fit_transform(self, X, y=None, **fit_params):
        return self.fit(X, y, **fit_params).transform(X, y)

    def _normal(self, n, dim, seed, per_row=False, stream=0x9A11E7):
        out = np.empty((n, dim), np.float32)
        if per_row:
            for i in range(n):
                rng = lib.vae_rng_make(int(seed), i)
                lib.vae_rng_normal(ctypes.byref(rng), _ptr(out[i], ctypes.c_float), dim)
        else:
            rng = lib.vae_rng_make(int(seed), stream)
            lib.vae_rng_normal(ctypes.byref(rng), _ptr(out, ctypes.c_float), n * dim)
        return out

    def inverse_transform(self, Z, y=None):
        """The decoded means E[x|z] (n, features) of latent points Z (n, latent), in the
        data's units."""
        self._check_fitted()
        self._use_threads()
        cfg = self.config_
        Z = self._array(Z, "Z", dim=cfg.latent_dim, allow_nan=False)
        labels = self._labels(y, Z.shape[0], cfg.n_classes > 0) if cfg.n_classes else None
        out = np.empty((Z.shape[0], cfg.input_dim), np.float32)
        _call(lib.vae_decode_all, self._model, _ptr(Z, ctypes.c_float),
              _ptr(labels, ctypes.c_uint8), Z.shape[0], _ptr(out, ctypes.c_float),
              context="inverse_transform")
        return out

    def reconstruct(self, X, y=None):
        """Each row encoded to its posterior mean and decoded: E[x | z = E[z|x]]."""
        return self.inverse_transform(self.transform(X, y), y)

    def sample(self, n=1, label=None, seed=None):
        """n new samples: z from the prior N(0, I) (the draws `vae sample --npy` makes with
        the same seed), decoded to their means; label: the class of a conditional model."""
        self._check_fitted()
        cfg = self.config_
        n = int(n)
        if n < 1:
            raise ValueError("sample: n must be >= 1")
        if cfg.n_classes and label is None:
            raise ValueError("sample: this conditional VAE needs label= (0..%d)" % (cfg.n_classes - 1))
        if label is not None and not cfg.n_classes:
            raise ValueError("sample: label= is for a conditional VAE; this one is not")
        if label is not None and not 0 <= int(label) < cfg.n_classes:
            raise ValueError("sample: label %d: the model has classes 0..%d" % (label, cfg.n_classes - 1))
        z = self._normal(n, cfg.latent_dim, self.seed if seed is None else seed)
        y = np.full(n, int(label), np.uint8) if label is not None else None
        return self.inverse_transform(z, y)

    def _eval(self, X, y, k, seed, per_sample=True):
        data = self._data(X, y)
        opt = _lib.EvalOptions()
        lib.vae_eval_options_default(ctypes.byref(opt))
        opt.importance_samples = int(k)
        opt.seed = int(self.seed if seed is None else seed)
        result = _lib.EvalResult()
        table = np.empty((data.struct.count, 4), np.float64) if per_sample else None
        _call(lib.vae_eval, self._model, data.ref, ctypes.byref(opt), ctypes.byref(result),
              _ptr(table, ctypes.c_double), context="evaluation")
        return result, table

    def elbo(self, X, y=None, seed=None):
        """The ELBO of each row (one reparameterized draw, analytic KL) with its split:
        a dict of arrays "elbo", "recon" (the expected negative log-likelihood) and "kl",
        in nats; elbo = -(recon + kl)."""
        _, t = self._eval(X, y, 0, seed)
        return {"elbo": -t[:, 0], "recon": t[:, 1], "kl": t[:, 2]}

    def score_samples(self, X, y=None, k=1000, seed=None):
        """log p(x) of each row, estimated by importance sampling with k draws (Burda et al.;
        a lower bound that tightens with k); k=0 gives the ELBO. Higher is more typical."""
        _, t = self._eval(X, y, k, seed)
        return -t[:, 3] if k else -t[:, 0]

    def score(self, X, y=None, k=1000, seed=None):
        """The mean of score_samples (scikit-learn's convention: higher is better)."""
        return float(np.mean(self.score_samples(X, y, k=k, seed=seed)))

    def active_units(self, X, y=None):
        """Latent units whose posterior mean varies over X (Cov_x E[z_u|x] > 0.01)."""
        result, _ = self._eval(X, y, 0, None, per_sample=False)
        return int(result.active_units)

    def impute(self, X, multiple=None, k=100, seed=None):
        """X with its NaN filled in (a model fitted with missing=True): the importance-weighted
        conditional mean over k draws, or with multiple=M an array (M, n, features) of draws
        from the posterior predictive. Observed values are returned as they were."""
        self._check_fitted()
        if not self.config_.missing:
            raise ValueError("impute: this VAE was not fitted with missing=True")
        data = self._data(X)
        m = int(multiple) if multiple else 0
        out = np.empty((max(1, m), data.struct.count, data.struct.dim), np.float32)
        _call(lib.vae_impute, self._model, data.ref, int(k), m,
              int(self.seed if seed is None else seed), _ptr(out, ctypes.c_float),
              context="impute")
        return out if m else out[0]  # observed values: the caller's, bit for bit

    # ------------------------------------------------------------ files

    def save(self, path):
        """Writes the model as a safetensors file that `vae` reads (vae info, sample, ...)."""
        self._check_fitted()
        state = _lib.TrainState()
        state.preset = str(self.preset or "").encode()[:31]
        if getattr(self, "image_shape_", None):
            state.data_rows, state.data_cols = self.image_shape_
        state.seed = int(self.seed)
        state.batch_size = int(self.batch_size)
        epochs = len(getattr(self, "history_", [])) or 0
        state.epochs = epochs
        state.position = _lib.TrainPosition(epoch=epochs + 1)
        state.beta, state.free_bits = float(self.beta), float(self.free_bits)
        state.kl_warmup, state.iwae_k = int(self.kl_warmup), int(self.iwae)
        _call(lib.vae_model_save, os.fsencode(path), self._model, None, ctypes.byref(state),
              context=str(path))

    @classmethod
    def load(cls, path, **params):
        """A VAE from a model file written by save() or by `vae train` (model.safetensors or
        a checkpoint); params override what the file says (threads, verbose, ...)."""
        model = ctypes.c_void_p()
        state = _lib.TrainState()
        _call(lib.vae_model_load, os.fsencode(path), ctypes.byref(model), None,
              ctypes.byref(state), context=str(path))
        cfg = lib.vae_model_config(model).contents
        likelihood = lib.vae_likelihood_name(cfg.likelihood).decode()
        variance = lib.vae_variance_name(cfg.variance).decode()
        gaussian, fixed = likelihood == "gaussian", variance == "fixed"
        self = cls(preset=state.preset.decode() or None,
                   encoder=tuple(cfg.encoder[:cfg.n_encoder]),
                   decoder=tuple(cfg.decoder[:cfg.n_decoder]), latent=cfg.latent_dim,
                   activation=lib.vae_activation_name(cfg.activation).decode(),
                   likelihood=likelihood, variance=variance,
                   # a file keeps only what its likelihood uses: the rest are the defaults
                   sigma=cfg.sigma if gaussian and fixed else 1.0,
                   variance_floor=cfg.variance_floor if gaussian and not fixed else 1e-3,
                   conditional=cfg.n_classes > 0,
                   missing=bool(cfg.missing),
                   standardize=bool(lib.vae_model_data_mean(model)),
                   epochs=state.epochs or 10, batch_size=state.batch_size or 128,
                   seed=state.seed or 1, beta=state.beta, free_bits=state.free_bits,
                   kl_warmup=state.kl_warmup, iwae=state.iwae_k)
        self.set_params(**params)
        self._model = model
        self._use_threads()
        self._use_backend(500)  # the batch of encode/decode/eval passes
        self.n_features_in_ = cfg.input_dim
        self.image_shape_ = (state.data_rows, state.data_cols) if state.data_rows else None
        self.history_ = []
        return self

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k != "_model"}
        if self.__dict__.get("_model"):
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "model.safetensors")
                self.save(path)
                with open(path, "rb") as f:
                    state["_model_bytes"] = f.read()
        return state

    def __setstate__(self, state):
        blob = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if blob is not None:
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "model.safetensors")
                with open(path, "wb") as f:
                    f.write(blob)
                other = VAE.load(path)
                self._model, other._model = other._model, None

    def weights(self):
        """The parameters as a dict of numpy arrays (copies), named as in the model file."""
        self._check_fitted()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model.safetensors")
            self.save(path)
            return read_safetensors(path)


def read_safetensors(path):
    """The tensors of a safetensors file as a dict of float32 numpy arrays (a 20-line reader:
    the format is an 8-byte header length, a JSON header, the raw tensors)."""
    import json
    import struct
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(blob[8 + n + a:8 + n + b], dtype="<f4").reshape(t["shape"])
    return out


class _Run:
    """The callbacks of one fit(): the progress bar, the history, a callback's stop and
    Ctrl-C (which, during fit, only sets a flag: the library stops after the step)."""

    def __init__(self, owner, opt, n, callback):
        self.owner, self.callback = owner, callback
        self.total_epochs = opt.epochs
        self.steps = (n + opt.batch_size - 1) // opt.batch_size
        self.stop = self.interrupted = False
        self.error = None
        self.epoch = self.step = 0
        self.bar = _Bar(owner.verbose, self.total_epochs, self.steps)
        self.progress_fn = _lib.PROGRESS_FN(self._progress)
        self.epoch_fn = _lib.EPOCH_FN(self._on_epoch)

    def _progress(self, user, epoch, step, steps, loss):
        self.epoch, self.step = epoch, step
        try:
            self.bar.update(epoch, step, loss)
        except Exception as e:  # a broken stderr must not lose the run
            self.error = e
            return 1
        return 1 if self.interrupted else 0

    def _on_epoch(self, user, stats):
        s = stats.contents
        record = {"epoch": s.epoch, "loss": s.train_loss, "recon": s.train_recon,
                  "kl": s.train_kl, "seconds": s.seconds,
                  "samples_per_second": s.samples_per_second}
        if not math.isnan(s.test_loss):
            record.update(val_loss=s.test_loss, val_recon=s.test_recon, val_kl=s.test_kl)
        self.owner.history_.append(record)
        self.bar.end_epoch(record)
        if self.callback is not None:
            try:
                if self.callback(dict(record)):
                    self.stop = True
            except BaseException as e:  # raised after the library returns
                self.error = e

    def signals(self):
        run = self

        class _Guard:
            def __enter__(self):
                self.previous = None
                if threading.current_thread() is threading.main_thread():
                    self.previous = signal.signal(signal.SIGINT, run._on_sigint)

            def __exit__(self, *exc):
                if self.previous is not None:
                    signal.signal(signal.SIGINT, self.previous)
                return False
        return _Guard()

    def _on_sigint(self, signum, frame):
        if self.interrupted:  # a second Ctrl-C: at once
            raise KeyboardInterrupt
        self.interrupted = True

    def close(self):
        self.bar.close()


class _Bar:
    """A tqdm-like progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, verbose, epochs, steps):
        self.on = bool(verbose)
        self.epochs, self.steps = epochs, steps
        self.last = 0.0
        self.t0 = time.monotonic()

    def update(self, epoch, step, loss):
        now = time.monotonic()
        if not self.on or (now - self.last < 0.1 and step < self.steps):
            return
        if step == 1:
            self.t0 = now
        self.last = now
        width = 24
        filled = int(width * step / max(1, self.steps))
        rate = ", %.1f steps/s" % ((step - 1) / (now - self.t0)) if step > 1 else ""
        sys.stderr.write("\repoch %d/%d |%s%s| %d/%d [loss %.3f%s]" % (
            epoch, self.epochs, "#" * filled, " " * (width - filled), step, self.steps, loss,
            rate))
        sys.stderr.flush()

    def end_epoch(self, record):
        if not self.on:
            return
        val = " val_loss %.3f" % record["val_loss"] if "val_loss" in record else ""
        sys.stderr.write("\repoch %d/%d: loss %.3f (recon %.3f + KL %.3f)%s, %.0f samples/s%s\n"
                         % (record["epoch"], self.epochs, record["loss"], record["recon"],
                            record["kl"], val, record["samples_per_second"], " " * 20))
        sys.stderr.flush()

    def close(self):
        pass

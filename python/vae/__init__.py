"""vae — variational autoencoders in Python over libvae (the C library of the vae toolkit).

    import vae
    model = vae.VAE(preset="pytorch", epochs=10).fit(X)   # X: (n, 784) float32 in [0, 1]
    Z = model.transform(X)                                 # posterior means
    images = model.sample(16)                              # decoded draws from the prior
    model.save("model.safetensors")                        # `vae info model.safetensors`

Arrays that are float32 and C-contiguous reach the library without a copy; others are
converted once. Library failures raise vae.VAEError (vae.VAEInputError, also a ValueError, for
refused input)."""
from ._lib import version as __version__  # noqa: F401  (the library's, from vae.h)
from ._lib import path as library_path  # noqa: F401
from .datasets import load_fashion_mnist, read_idx  # noqa: F401
from .model import VAE, NotFittedError, VAEError, VAEInputError, read_safetensors  # noqa: F401

__all__ = ["VAE", "VAEError", "VAEInputError", "NotFittedError", "load", "read_safetensors",
           "load_fashion_mnist", "read_idx"]


def load(path, **params):
    """VAE.load(path): a model file of `vae train` or VAE.save."""
    return VAE.load(path, **params)

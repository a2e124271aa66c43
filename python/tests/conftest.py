"""Fixtures of the Python suite: the package from this source tree, the vae program beside it
(VAE_PROGRAM, default ../build/vae), small real data sets."""
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
ROOT = os.path.dirname(os.path.dirname(HERE))

import vae  # noqa: E402


@pytest.fixture(scope="session")
def program():
    path = os.environ.get("VAE_PROGRAM", os.path.join(ROOT, "build", "vae"))
    if not os.access(path, os.X_OK):
        pytest.skip("the vae program is not built (%s)" % path)
    return path


def run(program, *args):
    """Runs the vae program; its stdout, or the test fails with its stderr."""
    p = subprocess.run([program, *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, "vae %s: exit %d: %s" % (" ".join(map(str, args)), p.returncode,
                                                        p.stderr)
    return p.stdout


@pytest.fixture(scope="session")
def fmnist():
    """2,000 Fashion-MNIST test images (float32 in [0,1]) and their labels."""
    X, y = vae.load_fashion_mnist("t10k")
    return np.ascontiguousarray(X[:2000]), y[:2000]


@pytest.fixture(scope="session")
def small_model(fmnist):
    X, _ = fmnist
    return vae.VAE(encoder=(64,), decoder=(64,), latent=4, epochs=5, verbose=0, threads=1).fit(X)


def table(n=400, seed=3):
    """A table of 5 correlated real columns from 2 hidden factors."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, 2))
    w = np.array([[1.0, 0.5, -1.0, 2.0, 0.0], [0.0, 1.0, 1.0, -0.5, 3.0]])
    return (f @ w + 10 + 0.1 * rng.normal(size=(n, 5))).astype(np.float32)

"""datasets.py — IDX files (MNIST's format) and Fashion-MNIST from Debian's
dataset-fashion-mnist, as numpy arrays."""
import gzip
import os
import struct

import numpy as np

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy array of its shape: images (n, rows, cols) as
    uint8, labels (n,)."""
    opener = gzip.open if open(path, "rb").read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        blob = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", blob[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError("%s: not an IDX file of unsigned bytes" % path)
    shape = struct.unpack(">%dI" % ndim, blob[4:4 + 4 * ndim])
    data = np.frombuffer(blob, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError("%s: %d bytes of data for shape %s" % (path, data.size, shape))
    return data.reshape(shape)


def load_fashion_mnist(kind="train", folder=None):
    """(X, y): Fashion-MNIST's images as float32 rows of 784 values in [0, 1] and their labels
    (0..9); kind "train" (60,000) or "t10k" (10,000)."""
    folder = folder or os.environ.get("FMNIST", FASHION_MNIST)
    images = read_idx(os.path.join(folder, "%s-images-idx3-ubyte.gz" % kind))
    labels = read_idx(os.path.join(folder, "%s-labels-idx1-ubyte.gz" % kind))
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= np.float32(255.0)
    return X, labels.astype(np.int64)

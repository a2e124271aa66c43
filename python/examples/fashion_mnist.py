"""fashion_mnist.py — train a VAE on Fashion-MNIST from Python and draw what it learned: new
images sampled from the prior and the test images' latent means (their first two principal
components when the latent has more than two dimensions), colored by class.

    PYTHONPATH=python /usr/bin/python3 python/examples/fashion_mnist.py [OUT.png] [EPOCHS]

Needs Debian's python3-numpy and python3-matplotlib, and the data of dataset-fashion-mnist."""
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import vae  # noqa: E402

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def main(out="fashion_mnist.png", epochs=10):
    X, _ = vae.load_fashion_mnist("train")
    X_test, y_test = vae.load_fashion_mnist("t10k")
    model = vae.VAE(preset="pytorch", epochs=epochs).fit(X, validation_data=X_test)
    samples = model.sample(64, seed=1).reshape(8, 8, 28, 28)
    Z = model.transform(X_test)
    if Z.shape[1] > 2:  # the plane of the two directions the means vary most along
        Zc = Z - Z.mean(axis=0)
        Z = Zc @ np.linalg.svd(Zc, full_matrices=False)[2][:2].T

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    left.imshow(samples.transpose(0, 2, 1, 3).reshape(8 * 28, 8 * 28), cmap="gray_r")
    left.set_title("64 samples from the prior")
    left.axis("off")
    points = right.scatter(Z[:, 0], Z[:, 1], c=y_test, cmap="tab10", s=2)
    right.legend(points.legend_elements()[0], CLASSES, fontsize=8, markerscale=1.5)
    right.set_title("test images' latent means (PCA of %d dims)" % model.latent_dim_)
    last = model.history_[-1]
    fig.suptitle("vae %s, %d epochs: test -ELBO %.2f nats" % (vae.__version__, len(model.history_),
                                                                last["val_loss"]))
    fig.savefig(out, dpi=100, bbox_inches="tight")
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fashion_mnist.png",
         int(sys.argv[2]) if len(sys.argv) > 2 else 10)

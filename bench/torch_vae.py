"""PyTorch reference VAE for side-by-side comparison (CPU).

The canonical PyTorch example VAE (preset 'pytorch': 784-400-(20)-400-784, relu) or the seed
article's architecture done right (preset 'seed': 784-128-64-32-(2)-256-128-64-784, relu),
Bernoulli likelihood on pixels scaled to [0,1], analytic KL, Adam, on Fashion-MNIST IDX files.
Needs Debian's python3-torch and python3-numpy; run with /usr/bin/python3.

Prints one line per epoch:
  epoch E train_loss L test_loss T train_samples_per_s S epoch_s SECONDS
Losses are the negative ELBO per image in nats (BCE summed over pixels + KL), test loss with the
reparameterized sample, as in the PyTorch example.

  /usr/bin/python3 bench/torch_vae.py --epochs 10 --threads 2 --batch 128 --preset pytorch
--bf16 runs the forward under torch.autocast (bf16 products, fp32 weights and loss), the
counterpart of vae's --precision bf16.
Subnormal floats are flushed to zero (torch.set_flush_denormal) unless --keep-subnormals: Adam's
moments of weights that never get a gradient (pixels that are 0 in every image) decay into them
in the second epoch, and on x86 each operation on one takes a ~100x slower microcode assist.
vae's Adam flushes them (src/core/fpenv.c); PyTorch is given the same, its best setting.
"""
import argparse, gzip, struct, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {"pytorch": ([400], 20, [400]), "seed": ([128, 64, 32], 2, [256, 128, 64])}


def read_idx_images(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    n, rows, cols = struct.unpack(">III", raw[4:16])
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows * cols).astype(np.float32) / 255.0


def mlp(sizes):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class VAE(nn.Module):
    def __init__(self, dim, enc, latent, dec):
        super().__init__()
        self.enc = mlp([dim] + enc)
        self.mu = nn.Linear(enc[-1], latent)
        self.logvar = nn.Linear(enc[-1], latent)
        self.dec = nn.Sequential(mlp([latent] + dec), nn.Linear(dec[-1], dim))

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(logvar) * torch.exp(0.5 * logvar)
        return self.dec(z), mu, logvar


def neg_elbo_sum(logits, x, mu, logvar):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon + kl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--preset", choices=PRESETS, default="pytorch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--bf16", action="store_true",
                    help="train under torch.autocast('cpu', bfloat16): PyTorch's bf16 products")
    ap.add_argument("--keep-subnormals", action="store_true",
                    help="PyTorch's default: subnormal floats computed in full, ~100x slower on x86 "
                         "(by default flushed to zero, as vae's Adam does)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(not a.keep_subnormals)
    torch.manual_seed(a.seed)
    xtr = torch.from_numpy(read_idx_images(f"{a.data}/train-images-idx3-ubyte.gz"))
    xte = torch.from_numpy(read_idx_images(f"{a.data}/t10k-images-idx3-ubyte.gz"))
    enc, latent, dec = PRESETS[a.preset]
    model = VAE(xtr.shape[1], enc, latent, dec)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(len(xtr))
        total, t0 = 0.0, time.perf_counter()
        model.train()
        for i in range(0, len(xtr), a.batch):
            x = xtr[perm[i:i + a.batch]]
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                logits, mu, logvar = model(x)
            loss = neg_elbo_sum(logits.float(), x, mu.float(), logvar.float())
            loss.backward()
            opt.step()
            total += loss.item()
        seconds = time.perf_counter() - t0
        model.eval()
        test = 0.0
        with torch.no_grad():
            for i in range(0, len(xte), 1000):
                x = xte[i:i + 1000]
                logits, mu, logvar = model(x)
                test += neg_elbo_sum(logits, x, mu, logvar).item()
        print(f"epoch {epoch} train_loss {total / len(xtr):.3f} test_loss {test / len(xte):.3f} "
              f"train_samples_per_s {len(xtr) / seconds:.0f} epoch_s {seconds:.2f}", flush=True)


if __name__ == "__main__":
    main()

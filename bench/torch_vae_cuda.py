"""PyTorch twin of `vae train --device cuda` for bench/cuda.sh: the canonical VAE
(784-400-(20)-400-784, ReLU, Bernoulli, Adam 1e-3) and vae's conv preset (Conv2d 32x4s2p1,
64x4s2p1, dense 256, (20), mirrored with ConvTranspose2d) on Fashion-MNIST held on the GPU,
trained the fastest ways plain PyTorch offers: eager with fused Adam, and the whole step
(forward, backward, fused capturable Adam) captured once as a CUDA graph and replayed. Prints
one line per setting:

  torch batch B mode M precision P model N epochs E samples_per_s S test_neg_elbo T

    python3 bench/torch_vae_cuda.py --data DIR [--epochs 10] [--settings 128:graph:fp32:mlp,...]
"""
import argparse
import gzip
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def load_images(path):
    raw = gzip.open(path).read()
    count, rows, cols = struct.unpack(">III", raw[4:16])
    pixels = np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows * cols)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


class Vae(nn.Module):
    def __init__(self, dim=784, hidden=400, latent=20):
        super().__init__()
        self.enc = nn.Linear(dim, hidden)
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.dec = nn.Linear(latent, hidden)
        self.out = nn.Linear(hidden, dim)

    def loss(self, x, eps):
        """Sums of the reconstruction and KL terms over the batch."""
        h = F.relu(self.enc(x))
        mu, lv = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * lv) * eps
        logits = self.out(F.relu(self.dec(z)))
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + lv - mu * mu - lv.exp())
        return recon, kl


class ConvVae(nn.Module):
    def __init__(self, latent=20):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(3136, 256), nn.ReLU())
        self.mu = nn.Linear(256, latent)
        self.logvar = nn.Linear(256, latent)
        self.dec = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 3136), nn.ReLU(),
                                 nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1),
                                 nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Flatten())

    def loss(self, x, eps):
        h = self.enc(x.view(-1, 1, 28, 28))
        mu, lv = self.mu(h), self.logvar(h)
        logits = self.dec(mu + torch.exp(0.5 * lv) * eps)
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + lv - mu * mu - lv.exp())
        return recon, kl


def train(xtr, xte, batch, epochs, mode, kind):
    torch.manual_seed(1)
    model = (ConvVae() if kind == "conv" else Vae()).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True, capturable=(mode == "graph"))
    steps = len(xtr) // batch
    step_x = torch.zeros(batch, xtr.shape[1], device="cuda")
    step_eps = torch.zeros(batch, 20, device="cuda")

    def step():
        opt.zero_grad(set_to_none=False)
        recon, kl = model.loss(step_x, step_eps)
        ((recon + kl) / batch).backward()
        opt.step()

    if mode == "graph":  # warm up on a side stream, then capture one step
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
    seconds = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(xtr), device="cuda")
        noise = torch.randn(steps * batch, 20, device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(steps):
            step_x.copy_(xtr[order[i * batch:(i + 1) * batch]])
            step_eps.copy_(noise[i * batch:(i + 1) * batch])
            graph.replay() if mode == "graph" else step()
        torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
    with torch.no_grad():
        total = 0.0
        for i in range(0, len(xte), 1000):
            xb = xte[i:i + 1000]
            recon, kl = model.loss(xb, torch.randn(len(xb), 20, device="cuda"))
            total += (recon + kl).item()
    return steps * batch * epochs / seconds, total / len(xte)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--settings", default="128:eager:fp32:mlp,128:graph:fp32:mlp,128:graph:tf32:mlp,"
                    "1024:graph:fp32:mlp,1024:graph:tf32:mlp,128:graph:fp32:conv,128:graph:tf32:conv")
    a = ap.parse_args()
    print("torch", torch.__version__, torch.cuda.get_device_name(0), flush=True)
    xtr = load_images(f"{a.data}/train-images-idx3-ubyte.gz").cuda()
    xte = load_images(f"{a.data}/t10k-images-idx3-ubyte.gz").cuda()
    for setting in a.settings.split(","):
        batch, mode, precision, kind = setting.split(":")
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"
        epochs = a.epochs if mode == "graph" and kind == "mlp" else min(a.epochs, 3)
        rate, test = train(xtr, xte, int(batch), epochs, mode, kind)
        print(f"torch batch {batch} mode {mode} precision {precision} model {kind} epochs {epochs} "
              f"samples_per_s {rate:.0f} test_neg_elbo {test:.2f}", flush=True)


if __name__ == "__main__":
    main()

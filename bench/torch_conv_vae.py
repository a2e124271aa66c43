"""PyTorch twin of vae's `conv` preset, for side-by-side speed and quality (CPU).

Conv2d(1,32,4,2,1) -> Conv2d(32,64,4,2,1) -> Linear(3136,256) -> heads (20) -> Linear(20,256)
-> Linear(256,3136) -> ConvTranspose2d(64,32,4,2,1) -> ConvTranspose2d(32,1,4,2,1), relu
between, Bernoulli logits, analytic KL, Adam, Fashion-MNIST. Prints, like torch_vae.py:
  epoch E train_loss L test_loss T train_samples_per_s S epoch_s SECONDS

  /usr/bin/python3 bench/torch_conv_vae.py --epochs 1 --threads 2
--bf16 and --keep-subnormals as in torch_vae.py (subnormals are flushed to zero by default).
"""
import argparse, gzip, struct, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx_images(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    n, rows, cols = struct.unpack(">III", raw[4:16])
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, rows, cols).astype(np.float32) / 255.0


class ConvVAE(nn.Module):
    def __init__(self, latent=20):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(3136, 256), nn.ReLU())
        self.mu = nn.Linear(256, latent)
        self.logvar = nn.Linear(256, latent)
        self.dec = nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, 3136), nn.ReLU(),
                                 nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1),
                                 nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(logvar) * torch.exp(0.5 * logvar)
        return self.dec(z), mu, logvar


def neg_elbo_sum(logits, x, mu, logvar):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    return recon - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--bf16", action="store_true",
                    help="train under torch.autocast('cpu', bfloat16), as vae's --precision bf16")
    ap.add_argument("--keep-subnormals", action="store_true",
                    help="PyTorch's default: subnormal floats computed in full, ~100x slower on x86 "
                         "(by default flushed to zero, as vae's Adam does)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(not a.keep_subnormals)
    torch.manual_seed(a.seed)
    xtr = torch.from_numpy(read_idx_images(f"{a.data}/train-images-idx3-ubyte.gz"))
    xte = torch.from_numpy(read_idx_images(f"{a.data}/t10k-images-idx3-ubyte.gz"))
    model = ConvVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(len(xtr))
        total, t0 = 0.0, time.perf_counter()
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

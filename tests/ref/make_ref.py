"""Writes tests/ref/vae_ref.bin: a PyTorch reference for the C engine (llm.c style).

Run by hand with Debian's python3-torch (CI never needs PyTorch):
    /usr/bin/python3 tests/ref/make_ref.py

For each activation (and for a small convolutional VAE, case "conv") it builds a small VAE with PyTorch's own nn.Linear initialization (float32),
draws x (B,D) in [0,1] and eps (B,L) for 3 steps, and records, computed in float64:
inputs, weights, eps, every intermediate (mu, logvar, z, logits), the loss terms, every gradient
of the batch-mean negative ELBO, and the parameters after 3 Adam steps (lr 1e-3, default betas),
each step with the same x and that step's eps.

File format (little-endian): b"VAEREF01", uint32 record count, then records of
uint16 name length, name bytes, uint32 ndim, uint32 dims[ndim], float32 data.
"""
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

ACTS = {"relu": (0, nn.ReLU), "tanh": (1, nn.Tanh), "leaky_relu": (2, nn.LeakyReLU),
        "elu": (3, nn.ELU)}
D, ENC, L, DEC, B, STEPS = 20, [16, 12], 4, [12, 16], 6, 3


class VAE(nn.Module):
    def __init__(self, act):
        super().__init__()
        widths = [D] + ENC
        self.enc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.mu = nn.Linear(ENC[-1], L)
        self.logvar = nn.Linear(ENC[-1], L)
        widths = [L] + DEC
        self.dec = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(DEC[-1], D)
        self.act = act()

    def named_like_c(self):
        """(C tensor name, parameter) in the C engine's naming."""
        pairs = []
        for i, layer in enumerate(self.enc):
            pairs += [(f"encoder.{i}.weight", layer.weight), (f"encoder.{i}.bias", layer.bias)]
        for name in ("mu", "logvar"):
            layer = getattr(self, name)
            pairs += [(f"{name}.weight", layer.weight), (f"{name}.bias", layer.bias)]
        for i, layer in enumerate(self.dec):
            pairs += [(f"decoder.{i}.weight", layer.weight), (f"decoder.{i}.bias", layer.bias)]
        pairs += [("output.weight", self.out.weight), ("output.bias", self.out.bias)]
        return pairs

    def forward(self, x, eps):
        h = x
        for layer in self.enc:
            h = self.act(layer(h))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        h = z
        for layer in self.dec:
            h = self.act(layer(h))
        return mu, logvar, z, self.out(h)


CONV_IMAGE, CONV_LAYERS, CONV_ENC, CONV_L, CONV_DEC = (1, 8, 8), [(4, 4, 2, 1), (6, 3, 1, 1)], 10, 3, 10


class ConvVAE(nn.Module):
    """The C engine's convolutional VAE: Conv2d layers, dense layers, heads, dense layers, a
    dense projection to the last convolution's shape, the mirrored ConvTranspose2d layers."""

    def __init__(self):
        super().__init__()
        c, h, w = CONV_IMAGE
        shapes = []
        self.convs = nn.ModuleList()
        for ch, k, s, p in CONV_LAYERS:
            self.convs.append(nn.Conv2d(c, ch, k, s, p))
            shapes.append((c, h, w))
            c, h, w = ch, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        self.last = (c, h, w)
        self.enc = nn.Linear(c * h * w, CONV_ENC)
        self.mu = nn.Linear(CONV_ENC, CONV_L)
        self.logvar = nn.Linear(CONV_ENC, CONV_L)
        self.dec = nn.Linear(CONV_L, CONV_DEC)
        self.project = nn.Linear(CONV_DEC, c * h * w)
        self.convts = nn.ModuleList()
        for (ch, k, s, p), (cin, _, _) in reversed(list(zip(CONV_LAYERS, shapes))):
            self.convts.append(nn.ConvTranspose2d(ch, cin, k, s, p))
        self.act = nn.ReLU()

    def named_like_c(self):
        pairs = []
        for i, layer in enumerate(self.convs):
            pairs += [(f"encoder.conv.{i}.weight", layer.weight), (f"encoder.conv.{i}.bias", layer.bias)]
        pairs += [("encoder.0.weight", self.enc.weight), ("encoder.0.bias", self.enc.bias)]
        for name in ("mu", "logvar"):
            layer = getattr(self, name)
            pairs += [(f"{name}.weight", layer.weight), (f"{name}.bias", layer.bias)]
        pairs += [("decoder.0.weight", self.dec.weight), ("decoder.0.bias", self.dec.bias)]
        pairs += [("decoder.project.weight", self.project.weight),
                  ("decoder.project.bias", self.project.bias)]
        n = len(self.convts)
        for j, layer in enumerate(self.convts):
            i = n - 1 - j
            name = "output" if i == 0 else f"decoder.convt.{i}"
            pairs += [(f"{name}.weight", layer.weight), (f"{name}.bias", layer.bias)]
        return pairs

    def forward(self, x, eps):
        h = x.reshape(x.shape[0], *CONV_IMAGE)
        for layer in self.convs:
            h = self.act(layer(h))
        h = self.act(self.enc(h.flatten(1)))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        h = self.act(self.dec(z))
        h = self.act(self.project(h)).reshape(z.shape[0], *self.last)
        for j, layer in enumerate(self.convts):
            h = layer(h)
            if j < len(self.convts) - 1:
                h = self.act(h)
        return mu, logvar, z, h.flatten(1)


def loss_terms(logits, x, mu, logvar):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon, kl, (recon + kl) / x.shape[0]


def main():
    records = []

    def add(name, t):
        records.append((name, t.detach().to(torch.float32).contiguous()))

    cases = [(case, act_id, act) for case, (act_id, act) in ACTS.items()] + [("conv", 0, None)]
    for case, act_id, act in cases:
        torch.manual_seed(1000 + act_id + (50 if act is None else 0))
        if act is None:
            model = ConvVAE()
            d, latent = CONV_IMAGE[0] * CONV_IMAGE[1] * CONV_IMAGE[2], CONV_L
            config = [d, latent, 1, CONV_ENC, 1, CONV_DEC, 0]
            conv = [*CONV_IMAGE, len(CONV_LAYERS)] + [v for layer in CONV_LAYERS for v in layer]
            add(f"{case}/conv_config", torch.tensor(conv, dtype=torch.float32))
        else:
            model = VAE(act)  # PyTorch's default init, in float32
            d, latent = D, L
            config = [D, L, len(ENC), *ENC, len(DEC), *DEC, act_id]
        x = torch.rand(B, d)
        eps = [torch.randn(B, latent) for _ in range(STEPS)]
        add(f"{case}/config", torch.tensor(config, dtype=torch.float32))
        add(f"{case}/x", x)
        for k, e in enumerate(eps):
            add(f"{case}/eps{k}", e)
        for name, p in model.named_like_c():
            add(f"{case}/param/{name}", p)

        model = model.double()
        xd = x.double()
        mu, logvar, z, logits = model(xd, eps[0].double())
        recon, kl, loss = loss_terms(logits, xd, mu, logvar)
        loss.backward()
        for name, t in (("mu", mu), ("logvar", logvar), ("z", z), ("logits", logits)):
            add(f"{case}/{name}", t)
        add(f"{case}/recon_sum", recon.reshape(1))
        add(f"{case}/kl_sum", kl.reshape(1))
        add(f"{case}/loss", loss.reshape(1))
        for name, p in model.named_like_c():
            add(f"{case}/grad/{name}", p.grad)

        opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
        for k in range(STEPS):
            opt.zero_grad()
            mu, logvar, _, logits = model(xd, eps[k].double())
            loss_terms(logits, xd, mu, logvar)[2].backward()
            opt.step()
        for name, p in model.named_like_c():
            add(f"{case}/adam3/{name}", p)

    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ref/vae_ref.bin"
    with open(out, "wb") as f:
        f.write(b"VAEREF01")
        f.write(struct.pack("<I", len(records)))
        for name, t in records:
            nb = name.encode()
            f.write(struct.pack("<H", len(nb)) + nb)
            f.write(struct.pack("<I", t.dim()) + struct.pack(f"<{t.dim()}I", *t.shape))
            f.write(t.numpy().astype("<f4").tobytes())
    print(f"wrote {out}: {len(records)} tensors (torch {torch.__version__})")


if __name__ == "__main__":
    main()

"""Writes tests/ref/vae_ref.bin: a PyTorch reference for the C engine (llm.c style).

Run by hand with Debian's python3-torch (CI never needs PyTorch):
    /usr/bin/python3 tests/ref/make_ref.py

For each activation (and for a small convolutional VAE, case "conv", and for every other model
kind: Gaussian with fixed, per-value and per-sample variance, Poisson, IWAE with K=5,
conditional, and missing values with MIWAE K=5) it builds a small VAE with PyTorch's own nn.Linear initialization (float32),
draws x (B,D) in [0,1] and eps (B,L) for 3 steps, and records, computed in float64:
inputs, weights, eps, every intermediate (mu, logvar, z, logits), the loss terms, every gradient
of the batch-mean negative ELBO, and the parameters after 3 Adam steps (lr 1e-3, default betas),
each step with the same x and that step's eps.

File format (little-endian): b"VAEREF01", uint32 record count, then records of
uint16 name length, name bytes, uint32 ndim, uint32 dims[ndim], float32 data.
"""
import math
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


LOG_2PI = math.log(2 * math.pi)
# case: (likelihood id, variance id, sigma, floor, classes, missing, IWAE K); the C enums:
# likelihood bernoulli 0, gaussian 1, poisson 2; variance fixed 0, per value 1, per sample 2
KINDS = {"gauss_fixed": (1, 0, 0.5, 0.0, 0, 0, 0), "gauss_dim": (1, 1, 1.0, 0.05, 0, 0, 0),
         "gauss_sample": (1, 2, 1.0, 0.05, 0, 0, 0), "poisson": (2, 0, 1.0, 0.0, 0, 0, 0),
         "iwae5": (0, 0, 1.0, 0.0, 0, 0, 5), "conditional": (0, 0, 1.0, 0.0, 3, 0, 0),
         "miwae5": (0, 0, 1.0, 0.0, 0, 1, 5)}


class KindVAE(VAE):
    """The MLP VAE of another kind: the label's one-hot code joins the encoder's and the
    decoder's inputs (conditional), the zero-filled x and its mask are the encoder's input
    (missing values), the decoder gives the likelihood's parameters (2D for a per-sample
    variance), a per-value variance is a parameter of its own."""

    def __init__(self, kind):
        self.lik, self.var, self.sigma, self.floor, self.classes, self.missing, self.k = kind
        super().__init__(nn.ReLU)
        d_in = D * (2 if self.missing else 1) + self.classes
        self.enc[0] = nn.Linear(d_in, ENC[0])
        self.dec[0] = nn.Linear(L + self.classes, DEC[0])
        self.out = nn.Linear(DEC[-1], 2 * D if self.var == 2 else D)
        self.dim_logvar = nn.Parameter(torch.randn(D) * 0.5) if self.var == 1 else None

    def named_like_c(self):
        pairs = super().named_like_c()
        return pairs + ([("likelihood.logvar", self.dim_logvar)] if self.var == 1 else [])

    def forward(self, x, eps, labels, mask):
        onehot = F.one_hot(labels, self.classes).to(x.dtype) if self.classes else x[:, :0]
        h = torch.cat([x * mask, mask] if self.missing else [x], 1)
        h = torch.cat([h, onehot], 1)
        for layer in self.enc:
            h = self.act(layer(h))
        mu, logvar = self.mu(h), self.logvar(h)
        k = eps.shape[0] // x.shape[0]  # IWAE: K rows of noise per input
        rep = lambda t: t.repeat_interleave(k, 0)
        z = rep(mu) + torch.exp(0.5 * rep(logvar)) * eps
        h = torch.cat([z, rep(onehot)], 1)
        for layer in self.dec:
            h = self.act(layer(h))
        return mu, logvar, z, self.out(h)

    def nll(self, out, x, mask):
        """-log p(x|z) per row, observed values only."""
        if self.lik == 0:
            per = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        elif self.lik == 2:
            per = out.exp() - x * out + torch.lgamma(x + 1)
        else:
            mean = out[:, :D]
            if self.var == 0:
                var = torch.full_like(mean, self.sigma ** 2)
            elif self.var == 1:
                var = self.floor + self.dim_logvar.exp().expand_as(mean)
            else:
                var = self.floor + out[:, D:].exp()
            per = 0.5 * LOG_2PI + 0.5 * var.log() + 0.5 * (x - mean) ** 2 / var
        return (per * mask).sum(1)

    def loss(self, x, eps, labels, mask):
        """(recon sum, kl sum, the batch-mean objective): the ELBO, or with K > 1 the
        importance-weighted bound (its sum in recon, kl 0), as the C engine reports them."""
        mu, logvar, z, out = self(x, eps, labels, mask)
        k = eps.shape[0] // x.shape[0]
        rep = lambda t: t.repeat_interleave(k, 0)
        if k == 1:
            recon = self.nll(out, x, mask).sum()
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            return recon, kl, (recon + kl) / x.shape[0], (mu, logvar, z, out)
        log_pz = (-0.5 * (LOG_2PI + z ** 2)).sum(1)
        log_q = (-0.5 * (LOG_2PI + rep(logvar) + eps ** 2)).sum(1)
        log_w = (-self.nll(out, rep(x), rep(mask)) + log_pz - log_q).reshape(x.shape[0], k)
        bound = torch.logsumexp(log_w, 1) - math.log(k)
        return -bound.sum(), torch.zeros(()), -bound.mean(), (mu, logvar, z, out)


def kind_case(case, kind, add):
    """A reference case of another model kind, recorded like the activation cases."""
    torch.manual_seed(2000 + sorted(KINDS).index(case))
    model = KindVAE(kind)
    lik, var, sigma, floor, classes, missing, k = kind
    if lik == 1:
        x = torch.randn(B, D) * 2 + 1
    elif lik == 2:
        x = torch.randint(0, 6, (B, D)).to(torch.float32)
    else:
        x = torch.rand(B, D)
    labels = torch.randint(0, max(classes, 1), (B,))
    mask = (torch.rand(B, D) > 0.3).to(torch.float32) if missing else torch.ones(B, D)
    rows = B * max(k, 1)
    eps = [torch.randn(rows, L) for _ in range(STEPS)]
    add(f"{case}/config", torch.tensor([D, L, len(ENC), *ENC, len(DEC), *DEC, 0], dtype=torch.float32))
    add(f"{case}/kind", torch.tensor(kind, dtype=torch.float32))
    add(f"{case}/x", x)
    add(f"{case}/labels", labels.to(torch.float32))
    add(f"{case}/mask", mask)
    for j, e in enumerate(eps):
        add(f"{case}/eps{j}", e)
    for name, p in model.named_like_c():
        add(f"{case}/param/{name}", p)
    model = model.double()
    xd, md = x.double(), mask.double()
    step_loss = lambda j: model.loss(xd, eps[j].double(), labels, md)  # noqa: E731
    recon, kl, loss, (mu, logvar, z, out) = step_loss(0)
    named = (("mu", mu), ("logvar", logvar)) + ((("z", z), ("logits", out)) if k == 0 else ())
    record_training(case, model, named, (recon, kl, loss), lambda j: step_loss(j)[2], add)


def record_training(case, model, named, terms, step_loss, add):
    """Records a case's forward tensors (named) and loss terms (recon, kl, loss: the first
    step's), every gradient of that loss, and the parameters after STEPS Adam steps, step j
    minimizing step_loss(j)."""
    recon, kl, loss = terms
    loss.backward()
    for name, t in named:
        add(f"{case}/{name}", t)
    add(f"{case}/recon_sum", recon.reshape(1))
    add(f"{case}/kl_sum", kl.reshape(1))
    add(f"{case}/loss", loss.reshape(1))
    for name, p in model.named_like_c():
        add(f"{case}/grad/{name}", p.grad)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    for j in range(STEPS):
        opt.zero_grad()
        step_loss(j).backward()
        opt.step()
    for name, p in model.named_like_c():
        add(f"{case}/adam3/{name}", p)


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

        def step_loss(j, model=model, xd=xd, eps=eps):
            mu, logvar, z, logits = model(xd, eps[j].double())
            return loss_terms(logits, xd, mu, logvar), (mu, logvar, z, logits)

        terms, (mu, logvar, z, logits) = step_loss(0)
        named = (("mu", mu), ("logvar", logvar), ("z", z), ("logits", logits))
        record_training(case, model, named, terms, lambda j: step_loss(j)[0][2], add)

    for case, kind in KINDS.items():
        kind_case(case, kind, add)

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

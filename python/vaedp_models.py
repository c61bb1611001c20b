"""PyTorch modules for every model `vae-worker export` writes, under the same
state_dict names, and the objectives as vae-worker computes them.

    import tomllib, safetensors.torch, vaedp_models
    cfg = tomllib.load(open("RUN/config.toml", "rb"))
    model = vaedp_models.from_config(cfg, sample_shape=(1, 28, 28))
    model.load_state_dict(safetensors.torch.load_file("model.safetensors"), strict=True)
    mu, logvar = model.encode(x)          # x: [B, C, H, W] in [0, 1]
    logits = model.decode(mu)             # [B, C, H, W]

Models (tensor shapes as in worker/src/model/):
- MlpVAE: pytorch/examples' VAE generalised (fc1, fc21, fc22, fc3, fc4).
- ConvVAE: 4x4 stride-2 convolutions (encoder.N), optional dense layers
  (enc_fc, dec_fc), heads fc_mu, fc_logvar, fc_z (ReLU after it unless
  fc_z_relu is false, as in seed 002's model), transposed convolutions
  (decoder.N); inputs padded to a multiple of 2^layers (28 -> 32), logits
  cropped back. 28x28 MNIST, 64x64 dSprites and 3x64x64 RGB alike.
- Discriminator: FactorVAE's MLP from codes to two logits (net.N), with
  LeakyReLU(0.2); a FactorVAE export holds it under `discriminator.`.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class MlpVAE(nn.Module):
    def __init__(self, shape, hidden=400, latent=20):
        super().__init__()
        self.shape = tuple(shape)
        d = math.prod(self.shape)
        self.fc1 = nn.Linear(d, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, d)

    def encode(self, x):
        h = F.relu(self.fc1(x.flatten(1)))
        return self.fc21(h), self.fc22(h)

    def decode(self, z):
        return self.fc4(F.relu(self.fc3(z))).view(-1, *self.shape)


class ConvVAE(nn.Module):
    def __init__(self, shape, channels=(32, 64, 128), hidden=0, latent=10, fc_z_relu=True):
        super().__init__()
        self.fc_z_relu = fc_z_relu
        c, h, w = shape
        self.shape = tuple(shape)
        k = 1 << len(channels)
        self.padded = ((h + k - 1) // k * k, (w + k - 1) // k * k)
        self.inner = (channels[-1], self.padded[0] // k, self.padded[1] // k)
        flat = math.prod(self.inner)
        ins = [c] + list(channels[:-1])
        self.encoder = nn.ModuleList(
            nn.Conv2d(i, o, 4, stride=2, padding=1) for i, o in zip(ins, channels)
        )
        outs = list(reversed(channels[:-1])) + [c]
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(i, o, 4, stride=2, padding=1)
            for i, o in zip(reversed(channels), outs)
        )
        head = flat
        if hidden > 0:
            self.enc_fc = nn.Linear(flat, hidden)
            self.dec_fc = nn.Linear(hidden, flat)
            head = hidden
        self.fc_mu = nn.Linear(head, latent)
        self.fc_logvar = nn.Linear(head, latent)
        self.fc_z = nn.Linear(latent, head)

    def _pads(self):
        _, h, w = self.shape
        return self.padded[0] - h, self.padded[1] - w

    def encode(self, x):
        ph, pw = self._pads()
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        for conv in self.encoder:
            x = F.relu(conv(x))
        x = x.flatten(1)
        if hasattr(self, "enc_fc"):
            x = F.relu(self.enc_fc(x))
        return self.fc_mu(x), self.fc_logvar(x)

    def decode(self, z):
        t = self.fc_z(z)
        if self.fc_z_relu:
            t = F.relu(t)
        if hasattr(self, "dec_fc"):
            t = F.relu(self.dec_fc(t))
        t = t.view(-1, *self.inner)
        for i, tconv in enumerate(self.decoder):
            t = tconv(t)
            if i < len(self.decoder) - 1:
                t = F.relu(t)
        ph, pw = self._pads()
        _, h, w = self.shape
        return t[:, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]


class Discriminator(nn.Module):
    def __init__(self, latent, hidden=1000, layers=6):
        super().__init__()
        sizes = [latent] + [hidden] * layers + [2]
        self.net = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes, sizes[1:]))

    def forward(self, z):
        for i, layer in enumerate(self.net):
            z = layer(z)
            if i < len(self.net) - 1:
                z = torch.maximum(z, 0.2 * z)
        return z

    def tc(self, z):
        """Per-sample TC estimate D(z)_0 - D(z)_1."""
        logits = self(z)
        return logits[:, 0] - logits[:, 1]


def from_config(cfg, sample_shape):
    """The model a run's resolved config (`config.toml`, as a dict) describes."""
    m = {"kind": "mlp", "latent_dim": 20, "hidden_dim": 400, "conv_channels": [32, 64, 128],
         "fc_z_relu": True}
    m.update(cfg.get("model", {}))
    if m["kind"] == "mlp":
        model = MlpVAE(sample_shape, m["hidden_dim"], m["latent_dim"])
    else:
        model = ConvVAE(sample_shape, m["conv_channels"], m["hidden_dim"], m["latent_dim"],
                        m["fc_z_relu"])
    if m.get("objective", "vae") == "factor":
        d = {"hidden": 1000, "layers": 6}
        d.update(cfg.get("discriminator", {}))
        model.discriminator = Discriminator(m["latent_dim"], d["hidden"], d["layers"])
    return model


def _log_normal(z, mu, logvar):
    return -0.5 * ((z - mu) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi))


def batch_loss(model, x, eps, cfg, step, dataset_size):
    """The objective vae-worker trains, summed over the batch `x` (in [0, 1]),
    with reparameterisation noise `eps` [B, L], at training step `step`.
    Per-sample terms are summed in float64, as the worker sums them."""
    m = {
        "likelihood": "bernoulli", "beta": 1.0, "gamma": 0.0, "objective": "vae",
        "tc_weight": 1.0, "capacity_max": 25.0, "capacity_steps": 100000,
        "capacity_weight": 1000.0, "dip_lambda_od": 10.0,
    }
    m.update(cfg.get("model", {}))
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    logits = model.decode(z)
    if m["likelihood"] == "bernoulli":
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    else:
        recon = ((torch.sigmoid(logits) - x) ** 2).flatten(1).sum(1)
    kl = (0.5 * (logvar.exp() + mu**2 - 1 - logvar)).sum(1)
    b = x.shape[0]
    kind = m["objective"]
    if kind == "vae":
        loss = (recon + m["beta"] * kl).double().sum()
    elif kind == "capacity":
        c = m["capacity_max"] * min(step / m["capacity_steps"], 1.0)
        loss = recon.double().sum() + b * m["capacity_weight"] * (kl.double().mean() - c).abs()
    elif kind == "factor":
        loss = (recon + kl + m["tc_weight"] * model.discriminator.tc(z)).double().sum()
    elif kind == "btcvae":
        pair = _log_normal(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0))
        norm = math.log(dataset_size * b)
        log_qz = torch.logsumexp(pair.sum(2), 1) - norm
        log_prod = (torch.logsumexp(pair, 1) - norm).sum(1)
        log_qz_x = _log_normal(z, mu, logvar).sum(1)
        log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
        loss = (recon + (log_qz_x - log_qz) + m["tc_weight"] * (log_qz - log_prod)
                + (log_prod - log_pz)).double().sum()
    elif kind in ("dip_i", "dip_ii"):
        lambda_d = m.get("dip_lambda_d",
                         10.0 * m["dip_lambda_od"] if kind == "dip_i" else m["dip_lambda_od"])
        e_mu = mu.mean(0)
        cov = (mu.unsqueeze(2) * mu.unsqueeze(1)).mean(0) - e_mu.unsqueeze(1) * e_mu.unsqueeze(0)
        if kind == "dip_ii":
            cov = cov + torch.diag_embed(logvar.exp()).mean(0)
        diag = torch.diagonal(cov)
        off = cov - torch.diag(diag)
        reg = m["dip_lambda_od"] * (off ** 2).sum() + lambda_d * ((diag - 1) ** 2).sum()
        loss = (recon + kl).double().sum() + b * reg.double()
    else:
        raise ValueError(f"unknown objective {kind}")
    if m["gamma"] > 0:
        loss = loss + m["gamma"] * ((torch.sigmoid(logits) - x) ** 2).flatten(1).sum(1).double().sum()
    return loss

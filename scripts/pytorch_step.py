"""The PyTorch side of `scripts/bench.sh factorvae` and `scripts/bench.sh convvae`:
the training loops people write in plain PyTorch eager, images preloaded as
tensors, timed after 5 warm-up steps.

    python scripts/pytorch_step.py factorvae DATASET_DIR [--steps N] [--threads N] [--batch N]
FactorVAE trained the way 1Konny/FactorVAE's solver.py trains it, on the
model configs/dsprites_factorvae.toml describes (python/vaedp_models.py: the
same modules vae-worker exports). One step, as solver.py: two batches; the
VAE's forward on the first, its loss (Bernoulli reconstruction + KL +
gamma * D(z)_0 - D(z)_1), backward and Adam step; then the second batch's
codes, permuted across the batch, and the discriminator's cross-entropy on
(z, permuted z') with its own Adam. solver.py reuses D(z) from the VAE loss
after the VAE's Adam step, which today's PyTorch refuses (a tensor its
backward needs was changed in place); like the common fix, the
discriminator's loss here evaluates D on z.detach().

    python scripts/pytorch_step.py convvae DATASET_DIR [--steps N] [--threads N] [--batch N]
Seed 002's convolutional VAE (tests/python/seed002.py's own Encoder and
Decoder, 3x64x64 RGB, 64 latents) in the loop seed 002 and
pytorch/examples' VAE run: reparameterise, binary cross-entropy of the
sigmoid output summed over pixels plus the KL, divided by the batch, Adam
at configs/celeba_conv_vae.toml's rate (1e-3).

Both print JSON {"steps_per_sec": ..., "samples_per_sec": ...}.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
import seed002  # noqa: E402
import vaedata  # noqa: E402
import vaedp_models  # noqa: E402


def permute_dims(z):
    """1Konny's permute_dims: each latent dimension shuffled across the batch."""
    b, d = z.size()
    return torch.stack([z[torch.randperm(b), j] for j in range(d)], 1)


def kl(mu, logvar):
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()


def factorvae(shape, batch):
    """One step of 1Konny's loop on batches (x1, x2) of samples of `shape`."""
    cfg = {
        "model": {"kind": "conv", "conv_channels": [32, 32, 64, 64], "hidden_dim": 128,
                  "latent_dim": 10, "objective": "factor"},
        "discriminator": {"hidden": 1000, "layers": 6},
    }
    model = vaedp_models.from_config(cfg, shape)
    D = model.discriminator
    del model.discriminator
    gamma = 35.0
    optim_vae = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999))
    optim_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
    ones = torch.ones(batch, dtype=torch.long)
    zeros = torch.zeros(batch, dtype=torch.long)

    def step(x1, x2):
        mu, logvar = model.encode(x1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = model.decode(z)
        recon = F.binary_cross_entropy_with_logits(logits, x1, reduction="sum") / batch
        d_z = D(z)
        tc = (d_z[:, 0] - d_z[:, 1]).mean()
        vae_loss = recon + kl(mu, logvar) + gamma * tc
        optim_vae.zero_grad()
        vae_loss.backward()
        optim_vae.step()
        # solver.py: the second batch's codes with a graph, detached after.
        mu2, logvar2 = model.encode(x2)
        z2 = mu2 + torch.randn_like(mu2) * (0.5 * logvar2).exp()
        z_perm = permute_dims(z2).detach()
        d_loss = 0.5 * (F.cross_entropy(D(z.detach()), zeros) + F.cross_entropy(D(z_perm), ones))
        optim_d.zero_grad()
        d_loss.backward()
        optim_d.step()

    return step, 2


def convvae(shape, batch):
    """One step of seed 002's VAE on one batch (3x64x64, its only shape)."""
    enc, dec = seed002.Encoder(64), seed002.Decoder(64)
    optim = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-3)

    def step(x):
        mu, logvar = enc(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = F.binary_cross_entropy(dec(z), x, reduction="sum") / batch
        loss = recon + kl(mu, logvar)
        optim.zero_grad()
        loss.backward()
        optim.step()

    return step, 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("loop", choices=["factorvae", "convvae"])
    p.add_argument("data")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    images, _ = vaedata.load_split(a.data, "train")
    step, per_step = {"factorvae": factorvae, "convvae": convvae}[a.loop](
        tuple(images.shape[1:]), a.batch)
    n = min(len(images), (a.steps + 5) * per_step * a.batch)
    x_all = torch.from_numpy(images[:n].astype("float32"))
    if x_all.max() > 1:
        x_all = x_all / 255.0

    def run(i):
        at = (per_step * i * a.batch) % (n - per_step * a.batch + 1)
        step(*(x_all[at + k * a.batch:at + (k + 1) * a.batch] for k in range(per_step)))

    for i in range(5):
        run(i)
    started = time.perf_counter()
    for i in range(5, 5 + a.steps):
        run(i)
    secs = time.perf_counter() - started
    print(json.dumps({"steps_per_sec": a.steps / secs, "samples_per_sec": a.steps * a.batch / secs}))


if __name__ == "__main__":
    main()

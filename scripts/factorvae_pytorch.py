"""The PyTorch side of `scripts/bench.sh factorvae`: FactorVAE trained the way
1Konny/FactorVAE's solver.py trains it, in plain PyTorch eager, on the model
`configs/dsprites_factorvae.toml` describes (python/vaedp_models.py: the same
modules vae-worker exports), with images preloaded as tensors.

One step, as solver.py: two batches; the VAE's forward on the first, its loss
(Bernoulli reconstruction + KL + gamma * D(z)_0 - D(z)_1), backward and Adam
step; then the second batch's codes, permuted across the batch, and the
discriminator's cross-entropy on (z, permuted z') with its own Adam. solver.py
reuses D(z) from the VAE loss after the VAE's Adam step, which today's PyTorch
refuses (a tensor its backward needs was changed in place); like the common
fix, the discriminator's loss here evaluates D on z.detach().

    python scripts/factorvae_pytorch.py DATASET_DIR [--steps N] [--threads N]
prints JSON {"steps_per_sec": ..., "samples_per_sec": ...} (the timed loop
only, after 5 warm-up steps).
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
import vaedata  # noqa: E402
import vaedp_models  # noqa: E402


def permute_dims(z):
    """1Konny's permute_dims: each latent dimension shuffled across the batch."""
    b, d = z.size()
    return torch.stack([z[torch.randperm(b), j] for j in range(d)], 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    images, _ = vaedata.load_split(a.data, "train")
    n = min(len(images), (a.steps + 5) * 2 * a.batch)
    x_all = torch.from_numpy(images[:n].astype("float32"))
    if x_all.max() > 1:
        x_all = x_all / 255.0
    cfg = {
        "model": {"kind": "conv", "conv_channels": [32, 32, 64, 64], "hidden_dim": 128,
                  "latent_dim": 10, "objective": "factor"},
        "discriminator": {"hidden": 1000, "layers": 6},
    }
    model = vaedp_models.from_config(cfg, tuple(x_all.shape[1:]))
    D = model.discriminator
    del model.discriminator
    gamma = 35.0
    optim_vae = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999))
    optim_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
    ones = torch.ones(a.batch, dtype=torch.long)
    zeros = torch.zeros(a.batch, dtype=torch.long)

    def step(i):
        at = (2 * i * a.batch) % (n - 2 * a.batch + 1)
        x1 = x_all[at:at + a.batch]
        x2 = x_all[at + a.batch:at + 2 * a.batch]
        mu, logvar = model.encode(x1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = model.decode(z)
        recon = F.binary_cross_entropy_with_logits(logits, x1, reduction="sum") / a.batch
        kld = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
        d_z = D(z)
        tc = (d_z[:, 0] - d_z[:, 1]).mean()
        vae_loss = recon + kld + gamma * tc
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

    for i in range(5):
        step(i)
    started = time.perf_counter()
    for i in range(5, 5 + a.steps):
        step(i)
    secs = time.perf_counter() - started
    print(json.dumps({"steps_per_sec": a.steps / secs, "samples_per_sec": a.steps * a.batch / secs}))


if __name__ == "__main__":
    main()

"""PyTorch side of the GPU benchmarks in scripts/gpu_check.sh: training steps
per second of the same models vae-worker trains, on random data already on
the device, eager and torch.compile(mode="reduce-overhead").

  python bench_gpu.py mlp|factor [--steps N] [--compile] [--bf16]

Prints one JSON line: {"model", "mode", "steps_per_sec", "batch"}.
MLP VAE: 784-400-20, batch 128, Adam 1e-3 (pytorch/examples). FactorVAE:
python/vaedp_models.ConvVAE on 64×64 (32-32-64-64 convs, 128 hidden, 10
latents), batch 64, discriminator 6×1000, gamma 35, two Adams.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import vaedp_models as vm  # noqa: E402


def mlp_step(model, opt, x):
    mu, logvar = model.encode(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    logits = model.decode(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    loss = (recon + kl) / x.shape[0]
    opt.zero_grad(set_to_none=False)
    loss.backward()
    opt.step()
    return loss


def factor_step(model, disc, opt, dopt, x, x2, gamma):
    mu, logvar = model.encode(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    logits = model.decode(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kl = (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / x.shape[0]
    d = disc(z)
    tc = (d[:, 0] - d[:, 1]).mean()
    loss = recon + kl + gamma * tc
    opt.zero_grad(set_to_none=False)
    loss.backward()
    opt.step()
    with torch.no_grad():
        mu2, logvar2 = model.encode(x2)
        z2 = mu2 + torch.randn_like(mu2) * (0.5 * logvar2).exp()
        perm = torch.stack([z2[torch.randperm(z2.shape[0], device=z2.device), j] for j in range(z2.shape[1])], 1)
    zeros = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    dloss = 0.5 * (F.cross_entropy(disc(z.detach()), zeros) + F.cross_entropy(disc(perm), zeros + 1))
    dopt.zero_grad(set_to_none=False)
    dloss.backward()
    dopt.step()
    return loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["mlp", "factor"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    if a.model == "mlp":
        model = vm.MlpVAE([1, 28, 28], 400, 20).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.rand(128, 1, 28, 28, device=dev).round()
        step = lambda: mlp_step(model, opt, x)  # noqa: E731
    else:
        model = vm.ConvVAE([1, 64, 64], [32, 32, 64, 64], 128, 10).to(dev)
        disc = vm.Discriminator(10, 1000, 6).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999))
        dopt = torch.optim.Adam(disc.parameters(), lr=1e-4, betas=(0.5, 0.9))
        x = torch.rand(64, 1, 64, 64, device=dev).round()
        x2 = torch.rand(64, 1, 64, 64, device=dev).round()
        step = lambda: factor_step(model, disc, opt, dopt, x, x2, 35.0)  # noqa: E731
    if a.compile:
        step = torch.compile(step, mode="reduce-overhead")
    ctx = torch.autocast(dev.type, dtype=torch.bfloat16) if a.bf16 else torch.autocast(dev.type, enabled=False)
    with ctx:
        for _ in range(max(20, a.steps // 10)):  # warm-up (and compilation)
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(a.steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t
    mode = ("compile" if a.compile else "eager") + ("+bf16" if a.bf16 else "")
    print(json.dumps({"model": a.model, "mode": mode, "steps_per_sec": a.steps / secs, "batch": x.shape[0]}))


if __name__ == "__main__":
    main()

"""Which memory layout is faster for vae-worker's convolutions on this CPU:
the conv encoder and decoder of configs/dsprites_factorvae.toml (1x64x64,
32-32-64-64, batch 64) and of seed 002 (configs/celeba_conv_vae.toml,
3x64x64, 32-64-128, batch 128), one forward and backward (BCE on logits),
in the same libtorch vae-worker links, three ways interleaved in one
process: NCHW (what vae-worker runs), channels-last inputs with NCHW weights
(what vae-worker could do with its weights kept as views of one NCHW flat
buffer), and channels-last inputs and weights.

    python scripts/conv_layout.py [ROUNDS]
prints, per model, the speed-ups over NCHW of each round, sorted.
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def enc_dec(chs, cin):
    e, p = [], cin
    for c in chs:
        e += [nn.Conv2d(p, c, 4, 2, 1), nn.ReLU()]
        p = c
    d, outs = [], list(reversed(chs))[1:] + [cin]
    for i, c in enumerate(outs):
        d += [nn.ConvTranspose2d(p, c, 4, 2, 1)]
        p = c
        if i < len(outs) - 1:
            d += [nn.ReLU()]
    return nn.Sequential(*e), nn.Sequential(*d)


def make(chs, cin, b, mode):
    """mode 0: NCHW; 1: channels-last inputs; 2: inputs and weights."""
    e, d = enc_dec(chs, cin)
    x = torch.rand(b, cin, 64, 64)
    cl = torch.channels_last
    if mode >= 1:
        x = x.contiguous(memory_format=cl)
    if mode == 2:
        e, d = e.to(memory_format=cl), d.to(memory_format=cl)

    def step():
        h = e(x)
        h = h.flatten(1).view(h.shape)  # the dense layers' round trip
        if mode >= 1:
            h = h.contiguous(memory_format=cl)
        loss = F.binary_cross_entropy_with_logits(d(h), x, reduction="sum")
        loss.backward()
    return step


def seconds(step, n=8):
    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t) / n


def main():
    torch.set_num_threads(2)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    for name, chs, cin, b in [("seed 002 conv VAE", [32, 64, 128], 3, 128),
                              ("FactorVAE conv", [32, 32, 64, 64], 1, 64)]:
        steps = [make(chs, cin, b, m) for m in range(3)]
        x_only, both = [], []
        for _ in range(rounds):
            t = [seconds(s) for s in steps]
            x_only.append(t[0] / t[1])
            both.append(t[0] / t[2])
        fmt = lambda v: " ".join(f"{r:.2f}" for r in sorted(v))  # noqa: E731
        print(f"{name}: channels-last inputs {fmt(x_only)}; inputs and weights {fmt(both)}")


if __name__ == "__main__":
    main()

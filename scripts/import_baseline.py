"""The Python baseline of `scripts/bench.sh import`: what `vae-worker data
prepare images --crop C --size S` does, written the plain way, in one
process: PIL decodes each JPEG, centre-crops it, resizes it with Lanczos,
NumPy moves the channels first, and the samples are written as shards of
the project's format (images then no targets) with a SHA-256 each.

    python import_baseline.py DIR OUT --crop 148 --size 64 [--shard-size 10000]
"""
import argparse
import hashlib
import os

import numpy as np
from PIL import Image


def main():
    p = argparse.ArgumentParser()
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--crop", type=int, default=148)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=10000)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    names = sorted(f for f in os.listdir(a.src) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    shard, n = [], 0
    for name in names:
        try:
            img = Image.open(os.path.join(a.src, name)).convert("RGB")
        except Exception:
            continue
        w, h = img.size
        c = a.crop
        if c <= w and c <= h:
            l, t = (w - c) // 2, (h - c) // 2
            img = img.crop((l, t, l + c, t + c))
        img = img.resize((a.size, a.size), Image.LANCZOS)
        shard.append(np.asarray(img).transpose(2, 0, 1).tobytes())
        if len(shard) == a.shard_size:
            write(a.out, n, shard)
            n, shard = n + 1, []
    if shard:
        write(a.out, n, shard)


def write(out, n, samples):
    data = b"".join(samples)
    hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, f"train-{n:05d}.bin"), "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()

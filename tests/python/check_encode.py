"""Checks a `vae-worker encode` dataset against the exported model in
PyTorch: for every split, its shards (the project's format, dtype f4:
each sample's mu then log sigma^2, float32 little-endian, then the targets)
are read with NumPy, and the source dataset's images are encoded by
python/vaedp_models.py on the exported weights. Prints the largest
difference and the sample counts.

  check_encode.py CODES_DIR SOURCE_DIR EXPORT.safetensors CONFIG.toml
"""
import json
import os
import sys
import tomllib

import numpy as np
import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import vaedata  # noqa: E402
import vaedp_models  # noqa: E402


def codes(root, split):
    m = json.load(open(os.path.join(root, "manifest.json")))
    assert m["dtype"] == "f4", m["dtype"]
    two, one, latent = m["sample_shape"]
    assert (two, one) == (2, 1)
    k = len(m["targets"])
    values, targets = [], []
    for s in m["splits"][split]["shards"]:
        b = open(os.path.join(root, s["object"]), "rb").read()
        assert len(b) == s["bytes"]
        n = s["samples"]
        v = np.frombuffer(b[: n * 2 * latent * 4], dtype="<f4").reshape(n, 2, latent)
        values.append(v)
        targets.append(np.frombuffer(b[n * 2 * latent * 4:], dtype=np.uint8).reshape(n, k))
    return np.concatenate(values), np.concatenate(targets)


def main(codes_dir, source, export, config):
    cfg = tomllib.load(open(config, "rb"))
    m = json.load(open(os.path.join(source, "manifest.json")))
    model = vaedp_models.from_config(cfg, tuple(m["sample_shape"]))
    model.load_state_dict(load_file(export), strict=True)
    model.eval()
    worst, counts = 0.0, {}
    for split in m["splits"]:
        images, labels = vaedata.load_split(source, split)
        ours, targets = codes(codes_dir, split)
        with torch.no_grad():
            mu, logvar = model.encode(torch.from_numpy(images).float() / 255.0)
        theirs = torch.stack([mu, logvar], 1).numpy()
        assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
        assert np.array_equal(targets, labels.reshape(targets.shape)), split
        worst = max(worst, float(np.abs(ours - theirs).max()))
        counts[split] = len(ours)
    print(json.dumps({"max_diff": worst, "samples": counts}))


if __name__ == "__main__":
    main(*sys.argv[1:5])

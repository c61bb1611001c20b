"""Reads a dataset in the project's format (manifest.json + shards) from a
local directory into uint8 NumPy arrays, for the Python reference checks."""
import hashlib
import json
import os

import numpy as np


def load_split(root, split):
    with open(os.path.join(root, "manifest.json")) as f:
        m = json.load(f)
    c, h, w = m["sample_shape"]
    k = len(m["targets"])
    images, targets = [], []
    for shard in m["splits"][split]["shards"]:
        with open(os.path.join(root, shard["object"]), "rb") as f:
            b = f.read()
        assert hashlib.sha256(b).hexdigest() == shard["sha256"], shard["object"]
        n = shard["samples"]
        arr = np.frombuffer(b, dtype=np.uint8)
        if m["dtype"] == "u1":
            per = (c * h * w + 7) // 8
            bits = np.unpackbits(arr[: n * per].reshape(n, per), axis=1)[:, : c * h * w]
            images.append((bits * 255).astype(np.uint8).reshape(n, c, h, w))
            targets.append(arr[n * per :].reshape(n, k))
        else:
            images.append(arr[: n * c * h * w].reshape(n, c, h, w))
            targets.append(arr[n * c * h * w :].reshape(n, k))
    return np.concatenate(images), np.concatenate(targets)

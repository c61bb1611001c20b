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
        images.append(arr[: n * c * h * w].reshape(n, c, h, w))
        targets.append(arr[n * c * h * w :].reshape(n, k))
    return np.concatenate(images), np.concatenate(targets)

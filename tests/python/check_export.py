"""Loads a `vae-worker export` into its module from python/vaedp_models.py
with load_state_dict(strict=True) and computes the test loss as
`vae-worker eval` does: the run's objective on blocks of the test split
(eval_batch_size samples, or batch_size for objectives defined on a batch),
with the evaluation noise the worker uses (scripts/noise.py).

  check_export.py RUN_DIR EXPORT.safetensors STEP   -> prints {"test_loss": ...}
"""
import json
import os
import sys
import tomllib

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import noise  # noqa: E402
import vaedata  # noqa: E402
import vaedp_models  # noqa: E402


def main(run_dir, weights, step):
    with open(os.path.join(run_dir, "config.toml"), "rb") as f:
        cfg = tomllib.load(f)
    root = cfg["data"]["url"].removeprefix("file://")
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    n_train = manifest["splits"]["train"]["samples"]
    test, _ = vaedata.load_split(root, "test")
    dtype = torch.float64 if cfg["train"].get("dtype") == "float64" else torch.float32
    model = vaedp_models.from_config(cfg, tuple(manifest["sample_shape"])).to(dtype)
    model.load_state_dict(load_file(weights), strict=True)
    objective = cfg["model"].get("objective", "vae")
    block = cfg["train"]["batch_size"] if objective in ("capacity", "btcvae") else cfg["train"]["eval_batch_size"]
    latent = cfg["model"]["latent_dim"]
    seed = cfg["train"]["seed"]
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(test), block):
            x = torch.from_numpy(test[i : i + block]).to(dtype) / 255.0
            eps = torch.from_numpy(noise.normals(seed, "eval", 0, range(i, i + len(x)), latent)).to(dtype)
            total += vaedp_models.batch_loss(model, x, eps, cfg, step, n_train).double().item()
    print(json.dumps({"test_loss": total / len(test)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))

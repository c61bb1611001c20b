"""The importance-weighted bound (Burda et al. 2016, eq. 8) of a
`vae-worker export` on its run's test split, transcribed in PyTorch: for
each test sample i, z_k = mu + sigma * eps_k with eps_k the worker's noise
(scripts/noise.py, stream "iwae", counter k, row i), and
log (1/K sum_k p(x|z_k) p(z_k) / q(z_k|x)) by torch.logsumexp, with
torch.distributions' Normal and Bernoulli (the worker's `gaussian`
likelihood: minus the squared error). Prints the mean over the test split.

  check_iwae.py RUN_DIR EXPORT.safetensors K   -> prints {"iwae": ...}
"""
import json
import math
import os
import sys
import tomllib

import torch
from safetensors.torch import load_file
from torch.distributions import Bernoulli, Normal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
import noise  # noqa: E402
import vaedata  # noqa: E402
import vaedp_models  # noqa: E402


def main(run_dir, weights, k):
    with open(os.path.join(run_dir, "config.toml"), "rb") as f:
        cfg = tomllib.load(f)
    root = cfg["data"]["url"].removeprefix("file://")
    with open(os.path.join(root, "manifest.json")) as f:
        manifest = json.load(f)
    test, _ = vaedata.load_split(root, "test")
    dtype = torch.float64 if cfg["train"].get("dtype") == "float64" else torch.float32
    model = vaedp_models.from_config(cfg, tuple(manifest["sample_shape"])).to(dtype)
    model.load_state_dict(load_file(weights), strict=True)
    latent = cfg["model"]["latent_dim"]
    seed = cfg["train"]["seed"]
    bernoulli = cfg["model"].get("likelihood", "bernoulli") == "bernoulli"
    x = torch.from_numpy(test).to(dtype) / 255.0
    with torch.no_grad():
        mu, logvar = model.encode(x)
        std = torch.exp(0.5 * logvar)
        q = Normal(mu, std)
        prior = Normal(torch.zeros_like(mu), torch.ones_like(mu))
        log_w = []
        for j in range(k):
            eps = torch.from_numpy(noise.normals(seed, "iwae", j, range(0, len(x)), latent)).to(dtype)
            z = mu + std * eps
            logits = model.decode(z).reshape(x.shape)
            if bernoulli:
                # Grey pixels: the continuous relaxation the loss uses (no
                # support check), x log p + (1 - x) log (1 - p).
                log_px = Bernoulli(logits=logits, validate_args=False).log_prob(x).flatten(1).sum(1)
            else:
                log_px = -((torch.sigmoid(logits) - x) ** 2).flatten(1).sum(1)
            log_w.append(log_px + prior.log_prob(z).sum(1) - q.log_prob(z).sum(1))
        bound = torch.logsumexp(torch.stack(log_w, 1).double(), 1) - math.log(k)
    print(json.dumps({"iwae": bound.mean().item()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))

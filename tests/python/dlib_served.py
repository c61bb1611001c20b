"""disentanglement_lib 1.5's own metric functions on a trained encoder (a
vae-worker export), served the very draws vae-worker's metrics made
(recorded with VAE_FAULT_RECORD_DRAWS): the same factor combinations, each
observation read from the same dataset (the project's format, a factor
grid), the representation computed by python/vaedp_models.py on the same
weights. Both sides then score the same points, so their scores must agree
— to float rounding where the computation is deterministic, within a
learner's tolerance where one is trained.

    dlib_served.py DATASET_DIR EXPORT CONFIG PREFIX SCALE OUT.json

PREFIX-<metric>.json holds each metric's draws (and the sampled
representation's noise). disentanglement_lib runs
without TensorFlow (plain gin stands in for gin.tf), with the study's
settings: 20 histogram bins, prune threshold 0.05, batch 64.
"""
import json
import os
import sys
import time
import tomllib

import gin
import numpy as np
import torch

sys.modules["gin.tf"] = gin
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../python"))
from disentanglement_lib.evaluation.metrics import (  # noqa: E402
    beta_vae, dci, factor_vae, irs, mig, modularity_explicitness, sap_score, unsupervised_metrics)
from safetensors.torch import load_file  # noqa: E402

import vaedp_models  # noqa: E402


class Served(np.random.RandomState):
    """A RandomState whose scalar randint serves the recorded factor choices."""

    def __init__(self, picks):
        super().__init__(0)
        self.picks = list(picks)

    def randint(self, *args, **kwargs):
        return self.picks.pop(0)


class Data:
    """The dataset's images of the recorded factor combinations, in order."""

    def __init__(self, root, batches):
        m = json.load(open(os.path.join(root, "manifest.json")))
        self.c, self.h, self.w = m["sample_shape"]
        self.packed = m["dtype"] == "u1"
        self.sizes = [len(f["values"]) for f in m["factors"]]
        self.num_factors = len(self.sizes)
        self.factors_num_values = self.sizes
        per = (self.c * self.h * self.w + 7) // 8 if self.packed else self.c * self.h * self.w
        parts = []
        for s in m["splits"]["train"]["shards"]:
            b = np.fromfile(os.path.join(root, s["object"]), dtype=np.uint8)
            parts.append(b[: s["samples"] * per].reshape(s["samples"], per))
        self.train = np.concatenate(parts)
        self.bases = [int(np.prod(self.sizes[k + 1:])) for k in range(self.num_factors)]
        self.batches = [np.array(b, dtype=np.int64) for b in batches]
        self.pending = np.zeros((0, self.num_factors), dtype=np.int64)

    def images(self, factors):
        rows = self.train[np.asarray(factors) @ np.array(self.bases)]
        if self.packed:
            rows = np.unpackbits(rows, axis=1)[:, : self.c * self.h * self.w]
            x = rows.astype(np.float32)
        else:
            x = rows.astype(np.float32) / 255
        return x.reshape(-1, self.c, self.h, self.w)

    def sample_factors(self, num, random_state):
        b = self.batches.pop(0)
        assert len(b) == num, (len(b), num)
        return b

    def sample_observations_from_factors(self, factors, random_state):
        return self.images(factors)

    def sample_observations(self, num, random_state):
        return self.images(self.sample_factors(num, random_state))

    def sample(self, num, random_state):
        if len(self.pending) == 0:
            self.pending = self.batches.pop(0)
        f, self.pending = self.pending[:num], self.pending[num:]
        return f, self.images(f)


def n(full, scale):
    return max(10, int(round(full * scale)))


def main(root, export, config, prefix, scale, out):
    scale = float(scale)
    gin.parse_config([
        "discretizer.discretizer_fn = @histogram_discretizer",
        "discretizer.num_bins = 20",
        "prune_dims.threshold = 0.05",
    ])
    cfg = tomllib.load(open(config, "rb"))
    m = json.load(open(os.path.join(root, "manifest.json")))
    model = vaedp_models.from_config(cfg, tuple(m["sample_shape"]))
    model.load_state_dict(load_file(export), strict=True)
    model.eval()

    def rep(x):
        with torch.no_grad():
            return model.encode(torch.from_numpy(np.ascontiguousarray(x)))[0].numpy()

    def sampled(noise):
        """The sampled representation mu + exp(logvar / 2) * eps, eps served
        from the recorded noise in order (float32, as the worker adds it)."""
        rows = np.asarray(noise, dtype=np.float32)
        used = [0]

        def f(x):
            with torch.no_grad():
                mu, logvar = model.encode(torch.from_numpy(np.ascontiguousarray(x)))
            eps = torch.from_numpy(rows[used[0]:used[0] + len(x)])
            used[0] += len(x)
            return (mu + torch.exp(0.5 * logvar) * eps).numpy()
        return f

    result, seconds = {}, {}
    for metric in ("factorvae", "betavae", "mig", "dci", "sap", "modularity", "unsupervised",
                   "unsupervised_sampled", "irs"):
        path = f"{prefix}-{metric}.json"
        if not os.path.exists(path):
            continue
        events = json.load(open(path))
        started = time.time()
        data = Data(root, [e["batch"] for e in events if "batch" in e])
        state = Served([e["pick"] for e in events if "pick" in e])
        if metric == "factorvae":
            r = factor_vae.compute_factor_vae(data, rep, state, batch_size=64, num_train=n(10000, scale),
                                              num_eval=n(5000, scale), num_variance_estimate=n(10000, scale))
            result["factorvae_score"] = r["eval_accuracy"]
        elif metric == "betavae":
            r = beta_vae.compute_beta_vae_sklearn(data, rep, state, batch_size=64,
                                                  num_train=n(10000, scale), num_eval=n(5000, scale))
            result["betavae_score"] = r["eval_accuracy"]
        elif metric == "mig":
            result["mig"] = mig.compute_mig(data, rep, state, num_train=n(10000, scale))["discrete_mig"]
        elif metric == "dci":
            r = dci.compute_dci(data, rep, state, num_train=n(10000, scale), num_test=n(5000, scale))
            result.update({"dci_disentanglement": r["disentanglement"], "dci_completeness": r["completeness"],
                           "dci_informativeness": r["informativeness_test"],
                           "dci_informativeness_train": r["informativeness_train"]})
        elif metric == "sap":
            r = sap_score.compute_sap(data, rep, state, num_train=n(10000, scale), num_test=n(5000, scale),
                                      continuous_factors=False)
            result["sap_score"] = r["SAP_score"]
        elif metric == "modularity":
            r = modularity_explicitness.compute_modularity_explicitness(
                data, rep, state, num_train=n(10000, scale), num_test=n(5000, scale))
            result["modularity_score"] = r["modularity_score"]
            result["explicitness_score"] = r["explicitness_score_test"]
        elif metric == "unsupervised":
            r = unsupervised_metrics.unsupervised_metrics(data, rep, state, num_train=n(10000, scale))
            result.update({k: float(v) for k, v in r.items()})
        elif metric == "unsupervised_sampled":
            noise = [row for e in events if "noise" in e for row in e["noise"]]
            r = unsupervised_metrics.unsupervised_metrics(data, sampled(noise), state, num_train=n(10000, scale))
            result.update({"sampled_" + k: float(v) for k, v in r.items()})
        elif metric == "irs":
            r = irs.compute_irs(data, rep, state, diff_quantile=0.99, num_train=n(10000, scale), batch_size=16)
            result["irs"] = float(r["IRS"])
            # Its num_active_dims is np.sum(active_mus), a sum of codes, not a
            # count: vae-worker reports the count, so it is not compared.
        assert not data.batches and not state.picks, f"{metric}: draws left over"
        seconds[metric] = time.time() - started
    json.dump(result, open(out, "w"))
    json.dump(seconds, sys.stderr)


if __name__ == "__main__":
    import warnings
    warnings.simplefilter("ignore")
    main(*sys.argv[1:7])

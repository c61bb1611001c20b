"""disentanglement_lib 1.5's own metric functions on fixed, seeded arrays;
tests/cli.rs runs vae-worker's metrics (worker/src/disentanglement/) on the
same arrays and compares.

  dlib_metrics.py OUT.json

disentanglement_lib is installed without TensorFlow (pip --no-deps, plus
numpy, scikit-learn, absl-py, six, gin-config==0.3.0); its metrics import
`gin.tf`, which plain gin stands in for. The ground-truth data and the
random state are stand-ins that serve the fixed arrays in order (the
representation function is the identity), so disentanglement_lib's
`compute_factor_vae` and `compute_beta_vae_sklearn` run their own code on
exactly the batches the Rust side gets; MIG is `_compute_mig` on fixed codes
and factors. The study's settings are bound through gin: 20 histogram bins,
prune threshold 0.05.
"""
import json
import sys
import warnings

import gin
import numpy as np

sys.modules["gin.tf"] = gin
from disentanglement_lib.evaluation.metrics import beta_vae, factor_vae, mig, utils  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

FACTORS = 5


class ServedState(np.random.RandomState):
    """A RandomState whose randint serves the fixed factor indices."""

    def __init__(self, ks):
        super().__init__(0)
        self.ks = list(ks)

    def randint(self, *args, **kwargs):
        return self.ks.pop(0)


class ServedData:
    """Ground-truth data serving fixed representations as observations."""

    num_factors = FACTORS

    def __init__(self, global_obs, batches):
        self.global_obs = global_obs
        self.batches = list(batches)

    def sample_observations(self, n, random_state):
        assert n == len(self.global_obs)
        return self.global_obs

    def sample_factors(self, n, random_state):
        return np.zeros((n, FACTORS), dtype=np.int64)

    def sample_observations_from_factors(self, factors, random_state):
        return self.batches.pop(0)


def identity(x):
    return np.asarray(x, dtype=np.float64)


def mig_case(rng):
    n, d = 3000, 6
    ys = np.stack([rng.integers(0, s, n) for s in (3, 6, 10, 8, 8)])
    codes = rng.normal(size=(d, n))
    codes[0] += ys[0] * 2.0
    codes[1] += ys[1] * 0.7 + 0.3 * ys[2]
    codes[2] += ys[2] * 0.9
    codes[3] = ys[3] * 0.5 + rng.normal(size=n) * 0.01
    codes[5] = 1.25  # a constant dimension
    return {"codes": codes.tolist(), "ys": ys.tolist(), "mig": mig._compute_mig(codes, ys)["discrete_mig"]}


def factorvae_case(rng):
    d, batch, n_var, n_train, n_eval = 6, 16, 500, 300, 150
    scale = np.array([1.0, 0.01, 1.0, 1.0, 1.0, 1.0])  # dimension 1 is pruned
    global_obs = rng.normal(size=(n_var, d)) * scale
    ks = rng.integers(0, FACTORS, n_train + n_eval)
    batches = []
    for k in ks:
        b = rng.normal(size=(batch, d)) * scale
        dim = [0, 2, 3, 4, 5][k]
        b[:, dim] *= rng.uniform(0.05, 1.2)  # mostly, the factor's own dimension varies least
        batches.append(b)
    score = factor_vae.compute_factor_vae(
        ServedData(global_obs, batches), identity, ServedState(ks),
        batch_size=batch, num_train=n_train, num_eval=n_eval, num_variance_estimate=n_var)
    return {"global": global_obs.tolist(), "ks": ks.tolist(),
            "batches": [b.tolist() for b in batches], "n_train": n_train,
            "eval_accuracy": score["eval_accuracy"], "train_accuracy": score["train_accuracy"]}


def betavae_case(rng):
    d, batch, n_train, n_eval = 5, 8, 300, 150
    ks = rng.integers(0, FACTORS, n_train + n_eval)
    batches = []
    for k in ks:
        a = rng.normal(size=(batch, d))
        b = rng.normal(size=(batch, d))
        b[:, k] = a[:, k] + rng.normal(size=batch) * rng.uniform(0.1, 1.5)
        batches += [a, b]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the reference must have converged
        score = beta_vae.compute_beta_vae_sklearn(
            ServedData(np.zeros((0, d)), batches), identity, ServedState(ks),
            batch_size=batch, num_train=n_train, num_eval=n_eval)
    return {"ks": ks.tolist(), "batches": [b.tolist() for b in batches], "n_train": n_train,
            "eval_accuracy": score["eval_accuracy"], "train_accuracy": score["train_accuracy"]}


def main(out):
    gin.parse_config([
        "discretizer.discretizer_fn = @histogram_discretizer",
        "discretizer.num_bins = 20",
        "prune_dims.threshold = 0.05",
    ])
    assert utils.make_discretizer  # bound above
    rng = np.random.default_rng(2026)
    result = {"mig": mig_case(rng), "factorvae": factorvae_case(rng), "betavae": betavae_case(rng)}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])

"""disentanglement_lib 1.5's own ColorDSprites, NoisyDSprites and
ScreamDSprites `sample_observations_from_factors`, served the random
numbers vae-worker drew (scripts/noise.py reproduces its stream), against
the first batch vae-worker made (recorded with VAE_FAULT_RECORD_VARIANT).

    check_variants.py DATASET_DIR BATCH.json VARIANT SEED [SCREAM_IMAGE]

The shapes' binary images are the dataset's, by the batch's sample indices.
The Scream picture is fitted into 350×274 as disentanglement_lib does
(Pillow's thumbnail of its time: a 3-tuple box, no reducing gap). Prints
JSON: the largest difference.
"""
import json
import os
import sys

import numpy as np
import PIL.Image

sys.modules.setdefault("tensorflow", type(sys)("tensorflow"))
sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../scripts"))
import noise  # noqa: E402
import vaedata  # noqa: E402

tf = sys.modules["tensorflow"]
tf.compat = type(sys)("tensorflow.compat")
tf.compat.v1 = type(sys)("tensorflow.compat.v1")
tf.compat.v1.gfile = type("gfile", (), {"Open": open, "GFile": open})
sys.modules["tensorflow.compat"] = tf.compat
sys.modules["tensorflow.compat.v1"] = tf.compat.v1
from disentanglement_lib.data.ground_truth import dsprites  # noqa: E402


class Served:
    """A RandomState that serves, in order, vae-worker's draws."""

    def __init__(self, seed, counter, ids, scream_shape=None):
        self.keys = [noise.key(seed, "variant", counter, i) for i in ids]
        self.at = 0  # the sample of the next Scream draw
        self.part = 0
        self.scream_shape = scream_shape

    def bits(self, i, j):
        return noise.bits(self.keys[i], np.uint64(j))

    def uniform(self, low, high, size):
        size = (size,) if np.isscalar(size) else tuple(size)
        if size == (3,):  # Scream's tint of one sample: draws 2, 3, 4
            u = np.array([noise.uniform(self.bits(self.at, 2 + c)) for c in range(3)])
            self.at += 1
        elif size[1:] == (1, 1, 3):  # Color: draw c per sample
            u = np.array([[[[noise.uniform(self.bits(i, c)) for c in range(3)]]]
                          for i in range(size[0])])
        else:  # Noisy: draw c·H·W + y·W + x, laid out (N, H, W, 3)
            n, h, w, _ = size
            j = (np.arange(3)[None, None, :] * h * w + np.arange(h)[:, None, None] * w
                 + np.arange(w)[None, :, None]).astype(np.uint64)
            u = np.stack([noise.uniform(noise.bits(self.keys[i], j)) for i in range(n)])
        return low + (high - low) * u

    def randint(self, low, high=None, size=None):
        if size is not None:
            return np.zeros(size, dtype=np.int64)
        j = self.part % 2  # Scream's crop: row (draw 0), then column (draw 1)
        self.part += 1
        return low + noise.below(self.bits(self.at, j), high - low)


def main(root, batch_path, variant, seed, scream_path=None):
    batch = json.load(open(batch_path))
    ids = batch["ids"]
    images, _ = vaedata.load_split(root, "train")
    binary = images[ids].transpose(0, 2, 3, 1).astype(np.float64) / 255.0
    cls = {"color": dsprites.ColorDSprites, "noisy": dsprites.NoisyDSprites,
           "scream": dsprites.ScreamDSprites}[variant]
    data = cls.__new__(cls)
    data.sample_observations_from_factors_no_color = lambda factors, rs: binary
    if scream_path:
        scream = PIL.Image.open(scream_path)
        scream.thumbnail((350, 274), PIL.Image.LANCZOS, reducing_gap=None)
        data.scream = np.array(scream) * 1. / 255.
    served = Served(int(seed), batch["counter"], ids)
    made = cls.sample_observations_from_factors(data, None, served)
    ours = np.array(batch["pixels"], dtype=np.float64).reshape(len(ids), 3, 64, 64)
    print(json.dumps({"samples": len(ids),
                      "max_diff": float(np.abs(made.transpose(0, 3, 1, 2) - ours).max())}))


if __name__ == "__main__":
    main(*sys.argv[1:])

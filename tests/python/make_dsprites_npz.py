"""Writes an .npz in the real dSprites file's layout
(dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz, written by NumPy's
savez_compressed): `metadata` (a pickled dict in an object array), `imgs`
uint8 (N, 64, 64) of 0/1, `latents_classes` int64 (N, 6) (color, shape,
scale, orientation, posX, posY) and `latents_values` float64 (N, 6), from
the train split of a dataset in the project's format (the generated
dSprites or a subset of it: every kept combination, in the original order).

    python make_dsprites_npz.py DATASET_DIR OUT.npz
"""
import sys

import numpy as np

import vaedata


def main(root, out):
    images, targets = vaedata.load_split(root, "train")
    imgs = (images[:, 0] // 255).astype(np.uint8)
    n = len(imgs)
    classes = np.zeros((n, 6), dtype=np.int64)
    classes[:, 1:] = targets
    axes = [
        np.array([1.0]),
        np.array([1.0, 2.0, 3.0]),
        np.linspace(0.5, 1.0, 6),
        np.linspace(0.0, 2 * np.pi, 40),
        np.linspace(0.0, 1.0, 32),
        np.linspace(0.0, 1.0, 32),
    ]
    values = np.stack([axes[k][classes[:, k]] for k in range(6)], axis=1)
    metadata = np.array(
        {
            "date": "April 2017",
            "description": "Disentanglement test Sprites dataset (layout as published).",
            "version": 1,
            "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY"),
            "latents_possible_values": {
                name: axes[k] for k, name in enumerate(
                    ("color", "shape", "scale", "orientation", "posX", "posY"))
            },
            "latents_sizes": np.array([1, 3, 6, 40, 32, 32]),
            "author": "lmatthey@google.com",
            "title": "dSprites dataset",
        },
        dtype=object,
    )
    np.savez_compressed(out, metadata=metadata, imgs=imgs,
                        latents_classes=classes, latents_values=values)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

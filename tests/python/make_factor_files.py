"""Factor-dataset fixtures in the published layouts, and their checks.

    python make_factor_files.py shapes3d OUT.h5
        3dshapes' layout (Burgess & Kim 2018, written by h5py): `images` uint8
        (N, 64, 64, 3) and `labels` float64 (N, 6) (floor_hue, wall_hue,
        object_hue, scale, shape, orientation), gzip-compressed chunks, on a
        reduced grid of the real factor values, every combination in
        row-major order.
    python make_factor_files.py mpi3d OUT.npz S1,S2,...,S7 [stored]
        MPI3D's layout: `images` uint8 (N, 64, 64, 3), every combination of
        seven factors of the given sizes in row-major order
        (np.savez_compressed; `stored` for np.savez, no compression).
    python make_factor_files.py check FILE DATASET_DIR
        Whether the dataset's train split holds the file's images (pixel for
        pixel, channels first) and, as targets, each row's factor classes
        (the ranks of its label values): JSON.
"""
import itertools
import json
import sys

import numpy as np

# 3dshapes' real factor values, and the subset of each the fixture keeps.
SHAPES3D = [
    ("floor_hue", np.linspace(0.0, 0.9, 10), [0, 5]),
    ("wall_hue", np.linspace(0.0, 0.9, 10), [2, 9]),
    ("object_hue", np.linspace(0.0, 0.9, 10), [0, 4, 8]),
    ("scale", np.linspace(0.75, 1.25, 8), [0, 7]),
    ("shape", np.arange(4.0), [0, 1, 2, 3]),
    ("orientation", np.linspace(-30.0, 30.0, 15), [0, 7, 14]),
]


BASE = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)


def image(i):
    img = np.roll(BASE, i % 61, axis=1)
    img[:4, :4] = [i % 256, (i // 256) % 256, i // 65536]
    return img


def shapes3d(out):
    import h5py
    combos = list(itertools.product(*[[vals[k] for k in keep] for _, vals, keep in SHAPES3D]))
    labels = np.array(combos, dtype=np.float64)
    images = np.stack([image(i) for i in range(len(combos))])
    with h5py.File(out, "w") as f:
        f.create_dataset("images", data=images, chunks=(32, 64, 64, 3), compression="gzip")
        f.create_dataset("labels", data=labels, chunks=(64, 6), compression="gzip")


def mpi3d(out, sizes, stored=None):
    sizes = [int(s) for s in sizes.split(",")]
    n = int(np.prod(sizes))
    images = np.stack([image(i) for i in range(n)])
    (np.savez if stored else np.savez_compressed)(out, images=images)


def check(path, root):
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    import vaedata
    ours, targets = vaedata.load_split(root, "train")
    if path.endswith(".h5"):
        import h5py
        with h5py.File(path, "r") as f:
            images, labels = f["images"][:], f["labels"][:]
        classes = np.stack([np.unique(labels[:, k], return_inverse=True)[1]
                            for k in range(labels.shape[1])], axis=1)
    else:
        images = np.load(path)["images"]
        m = json.load(open(root + "/manifest.json"))
        sizes = [len(f["values"]) for f in m["factors"]]
        classes = np.array(list(itertools.product(*[range(s) for s in sizes])))
    print(json.dumps({
        "samples": len(ours),
        "pixels_equal": bool(np.array_equal(ours, images.transpose(0, 3, 1, 2))),
        "targets_equal": bool(np.array_equal(targets, classes.astype(np.uint8))),
    }))


if __name__ == "__main__":
    {"shapes3d": shapes3d, "mpi3d": mpi3d, "check": check}[sys.argv[1]](*sys.argv[2:])

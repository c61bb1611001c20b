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
    python make_factor_files.py smallnorb OUT_DIR [full]
        SmallNORB's six files (`smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat`
        …, NORB's binary matrix format written with NumPy: int32 magic,
        ndim, max(3, ndim) dimensions, row-major data): dat bytes
        (N, 2, 96, 96), cat int32 (N), info int32 (N, 4) (instance,
        elevation, azimuth 0..34 even, lighting), on a reduced grid of the
        published values (each half its own instances; `full`: the
        published grid, 24,300 rows a half), rows shuffled as NORB's are
        not in grid order.
    python make_factor_files.py cars3d OUT_DIR CARS
        Cars3D's files (`car_001_mesh.mat` …, written by scipy.io.savemat
        as MATLAB v5, compressed but for the last): `im` uint8
        (128, 128, 3, 24, 4).
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


NORB_BYTES, NORB_INT32 = 0x1E3D4C55, 0x1E3D4C54
# Per half: its name, instances, and the reduced grid of the other factors.
NORB_HALVES = [("5x46789x9x18x6x2x96x96-training", [4, 6]),
               ("5x01235x9x18x6x2x96x96-testing", [0, 1])]
NORB_GRID = dict(category=range(5), elevation=[0, 4, 8], azimuth=[0, 12, 34], lighting=[0, 5])


def norb_matrix(path, magic, array):
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    with open(path, "wb") as f:
        np.array([magic, array.ndim] + dims, dtype="<i4").tofile(f)
        array.astype("<i4" if magic == NORB_INT32 else np.uint8).tofile(f)


def smooth_image(seed, side):
    """A smooth picture (a lit blob on a gradient), as photographs are."""
    y, x = np.mgrid[0:side, 0:side] / side
    r = np.random.default_rng(seed)
    cy, cx, w = r.uniform(0.3, 0.7), r.uniform(0.3, 0.7), r.uniform(0.05, 0.2)
    img = 40 + 60 * x + 150 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / w ** 2)
    return np.clip(img + r.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def smallnorb(out, full=None):
    import os
    os.makedirs(out, exist_ok=True)
    for h, (chunk, instances) in enumerate(NORB_HALVES):
        g = NORB_GRID
        if full:
            g = dict(category=range(5), elevation=range(9), azimuth=range(0, 36, 2), lighting=range(6))
            instances = [[4, 6, 7, 8, 9], [0, 1, 2, 3, 5]][h]
        rows = list(itertools.product(g["category"], instances, g["elevation"], g["azimuth"], g["lighting"]))
        rows = [rows[i] for i in np.random.default_rng(h).permutation(len(rows))]
        dat = np.stack([[smooth_image(1000 * h + 2 * i + cam, 96) for cam in (0, 1)]
                        for i in range(len(rows))])
        cat = np.array([r[0] for r in rows])
        info = np.array([r[1:] for r in rows])
        name = lambda kind: os.path.join(out, "smallnorb-%s-%s.mat" % (chunk, kind))
        norb_matrix(name("dat"), NORB_BYTES, dat)
        norb_matrix(name("cat"), NORB_INT32, cat)
        norb_matrix(name("info"), NORB_INT32, info)


def cars3d(out, cars):
    import os
    import scipy.io
    os.makedirs(out, exist_ok=True)
    cars = int(cars)
    for c in range(cars):
        r = np.random.default_rng(c)
        im = np.empty((128, 128, 3, 24, 4), dtype=np.uint8)
        for az in range(24):
            for el in range(4):
                for ch in range(3):
                    im[:, :, ch, az, el] = np.roll(smooth_image(c * 1000 + az * 10 + el, 128),
                                                  20 * ch + r.integers(0, 8), axis=1)
        scipy.io.savemat(os.path.join(out, "car_%03d_mesh.mat" % (c + 1)), {"im": im},
                         do_compression=c < cars - 1)


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
    {"shapes3d": shapes3d, "mpi3d": mpi3d, "smallnorb": smallnorb, "cars3d": cars3d,
     "check": check}[sys.argv[1]](*sys.argv[2:])

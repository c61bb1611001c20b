"""disentanglement_lib 1.5's own SmallNORB and Cars3D loaders against a
vae-worker import of the same files: every grid position's image, and
Pillow's Lanczos resize of the 8-bit image (what vae-worker implements).

    dlib_loaders.py smallnorb SOURCE_DIR DATASET_DIR
    dlib_loaders.py cars3d SOURCE_DIR DATASET_DIR

disentanglement_lib's loaders import TensorFlow only for `gfile`: a stub
module serves Python's `open` and a sorted `os.listdir` (Cars3D's object
order is the folder's listing; vae-worker takes file names in order).
Pillow 10 dropped `ANTIALIAS` (now `LANCZOS`), and Pillow 7 `thumbnail`'s
3-tuple sizes that Cars3D passes, and NumPy 2 int() of a one-element
array: the stubs restore them as the Pillow and NumPy of
disentanglement_lib's time had them. Prints JSON.
"""
import itertools
import json
import os
import sys
import types

import numpy as np
import PIL.Image

gfile = types.SimpleNamespace(GFile=open, Open=open,
                              ListDirectory=lambda d: sorted(os.listdir(d)))
v1 = types.ModuleType("tensorflow.compat.v1")
v1.gfile = gfile
compat = types.ModuleType("tensorflow.compat")
compat.v1 = v1
tf = types.ModuleType("tensorflow")
tf.compat = compat
sys.modules.update({"tensorflow": tf, "tensorflow.compat": compat, "tensorflow.compat.v1": v1})
PIL.Image.ANTIALIAS = PIL.Image.LANCZOS
_thumbnail = PIL.Image.Image.thumbnail
PIL.Image.Image.thumbnail = lambda self, size, resample: _thumbnail(
    self, size[:2], resample, reducing_gap=None)

from disentanglement_lib.data.ground_truth import cars3d, norb  # noqa: E402

# NumPy 2 refuses int() of a one-element array, which the NORB loader's
# header read does: its NumPy gives the 0-d array that NumPy 1 converted.
norb_np = types.ModuleType("numpy_for_norb")
norb_np.__dict__.update({k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
norb_np.frombuffer = lambda b, dtype=float, count=-1, offset=0: (
    np.frombuffer(b, dtype, count, offset).reshape(()) if count == 1
    else np.frombuffer(b, dtype, count, offset))
norb.np = norb_np

sys.path.insert(0, os.path.dirname(__file__))
import vaedata  # noqa: E402


def ours(root):
    """The dataset's whole grid by factor values: {targets: image HWC}."""
    m = json.load(open(os.path.join(root, "manifest.json")))
    images, targets = vaedata.load_split(root, "train")
    if m.get("held_out"):
        ti, tt = vaedata.load_split(root, "test")
        images, targets = np.concatenate([images, ti]), np.concatenate([targets, tt])
    return m, {tuple(int(v) for v in t): img.transpose(1, 2, 0) for img, t in zip(images, targets)}


def compare(pairs):
    """(vae-worker, Pillow 8-bit, disentanglement_lib ×255) per image."""
    a = np.stack([p[0] for p in pairs]).astype(np.int64)
    pil = np.stack([p[1] for p in pairs]).astype(np.int64)
    dlib = np.stack([p[2] for p in pairs])
    return {
        "samples": len(pairs),
        "equal_to_pillow": bool(np.array_equal(a, pil)),
        "max_diff_dlib": float(np.abs(a - dlib).max()),
        "share_diff_dlib": float(np.mean(np.abs(a - dlib) > 0.5)),
    }


def smallnorb(source, root):
    m, by = ours(root)
    template = os.path.join(source, "smallnorb-{}-{}.mat")
    images, features = norb._load_small_norb_chunks(template, norb.SMALLNORB_CHUNKS)
    dat = np.concatenate([norb._read_binary_matrix(template.format(c, "dat")).view(np.uint8)[:, 0]
                          for c in norb.SMALLNORB_CHUNKS])
    pairs = []
    for r, f in enumerate(features):
        pil = np.array(PIL.Image.fromarray(dat[r]).resize((64, 64), PIL.Image.LANCZOS))
        pairs.append((by[tuple(int(v) for v in f)][:, :, 0], pil, images[r] * 255.0))
    out = compare(pairs)
    out["grid_covered"] = len(by) == len(features)
    out["nuisance"] = [f["name"] for f in m["factors"] if f.get("nuisance")]
    return out


def cars(source, root):
    m, by = ours(root)
    cars3d.CARS3D_PATH = source
    pairs = []
    for i, name in enumerate(n for n in gfile.ListDirectory(source) if ".mat" in n):
        mesh = cars3d._load_mesh(name)
        raw = np.einsum("abcde->deabc", __import__("scipy.io").io.loadmat(os.path.join(source, name))["im"])
        raw = raw.reshape((-1,) + raw.shape[2:])
        for j in range(mesh.shape[0]):
            # disentanglement_lib's factors of row j: elevation j % 4, azimuth j // 4, object i.
            pil = np.array(PIL.Image.fromarray(raw[j]).resize((64, 64), PIL.Image.LANCZOS))
            pairs.append((by[(j % 4, j // 4, i)], pil, mesh[j] * 255.0))
    return compare(pairs)


if __name__ == "__main__":
    what, source, root = sys.argv[1:4]
    print(json.dumps({"smallnorb": smallnorb, "cars3d": cars}[what](source, root)))

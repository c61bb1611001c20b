"""Fixtures for the image importer, in the layouts users bring:

    python make_images.py png DIR N SIDE        N square PNGs (RGB), each a distinct pattern
    python make_images.py jpg DIR N W H         N JPEGs of W x H, plus one corrupt file
    python make_images.py wds DIR SHARDS PER W H [BROKEN]
                                               WebDataset shards DIR/shard-000000.tar ...
                                               (tarfile; each sample KEY.jpg, KEY.cls, KEY.json);
                                               the samples numbered in BROKEN (1,5,...) have a
                                               .jpg that is not a JPEG
    python make_images.py digest DATASET_DIR   the sorted SHA-256 of every image in the
                                               dataset's train and test splits (JSON)
    python make_images.py pngdigest DIR        the same for a folder of PNGs, as PIL reads them
    python make_images.py pilcompare DATASET_DIR JPG_DIR CROP SIZE
                                               how far a dataset imported with --test-fraction 0
                                               is from PIL's import of the JPEGs (JSON): decoded in
                                               full, and decoded at 1/k in the DCT domain (draft)
"""
import hashlib
import io
import json
import os
import sys
import tarfile

import numpy as np
from PIL import Image


def pattern(i, w, h):
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    img[0, 0] = [i % 256, (i // 256) % 256, 7]
    return img


def png(d, n, side):
    os.makedirs(d, exist_ok=True)
    for i in range(int(n)):
        Image.fromarray(pattern(i, int(side), int(side))).save(os.path.join(d, f"{i:06d}.png"))


def smooth(i, w, h):
    yy, xx = np.mgrid[0:h, 0:w]
    r = (np.sin(xx / (3 + i % 5)) * 100 + 128).astype(np.uint8)
    g = (np.cos(yy / (4 + i % 3)) * 100 + 128).astype(np.uint8)
    b = np.full((h, w), (i * 37) % 256, dtype=np.uint8)
    return np.stack([r, g, b], axis=2)


def jpg(d, n, w, h):
    os.makedirs(d, exist_ok=True)
    for i in range(int(n)):
        Image.fromarray(smooth(i, int(w), int(h))).save(os.path.join(d, f"{i:06d}.jpg"), quality=95)
    with open(os.path.join(d, "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is not a jpeg")


def wds(d, shards, per, w, h, broken=""):
    broken = {int(b) for b in broken.split(",") if b}
    os.makedirs(d, exist_ok=True)
    i = 0
    for s in range(int(shards)):
        with tarfile.open(os.path.join(d, f"shard-{s:06d}.tar"), "w") as t:
            for _ in range(int(per)):
                key = f"sample{i:06d}"
                buf = io.BytesIO()
                Image.fromarray(smooth(i, int(w), int(h))).save(buf, format="JPEG", quality=95)
                jpg = b"\xff\xd8\xff\xe0 this is not a jpeg" if i in broken else buf.getvalue()
                for ext, data in [("jpg", jpg), ("cls", str(i % 7).encode()),
                                  ("json", json.dumps({"i": i}).encode())]:
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
                i += 1


def digest(root):
    sys.path.insert(0, os.path.dirname(__file__))
    import vaedata
    out = []
    for split in ("train", "test"):
        images, _ = vaedata.load_split(root, split)
        out += [hashlib.sha256(np.ascontiguousarray(im.transpose(1, 2, 0)).tobytes()).hexdigest()
                for im in images]
    print(json.dumps(sorted(out)))


def pngdigest(d):
    out = [hashlib.sha256(np.asarray(Image.open(os.path.join(d, f)).convert("RGB")).tobytes()).hexdigest()
           for f in sorted(os.listdir(d)) if f.endswith(".png")]
    print(json.dumps(sorted(out)))


def pil_import(path, crop, size, draft):
    """One JPEG as PIL imports it: centre crop, Lanczos resize to SIZE, channels first; with
    DRAFT, decoded at the smallest DCT scaling 1/k (k of 2, 4, 8) keeping the crop >= SIZE."""
    img = Image.open(path)
    w, h = img.size
    l, t = (w - crop) // 2, (h - crop) // 2
    k = next((k for k in (8, 4, 2) if crop // k >= size), 1) if draft else 1
    if k > 1:
        img.draft("RGB", (-(-w // k), -(-h // k)))
        assert img.size == (-(-w // k), -(-h // k)), img.size
    img = img.convert("RGB")
    box = (l / k, t / k, (l + crop) / k, (t + crop) / k)
    return np.asarray(img.resize((size, size), Image.LANCZOS, box=box)).transpose(2, 0, 1)


def pilcompare(root, src, crop, size):
    sys.path.insert(0, os.path.dirname(__file__))
    import vaedata
    ours, _ = vaedata.load_split(root, "train")
    names = sorted(f for f in os.listdir(src) if f.endswith(".jpg") and f != "broken.jpg")
    assert len(ours) == len(names), (len(ours), len(names))
    out = {}
    for draft in (False, True):
        theirs = np.stack([pil_import(os.path.join(src, n), int(crop), int(size), draft) for n in names])
        d = np.abs(ours.astype(int) - theirs.astype(int))
        out["draft" if draft else "full"] = {"mean": float(d.mean()), "max": int(d.max())}
    print(json.dumps(out))


if __name__ == "__main__":
    {"png": png, "jpg": jpg, "wds": wds, "digest": digest, "pngdigest": pngdigest,
     "pilcompare": pilcompare}[sys.argv[1]](*sys.argv[2:])

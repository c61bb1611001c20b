"""Hostile inputs for the importers (issue 31), written by the tools that write
the real files: NumPy's .npy header writer and zipfile (an .npz), h5py, PIL.
Each file is small; what it declares is not.

    python make_hostile_inputs.py DIR SECRET

writes into DIR:
    huge_imgs.npz      dSprites' keys; `imgs` declares (10**12, 64, 64) uint8 and holds
                       no data (378 bytes as the issue found it)
    huge_labels.h5     3dshapes' keys; `images` and `labels` declare 10**9 rows,
                       gzip-chunked with nothing written (a few KB)
    external.h5        `images` stored in the external file SECRET (HDF5 external storage)
    link.h5            `images` an external link into other.h5
    virtual.h5         `images` a virtual dataset drawing on other.h5
    other.h5           a plain 3dshapes-shaped file (1 row) the two above point into
    mpi3d_256.npz      MPI3D's `images`, 256 rows: the grid 256,1,1,1,1,1,1
    jpegs/giant.jpg    a 632-byte-class JPEG whose SOF declares 65500 x 65500
    jpegs/fine.jpg     an ordinary 80 x 80 JPEG
    wds/labels.tar     WebDataset (tarfile), 4 samples: a pretty-printed .json, a .json that
                       is not JSON, none, a compact one
    wds/cut.tar        6 samples, cut at the entry boundary before the 4th (no end blocks)
    wds/links.tar      2 samples, a symbolic link and a hard link
    wds/dup.tar        keys a, b, a
and prints their paths as JSON.
"""
import io
import json
import os
import sys
import tarfile
import zipfile

import h5py
import numpy as np
from PIL import Image


def npy_header_only(shape, descr):
    """A .npy of `shape` whose data is missing: the header NumPy writes, nothing after."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def huge_npz(path):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("imgs.npy", npy_header_only((10**12, 64, 64), "|u1"))
        z.writestr("latents_classes.npy", npy_header_only((10**12, 6), "<i8"))


def huge_h5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(10**9, 64, 64, 3), dtype="u1",
                         chunks=(1, 64, 64, 3), compression="gzip")
        f.create_dataset("labels", shape=(10**9, 6), dtype="f8",
                         chunks=(1024, 6), compression="gzip")


def plain_h5(path):
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((1, 64, 64, 3), np.uint8)
        f["labels"] = np.zeros((1, 6), np.float64)


def external_h5(path, secret):
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(1, 64, 64, 3), dtype="u1",
                         external=[(secret, 0, h5py.h5f.UNLIMITED)])
        f["labels"] = np.zeros((1, 6), np.float64)


def link_h5(path, other):
    with h5py.File(path, "w") as f:
        f["images"] = h5py.ExternalLink(other, "/images")
        f["labels"] = np.zeros((1, 6), np.float64)


def virtual_h5(path, other):
    layout = h5py.VirtualLayout(shape=(1, 64, 64, 3), dtype="u1")
    layout[:] = h5py.VirtualSource(other, "images", shape=(1, 64, 64, 3))
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("images", layout)
        f["labels"] = np.zeros((1, 6), np.float64)


def mpi3d_256(path):
    images = np.zeros((256, 64, 64, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(256)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images.npy", npy(images))


def jpeg(path, w, h):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=80)


def giant_jpeg(path):
    """A small real JPEG whose SOF0 marker is patched to declare 65500 x 65500."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, format="JPEG", quality=50)
    b = bytearray(buf.getvalue())
    i = b.index(b"\xff\xc0")  # SOF0: FF C0, length (2), precision (1), height (2), width (2)
    b[i + 5:i + 7] = (65500).to_bytes(2, "big")
    b[i + 7:i + 9] = (65500).to_bytes(2, "big")
    with open(path, "wb") as f:
        f.write(b)


def jpeg_bytes(i):
    buf = io.BytesIO()
    rng = np.random.default_rng(i)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def wds_labels(path):
    labels = [json.dumps({"i": 0, "tags": ["a", "b"]}, indent=2).encode(),
              b"not { json", None, b'{"i": 3}']
    with tarfile.open(path, "w") as tar:
        for i, label in enumerate(labels):
            add(tar, f"{i:06d}.jpg", jpeg_bytes(i))
            if label is not None:
                add(tar, f"{i:06d}.json", label)


def wds_cut(path):
    with tarfile.open(path, "w") as tar:
        for i in range(6):
            add(tar, f"{i:06d}.jpg", jpeg_bytes(i))
            add(tar, f"{i:06d}.cls", str(i % 3).encode())
    with tarfile.open(path) as tar:
        cut = tar.getmembers()[6].offset  # the 4th sample's first header
    with open(path, "r+b") as f:
        f.truncate(cut)


def wds_links(path):
    with tarfile.open(path, "w") as tar:
        add(tar, "000000.jpg", jpeg_bytes(0))
        add(tar, "000001.jpg", jpeg_bytes(1))
        sym = tarfile.TarInfo("000002.jpg")
        sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(sym)
        hard = tarfile.TarInfo("000003.jpg")
        hard.type, hard.linkname = tarfile.LNKTYPE, "000000.jpg"
        tar.addfile(hard)


def wds_dup(path):
    with tarfile.open(path, "w") as tar:
        for k in ["a", "b", "a"]:
            add(tar, f"{k}.jpg", jpeg_bytes(ord(k)))


def main(d, secret):
    os.makedirs(os.path.join(d, "jpegs"), exist_ok=True)
    os.makedirs(os.path.join(d, "wds"), exist_ok=True)
    p = lambda name: os.path.join(d, name)
    huge_npz(p("huge_imgs.npz"))
    huge_h5(p("huge_labels.h5"))
    plain_h5(p("other.h5"))
    external_h5(p("external.h5"), secret)
    link_h5(p("link.h5"), p("other.h5"))
    virtual_h5(p("virtual.h5"), p("other.h5"))
    mpi3d_256(p("mpi3d_256.npz"))
    giant_jpeg(p("jpegs/giant.jpg"))
    jpeg(p("jpegs/fine.jpg"), 80, 80)
    wds_labels(p("wds/labels.tar"))
    wds_cut(p("wds/cut.tar"))
    wds_links(p("wds/links.tar"))
    wds_dup(p("wds/dup.tar"))
    names = ["wds/labels.tar", "wds/cut.tar", "wds/links.tar", "wds/dup.tar",
             "huge_imgs.npz", "huge_labels.h5", "external.h5", "link.h5", "virtual.h5",
             "other.h5", "mpi3d_256.npz", "jpegs/giant.jpg", "jpegs/fine.jpg"]
    print(json.dumps({n: p(n) for n in names}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Reads a generated dSprites dataset with NumPy (tests/python/vaedata.py)
and prints JSON: split sizes, dtype, target names, the factor indices of a
few samples, and per image the bounding box of its lit pixels."""
import json
import sys

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
import vaedata  # noqa: E402

root = sys.argv[1]
m = json.load(open(f"{root}/manifest.json"))
x, t = vaedata.load_split(root, "train")
rows = np.where(x[:, 0].any(axis=2))
cols = np.where(x[:, 0].any(axis=1))
lo_r = np.full(len(x), 64); hi_r = np.full(len(x), -1)
np.minimum.at(lo_r, rows[0], rows[1]); np.maximum.at(hi_r, rows[0], rows[1])
lo_c = np.full(len(x), 64); hi_c = np.full(len(x), -1)
np.minimum.at(lo_c, cols[0], cols[1]); np.maximum.at(hi_c, cols[0], cols[1])
print(json.dumps({
    "n": int(len(x)),
    "dtype": m["dtype"],
    "targets": [s["name"] for s in m["targets"]],
    "values": sorted(set(np.unique(x).tolist())),
    "factors": t.tolist(),
    "min_row": int(lo_r.min()), "max_row": int(hi_r.max()),
    "min_col": int(lo_c.min()), "max_col": int(hi_c.max()),
    "empty": int((hi_r < 0).sum()),
    "sha256": [s["sha256"] for s in m["splits"]["train"]["shards"]],
}))

"""The counter-based noise of worker/src/rng.rs in NumPy, so Python checks
can feed a PyTorch model exactly the reparameterisation noise vae-worker used.
normals(seed, stream, counter, rows, dims) -> float32 array [len(rows), dims]."""
import numpy as np

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
STREAMS = {"permutation": 1, "train": 2, "eval": 3, "prior": 4, "sampled_codes": 10, "iwae": 11,
           "variant": 13}


def mix(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def key(seed, stream, counter, index):
    k = mix(np.uint64(seed)) ^ np.uint64(STREAMS[stream])
    k = mix(k) ^ np.uint64(counter)
    return mix(mix(k) ^ np.asarray(index, dtype=np.uint64))


def bits(k, j):
    with np.errstate(over="ignore"):
        return mix(k + (np.uint64(j) + np.uint64(1)) * GOLDEN)


def unit(b):
    return ((b >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / float(1 << 53))


def uniform(b):
    """A uniform in [0, 1) from 64 bits (data.variant's draws)."""
    return (b >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53))


def below(b, n):
    """A uniform integer in 0..n from 64 bits (multiply-shift)."""
    return int((int(b) * int(n)) >> 64)


def normals(seed, stream, counter, rows, dims):
    k = key(seed, stream, counter, np.arange(rows.start, rows.stop, dtype=np.uint64))[:, None]
    d = np.arange(dims, dtype=np.uint64)[None, :]
    u1 = unit(bits(k, np.uint64(2) * d))
    u2 = unit(bits(k, np.uint64(2) * d + np.uint64(1)))
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


if __name__ == "__main__":
    print(normals(1, "train", 0, range(0, 2), 3))

//! dSprites, generated procedurally (Matthey et al. 2017): 64×64 binary
//! images of a square, an ellipse or a heart, over every combination of
//! shape (3), scale (6 values, `linspace(0.5, 1, 6)`), orientation (40,
//! `linspace(0, 2π, 40)`, both ends included), posX and posY (32 each,
//! `linspace(0, 1, 32)`): 737,280 images in the original order, posY varying
//! fastest, then posX, orientation, scale, shape. Targets are the five factor
//! indices. Stored as packed bits (`u1`).
use vae_proto::dataset::DatasetManifest;

use super::error::DataError;
use super::factors::{FactorSpec, FactorWriter, TestSplit};
use super::format::pack_bits;
use super::store::Store;

pub const SIDE: usize = 64;
pub const FACTOR_NAMES: [&str; 5] = ["shape", "scale", "orientation", "posX", "posY"];
pub const FACTOR_SIZES: [usize; 5] = [3, 6, 40, 32, 32];
/// The orientation factor's position: 40 angles from 0 to 2π, both ends in.
const ORIENTATION: usize = 2;
/// Radius, in pixels, of the disc that holds a shape at scale 1.
const RADIUS: f64 = 10.0;
/// Shape centres range over `[LO, HI]` pixels as the position goes 0 → 1:
/// every shape stays inside the frame, most pixels fall in the centre.
const LO: f64 = 12.0;
const HI: f64 = 52.0;

fn linspace(a: f64, b: f64, n: usize, i: usize) -> f64 {
    if n == 1 {
        a
    } else {
        a + (b - a) * i as f64 / (n - 1) as f64
    }
}

/// Factor values of factor indices `[shape, scale, orientation, posX, posY]`.
pub fn factor_values(f: [usize; 5]) -> [f64; 5] {
    [
        f[0] as f64,
        linspace(0.5, 1.0, 6, f[1]),
        linspace(0.0, std::f64::consts::TAU, 40, f[2]),
        linspace(0.0, 1.0, 32, f[3]),
        linspace(0.0, 1.0, 32, f[4]),
    ]
}

/// Index in the full dataset of factor indices `f` (mixed radix, posY fastest).
pub fn index_of(f: [usize; 5]) -> usize {
    f.iter()
        .zip(FACTOR_SIZES)
        .fold(0, |acc, (v, n)| acc * n + v)
}

/// Factor indices of the full dataset's image `i`.
pub fn factors_of(mut i: usize) -> [usize; 5] {
    let mut f = [0; 5];
    for k in (0..5).rev() {
        f[k] = i % FACTOR_SIZES[k];
        i /= FACTOR_SIZES[k];
    }
    f
}

/// Whether canonical point `(u, v)` (v up, unit disc) is inside shape `s`.
fn inside(s: usize, u: f64, v: f64) -> bool {
    match s {
        0 => u.abs() <= 0.7 && v.abs() <= 0.7,
        1 => (u / 0.95).powi(2) + (v / 0.45).powi(2) <= 1.0,
        _ => {
            // The heart curve (x² + y² − 1)³ = x²y³, centred and shrunk to the unit disc.
            let (x, y) = (u * 1.25, v * 1.25 + 0.118);
            let a = x * x + y * y - 1.0;
            a * a * a - x * x * y * y * y <= 0.0
        }
    }
}

/// Renders factor indices `f` into `out` (64×64 bytes, 1 = on).
pub fn render(f: [usize; 5], out: &mut [u8]) {
    out.fill(0);
    let [shape, scale, theta, px, py] = factor_values(f);
    let (cx, cy) = (LO + px * (HI - LO), LO + py * (HI - LO));
    let r = RADIUS * scale;
    let (sin, cos) = theta.sin_cos();
    let lo = |c: f64| ((c - r - 1.0).floor().max(0.0)) as usize;
    let hi = |c: f64| ((c + r + 1.0).ceil().min(SIDE as f64)) as usize;
    for row in lo(cy)..hi(cy) {
        for col in lo(cx)..hi(cx) {
            // Pixel centre relative to the shape centre, y up, then rotated by −θ.
            let (dx, dy) = (col as f64 + 0.5 - cx, cy - (row as f64 + 0.5));
            let (u, v) = ((cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r);
            if inside(shape as usize, u, v) {
                out[row * SIDE + col] = 1;
            }
        }
    }
}

/// Which values of each factor to keep (all, by default).
#[derive(Clone, Debug)]
pub struct Subsample {
    /// Per factor, the number of evenly spaced values kept (`None` = all).
    pub keep: [Option<usize>; 5],
}

impl Subsample {
    pub fn all() -> Subsample {
        Subsample { keep: [None; 5] }
    }

    /// The kept indices of factor `k`, evenly spaced over its range (ends
    /// included). Orientation is cyclic — its 40 values run from 0 to 2π,
    /// and the last is the first again — so a subset spreads over [0, 2π)
    /// without the full turn: `i·39/m`, no two the same angle.
    pub fn values(&self, k: usize) -> Vec<usize> {
        let n = FACTOR_SIZES[k];
        match self.keep[k] {
            Some(m) if m < n && m > 1 && k == ORIENTATION => {
                (0..m).map(|i| i * (n - 1) / m).collect()
            }
            Some(m) if m < n && m > 1 => (0..m).map(|i| i * (n - 1) / (m - 1)).collect(),
            Some(1) => vec![0],
            _ => (0..n).collect(),
        }
    }

    /// The kept factor combinations, in dataset order.
    pub fn combinations(&self) -> Vec<[usize; 5]> {
        let v: Vec<Vec<usize>> = (0..5).map(|k| self.values(k)).collect();
        let mut out = Vec::new();
        for &a in &v[0] {
            for &b in &v[1] {
                for &c in &v[2] {
                    for &d in &v[3] {
                        for &e in &v[4] {
                            out.push([a, b, c, d, e]);
                        }
                    }
                }
            }
        }
        out
    }
}

/// Renders `combos` into packed images and their factor targets, on all cores.
fn render_packed(combos: &[[usize; 5]]) -> (Vec<u8>, Vec<u8>) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(combos.len().max(1));
    let per = combos.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = combos
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    let mut img = vec![0u8; SIDE * SIDE];
                    let mut packed = Vec::with_capacity(chunk.len() * SIDE * SIDE / 8);
                    for &f in chunk {
                        render(f, &mut img);
                        packed.extend(pack_bits(&img, 1, SIDE * SIDE));
                    }
                    packed
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let targets = combos.iter().flat_map(|f| f.map(|v| v as u8)).collect();
    (parts.concat(), targets)
}

/// dSprites (or the `sub` subset) as a factor dataset: its factors and
/// the values the grid keeps.
pub fn spec(sub: &Subsample) -> FactorSpec {
    spec_keeping(
        (0..5)
            .map(|k| sub.values(k).into_iter().map(|v| v as u8).collect())
            .collect(),
    )
}

/// dSprites as a factor dataset whose grid keeps `values[k]` of factor k
/// (the generator's subsets, or the values an imported file holds).
pub fn spec_keeping(values: Vec<Vec<u8>>) -> FactorSpec {
    FactorSpec {
        name: "dsprites".into(),
        sample_shape: [1, SIDE, SIDE],
        dtype: "u1",
        factors: values
            .into_iter()
            .enumerate()
            .map(|(k, kept)| (FACTOR_NAMES[k].to_string(), FACTOR_SIZES[k], kept))
            .collect(),
        units: FACTOR_SIZES
            .iter()
            .enumerate()
            .map(|(k, &n)| units(k, n))
            .collect(),
        nuisance: vec![],
    }
}

/// The values of factor `k` (of `n`) in its units, as the published file's
/// `latents_values` has them: shape 1, 2, 3 (square, ellipse, heart); scale
/// 0.5 to 1; orientation 0 to 2π radians; positions 0 to 1.
fn units(k: usize, n: usize) -> Vec<f64> {
    let linspace = |a: f64, b: f64| -> Vec<f64> {
        (0..n)
            .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
            .collect()
    };
    match k {
        0 => (1..=n).map(|v| v as f64).collect(),
        1 => linspace(0.5, 1.0),
        ORIENTATION => linspace(0.0, std::f64::consts::TAU),
        _ => linspace(0.0, 1.0),
    }
}

/// Generates dSprites (or the `sub` subset) and writes it to `out`: the
/// `train` split holds every image and `test` a fixed random subset of
/// them — or, with [`TestSplit::HeldOut`], the train split the rest.
pub fn prepare(
    out: &str,
    sub: &Subsample,
    shard_samples: usize,
    split: TestSplit,
) -> Result<DatasetManifest, DataError> {
    let store = Store::open(out, &super::store::StorageOptions::default())?;
    let mut w = FactorWriter::new(store, &spec(sub), shard_samples, split);
    let per = (SIDE * SIDE).div_ceil(8);
    for chunk in sub.combinations().chunks(shard_samples.max(1)) {
        let (packed, targets) = render_packed(chunk);
        for (image, t) in packed.chunks(per).zip(targets.chunks(5)) {
            w.push(image, t)?;
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_factors_are_inverse_and_in_the_original_order() {
        assert_eq!(FACTOR_SIZES.iter().product::<usize>(), 737_280);
        assert_eq!(factors_of(0), [0, 0, 0, 0, 0]);
        assert_eq!(factors_of(1), [0, 0, 0, 0, 1]); // posY fastest
        assert_eq!(factors_of(32), [0, 0, 0, 1, 0]); // then posX
        assert_eq!(factors_of(1024), [0, 0, 1, 0, 0]); // then orientation
        assert_eq!(factors_of(40 * 1024), [0, 1, 0, 0, 0]); // then scale
        assert_eq!(factors_of(6 * 40 * 1024), [1, 0, 0, 0, 0]); // then shape
        assert_eq!(factors_of(737_279), [2, 5, 39, 31, 31]);
        for i in [0, 5, 777, 123_456, 737_279] {
            assert_eq!(index_of(factors_of(i)), i);
        }
        let v = factor_values([2, 5, 39, 31, 0]);
        assert_eq!(v[1], 1.0);
        assert!((v[2] - std::f64::consts::TAU).abs() < 1e-12);
        assert_eq!((v[3], v[4]), (1.0, 0.0));
        assert!((factor_values([0, 1, 0, 0, 0])[1] - 0.6).abs() < 1e-12);
    }

    #[test]
    fn shapes_stay_in_frame_and_mostly_central() {
        let mut img = vec![0u8; SIDE * SIDE];
        let (mut total, mut central) = (0usize, 0usize);
        for s in 0..3 {
            for scale in 0..6 {
                for o in (0..40).step_by(7) {
                    let grid = [0, 6, 12, 19, 25, 31];
                    for (px, py) in grid.iter().flat_map(|&x| grid.iter().map(move |&y| (x, y))) {
                        render([s, scale, o, px, py], &mut img);
                        let on: usize = img.iter().map(|&b| b as usize).sum();
                        assert!(on > 20, "shape {s} scale {scale} is nearly empty");
                        // Nothing on the outermost pixel ring: the shape is whole.
                        for i in 0..SIDE {
                            for (r, c) in [(0, i), (SIDE - 1, i), (i, 0), (i, SIDE - 1)] {
                                assert_eq!(
                                    img[r * SIDE + c],
                                    0,
                                    "touches the frame at {s} {scale} {o} {px} {py}"
                                );
                            }
                        }
                        total += on;
                        for r in 8..56 {
                            for c in 8..56 {
                                central += img[r * SIDE + c] as usize;
                            }
                        }
                    }
                }
            }
        }
        // Over positions spread evenly, most pixels lie in the central 48×48.
        assert!(
            central as f64 > 0.85 * total as f64,
            "{central} of {total} pixels central"
        );
    }

    #[test]
    fn shapes_differ_and_scale_grows() {
        let mut a = vec![0u8; SIDE * SIDE];
        let mut b = vec![0u8; SIDE * SIDE];
        render([0, 5, 3, 16, 16], &mut a);
        render([2, 5, 3, 16, 16], &mut b);
        assert_ne!(a, b);
        render([1, 0, 0, 16, 16], &mut a);
        render([1, 5, 0, 16, 16], &mut b);
        let count = |v: &[u8]| v.iter().filter(|&&x| x == 1).count();
        assert!(count(&b) > 3 * count(&a));
    }

    #[test]
    fn the_full_set_is_every_combination_once_in_order() {
        let all = Subsample::all().combinations();
        assert_eq!(all.len(), 737_280);
        for (i, f) in all.iter().enumerate().step_by(997) {
            assert_eq!(index_of(*f), i);
        }
        assert_eq!(all[737_279], [2, 5, 39, 31, 31]);
    }

    #[test]
    fn rendering_is_deterministic() {
        let (mut a, mut b) = (vec![0u8; SIDE * SIDE], vec![0u8; SIDE * SIDE]);
        render([2, 3, 17, 9, 20], &mut a);
        render([2, 3, 17, 9, 20], &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn orientation_subsets_never_repeat_an_angle() {
        // Orientations 0 and 39 are the same angle: the same image.
        let image = |f: [usize; 5]| {
            let mut out = vec![0u8; SIDE * SIDE];
            render(f, &mut out);
            out
        };
        assert_eq!(image([2, 3, 0, 16, 16]), image([2, 3, 39, 16, 16]));
        for m in 2..40 {
            let s = Subsample {
                keep: [None, None, Some(m), None, None],
            };
            let v = s.values(ORIENTATION);
            assert_eq!(v.len(), m);
            assert!(
                v.windows(2).all(|w| w[0] < w[1]) && v[m - 1] < 39,
                "{m}: {v:?}"
            );
        }
        // Two orientations: each shape's two images differ.
        let two = Subsample {
            keep: [None, None, Some(2), None, None],
        }
        .values(ORIENTATION);
        for shape in 0..3 {
            assert_ne!(
                image([shape, 5, two[0], 16, 16]),
                image([shape, 5, two[1], 16, 16]),
                "shape {shape}"
            );
        }
    }

    #[test]
    fn subsets_keep_the_ends() {
        let s = Subsample {
            keep: [None, Some(2), Some(4), Some(1), None],
        };
        assert_eq!(s.values(1), vec![0, 5]);
        assert_eq!(s.values(2), vec![0, 9, 19, 29]);
        assert_eq!(s.values(3), vec![0]);
        assert_eq!(s.combinations().len(), 3 * 2 * 4 * 32);
    }
}

//! disentanglement_lib's dSprites variants (`data.variant`), made at load
//! time from the binary images as its `ColorDSprites`, `NoisyDSprites` and
//! `ScreamDSprites` make them — each sample's random numbers drawn from
//! the project's counter-based stream ([`Stream::Variant`]: seed
//! `train.seed`, counter = the epoch (or a fixed counter for the test split
//! and the metrics), index = the sample's index in its split), so what a
//! sample looks like depends on neither a resume nor the number of workers:
//! - `color`: the shape times a colour `0.5 + 0.5·u` per channel;
//! - `noisy`: `min(x + u, 1)`, a uniform per pixel and channel (draw `j` =
//!   the channel-first position);
//! - `scream`: a 64×64 patch of the picture at (draw 0, draw 1), plus a tint
//!   `u` per channel (draws 2–4), halved; the shape's pixels inverted.
//!
//! Images in: one byte per pixel (0 or 255), `[n, 1, H, W]`; out: float
//! `[n, 3, H, W]` in [0, 1].
use vae_proto::config::DataVariant;

use super::error::DataError;
use crate::rng::{self, Stream};

/// disentanglement_lib fits the picture into this box (`thumbnail((350, 274))`).
pub const SCREAM_BOX: (usize, usize) = (350, 274);

/// A picture the Scream variant cuts its backgrounds from: `[h, w, 3]` in [0, 1].
pub struct Picture {
    pub h: usize,
    pub w: usize,
    pub pixels: Vec<f32>,
}

/// A variant and the seed of its draws.
pub struct Variants {
    pub variant: DataVariant,
    pub seed: u64,
    pub scream: Option<Picture>,
}

/// A uniform in [0, 1) from 64 bits (53 bits, as NumPy's `random`).
fn uniform(b: u64) -> f32 {
    ((b >> 11) as f64 * (1.0 / (1u64 << 53) as f64)) as f32
}

impl Variants {
    /// Whether any transform is made.
    pub fn active(&self) -> bool {
        self.variant != DataVariant::None
    }

    /// The channels of the images it makes from `c` stored ones.
    pub fn channels(&self, c: usize) -> usize {
        if self.active() {
            3
        } else {
            c
        }
    }

    /// Samples `ids` (their images `binary`, `[n, 1, h, w]` bytes) as the
    /// variant makes them under `counter`: float `[n, 3, h, w]`.
    pub fn apply(
        &self,
        binary: &[u8],
        (h, w): (usize, usize),
        ids: &[u64],
        counter: u64,
    ) -> Vec<f32> {
        let plane = h * w;
        let mut out = vec![0f32; ids.len() * 3 * plane];
        for (i, &id) in ids.iter().enumerate() {
            let key = rng::key(self.seed, Stream::Variant, counter, id);
            let x = &binary[i * plane..(i + 1) * plane];
            let o = &mut out[i * 3 * plane..(i + 1) * 3 * plane];
            match (&self.variant, &self.scream) {
                (DataVariant::Color, _) => {
                    for c in 0..3 {
                        let colour = 0.5 + 0.5 * uniform(rng::bits(key, c as u64));
                        for p in 0..plane {
                            o[c * plane + p] = f32::from(x[p] / 255) * colour;
                        }
                    }
                }
                (DataVariant::Noisy, _) => {
                    for (j, v) in o.iter_mut().enumerate() {
                        let u = uniform(rng::bits(key, j as u64));
                        *v = (f32::from(x[j % plane] / 255) + u).min(1.0);
                    }
                }
                (DataVariant::Scream, Some(pic)) => scream(pic, key, x, (h, w), o),
                _ => {
                    for c in 0..3 {
                        for p in 0..plane {
                            o[c * plane + p] = f32::from(x[p]) / 255.0;
                        }
                    }
                }
            }
        }
        out
    }
}

/// One Scream-dSprites image into `o` (`[3, h, w]`).
fn scream(pic: &Picture, key: u64, x: &[u8], (h, w): (usize, usize), o: &mut [f32]) {
    let cy = rng::below(rng::bits(key, 0), pic.h.saturating_sub(h).max(1) as u64) as usize;
    let cx = rng::below(rng::bits(key, 1), pic.w.saturating_sub(w).max(1) as u64) as usize;
    let plane = h * w;
    for c in 0..3 {
        let tint = uniform(rng::bits(key, 2 + c as u64));
        for y in 0..h {
            for xx in 0..w {
                let at = ((cy + y) * pic.w + cx + xx) * 3 + c;
                let bg = (pic.pixels.get(at).copied().unwrap_or(0.0) + tint) / 2.0;
                let p = y * w + xx;
                o[c * plane + p] = if x[p] != 0 { 1.0 - bg } else { bg };
            }
        }
    }
}

/// The size old Pillow's `thumbnail(box)` gives an image of `(w, h)`:
/// each side scaled down (truncated) to fit, the aspect kept.
pub fn thumbnail_size((w, h): (usize, usize), (bw, bh): (usize, usize)) -> (usize, usize) {
    let (mut x, mut y) = (w, h);
    if x > bw {
        y = ((y as f64 * bw as f64 / x as f64) as usize).max(1);
        x = bw;
    }
    if y > bh {
        x = ((x as f64 * bh as f64 / y as f64) as usize).max(1);
        y = bh;
    }
    (x, y)
}

/// The picture at `path` (PNG or JPEG), fitted into [`SCREAM_BOX`] as
/// disentanglement_lib does (Pillow's Lanczos, to the bit), in [0, 1].
pub fn load_picture(path: &std::path::Path, url: &str) -> Result<Picture, DataError> {
    let fail = |m: String| DataError::Io {
        url: url.to_string(),
        message: m,
    };
    let img = image::open(path).map_err(|e| fail(format!("data.scream_image: {e}")))?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w < 64 || h < 64 || w.saturating_mul(h) > 1 << 26 {
        return Err(fail(format!(
            "data.scream_image: {w}×{h}, at least 64×64 and at most 2^26 pixels"
        )));
    }
    let (tw, th) = thumbnail_size((w, h), SCREAM_BOX);
    let small = if (tw, th) == (w, h) {
        rgb.into_raw()
    } else {
        super::import::resample::lanczos_resize(rgb.as_raw(), (w, h), 3, (tw, th))
    };
    if tw <= 64 || th <= 64 {
        return Err(fail(format!(
            "data.scream_image: fitted into 350×274 it is {tw}×{th}, too small to cut 64×64 patches from"
        )));
    }
    Ok(Picture {
        h: th,
        w: tw,
        pixels: small.iter().map(|&v| f32::from(v) / 255.0).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_keep_the_shape_and_depend_on_the_sample_not_the_batch() {
        let v = |variant| Variants {
            variant,
            seed: 3,
            scream: Some(Picture {
                h: 70,
                w: 80,
                pixels: (0..70 * 80 * 3).map(|i| (i % 7) as f32 / 7.0).collect(),
            }),
        };
        let img: Vec<u8> = (0..2 * 16)
            .map(|p| if p % 5 == 0 { 255 } else { 0 })
            .collect();
        for variant in [DataVariant::Color, DataVariant::Noisy, DataVariant::Scream] {
            let both = v(variant).apply(&img, (4, 4), &[7, 9], 0);
            let alone = v(variant).apply(&img[16..], (4, 4), &[9], 0);
            assert_eq!(&both[48..], &alone[..], "{variant:?}");
            assert!(both.iter().all(|x| (0.0..=1.0).contains(x)));
            assert_ne!(v(variant).apply(&img[16..], (4, 4), &[9], 1), alone);
        }
        let color = v(DataVariant::Color).apply(&img[..16], (4, 4), &[7], 0);
        assert_eq!(color[1], 0.0);
        assert!(color[0] >= 0.5);
        assert_eq!(thumbnail_size((700, 548), SCREAM_BOX), (350, 274));
        assert_eq!(thumbnail_size((1000, 1250), SCREAM_BOX), (219, 274));
    }
}

//! Pillow's Lanczos resize of 8-bit images, to the bit
//! (`Image.resize(size, Image.LANCZOS)` on an `L` or `RGB` image, which is
//! what disentanglement_lib's SmallNORB and Cars3D loaders call): Pillow's
//! `Resample.c` — coefficients in double from a truncated sinc of support
//! 3 scaled by the reduction, normalised, then fixed point with 22
//! fractional bits; a horizontal pass over the rows the vertical pass
//! needs, then a vertical pass, each rounding and clipping to 0..255.
//! (`fast_image_resize`, used for image folders, agrees only to ±1.)

/// Pillow's `PRECISION_BITS` for 8-bit images: 32 − 8 − 2.
const PRECISION_BITS: u32 = 22;
const SUPPORT: f64 = 3.0;

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos(x: f64) -> f64 {
    if (-SUPPORT..SUPPORT).contains(&x) {
        sinc(x) * sinc(x / SUPPORT)
    } else {
        0.0
    }
}

/// One output coordinate's first input index and its fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` then `normalize_coeffs_8bpc` for `input`
/// samples to `output`.
fn coefficients(input: usize, output: usize) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = SUPPORT * filterscale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // Pillow truncates toward zero after adding 0.5.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| lanczos((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = w
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    if k < 0.0 {
                        (-0.5 + k * one) as i32
                    } else {
                        (0.5 + k * one) as i32
                    }
                })
                .collect();
            Taps {
                first: xmin,
                weights,
            }
        })
        .collect()
}

/// Pillow's `clip8`.
fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// `src` (`h` rows of `w` pixels of `channels` interleaved bytes) resized
/// to `out_w`×`out_h` as Pillow's Lanczos does, same layout.
pub fn lanczos_resize(
    src: &[u8],
    (w, h): (usize, usize),
    channels: usize,
    (out_w, out_h): (usize, usize),
) -> Vec<u8> {
    debug_assert_eq!(src.len(), w * h * channels);
    let horiz = coefficients(w, out_w);
    let vert = coefficients(h, out_h);
    // The rows the vertical pass reads, as Pillow bounds them.
    let (y0, y1) = match (vert.first(), vert.last()) {
        (Some(a), Some(b)) => (a.first, b.first + b.weights.len()),
        _ => return Vec::new(),
    };
    let needs_h = w != out_w;
    let temp: Vec<u8> = if needs_h {
        let mut t = vec![0u8; (y1 - y0) * out_w * channels];
        for y in y0..y1 {
            let row = &src[y * w * channels..(y + 1) * w * channels];
            for (xx, tap) in horiz.iter().enumerate() {
                for c in 0..channels {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, &k) in tap.weights.iter().enumerate() {
                        ss += i64::from(row[(tap.first + i) * channels + c]) * i64::from(k);
                    }
                    t[((y - y0) * out_w + xx) * channels + c] = clip8(ss);
                }
            }
        }
        t
    } else {
        src[y0 * w * channels..y1 * w * channels].to_vec()
    };
    if h == out_h {
        return temp;
    }
    let stride = out_w * channels;
    let mut out = vec![0u8; out_h * stride];
    for (yy, tap) in vert.iter().enumerate() {
        for x in 0..stride {
            let mut ss: i64 = 1 << (PRECISION_BITS - 1);
            for (i, &k) in tap.weights.iter().enumerate() {
                ss += i64::from(temp[(tap.first - y0 + i) * stride + x]) * i64::from(k);
            }
            out[yy * stride + x] = clip8(ss);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_stays_flat_and_weights_sum_to_one() {
        let flat = vec![77u8; 96 * 96];
        assert!(lanczos_resize(&flat, (96, 96), 1, (64, 64))
            .iter()
            .all(|&v| v == 77));
        for t in coefficients(96, 64) {
            let s: i32 = t.weights.iter().sum();
            assert!((s - (1 << PRECISION_BITS)).abs() <= 4, "{s}");
        }
        let rgb: Vec<u8> = (0..128 * 128 * 3).map(|i| (i % 3 * 100) as u8).collect();
        let out = lanczos_resize(&rgb, (128, 128), 3, (64, 64));
        assert_eq!(out.len(), 64 * 64 * 3);
        assert_eq!(&out[..6], &[0, 100, 200, 0, 100, 200]);
    }
}

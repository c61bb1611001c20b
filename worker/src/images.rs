//! Image grids: batches of `[C, H, W]` byte images tiled into one picture,
//! encoded as PNG (for the run directory and for TensorBoard).
use std::path::Path;
use tch::{Kind, Tensor};

/// A picture of `height × width` pixels with `channels` (1 or 3) bytes each.
pub struct Grid {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
}

/// Tiles `images: [N, C, H, W]` (float in [0, 1]) into rows of `per_row`,
/// with a 2-pixel border.
pub fn grid(images: &Tensor, per_row: usize) -> Result<Grid, tch::TchError> {
    let size = images.size();
    let (n, c, h, w) = (
        size[0] as usize,
        size[1] as usize,
        size[2] as usize,
        size[3] as usize,
    );
    let bytes: Vec<u8> = Vec::try_from(
        (images.f_to_device(tch::Device::Cpu)?.clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .contiguous()
            .view([-1]),
    )?;
    let per_row = per_row.max(1).min(n.max(1));
    let rows = n.div_ceil(per_row);
    let pad = 2;
    let (gw, gh) = (per_row * (w + pad) + pad, rows * (h + pad) + pad);
    let mut pixels = vec![0u8; gw * gh * c];
    for i in 0..n {
        let (r, col) = (i / per_row, i % per_row);
        let (y0, x0) = (pad + r * (h + pad), pad + col * (w + pad));
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    pixels[((y0 + y) * gw + x0 + x) * c + ch] =
                        bytes[((i * c + ch) * h + y) * w + x];
                }
            }
        }
    }
    Ok(Grid {
        width: gw,
        height: gh,
        channels: c,
        pixels,
    })
}

impl Grid {
    pub fn to_png(&self) -> Result<Vec<u8>, png::EncodingError> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(if self.channels == 3 {
                png::ColorType::Rgb
            } else {
                png::ColorType::Grayscale
            });
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header()?;
            w.write_image_data(&self.pixels)?;
        }
        Ok(out)
    }

    /// Writes the PNG atomically: a reader (or a full disk) never leaves a
    /// half-written picture under `path`.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let png = self.to_png().map_err(std::io::Error::other)?;
        crate::atomic::write(path, &png)
    }
}

/// Interleaves inputs and reconstructions `[N, C, H, W]` as pairs side by side.
pub fn pairs(inputs: &Tensor, recons: &Tensor) -> Tensor {
    let s = inputs.size();
    Tensor::stack(&[inputs, recons], 1).view([-1, s[1], s[2], s[3]])
}

/// Latent traversals: for the mean code `μ` `[1, L]` of a seed image, each
/// dimension in turn swept over `μ_j + linspace(−3, 3, steps)` with the others
/// held, decoded by `decode`. Returns `[L·steps, C, H, W]`, one row per
/// dimension.
pub fn traversal(mu: &Tensor, steps: i64, decode: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let l = mu.size()[1];
    let offsets = Tensor::linspace(-3.0, 3.0, steps, (mu.kind(), mu.device()));
    let mut rows = Vec::new();
    for j in 0..l {
        let z = mu.repeat([steps, 1]);
        let col = z.select(1, j) + &offsets;
        let z = z.index_copy(
            1,
            &Tensor::from_slice(&[j]).to_device(mu.device()),
            &col.unsqueeze(1),
        );
        rows.push(decode(&z));
    }
    Tensor::cat(&rows, 0)
}

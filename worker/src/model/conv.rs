//! Convolutional VAE: 4×4 stride-2 convolutions (32-64-128 by default) with
//! ReLU, an optional dense layer, linear heads for μ and log σ², and the mirror
//! image in the decoder (`fc_z` — with a ReLU after it unless
//! `model.fc_z_relu = false` — then transposed convolutions). Shapes: `x`
//! `[B, C, H, W]` (C = 1 or 3) → `μ`, `log σ²` `[B, L]`; `z` `[B, L]` →
//! logits `[B, C, H, W]`. Inputs whose side is not
//! a multiple of 2^layers (MNIST's 28) are zero-padded to the next one (32) and
//! the logits cropped back, so any `[C, H, W]` works. In float32 on the CPU
//! the encoder's and the decoder's convolutions each run as one oneDNN stack
//! (`crate::aten::conv_stack`: no reorder to NCHW between layers); otherwise
//! layer by layer.
use tch::{nn, nn::Module, Device, Kind, Tensor};

use vae_proto::config::Precision;

use super::layers::{conv_down, conv_up, mixed_linear};
use super::mixed::{Mixed, Weighted, PADDING, STRIDE};
use super::vae::Vae;

pub struct ConvVae {
    enc: Vec<Mixed<nn::Conv2D>>,
    dec: Vec<Mixed<nn::ConvTranspose2D>>,
    enc_fc: Option<Mixed<nn::Linear>>,
    dec_fc: Option<Mixed<nn::Linear>>,
    mu: Mixed<nn::Linear>,
    logvar: Mixed<nn::Linear>,
    from_z: Mixed<nn::Linear>,
    /// A ReLU after `from_z`.
    from_z_relu: bool,
    shape: [i64; 3],
    /// Padded height and width, multiples of 2^layers.
    padded: [i64; 2],
    /// `[C_last, h, w]` after the last convolution.
    inner: [i64; 3],
    latent: i64,
}

impl ConvVae {
    pub fn new(
        root: &nn::Path,
        shape: [i64; 3],
        channels: &[i64],
        hidden: i64,
        latent: i64,
        from_z_relu: bool,
        precision: Precision,
    ) -> ConvVae {
        let [c, h, w] = shape;
        let k = 1i64 << channels.len();
        let padded = [(h + k - 1) / k * k, (w + k - 1) / k * k];
        let last = *channels.last().unwrap_or(&c);
        let inner = [last, padded[0] / k, padded[1] / k];
        let flat = inner.iter().product::<i64>();
        let mut enc = Vec::new();
        let mut prev = c;
        for (i, &ch) in channels.iter().enumerate() {
            enc.push(conv_down(root / "encoder" / i, prev, ch, 4, precision));
            prev = ch;
        }
        let mut dec = Vec::new();
        let outs: Vec<i64> = channels.iter().rev().skip(1).copied().chain([c]).collect();
        for (i, &ch) in outs.iter().enumerate() {
            dec.push(conv_up(root / "decoder" / i, prev, ch, 4, precision));
            prev = ch;
        }
        let (enc_fc, dec_fc, head_in) = if hidden > 0 {
            (
                Some(mixed_linear(root / "enc_fc", flat, hidden, precision)),
                Some(mixed_linear(root / "dec_fc", hidden, flat, precision)),
                hidden,
            )
        } else {
            (None, None, flat)
        };
        ConvVae {
            enc,
            dec,
            enc_fc,
            dec_fc,
            mu: mixed_linear(root / "fc_mu", head_in, latent, precision),
            logvar: mixed_linear(root / "fc_logvar", head_in, latent, precision),
            from_z: mixed_linear(root / "fc_z", latent, head_in, precision),
            from_z_relu,
            shape,
            padded,
            inner,
            latent,
        }
    }

    /// The encoder's convolutions, each followed by a ReLU:
    /// `[B, C, H', W']` (padded) → `[B, C_last, h, w]`.
    fn down(&self, x: &Tensor) -> Tensor {
        if let Some(layers) = blocked(&self.enc, x) {
            return stacked(x, &layers, false, true);
        }
        self.enc
            .iter()
            .fold(x.shallow_clone(), |t, conv| conv.forward(&t).relu())
    }

    /// The decoder's transposed convolutions, a ReLU between each two:
    /// `[B, C_last, h, w]` → logits `[B, C, H', W']` (padded).
    fn up(&self, x: &Tensor) -> Tensor {
        if let Some(layers) = blocked(&self.dec, x) {
            return stacked(x, &layers, true, false);
        }
        let last = self.dec.len() - 1;
        let mut t = x.shallow_clone();
        for (i, tconv) in self.dec.iter().enumerate() {
            t = tconv.forward(&t);
            if i < last {
                t = t.relu();
            }
        }
        t
    }
}

impl Vae for ConvVae {
    fn encode(&self, x: &Tensor) -> (Tensor, Tensor) {
        let [_, h, w] = self.shape;
        let (ph, pw) = (self.padded[0] - h, self.padded[1] - w);
        let t = if ph > 0 || pw > 0 {
            x.constant_pad_nd([pw / 2, pw - pw / 2, ph / 2, ph - ph / 2])
        } else {
            x.shallow_clone()
        };
        let mut t = self.down(&t).flatten(1, -1);
        if let Some(fc) = &self.enc_fc {
            t = fc.forward(&t).relu();
        }
        (self.mu.forward(&t), self.logvar.forward(&t))
    }

    fn decode(&self, z: &Tensor) -> Tensor {
        let [_, h, w] = self.shape;
        let [ic, ih, iw] = self.inner;
        let mut t = self.from_z.forward(z);
        if self.from_z_relu {
            t = t.relu();
        }
        if let Some(fc) = &self.dec_fc {
            t = fc.forward(&t).relu();
        }
        let mut t = self.up(&t.view([-1, ic, ih, iw]));
        let (ph, pw) = (self.padded[0] - h, self.padded[1] - w);
        if ph > 0 || pw > 0 {
            t = t.narrow(2, ph / 2, h).narrow(3, pw / 2, w);
        }
        t
    }

    fn latent_dim(&self) -> i64 {
        self.latent
    }
}

/// The layers' weights and biases when oneDNN's stack can run them on `x`:
/// float32 throughout, on a CPU libtorch built with oneDNN, and at least
/// one layer.
fn blocked<'a, M: Weighted>(
    layers: &'a [Mixed<M>],
    x: &Tensor,
) -> Option<Vec<(&'a Tensor, &'a Tensor)>> {
    let cpu_f32 = x.device() == Device::Cpu && x.kind() == Kind::Float;
    if layers.is_empty() || !cpu_f32 || !tch::utils::has_mkldnn() {
        return None;
    }
    layers.iter().map(Mixed::fp32_params).collect()
}

/// `crate::aten::conv_stack` with the geometry `conv_down` / `conv_up` give
/// every layer. Like tch's own operators in a forward pass, a
/// libtorch error here (out of memory) panics with libtorch's line, which
/// the panic hook reports in one line (`crate::oom`).
fn stacked(x: &Tensor, layers: &[(&Tensor, &Tensor)], transposed: bool, relu_last: bool) -> Tensor {
    crate::aten::conv_stack(x, layers, STRIDE, PADDING, transposed, relu_last)
        .unwrap_or_else(|e| panic!("{e}"))
}

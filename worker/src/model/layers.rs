//! Layers as PyTorch initialises them (`nn.Linear`, `nn.Conv2d`,
//! `nn.ConvTranspose2d`), computing in the configured precision.
use tch::nn;
use vae_proto::config::Precision;

use super::mixed::{Mixed, PADDING, STRIDE};

/// PyTorch's default initialisation (`kaiming_uniform_(a=√5)` for weights and
/// the matching bias bound): both uniform in ±1/√fan_in. tch's own default is
/// √6 times wider, which trains differently from the PyTorch reference.
fn torch_init(fan_in: i64) -> nn::Init {
    let b = 1.0 / (fan_in as f64).sqrt();
    nn::Init::Uniform { lo: -b, up: b }
}

/// `nn.Linear(i, o)` as PyTorch initialises it.
pub fn linear(p: nn::Path, i: i64, o: i64) -> nn::Linear {
    let init = torch_init(i);
    nn::linear(
        p,
        i,
        o,
        nn::LinearConfig {
            ws_init: init,
            bs_init: Some(init),
            bias: true,
        },
    )
}

/// [`linear`] computing in `precision`.
pub fn mixed_linear(p: nn::Path, i: i64, o: i64, precision: Precision) -> Mixed<nn::Linear> {
    Mixed::new(linear(p, i, o), precision)
}

/// `nn.Conv2d(i, o, k, stride=2, padding=1)` as PyTorch initialises it.
pub fn conv_down(p: nn::Path, i: i64, o: i64, k: i64, precision: Precision) -> Mixed<nn::Conv2D> {
    let init = torch_init(i * k * k);
    let c = nn::ConvConfig {
        stride: STRIDE,
        padding: PADDING,
        ws_init: init,
        bs_init: init,
        ..Default::default()
    };
    Mixed::new(nn::conv2d(p, i, o, k, c), precision)
}

/// `nn.ConvTranspose2d(i, o, k, stride=2, padding=1)` as PyTorch initialises
/// it (its fan-in is computed from the weight's second dimension, `o`).
pub fn conv_up(
    p: nn::Path,
    i: i64,
    o: i64,
    k: i64,
    precision: Precision,
) -> Mixed<nn::ConvTranspose2D> {
    let init = torch_init(o * k * k);
    let c = nn::ConvTransposeConfig {
        stride: STRIDE,
        padding: PADDING,
        ws_init: init,
        bs_init: init,
        ..Default::default()
    };
    Mixed::new(nn::conv_transpose2d(p, i, o, k, c), precision)
}

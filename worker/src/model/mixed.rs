//! Mixed precision per layer (`train.precision`): with bf16, a layer's
//! matmul or convolution takes its input, weight and bias cast to bf16 and
//! gives its output back as fp32 — what autocast does for these ops — while
//! parameters (the fp32 master weights), activations, losses, reductions and
//! Adam stay fp32. The casts are autograd ops, so gradients reach the fp32
//! parameters. Works alike on CPU (AVX-512 BF16 / AMX) and CUDA.
use tch::{nn, nn::Module, Kind, Tensor};
use vae_proto::config::Precision;

/// Stride and padding of every convolution (`layers::conv_down`, `layers::conv_up`).
pub const STRIDE: i64 = 2;
pub const PADDING: i64 = 1;

/// A layer `M` computed in `precision`.
#[derive(Debug)]
pub struct Mixed<M> {
    layer: M,
    bf16: bool,
}

impl<M> Mixed<M> {
    pub fn new(layer: M, precision: Precision) -> Mixed<M> {
        Mixed {
            layer,
            bf16: precision == Precision::Bf16,
        }
    }
}

/// A layer with a weight and an optional bias, applied to given tensors.
pub trait Weighted {
    fn weight(&self) -> &Tensor;
    fn bias(&self) -> Option<&Tensor>;
    /// The layer's op on `x` with weight `w` and bias `b`.
    fn apply(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor;
}

impl<M: Weighted + Module> Module for Mixed<M> {
    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.bf16 {
            return self.layer.forward(x);
        }
        let half = |t: &Tensor| t.to_kind(Kind::BFloat16);
        let l = &self.layer;
        let b = l.bias().map(half);
        l.apply(&half(x), &half(l.weight()), b.as_ref())
            .to_kind(Kind::Float)
    }
}

impl<M: Weighted> Mixed<M> {
    /// The layer's weight and bias when it computes in fp32 and has a bias:
    /// what oneDNN's convolution stack (`crate::aten::conv_stack`) takes.
    pub fn fp32_params(&self) -> Option<(&Tensor, &Tensor)> {
        let w = self.layer.weight();
        match self.layer.bias() {
            Some(b) if !self.bf16 && w.kind() == Kind::Float => Some((w, b)),
            _ => None,
        }
    }
}

impl Weighted for nn::Linear {
    fn weight(&self) -> &Tensor {
        &self.ws
    }
    fn bias(&self) -> Option<&Tensor> {
        self.bs.as_ref()
    }
    fn apply(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        x.linear(w, b)
    }
}

// tch keeps a convolution's geometry private: every convolution here is made
// by `conv_down` / `conv_up` with these strides and paddings.
impl Weighted for nn::Conv2D {
    fn weight(&self) -> &Tensor {
        &self.ws
    }
    fn bias(&self) -> Option<&Tensor> {
        self.bs.as_ref()
    }
    fn apply(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        x.conv2d(w, b, [STRIDE; 2], [PADDING; 2], [1, 1], 1)
    }
}

impl Weighted for nn::ConvTranspose2D {
    fn weight(&self) -> &Tensor {
        &self.ws
    }
    fn bias(&self) -> Option<&Tensor> {
        self.bs.as_ref()
    }
    fn apply(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        x.conv_transpose2d(w, b, [STRIDE; 2], [PADDING; 2], [0, 0], 1, [1, 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_layers_round_like_bf16_and_give_fp32_gradients() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let fp32 = Mixed::new(
            super::super::layers::linear(vs.root() / "a", 64, 32),
            Precision::Fp32,
        );
        let lin = nn::Linear {
            ws: fp32.layer.ws.shallow_clone(),
            bs: fp32.layer.bs.as_ref().map(Tensor::shallow_clone),
        };
        let bf16 = Mixed::new(lin, Precision::Bf16);
        let x = Tensor::randn([8, 64], (Kind::Float, tch::Device::Cpu));
        let (a, b) = (fp32.forward(&x), bf16.forward(&x));
        assert_eq!(b.kind(), Kind::Float);
        let rel = f64::try_from((&a - &b).abs().max() / a.abs().max()).unwrap_or(1.0);
        assert!(rel > 0.0 && rel < 2e-2, "bf16 relative error {rel}");
        b.sum(Kind::Float).backward();
        assert_eq!(fp32.layer.ws.grad().kind(), Kind::Float);
        assert!(
            fp32.layer
                .ws
                .grad()
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
                > 0.0
        );
    }
}

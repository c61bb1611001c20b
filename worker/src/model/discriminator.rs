//! FactorVAE's discriminator (Kim & Mnih 2018): an MLP from latent codes
//! `[B, L]` to two logits `[B, 2]` (column 0: "a code from q(z)", column 1:
//! "a dimension-wise permuted code"), `layers` hidden layers of `hidden`
//! units with LeakyReLU(0.2). The total correlation is estimated as the mean
//! of the logit difference.
use tch::{nn, nn::Module, Tensor};

use vae_proto::config::Precision;

use super::layers::mixed_linear;
use super::mixed::Mixed;
use crate::rng::{self, Stream};

pub struct Discriminator {
    layers: Vec<Mixed<nn::Linear>>,
}

impl Discriminator {
    pub fn new(
        root: &nn::Path,
        latent: i64,
        hidden: i64,
        layers: u64,
        precision: Precision,
    ) -> Discriminator {
        let mut v = Vec::new();
        let mut prev = latent;
        for i in 0..layers {
            v.push(mixed_linear(root / "net" / i, prev, hidden, precision));
            prev = hidden;
        }
        v.push(mixed_linear(root / "net" / layers, prev, 2, precision));
        Discriminator { layers: v }
    }

    /// `z: [B, L]` → logits `[B, 2]`.
    pub fn forward(&self, z: &Tensor) -> Tensor {
        let last = self.layers.len() - 1;
        let mut t = z.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            t = l.forward(&t);
            if i < last {
                t = t.leaky_relu_02();
            }
        }
        t
    }
}

trait LeakyRelu {
    fn leaky_relu_02(&self) -> Tensor;
}

impl LeakyRelu for Tensor {
    /// LeakyReLU with slope 0.2: one ATen kernel each way (the shim's
    /// `at::leaky_relu`). Like tch's own operators in a forward pass, a
    /// libtorch error here (out of memory) panics with libtorch's line,
    /// which the panic hook reports in one line (`crate::oom`).
    fn leaky_relu_02(&self) -> Tensor {
        crate::aten::leaky_relu(self, 0.2).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Per-sample TC estimate from logits `[B, 2]`: `D(z)₀ − D(z)₁`, `[B]`.
pub fn tc_estimate(logits: &Tensor) -> Tensor {
    logits.select(1, 0) - logits.select(1, 1)
}

/// Shuffles each latent dimension of `z: [B, L]` across the batch with its
/// own permutation, drawn from `(seed, step, dimension)`: samples from the
/// product of the marginals `Π_j q(z_j)`.
pub fn permute_dims(z: &Tensor, seed: u64, step: u64) -> Tensor {
    let size = z.size();
    let (b, l) = (size[0] as usize, size[1]);
    let cols: Vec<Tensor> = (0..l)
        .map(|j| {
            let mut perm: Vec<i64> = (0..b as i64).collect();
            for i in (1..b).rev() {
                let bits = rng::bits(
                    rng::key(seed, Stream::PermuteDims, step, (j as u64) << 32 | i as u64),
                    0,
                );
                perm.swap(i, rng::below(bits, i as u64 + 1) as usize);
            }
            let idx = Tensor::from_slice(&perm).to_device(z.device());
            z.select(1, j).index_select(0, &idx)
        })
        .collect();
    Tensor::stack(&cols, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn permute_dims_permutes_each_column_separately() {
        let z = Tensor::arange(40, (Kind::Float, Device::Cpu)).view([10, 4]);
        let p = permute_dims(&z, 1, 0);
        for j in 0..4 {
            let mut a = Vec::<f32>::try_from(z.select(1, j)).unwrap();
            let mut b = Vec::<f32>::try_from(p.select(1, j)).unwrap();
            assert_ne!(a, b, "column {j} unchanged");
            a.sort_by(f32::total_cmp);
            b.sort_by(f32::total_cmp);
            assert_eq!(a, b);
        }
        // Columns get different permutations: rows are broken apart.
        let rows_kept = (0..10).filter(|&i| {
            let r = Vec::<f32>::try_from(p.get(i)).unwrap();
            r[1] == r[0] + 1.0 && r[2] == r[0] + 2.0
        });
        assert!(rows_kept.count() < 10);
    }

    #[test]
    fn leaky_relu_slope() {
        let x = Tensor::from_slice(&[-1.0f32, 2.0]);
        let y = Vec::<f32>::try_from(x.leaky_relu_02()).unwrap();
        assert_eq!(y, vec![-0.2, 2.0]);
    }
}

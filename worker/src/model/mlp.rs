//! The MLP VAE of pytorch/examples `vae/main.py`: 784-400-20 with ReLU, layers
//! `fc1`, `fc21` (μ), `fc22` (log σ²), `fc3`, `fc4`, so its `state_dict` loads
//! into that script's `VAE` unchanged. Input and hidden sizes follow the
//! dataset and config.
use tch::{nn, nn::Module, Tensor};

use vae_proto::config::Precision;

use super::layers::mixed_linear;
use super::mixed::Mixed;
use super::vae::Vae;

pub struct MlpVae {
    fc1: Mixed<nn::Linear>,
    fc21: Mixed<nn::Linear>,
    fc22: Mixed<nn::Linear>,
    fc3: Mixed<nn::Linear>,
    fc4: Mixed<nn::Linear>,
    shape: [i64; 3],
    latent: i64,
}

impl MlpVae {
    pub fn new(
        root: &nn::Path,
        shape: [i64; 3],
        hidden: i64,
        latent: i64,
        precision: Precision,
    ) -> MlpVae {
        let d: i64 = shape.iter().product();
        MlpVae {
            fc1: mixed_linear(root / "fc1", d, hidden, precision),
            fc21: mixed_linear(root / "fc21", hidden, latent, precision),
            fc22: mixed_linear(root / "fc22", hidden, latent, precision),
            fc3: mixed_linear(root / "fc3", latent, hidden, precision),
            fc4: mixed_linear(root / "fc4", hidden, d, precision),
            shape,
            latent,
        }
    }
}

impl Vae for MlpVae {
    fn encode(&self, x: &Tensor) -> (Tensor, Tensor) {
        let h = self.fc1.forward(&x.flatten(1, -1)).relu();
        (self.fc21.forward(&h), self.fc22.forward(&h))
    }

    fn decode(&self, z: &Tensor) -> Tensor {
        let [c, h, w] = self.shape;
        let logits = self.fc4.forward(&self.fc3.forward(z).relu());
        logits.view([-1, c, h, w])
    }

    fn latent_dim(&self) -> i64 {
        self.latent
    }
}

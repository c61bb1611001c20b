//! Parameters in one flat buffer, and Adam written on tensors so its state
//! (the moments and the step) can be checkpointed. Every variable of the model
//! is made a view into one contiguous buffer; gradients are gathered into one
//! flat tensor, which is what the all-reduce and the update run on (a single
//! fused buffer, as Horovod's fusion buffer), so one update is a handful of
//! large kernels whatever the number of layers.
use tch::{nn::VarStore, Tensor};

use crate::aten::{fused_adam, AdamStep, AtenError};
use vae_proto::config::OptimSection;

/// The model's variables, sorted by name, all views into `flat`.
pub struct FlatParams {
    pub names: Vec<String>,
    pub vars: Vec<Tensor>,
    pub flat: Tensor,
    /// The flat gradient, one buffer kept across steps: each step's
    /// gradients are written into it (no allocation of 4 bytes a parameter
    /// per step, and none of the page faults that come with one).
    grad: Tensor,
}

impl FlatParams {
    pub fn new(vs: &VarStore) -> FlatParams {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let flat = tch::no_grad(|| {
            Tensor::cat(
                &named
                    .iter()
                    .map(|(_, t)| t.detach().view([-1]))
                    .collect::<Vec<_>>(),
                0,
            )
        });
        let mut offset = 0;
        let mut names = Vec::new();
        let mut vars = Vec::new();
        for (name, mut var) in named {
            let n = var.numel() as i64;
            let view = flat.narrow(0, offset, n).view(var.size().as_slice());
            var.set_data(&view);
            offset += n;
            names.push(name);
            vars.push(var);
        }
        let grad = flat.zeros_like();
        FlatParams {
            names,
            vars,
            flat,
            grad,
        }
    }

    /// `(name, detached variable)` pairs, as checkpoints store them.
    pub fn named(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .cloned()
            .zip(self.vars.iter().map(|v| v.detach()))
            .collect()
    }

    pub fn numel(&self) -> i64 {
        self.flat.numel() as i64
    }

    /// The gradient of `loss` with respect to every variable, as one flat
    /// tensor (zeros where `loss` does not depend on a variable; the buffer
    /// [`FlatParams::flatten`] keeps). The graph is
    /// freed; nothing accumulates in the variables' `.grad`, so there is
    /// nothing to zero between steps.
    pub fn gradient(&self, loss: &Tensor) -> Result<Tensor, tch::TchError> {
        self.flatten(Tensor::f_run_backward(&[loss], &self.vars, false, false)?)
    }

    /// Gradients with respect to `vars` (in order; undefined = zeros) as one
    /// flat tensor: the buffer kept across steps, so it holds them until
    /// the next call.
    pub fn flatten(&self, grads: Vec<Tensor>) -> Result<Tensor, tch::TchError> {
        let parts: Vec<Tensor> = grads
            .iter()
            .zip(&self.vars)
            .map(|(g, v)| {
                if g.defined() {
                    g.reshape([-1])
                } else {
                    v.zeros_like().view([-1])
                }
            })
            .collect();
        Tensor::f_cat_out(&self.grad, &parts, 0)
    }
}

/// Adam (Kingma & Ba), the arithmetic of `torch.optim.Adam`, with L2 weight
/// decay added to the gradient as `torch.optim.Adam(weight_decay=...)` does;
/// one update is PyTorch's fused kernel (`fused=True`, through the ATen
/// shim): one pass over parameters, gradient and moments.
pub struct Adam {
    pub cfg: OptimSection,
    /// First and second moments, flat like the parameters.
    pub m: Tensor,
    pub v: Tensor,
    /// Updates taken.
    pub t: u64,
    /// The number of the update under way, the one-element float tensor
    /// the fused kernel reads it from.
    steps: Tensor,
}

impl Adam {
    pub fn new(cfg: &OptimSection, params: &FlatParams) -> Adam {
        Adam::for_tensor(cfg, &params.flat)
    }

    /// Adam for one flat parameter tensor of `params`' shape and kind.
    pub fn for_tensor(cfg: &OptimSection, params: &Tensor) -> Adam {
        Adam {
            cfg: cfg.clone(),
            m: params.zeros_like(),
            v: params.zeros_like(),
            t: 0,
            steps: Tensor::zeros([1], (tch::Kind::Float, params.device())),
        }
    }

    /// One update of `params` (flat) with gradient `grad` (flat), at rate `lr`.
    pub fn step(&mut self, params: &mut Tensor, grad: &Tensor, lr: f64) -> Result<(), AtenError> {
        let c = &self.cfg;
        let h = AdamStep {
            lr,
            beta1: c.beta1,
            beta2: c.beta2,
            weight_decay: c.weight_decay,
            eps: c.eps,
        };
        tch::no_grad(|| {
            let _ = self.steps.fill_((self.t + 1) as f64);
            fused_adam(params, grad, &mut self.m, &mut self.v, &mut self.steps, &h)
        })?;
        self.t += 1;
        Ok(())
    }

    /// The moments as named tensors, for checkpoints.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("adam.m".into(), self.m.shallow_clone()),
            ("adam.v".into(), self.v.shallow_clone()),
        ]
    }

    /// Restores the moments and the step count.
    pub fn load(&mut self, m: &Tensor, v: &Tensor, t: u64) -> Result<(), tch::TchError> {
        tch::no_grad(|| {
            self.m.f_copy_(m)?;
            self.v.f_copy_(v)
        })?;
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn variables_are_views_of_the_flat_buffer() {
        let vs = VarStore::new(Device::Cpu);
        let _l = nn::linear(vs.root() / "fc", 3, 2, Default::default());
        let mut p = FlatParams::new(&vs);
        assert_eq!(p.numel(), 8);
        tch::no_grad(|| {
            let _ = p.flat.fill_(0.5);
        });
        for v in vs.variables().values() {
            assert_eq!(v.mean(Kind::Float).double_value(&[]), 0.5);
        }
    }

    /// `Σ (w·x + b)` of a 2→1 linear layer over two samples (its flat
    /// gradient is `[2, 4, 6]`: d/db = 2, d/dw = Σ x), with the layer's
    /// flat parameters.
    fn linear_sum() -> (impl Fn() -> Tensor, FlatParams) {
        let vs = VarStore::new(Device::Cpu);
        let lin = nn::linear(vs.root() / "fc", 2, 1, Default::default());
        let p = FlatParams::new(&vs);
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        (move || nn::Module::forward(&lin, &x).sum(Kind::Float), p)
    }

    #[test]
    fn gradient_is_flat_in_variable_order() {
        let (loss, p) = linear_sum();
        let loss = loss();
        let g = Vec::<f32>::try_from(p.gradient(&loss).unwrap()).unwrap();
        assert_eq!(p.names, vec!["fc.bias", "fc.weight"]);
        assert_eq!(g, vec![2.0, 4.0, 6.0]);
    }

    #[test]
    fn every_step_s_gradient_lands_in_the_same_buffer() {
        let (loss, p) = linear_sum();
        let at = p.gradient(&loss()).unwrap().data_ptr();
        let second = p.gradient(&(loss() * 3.0)).unwrap();
        assert_eq!(second.data_ptr(), at);
        assert_eq!(Vec::<f32>::try_from(second).unwrap(), vec![6.0, 12.0, 18.0]);
    }

    #[test]
    fn adam_matches_hand_computation() {
        // Two steps on one scalar, against the formulas of Kingma & Ba.
        let cfg = OptimSection::default();
        let mut x = Tensor::from_slice(&[1.0f32]);
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root(), 1, 1, Default::default());
        let p = FlatParams::new(&vs);
        let mut adam = Adam::new(&cfg, &p);
        adam.m = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        adam.v = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let (mut m, mut v, mut want) = (0.0f64, 0.0f64, 1.0f64);
        for (t, g) in [(1, 0.5f64), (2, -0.25)] {
            adam.step(&mut x, &Tensor::from_slice(&[g as f32]), 1e-3)
                .unwrap();
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let mh = m / (1.0 - 0.9f64.powi(t));
            let vh = v / (1.0 - 0.999f64.powi(t));
            want -= 1e-3 * mh / (vh.sqrt() + 1e-8);
        }
        assert!(
            (x.double_value(&[0]) - want).abs() < 1e-6,
            "{} vs {want}",
            x.double_value(&[0])
        );
    }

    /// The update as this file wrote it before the fused kernel: moments as
    /// lerps, then p ← p − lr/bc1 · m / (√v/√bc2 + ε).
    fn unfused(
        c: &OptimSection,
        (p, m, v): (&mut Tensor, &mut Tensor, &mut Tensor),
        grad: &Tensor,
        t: u64,
    ) {
        tch::no_grad(|| {
            let g = grad + &*p * c.weight_decay;
            let _ = m.lerp_(&g, 1.0 - c.beta1);
            let _ = v.lerp_(&g.square(), 1.0 - c.beta2);
            let bc1 = 1.0 - c.beta1.powi(t as i32);
            let bc2 = 1.0 - c.beta2.powi(t as i32);
            let mut denom = v.sqrt();
            let _ = denom.g_div_scalar_(bc2.sqrt());
            let _ = denom.g_add_scalar_(c.eps);
            let _ = p.addcdiv_(&(&*m * (-c.lr / bc1)), &denom);
        });
    }

    #[test]
    fn the_fused_update_is_the_unfused_one_to_rounding_over_100_steps() {
        for (kind, tolerance) in [(Kind::Double, 1e-12), (Kind::Float, 2e-6)] {
            for weight_decay in [0.0, 0.01] {
                let cfg = OptimSection {
                    weight_decay,
                    ..OptimSection::default()
                };
                tch::manual_seed(7);
                let init = Tensor::randn([10_000], (kind, Device::Cpu));
                let mut fused = init.copy();
                let mut adam = Adam::for_tensor(&cfg, &fused);
                let mut p = init.copy();
                let (mut m, mut v) = (p.zeros_like(), p.zeros_like());
                for t in 1..=100 {
                    // Gradients of every scale, some of them zero.
                    let g = Tensor::randn([10_000], (kind, Device::Cpu))
                        * (t as f64 / 10.0).exp2()
                        * Tensor::rand([10_000], (kind, Device::Cpu)).gt(0.1);
                    adam.step(&mut fused, &g, cfg.lr).unwrap();
                    unfused(&cfg, (&mut p, &mut m, &mut v), &g, t);
                }
                assert_eq!(adam.t, 100);
                let rel = |a: &Tensor, b: &Tensor| {
                    ((a - b).abs().max() / b.abs().max()).double_value(&[])
                };
                for (a, b) in [(&fused, &p), (&adam.m, &m), (&adam.v, &v)] {
                    let d = rel(a, b);
                    assert!(d <= tolerance, "{kind:?} wd {weight_decay}: {d:e}");
                }
                let moved = rel(&fused, &init);
                assert!(moved > 1e-3, "the parameters did not move: {moved:e}");
            }
        }
    }
}

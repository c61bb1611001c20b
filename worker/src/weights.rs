//! A trained network's state: its variables as one flat buffer (every
//! variable a view into it) and its Adam. The VAE is one; a regulariser's
//! network (FactorVAE's discriminator) is another. Averaging gradients over
//! ranks, updating, broadcasting on resume, and checkpointing are the same
//! code for both.
use std::collections::BTreeMap;
use std::time::Instant;

use tch::{nn, Kind, Tensor};
use vae_proto::config::OptimSection;

use crate::aten::AtenError;
use crate::collective::{BatchScope, Comm, CommError};
use crate::loss::{gradients, CrossRows, GradientError};
use crate::optim::{Adam, FlatParams};

/// What can go wrong with a network's weights: a collective, libtorch, or
/// a checkpoint whose tensors do not fit the model (each naming it).
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error(transparent)]
    Aten(#[from] AtenError),
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        source: tch::TchError,
    },
    /// A checkpoint that does not hold what the model has.
    #[error("{0}")]
    Mismatch(String),
    /// A tensor of another shape than the model's.
    #[error("{from}: tensor `{name}` is {have:?}, the model wants {want:?}")]
    Shape {
        from: String,
        name: String,
        have: Vec<i64>,
        want: Vec<i64>,
    },
}

fn tensor_err(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> WeightsError {
    let context = context.into();
    move |source| WeightsError::Tensor { context, source }
}

pub struct Weights {
    _vs: nn::VarStore,
    pub params: FlatParams,
    pub adam: Adam,
}

impl Weights {
    /// The variables of `vs`, in `kind`, gathered into one flat buffer that
    /// holds rank 0's values on every rank, with an Adam configured by `optim`.
    pub fn new(
        mut vs: nn::VarStore,
        kind: Kind,
        optim: &OptimSection,
        comm: &dyn Comm,
    ) -> Result<Weights, CommError> {
        if kind == Kind::Double {
            vs.double();
        }
        let mut params = FlatParams::new(&vs);
        comm.broadcast(&mut params.flat, 0)?;
        let adam = Adam::new(optim, &params);
        Ok(Weights {
            _vs: vs,
            params,
            adam,
        })
    }

    /// The flat gradient of `loss` (already divided by the global batch).
    pub fn gradient(&self, loss: &Tensor, what: &str, step: u64) -> Result<Tensor, WeightsError> {
        self.params
            .gradient(loss)
            .map_err(tensor_err(format!("{what} at step {step}")))
    }

    /// The flat gradient of this rank's part of a loss defined on the whole
    /// batch (see [`crate::loss::gradients`]); `keep_graph` keeps the graph
    /// for a second backward through part of it.
    pub fn batch_gradient(
        &self,
        loss: &Tensor,
        cross: &[CrossRows],
        scope: &dyn BatchScope,
        keep_graph: bool,
        step: u64,
    ) -> Result<Tensor, WeightsError> {
        let vars: Vec<&Tensor> = self.params.vars.iter().collect();
        let context = format!("gradient at step {step}");
        let grads = gradients(loss, cross, scope, &vars, keep_graph).map_err(|e| match e {
            GradientError::Comm(e) => WeightsError::Comm(e),
            GradientError::Tensor(e) => tensor_err(context.clone())(e),
        })?;
        self.params.flatten(grads).map_err(tensor_err(context))
    }

    /// Sums `grad` over ranks, then takes one Adam step at the configured
    /// rate. Returns the seconds spent in the all-reduce (with NCCL, the
    /// call only enqueues the work).
    pub fn update(&mut self, mut grad: Tensor, comm: &dyn Comm) -> Result<f64, WeightsError> {
        let started = Instant::now();
        comm.all_reduce_sum(&mut grad)?;
        let secs = started.elapsed().as_secs_f64();
        let lr = self.adam.cfg.lr;
        self.adam.step(&mut self.params.flat, &grad, lr)?;
        Ok(secs)
    }

    /// Copies rank `root`'s parameters and Adam moments to every rank.
    pub fn broadcast(&mut self, comm: &dyn Comm, root: usize) -> Result<(), CommError> {
        comm.broadcast(&mut self.params.flat, root)?;
        comm.broadcast(&mut self.adam.m, root)?;
        comm.broadcast(&mut self.adam.v, root)
    }

    /// The Adam moments under `prefix` (`adam.m`, `disc.adam.m`, ...).
    pub fn optim_state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.adam
            .state()
            .into_iter()
            .map(|(n, v)| (format!("{prefix}{n}"), v))
            .collect()
    }

    /// Restores parameters from `params` (by name) and the Adam moments
    /// stored under `prefix` in `optim`, at update count `step`; `from` names
    /// the checkpoint in errors.
    pub fn restore(
        &mut self,
        params: &[(String, Tensor)],
        optim: &[(String, Tensor)],
        prefix: &str,
        step: u64,
        from: &str,
    ) -> Result<(), WeightsError> {
        load_into(&mut self.params, params, from)?;
        let get = |name: &str| {
            let name = format!("{prefix}{name}");
            optim
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| {
                    WeightsError::Mismatch(format!("{from}: optimizer state has no `{name}`"))
                })
        };
        self.adam
            .load(&get("adam.m")?, &get("adam.v")?, step)
            .map_err(tensor_err(format!(
                "loading optimizer state `{prefix}adam`"
            )))
    }
}

/// Copies checkpoint tensors into `params` by name, checking names and shapes.
fn load_into(
    params: &mut FlatParams,
    tensors: &[(String, Tensor)],
    from: &str,
) -> Result<(), WeightsError> {
    let map: BTreeMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    if map.len() != params.names.len() {
        return Err(WeightsError::Mismatch(format!(
            "{from}: holds {} tensors, the model has {}: another architecture?",
            map.len(),
            params.names.len()
        )));
    }
    for (name, var) in params.names.iter().zip(params.vars.iter_mut()) {
        let src = map
            .get(name.as_str())
            .ok_or_else(|| WeightsError::Mismatch(format!("{from}: has no tensor `{name}`")))?;
        if src.size() != var.size() {
            return Err(WeightsError::Shape {
                from: from.to_string(),
                name: name.clone(),
                have: src.size(),
                want: var.size(),
            });
        }
        tch::no_grad(|| var.f_copy_(src)).map_err(tensor_err(format!("loading {name}")))?;
    }
    Ok(())
}

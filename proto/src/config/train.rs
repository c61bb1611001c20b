//! `[train]`: epochs, batches, seed, threads, device, dtype and precision.
use serde::{Deserialize, Serialize};

use super::checks::positive;
use super::error::{key_err, ConfigError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Float32,
    /// For numerical checks: float rounding then no longer hides differences.
    Float64,
}

/// The arithmetic of matmuls and convolutions (mixed precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    /// bf16 matmuls and convolutions; fp32 master weights, activations,
    /// losses, reductions and Adam.
    Bf16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    pub epochs: u64,
    /// Stop after this many optimizer steps (0 = no bound); whichever of
    /// `epochs` and `max_steps` comes first ends the run.
    pub max_steps: u64,
    /// The global batch: summed over all workers.
    pub batch_size: u64,
    pub eval_batch_size: u64,
    pub seed: u64,
    /// Intra-op threads of libtorch (0 = libtorch's default).
    pub threads: u64,
    pub device: DeviceChoice,
    /// Precision of parameters and arithmetic.
    pub dtype: Dtype,
    /// "bf16": matmuls and convolutions in bf16 (mixed precision).
    pub precision: Precision,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: 10,
            max_steps: 0,
            batch_size: 128,
            eval_batch_size: 1000,
            seed: 1,
            threads: 0,
            device: DeviceChoice::Auto,
            dtype: Dtype::Float32,
            precision: Precision::Fp32,
            progress: true,
        }
    }
}

impl TrainSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        positive("train.batch_size", self.batch_size)?;
        positive("train.eval_batch_size", self.eval_batch_size)?;
        if self.epochs == 0 && self.max_steps == 0 {
            return Err(key_err(
                "train.epochs",
                "is 0 and train.max_steps is 0: the run would never end",
            ));
        }
        Ok(())
    }
}

//! The training loop's error: what its parts (data, checkpoints,
//! collectives, the device, TensorBoard, libtorch, file writes, weights, an
//! objective's network) report, wrapped as they are, and the loop's own.
use std::path::PathBuf;

use crate::checkpoint::CheckpointError;
use crate::collective::CommError;
use crate::data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Board(#[from] crate::tensorboard::BoardError),
    #[error(transparent)]
    Aten(#[from] crate::aten::AtenError),
    #[error(transparent)]
    Write(#[from] crate::atomic::WriteError),
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    #[error(transparent)]
    Objective(#[from] crate::objective::ObjectiveError),
    #[error("run directory {path}: {message}", path = path.display())]
    RunDir { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        source: tch::TchError,
    },
    #[error("{0}")]
    Invalid(String),
    /// The loss is not finite (every rank of the run returns it alike).
    #[error("loss is {loss} at step {step}: training diverged")]
    Diverged { step: u64, loss: String },
}

pub fn tensor_err(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> TrainError {
    let context = context.into();
    move |source| TrainError::Tensor { context, source }
}

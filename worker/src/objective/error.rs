//! What an objective's own network can fail at: a collective, its
//! weights, or a step that lacks what it needs.
use crate::collective::CommError;
use crate::weights::WeightsError;

#[derive(Debug, thiserror::Error)]
pub enum ObjectiveError {
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{0}")]
    Invalid(String),
}

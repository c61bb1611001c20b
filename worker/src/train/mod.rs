//! The training loop ([`run`]: set up → for each step: feed a batch → step
//! → report → act on the schedule → finish). Each part is a module of its
//! own:
//! - [`feed`]: this rank's batches in the configured data order;
//! - [`step`]: the [`step::Trainer`] (model, flat parameters, Adam, forward,
//!   the VAE update), with the objective's regularising network when it has
//!   one (`crate::objective`: FactorVAE's discriminator);
//! - [`eval`]: the test split, pictures, disentanglement metrics;
//!   [`iwae`]: the importance-weighted bound of `vae-worker eval --iwae`;
//! - [`report`]: what rank 0 writes (TensorBoard, PNG, console, JSON);
//! - [`schedule`]: when to log, evaluate, checkpoint and stop (pure);
//! - [`state`]: the run's position, checkpoints and resume;
//! - `rundir`: the run directory; [`error`]: the loop's error.
pub mod context;
pub mod error;
pub mod eval;
pub mod feed;
pub mod iwae;
pub mod report;
pub mod run;
mod rundir;
pub mod schedule;
pub mod state;
pub mod step;

pub use error::{tensor_err, TrainError};
pub use run::{run, TrainArgs};
pub use rundir::checkpoints_url;

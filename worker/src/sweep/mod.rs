//! A sweep (or a whole study: several grids) as one job. The job's ranks
//! are split into groups of `ranks_per_point` (one MPI communicator each,
//! and on GPU one NCCL communicator each); each group trains the point it
//! is handed next by world rank 0 when it is free ([`queue`]),
//! data-parallel over its own communicator, each in its own run directory
//! `RUN/<point>/` with everything a single run has — so groups run at their
//! own pace, with no collective of the whole job inside the training loop,
//! and none idles while points remain. A point that fails is tried again
//! from its last checkpoint, then recorded as failed, and the sweep goes
//! on. A restart knows what is done: a point whose `summary.json` (or
//! `failed.json`) exists is not trained again, an unfinished one resumes
//! from its own checkpoints. `study.csv` follows the points as they end
//! ([`live`]); at the end world rank 0 writes the sweep's results
//! ([`results`]). [`run`] runs it; a point's outcome is [`point`], its
//! HPARAMS [`hparams`], its plots [`plot`].
pub mod hparams;
pub mod live;
pub mod plot;
pub mod point;
pub mod queue;
pub mod results;
pub mod run;

pub use hparams::hparams;
pub use point::PointResult;
pub use run::{run, SweepArgs};

//! A sweep as one job. The job's ranks are split into groups of
//! `ranks_per_point` (one MPI communicator each, and on GPU one NCCL
//! communicator each); group `g` of `G` trains the points `g, g + G, g +
//! 2G, ...` of the sweep in turn, data-parallel over its own communicator,
//! each in its own run directory `RUN/<point>/` with everything a single
//! run has — so groups run at their own pace, with no collective of the
//! whole job inside the training loop. The queue is fixed by the point's
//! index, so a restart knows what is done: a point whose `summary.json`
//! exists is not trained again, an unfinished one resumes from its own
//! checkpoints. At the end, world rank 0 gathers every point's summary and
//! writes the sweep's results ([`results`]). [`run`] runs it; a point's
//! outcome is [`point`], its HPARAMS [`hparams`], its plots [`plot`].
pub mod hparams;
pub mod plot;
pub mod point;
pub mod results;
pub mod run;

pub use hparams::hparams;
pub use point::PointResult;
pub use run::{run, SweepArgs};

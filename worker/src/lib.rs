//! The VAE training worker: one process per GPU (or CPU slot). Modules, one
//! concern each: [`model`] (architectures), [`objective`] (one file per
//! objective, and the registry), [`loss`] (what they share), [`optim`]
//! (flat parameters and Adam), [`aten`] (the libtorch calls tch lacks, through
//! a C++ shim), [`data`] (dataset format, object storage,
//! sample order), [`rng`] (counter-based randomness), [`comm`] (joining the
//! job, collectives), [`agree`] (every rank trains the same config on the
//! same version), [`device`], [`checkpoint`] (the on-disk format),
//! [`metrics`], [`disentanglement`], [`tensorboard`], [`images`], [`atomic`]
//! (file writes), [`check`] (what `train` checks before it starts anything),
//! [`train`] (the training loop, a folder of its parts),
//! [`watchdog`] (a stalled rank ends the job instead of hanging it),
//! [`sweep`] (a sweep or a study as one job), [`study`] (a study's report), [`evaluate`] and [`export`] (the `eval`
//! and `export` commands), and [`cli`] (runs the command line the binary
//! parses).
pub mod agree;
pub mod alloc;
pub mod aten;
pub mod atomic;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod collective;
pub mod comm;
pub mod data;
pub mod device;
pub mod disentanglement;
pub mod encode;
pub mod evaluate;
pub mod export;
pub mod faults;
pub mod heartbeat;
pub mod images;
pub mod info;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod nccl;
pub mod objective;
pub mod oom;
pub mod optim;
pub mod prepare;
pub mod provenance;
pub mod rng;
pub mod signals;
pub mod study;
pub mod sweep;
pub mod tensorboard;
pub mod train;
pub mod watchdog;
pub mod weights;

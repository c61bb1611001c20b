//! The VAE training worker: one process per GPU (or CPU slot). Modules, one
//! concern each: [`model`] (architectures), [`loss`] (the objective), [`optim`]
//! (flat parameters and Adam), [`data`] (dataset format, object storage,
//! sample order), [`rng`] (counter-based randomness), [`comm`] (collectives),
//! [`checkpoint`], [`metrics`], [`tensorboard`], [`images`], [`train`] (the
//! loop), [`export`], and [`cli`] (the command line the binary runs).
pub mod checkpoint;
pub mod cli;
pub mod comm;
pub mod data;
pub mod disentanglement;
pub mod export;
pub mod images;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod rng;
pub mod signals;
pub mod tensorboard;
pub mod train;

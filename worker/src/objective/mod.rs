//! The objectives, one file each, behind one trait: [`Objective`] says
//! everything the rest of the worker needs — its regulariser terms on a
//! batch (per sample, with the other workers' rows where it is defined on
//! the whole batch), whether it is batch-level (and so what the test loss is
//! computed on), the scalars it reports, whether it estimates a total
//! correlation, and the network it trains beside the VAE if any
//! ([`Regularizer`]). [`registry`] is the registry: a new objective is a file
//! here, its variant in `vae_proto::config::ObjectiveKind` (with its config
//! checks and minimum global batch there) and its arm in [`build`]; the
//! compiler names a missing one. [`Loss`] ([`combined`]) assembles the terms
//! every objective shares: the reconstruction, the KL and the γ·squared-error
//! term.
pub mod btcvae;
pub mod capacity;
pub mod combined;
pub mod dip;
pub mod error;
pub mod factor;
pub mod penalty;
pub mod registry;
pub mod regularizer;
pub mod vae;

pub use combined::Loss;
pub use error::ObjectiveError;
pub use penalty::{Objective, Penalty};
pub use registry::build;
pub use regularizer::{Regularizer, RegularizerStep};

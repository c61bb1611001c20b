//! Disentanglement metrics on a representation of data with known generative
//! factors, computed as disentanglement_lib 1.5 computes them (with its
//! `unsupervised_study_v1` settings): the FactorVAE score ([`factorvae`]),
//! the Mutual Information Gap ([`mig`]) and the BetaVAE score ([`betavae`]).
//! Only the sampling differs: factors are drawn from the project's
//! counter-based streams instead of NumPy's. Representations are compared
//! in float64. The data and the representation come from a [`GroundTruth`]:
//! a factor dataset's stored images of any factor combination (dSprites,
//! 3dshapes, MPI3D, generated or imported), encoded to mean codes by a
//! model ([`encoder`]), or, in tests, a known function of the factors. The
//! metrics are listed in [`registry`]; what they share is in [`ground_truth`],
//! [`draw`] and [`stats`]. Which factor each dimension captures (a
//! traversal's row labels) is [`captured`].
pub mod betavae;
pub mod captured;
pub mod dci;
pub mod draw;
pub mod encoder;
pub mod factorvae;
pub mod ground_truth;
pub mod irs;
pub mod mig;
pub mod modularity;
pub mod registry;
pub mod sap;
pub mod stats;
pub mod unsupervised;

pub use encoder::EncoderOnStored;
pub use ground_truth::{codes_and_factors, Budget, GroundTruth, Values};
pub use registry::{compute, Metric, REGISTRY};

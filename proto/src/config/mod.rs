//! The run config: TOML parsed into serde structs that reject unknown keys
//! ([`RawConfig`]), `--set a.b=value` overrides applied on the TOML tree before
//! parsing, and validation into [`Config`], the type the code uses. Every error
//! names the key (or the file) it is about.
pub mod checkpoint;
pub mod checks;
pub mod data;
pub mod diff;
pub mod discriminator;
pub mod dist;
pub mod early_stopping;
pub mod error;
pub mod eval;
pub mod log;
pub mod model;
pub mod optim;
pub mod parse;
pub mod resolved;
pub mod storage;
pub mod sweep;
pub mod train;

pub use checkpoint::CheckpointSection;
pub use data::{names_tars, DataOrder, DataSection, DataVariant, DecodeSection};
pub use diff::first_difference;
pub use discriminator::DiscriminatorSection;
pub use dist::{Backend, DistSection};
pub use early_stopping::EarlyStoppingSection;
pub use error::ConfigError;
pub use eval::{EvalSection, METRICS};
pub use log::LogSection;
pub use model::{Likelihood, ModelKind, ModelSection, ObjectiveKind};
pub use optim::OptimSection;
pub use parse::{apply_override, load, parse, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};
pub use resolved::{Config, RawConfig};
pub use storage::StorageSection;
pub use sweep::SweepSection;
pub use train::{DeviceChoice, Dtype, Precision, TrainSection};

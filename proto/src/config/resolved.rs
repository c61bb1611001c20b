//! The config as read ([`RawConfig`], every section) and as validated
//! ([`Config`]: every section checked, then what spans sections).
use serde::{Deserialize, Serialize};

use super::checkpoint::CheckpointSection;
use super::data::DataSection;
use super::discriminator::DiscriminatorSection;
use super::dist::DistSection;
use super::early_stopping::EarlyStoppingSection;
use super::error::{key_err, ConfigError};
use super::eval::EvalSection;
use super::log::LogSection;
use super::model::ModelSection;
use super::optim::OptimSection;
use super::storage::StorageSection;
use super::sweep::SweepSection;
use super::train::TrainSection;
use super::train::{Dtype, Precision};

/// The config file as written. Every section and key has a default, so a file
/// only says what differs; unknown keys are errors.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub model: ModelSection,
    pub discriminator: DiscriminatorSection,
    pub eval: EvalSection,
    pub data: DataSection,
    pub train: TrainSection,
    pub optim: OptimSection,
    pub checkpoint: CheckpointSection,
    pub early_stopping: EarlyStoppingSection,
    pub dist: DistSection,
    pub log: LogSection,
    pub storage: StorageSection,
    pub sweep: SweepSection,
}

/// A validated config. Same shape as [`RawConfig`], with every value checked;
/// `raw` is kept to write the resolved config into the run directory.
#[derive(Clone, Debug)]
pub struct Config {
    pub raw: RawConfig,
    pub model: ModelSection,
    pub discriminator: DiscriminatorSection,
    pub eval: EvalSection,
    pub data: DataSection,
    pub train: TrainSection,
    pub optim: OptimSection,
    pub checkpoint: CheckpointSection,
    pub early_stopping: EarlyStoppingSection,
    pub dist: DistSection,
    pub log: LogSection,
    pub storage: StorageSection,
    pub sweep: SweepSection,
    /// `train.max_steps`, with 0 read as no bound.
    pub max_steps: Option<u64>,
}

impl Config {
    /// The resolved config as TOML with every credential taken out (see
    /// [`crate::redact`]): what is written to `<run-dir>/config.toml` and
    /// into checkpoints, and what reports show.
    pub fn to_toml(&self) -> String {
        crate::redact::redact(&self.to_toml_exact())
    }

    /// The resolved config as TOML, exactly (credentials in URLs included):
    /// for building derived configs in memory, never to be written or shown.
    pub fn to_toml_exact(&self) -> String {
        // Serialising plain structs of numbers, strings and lists cannot fail.
        toml::to_string_pretty(&self.raw).unwrap_or_default()
    }

    /// The SHA-256 (hex) of the resolved config as it is written
    /// (credentials replaced by a marker): the identity of what a run
    /// trains, compared across ranks and recorded in checkpoints. Taken
    /// over the exact TOML, it would be an offline oracle for guessing a
    /// password next to the redacted `config.toml`.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.to_toml().as_bytes()))
    }
}

impl RawConfig {
    /// Checks every value and builds the [`Config`] the code uses.
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.model.validate()?;
        self.discriminator.validate()?;
        self.eval.validate()?;
        self.data.validate()?;
        self.train.validate()?;
        self.optim.validate()?;
        self.checkpoint.validate()?;
        self.early_stopping.validate()?;
        self.dist.validate()?;
        self.log.validate()?;
        self.storage.validate()?;
        self.across_sections()?;
        let max_steps = (self.train.max_steps > 0).then_some(self.train.max_steps);
        Ok(Config {
            discriminator: self.discriminator.clone(),
            eval: self.eval.clone(),
            model: self.model.clone(),
            data: self.data.clone(),
            train: self.train.clone(),
            optim: self.optim.clone(),
            checkpoint: self.checkpoint.clone(),
            early_stopping: self.early_stopping.clone(),
            dist: self.dist.clone(),
            log: self.log.clone(),
            storage: self.storage.clone(),
            sweep: self.sweep.clone(),
            max_steps,
            raw: self,
        })
    }
}

impl RawConfig {
    /// The rules that tie sections together (each section checks its own
    /// keys in its `validate`).
    fn across_sections(&self) -> Result<(), ConfigError> {
        let (m, t) = (&self.model, &self.train);
        if t.precision == Precision::Bf16 && t.dtype != Dtype::Float32 {
            return Err(key_err(
                "train.precision",
                "\"bf16\" is mixed precision over float32 parameters: it needs train.dtype = \"float32\"",
            ));
        }
        let min = m.objective.min_global_batch();
        if t.batch_size < min {
            return Err(key_err(
                "train.batch_size",
                format!(
                    "model.objective = \"{}\" compares the codes of a batch with each other and needs at least {min} samples, got {}",
                    m.objective.as_str(),
                    t.batch_size
                ),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Whether `ranks` workers can train this config: the global batch must
    /// divide by them (each takes an equal slice). The launcher, the
    /// workers and a sweep's groups all ask this.
    pub fn check_world(&self, ranks: usize) -> Result<(), ConfigError> {
        if ranks == 0 || !self.train.batch_size.is_multiple_of(ranks as u64) {
            return Err(key_err(
                "train.batch_size",
                format!(
                    "{} does not divide by the {ranks} workers",
                    self.train.batch_size
                ),
            ));
        }
        Ok(())
    }
}

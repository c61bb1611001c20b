//! What a run knows about itself, worked out once in set-up and handed to
//! the parts that need it: how it reaches storage, its resolved config as
//! it is written (credentials taken out) and that config's hash, and its
//! identity once the run directory gives it one.
use vae_proto::config::Config;

use crate::data::store::StorageOptions;

pub struct RunContext {
    /// How the run reaches storage (`[storage]`).
    pub storage: StorageOptions,
    /// The resolved config as TOML, credentials taken out: what
    /// `config.toml` and every checkpoint hold.
    pub toml: String,
    /// The resolved config's hash, recorded in every checkpoint.
    pub config_hash: String,
    /// The run's identity (`run-id`), once rank 0 has prepared the run
    /// directory and broadcast it.
    pub run_id: String,
}

impl RunContext {
    pub fn new(cfg: &Config) -> RunContext {
        RunContext {
            storage: StorageOptions::from_config(&cfg.storage),
            toml: cfg.to_toml(),
            config_hash: cfg.hash(),
            run_id: String::new(),
        }
    }
}

//! The launcher's error: bad input (a config, the command line, a host
//! list), one line naming it.
use vae_proto::config;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Usage(String),
}

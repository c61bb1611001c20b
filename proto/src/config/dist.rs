//! `[dist]`: the gradient data plane and the watchdog's timeouts.
use serde::{Deserialize, Serialize};

use super::checks::seconds;
use super::error::ConfigError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Auto,
    Nccl,
    Mpi,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistSection {
    pub backend: Backend,
    /// Every this many steps, compare a checksum of the parameters across
    /// ranks and stop with an error if they differ (0 = off).
    pub check_every: u64,
    /// A worker that makes no progress in a step's collectives (or
    /// evaluation) for this long has stalled: it says so and ends the job,
    /// which the launcher restarts from the latest checkpoint.
    pub timeout_s: f64,
    /// The same for phases that wait on another rank's long work (rank 0's
    /// metrics, a checkpoint write) or load data.
    pub wait_timeout_s: f64,
}

impl Default for DistSection {
    fn default() -> Self {
        DistSection {
            backend: Backend::Auto,
            check_every: 0,
            timeout_s: 600.0,
            wait_timeout_s: 7200.0,
        }
    }
}

impl DistSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        seconds("dist.timeout_s", self.timeout_s)?;
        seconds("dist.wait_timeout_s", self.wait_timeout_s)
    }
}

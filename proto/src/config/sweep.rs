//! `[sweep]`: the axes of a sweep and the ranks per point.
use serde::{Deserialize, Serialize};

/// A sweep trained as one job (see `vae_proto::sweep`): the values of each
/// swept key, and how many ranks train each point.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSection {
    pub ranks_per_point: u64,
    /// Config key → the values it takes, e.g. `"model.beta" = [1, 2, 4]`.
    pub values: std::collections::BTreeMap<String, Vec<toml::Value>>,
}

impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            ranks_per_point: 1,
            values: Default::default(),
        }
    }
}

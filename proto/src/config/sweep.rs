//! `[sweep]`: the axes of a sweep (or a study: several grids), the ranks per
//! point and how often a failed point is tried again.
use serde::{Deserialize, Serialize};

/// A sweep trained as one job (see `vae_proto::sweep`): the values of each
/// swept key (a list, or an integer range `"1..50"`), how many ranks train
/// each point, and, for a study, several grids whose points are trained
/// together (each with its own fixed keys and axes, crossed with the
/// shared `values`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSection {
    pub ranks_per_point: u64,
    /// How many times a point that fails (diverges, runs out of memory, an
    /// error in its data) is tried again from its last checkpoint before it
    /// is recorded as failed and the sweep goes on.
    pub point_retries: u64,
    /// Config key → the values it takes, e.g. `"model.beta" = [1, 2, 4]` or
    /// `"train.seed" = "1..50"`; shared by every grid.
    pub values: std::collections::BTreeMap<String, toml::Value>,
    /// A study's grids, e.g. one per method.
    pub grids: Vec<GridSection>,
}

/// One grid of a study: its name (the method), the keys it fixes and its
/// own axes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GridSection {
    pub name: String,
    /// Config key → the value every point of the grid has, e.g.
    /// `"model.objective" = "factorvae"`.
    pub set: std::collections::BTreeMap<String, toml::Value>,
    /// Config key → the values it takes in this grid.
    pub values: std::collections::BTreeMap<String, toml::Value>,
}

impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            ranks_per_point: 1,
            point_retries: 1,
            values: Default::default(),
            grids: Vec::new(),
        }
    }
}

//! One point's result ([`PointResult`]: its swept values and its final
//! figures, from its summary) and what became of a point handed out
//! ([`Outcome`]: finished, failed with its reason, or stopped by a signal).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vae_proto::sweep::Point;

use crate::train::report::Summary;

/// One point's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointResult {
    pub index: usize,
    pub name: String,
    /// Swept key → value.
    pub values: BTreeMap<String, String>,
    /// Final figures: test_loss, test_recon, test_kl, test_active_units and
    /// the disentanglement metrics.
    pub figures: BTreeMap<String, f64>,
}

/// The summary fields that become a sweep's columns.
pub const FIGURES: [&str; 4] = ["test_loss", "test_recon", "test_kl", "test_active_units"];

impl PointResult {
    /// The row of point `p` from its summary.
    pub fn new(p: &Point, s: &Summary) -> PointResult {
        let mut figures = BTreeMap::from([
            ("test_loss".to_string(), s.test_loss),
            ("test_recon".to_string(), s.test_recon),
            ("test_kl".to_string(), s.test_kl),
            ("test_active_units".to_string(), s.test_active_units as f64),
        ]);
        for (k, v) in s.metrics.iter().filter(|(k, _)| k.as_str() != "step") {
            figures.insert(k.clone(), *v);
        }
        PointResult {
            index: p.index,
            name: p.name.clone(),
            values: p.values.iter().cloned().collect(),
            figures,
        }
    }
}

/// How a point handed out ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Finished,
    /// Failed on every try (its reason recorded); the sweep went on.
    Failed,
    /// Stopped by a signal (not a failure: a restart resumes it).
    Stopped,
}

/// What became of a point handed out to a group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub index: usize,
    pub status: Status,
    /// A finished point's figures.
    pub result: Option<PointResult>,
    /// Why a failed point failed (its last try's error).
    pub reason: Option<String>,
    /// Tries it took (1 when the first succeeded).
    pub tries: usize,
    /// The group that trained it, and for how long (seconds).
    pub group: usize,
    pub wall_s: f64,
    /// Optimizer steps of a finished point.
    pub steps: u64,
}

/// `failed.json` in a failed point's run directory: a restart of the job
/// records it as failed again rather than training it anew.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailedRecord {
    pub reason: String,
    pub tries: usize,
}

//! One point's outcome ([`PointResult`]): its swept values and its final
//! figures, from its summary.
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

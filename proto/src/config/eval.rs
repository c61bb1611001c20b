//! `[eval]`: the disentanglement metrics and when they run.
use serde::{Deserialize, Serialize};

use super::error::{key_err, ConfigError};

/// The disentanglement metrics `eval.metrics` may name (the worker's
/// registry, `disentanglement::REGISTRY`, has these, in this order).
pub const METRICS: [&str; 9] = [
    "factorvae",
    "mig",
    "betavae",
    "dci",
    "sap",
    "modularity",
    "unsupervised",
    "unsupervised_sampled",
    "irs",
];

/// Disentanglement metrics, for datasets with ground-truth factors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Which metrics to compute: "factorvae", "mig", "betavae".
    pub metrics: Vec<String>,
    /// Compute them every this many steps (0 = only at the end of training).
    pub every_steps: u64,
    /// Scale of the metric sample counts (1 = the published 10,000/5,000
    /// votes and samples; smaller for quick checks).
    pub scale: f64,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            metrics: vec![],
            every_steps: 0,
            scale: 1.0,
        }
    }
}

impl EvalSection {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for metric in &self.metrics {
            if !METRICS.contains(&metric.as_str()) {
                return Err(key_err(
                    "eval.metrics",
                    format!("unknown metric `{metric}`; known: {}", METRICS.join(", ")),
                ));
            }
        }
        if !(self.scale.is_finite() && self.scale > 0.0 && self.scale <= 1.0) {
            return Err(key_err(
                "eval.scale",
                format!("must be in (0, 1], got {}", self.scale),
            ));
        }
        Ok(())
    }
}

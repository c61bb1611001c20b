//! The records a run writes and others read back, typed: one evaluation
//! ([`EvalRecord`], `history.json`) and the run's summary ([`Summary`],
//! `summary.json`, which a sweep and `vae-worker eval` deserialize instead
//! of reading JSON keys by string).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::Sums;

// JSON has no NaN: serde_json writes a NaN figure (a window without a
// training step, a diverged loss) as `null`, and these read it back as NaN.
fn float<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn floats<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Vec::<Option<f64>>::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

fn float_map<'de, D>(d: D) -> Result<BTreeMap<String, f64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let m = BTreeMap::<String, Option<f64>>::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect())
}

/// One evaluation, as reported in `history.json` and `summary.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvalRecord {
    pub epoch: u64,
    pub step: u64,
    #[serde(deserialize_with = "float")]
    pub train_loss: f64,
    #[serde(deserialize_with = "float")]
    pub test_loss: f64,
    #[serde(deserialize_with = "float")]
    pub test_recon: f64,
    #[serde(deserialize_with = "float")]
    pub test_kl: f64,
    pub test_active_units: usize,
    #[serde(deserialize_with = "float")]
    pub samples_per_sec: f64,
}

impl EvalRecord {
    pub fn new(epoch: u64, step: u64, train_loss: f64, test: &Sums, samples_per_sec: f64) -> Self {
        EvalRecord {
            epoch,
            step,
            train_loss,
            test_loss: test.loss(),
            test_recon: test.recon(),
            test_kl: test.kl(),
            test_active_units: test.active_units(),
            samples_per_sec,
        }
    }
}

/// `summary.json`: the last evaluation's figures at the top level, and all of them in `history`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Summary {
    pub epoch: u64,
    pub step: u64,
    #[serde(deserialize_with = "float")]
    pub train_loss: f64,
    #[serde(deserialize_with = "float")]
    pub test_loss: f64,
    #[serde(deserialize_with = "float")]
    pub test_recon: f64,
    #[serde(deserialize_with = "float")]
    pub test_kl: f64,
    #[serde(deserialize_with = "floats")]
    pub test_kl_per_dim: Vec<f64>,
    pub test_active_units: usize,
    /// Total-correlation estimate on the test split (FactorVAE, β-TCVAE).
    #[serde(deserialize_with = "float")]
    pub test_tc: f64,
    /// FactorVAE: the discriminator's accuracy over the last logging window.
    pub disc_accuracy: Option<f64>,
    /// The last disentanglement metrics (`eval.metrics`), with their `step`.
    #[serde(deserialize_with = "float_map")]
    pub metrics: BTreeMap<String, f64>,
    #[serde(deserialize_with = "float")]
    pub samples_per_sec: f64,
    /// Mean time a checkpoint held training up (copying the state off the
    /// device, and waiting for the previous write), and mean write time.
    pub checkpoint_stall_ms: Option<f64>,
    pub checkpoint_write_ms: Option<f64>,
    pub best_test_loss: Option<f64>,
    pub best_step: Option<u64>,
    pub stopped_early: bool,
    pub world_size: usize,
    pub device: String,
    pub history: Vec<EvalRecord>,
    /// The world sizes the run trained on, each from the step it began:
    /// one entry, or one per change of an elastic job.
    pub membership: Vec<Membership>,
}

/// From `step` on, the run trained on `world_size` workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub step: u64,
    pub world_size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_with_nan_figures_reads_back() {
        let s = Summary {
            train_loss: f64::NAN,
            test_kl_per_dim: vec![1.0, f64::NAN],
            metrics: BTreeMap::from([("mig".to_string(), f64::NAN)]),
            history: vec![EvalRecord {
                train_loss: f64::NAN,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        let back: Summary = serde_json::from_str(&text).unwrap();
        assert!(back.train_loss.is_nan() && back.history[0].train_loss.is_nan());
        assert!(back.test_kl_per_dim[1].is_nan() && back.metrics["mig"].is_nan());
        assert_eq!(back.test_kl_per_dim[0], 1.0);
    }
}

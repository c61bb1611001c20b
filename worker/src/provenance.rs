//! What an evaluation computed, recorded beside its figures and in its
//! file's name ([`Provenance`]): the checkpoint and its step, the data (URL
//! without credentials, the manifest's SHA-256), the metrics, their scale
//! and sample counts, the metric seed and the versions — so two evaluations
//! of one checkpoint never share a file, and a score is never read as a
//! published one when it was not computed at the published counts.
use serde::Serialize;

use crate::disentanglement::Budget;

/// The record of one evaluation (the `evaluation` object of its JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Provenance {
    pub checkpoint: String,
    pub step: u64,
    pub data_url: String,
    pub manifest_sha256: String,
    pub test_samples: u64,
    pub metrics: Vec<String>,
    /// `--iwae K`: the importance samples of the bound, when asked.
    pub iwae: Option<u32>,
    /// `eval.scale` (1: disentanglement_lib's counts).
    pub scale: f64,
    /// Where the scale came from: `--scale`, or the run's `eval.scale`.
    pub scale_from: &'static str,
    /// Samples of the metrics' train and test draws (votes of 64 samples
    /// for the FactorVAE and BetaVAE scores): 10,000 and 5,000 at scale 1.
    pub metric_train_samples: usize,
    pub metric_test_samples: usize,
    pub published_counts: bool,
    pub metric_seed: u64,
    pub metric_version: &'static str,
    pub vae_worker: &'static str,
}

impl Provenance {
    /// The record, the URL and checkpoint without credentials.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        checkpoint: &str,
        step: u64,
        data_url: &str,
        manifest_sha256: &str,
        test_samples: u64,
        metrics: &[String],
        scale: (f64, bool),
        metric_seed: u64,
    ) -> Provenance {
        let budget = Budget { scale: scale.0 };
        Provenance {
            checkpoint: vae_proto::redact::redact(checkpoint),
            step,
            data_url: vae_proto::redact::redact(data_url),
            manifest_sha256: manifest_sha256.to_string(),
            test_samples,
            metrics: metrics.to_vec(),
            iwae: None,
            scale: scale.0,
            scale_from: if scale.1 {
                "--scale"
            } else {
                "the run's eval.scale"
            },
            metric_train_samples: budget.n(10_000),
            metric_test_samples: budget.n(5_000),
            published_counts: scale.0 == 1.0,
            metric_seed,
            metric_version: "disentanglement_lib 1.5, unsupervised_study_v1 settings",
            vae_worker: env!("CARGO_PKG_VERSION"),
        }
    }

    /// The file name: the step, the metrics, the scale, and a short hash
    /// of everything else that changes the figures (data, manifest, seed).
    pub fn file_name(&self) -> String {
        let mut what: Vec<String> = self.metrics.clone();
        what.extend(self.iwae.map(|k| format!("iwae{k}")));
        let what = match what.is_empty() {
            true => "loss".to_string(),
            false => what.join("+"),
        };
        let id = format!(
            "{}\n{}\n{}\n{}",
            self.data_url, self.manifest_sha256, self.metric_seed, self.test_samples
        );
        let id = crate::data::digest::sha256_hex(id.as_bytes());
        format!(
            "eval-step-{:010}-{what}-scale{}-{}.json",
            self.step,
            self.scale,
            &id[..8]
        )
    }

    /// A line on what the metrics' counts were, and, when they are not the
    /// published ones, how to get those.
    pub fn counts_line(&self) -> Option<String> {
        if self.metrics.is_empty() {
            return None;
        }
        let (n, m) = (self.metric_train_samples, self.metric_test_samples);
        Some(match self.published_counts {
            true => format!("eval: metrics at the published counts ({n} / {m} samples, seed {})", self.metric_seed),
            false => format!(
                "eval: metrics at {} {} ({n} / {m} samples): not the published counts (10000 / 5000); pass --scale 1 to compare with published scores",
                self.scale_from, self.scale
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(metrics: &[&str], scale: f64, url: &str) -> Provenance {
        let metrics: Vec<String> = metrics.iter().map(|m| m.to_string()).collect();
        Provenance::new("run", 200, url, "ab", 300, &metrics, (scale, false), 0)
    }

    #[test]
    fn evaluations_that_differ_in_what_they_computed_have_their_own_files() {
        let a = record(&["mig"], 0.05, "data/a").file_name();
        assert!(a.starts_with("eval-step-0000000200-mig-scale0.05-"), "{a}");
        let names = [
            a,
            record(&["dci", "sap"], 0.05, "data/a").file_name(),
            record(&["mig"], 1.0, "data/a").file_name(),
            record(&["mig"], 0.05, "data/b").file_name(),
            record(&[], 0.05, "data/a").file_name(),
            Provenance {
                iwae: Some(64),
                ..record(&[], 0.05, "data/a")
            }
            .file_name(),
        ];
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
    }

    #[test]
    fn counts_other_than_the_published_are_said() {
        let line = record(&["mig"], 0.05, "d").counts_line().unwrap();
        assert!(
            line.contains(
                "the run's eval.scale 0.05 (500 / 250 samples): not the published counts"
            ),
            "{line}"
        );
        let line = record(&["mig"], 1.0, "d").counts_line().unwrap();
        assert!(
            line.contains("at the published counts (10000 / 5000"),
            "{line}"
        );
        assert!(record(&[], 1.0, "d").counts_line().is_none());
        let url = record(&[], 1.0, "https://user:pw@example.com/d").data_url;
        assert!(!url.contains("pw"), "{url}");
    }
}

//! The checkpoint manifest. A checkpoint is a directory `step-<N>` under the run's
//! `checkpoints/` holding tensor files and, written last, `checkpoint.json`
//! (this struct). The file `checkpoints/latest` names the newest complete one
//! and is replaced atomically only after the directory is complete, so a crash
//! mid-write leaves the previous checkpoint as the latest.
use serde::{Deserialize, Serialize};

pub const CHECKPOINT_FORMAT: &str = "vae-checkpoint/1";
pub const CHECKPOINT_MANIFEST: &str = "checkpoint.json";
/// File under `checkpoints/` naming the latest complete checkpoint directory.
pub const LATEST_POINTER: &str = "latest";
/// Directory under `checkpoints/` holding the best checkpoint (early stopping).
pub const BEST_DIR: &str = "best";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointManifest {
    pub format: String,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Epoch in progress (0-based) at `step`.
    pub epoch: u64,
    /// Data position: steps of `epoch` already taken.
    pub batch_in_epoch: u64,
    /// `shard` order: the number of workers whose deal of shards governs
    /// `epoch` (the ones that started it; a resume with another number
    /// finishes their deal). Absent in older checkpoints: `world_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_world: Option<usize>,
    /// RNG position: all randomness after initialisation is a pure function of
    /// `(seed, epoch)` for data order and `(seed, step, sample)` for noise, so
    /// the seed and the counters above are the whole RNG state.
    pub seed: u64,
    /// Number of workers that wrote it (resume may use another number).
    pub world_size: usize,
    /// Model kind, to refuse a checkpoint of another architecture.
    pub model_kind: String,
    /// The shape `[C, H, W]` of the samples the model was trained on, to
    /// name both shapes when it is evaluated on other data. Absent in older
    /// checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_shape: Option<[usize; 3]>,
    /// The run that wrote it (`<run-dir>/run-id`): a resume refuses another
    /// run's checkpoint. Absent in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// SHA-256 of the resolved config it was trained with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    pub early_stopping: EarlyStoppingState,
    /// Metrics at the time of writing (test loss of the last evaluation, ...).
    pub metrics: std::collections::BTreeMap<String, f64>,
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingState {
    pub best_loss: Option<f64>,
    pub best_step: Option<u64>,
    /// Evaluations since the best one.
    pub bad_evals: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The most files a checkpoint lists (it writes four).
const MAX_FILES: usize = 64;

impl CheckpointManifest {
    /// Checks what a manifest read from storage says before anything is
    /// fetched or allocated from it: its format, counters a run can reach,
    /// every file a plain name (no `..`, no `/`) listed once with a
    /// SHA-256, a sample shape of at most 2^31 values. The error names the
    /// key.
    pub fn check(&self) -> Result<(), String> {
        if self.format != CHECKPOINT_FORMAT {
            return Err(format!(
                "format: `{}` is not {CHECKPOINT_FORMAT}",
                self.format.chars().take(80).collect::<String>()
            ));
        }
        if self.world_size == 0 || self.epoch_world == Some(0) {
            return Err("world_size: a checkpoint is written by at least one worker".into());
        }
        if let Some(shape) = self.sample_shape {
            let values = shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
            if shape.contains(&0) || values.is_none_or(|n| n > 1 << 31) {
                return Err(format!("sample_shape: {shape:?} is not a sample's shape"));
            }
        }
        if self.files.len() > MAX_FILES {
            return Err(format!(
                "files: {} listed, at most {MAX_FILES}",
                self.files.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.files {
            let plain = !f.name.contains('/');
            crate::dataset::check_object_name(&f.name)
                .and_then(|()| {
                    plain
                        .then_some(())
                        .ok_or_else(|| "is in a folder".to_string())
                })
                .and_then(|()| crate::dataset::check_sha256(&f.sha256))
                .map_err(|e| format!("files: `{}` {e}", f.name.escape_debug()))?;
            if !seen.insert(f.name.as_str()) {
                return Err(format!("files: `{}` listed twice", f.name.escape_debug()));
            }
        }
        Ok(())
    }
}

/// Name of the checkpoint directory for a step; zero-padded so names sort by step.
pub fn checkpoint_dir_name(step: u64) -> String {
    format!("step-{step:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> CheckpointManifest {
        CheckpointManifest {
            format: CHECKPOINT_FORMAT.into(),
            step: 120,
            epoch: 2,
            batch_in_epoch: 7,
            epoch_world: Some(2),
            seed: 42,
            world_size: 2,
            model_kind: "conv".into(),
            sample_shape: Some([1, 28, 28]),
            run_id: Some("r-1".into()),
            config_hash: Some("ab".repeat(32)),
            early_stopping: EarlyStoppingState::default(),
            metrics: [("test_loss".to_string(), 101.5)].into(),
            files: ["model.safetensors", "optim.safetensors", "config.toml"]
                .map(|n| FileEntry {
                    name: n.into(),
                    bytes: 10,
                    sha256: "0f".repeat(32),
                })
                .into(),
        }
    }

    #[test]
    fn what_a_manifest_names_is_checked_and_the_key_named() {
        manifest().check().unwrap();
        let bad = |f: &dyn Fn(&mut CheckpointManifest), key: &str| {
            let mut m = manifest();
            f(&mut m);
            let e = m.check().unwrap_err();
            assert!(e.starts_with(key), "{e}");
        };
        bad(
            &|m| m.files[0].name = "../../etc/passwd".into(),
            "files: `../../etc/passwd`",
        );
        bad(
            &|m| m.files[0].name = "sub/model".into(),
            "files: `sub/model` is in a folder",
        );
        bad(
            &|m| m.files[1].name = "model.safetensors".into(),
            "files: `model.safetensors` listed twice",
        );
        bad(
            &|m| m.files[0].sha256 = "x".into(),
            "files: `model.safetensors`",
        );
        bad(
            &|m| m.sample_shape = Some([3, 1 << 20, 1 << 20]),
            "sample_shape",
        );
        bad(
            &|m| m.sample_shape = Some([usize::MAX, 2, 2]),
            "sample_shape",
        );
        bad(&|m| m.world_size = 0, "world_size");
        bad(&|m| m.format = "other/9".into(), "format");
    }

    use proptest::prelude::*;

    proptest! {
        /// A checkpoint manifest's JSON, mutated: read and checked, or
        /// refused; never a panic, and one that passes names only plain
        /// files in its own directory and a shape that fits in memory.
        #[test]
        fn prop_mutated_checkpoint_manifests_are_checked_or_refused(
            bytes in crate::fuzz::mutated(serde_json::to_vec_pretty(&manifest()).unwrap_or_default())
        ) {
            if let Ok(m) = serde_json::from_slice::<CheckpointManifest>(&bytes) {
                if m.check().is_ok() {
                    for f in &m.files {
                        prop_assert!(!f.name.contains('/') && f.name != ".." && f.name != ".");
                    }
                    let values: u64 = m.sample_shape.map_or(1, |s| s.iter().map(|&d| d as u64).product());
                    prop_assert!(values <= 1 << 31);
                }
            }
        }
    }
}

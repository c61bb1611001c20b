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

/// Name of the checkpoint directory for a step; zero-padded so names sort by step.
pub fn checkpoint_dir_name(step: u64) -> String {
    format!("step-{step:010}")
}

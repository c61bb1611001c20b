//! The run directory, which rank 0 owns: `config.toml` (the resolved
//! config, written here), `tensorboard/`, `images/`, `history.json`,
//! `metrics.json`, `summary.json` (the [`super::report::Reporter`]'s) and
//! `checkpoints/` (the [`super::state::Checkpointer`]'s), unless
//! `checkpoint.url` puts those elsewhere (a bucket).
use std::fs;
use std::path::Path;

use vae_proto::checkpoint::LATEST_POINTER;
use vae_proto::cli::Resume;
use vae_proto::config::Config;

use super::TrainError;
use crate::atomic;
use crate::checkpoint::{CheckpointError, Checkpoints, CONFIG_FILE};

/// Prepares `dir` for a run: creates it, proves it and the checkpoints'
/// place writable by writing the resolved config into both, and refuses to
/// mix a fresh run with an old one's checkpoints (or to resume from none).
/// Returns whether the run continues from a checkpoint.
pub fn prepare(
    dir: &Path,
    config: &Config,
    resume: &Resume,
    ckpts: &Checkpoints,
) -> Result<bool, TrainError> {
    let fail = |message: String| TrainError::RunDir {
        path: dir.to_path_buf(),
        message,
    };
    fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let has_ckpt = ckpts.follow(LATEST_POINTER)?.is_some();
    if *resume == Resume::Yes && !has_ckpt {
        return Err(CheckpointError::Missing { url: ckpts.url() }.into());
    }
    if *resume == Resume::No && has_ckpt {
        return Err(TrainError::Invalid(format!(
            "{}: already holds checkpoints; pass --resume to continue the run, or choose another --run-dir (or checkpoint.url)",
            ckpts.url()
        )));
    }
    ckpts
        .store
        .put(CONFIG_FILE, config.to_toml())
        .map_err(CheckpointError::from)?;
    atomic::write(&dir.join("config.toml"), config.to_toml().as_bytes())
        .map_err(|e| fail(format!("cannot write into it: {e}")))?;
    for sub in ["tensorboard", "images"] {
        fs::create_dir_all(dir.join(sub))
            .map_err(|e| fail(format!("cannot create {sub}/: {e}")))?;
    }
    Ok(match resume {
        Resume::No => false,
        Resume::From(_) => true,
        Resume::Yes | Resume::IfPresent => has_ckpt,
    })
}

/// Where the run's checkpoints go: `checkpoint.url`, or `<run-dir>/checkpoints`.
pub fn checkpoints_url(dir: &Path, config: &Config) -> String {
    let url = config.checkpoint.url.trim();
    if url.is_empty() {
        dir.join("checkpoints").display().to_string()
    } else {
        url.to_string()
    }
}

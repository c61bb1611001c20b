//! The run directory, which rank 0 owns: `config.toml` (the resolved
//! config, written here), `tensorboard/`, `images/`, `history.json`,
//! `metrics.json`, `summary.json` (the [`super::report::Reporter`]'s) and
//! `checkpoints/` (the [`super::state::Checkpointer`]'s).
use std::fs;
use std::path::{Path, PathBuf};

use vae_proto::checkpoint::LATEST_POINTER;
use vae_proto::config::Config;

use super::TrainError;
use crate::atomic;
use crate::checkpoint::{self, CheckpointError};

/// Prepares `dir` for a run: creates it, proves it writable by writing the
/// resolved config, and refuses to mix a fresh run with an old one's
/// checkpoints (or to resume from none).
pub fn prepare(dir: &Path, config: &Config, resume: bool) -> Result<(), TrainError> {
    let fail = |message: String| TrainError::RunDir {
        path: dir.to_path_buf(),
        message,
    };
    fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let ckpt = checkpoints(dir);
    let has_ckpt = checkpoint::follow(&ckpt, LATEST_POINTER)?.is_some();
    if resume && !has_ckpt {
        return Err(CheckpointError::Missing { path: ckpt }.into());
    }
    if !resume && has_ckpt {
        return Err(fail(
            "already holds checkpoints; pass --resume to continue it, or choose another --run-dir"
                .into(),
        ));
    }
    atomic::write(&dir.join("config.toml"), config.to_toml().as_bytes())
        .map_err(|e| fail(format!("cannot write into it: {e}")))?;
    for sub in ["tensorboard", "images"] {
        fs::create_dir_all(dir.join(sub))
            .map_err(|e| fail(format!("cannot create {sub}/: {e}")))?;
    }
    Ok(())
}

/// Where the run's checkpoints are.
pub fn checkpoints(dir: &Path) -> PathBuf {
    dir.join("checkpoints")
}

//! What `vae-worker train` checks before it starts anything (MPI, a device,
//! the run directory): every dataset the run reads is there, and what
//! `--resume` or `--resume-from` names holds a checkpoint. Each failure is
//! one line naming what was looked for and what to pass instead; nothing is
//! created. `train --check` runs these checks alone, and `vae-launch` runs
//! that before it starts a worker.
use std::path::PathBuf;

use vae_proto::checkpoint::LATEST_POINTER;
use vae_proto::cli::{Resume, TrainCmd};
use vae_proto::config::Config;
use vae_proto::sweep::{point_config, Sweep};

use crate::checkpoint::{self, CheckpointError, Checkpoints};
use crate::data::format::Dataset;
use crate::data::store::StorageOptions;
use crate::data::DataError;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Config(#[from] vae_proto::config::ConfigError),
    #[error("--resume: no checkpoint to resume: the run directory {path} does not exist (leave out --resume to start a new run, or pass the --run-dir of an earlier run)", path = path.display())]
    NoRunDir { path: PathBuf },
}

/// Checks what `cmd` needs before anything starts: on every rank, each
/// dataset the run (or each point of its sweep) reads; on rank 0, which
/// owns the run directory, what a resume starts from.
pub fn before_training(
    cmd: &TrainCmd,
    config: &Config,
    sweep: Option<&Sweep>,
    rank: usize,
) -> Result<(), CheckError> {
    let storage = StorageOptions::from_config(&config.storage);
    let mut urls = vec![config.data.url.clone()];
    for p in sweep.map_or(&[][..], |s| &s.points[..]) {
        let url = point_config(config, p, &cmd.origin())?.data.url;
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    // WebDataset tars are scanned when the run opens them.
    for url in urls.iter().filter(|u| !vae_proto::config::names_tars(u)) {
        Dataset::open_images(url, &storage)?;
    }
    if rank == 0 {
        resumable(cmd, config, sweep.is_some(), &storage)?;
    }
    Ok(())
}

/// What `--resume` / `--resume-from` start from is there.
fn resumable(
    cmd: &TrainCmd,
    config: &Config,
    sweep: bool,
    storage: &StorageOptions,
) -> Result<(), CheckError> {
    let run_dir = cmd.run_dir_or_default();
    match cmd.resume() {
        Resume::Yes if sweep => match run_dir.is_dir() {
            true => Ok(()),
            false => Err(CheckError::NoRunDir { path: run_dir }),
        },
        Resume::Yes => {
            let url = crate::train::checkpoints_url(&run_dir, config);
            let ckpts = Checkpoints::open(&url, storage)?;
            if ckpts.follow(LATEST_POINTER)?.is_some() {
                return Ok(());
            }
            if config.checkpoint.url.trim().is_empty() && !run_dir.exists() {
                return Err(CheckError::NoRunDir { path: run_dir });
            }
            Err(CheckpointError::Missing {
                url: ckpts.url(),
                hint: checkpoint::hint_for(&run_dir),
            }
            .into())
        }
        Resume::From(spec) => {
            checkpoint::locate(&spec, storage).map(drop)?;
            Ok(())
        }
        Resume::No | Resume::IfPresent | Resume::LatestOr(_) => Ok(()),
    }
}

//! The run directory, which rank 0 owns: `config.toml` (the resolved
//! config, credentials taken out, written here), `run-id` (the run's
//! identity, written once), `tensorboard/`, `images/`, `history.json`,
//! `metrics.json`, `summary.json` (the [`super::report::Reporter`]'s) and
//! `checkpoints/` (the [`super::state::Checkpointer`]'s), unless
//! `checkpoint.url` puts those elsewhere (a bucket). Here too is the decision
//! where a run starts from ([`Start`]), which rank 0 makes and broadcasts.
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vae_proto::checkpoint::LATEST_POINTER;
use vae_proto::cli::Resume;
use vae_proto::config::Config;

use super::error::TrainError;
use crate::atomic;
use crate::checkpoint::{CheckpointError, Checkpoints, CONFIG_FILE};

/// The file under the run directory that holds the run's identity.
pub const RUN_ID_FILE: &str = "run-id";

/// Where a run starts from, as rank 0 decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Start {
    /// From scratch.
    Fresh,
    /// From the run's newest intact checkpoint, which must have been written
    /// by this run (`adopt`: a run directory without an identity takes the
    /// checkpoint's, as an explicit `--resume` of it asks).
    Latest { adopt: bool },
    /// From this checkpoint (a path or URL; damage is an error).
    Explicit(String),
}

/// The run's identity and where it starts, decided by rank 0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    pub run_id: String,
    pub start: Start,
}

/// Prepares `dir` for a run: creates it, proves it and the checkpoints'
/// place writable by writing the resolved config into both, gives the run
/// its identity (kept in `run-id`, so restarts and `--resume` keep it), and
/// refuses to mix a fresh run with an old one's checkpoints (or to resume
/// from none).
pub fn prepare(
    dir: &Path,
    toml: &str,
    resume: &Resume,
    ckpts: &Checkpoints,
) -> Result<Prepared, TrainError> {
    let fail = |message: String| TrainError::RunDir {
        path: dir.to_path_buf(),
        message,
    };
    fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let has_ckpt = ckpts.follow(LATEST_POINTER)?.is_some();
    let known = read_run_id(dir);
    let start = match resume {
        Resume::Yes if !has_ckpt => {
            return Err(CheckpointError::Missing {
                url: ckpts.url(),
                hint: format!(" (nothing to resume from{})", crate::checkpoint::hint_for(dir)),
            }
            .into())
        }
        Resume::No if has_ckpt => {
            return Err(TrainError::Invalid(format!(
                "{}: already holds checkpoints; pass --resume to continue the run, or choose another --run-dir (or checkpoint.url)",
                ckpts.url()
            )))
        }
        Resume::No => Start::Fresh,
        Resume::Yes => Start::Latest {
            adopt: known.is_none(),
        },
        Resume::IfPresent if has_ckpt => Start::Latest { adopt: false },
        Resume::IfPresent => Start::Fresh,
        Resume::From(spec) => Start::Explicit(spec.clone()),
        Resume::LatestOr(_) if has_ckpt => Start::Latest { adopt: false },
        Resume::LatestOr(spec) => Start::Explicit(spec.clone()),
    };
    let run_id = known.unwrap_or_else(new_run_id);
    ckpts
        .store
        .put(CONFIG_FILE, toml.to_string())
        .map_err(CheckpointError::from)?;
    atomic::write(&dir.join("config.toml"), toml.as_bytes())
        .map_err(|e| fail(format!("cannot write into it: {e}")))?;
    if !matches!(start, Start::Latest { adopt: true }) {
        write_run_id(dir, &run_id)?;
    }
    for sub in ["tensorboard", "images"] {
        fs::create_dir_all(dir.join(sub))
            .map_err(|e| fail(format!("cannot create {sub}/: {e}")))?;
    }
    Ok(Prepared { run_id, start })
}

/// The identity recorded in `dir`, if any.
pub fn read_run_id(dir: &Path) -> Option<String> {
    let text = fs::read_to_string(dir.join(RUN_ID_FILE)).ok()?;
    let id = text.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// Records `id` as the identity of the run in `dir`.
pub fn write_run_id(dir: &Path, id: &str) -> Result<(), TrainError> {
    let path = dir.join(RUN_ID_FILE);
    atomic::write(&path, format!("{id}\n").as_bytes()).map_err(|e| TrainError::RunDir {
        path,
        message: format!("cannot write it: {e}"),
    })
}

/// A new run identity: the time, the host and the process, hashed.
fn new_run_id() -> String {
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seed = format!(
        "{}.{}:{}:{}",
        now.as_secs(),
        now.subsec_nanos(),
        crate::device::host_name(),
        std::process::id()
    );
    let h = hex::encode(Sha256::digest(seed.as_bytes()));
    format!("{}-{}", now.as_secs(), &h[..12])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::store::StorageOptions;

    fn setup() -> (tempfile::TempDir, Config, Checkpoints) {
        let d = tempfile::tempdir().unwrap();
        let cfg = vae_proto::config::parse("", "t", &[]).unwrap();
        let ck = Checkpoints::open(
            &d.path().join("run/checkpoints").display().to_string(),
            &StorageOptions::default(),
        )
        .unwrap();
        (d, cfg, ck)
    }

    #[test]
    fn a_run_keeps_its_identity_and_restarts_resume_their_own() {
        let (d, cfg, ck) = setup();
        let run = d.path().join("run");
        let first = prepare(&run, &cfg.to_toml(), &Resume::IfPresent, &ck).unwrap();
        assert_eq!(first.start, Start::Fresh);
        ck.set_pointer(LATEST_POINTER, "step-0000000005").unwrap();
        let again = prepare(&run, &cfg.to_toml(), &Resume::IfPresent, &ck).unwrap();
        assert_eq!(again.run_id, first.run_id);
        assert_eq!(again.start, Start::Latest { adopt: false });
        // After --resume-from X, a restart takes the run's own checkpoint.
        let spec = "s3://b/other/step-0000000003".to_string();
        let restart = prepare(&run, &cfg.to_toml(), &Resume::LatestOr(spec.clone()), &ck).unwrap();
        assert_eq!(restart.start, Start::Latest { adopt: false });
        let fresh = d.path().join("fresh");
        let ck2 = Checkpoints::open(
            &fresh.join("checkpoints").display().to_string(),
            &StorageOptions::default(),
        )
        .unwrap();
        let p = prepare(
            &fresh,
            &cfg.to_toml(),
            &Resume::LatestOr(spec.clone()),
            &ck2,
        )
        .unwrap();
        assert_eq!(p.start, Start::Explicit(spec));
        assert!(prepare(&run, &cfg.to_toml(), &Resume::No, &ck).is_err());
    }
}

//! Writing and reading checkpoints (format in `vae_proto::checkpoint`).
//! A checkpoint is built in a hidden temporary directory, every file synced,
//! its manifest written last, then renamed into place; only then is the
//! pointer file (`latest` or `best`) replaced, itself by write-and-rename. A
//! crash at any point leaves the previous checkpoint named as the latest.
use std::fs;
use std::path::{Path, PathBuf};
use tch::Tensor;
use vae_proto::checkpoint::{
    checkpoint_dir_name, CheckpointManifest, FileEntry, CHECKPOINT_FORMAT, CHECKPOINT_MANIFEST,
    LATEST_POINTER,
};

use crate::atomic;
use crate::data::format::sha256_hex;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIM_FILE: &str = "optim.safetensors";
pub const DISC_FILE: &str = "discriminator.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}", path = path.display())]
    Tensor { path: PathBuf, message: String },
    #[error("{path}: corrupt checkpoint: {message}", path = path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("no checkpoint in {path} (nothing to resume from)", path = path.display())]
    Missing { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn synced(path: &Path) -> Result<(), CheckpointError> {
    atomic::sync_dir(path).map_err(io(path))
}

/// What goes into a checkpoint besides the manifest's counters.
pub struct Contents<'a> {
    pub model: &'a [(String, Tensor)],
    pub optim: &'a [(String, Tensor)],
    /// A regulariser's network (FactorVAE's discriminator), when the
    /// objective has one; stored as [`DISC_FILE`].
    pub regularizer: Option<&'a [(String, Tensor)]>,
}

/// A checkpoint read back and verified.
pub struct Loaded {
    pub dir: PathBuf,
    pub manifest: CheckpointManifest,
    pub model: Vec<(String, Tensor)>,
    pub optim: Vec<(String, Tensor)>,
    pub discriminator: Option<Vec<(String, Tensor)>>,
}

fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<FileEntry, CheckpointError> {
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.detach().to_device(tch::Device::Cpu).contiguous(),
            )
        })
        .collect();
    Tensor::write_safetensors(&cpu, path).map_err(|e| CheckpointError::Tensor {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let bytes = fs::read(path).map_err(io(path))?;
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))?;
    Ok(FileEntry {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    })
}

/// Writes checkpoint `name` (e.g. `step-0000000468`) under `dir` atomically and
/// returns its path. `manifest.files` is filled in here.
pub fn write(
    dir: &Path,
    name: &str,
    mut manifest: CheckpointManifest,
    contents: &Contents,
) -> Result<PathBuf, CheckpointError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    // Built in a hidden temporary directory, removed again if anything fails.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".tmp-{name}-"))
        .tempdir_in(dir)
        .map_err(io(dir))?;
    let tmp = staging.path();
    manifest.format = CHECKPOINT_FORMAT.into();
    manifest.files = vec![
        write_tensors(&tmp.join(MODEL_FILE), contents.model)?,
        write_tensors(&tmp.join(OPTIM_FILE), contents.optim)?,
    ];
    if let Some(d) = contents.regularizer {
        manifest.files.push(write_tensors(&tmp.join(DISC_FILE), d)?);
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CheckpointError::Corrupt {
        path: tmp.to_path_buf(),
        message: e.to_string(),
    })?;
    let mpath = tmp.join(CHECKPOINT_MANIFEST);
    atomic::write(&mpath, &json).map_err(io(&mpath))?;
    let dest = dir.join(name);
    if dest.exists() {
        fs::remove_dir_all(&dest).map_err(io(&dest))?;
    }
    let tmp = staging.keep();
    fs::rename(&tmp, &dest).map_err(io(&dest))?;
    synced(dir)?;
    Ok(dest)
}

/// Points `dir/<pointer>` at checkpoint `name`, atomically.
pub fn set_pointer(dir: &Path, pointer: &str, name: &str) -> Result<(), CheckpointError> {
    let dest = dir.join(pointer);
    atomic::write(&dest, format!("{name}\n").as_bytes()).map_err(io(&dest))
}

/// The checkpoint directory `dir/<pointer>` names, if the pointer exists.
pub fn follow(dir: &Path, pointer: &str) -> Result<Option<PathBuf>, CheckpointError> {
    let p = dir.join(pointer);
    match fs::read_to_string(&p) {
        Ok(s) => Ok(Some(dir.join(s.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CheckpointError::Io { path: p, source: e }),
    }
}

/// Resolves what a user names as a checkpoint: a checkpoint directory, a
/// `checkpoints/` directory or a run directory (both: its latest).
pub fn resolve(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.join(CHECKPOINT_MANIFEST).is_file() {
        return Ok(path.to_path_buf());
    }
    for dir in [path.to_path_buf(), path.join("checkpoints")] {
        if let Some(p) = follow(&dir, LATEST_POINTER)? {
            return Ok(p);
        }
    }
    Err(CheckpointError::Missing {
        path: path.to_path_buf(),
    })
}

fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    Tensor::read_safetensors(path).map_err(|e| CheckpointError::Tensor {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads checkpoint directory `dir`, verifying every file against its manifest.
pub fn read(dir: &Path) -> Result<Loaded, CheckpointError> {
    let mpath = dir.join(CHECKPOINT_MANIFEST);
    let bytes = fs::read(&mpath).map_err(io(&mpath))?;
    let manifest: CheckpointManifest =
        serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
            path: mpath.clone(),
            message: e.to_string(),
        })?;
    for f in &manifest.files {
        let p = dir.join(&f.name);
        let data = fs::read(&p).map_err(io(&p))?;
        if data.len() as u64 != f.bytes || sha256_hex(&data) != f.sha256 {
            return Err(CheckpointError::Corrupt {
                path: p,
                message: "size or SHA-256 differs from the manifest".into(),
            });
        }
    }
    let has_disc = manifest.files.iter().any(|f| f.name == DISC_FILE);
    Ok(Loaded {
        dir: dir.to_path_buf(),
        model: read_tensors(&dir.join(MODEL_FILE))?,
        optim: read_tensors(&dir.join(OPTIM_FILE))?,
        discriminator: if has_disc {
            Some(read_tensors(&dir.join(DISC_FILE))?)
        } else {
            None
        },
        manifest,
    })
}

/// Removes step checkpoints beyond the newest `keep`, never one a pointer names.
pub fn prune(dir: &Path, keep: usize, protect: &[PathBuf]) -> Result<(), CheckpointError> {
    let mut steps: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-") || n.starts_with("best-"))
        })
        .collect();
    steps.sort();
    let (best, mut step): (Vec<PathBuf>, Vec<PathBuf>) = steps.into_iter().partition(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("best-"))
    });
    step.reverse();
    for p in step.into_iter().skip(keep).chain(best) {
        if !protect.contains(&p) {
            fs::remove_dir_all(&p).map_err(io(&p))?;
        }
    }
    Ok(())
}

/// Directory name of the checkpoint at `step`.
pub fn step_name(step: u64) -> String {
    checkpoint_dir_name(step)
}

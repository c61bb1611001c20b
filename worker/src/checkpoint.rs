//! Checkpoints on any store (format in `vae_proto::checkpoint`): a local
//! directory or an object-store prefix (`checkpoint.url`). A checkpoint
//! `step-N/` is written as objects — the tensors (`*.safetensors`) and the
//! resolved `config.toml` — then its manifest `checkpoint.json` (sizes and
//! SHA-256 of every object), and only then is the pointer `latest` (or
//! `best`) replaced to name it. A crash at any point leaves the previous
//! checkpoint as the latest: a checkpoint without its manifest is never
//! named. On a local disk every object is synced before the pointer moves.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{Kind, Tensor};
use vae_proto::checkpoint::{
    checkpoint_dir_name, CheckpointManifest, FileEntry, CHECKPOINT_FORMAT, CHECKPOINT_MANIFEST,
    LATEST_POINTER,
};

use crate::data::digest::sha256_hex;
use crate::data::store::{StorageOptions, Store};
use crate::data::DataError;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIM_FILE: &str = "optim.safetensors";
pub const DISC_FILE: &str = "discriminator.safetensors";
pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Storage(#[from] DataError),
    #[error("{url}: {message}")]
    Tensor { url: String, message: String },
    #[error("{url}: corrupt checkpoint: {message}")]
    Corrupt { url: String, message: String },
    /// No checkpoint where one was looked for; `hint` says more (a sweep's
    /// folder and a point to pass instead), or is empty.
    #[error("no checkpoint in {url}{hint}")]
    Missing { url: String, hint: String },
}

/// A checkpoint's contents, copied off the device so a background writer can
/// serialise them while training goes on.
pub struct Snapshot {
    pub model: Vec<(String, Tensor)>,
    pub optim: Vec<(String, Tensor)>,
    /// A regulariser's network (FactorVAE's discriminator), stored as [`DISC_FILE`].
    pub regularizer: Option<Vec<(String, Tensor)>>,
    /// The resolved config, so the checkpoint is self-contained.
    pub config: String,
}

/// A copy of `tensors` on the CPU, independent of the originals.
pub fn host_copy(tensors: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    tensors
        .iter()
        .map(|(n, t)| {
            let t = t.detach();
            let host = if t.device() == tch::Device::Cpu {
                t.copy()
            } else {
                t.to_device(tch::Device::Cpu)
            };
            (n.clone(), host.contiguous())
        })
        .collect()
}

/// A checkpoint read back and verified.
pub struct Loaded {
    /// Its URL, for messages.
    pub url: String,
    pub manifest: CheckpointManifest,
    pub model: Vec<(String, Tensor)>,
    pub optim: Vec<(String, Tensor)>,
    pub discriminator: Option<Vec<(String, Tensor)>>,
    /// The config it was written with (absent in older checkpoints).
    pub config: Option<String>,
}

/// A tensor's bytes for safetensors.
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.data[..]).into()
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// `tensors` (CPU, contiguous) as a safetensors file's bytes.
pub fn to_safetensors(tensors: &[(String, Tensor)]) -> Result<Vec<u8>, String> {
    let raws = tensors
        .iter()
        .map(|(n, t)| {
            let dtype = Dtype::try_from(t.kind()).map_err(|e| format!("{n}: {e}"))?;
            let mut data = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
            t.f_copy_data_u8(&mut data, t.numel())
                .map_err(|e| format!("{n}: {e}"))?;
            let shape = t.size().iter().map(|&d| d as usize).collect();
            Ok((n.clone(), Raw { dtype, shape, data }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let views = raws.iter().map(|(n, r)| (n.as_str(), r));
    safetensors::tensor::serialize(views, &None).map_err(|e| e.to_string())
}

/// The tensors of a safetensors file's bytes.
pub fn from_safetensors(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let kind = Kind::try_from(view.dtype()).map_err(|e| e.to_string())?;
            let size: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let t =
                Tensor::f_from_data_size(view.data(), &size, kind).map_err(|e| e.to_string())?;
            Ok((name, t))
        })
        .collect()
}

/// The checkpoints of a run, under one prefix.
#[derive(Clone)]
pub struct Checkpoints {
    pub store: Store,
}

impl Checkpoints {
    /// The checkpoints at `spec` (a path or a URL). Nothing is read yet.
    pub fn open(spec: &str, opts: &StorageOptions) -> Result<Checkpoints, CheckpointError> {
        Ok(Checkpoints {
            store: Store::open(spec, opts)?,
        })
    }

    pub fn url(&self) -> String {
        self.store.url().to_string()
    }

    /// The URL of checkpoint `name`.
    pub fn url_of(&self, name: &str) -> String {
        self.store.url_of(&format!("{name}/"))
    }

    /// Writes checkpoint `name`: its objects, then its manifest (the
    /// manifest's `files` are filled in here). `between` runs after the
    /// objects and before the manifest (a test hook slows writes there).
    /// A write that fails (a full disk, an outage) takes back what it wrote,
    /// so no incomplete checkpoint is left under its name.
    pub fn write(
        &self,
        name: &str,
        manifest: CheckpointManifest,
        snap: &Snapshot,
        between: &dyn Fn(),
    ) -> Result<(), CheckpointError> {
        let mut written = Vec::new();
        let result = self.write_objects(name, manifest, snap, between, &mut written);
        if result.is_err() {
            for o in &written {
                let _ = self.store.delete(o);
            }
            if let Some(dir) = self.store.local_dir() {
                let _ = std::fs::remove_dir(dir.join(name));
            }
        }
        result
    }

    fn write_objects(
        &self,
        name: &str,
        mut manifest: CheckpointManifest,
        snap: &Snapshot,
        between: &dyn Fn(),
        written: &mut Vec<String>,
    ) -> Result<(), CheckpointError> {
        let mut files = vec![
            (MODEL_FILE, self.encode(name, &snap.model)?),
            (OPTIM_FILE, self.encode(name, &snap.optim)?),
        ];
        if let Some(r) = &snap.regularizer {
            files.push((DISC_FILE, self.encode(name, r)?));
        }
        files.push((CONFIG_FILE, Bytes::from(snap.config.clone())));
        manifest.format = CHECKPOINT_FORMAT.into();
        manifest.files = Vec::new();
        for (file, bytes) in files {
            let object = format!("{name}/{file}");
            manifest.files.push(FileEntry {
                name: file.to_string(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            });
            written.push(object.clone());
            self.store.put(&object, bytes)?;
        }
        between();
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CheckpointError::Corrupt {
            url: self.url_of(name),
            message: e.to_string(),
        })?;
        let object = format!("{name}/{CHECKPOINT_MANIFEST}");
        written.push(object.clone());
        self.store.put(&object, json)?;
        let names: Vec<&str> = written.iter().map(String::as_str).collect();
        self.store.sync(&names)?;
        Ok(())
    }

    fn encode(&self, name: &str, tensors: &[(String, Tensor)]) -> Result<Bytes, CheckpointError> {
        to_safetensors(tensors)
            .map(Bytes::from)
            .map_err(|message| CheckpointError::Tensor {
                url: self.url_of(name),
                message,
            })
    }

    /// Points `pointer` at checkpoint `name`.
    pub fn set_pointer(&self, pointer: &str, name: &str) -> Result<(), CheckpointError> {
        self.store.put(pointer, format!("{name}\n"))?;
        self.store.sync(&[pointer])?;
        Ok(())
    }

    /// The checkpoint `pointer` names, if the pointer exists.
    pub fn follow(&self, pointer: &str) -> Result<Option<String>, CheckpointError> {
        match self.store.get(pointer) {
            Ok(b) => Ok(Some(String::from_utf8_lossy(&b).trim().to_string())),
            Err(DataError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The latest checkpoint's name, or an error saying there is none.
    pub fn latest(&self) -> Result<String, CheckpointError> {
        self.follow(LATEST_POINTER)?
            .ok_or_else(|| CheckpointError::Missing {
                url: self.url(),
                hint: String::new(),
            })
    }

    /// Reads checkpoint `name`, verifying every object against its manifest.
    pub fn read(&self, name: &str) -> Result<Loaded, CheckpointError> {
        let url = self.url_of(name);
        let mbytes = self.store.get(&format!("{name}/{CHECKPOINT_MANIFEST}"))?;
        let manifest: CheckpointManifest = serde_json::from_slice(&mbytes)
            .map_err(|e| e.to_string())
            .and_then(|m: CheckpointManifest| m.check().map(|()| m))
            .map_err(|message| CheckpointError::Corrupt {
                url: url.clone(),
                message,
            })?;
        let mut files = BTreeMap::new();
        for f in &manifest.files {
            let object = format!("{name}/{}", f.name);
            let data = self.store.get(&object)?;
            if data.len() as u64 != f.bytes || sha256_hex(&data) != f.sha256 {
                return Err(CheckpointError::Corrupt {
                    url: self.store.url_of(&object),
                    message: "size or SHA-256 differs from the manifest".into(),
                });
            }
            files.insert(f.name.clone(), data);
        }
        let tensors = |file: &str| -> Result<Option<Vec<(String, Tensor)>>, CheckpointError> {
            files
                .get(file)
                .map(|b| {
                    from_safetensors(b).map_err(|message| CheckpointError::Tensor {
                        url: self.store.url_of(&format!("{name}/{file}")),
                        message,
                    })
                })
                .transpose()
        };
        let missing = |file: &str| CheckpointError::Corrupt {
            url: url.clone(),
            message: format!("has no {file}"),
        };
        Ok(Loaded {
            model: tensors(MODEL_FILE)?.ok_or_else(|| missing(MODEL_FILE))?,
            optim: tensors(OPTIM_FILE)?.ok_or_else(|| missing(OPTIM_FILE))?,
            discriminator: tensors(DISC_FILE)?,
            config: files
                .get(CONFIG_FILE)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            url,
            manifest,
        })
    }

    /// The step checkpoints that have a manifest, newest first.
    pub fn complete(&self) -> Result<Vec<String>, CheckpointError> {
        let mut names: Vec<String> = self
            .store
            .list("")?
            .into_iter()
            .filter_map(|o| {
                let (dir, file) = o.split_once('/')?;
                (dir.starts_with("step-") && file == CHECKPOINT_MANIFEST).then(|| dir.to_string())
            })
            .collect();
        names.sort();
        names.reverse();
        Ok(names)
    }

    /// Removes step checkpoints beyond the newest `keep`, and best ones,
    /// never one that `protect` names.
    pub fn prune(&self, keep: usize, protect: &[String]) -> Result<(), CheckpointError> {
        let objects = self.store.list("")?;
        let mut by_dir: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for o in objects {
            if let Some((dir, _)) = o.split_once('/') {
                by_dir.entry(dir.to_string()).or_default().push(o.clone());
            }
        }
        let mut steps: Vec<&String> = by_dir.keys().filter(|d| d.starts_with("step-")).collect();
        steps.sort();
        steps.reverse();
        let old = steps.into_iter().skip(keep);
        let best = by_dir.keys().filter(|d| d.starts_with("best-"));
        let drop: Vec<String> = old
            .chain(best)
            .filter(|d| !protect.contains(d))
            .cloned()
            .collect();
        for d in drop {
            for o in &by_dir[&d] {
                self.store.delete(o)?;
            }
        }
        Ok(())
    }
}

/// Finds what a user names as a checkpoint: a checkpoint (with its
/// manifest), a checkpoints prefix or a run directory (both: their
/// `latest`). Returns the checkpoints and the checkpoint's name.
pub fn locate(spec: &str, opts: &StorageOptions) -> Result<(Checkpoints, String), CheckpointError> {
    let here = Checkpoints::open(spec, opts)?;
    match here.store.get(CHECKPOINT_MANIFEST) {
        Ok(_) => {
            let url = here.url();
            let trimmed = url.trim_end_matches('/');
            if let Some((parent, name)) = trimmed.rsplit_once('/') {
                return Ok((
                    Checkpoints::open(&format!("{parent}/"), opts)?,
                    name.to_string(),
                ));
            }
        }
        Err(DataError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    for c in [
        here.clone(),
        Checkpoints {
            store: here.store.child("checkpoints"),
        },
    ] {
        if let Some(name) = c.follow(LATEST_POINTER)? {
            return Ok((c, name));
        }
    }
    Err(CheckpointError::Missing {
        url: here.url(),
        hint: hint_for(Path::new(spec)),
    })
}

/// What to add when the local directory `dir` holds no checkpoint of its
/// own but is a sweep's folder: its points keep theirs in subfolders, one
/// of which to pass instead (empty otherwise).
pub fn hint_for(dir: &Path) -> String {
    let points = sweep_points(dir);
    match points.first() {
        Some(first) => format!(
            " ({} is a sweep's folder: its point{} keep{} {} checkpoints in {} own subfolder{}; pass one of those, e.g. {})",
            dir.display(),
            if points.len() == 1 { "" } else { "s" },
            if points.len() == 1 { "s" } else { "" },
            if points.len() == 1 { "its" } else { "their" },
            if points.len() == 1 { "its" } else { "their" },
            if points.len() == 1 { "" } else { "s" },
            first.display()
        ),
        None if !dir.to_string_lossy().contains("://") && !dir.exists() => {
            " (no such directory)".into()
        }
        None => String::new(),
    }
}

/// The subfolders of the local directory `dir` that hold a run's
/// checkpoints (a sweep's points), in order.
pub fn sweep_points(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut points: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("checkpoints").join(LATEST_POINTER).is_file())
        .collect();
    points.sort();
    points
}

/// Name of the checkpoint at `step`.
pub fn step_name(step: u64) -> String {
    checkpoint_dir_name(step)
}

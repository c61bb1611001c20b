//! `vae-worker export`: the weights of a checkpoint as a safetensors file
//! under PyTorch `state_dict` names: the model's, and for FactorVAE its
//! discriminator's under `discriminator.` — the names of the modules in
//! `python/vaedp_models.py`, which load it with `load_state_dict(...,
//! strict=True)` (an MLP export also loads into pytorch/examples' `VAE`).
use std::path::Path;
use tch::Tensor;

use crate::checkpoint::{self, CheckpointError};

/// Writes the weights of the checkpoint at `checkpoint` (a checkpoint, run or
/// `checkpoints/` directory) to `out`; returns the checkpoint's step.
pub fn export(checkpoint: &Path, out: &Path) -> Result<u64, CheckpointError> {
    let dir = checkpoint::resolve(checkpoint)?;
    let loaded = checkpoint::read(&dir)?;
    let mut tensors: Vec<(String, Tensor)> = loaded.model;
    tensors.extend(loaded.discriminator.unwrap_or_default());
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| CheckpointError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    Tensor::write_safetensors(&tensors, out).map_err(|e| CheckpointError::Tensor {
        path: out.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(loaded.manifest.step)
}

//! `vae-worker export`: the weights of a checkpoint as a safetensors file
//! under PyTorch `state_dict` names: the model's, and for FactorVAE its
//! discriminator's under `discriminator.` — the names of the modules in
//! `python/vaedp_models.py`, which load it with `load_state_dict(...,
//! strict=True)` (an MLP export also loads into pytorch/examples' `VAE`).
use std::path::Path;
use tch::Tensor;

use crate::checkpoint::{self, CheckpointError};
use crate::data::store::StorageOptions;

/// Writes the weights of the checkpoint `checkpoint` names (a checkpoint, a
/// checkpoints prefix or a run directory; a path or a URL) to the local file
/// `out`; returns the checkpoint's step.
pub fn export(checkpoint: &str, out: &Path) -> Result<u64, CheckpointError> {
    let (ckpts, name) = checkpoint::locate(checkpoint, &StorageOptions::default())?;
    let loaded = ckpts.read(&name)?;
    let mut tensors: Vec<(String, Tensor)> = loaded.model;
    tensors.extend(loaded.discriminator.unwrap_or_default());
    let fail = |message: String| CheckpointError::Tensor {
        url: out.display().to_string(),
        message,
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
    }
    Tensor::write_safetensors(&tensors, out).map_err(|e| fail(e.to_string()))?;
    Ok(loaded.manifest.step)
}

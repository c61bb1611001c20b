//! Helpers shared by the end-to-end test binaries: where the repository, the
//! prepared MNIST and the Python venv are.
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `data/mnist`, prepared by scripts/setup.sh, as an absolute path.
pub fn mnist() -> String {
    let p = repo().join("data/mnist");
    p.canonicalize().unwrap_or(p).display().to_string()
}

/// The venv's python (with torch, tensorboard, safetensors).
pub fn python() -> String {
    std::env::var("VAE_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/vaedp/torch-venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

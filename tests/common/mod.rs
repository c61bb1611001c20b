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

/// Max |a − b| over all tensors of two safetensors files (PyTorch reads them).
pub fn max_diff(a: &Path, b: &Path) -> f64 {
    let code = "import sys\nfrom safetensors.torch import load_file\na,b=load_file(sys.argv[1]),load_file(sys.argv[2])\nassert a.keys()==b.keys()\nprint(max((a[k].double()-b[k].double()).abs().max().item() for k in a))";
    let out = std::process::Command::new(python())
        .args(["-c", code])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

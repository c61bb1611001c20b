//! Checks before any worker starts: `vae-worker train … --check` on this
//! machine (config, dataset, what a resume starts from; no MPI, nothing
//! created), so a mistake is one line and leaves no run directory behind.
use std::path::Path;
use std::process::Command;

use crate::plan::Plan;

/// Whether `host` names this machine.
pub fn is_this_host(host: &str) -> bool {
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    ["localhost", "127.0.0.1", "::1", me.trim()].contains(&host)
}

/// Runs `worker train … --check` for `plan`'s arguments (no MPI, nothing
/// created): `Err` with the worker's one line when the config, the dataset
/// or what a resume starts from is wrong. The check runs in a process group
/// of its own: a signal sent to the job's group is the launcher's to handle,
/// and does not make the check fail.
pub fn check_with(worker: &Path, plan: &Plan) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let out = Command::new(worker)
        .args(&plan.worker_args)
        .arg("--check")
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("vae-launch: error: cannot run {}: {e}", worker.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().rev().find(|l| !l.trim().is_empty());
    Err(line.map_or_else(
        || {
            format!(
                "vae-launch: error: {} --check failed ({})",
                worker.display(),
                out.status
            )
        },
        str::to_string,
    ))
}

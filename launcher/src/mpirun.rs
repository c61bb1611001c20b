//! The `mpirun` command that starts a planned job's workers, and the
//! workers' arguments for each attempt.
use std::path::Path;
use std::process::Command;

use crate::plan::Plan;

impl Plan {
    /// The `mpirun` command for one attempt; a `restart` continues from
    /// the latest checkpoint if there is one (`--resume-if-present`; the
    /// workers look, wherever `checkpoint.url` puts them).
    pub fn mpirun(&self, mpirun: &str, worker: &Path, restart: bool) -> Command {
        let mut c = Command::new(mpirun);
        c.args([
            "-np",
            &self.ranks().to_string(),
            "--tag-output",
            "--oversubscribe",
            "--bind-to",
            "none",
        ]);
        if !self.hosts.is_empty() {
            c.args(["--host", &self.host_slots(), "--map-by", "slot"]);
        }
        c.args(&self.mpirun_args);
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            c.arg("--allow-run-as-root");
        }
        if !self.gpus && std::env::var_os("OMP_NUM_THREADS").is_none() {
            c.args(["-x", &format!("OMP_NUM_THREADS={}", self.threads)]);
        }
        // Workers start with SIGUSR1 and SIGUSR2 ignored (an ignored signal
        // stays ignored across exec) until they install their handlers: a
        // stop forwarded while one is still loading libtorch must not kill it.
        c.args([
            "/bin/sh",
            "-c",
            "trap '' USR1 USR2; exec \"$@\"",
            "vae-worker",
        ])
        .arg(worker)
        .args(self.attempt_args(restart));
        c
    }

    /// The workers' arguments for an attempt. A restart continues from the
    /// newest intact checkpoint of the run: `--resume-if-present` (with
    /// `--resume-from X`, X is only where to start when the run has written
    /// none of its own yet; `--resume` already takes the newest intact one).
    pub fn attempt_args(&self, restart: bool) -> Vec<String> {
        let mut args = self.worker_args.clone();
        let has = |flag: &str| {
            self.worker_args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        if restart && !has("--resume") && !has("--resume-if-present") {
            args.push("--resume-if-present".into());
        }
        args
    }
}

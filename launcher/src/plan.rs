//! Planning a job before anything starts: the worker command line, the
//! config (validated here, so bad input fails before any worker starts), the
//! number of workers (one per visible GPU, or CPU workers), the run
//! directory (fixed up front, so a restart resumes it), and the `mpirun`
//! command that starts the workers.
use std::path::{Path, PathBuf};
use std::process::Command;

use vae_proto::cli::{self, parse_worker_args};
use vae_proto::config::{self, Config};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Usage(String),
}

/// What `--nproc-per-node` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nproc {
    Auto,
    Exactly(usize),
}

impl std::str::FromStr for Nproc {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Nproc::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Nproc::Exactly(n)),
            _ => Err(format!("expected a positive number or `auto`, got `{s}`")),
        }
    }
}

/// Devices this node can give workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Devices {
    pub gpus: usize,
    pub cores: usize,
}

/// Counts the GPUs this process may use: `CUDA_VISIBLE_DEVICES` when set,
/// else the `/dev/nvidiaN` device nodes.
pub fn detect_devices() -> Devices {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gpus = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => v
            .split(',')
            .filter(|s| !s.trim().is_empty() && s.trim() != "-1")
            .count(),
        Err(_) => std::fs::read_dir("/dev")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.strip_prefix("nvidia")
                            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
                    })
                    .count()
            })
            .unwrap_or(0),
    };
    Devices { gpus, cores }
}

/// A planned job.
#[derive(Debug)]
pub struct Plan {
    pub nproc: usize,
    pub gpus: bool,
    /// Intra-op threads per CPU worker.
    pub threads: usize,
    pub run_dir: PathBuf,
    /// `vae-worker` arguments, `--run-dir` included.
    pub worker_args: Vec<String>,
    pub config: Config,
}

/// Plans the job for `worker_args` (what follows `--`).
pub fn plan(nproc: Nproc, worker_args: &[String], devices: &Devices) -> Result<Plan, PlanError> {
    if worker_args.first().map(String::as_str) != Some("train") {
        return Err(PlanError::Usage(
            "expected the worker's `train` command after `--`, e.g. vae-launch -- train --config configs/mnist_vae.toml".into(),
        ));
    }
    // The worker's own parser reads the arguments the workers will get.
    let parsed = parse_worker_args(worker_args)
        .map_err(|e| PlanError::Usage(format!("worker arguments after `--`: {e}")))?;
    let cli::Command::Train(train) = parsed.command else {
        return Err(PlanError::Usage(
            "expected the worker's `train` command".into(),
        ));
    };
    let config = train.load_config()?;
    let gpus = devices.gpus > 0 && config.train.device != config::DeviceChoice::Cpu;
    let n = match nproc {
        Nproc::Exactly(n) => n,
        Nproc::Auto if gpus => devices.gpus,
        Nproc::Auto => 1,
    };
    if gpus && n > devices.gpus {
        return Err(PlanError::Usage(format!(
            "--nproc-per-node {n}: this node has {} GPU(s); one worker per GPU",
            devices.gpus
        )));
    }
    if !config.train.batch_size.is_multiple_of(n as u64) {
        return Err(PlanError::Usage(format!(
            "config key `train.batch_size`: {} does not divide by the {n} workers",
            config.train.batch_size
        )));
    }
    let mut args = worker_args.to_vec();
    let run_dir = train.run_dir_or_default();
    if train.run_dir.is_none() {
        args.push("--run-dir".into());
        args.push(run_dir.display().to_string());
    }
    let threads = if config.train.threads > 0 {
        config.train.threads as usize
    } else {
        (devices.cores / n).max(1)
    };
    Ok(Plan {
        nproc: n,
        gpus,
        threads,
        run_dir,
        worker_args: args,
        config,
    })
}

impl Plan {
    /// The `mpirun` command for one attempt; a `restart` continues from
    /// the latest checkpoint if there is one (`--resume-if-present`; the
    /// workers look, wherever `checkpoint.url` puts them).
    pub fn mpirun(&self, mpirun: &str, worker: &Path, restart: bool) -> Command {
        let mut c = Command::new(mpirun);
        c.args([
            "-np",
            &self.nproc.to_string(),
            "--tag-output",
            "--oversubscribe",
            "--bind-to",
            "none",
        ]);
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            c.arg("--allow-run-as-root");
        }
        if !self.gpus && std::env::var_os("OMP_NUM_THREADS").is_none() {
            c.args(["-x", &format!("OMP_NUM_THREADS={}", self.threads)]);
        }
        c.arg(worker).args(&self.worker_args);
        let resumes = self
            .worker_args
            .iter()
            .any(|a| a == "--resume" || a == "--resume-if-present");
        if restart && !resumes {
            c.arg("--resume-if-present");
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn auto_is_one_worker_per_gpu_or_one_cpu_worker() {
        let cpu = Devices { gpus: 0, cores: 8 };
        let p = plan(Nproc::Auto, &args("train --run-dir r"), &cpu).unwrap();
        assert_eq!((p.nproc, p.gpus, p.threads), (1, false, 8));
        let gpu = Devices { gpus: 4, cores: 16 };
        let p = plan(Nproc::Auto, &args("train --run-dir r"), &gpu).unwrap();
        assert_eq!((p.nproc, p.gpus), (4, true));
        let p = plan(Nproc::Exactly(2), &args("train --run-dir r"), &cpu).unwrap();
        assert_eq!((p.nproc, p.threads), (2, 4));
    }

    #[test]
    fn bad_input_fails_before_start() {
        let cpu = Devices { gpus: 0, cores: 2 };
        let e = plan(Nproc::Exactly(3), &args("train --run-dir r"), &cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.batch_size") && e.contains('3'), "{e}");
        let e = plan(Nproc::Auto, &args("train --set model.betta=1"), &cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("betta"), "{e}");
        let e = plan(Nproc::Auto, &args("export"), &cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("train"), "{e}");
        // The worker's own parser: what a worker would refuse, the plan refuses.
        let e = plan(Nproc::Auto, &args("train --confg c.toml"), &cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--confg") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn run_dir_is_fixed_up_front() {
        let cpu = Devices { gpus: 0, cores: 2 };
        let p = plan(Nproc::Auto, &args("train --set train.epochs=1"), &cpu).unwrap();
        assert!(p
            .worker_args
            .windows(2)
            .any(|w| w[0] == "--run-dir" && w[1] == p.run_dir.display().to_string()));
        let p = plan(Nproc::Auto, &args("train --run-dir=/x/y"), &cpu).unwrap();
        assert_eq!(p.run_dir, PathBuf::from("/x/y"));
    }
}

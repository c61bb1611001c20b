//! Planning a job before anything starts: the worker command line, the
//! config and the sweep (validated here, so bad input fails before any
//! worker starts), the hosts and the number of workers on each (one per
//! visible GPU, or CPU workers), the run directory (fixed up front, so a
//! restart resumes it), and the `mpirun` command that starts the workers.
use std::path::{Path, PathBuf};
use std::process::Command;

use vae_proto::cli::{self, parse_worker_args};
use vae_proto::config::{self, Config};
use vae_proto::sweep::Sweep;

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

/// What the launcher was asked for besides the worker's arguments.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `--sweep KEY=V1,V2,...` arguments, passed on to the workers.
    pub sweep: Vec<String>,
    pub ranks_per_point: Option<usize>,
    /// Hosts to run on (`--hosts` or `--hostfile`), each with
    /// `--nproc-per-node` workers; none: this machine.
    pub hosts: Vec<String>,
    /// Extra `mpirun` arguments (e.g. `--mca btl tcp,self`).
    pub mpirun_args: Vec<String>,
}

/// The host names in a hostfile: the first word of each line that is not
/// blank or a comment (`slots=` and the like are mpirun's business).
pub fn read_hostfile(path: &Path) -> Result<Vec<String>, PlanError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlanError::Usage(format!("--hostfile {}: {e}", path.display())))?;
    let hosts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    if hosts.is_empty() {
        return Err(PlanError::Usage(format!(
            "--hostfile {}: names no host",
            path.display()
        )));
    }
    Ok(hosts)
}

/// A planned job.
#[derive(Debug)]
pub struct Plan {
    /// Workers per host.
    pub nproc: usize,
    /// Hosts (empty: this machine); rank `r` runs on `hosts[r / nproc]`.
    pub hosts: Vec<String>,
    pub mpirun_args: Vec<String>,
    pub sweep: Option<Sweep>,
    pub gpus: bool,
    /// Intra-op threads per CPU worker.
    pub threads: usize,
    pub run_dir: PathBuf,
    /// `vae-worker` arguments, `--run-dir` included.
    pub worker_args: Vec<String>,
    pub config: Config,
}

/// Plans the job for `worker_args` (what follows `--`).
pub fn plan(
    nproc: Nproc,
    worker_args: &[String],
    devices: &Devices,
    req: &Request,
) -> Result<Plan, PlanError> {
    if worker_args.first().map(String::as_str) != Some("train") {
        return Err(PlanError::Usage(
            "expected the worker's `train` command after `--`, e.g. vae-launch -- train --config configs/mnist_vae.toml".into(),
        ));
    }
    let mut args = worker_args.to_vec();
    for s in &req.sweep {
        args.extend(["--sweep".to_string(), s.clone()]);
    }
    if let Some(r) = req.ranks_per_point {
        args.extend(["--ranks-per-point".to_string(), r.to_string()]);
    }
    // The worker's own parser reads the arguments the workers will get.
    let parsed = parse_worker_args(&args)
        .map_err(|e| PlanError::Usage(format!("worker arguments after `--`: {e}")))?;
    let cli::Command::Train(train) = parsed.command else {
        return Err(PlanError::Usage(
            "expected the worker's `train` command".into(),
        ));
    };
    let config = train.load_config()?;
    let sweep = train.sweep(&config)?;
    let gpus = devices.gpus > 0 && config.train.device != config::DeviceChoice::Cpu;
    let nodes = req.hosts.len().max(1);
    let n = match (nproc, &sweep) {
        (Nproc::Exactly(n), _) => n,
        (Nproc::Auto, _) if gpus => devices.gpus,
        // One group of ranks per point, on this machine.
        (Nproc::Auto, Some(s)) if req.hosts.is_empty() => s.points.len() * s.ranks_per_point,
        (Nproc::Auto, _) => 1,
    };
    if gpus && n > devices.gpus {
        return Err(PlanError::Usage(format!(
            "--nproc-per-node {n}: this node has {} GPU(s); one worker per GPU",
            devices.gpus
        )));
    }
    let ranks = n * nodes;
    match &sweep {
        Some(s) => {
            s.groups(ranks).map_err(PlanError::Usage)?;
        }
        None if !config.train.batch_size.is_multiple_of(ranks as u64) => {
            return Err(PlanError::Usage(format!(
                "config key `train.batch_size`: {} does not divide by the {ranks} workers",
                config.train.batch_size
            )));
        }
        None => {}
    }
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
        hosts: req.hosts.clone(),
        mpirun_args: req.mpirun_args.clone(),
        sweep,
        gpus,
        threads,
        run_dir,
        worker_args: args,
        config,
    })
}

impl Plan {
    /// Workers in all.
    pub fn ranks(&self) -> usize {
        self.nproc * self.hosts.len().max(1)
    }

    /// The host rank `r` runs on, when the job spans hosts.
    pub fn host_of(&self, rank: usize) -> Option<&str> {
        self.hosts.get(rank / self.nproc.max(1)).map(String::as_str)
    }

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
            let slots: Vec<String> = self
                .hosts
                .iter()
                .map(|h| format!("{h}:{}", self.nproc))
                .collect();
            c.args(["--host", &slots.join(","), "--map-by", "slot"]);
        }
        c.args(&self.mpirun_args);
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } == 0 {
            c.arg("--allow-run-as-root");
        }
        if !self.gpus && std::env::var_os("OMP_NUM_THREADS").is_none() {
            c.args(["-x", &format!("OMP_NUM_THREADS={}", self.threads)]);
        }
        c.arg(worker).args(&self.worker_args);
        let resumes = self.worker_args.iter().any(|a| a.starts_with("--resume"));
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
        let p = plan(
            Nproc::Auto,
            &args("train --run-dir r"),
            &cpu,
            &Request::default(),
        )
        .unwrap();
        assert_eq!((p.nproc, p.gpus, p.threads), (1, false, 8));
        let gpu = Devices { gpus: 4, cores: 16 };
        let p = plan(
            Nproc::Auto,
            &args("train --run-dir r"),
            &gpu,
            &Request::default(),
        )
        .unwrap();
        assert_eq!((p.nproc, p.gpus), (4, true));
        let p = plan(
            Nproc::Exactly(2),
            &args("train --run-dir r"),
            &cpu,
            &Request::default(),
        )
        .unwrap();
        assert_eq!((p.nproc, p.threads), (2, 4));
    }

    #[test]
    fn bad_input_fails_before_start() {
        let cpu = Devices { gpus: 0, cores: 2 };
        let e = plan(
            Nproc::Exactly(3),
            &args("train --run-dir r"),
            &cpu,
            &Request::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("train.batch_size") && e.contains('3'), "{e}");
        let e = plan(
            Nproc::Auto,
            &args("train --set model.betta=1"),
            &cpu,
            &Request::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("betta"), "{e}");
        let e = plan(Nproc::Auto, &args("export"), &cpu, &Request::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("train"), "{e}");
        // The worker's own parser: what a worker would refuse, the plan refuses.
        let e = plan(
            Nproc::Auto,
            &args("train --confg c.toml"),
            &cpu,
            &Request::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--confg") && !e.contains('\n'), "{e}");
    }

    #[test]
    fn a_sweep_plans_one_group_per_point_and_is_checked_before_start() {
        let cpu = Devices { gpus: 0, cores: 4 };
        let req = |sweep: &[&str], rpp| Request {
            sweep: sweep.iter().map(|s| s.to_string()).collect(),
            ranks_per_point: rpp,
            ..Request::default()
        };
        let p = plan(
            Nproc::Auto,
            &args("train --run-dir r"),
            &cpu,
            &req(&["model.beta=1,2,4"], Some(2)),
        )
        .unwrap();
        assert_eq!(
            (p.nproc, p.sweep.as_ref().map(|s| s.points.len())),
            (6, Some(3))
        );
        assert!(p
            .worker_args
            .windows(2)
            .any(|w| w[0] == "--sweep" && w[1] == "model.beta=1,2,4"));
        let e = plan(
            Nproc::Exactly(3),
            &args("train --run-dir r"),
            &cpu,
            &req(&["model.beta=1,2"], Some(2)),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ranks-per-point 2"), "{e}");
        let e = plan(
            Nproc::Auto,
            &args("train --run-dir r"),
            &cpu,
            &req(&["model.bta=1,2"], None),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bta"), "{e}");
        let e = plan(
            Nproc::Auto,
            &args("train --run-dir r"),
            &cpu,
            &req(&["model.beta=1,x"], None),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("model.beta"), "{e}");
        let e = plan(
            Nproc::Auto,
            &args("train --run-dir r --set train.batch_size=10"),
            &cpu,
            &req(&["model.beta=1,2"], Some(3)),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("train.batch_size"), "{e}");
    }

    #[test]
    fn hosts_get_nproc_workers_each() {
        let cpu = Devices { gpus: 0, cores: 2 };
        let req = Request {
            hosts: vec!["10.0.0.1".into(), "10.0.0.2".into()],
            ..Request::default()
        };
        let p = plan(Nproc::Exactly(1), &args("train --run-dir r"), &cpu, &req).unwrap();
        assert_eq!((p.ranks(), p.host_of(1)), (2, Some("10.0.0.2")));
        let c = p.mpirun("mpirun", Path::new("w"), false);
        let a: Vec<String> = c
            .get_args()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert!(
            a.windows(2)
                .any(|w| w[0] == "--host" && w[1] == "10.0.0.1:1,10.0.0.2:1"),
            "{a:?}"
        );
    }

    #[test]
    fn run_dir_is_fixed_up_front() {
        let cpu = Devices { gpus: 0, cores: 2 };
        let p = plan(
            Nproc::Auto,
            &args("train --set train.epochs=1"),
            &cpu,
            &Request::default(),
        )
        .unwrap();
        assert!(p
            .worker_args
            .windows(2)
            .any(|w| w[0] == "--run-dir" && w[1] == p.run_dir.display().to_string()));
        let p = plan(
            Nproc::Auto,
            &args("train --run-dir=/x/y"),
            &cpu,
            &Request::default(),
        )
        .unwrap();
        assert_eq!(p.run_dir, PathBuf::from("/x/y"));
    }
}

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
    /// Hosts to run on (`--hosts` or `--hostfile`), each with its `slots`
    /// or else `--nproc-per-node` workers; none: this machine.
    pub hosts: Vec<HostSpec>,
    /// Extra `mpirun` arguments (e.g. `--mca btl tcp,self`).
    pub mpirun_args: Vec<String>,
    /// Elastic hosts: the world size is the largest the hosts' slots hold
    /// that the job accepts, rather than all their slots.
    pub elastic: bool,
}

/// A host to run on, and how many workers it takes (`None`: `--nproc-per-node`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    pub name: String,
    pub slots: Option<usize>,
}

fn positive_slots(v: &str) -> Option<usize> {
    v.parse().ok().filter(|n| *n > 0)
}

/// `--hosts` entries: `name` or `name:N` (N workers there, as mpirun's `--host`).
pub fn parse_hosts(list: &[String]) -> Result<Vec<HostSpec>, PlanError> {
    list.iter()
        .map(|h| match h.rsplit_once(':') {
            Some((name, n)) if !name.is_empty() && !name.ends_with(':') => {
                let slots = positive_slots(n).ok_or_else(|| {
                    PlanError::Usage(format!(
                        "--hosts {h}: `{n}` is not a positive number of workers"
                    ))
                })?;
                Ok(HostSpec {
                    name: name.to_string(),
                    slots: Some(slots),
                })
            }
            _ => Ok(HostSpec {
                name: h.clone(),
                slots: None,
            }),
        })
        .collect()
}

/// The hosts of a hostfile (mpirun's format): the first word of each line
/// that is not blank or a comment, with its `slots=N` when it says one.
pub fn read_hostfile(path: &Path) -> Result<Vec<HostSpec>, PlanError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlanError::Usage(format!("--hostfile {shown}: {e}")))?;
    let mut hosts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let mut slots = None;
        for w in words {
            if let Some(v) = w.strip_prefix("slots=") {
                slots = Some(positive_slots(v).ok_or_else(|| {
                    PlanError::Usage(format!(
                        "--hostfile {shown} line {}: slots=`{v}` is not a positive number",
                        i + 1
                    ))
                })?);
            }
        }
        hosts.push(HostSpec {
            name: name.to_string(),
            slots,
        });
    }
    if hosts.is_empty() {
        return Err(PlanError::Usage(format!(
            "--hostfile {shown}: names no host"
        )));
    }
    Ok(hosts)
}

/// A planned job.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Workers per host (this machine's, or a host's without `slots`).
    pub nproc: usize,
    /// Hosts (empty: this machine), each with `workers[i]` consecutive ranks.
    pub hosts: Vec<String>,
    pub workers: Vec<usize>,
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
    let ranks = if req.hosts.is_empty() {
        n
    } else {
        req.hosts.iter().map(|h| h.slots.unwrap_or(n)).sum()
    };
    match &sweep {
        _ if req.elastic => {}
        Some(s) => {
            s.groups(ranks).map_err(PlanError::Usage)?;
        }
        None => config.check_world(ranks)?,
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
    let plan = Plan {
        nproc: n,
        hosts: req.hosts.iter().map(|h| h.name.clone()).collect(),
        workers: req.hosts.iter().map(|h| h.slots.unwrap_or(n)).collect(),
        mpirun_args: req.mpirun_args.clone(),
        sweep,
        gpus,
        threads,
        run_dir,
        worker_args: args,
        config,
    };
    if !req.elastic {
        return Ok(plan);
    }
    plan.on_hosts(&req.hosts).ok_or_else(|| {
        PlanError::Usage(format!(
            "no world size up to the {ranks} slots of the hosts divides the job (train.batch_size {}, or the sweep's groups)",
            plan.config.train.batch_size
        ))
    })
}

impl Plan {
    /// Whether the job can run on `ranks` workers (the batch divides among
    /// them; a sweep's groups fill them).
    pub fn accepts(&self, ranks: usize) -> bool {
        match &self.sweep {
            Some(s) => s.groups(ranks).is_ok(),
            None => self.config.check_world(ranks).is_ok(),
        }
    }

    /// The same job on `hosts`: the largest world size their slots hold
    /// that the job accepts (the global batch stays the same), spread over
    /// them; hosts left without a worker are left out. `None`: no world
    /// size fits.
    pub fn on_hosts(&self, hosts: &[HostSpec]) -> Option<Plan> {
        let capacity: Vec<usize> = hosts
            .iter()
            .map(|h| h.slots.unwrap_or(self.nproc))
            .collect();
        let workers = crate::elastic::fit(&capacity, &|w| self.accepts(w))?;
        let (hosts, workers) = hosts
            .iter()
            .zip(workers)
            .filter(|(_, n)| *n > 0)
            .map(|(h, n)| (h.name.clone(), n))
            .unzip();
        Some(Plan {
            hosts,
            workers,
            ..self.clone()
        })
    }

    /// The hosts with their workers, `a:2,b:2` (mpirun's `--host`).
    pub fn host_slots(&self) -> String {
        let slots: Vec<String> = self
            .hosts
            .iter()
            .zip(&self.workers)
            .map(|(h, n)| format!("{h}:{n}"))
            .collect();
        slots.join(",")
    }

    /// Workers in all.
    pub fn ranks(&self) -> usize {
        if self.hosts.is_empty() {
            self.nproc
        } else {
            self.workers.iter().sum()
        }
    }

    /// The host rank `r` runs on, when the job spans hosts.
    pub fn host_of(&self, rank: usize) -> Option<&str> {
        let mut first = 0;
        for (h, n) in self.hosts.iter().zip(&self.workers) {
            if rank < first + n {
                return Some(h);
            }
            first += n;
        }
        None
    }

    /// The host of every rank, in rank order (empty on this machine alone).
    pub fn rank_hosts(&self) -> Vec<String> {
        (0..self.ranks())
            .filter_map(|r| self.host_of(r).map(str::to_string))
            .collect()
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
            hosts: parse_hosts(&["10.0.0.1".into(), "10.0.0.2".into()]).unwrap(),
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
    fn a_hostfile_s_slots_are_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hosts");
        std::fs::write(
            &f,
            "# two hosts\na slots=3\nb   # default\nc slots=1 max_slots=4\n",
        )
        .unwrap();
        let hosts = read_hostfile(&f).unwrap();
        let cpu = Devices { gpus: 0, cores: 2 };
        let req = Request {
            hosts,
            ..Request::default()
        };
        let p = plan(
            Nproc::Exactly(2),
            &args("train --run-dir r --set train.batch_size=120"),
            &cpu,
            &req,
        )
        .unwrap();
        assert_eq!(p.ranks(), 6);
        assert_eq!(p.rank_hosts(), ["a", "a", "a", "b", "b", "c"]);
        let a: Vec<String> = p
            .mpirun("mpirun", Path::new("w"), false)
            .get_args()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert!(
            a.windows(2)
                .any(|w| w[0] == "--host" && w[1] == "a:3,b:2,c:1"),
            "{a:?}"
        );
        std::fs::write(&f, "a slots=x\n").unwrap();
        let e = read_hostfile(&f).unwrap_err().to_string();
        assert!(e.contains("slots=") && e.contains("line 1"), "{e}");
        assert_eq!(
            parse_hosts(&["h:4".into()]).unwrap()[0],
            HostSpec {
                name: "h".into(),
                slots: Some(4)
            }
        );
        assert!(parse_hosts(&["h:0".into()]).is_err());
    }

    #[test]
    fn on_fewer_hosts_the_job_keeps_its_batch_and_a_sweep_its_groups() {
        let cpu = Devices { gpus: 0, cores: 2 };
        let host = |n: &str, s| HostSpec {
            name: n.into(),
            slots: Some(s),
        };
        let req = Request {
            hosts: vec![host("a", 2), host("b", 2), host("c", 2)],
            elastic: true,
            ..Request::default()
        };
        // 6 slots, batch 64: 4 workers, one host in turn.
        let p = plan(Nproc::Exactly(2), &args("train --run-dir r"), &cpu, &req).unwrap();
        assert_eq!(
            (p.hosts.clone(), p.workers.clone()),
            (vec!["a".into(), "b".into(), "c".into()], vec![2, 1, 1])
        );
        let left = p.on_hosts(&[host("a", 2), host("c", 1)]).unwrap();
        assert_eq!(
            (left.hosts, left.workers),
            (vec!["a".into(), "c".into()], vec![1, 1])
        );
        let sweep = Request {
            sweep: vec!["model.beta=1,2".into()],
            ranks_per_point: Some(2),
            ..req
        };
        let p = plan(Nproc::Exactly(2), &args("train --run-dir r"), &cpu, &sweep).unwrap();
        assert_eq!(p.ranks(), 6);
        let left = p.on_hosts(&[host("a", 2), host("b", 1)]).unwrap();
        assert_eq!(left.ranks(), 2, "groups of --ranks-per-point 2");
        assert!(p.on_hosts(&[host("a", 1)]).is_none());
    }

    #[test]
    fn a_restart_continues_from_the_run_s_newest_checkpoint() {
        let cpu = Devices { gpus: 0, cores: 2 };
        let p = |a: &str| plan(Nproc::Auto, &args(a), &cpu, &Request::default()).unwrap();
        let fresh = p("train --run-dir r");
        assert!(!fresh
            .attempt_args(false)
            .contains(&"--resume-if-present".to_string()));
        assert!(fresh
            .attempt_args(true)
            .contains(&"--resume-if-present".to_string()));
        // --resume-from X: a restart prefers the run's own newest checkpoint,
        // X only while the run has none.
        let from = p("train --run-dir r --resume-from /x/step-0000000010");
        let again = from.attempt_args(true);
        assert!(
            again.contains(&"--resume-if-present".to_string()),
            "{again:?}"
        );
        assert!(parse_worker_args(&again).is_ok(), "{again:?}");
        let resume = p("train --run-dir r --resume");
        assert!(!resume
            .attempt_args(true)
            .contains(&"--resume-if-present".to_string()));
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

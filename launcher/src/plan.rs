//! Planning a job before anything starts: the worker command line, the
//! config and the sweep (validated here, so bad input fails before any
//! worker starts), the hosts and the number of workers on each (one per
//! visible GPU, or CPU workers), the run directory (fixed up front, so a
//! restart resumes it); the `mpirun` command is [`crate::mpirun`]'s.
use std::path::PathBuf;

use vae_proto::cli::{self, parse_worker_args};
use vae_proto::config::{self, Config};
use vae_proto::sweep::Sweep;

use crate::devices::{Devices, Nproc};
pub use crate::error::PlanError;
use crate::hosts::HostSpec;

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

/// The workers' arguments (the launcher's `--sweep` and
/// `--ranks-per-point` added), read by the worker's own parser.
fn worker_command(
    worker_args: &[String],
    req: &Request,
) -> Result<(Vec<String>, cli::TrainCmd), PlanError> {
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
    let parsed = parse_worker_args(&args)
        .map_err(|e| PlanError::Usage(format!("worker arguments after `--`: {e}")))?;
    match parsed.command {
        cli::Command::Train(train) => Ok((args, train)),
        _ => Err(PlanError::Usage(
            "expected the worker's `train` command".into(),
        )),
    }
}

/// Workers on this node: `--nproc-per-node`, or one per GPU, or a sweep's
/// groups on this machine, or one CPU worker.
fn workers_per_node(
    nproc: Nproc,
    devices: &Devices,
    gpus: bool,
    sweep: &Option<Sweep>,
    req: &Request,
) -> Result<usize, PlanError> {
    let n = match (nproc, sweep) {
        (Nproc::Exactly(n), _) => n,
        (Nproc::Auto, _) if gpus => devices.gpus,
        // One group of ranks per point on this machine, up to one per core
        // (a study of hundreds of points is handed out to the groups).
        (Nproc::Auto, Some(s)) if req.hosts.is_empty() => {
            s.points.len().min(devices.cores).max(1) * s.ranks_per_point
        }
        (Nproc::Auto, _) => 1,
    };
    if gpus && n > devices.gpus {
        return Err(PlanError::Usage(format!(
            "--nproc-per-node {n}: this node has {} GPU(s); one worker per GPU",
            devices.gpus
        )));
    }
    Ok(n)
}

/// Plans the job for `worker_args` (what follows `--`).
pub fn plan(
    nproc: Nproc,
    worker_args: &[String],
    devices: &Devices,
    req: &Request,
) -> Result<Plan, PlanError> {
    let (mut args, train) = worker_command(worker_args, req)?;
    let config = train.load_config()?;
    let sweep = train.sweep(&config)?;
    let gpus = devices.gpus > 0 && config.train.device != config::DeviceChoice::Cpu;
    let n = workers_per_node(nproc, devices, gpus, &sweep, req)?;
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

    /// The largest world size up to `slots` that [`Plan::accepts`]: the
    /// largest divisor of the global batch, or of a sweep the largest
    /// multiple of its ranks per point.
    pub fn largest_world(&self, slots: usize) -> Option<usize> {
        let w = match &self.sweep {
            Some(s) => slots - slots % s.ranks_per_point.max(1),
            None => crate::hosts::largest_divisor(self.config.train.batch_size, slots)?,
        };
        (w > 0 && self.accepts(w)).then_some(w)
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
        let workers = crate::hosts::fit(&capacity, &|slots| self.largest_world(slots))?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::{parse_hosts, read_hostfile};
    use std::path::Path;

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
        // A study of more points than cores: one group per core.
        let many = plan(
            Nproc::Auto,
            &args("train --run-dir r"),
            &cpu,
            &req(&["train.seed=1..50"], None),
        )
        .unwrap();
        assert_eq!(many.nproc, 4);
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

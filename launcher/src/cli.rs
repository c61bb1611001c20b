//! `vae-launch [--nproc-per-node N|auto] [--max-restarts K] [--sweep KEY=V,...]
//! [--hosts H,H | --hostfile F | --host-discovery SCRIPT] [--min-hosts K]
//! -- train ...`: the command line ([`Cli`]) and what it runs: the hosts,
//! the plan, the checks before any worker starts, the supervised job; its
//! exit status is the job's.
use std::path::PathBuf;

use crate::devices::{detect_devices, Nproc};
use crate::elastic::{self, Elastic};
use crate::error::PlanError;
use crate::hosts::{parse_hosts, read_hostfile, HostSpec};
use crate::{plan, preflight};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "vae-launch",
    version,
    about = "Start and supervise data-parallel vae-worker jobs through mpirun"
)]
pub struct Cli {
    /// Workers on this node: `auto` = one per visible GPU, or one CPU worker.
    #[arg(long, default_value = "auto")]
    nproc_per_node: Nproc,
    /// Restarts from the latest checkpoint after a failure.
    #[arg(long, default_value_t = 0)]
    max_restarts: u32,
    /// The mpirun to use.
    #[arg(long, default_value = "mpirun")]
    mpirun: String,
    /// The worker binary (default: vae-worker next to vae-launch).
    #[arg(long)]
    worker: Option<PathBuf>,
    /// Sweep a config key over values as one job, e.g. --sweep model.beta=1,2,4,8
    /// (repeatable: the Cartesian product; adds to the config's [sweep]).
    #[arg(long = "sweep", value_name = "KEY=V1,V2,...")]
    sweep: Vec<String>,
    /// Ranks training each point of a sweep (default: the config's, 1).
    #[arg(long)]
    ranks_per_point: Option<usize>,
    /// Hosts to run on, comma-separated: `name` (--nproc-per-node workers) or `name:N`.
    #[arg(long, value_delimiter = ',', conflicts_with = "hostfile")]
    hosts: Vec<String>,
    /// A file of hosts (one per line, mpirun's format); `slots=N` gives a host N
    /// workers, else it gets --nproc-per-node.
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// An extra argument for mpirun, e.g. --mpirun-arg=--mca --mpirun-arg=btl_tcp_if_include
    /// --mpirun-arg=10.0.0.0/24 (repeatable).
    #[arg(long = "mpirun-arg", allow_hyphen_values = true)]
    mpirun_args: Vec<String>,
    /// Elastic: after a failure, drop the hosts that do not answer (or failed
    /// twice in a row) and go on while at least this many remain.
    #[arg(long)]
    min_hosts: Option<usize>,
    /// Elastic: a script printing the hosts now available, `host:slots` per
    /// line (Horovod's convention), polled every few seconds; a new host
    /// joins at the next checkpoint. Replaces --hosts/--hostfile.
    #[arg(long, conflicts_with_all = ["hosts", "hostfile"])]
    host_discovery: Option<PathBuf>,
    /// Elastic: seconds a host that stopped answering rests before it may
    /// join again (doubled each time the same host is dropped, up to 16x;
    /// its failures are remembered meanwhile).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    host_cool_down: f64,
    /// The worker's arguments: `train --config FILE [--set KEY=VALUE]...`.
    #[arg(last = true, required = true)]
    worker_args: Vec<String>,
}

/// The elastic request, when `--min-hosts` or `--host-discovery` is given.
fn elastic(cli: &Cli) -> Result<Option<Elastic>, String> {
    if cli.min_hosts.is_none() && cli.host_discovery.is_none() {
        return Ok(None);
    }
    if cli.host_discovery.is_none() && cli.hosts.is_empty() && cli.hostfile.is_none() {
        return Err("--min-hosts needs hosts: --hosts, --hostfile or --host-discovery".into());
    }
    if cli.min_hosts == Some(0) {
        return Err("--min-hosts 0: at least one host must remain".into());
    }
    let cool_down = std::time::Duration::try_from_secs_f64(cli.host_cool_down)
        .ok()
        .filter(|d| d.as_secs() <= 86_400)
        .ok_or_else(|| {
            format!(
                "--host-cool-down {}: not a number of seconds from 0 to 86400",
                cli.host_cool_down
            )
        })?;
    Ok(Some(Elastic {
        min_hosts: cli.min_hosts.unwrap_or(1),
        discovery: cli.host_discovery.clone(),
        agent: elastic::rsh_agent(&cli.mpirun_args),
        cool_down,
    }))
}

/// The hosts to start on (`--hostfile`, `--hosts`, or what the discovery
/// script lists) and the elastic request, if any.
fn hosts_of(cli: &Cli) -> Result<(Vec<HostSpec>, Option<Elastic>), PlanError> {
    let hosts = match &cli.hostfile {
        Some(f) => read_hostfile(f)?,
        None => parse_hosts(&cli.hosts)?,
    };
    let elastic = elastic(cli).map_err(PlanError::Usage)?;
    let hosts = match &elastic {
        Some(e) => e.initial_hosts(hosts)?,
        None => hosts,
    };
    Ok((hosts, elastic))
}

/// Runs the parsed command line; the exit status.
pub fn run(cli: Cli) -> std::process::ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        vae_proto::errln!(
            "vae-launch: error: {}",
            vae_proto::redact::redact(&e.to_string())
        );
        std::process::ExitCode::from(2)
    };
    let (hosts, elastic) = match hosts_of(&cli) {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let members = crate::members::Members::new(hosts.clone());
    let req = plan::Request {
        sweep: cli.sweep.clone(),
        ranks_per_point: cli.ranks_per_point,
        hosts,
        mpirun_args: cli.mpirun_args.clone(),
        elastic: elastic.is_some(),
    };
    let plan = match plan::plan(
        cli.nproc_per_node,
        &cli.worker_args,
        &detect_devices(),
        &req,
    ) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let worker = cli.worker.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("vae-worker")))
            .unwrap_or_else(|| PathBuf::from("vae-worker"))
    });
    if !worker.is_file() {
        return fail(&format!(
            "worker binary {} not found (build it, or pass --worker)",
            worker.display()
        ));
    }
    // From here a signal asks the job to stop (it is not the launcher's
    // death during the checks: a job stopped that early starts, checkpoints
    // after its first step and ends, as one stopped a moment later would).
    let signals = match crate::supervise::watch() {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot watch signals: {e}")),
    };
    // The dataset and what a resume starts from, checked here before any
    // worker starts (on this machine's view of paths: a job on other hosts
    // is checked by its workers).
    if plan.hosts.iter().all(|h| preflight::is_this_host(h)) {
        if let Err(line) = preflight::check_with(&worker, &plan) {
            vae_proto::console::err(&line);
            return std::process::ExitCode::from(2);
        }
    }
    match crate::supervise::run(
        &plan,
        &cli.mpirun,
        &worker,
        cli.max_restarts,
        elastic.as_ref().map(|e| (e, members)),
        signals,
    ) {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => fail(&format!("{e:#}")),
    }
}

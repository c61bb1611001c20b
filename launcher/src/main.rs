//! `vae-launch [--nproc-per-node N|auto] [--max-restarts K] -- train ...`:
//! parses the command line, plans, runs, and exits with the job's status.
use std::path::PathBuf;

use clap::Parser;
use vae_launch::plan::{self, Nproc};

#[derive(Parser)]
#[command(
    name = "vae-launch",
    version,
    about = "Start and supervise data-parallel vae-worker jobs through mpirun"
)]
struct Cli {
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
    /// The worker's arguments: `train --config FILE [--set KEY=VALUE]...`.
    #[arg(last = true, required = true)]
    worker_args: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("vae-launch: error: {e}");
        std::process::ExitCode::from(2)
    };
    let plan = match plan::plan(
        cli.nproc_per_node,
        &cli.worker_args,
        &plan::detect_devices(),
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
    match vae_launch::supervise::run(&plan, &cli.mpirun, &worker, cli.max_restarts) {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => fail(&format!("{e:#}")),
    }
}

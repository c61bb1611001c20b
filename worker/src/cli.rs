//! Runs a parsed `vae-worker` command line (its types are in
//! `vae_proto::cli`, shared with the launcher): each command is handed to
//! the module that does it.
use anyhow::Context;
use vae_proto::cli::{Command, DataCommand, PrepareDataset, TrainCmd, WorkerCli};

use crate::comm;
use crate::signals::StopFlag;
use crate::train::{self, TrainArgs};

/// Runs the parsed command line.
pub fn run(cli: WorkerCli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(cmd) => train(cmd),
        Command::Data {
            command: DataCommand::Prepare { dataset },
        } => prepare(dataset),
        Command::Data {
            command:
                DataCommand::Read {
                    config,
                    set,
                    epochs,
                },
        } => {
            let cmd = TrainCmd {
                config,
                set,
                run_dir: None,
                resume: false,
                resume_if_present: false,
            };
            let cfg = cmd.load_config()?;
            let r = train::feed::read_throughput(&cfg, epochs)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Command::Eval(cmd) => {
            let figures = crate::evaluate::run(cmd)?;
            println!("{}", serde_json::to_string_pretty(&figures)?);
            Ok(())
        }
        Command::Export(cmd) => {
            let step = crate::export::export(&cmd.checkpoint, &cmd.out)?;
            println!("wrote the weights of step {step} to {}", cmd.out.display());
            Ok(())
        }
    }
}

/// `vae-worker train`: joins the job (MPI, device, NCCL) and trains.
fn train(cmd: TrainCmd) -> anyhow::Result<()> {
    let config = cmd.load_config()?;
    let run_dir = cmd.run_dir_or_default();
    let stop = StopFlag::install();
    let conn = comm::connect(config.train.device, config.dist.backend)?;
    let comm = conn.comm();
    let args = TrainArgs {
        config,
        run_dir,
        resume: cmd.resume(),
        device: conn.device,
        stop,
    };
    match train::run(args, comm) {
        Ok(Some(summary)) if comm.rank() == 0 => println!(
            "done: step {}, test loss {:.4} (recon {:.4}, kl {:.4})",
            summary.step, summary.test_loss, summary.test_recon, summary.test_kl
        ),
        Ok(_) => {}
        // Under MPI the job must end here, before MPI is finalised (which
        // would wait for the other ranks forever).
        Err(e) if comm.world_size() > 1 => {
            eprintln!("vae-worker: error: rank {}: {e:#}", comm.rank());
            comm::abort_job(1);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// `vae-worker data prepare mnist|dsprites`.
fn prepare(dataset: PrepareDataset) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (m, out) = match dataset {
        PrepareDataset::Dsprites {
            out,
            scales,
            orientations,
            positions,
            shard_size,
            test_samples,
        } => {
            let sub = crate::data::dsprites::Subsample {
                keep: [None, scales, orientations, positions, positions],
            };
            let m = crate::data::dsprites::prepare(&out, &sub, shard_size, test_samples)?;
            (m, out)
        }
        PrepareDataset::Mnist {
            idx_dir,
            out,
            shard_size,
        } => {
            let m = crate::data::prepare_mnist(&idx_dir, &out, shard_size)
                .with_context(|| format!("preparing MNIST from {}", idx_dir.display()))?;
            (m, out)
        }
    };
    let counts: Vec<String> = m
        .splits
        .iter()
        .map(|(k, s)| format!("{k} {}", s.samples))
        .collect();
    println!(
        "wrote {} ({}) to {out} in {:.1} s",
        m.name,
        counts.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

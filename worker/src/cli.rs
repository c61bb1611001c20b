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
                resume_from: None,
                sweep: vec![],
                ranks_per_point: None,
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
        Command::Info { json } => {
            let info = crate::info::gather();
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                crate::info::lines(&info)
                    .iter()
                    .for_each(|l| println!("{l}"));
            }
            Ok(())
        }
        Command::Export(cmd) => {
            let step = crate::export::export(&cmd.checkpoint, &cmd.out)?;
            println!("wrote the weights of step {step} to {}", cmd.out.display());
            Ok(())
        }
    }
}

/// `vae-worker train`: joins the job (MPI, device, NCCL) and trains — one
/// run, or a sweep's points in groups of ranks.
fn train(cmd: TrainCmd) -> anyhow::Result<()> {
    let config = cmd.load_config()?;
    let sweep = cmd.sweep(&config)?;
    let run_dir = cmd.run_dir_or_default();
    let stop = StopFlag::install();
    let rpp = sweep.as_ref().map(|s| s.ranks_per_point);
    let conn = comm::connect(config.train.device, config.dist.backend, rpp)?;
    let secs = std::time::Duration::from_secs_f64;
    let (timeout, wait) = (config.dist.timeout_s, config.dist.wait_timeout_s);
    crate::watchdog::start(conn.world().rank(), secs(timeout), secs(wait));
    let bf16 = config.train.precision == vae_proto::config::Precision::Bf16;
    if bf16
        && conn.device == tch::Device::Cpu
        && conn.world().rank() == 0
        && !crate::info::cpu_has_bf16()
    {
        eprintln!("note: train.precision = \"bf16\" on a CPU without bf16 instructions (AVX-512 BF16 / AMX): emulated, several times slower than fp32");
    }
    let outcome = match sweep {
        Some(sweep) => {
            let csv = run_dir.join("sweep.csv");
            crate::sweep::run(crate::sweep::SweepArgs {
                base: config,
                sweep,
                origin: cmd.origin(),
                run_dir,
                device: conn.device,
                stop,
                world: conn.world(),
                group: conn.comm(),
            })
            .map(|r| {
                r.map(|rows| {
                    format!(
                        "sweep done: {} points, results in {}",
                        rows.len(),
                        csv.display()
                    )
                })
            })
        }
        None => train::run(
            TrainArgs {
                config,
                run_dir,
                resume: cmd.resume(),
                device: conn.device,
                stop,
                hparams: None,
            },
            conn.comm(),
        )
        .map(|s| {
            s.map(|s| {
                format!(
                    "done: step {}, test loss {:.4} (recon {:.4}, kl {:.4})",
                    s.step, s.test_loss, s.test_recon, s.test_kl
                )
            })
        }),
    };
    crate::watchdog::finish();
    let world = conn.world();
    match outcome {
        Ok(Some(line)) if world.rank() == 0 => println!("{line}"),
        Ok(_) => {}
        // Under MPI the job must end here, before MPI is finalised (which
        // would wait for the other ranks forever).
        Err(e) if world.world_size() > 1 => {
            eprintln!("vae-worker: error: rank {}: {e:#}", world.rank());
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

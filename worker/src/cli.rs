//! Runs a parsed `vae-worker` command line (its types are in
//! `vae_proto::cli`, shared with the launcher): each command is handed to
//! the module that does it.
use anyhow::Context;
use vae_proto::cli::{Command, DataCommand, PrepareDataset, TrainCmd, WorkerCli};

use vae_proto::redact::redact;

use std::time::Duration;

use crate::comm;
use crate::signals::StopFlag;
use crate::train::{self, TrainArgs};
use crate::watchdog;

/// Runs the parsed command line.
pub fn run(cli: WorkerCli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(cmd) => {
            crate::alloc::keep_freed_memory();
            train(cmd)
        }
        Command::Data {
            command: DataCommand::Prepare { dataset },
        } => {
            prepare(dataset)?;
            end_now()
        }
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
                check: false,
            };
            let cfg = cmd.load_config()?;
            let r = train::feed::read_throughput(&cfg, epochs)?;
            vae_proto::outln!("{}", redact(&serde_json::to_string(&r)?));
            Ok(())
        }
        Command::Eval(cmd) => {
            crate::alloc::keep_freed_memory();
            let figures = crate::evaluate::run(cmd)?;
            vae_proto::outln!("{}", serde_json::to_string_pretty(&figures)?);
            Ok(())
        }
        Command::Info { json } => {
            let info = crate::info::gather();
            if json {
                vae_proto::outln!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                crate::info::lines(&info)
                    .iter()
                    .for_each(|l| vae_proto::outln!("{l}"));
            }
            Ok(())
        }
        Command::Export(cmd) => {
            let step = crate::export::export(&cmd.checkpoint, &cmd.out)?;
            vae_proto::outln!("wrote the weights of step {step} to {}", cmd.out.display());
            Ok(())
        }
    }
}

/// Ends the process at once, with status 0, its work written and closed:
/// libtorch's static destructors (0.17 s, longer than a small import) are
/// skipped. Only for commands that hold no device, no MPI and no writer
/// once they return (`data prepare`).
fn end_now() -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process; nothing of it is used afterwards.
    unsafe { libc::_exit(0) }
}

/// The watchdog's limits for a run of `config`: its `[dist]` timeouts, and
/// in `shard` order (the only one that fetches while training) the time the
/// storage may spend retrying a shard.
fn limits(config: &vae_proto::config::Config) -> watchdog::Limits {
    let secs = Duration::from_secs_f64;
    let fetch_bound = match config.data.order {
        vae_proto::config::DataOrder::Shard => {
            secs(config.storage.retry_timeout_s) + secs(config.storage.timeout_s)
        }
        vae_proto::config::DataOrder::Global => Duration::ZERO,
    };
    watchdog::Limits {
        timeout: secs(config.dist.timeout_s),
        wait_timeout: secs(config.dist.wait_timeout_s),
        fetch_bound,
    }
}

/// `vae-worker train`: joins the job (MPI, device, NCCL), checks that every
/// rank trains the same thing, and trains — one run, or a sweep's points in
/// groups of ranks. The watchdog runs from before MPI starts, so a rank
/// that fails or hangs in set-up ends the job too.
fn train(cmd: TrainCmd) -> anyhow::Result<()> {
    let config = cmd.load_config()?;
    let sweep = cmd.sweep(&config)?;
    // Before MPI, a device or the run directory: a mistake is one line
    // and leaves nothing behind.
    crate::check::before_training(&cmd, &config, sweep.as_ref(), comm::env_rank())?;
    if cmd.check {
        return Ok(());
    }
    let stop = StopFlag::install();
    watchdog::start(comm::env_rank(), limits(&config));
    let setting_up = watchdog::phase(watchdog::Phase::SetUp);
    crate::train::faults::setup_hang();
    let rpp = sweep.as_ref().map(|s| s.ranks_per_point);
    let conn = comm::connect(config.train.device, config.dist.backend, rpp)?;
    watchdog::set_rank(conn.world().rank());
    // One run directory for the whole job: rank 0's default name (each
    // rank's clock would name its own).
    let run_dir = comm::from_rank0(conn.world(), cmd.run_dir_or_default())?;
    let axes = sweep.as_ref().map(|s| s.worker_args().join(" "));
    crate::agree::check(conn.world(), &config, axes.as_deref().unwrap_or(""))?;
    drop(setting_up);
    let bf16 = config.train.precision == vae_proto::config::Precision::Bf16;
    if bf16
        && conn.device == tch::Device::Cpu
        && conn.world().rank() == 0
        && !crate::info::cpu_has_bf16()
    {
        vae_proto::errln!("note: train.precision = \"bf16\" on a CPU without bf16 instructions (AVX-512 BF16 / AMX): emulated, several times slower than fp32");
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
    let world = conn.world();
    match outcome {
        Ok(Some(line)) if world.rank() == 0 => vae_proto::outln!("{line}"),
        Ok(_) => {}
        // Under MPI the job must end here, before MPI is finalised (which
        // would wait for the other ranks forever).
        Err(e) if world.world_size() > 1 => {
            vae_proto::errln!(
                "vae-worker: error: rank {}: {}",
                world.rank(),
                redact(&format!("{e:#}"))
            );
            comm::abort_job(1);
        }
        Err(e) => return Err(e.into()),
    }
    watchdog::finish();
    comm::finalize(conn);
    Ok(())
}

/// `vae-worker data prepare mnist|dsprites`.
fn prepare(dataset: PrepareDataset) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (m, out) = match dataset {
        PrepareDataset::Dsprites {
            out,
            from: Some(from),
            shard_size,
            test_samples,
            ..
        } => {
            let input = crate::data::import::local_input(&from, &Default::default())?;
            let m =
                crate::data::import::dsprites::import(&input.path, &out, shard_size, test_samples)?;
            (m, out)
        }
        PrepareDataset::Dsprites {
            out,
            from: None,
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
        PrepareDataset::Shapes3d {
            from,
            out,
            shard_size,
            test_samples,
        } => {
            let input = crate::data::import::local_input(&from, &Default::default())?;
            let m =
                crate::data::import::shapes3d::import(&input.path, &out, shard_size, test_samples)?;
            (m, out)
        }
        PrepareDataset::Mpi3d {
            from,
            out,
            factor_sizes,
            shard_size,
            test_samples,
        } => {
            let input = crate::data::import::local_input(&from, &Default::default())?;
            let m = crate::data::import::mpi3d::import(
                &input.path,
                &out,
                &factor_sizes,
                shard_size,
                test_samples,
            )?;
            (m, out)
        }
        PrepareDataset::Images {
            from,
            out,
            size,
            crop,
            channels,
            test_fraction,
            shard_size,
        } => {
            if channels == 2 || !(0.0..1.0).contains(&test_fraction) || size == 0 {
                anyhow::bail!("--channels takes 1 or 3, --test-fraction a share in [0, 1), --size a positive side");
            }
            let o = crate::data::import::images::Options {
                size,
                crop,
                channels,
                test_fraction,
                shard_samples: shard_size,
            };
            let r = crate::data::import::images::import(&from, &out, &o, &Default::default())?;
            if !r.skipped.is_empty() {
                let names: Vec<String> = (r.skipped.iter().take(20))
                    .map(|(k, why)| format!("{k} ({why})"))
                    .collect();
                vae_proto::errln!(
                    "skipped {} image{}: {}{}",
                    r.skipped.len(),
                    if r.skipped.len() == 1 { "" } else { "s" },
                    names.join(", "),
                    if r.skipped.len() > 20 { ", …" } else { "" }
                );
            }
            (r.manifest, out)
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
    vae_proto::outln!(
        "wrote {} ({}) to {} in {:.1} s",
        m.name,
        counts.join(", "),
        redact(&out),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

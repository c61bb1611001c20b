//! Runs a parsed `vae-worker` command line (its types are in
//! `vae_proto::cli`, shared with the launcher): each command is handed to
//! the module that does it.
use vae_proto::cli::{Command, DataCommand, StudyCommand, TrainCmd, WorkerCli};

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
            command: DataCommand::Prepare { dataset, overwrite },
        } => {
            crate::prepare::prepare(dataset, overwrite)?;
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
        Command::Study {
            command: StudyCommand::Report { runs, out },
        } => {
            let out = out.unwrap_or_else(|| runs[0].join("report"));
            let w = crate::study::report(&runs, &out)?;
            vae_proto::outln!(
                "study report: {} models, {} figures: {}",
                w.models,
                w.figures,
                w.index.display()
            );
            Ok(())
        }
        Command::Encode(cmd) => encode(&cmd),
        Command::Export(cmd) => {
            let step = crate::export::export(&cmd.checkpoint, &cmd.out)?;
            vae_proto::outln!("wrote the weights of step {step} to {}", cmd.out.display());
            Ok(())
        }
    }
}

/// `vae-worker encode`: joins the job (MPI under an MPI launcher), encodes
/// this rank's shards, and rank 0 says what was written.
fn encode(cmd: &vae_proto::cli::EncodeCmd) -> anyhow::Result<()> {
    use vae_proto::config::{Backend, DeviceChoice};
    let conn = comm::connect(DeviceChoice::Auto, Backend::Mpi, None)?;
    let e = crate::encode::run(cmd, conn.world(), conn.device)?;
    if conn.world().rank() == 0 {
        let counts: Vec<String> = e.samples.iter().map(|(k, n)| format!("{n} {k}")).collect();
        vae_proto::outln!(
            "encoded {} samples (μ and log σ² of {} dimensions each) into {}",
            counts.join(" + "),
            e.latent,
            e.url
        );
    }
    comm::finalize(conn);
    Ok(())
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

/// `vae-worker train`: checks what it can before anything starts, joins
/// the job (MPI, device, NCCL), checks that every rank trains the same
/// thing, and trains — one run, or a sweep's points in groups of ranks. The
/// watchdog runs from before MPI starts, so a rank that fails or hangs in
/// set-up ends the job too.
fn train(cmd: TrainCmd) -> anyhow::Result<()> {
    let config = cmd.load_config()?;
    let sweep = cmd.sweep(&config)?;
    // Before MPI, a device or the run directory: a mistake is one line
    // and leaves nothing behind.
    let rank = vae_proto::console::env_rank();
    crate::check::before_training(&cmd, &config, sweep.as_ref(), rank)?;
    if cmd.check {
        return Ok(());
    }
    let stop = StopFlag::install();
    watchdog::start(rank, limits(&config));
    let setting_up = watchdog::phase(watchdog::Phase::SetUp);
    crate::faults::setup_hang();
    let rpp = sweep.as_ref().map(|s| s.ranks_per_point);
    let conn = comm::connect(config.train.device, config.dist.backend, rpp)?;
    watchdog::set_rank(conn.world().rank());
    // One run directory for the whole job: rank 0's default name (each
    // rank's clock would name its own).
    let run_dir = crate::collective::from_rank0(conn.world(), cmd.run_dir_or_default())?;
    let axes = sweep.as_ref().map(|s| s.worker_args().join(" "));
    crate::agree::check(conn.world(), &config, axes.as_deref().unwrap_or(""))?;
    drop(setting_up);
    note_emulated_bf16(&config, &conn);
    let job = Job {
        resume: cmd.resume(),
        origin: cmd.origin(),
        config,
        run_dir,
        stop,
    };
    let outcome = match sweep {
        Some(sweep) => run_sweep(job, sweep, &conn),
        None => run_one(job, &conn),
    };
    end(outcome, conn)
}

/// What a training job runs, once joined.
struct Job {
    config: vae_proto::config::Config,
    run_dir: std::path::PathBuf,
    resume: vae_proto::cli::Resume,
    origin: String,
    stop: StopFlag,
}

/// A note when bf16 runs emulated on this CPU (rank 0).
fn note_emulated_bf16(config: &vae_proto::config::Config, conn: &comm::Connection) {
    let bf16 = config.train.precision == vae_proto::config::Precision::Bf16;
    if bf16
        && conn.device == tch::Device::Cpu
        && conn.world().rank() == 0
        && !crate::info::cpu_has_bf16()
    {
        vae_proto::errln!("note: train.precision = \"bf16\" on a CPU without bf16 instructions (AVX-512 BF16 / AMX): emulated, several times slower than fp32");
    }
}

/// A sweep's points in groups of ranks; its last line.
fn run_sweep(
    job: Job,
    sweep: vae_proto::sweep::Sweep,
    conn: &comm::Connection,
) -> Result<Option<String>, train::TrainError> {
    let csv = job.run_dir.join("sweep.csv");
    let rows = crate::sweep::run(crate::sweep::SweepArgs {
        base: job.config,
        sweep,
        origin: job.origin,
        run_dir: job.run_dir,
        device: conn.device,
        stop: job.stop,
        world: conn.world(),
        group: conn.comm(),
    })?;
    Ok(rows.map(|rows| {
        format!(
            "sweep done: {} points, results in {}",
            rows.len(),
            csv.display()
        )
    }))
}

/// One run; its last line.
fn run_one(job: Job, conn: &comm::Connection) -> Result<Option<String>, train::TrainError> {
    let args = TrainArgs {
        config: job.config,
        run_dir: job.run_dir,
        resume: job.resume,
        device: conn.device,
        stop: job.stop,
        hparams: None,
    };
    let summary = train::run(args, conn.comm())?;
    Ok(summary.map(|s| {
        format!(
            "done: step {}, test loss {:.4} (recon {:.4}, kl {:.4})",
            s.step, s.test_loss, s.test_recon, s.test_kl
        )
    }))
}

/// The end of a job: its last line (rank 0), or its error — under MPI the
/// job must end there, before MPI is finalised (which would wait for the
/// other ranks forever).
fn end(
    outcome: Result<Option<String>, train::TrainError>,
    conn: comm::Connection,
) -> anyhow::Result<()> {
    let world = conn.world();
    match outcome {
        Ok(Some(line)) if world.rank() == 0 => vae_proto::outln!("{line}"),
        Ok(_) => {}
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
    // Finalising waits for every other rank: timed like any wait for
    // another rank, so one stopped at the very end (kill -STOP) ends the
    // job (the launcher's restart finds the run complete) instead of
    // holding it forever.
    crate::faults::stop_at_end();
    let waiting = watchdog::phase(watchdog::Phase::Waiting);
    comm::finalize(conn);
    drop(waiting);
    watchdog::finish();
    Ok(())
}

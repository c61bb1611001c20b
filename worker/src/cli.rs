//! The `vae-worker` command line: `train`, `data prepare mnist`, `export`.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::comm::{self, Comm, Dist, Single};
use crate::signals::StopFlag;
use crate::train::{self, TrainArgs};

use vae_proto::config::{DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};

#[derive(Parser)]
#[command(
    name = "vae-worker",
    version,
    about = "Train VAEs on libtorch: one worker process"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a model (the built-in MNIST VAE config when no --config is given).
    Train {
        /// TOML config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config key, e.g. --set model.beta=4 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Run directory (default: runs/<config name>-<unix time>).
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Continue from the latest checkpoint in --run-dir.
        #[arg(long, requires = "run_dir")]
        resume: bool,
    },
    /// Prepare datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Evaluate a checkpoint: test loss, KL, TC, active units, discriminator
    /// accuracy, and disentanglement metrics on data with known factors.
    Eval {
        /// A checkpoint directory, or a run directory (its latest checkpoint).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Metrics, comma-separated: factorvae, mig, betavae (default: the run's eval.metrics).
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        /// Scale of the metrics' sample counts (1 = the published 10,000 / 5,000).
        #[arg(long)]
        scale: Option<f64>,
        /// Override a key of the run's config, e.g. --set data.url=... (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where to write the JSON (default: <run-dir>/eval-step-<N>.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a checkpoint's weights as safetensors under PyTorch state_dict names.
    Export {
        /// A checkpoint directory, or a run directory (its latest checkpoint).
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum DataCommand {
    /// Convert a dataset into the project's format.
    Prepare {
        #[command(subcommand)]
        dataset: PrepareDataset,
    },
}

#[derive(Subcommand)]
pub enum PrepareDataset {
    /// dSprites, generated (all 737,280 images, or a subset for small runs).
    Dsprites {
        /// Where to write: a file:// URL or a path.
        #[arg(long)]
        out: String,
        /// Keep this many evenly spaced scales (of 6).
        #[arg(long)]
        scales: Option<usize>,
        /// Keep this many evenly spaced orientations (of 40).
        #[arg(long)]
        orientations: Option<usize>,
        /// Keep this many evenly spaced positions per axis (of 32).
        #[arg(long)]
        positions: Option<usize>,
        /// Samples per shard.
        #[arg(long, default_value_t = 32_768)]
        shard_size: usize,
        /// Images in the `test` split (a fixed random subset of the images).
        #[arg(long, default_value_t = 10_000)]
        test_samples: usize,
    },
    /// MNIST from its original IDX files.
    Mnist {
        /// Directory with train-images-idx3-ubyte, t10k-labels-idx1-ubyte, ...
        #[arg(long)]
        idx_dir: PathBuf,
        /// Where to write: a file:// URL or a path.
        #[arg(long)]
        out: String,
        /// Samples per shard.
        #[arg(long, default_value_t = 10_000)]
        shard_size: usize,
    },
}

fn default_run_dir(config: Option<&PathBuf>) -> PathBuf {
    let stem = config
        .and_then(|p| p.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mnist_vae".into());
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{stem}-{secs}"))
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train {
            config,
            set,
            run_dir,
            resume,
        } => {
            let cfg = match &config {
                Some(path) => vae_proto::config::load(path, &set)?,
                None => vae_proto::config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, &set)?,
            };
            let run_dir = run_dir.unwrap_or_else(|| default_run_dir(config.as_ref()));
            let stop = StopFlag::install();
            let mut dist = if comm::launched_by_mpi() {
                Some(Dist::init()?)
            } else {
                None
            };
            let local_rank = dist.as_ref().map_or(0, |d| d.local_rank());
            let device = train::pick_device(cfg.train.device, local_rank)?;
            // Checked here too for a worker outside MPI, which has no Dist.
            comm::uses_nccl(cfg.dist.backend, device).map_err(anyhow::Error::msg)?;
            if let Some(d) = dist.as_mut() {
                d.setup_backend(cfg.dist.backend, device)?;
            }
            let comm: &dyn Comm = match &dist {
                Some(d) => d,
                None => &Single,
            };
            if comm.rank() == 0 {
                println!(
                    "run directory: {} ({} worker{}, {device:?}, gradients over {})",
                    run_dir.display(),
                    comm.world_size(),
                    if comm.world_size() == 1 { "" } else { "s" },
                    comm.backend()
                );
            }
            let args = TrainArgs {
                config: cfg,
                run_dir,
                resume,
                device,
                stop,
            };
            match train::run(args, comm) {
                Ok(Some(summary)) if comm.rank() == 0 => println!(
                    "done: step {}, test loss {:.4} (recon {:.4}, kl {:.4})",
                    summary.step, summary.test_loss, summary.test_recon, summary.test_kl
                ),
                Ok(_) => {}
                // Under MPI the job must end here, before MPI is finalised
                // (which would wait for the other ranks forever).
                Err(e) if comm.world_size() > 1 => {
                    eprintln!("vae-worker: error: rank {}: {e:#}", comm.rank());
                    comm::abort_job(1);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::Data {
            command: DataCommand::Prepare { dataset },
        } => match dataset {
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
                let started = std::time::Instant::now();
                let m = crate::data::dsprites::prepare(&out, &sub, shard_size, test_samples)?;
                let counts: Vec<String> = m
                    .splits
                    .iter()
                    .map(|(k, s)| format!("{k} {}", s.samples))
                    .collect();
                println!(
                    "wrote dsprites ({}) to {out} in {:.1} s",
                    counts.join(", "),
                    started.elapsed().as_secs_f64()
                );
            }
            PrepareDataset::Mnist {
                idx_dir,
                out,
                shard_size,
            } => {
                let m = crate::data::prepare_mnist(&idx_dir, &out, shard_size)
                    .with_context(|| format!("preparing MNIST from {}", idx_dir.display()))?;
                let counts: Vec<String> = m
                    .splits
                    .iter()
                    .map(|(k, s)| format!("{k} {}", s.samples))
                    .collect();
                println!("wrote {} ({}) to {out}", m.name, counts.join(", "));
            }
        },
        Command::Eval {
            checkpoint,
            metrics,
            scale,
            set,
            out,
        } => {
            let figures = train::eval_checkpoint(train::EvalArgs {
                checkpoint,
                metrics,
                scale,
                set,
                out,
            })?;
            println!("{}", serde_json::to_string_pretty(&figures)?);
        }
        Command::Export { checkpoint, out } => {
            let step = crate::export::export(&checkpoint, &out)?;
            println!("wrote the weights of step {step} to {}", out.display());
        }
    }
    Ok(())
}

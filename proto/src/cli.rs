//! The `vae-worker` command line as types (clap). The worker runs them; the
//! launcher parses the arguments it passes on to the workers with the same
//! parser, so both read `--config`, `--set` and `--run-dir` identically.
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigError};

#[derive(Parser, Debug)]
#[command(
    name = "vae-worker",
    version,
    about = "Train VAEs on libtorch: one worker process"
)]
pub struct WorkerCli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model (the built-in MNIST VAE config when no --config is given).
    Train(TrainCmd),
    /// Prepare datasets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Evaluate a checkpoint: test loss, KL, TC, active units, discriminator
    /// accuracy, and disentanglement metrics on data with known factors.
    Eval(EvalCmd),
    /// Write a checkpoint's weights as safetensors under PyTorch state_dict names.
    Export(ExportCmd),
    /// Encode a dataset: every sample's μ and log σ² (and its targets) as a
    /// dataset of codes, data-parallel over the job's ranks.
    Encode(EncodeCmd),
    /// Studies (sweeps of several grids): their report.
    Study {
        #[command(subcommand)]
        command: StudyCommand,
    },
    /// What this worker runs on: CUDA devices, the NCCL libtorch loaded
    /// (version, file, copies), CPU bf16 support.
    Info {
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone, Debug)]
pub struct TrainCmd {
    /// TOML config file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a config key, e.g. --set model.beta=4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run directory (default: runs/<config name>-<unix time>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue from the latest checkpoint (in --run-dir, or checkpoint.url).
    #[arg(long, requires = "run_dir")]
    pub resume: bool,
    /// Continue from the run's newest intact checkpoint if there is one,
    /// else start the run — or, with --resume-from, start from that
    /// checkpoint (what vae-launch passes when it restarts a failed job).
    #[arg(long, requires = "run_dir", conflicts_with = "resume")]
    pub resume_if_present: bool,
    /// Continue from this checkpoint (a path or URL; damage is an error),
    /// writing new checkpoints where the run keeps them.
    #[arg(
        long,
        value_name = "CHECKPOINT",
        requires = "run_dir",
        conflicts_with = "resume"
    )]
    pub resume_from: Option<String>,
    /// Sweep a config key over values, e.g. --sweep model.beta=1,2,4,8
    /// (repeatable: the Cartesian product; adds to the config's [sweep]).
    #[arg(long = "sweep", value_name = "KEY=V1,V2,...")]
    pub sweep: Vec<String>,
    /// Ranks training each point of a sweep (default: the config's, 1).
    #[arg(long)]
    pub ranks_per_point: Option<usize>,
    /// Check the config, the dataset(s) and what a resume starts from, then
    /// exit without creating anything (vae-launch does this before it
    /// starts the workers).
    #[arg(long)]
    pub check: bool,
}

/// Whether a run continues from a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// A fresh run; existing checkpoints are an error.
    No,
    /// Continue from the latest checkpoint (or, when it is damaged, the
    /// newest intact one); none is an error.
    Yes,
    /// Continue from the latest checkpoint if there is one.
    IfPresent,
    /// Continue from this checkpoint; damage is an error.
    From(String),
    /// Continue from the run's newest intact checkpoint when it has one,
    /// else from this checkpoint (a restart after `--resume-from`).
    LatestOr(String),
}

impl TrainCmd {
    /// Where the config comes from, for messages.
    pub fn origin(&self) -> String {
        self.config
            .as_ref()
            .map_or(config::DEFAULT_CONFIG_NAME.to_string(), |p| {
                p.display().to_string()
            })
    }

    /// The sweep this command asks for (its `--sweep` and the config's
    /// `[sweep]`), checked, if any.
    pub fn sweep(&self, cfg: &Config) -> Result<Option<crate::sweep::Sweep>, ConfigError> {
        crate::sweep::Sweep::plan(cfg, &self.sweep, self.ranks_per_point, &self.origin())
    }

    /// The config file (or the built-in default) with the `--set` overrides, validated.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        match &self.config {
            Some(path) => config::load(path, &self.set),
            None => config::parse(
                config::DEFAULT_CONFIG,
                config::DEFAULT_CONFIG_NAME,
                &self.set,
            ),
        }
    }

    pub fn resume(&self) -> Resume {
        match (self.resume, self.resume_if_present, &self.resume_from) {
            (_, true, Some(spec)) => Resume::LatestOr(spec.clone()),
            (_, _, Some(spec)) => Resume::From(spec.clone()),
            (true, _, _) => Resume::Yes,
            (_, true, _) => Resume::IfPresent,
            _ => Resume::No,
        }
    }

    /// `--run-dir`, or `runs/<config name>-<unix time>` when none was given.
    pub fn run_dir_or_default(&self) -> PathBuf {
        if let Some(d) = &self.run_dir {
            return d.clone();
        }
        let stem = self
            .config
            .as_deref()
            .and_then(Path::file_stem)
            .map_or("mnist_vae".to_string(), |s| {
                s.to_string_lossy().into_owned()
            });
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(format!("{stem}-{secs}"))
    }
}

#[derive(Args, Clone, Debug)]
pub struct EvalCmd {
    /// A checkpoint, a checkpoints directory or a run directory (then its
    /// latest checkpoint); a path or an object-store URL.
    #[arg(long)]
    pub checkpoint: String,
    /// Metrics, comma-separated: factorvae, mig, betavae, dci, sap,
    /// modularity, unsupervised, unsupervised_sampled, irs (default: the
    /// run's eval.metrics).
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// Scale of the metrics' sample counts (1 = the published 10,000 / 5,000).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Also the importance-weighted bound of the test log-likelihood with K
    /// samples per test sample (Burda et al. 2016), beside the ELBO.
    #[arg(long, value_name = "K")]
    pub iwae: Option<u32>,
    /// The dataset to evaluate on, a path or URL (default: the checkpoint's
    /// `data.url`, read with this command's storage settings).
    #[arg(long, value_name = "URL")]
    pub data: Option<String>,
    /// Override a key of the run's config, e.g. --set eval.scale=0.5, or set
    /// how to reach storage, e.g. --set storage.endpoint=... (repeatable).
    /// Storage settings come from here and the environment only, never from
    /// the checkpoint.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Where to write the JSON (default: <run-dir>/eval-step-<N>-<metrics>-scale<S>-<id>.json,
    /// named by what it computed).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct EncodeCmd {
    /// A checkpoint, a checkpoints directory or a run directory (then its
    /// latest checkpoint); a path or an object-store URL.
    #[arg(long)]
    pub checkpoint: String,
    /// The dataset to encode, a path or URL (default: the checkpoint's `data.url`).
    #[arg(long, value_name = "URL")]
    pub data: Option<String>,
    /// Where to write the codes: a path or an object-store URL (a new dataset).
    #[arg(long, value_name = "URL")]
    pub out: String,
    /// How to reach storage, e.g. --set storage.endpoint=... (repeatable;
    /// never from the checkpoint).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Args, Clone, Debug)]
pub struct ExportCmd {
    /// A checkpoint, a checkpoints directory or a run directory (then its
    /// latest checkpoint); a path or an object-store URL.
    #[arg(long)]
    pub checkpoint: String,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum StudyCommand {
    /// Figures and a page (`index.html`) from the `study.csv` of one or
    /// more studies (datasets side by side): metric agreement, scores per
    /// method, seed against hyperparameter, unsupervised model selection.
    Report {
        /// The studies' run directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where to write (default: the first run's `report/`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Convert a dataset into the project's format. The import is staged
    /// inside the output and published whole (manifest last); an output
    /// that holds a dataset is refused without --overwrite.
    Prepare {
        /// Replace the dataset the output holds (what only its manifest
        /// named is removed once the new one is published).
        #[arg(long, global = true)]
        overwrite: bool,
        #[command(subcommand)]
        dataset: PrepareDataset,
    },
    /// Read the training data as one worker of a run with this config would
    /// (order, storage, prefetch, cache) without training, and print the
    /// samples per second delivered.
    Read {
        /// TOML config file (default: the built-in one).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config key, e.g. --set data.url=s3://bucket/mnist (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Epochs to read.
        #[arg(long, default_value_t = 1)]
        epochs: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum PrepareDataset {
    /// dSprites: generated (all 737,280 images, or a subset for small runs),
    /// or imported from the real file (`--from dsprites_ndarray_…_64x64.npz`).
    Dsprites {
        /// Where to write: a path or a URL.
        #[arg(long)]
        out: String,
        /// The real dSprites `.npz` (a path or URL) instead of the generator.
        #[arg(long, value_name = "FILE.npz", conflicts_with_all = ["scales", "orientations", "positions"])]
        from: Option<String>,
        /// Keep this many evenly spaced scales (of 6).
        #[arg(long)]
        scales: Option<usize>,
        /// Keep this many evenly spaced orientations (of 40, over [0, 2π)
        /// without repeating the full turn).
        #[arg(long)]
        orientations: Option<usize>,
        /// Keep this many evenly spaced positions per axis (of 32).
        #[arg(long)]
        positions: Option<usize>,
        /// Samples per shard.
        #[arg(long, default_value_t = 32_768)]
        shard_size: usize,
        #[command(flatten)]
        split: FactorSplit,
    },
    /// Images: a folder or bucket prefix of PNG/JPEG files, or WebDataset
    /// tar shards (`s3://bucket/celeba/shard-{000000..000099}.tar`).
    Images {
        /// A folder, a bucket prefix, or tar shards with brace ranges.
        #[arg(long)]
        from: String,
        /// Where to write: a path or a URL.
        #[arg(long)]
        out: String,
        /// Side of the square images stored.
        #[arg(long, default_value_t = 64)]
        size: u32,
        /// Centre crop to this side first (CelebA's usual 148).
        #[arg(long)]
        crop: Option<u32>,
        /// 3 (RGB) or 1 (grey).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
        channels: u8,
        /// The share of samples in the test split (chosen by a hash of each key).
        #[arg(long, default_value_t = 0.05)]
        test_fraction: f64,
        /// Samples per shard.
        #[arg(long, default_value_t = 10_000)]
        shard_size: usize,
    },
    /// 3dshapes from its `.h5` (`images` uint8 (N, 64, 64, 3), `labels`
    /// float64 (N, 6), gzip chunks).
    Shapes3d {
        /// The `.h5` (a path or URL).
        #[arg(long, value_name = "FILE.h5")]
        from: String,
        /// Where to write: a path or a URL.
        #[arg(long)]
        out: String,
        /// Samples per shard.
        #[arg(long, default_value_t = 10_000)]
        shard_size: usize,
        #[command(flatten)]
        split: FactorSplit,
    },
    /// MPI3D from its `.npz` (`images` uint8 (N, 64, 64, 3), every factor
    /// combination in row-major order), streamed.
    Mpi3d {
        /// The `.npz` (a path or URL).
        #[arg(long, value_name = "FILE.npz")]
        from: String,
        /// Where to write: a path or a URL.
        #[arg(long)]
        out: String,
        /// Values per factor (object_color, object_shape, object_size,
        /// camera_height, background_color, horizontal_axis, vertical_axis).
        #[arg(long, value_delimiter = ',', default_value = "6,6,2,3,3,40,40")]
        factor_sizes: Vec<usize>,
        /// Samples per shard.
        #[arg(long, default_value_t = 10_000)]
        shard_size: usize,
        #[command(flatten)]
        split: FactorSplit,
    },
    /// SmallNORB from its `smallnorb-5x…x96x96-{training,testing}-{dat,cat,info}.mat`
    /// files (NORB's binary matrices), camera 0 resized to 64×64 with
    /// Pillow's Lanczos as disentanglement_lib does; factors category,
    /// instance (a nuisance the metrics draw at random), elevation,
    /// azimuth, lighting.
    Smallnorb {
        /// The folder (a path or a bucket prefix) holding the files.
        #[arg(long, value_name = "DIR")]
        from: String,
        /// Where to write: a path or a URL.
        #[arg(long)]
        out: String,
        /// Which of the files' halves to read: `training`, `testing`, or both
        /// (`training,testing`: every instance, as disentanglement_lib).
        #[arg(long, value_delimiter = ',', default_value = "training,testing")]
        chunks: Vec<String>,
        /// Which camera of the stereo pair (0 as disentanglement_lib, or 1).
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
        camera: u8,
        /// Samples per shard.
        #[arg(long, default_value_t = 10_000)]
        shard_size: usize,
        #[command(flatten)]
        split: FactorSplit,
    },
    /// Cars3D from the Reed et al. release's `*.mat` files (MATLAB v5, one per
    /// car: `im` uint8 128×128×3×24×4), resized to 64×64 with Pillow's
    /// Lanczos; factors elevation, azimuth, object (the files in name order).
    Cars3d {
        /// The folder (a path or a bucket prefix) holding the `.mat` files.
        #[arg(long, value_name = "DIR")]
        from: String,
        /// Where to write: a path or a URL.
        #[arg(long)]
        out: String,
        /// Samples per shard.
        #[arg(long, default_value_t = 10_000)]
        shard_size: usize,
        #[command(flatten)]
        split: FactorSplit,
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

/// How a factor dataset's test split is made.
#[derive(Args, Clone, Debug, PartialEq)]
pub struct FactorSplit {
    /// Images in the `test` split: a fixed random subset of the grid, which
    /// the train split keeps whole (disentanglement_lib's way).
    #[arg(long, default_value_t = 10_000)]
    pub test_samples: usize,
    /// Hold this share of the grid out of the train split as the test split
    /// (instead of --test-samples): test figures on unseen combinations.
    #[arg(long, conflicts_with = "test_samples", value_parser = share)]
    pub test_fraction: Option<f64>,
}

/// A share in (0, 1).
fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("`{s}` is not a share in (0, 1)")),
    }
}

/// Parses the worker arguments `args` (without the program name) as
/// `vae-worker` would; the error is clap's message on one line (its first
/// paragraph, without the usage text).
pub fn parse_worker_args(args: &[String]) -> Result<WorkerCli, String> {
    let argv = std::iter::once("vae-worker".to_string()).chain(args.iter().cloned());
    WorkerCli::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let first: Vec<&str> = text
            .lines()
            .map(str::trim)
            .take_while(|l| !l.is_empty())
            .collect();
        let line = first.join(" ");
        line.strip_prefix("error: ").unwrap_or(&line).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn train_arguments_parse_in_both_spellings() {
        let cli = parse_worker_args(&args(
            "train --config c.toml --set a=1 --set=b=2 --run-dir=/r --resume",
        ))
        .unwrap();
        let Command::Train(t) = cli.command else {
            panic!("not train")
        };
        assert_eq!(t.config, Some(PathBuf::from("c.toml")));
        assert_eq!(t.set, vec!["a=1", "b=2"]);
        assert_eq!(t.run_dir_or_default(), PathBuf::from("/r"));
        assert!(t.resume);
    }

    #[test]
    fn the_default_run_dir_is_named_after_the_config() {
        let cli = parse_worker_args(&args("train --config configs/x_vae.toml")).unwrap();
        let Command::Train(t) = cli.command else {
            panic!("not train")
        };
        let d = t.run_dir_or_default().display().to_string();
        assert!(d.starts_with("runs/x_vae-"), "{d}");
    }

    #[test]
    fn unknown_arguments_are_one_line() {
        let e = parse_worker_args(&args("train --bogus")).unwrap_err();
        assert!(e.contains("--bogus") && !e.contains('\n'), "{e}");
        let e = parse_worker_args(&args("train --resume")).unwrap_err();
        assert!(e.contains("--run-dir"), "{e}");
    }
}

//! The run config: TOML parsed into serde structs that reject unknown keys
//! ([`RawConfig`]), `--set a.b=value` overrides applied on the TOML tree before
//! parsing, and validation into [`Config`], the type the code uses. Every error
//! names the key (or the file) it is about.
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The disentanglement metrics `eval.metrics` may name (the worker's
/// registry, `disentanglement::REGISTRY`, has these, in this order).
pub const METRICS: [&str; 7] = [
    "factorvae",
    "mig",
    "betavae",
    "dci",
    "sap",
    "modularity",
    "unsupervised",
];

/// The built-in default job: pytorch/examples' MNIST VAE.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/mnist_vae.toml");
/// How messages name [`DEFAULT_CONFIG`].
pub const DEFAULT_CONFIG_NAME: &str = "built-in configs/mnist_vae.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("--set {arg}: {message}")]
    Override { arg: String, message: String },
}

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// pytorch/examples `vae/main.py`: 784-400-20, layers fc1, fc21, fc22, fc3, fc4.
    Mlp,
    /// 4×4 stride-2 convolutions and their mirror transposed convolutions.
    Conv,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Conv => "conv",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    /// recon + β·KL (+ γ·squared error): VAE (β = 1) and β-VAE.
    Vae,
    /// Controlled-capacity β-VAE (Burgess et al. 2018): recon + w·|KL̄ − C|
    /// with KL̄ the mean KL over the global batch, C rising linearly from 0
    /// to `capacity_max` over `capacity_steps`.
    Capacity,
    /// FactorVAE (Kim & Mnih 2018): recon + KL + γ·TC, TC from a discriminator.
    Factor,
    /// β-TCVAE (Chen et al. 2018): recon + MI + β·TC + dimension-wise KL,
    /// with minibatch-weighted sampling over the global batch.
    Btcvae,
    /// DIP-VAE-I (Kumar et al. 2018): recon + KL + λ_od·Σ off-diagonal² +
    /// λ_d·Σ (diagonal − 1)² of the covariance of μ over the global batch.
    #[serde(rename = "dip_i")]
    DipI,
    /// DIP-VAE-II: the same on the covariance of z, E[diag σ²] + Cov(μ).
    #[serde(rename = "dip_ii")]
    DipIi,
}

impl ObjectiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectiveKind::Vae => "vae",
            ObjectiveKind::Capacity => "capacity",
            ObjectiveKind::Factor => "factor",
            ObjectiveKind::Btcvae => "btcvae",
            ObjectiveKind::DipI => "dip_i",
            ObjectiveKind::DipIi => "dip_ii",
        }
    }

    /// The smallest global batch it is defined on: 2 where the codes of a
    /// batch are compared with each other (FactorVAE's permutation,
    /// β-TCVAE's sampling, DIP-VAE's covariance).
    pub fn min_global_batch(self) -> u64 {
        match self {
            ObjectiveKind::Vae | ObjectiveKind::Capacity => 1,
            ObjectiveKind::Factor
            | ObjectiveKind::Btcvae
            | ObjectiveKind::DipI
            | ObjectiveKind::DipIi => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Likelihood {
    /// Binary cross-entropy on logits; pixels in [0, 1].
    Bernoulli,
    /// Sum of squared errors between the pixels and sigmoid(logits).
    Gaussian,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataOrder {
    /// A permutation of all samples per epoch, split into global batches.
    Global,
    /// Whole shards dealt to ranks per epoch, shuffled in a bounded buffer.
    Shard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Auto,
    Nccl,
    Mpi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Float32,
    /// For numerical checks: float rounding then no longer hides differences.
    Float64,
}

/// The arithmetic of matmuls and convolutions (mixed precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    /// bf16 matmuls and convolutions; fp32 master weights, activations,
    /// losses, reductions and Adam.
    Bf16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    Cpu,
    Cuda,
}

/// The config file as written. Every section and key has a default, so a file
/// only says what differs; unknown keys are errors.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub model: ModelSection,
    pub discriminator: DiscriminatorSection,
    pub eval: EvalSection,
    pub data: DataSection,
    pub train: TrainSection,
    pub optim: OptimSection,
    pub checkpoint: CheckpointSection,
    pub early_stopping: EarlyStoppingSection,
    pub dist: DistSection,
    pub log: LogSection,
    pub storage: StorageSection,
    pub sweep: SweepSection,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    pub kind: ModelKind,
    pub latent_dim: i64,
    /// MLP: the hidden layer's width. Conv: width of an optional dense layer
    /// between the convolutions and the latent heads (0 = none).
    pub hidden_dim: i64,
    /// Conv: output channels of each 4×4 stride-2 convolution.
    pub conv_channels: Vec<i64>,
    /// Conv: a ReLU after the decoder's first layer (`fc_z`, from the code
    /// back to the convolutions' shape); `false` leaves it linear, as
    /// seed 002's model (`configs/celeba_conv_vae.toml`) is written.
    pub fc_z_relu: bool,
    pub likelihood: Likelihood,
    /// Weight of the KL term (β-VAE); 1 is the plain VAE.
    pub beta: f64,
    /// Weight γ of the extra reconstruction term: the squared error between the
    /// pixels and the decoder's mean, added to the likelihood term.
    pub gamma: f64,
    pub objective: ObjectiveKind,
    /// `factor`: γ, the weight of the discriminator's TC estimate.
    /// `btcvae`: β, the weight of the total correlation.
    pub tc_weight: f64,
    /// `capacity`: C_max in nats, the steps over which C rises to it, and the
    /// weight of |KL − C|.
    pub capacity_max: f64,
    pub capacity_steps: u64,
    pub capacity_weight: f64,
    /// DIP-VAE: λ_od, the weight of the covariance's off-diagonal entries.
    pub dip_lambda_od: f64,
    /// DIP-VAE: λ_d, the weight of its diagonal's distance from 1 (absent:
    /// disentanglement_lib's 10·λ_od for DIP-VAE-I, λ_od for DIP-VAE-II).
    pub dip_lambda_d: Option<f64>,
}

impl ModelSection {
    /// DIP-VAE's λ_d, given or derived as disentanglement_lib derives it.
    pub fn dip_lambda_d(&self) -> f64 {
        self.dip_lambda_d.unwrap_or(match self.objective {
            ObjectiveKind::DipI => 10.0 * self.dip_lambda_od,
            _ => self.dip_lambda_od,
        })
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            kind: ModelKind::Mlp,
            latent_dim: 20,
            hidden_dim: 400,
            conv_channels: vec![32, 64, 128],
            fc_z_relu: true,
            likelihood: Likelihood::Bernoulli,
            beta: 1.0,
            gamma: 0.0,
            objective: ObjectiveKind::Vae,
            tc_weight: 1.0,
            capacity_max: 25.0,
            capacity_steps: 100_000,
            capacity_weight: 1000.0,
            dip_lambda_od: 10.0,
            dip_lambda_d: None,
        }
    }
}

/// FactorVAE's discriminator and its optimizer (Kim & Mnih 2018: 6 hidden
/// layers of 1000 units, LeakyReLU(0.2); Adam lr 1e-4, betas (0.5, 0.9)).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscriminatorSection {
    pub hidden: i64,
    pub layers: u64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
}

impl Default for DiscriminatorSection {
    fn default() -> Self {
        DiscriminatorSection {
            hidden: 1000,
            layers: 6,
            lr: 1e-4,
            beta1: 0.5,
            beta2: 0.9,
        }
    }
}

/// Disentanglement metrics, for datasets with ground-truth factors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Which metrics to compute: "factorvae", "mig", "betavae".
    pub metrics: Vec<String>,
    /// Compute them every this many steps (0 = only at the end of training).
    pub every_steps: u64,
    /// Scale of the metric sample counts (1 = the published 10,000/5,000
    /// votes and samples; smaller for quick checks).
    pub scale: f64,
}

impl Default for EvalSection {
    fn default() -> Self {
        EvalSection {
            metrics: vec![],
            every_steps: 0,
            scale: 1.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Dataset prefix: `file:///abs/dir`, or a path (relative to the working directory).
    pub url: String,
    pub order: DataOrder,
    /// Samples held in the shuffle buffer of the `shard` order.
    pub shuffle_buffer: u64,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            url: "data/mnist".into(),
            order: DataOrder::Global,
            shuffle_buffer: 10_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    pub epochs: u64,
    /// Stop after this many optimizer steps (0 = no bound); whichever of
    /// `epochs` and `max_steps` comes first ends the run.
    pub max_steps: u64,
    /// The global batch: summed over all workers.
    pub batch_size: u64,
    pub eval_batch_size: u64,
    pub seed: u64,
    /// Intra-op threads of libtorch (0 = libtorch's default).
    pub threads: u64,
    pub device: DeviceChoice,
    /// Precision of parameters and arithmetic.
    pub dtype: Dtype,
    /// "bf16": matmuls and convolutions in bf16 (mixed precision).
    pub precision: Precision,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            epochs: 10,
            max_steps: 0,
            batch_size: 128,
            eval_batch_size: 1000,
            seed: 1,
            threads: 0,
            device: DeviceChoice::Auto,
            dtype: Dtype::Float32,
            precision: Precision::Fp32,
            progress: true,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSection {
    /// Where checkpoints go: a path or an object-store URL (`s3://`,
    /// `gs://`, `az://`, ...). Empty: `<run-dir>/checkpoints`.
    pub url: String,
    /// Write checkpoints in the background while training continues (the
    /// step's state is copied first); `false` writes them in the step.
    pub asynchronous: bool,
    /// Write a checkpoint every this many steps (0 = only per epoch / at the end).
    pub every_steps: u64,
    /// Write a checkpoint every this many epochs (0 = never per epoch).
    pub every_epochs: u64,
    /// How many step checkpoints to keep (the best one is kept apart).
    pub keep_last: u64,
}

impl Default for CheckpointSection {
    fn default() -> Self {
        CheckpointSection {
            url: String::new(),
            asynchronous: true,
            every_steps: 0,
            every_epochs: 1,
            keep_last: 3,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EarlyStoppingSection {
    /// Stop when the test loss has not improved for `patience` evaluations, and
    /// keep the best checkpoint in `checkpoints/best`.
    pub enabled: bool,
    pub patience: u64,
    /// An improvement smaller than this does not count.
    pub min_delta: f64,
}

impl Default for EarlyStoppingSection {
    fn default() -> Self {
        EarlyStoppingSection {
            enabled: false,
            patience: 5,
            min_delta: 0.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistSection {
    pub backend: Backend,
    /// Every this many steps, compare a checksum of the parameters across
    /// ranks and stop with an error if they differ (0 = off).
    pub check_every: u64,
    /// A worker that makes no progress in a step's collectives (or
    /// evaluation) for this long has stalled: it says so and ends the job,
    /// which the launcher restarts from the latest checkpoint.
    pub timeout_s: f64,
    /// The same for phases that wait on another rank's long work (rank 0's
    /// metrics, a checkpoint write) or load data.
    pub wait_timeout_s: f64,
}

impl Default for DistSection {
    fn default() -> Self {
        DistSection {
            backend: Backend::Auto,
            check_every: 0,
            timeout_s: 600.0,
            wait_timeout_s: 7200.0,
        }
    }
}

/// Object storage: how requests to `s3://`, `gs://`, `az://` and `https://`
/// datasets and checkpoints are made. Credentials never go here: they come
/// from each cloud's usual environment variables (`AWS_ACCESS_KEY_ID`, ...).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// An endpoint instead of the cloud's own (S3-compatible stores, an
    /// emulator); empty: `AWS_ENDPOINT_URL` and friends, or the default.
    pub endpoint: String,
    /// Retries of a failed request (5xx, timeouts, dropped connections).
    pub max_retries: u64,
    /// No retry starts later than this after a request's first attempt.
    pub retry_timeout_s: f64,
    /// One request's time limit.
    pub timeout_s: f64,
    pub connect_timeout_s: f64,
    /// Requests in flight at once when reading shards.
    pub concurrency: u64,
    /// Shards fetched ahead of the one being trained on (`shard` order).
    pub prefetch_shards: u64,
    /// A local directory caching shards by their SHA-256 (empty: no cache).
    pub cache_dir: String,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            endpoint: String::new(),
            max_retries: 10,
            retry_timeout_s: 180.0,
            timeout_s: 30.0,
            connect_timeout_s: 5.0,
            concurrency: 4,
            prefetch_shards: 4,
            cache_dir: String::new(),
        }
    }
}

/// A sweep trained as one job (see `vae_proto::sweep`): the values of each
/// swept key, and how many ranks train each point.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSection {
    pub ranks_per_point: u64,
    /// Config key → the values it takes, e.g. `"model.beta" = [1, 2, 4]`.
    pub values: std::collections::BTreeMap<String, Vec<toml::Value>>,
}

impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            ranks_per_point: 1,
            values: Default::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Train scalars go to TensorBoard every this many steps.
    pub every_steps: u64,
    /// Number of test images in the reconstruction grid and prior samples.
    pub images: u64,
    /// Histograms of μ and log σ² at each evaluation.
    pub histograms: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            every_steps: 50,
            images: 32,
            histograms: true,
        }
    }
}

/// A validated config. Same shape as [`RawConfig`], with every value checked;
/// `raw` is kept to write the resolved config into the run directory.
#[derive(Clone, Debug)]
pub struct Config {
    pub raw: RawConfig,
    pub model: ModelSection,
    pub discriminator: DiscriminatorSection,
    pub eval: EvalSection,
    pub data: DataSection,
    pub train: TrainSection,
    pub optim: OptimSection,
    pub checkpoint: CheckpointSection,
    pub early_stopping: EarlyStoppingSection,
    pub dist: DistSection,
    pub log: LogSection,
    pub storage: StorageSection,
    pub sweep: SweepSection,
    /// `train.max_steps`, with 0 read as no bound.
    pub max_steps: Option<u64>,
}

impl Config {
    /// The resolved config as TOML with every credential taken out (see
    /// [`crate::redact`]): what is written to `<run-dir>/config.toml` and
    /// into checkpoints, and what reports show.
    pub fn to_toml(&self) -> String {
        crate::redact::redact(&self.to_toml_exact())
    }

    /// The resolved config as TOML, exactly (credentials in URLs included):
    /// for building derived configs in memory, never to be written or shown.
    pub fn to_toml_exact(&self) -> String {
        // Serialising plain structs of numbers, strings and lists cannot fail.
        toml::to_string_pretty(&self.raw).unwrap_or_default()
    }

    /// The SHA-256 (hex) of the resolved config: the identity of what a
    /// run trains, compared across ranks and recorded in checkpoints.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.to_toml_exact().as_bytes()))
    }
}

/// The first dotted key (in sorted order) whose value differs between two
/// TOML documents, e.g. `model.beta`; `None` when they are equal.
pub fn first_difference(a: &str, b: &str) -> Option<String> {
    let parse = |t: &str| t.parse::<toml::Table>().unwrap_or_default();
    diff_tables(&parse(a), &parse(b), "")
}

fn diff_tables(a: &toml::Table, b: &toml::Table, prefix: &str) -> Option<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                if let Some(d) = diff_tables(x, y, &key) {
                    return Some(d);
                }
            }
            (x, y) if x != y => return Some(key),
            _ => {}
        }
    }
    None
}

/// A number of seconds for a duration key: finite, above zero, and no more
/// than `Duration` holds (a year, to leave room for arithmetic on it).
fn seconds(key: &str, v: f64) -> Result<(), ConfigError> {
    const MAX: f64 = 365.0 * 24.0 * 3600.0;
    if !(v.is_finite() && v > 0.0 && v <= MAX) {
        return Err(key_err(
            key,
            format!("must be a number of seconds > 0 and at most {MAX} (a year), got {v}"),
        ));
    }
    Ok(())
}

fn positive(key: &str, v: u64) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(key_err(key, "must be at least 1, got 0"));
    }
    Ok(())
}

fn finite_nonneg(key: &str, v: f64) -> Result<(), ConfigError> {
    if !v.is_finite() || v < 0.0 {
        return Err(key_err(
            key,
            format!("must be a finite number >= 0, got {v}"),
        ));
    }
    Ok(())
}

impl RawConfig {
    /// Checks every value and builds the [`Config`] the code uses.
    pub fn validate(self) -> Result<Config, ConfigError> {
        self.model.validate()?;
        self.discriminator.validate()?;
        self.eval.validate()?;
        self.data.validate()?;
        self.train.validate()?;
        self.optim.validate()?;
        self.checkpoint.validate()?;
        self.early_stopping.validate()?;
        self.dist.validate()?;
        self.log.validate()?;
        self.storage.validate()?;
        self.across_sections()?;
        let max_steps = (self.train.max_steps > 0).then_some(self.train.max_steps);
        Ok(Config {
            discriminator: self.discriminator.clone(),
            eval: self.eval.clone(),
            model: self.model.clone(),
            data: self.data.clone(),
            train: self.train.clone(),
            optim: self.optim.clone(),
            checkpoint: self.checkpoint.clone(),
            early_stopping: self.early_stopping.clone(),
            dist: self.dist.clone(),
            log: self.log.clone(),
            storage: self.storage.clone(),
            sweep: self.sweep.clone(),
            max_steps,
            raw: self,
        })
    }
}

impl RawConfig {
    /// The rules that tie sections together (each section checks its own
    /// keys in its `validate`).
    fn across_sections(&self) -> Result<(), ConfigError> {
        let (m, t) = (&self.model, &self.train);
        if t.precision == Precision::Bf16 && t.dtype != Dtype::Float32 {
            return Err(key_err(
                "train.precision",
                "\"bf16\" is mixed precision over float32 parameters: it needs train.dtype = \"float32\"",
            ));
        }
        let min = m.objective.min_global_batch();
        if t.batch_size < min {
            return Err(key_err(
                "train.batch_size",
                format!(
                    "model.objective = \"{}\" compares the codes of a batch with each other and needs at least {min} samples, got {}",
                    m.objective.as_str(),
                    t.batch_size
                ),
            ));
        }
        Ok(())
    }
}

/// A float key that must be finite and above zero.
fn above_zero(key: &str, v: f64) -> Result<(), ConfigError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(key_err(key, format!("must be > 0, got {v}")));
    }
    Ok(())
}

/// Adam's β keys, in [0, 1).
fn betas(keys: [(&str, f64); 2]) -> Result<(), ConfigError> {
    for (key, b) in keys {
        if !(0.0..1.0).contains(&b) {
            return Err(key_err(key, format!("must be in [0, 1), got {b}")));
        }
    }
    Ok(())
}

impl ModelSection {
    fn validate(&self) -> Result<(), ConfigError> {
        let m = self;
        if m.latent_dim < 1 {
            return Err(key_err(
                "model.latent_dim",
                format!("must be at least 1, got {}", m.latent_dim),
            ));
        }
        if m.hidden_dim < 0 || (m.kind == ModelKind::Mlp && m.hidden_dim == 0) {
            return Err(key_err(
                "model.hidden_dim",
                format!("must be at least 1, got {}", m.hidden_dim),
            ));
        }
        if m.kind == ModelKind::Conv {
            if m.conv_channels.is_empty() {
                return Err(key_err("model.conv_channels", "needs at least one layer"));
            }
            if let Some(c) = m.conv_channels.iter().find(|c| **c < 1) {
                return Err(key_err(
                    "model.conv_channels",
                    format!("channels must be at least 1, got {c}"),
                ));
            }
        }
        for (key, v) in [
            ("model.beta", m.beta),
            ("model.gamma", m.gamma),
            ("model.tc_weight", m.tc_weight),
            ("model.capacity_max", m.capacity_max),
            ("model.capacity_weight", m.capacity_weight),
            ("model.dip_lambda_od", m.dip_lambda_od),
        ] {
            finite_nonneg(key, v)?;
        }
        if let Some(d) = m.dip_lambda_d {
            finite_nonneg("model.dip_lambda_d", d)?;
        }
        positive("model.capacity_steps", m.capacity_steps)
    }
}

impl DiscriminatorSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.hidden < 1 {
            return Err(key_err(
                "discriminator.hidden",
                format!("must be at least 1, got {}", self.hidden),
            ));
        }
        positive("discriminator.layers", self.layers)?;
        above_zero("discriminator.lr", self.lr)?;
        betas([
            ("discriminator.beta1", self.beta1),
            ("discriminator.beta2", self.beta2),
        ])
    }
}

impl EvalSection {
    fn validate(&self) -> Result<(), ConfigError> {
        for metric in &self.metrics {
            if !METRICS.contains(&metric.as_str()) {
                return Err(key_err(
                    "eval.metrics",
                    format!("unknown metric `{metric}`; known: {}", METRICS.join(", ")),
                ));
            }
        }
        if !(self.scale.is_finite() && self.scale > 0.0 && self.scale <= 1.0) {
            return Err(key_err(
                "eval.scale",
                format!("must be in (0, 1], got {}", self.scale),
            ));
        }
        Ok(())
    }
}

impl DataSection {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(key_err("data.url", "is empty"));
        }
        positive("data.shuffle_buffer", self.shuffle_buffer)
    }
}

impl TrainSection {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("train.batch_size", self.batch_size)?;
        positive("train.eval_batch_size", self.eval_batch_size)?;
        if self.epochs == 0 && self.max_steps == 0 {
            return Err(key_err(
                "train.epochs",
                "is 0 and train.max_steps is 0: the run would never end",
            ));
        }
        Ok(())
    }
}

impl OptimSection {
    fn validate(&self) -> Result<(), ConfigError> {
        above_zero("optim.lr", self.lr)?;
        betas([("optim.beta1", self.beta1), ("optim.beta2", self.beta2)])?;
        above_zero("optim.eps", self.eps)?;
        finite_nonneg("optim.weight_decay", self.weight_decay)
    }
}

impl CheckpointSection {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("checkpoint.keep_last", self.keep_last)
    }
}

impl EarlyStoppingSection {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("early_stopping.patience", self.patience)?;
        finite_nonneg("early_stopping.min_delta", self.min_delta)
    }
}

impl DistSection {
    fn validate(&self) -> Result<(), ConfigError> {
        seconds("dist.timeout_s", self.timeout_s)?;
        seconds("dist.wait_timeout_s", self.wait_timeout_s)
    }
}

impl LogSection {
    fn validate(&self) -> Result<(), ConfigError> {
        positive("log.every_steps", self.every_steps)
    }
}

impl StorageSection {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("storage.retry_timeout_s", self.retry_timeout_s),
            ("storage.timeout_s", self.timeout_s),
            ("storage.connect_timeout_s", self.connect_timeout_s),
        ] {
            seconds(key, v)?;
        }
        positive("storage.concurrency", self.concurrency)
    }
}

impl Config {
    /// Whether `ranks` workers can train this config: the global batch must
    /// divide by them (each takes an equal slice). The launcher, the
    /// workers and a sweep's groups all ask this.
    pub fn check_world(&self, ranks: usize) -> Result<(), ConfigError> {
        if ranks == 0 || !self.train.batch_size.is_multiple_of(ranks as u64) {
            return Err(key_err(
                "train.batch_size",
                format!(
                    "{} does not divide by the {ranks} workers",
                    self.train.batch_size
                ),
            ));
        }
        Ok(())
    }
}

/// Parses TOML text, applies `--set KEY=VALUE` overrides and validates.
/// `origin` names the text in messages (a file path, or `built-in default`).
pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Config, ConfigError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                origin: origin.to_string(),
                message: e.to_string().trim().replace('\n', " "),
            })?;
    for arg in overrides {
        apply_override(&mut table, arg)?;
    }
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            // toml adds "in `section`" on a second line: the key says it already.
            let message = e.into_inner().to_string();
            let message = message
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            key_err(if key == "." { "(top level)" } else { &key }, message)
        })?;
    raw.validate()
}

/// Reads and parses a config file; see [`parse`].
pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string(), overrides)
}

/// Sets `a.b.c = value` in a TOML table. The value is read as a TOML value
/// (`1e-3`, `true`, `[32, 64]`, `"x"`), and as a bare string if it is not one;
/// a key that holds a list takes a comma list too (`eval.metrics=mig,dci`,
/// `[mig]`: as `eval --metrics` does), each item read the same way.
pub fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let bad = |message: &str| ConfigError::Override {
        arg: arg.to_string(),
        message: message.to_string(),
    };
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE, e.g. model.beta=4"))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("the key has an empty part"));
    }
    let value = match parse_value(value.trim()) {
        toml::Value::String(text) if holds_a_list(&parts) => comma_list(&text),
        v => v,
    };
    let (last, parents) = parts.split_last().ok_or_else(|| bad("empty key"))?;
    let mut node = table;
    for part in parents {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| bad(&format!("`{part}` is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// Whether the key `parts` holds a list in the default config.
fn holds_a_list(parts: &[&str]) -> bool {
    static DEFAULTS: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
    let defaults = DEFAULTS.get_or_init(|| {
        let text = parse("", DEFAULT_CONFIG_NAME, &[]).map(|c| c.to_toml_exact());
        text.ok().and_then(|t| t.parse().ok()).unwrap_or_default()
    });
    let Some((first, rest)) = parts.split_first() else {
        return false;
    };
    let mut v = defaults.get(*first);
    for p in rest {
        v = v.and_then(|v| v.as_table()).and_then(|t| t.get(*p));
    }
    v.is_some_and(toml::Value::is_array)
}

/// `a,b,c` or `[a, b]` (items that are not TOML, bare) as a TOML array.
fn comma_list(text: &str) -> toml::Value {
    let inner = text.trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(inner);
    let items = inner.split(',').map(str::trim).filter(|t| !t.is_empty());
    toml::Value::Array(items.map(parse_value).collect())
}

fn parse_value(text: &str) -> toml::Value {
    let doc = format!("v = {text}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str, sets: &[&str]) -> String {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        match parse(text, "test", &sets) {
            Ok(_) => panic!("expected an error for {text:?} {sets:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_file_in_configs_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut n = 0;
        let mut todo = vec![dir.clone()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    let c = load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    // A sweep's every point must be a valid config too.
                    crate::sweep::Sweep::plan(&c, &[], None, &path.display().to_string())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    n += 1;
                }
            }
        }
        assert!(n >= 6 + 6, "configs found in {}: {n}", dir.display());
    }

    #[test]
    fn a_list_key_takes_a_comma_list_as_eval_metrics_does() {
        for form in [
            "mig,factorvae",
            "[mig, factorvae]",
            "[\"mig\",\"factorvae\"]",
            " mig , factorvae ",
        ] {
            let c = parse("", "test", &[format!("eval.metrics={form}")]).unwrap();
            assert_eq!(c.eval.metrics, ["mig", "factorvae"], "{form}");
        }
        let c = parse("", "test", &["eval.metrics=[mig]".into()]).unwrap();
        assert_eq!(c.eval.metrics, ["mig"]);
        let c = parse(
            "",
            "test",
            &["model.conv_channels=8,16".into(), "model.kind=conv".into()],
        )
        .unwrap();
        assert_eq!(c.model.conv_channels, [8, 16]);
        // A key that does not hold a list keeps its one value.
        assert!(err("", &["model.beta=1,2"]).contains("model.beta"));
        let c = parse("", "test", &["data.url=a,b".into()]).unwrap();
        assert_eq!(c.data.url, "a,b");
    }

    #[test]
    fn defaults_are_pytorch_examples() {
        let c = parse("", "test", &[]).unwrap();
        assert_eq!(c.train.batch_size, 128);
        assert_eq!(c.train.epochs, 10);
        assert_eq!(c.optim.lr, 1e-3);
        assert_eq!(c.model.latent_dim, 20);
        assert_eq!(c.max_steps, None);
    }

    #[test]
    fn precision_is_fp32_or_bf16_over_float32() {
        let c = parse("", "test", &["train.precision=bf16".into()]).unwrap();
        assert_eq!(c.train.precision, Precision::Bf16);
        let e = err("", &["train.precision=fp16"]);
        assert!(e.contains("train.precision") && e.contains("fp16"), "{e}");
        let e = err("", &["train.precision=bf16", "train.dtype=float64"]);
        assert!(
            e.contains("train.precision") && e.contains("float32"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[model]\nbetaa = 2.0\n", &[]);
        assert!(e.contains("model.betaa") || e.contains("betaa"), "{e}");
        let e = err("", &["train.batchsize=3"]);
        assert!(e.contains("batchsize"), "{e}");
        let e = err("[nope]\n", &[]);
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("[train]\nbatch_size = \"big\"\n", &[]);
        assert!(e.contains("train.batch_size"), "{e}");
        let e = err("", &["model.kind=transformer"]);
        assert!(e.contains("model.kind") && e.contains("transformer"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = err("[model]\nbeta = -1.0\n", &[]);
        assert!(e.contains("model.beta") && e.contains("-1"), "{e}");
        let e = err("", &["train.batch_size=0"]);
        assert!(e.contains("train.batch_size") && e.contains('0'), "{e}");
        let e = err("", &["train.batch_size=-5"]);
        assert!(e.contains("train.batch_size"), "{e}");
        let e = err("", &["optim.lr=0"]);
        assert!(e.contains("optim.lr"), "{e}");
        let e = err("[model\n", &[]);
        assert!(e.contains("not valid TOML"), "{e}");
        let e = err("", &["model.beta"]);
        assert!(e.contains("KEY=VALUE"), "{e}");
        let e = err("", &["dist.timeout_s=0"]);
        assert!(e.contains("dist.timeout_s") && e.contains('0'), "{e}");
        let e = err("", &["dist.timeout_s=-5"]);
        assert!(e.contains("dist.timeout_s"), "{e}");
        // Every duration key refuses what `Duration` cannot hold, naming it.
        for key in [
            "dist.timeout_s",
            "dist.wait_timeout_s",
            "storage.timeout_s",
            "storage.retry_timeout_s",
            "storage.connect_timeout_s",
        ] {
            for v in ["1e20", "inf", "nan"] {
                let e = err("", &[&format!("{key}={v}")]);
                assert!(e.contains(key) && !e.contains('\n'), "{e}");
            }
        }
        let e = err("", &["model.objective=factor", "train.batch_size=1"]);
        assert!(
            e.contains("train.batch_size") && e.contains("factor"),
            "{e}"
        );
    }

    #[test]
    fn overrides_set_nested_keys_and_types() {
        let sets = [
            "model.beta=4".to_string(),
            "model.conv_channels=[8, 16]".to_string(),
            "data.url=s3://bucket/mnist".to_string(),
            "train.max_steps=7".to_string(),
        ];
        let c = parse("[model]\nbeta = 1.0\n", "test", &sets).unwrap();
        assert_eq!(c.model.beta, 4.0);
        assert_eq!(c.model.conv_channels, vec![8, 16]);
        assert_eq!(c.data.url, "s3://bucket/mnist");
        assert_eq!(c.max_steps, Some(7));
        // The resolved config round-trips.
        let again = parse(&c.to_toml(), "resolved", &[]).unwrap();
        assert_eq!(again.model.beta, 4.0);
        assert_eq!(again.hash(), c.hash());
        assert_ne!(parse("", "t", &[]).unwrap().hash(), c.hash());
    }

    #[test]
    fn the_written_config_has_no_credentials_and_names_the_first_difference() {
        let c = parse(
            "",
            "t",
            &[
                "data.url=https://alice:pw1234@example.com/mnist".into(),
                "storage.endpoint=http://minio:pw5678@10.0.0.1:9000".into(),
            ],
        )
        .unwrap();
        let written = c.to_toml();
        assert!(
            !written.contains("pw1234") && !written.contains("pw5678"),
            "{written}"
        );
        assert!(c.to_toml_exact().contains("pw1234"));
        let other = parse("", "t", &["model.beta=2".into(), "train.seed=9".into()]).unwrap();
        let base = parse("", "t", &[]).unwrap();
        assert_eq!(
            first_difference(&base.to_toml(), &other.to_toml()).as_deref(),
            Some("model.beta")
        );
        assert_eq!(first_difference(&base.to_toml(), &base.to_toml()), None);
    }
}

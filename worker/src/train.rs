//! The training loop: data order, forward and backward, gradient all-reduce,
//! Adam, evaluation on the test split each epoch, logging (TensorBoard, PNG,
//! `summary.json`), checkpoints, resume and early stopping.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};
use vae_proto::checkpoint::{CheckpointManifest, EarlyStoppingState, BEST_DIR, LATEST_POINTER};
use vae_proto::config::{Config, DataOrder, DeviceChoice, Dtype, ObjectiveKind};

use crate::checkpoint::{self, CheckpointError, Contents};
use crate::comm::{Comm, CommError};
use crate::data::format::Dataset;
use crate::data::sampler::{GlobalOrder, ShardOrder};
use crate::data::DataError;
use crate::disentanglement::{Budget, EncoderOnDsprites};
use crate::images;
use crate::loss::{Forward, Objective, Terms};
use crate::metrics::{batch_sums, sums_len, Sums};
use crate::model::discriminator::{self, Discriminator};
use crate::model::{self, Vae};
use crate::optim::{Adam, FlatParams};
use crate::rng::{self, Stream};
use crate::signals::StopFlag;
use crate::tensorboard::Board;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error("run directory {path}: {message}", path = path.display())]
    RunDir { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        source: tch::TchError,
    },
    #[error("{0}")]
    Invalid(String),
}

fn tensor_err(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> TrainError {
    let context = context.into();
    move |source| TrainError::Tensor { context, source }
}

/// What `vae-worker train` was asked to do.
pub struct TrainArgs {
    pub config: Config,
    pub run_dir: PathBuf,
    pub resume: bool,
    pub device: Device,
    /// Raised by SIGINT/SIGTERM/SIGUSR1: checkpoint and stop.
    pub stop: StopFlag,
}

/// Where an epoch's batches come from on this rank: local images and the
/// order in which to take them. Batch `b` is
/// `order[b·stride + offset .. b·stride + offset + local]`.
struct EpochData {
    images: Tensor,
    order: Vec<u32>,
    stride: usize,
    offset: usize,
    local: usize,
    steps: u64,
}

/// The training data of this rank in the configured order.
enum Source {
    Global {
        images: Tensor,
        order: GlobalOrder,
    },
    Shard {
        order: ShardOrder,
        dataset: Box<Dataset>,
        loaded: Option<(Vec<usize>, Tensor)>,
    },
}

impl Source {
    fn epoch(
        &mut self,
        epoch: u64,
        rank: usize,
        world: usize,
        device: Device,
    ) -> Result<EpochData, TrainError> {
        match self {
            Source::Global { images, order } => {
                let s = order.slice(rank, world);
                Ok(EpochData {
                    images: images.shallow_clone(),
                    order: order.permutation(epoch),
                    stride: order.batch,
                    offset: s.start,
                    local: s.end - s.start,
                    steps: order.steps_per_epoch(),
                })
            }
            Source::Shard {
                order,
                dataset,
                loaded,
            } => {
                let shards = order.assignment(epoch, rank, world);
                if loaded.as_ref().is_none_or(|(s, _)| *s != shards) {
                    *loaded = None; // free the previous epoch's shards first
                    let t = split_tensor(dataset, "train", Some(&shards), device)?;
                    *loaded = Some((shards, t));
                }
                let local = order.batch / world;
                Ok(EpochData {
                    images: loaded
                        .as_ref()
                        .map(|(_, t)| t.shallow_clone())
                        .unwrap_or_else(Tensor::new),
                    order: order.sequence(epoch, rank, world),
                    stride: local,
                    offset: 0,
                    local,
                    steps: order.steps_per_epoch(epoch, world),
                })
            }
        }
    }
}

/// One evaluation, as reported in `summary.json` and TensorBoard.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalRecord {
    pub epoch: u64,
    pub step: u64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_recon: f64,
    pub test_kl: f64,
    pub test_active_units: usize,
    pub samples_per_sec: f64,
}

/// `summary.json`: the last evaluation's figures at the top level, and all of them in `history`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub epoch: u64,
    pub step: u64,
    pub train_loss: f64,
    pub test_loss: f64,
    pub test_recon: f64,
    pub test_kl: f64,
    pub test_kl_per_dim: Vec<f64>,
    pub test_active_units: usize,
    /// Total-correlation estimate on the test split (FactorVAE, β-TCVAE).
    pub test_tc: f64,
    /// FactorVAE: the discriminator's accuracy over the last logging window.
    pub disc_accuracy: Option<f64>,
    /// The last disentanglement metrics (`eval.metrics`), with their `step`.
    pub metrics: BTreeMap<String, f64>,
    pub samples_per_sec: f64,
    pub best_test_loss: Option<f64>,
    pub best_step: Option<u64>,
    pub stopped_early: bool,
    pub world_size: usize,
    pub device: String,
    pub history: Vec<EvalRecord>,
}

pub fn pick_device(choice: DeviceChoice, local_rank: usize) -> Result<Device, TrainError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if !tch::Cuda::is_available() => Ok(Device::Cpu),
        _ if tch::Cuda::is_available() => Ok(Device::Cuda(
            local_rank % tch::Cuda::device_count().max(1) as usize,
        )),
        _ => Err(TrainError::Invalid(
            "config key `train.device`: \"cuda\" asked for, but libtorch sees no CUDA device"
                .into(),
        )),
    }
}

/// Prepares the run directory: creates it, proves it writable by writing the
/// resolved config, and refuses to mix a fresh run with an old one's checkpoints.
fn prepare_run_dir(args: &TrainArgs) -> Result<(), TrainError> {
    let dir = &args.run_dir;
    let fail = |message: String| TrainError::RunDir {
        path: dir.clone(),
        message,
    };
    fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create it: {e}")))?;
    let ckpt = dir.join("checkpoints");
    let has_ckpt = checkpoint::follow(&ckpt, LATEST_POINTER)?.is_some();
    if args.resume && !has_ckpt {
        return Err(CheckpointError::Missing { path: ckpt }.into());
    }
    if !args.resume && has_ckpt {
        return Err(fail(
            "already holds checkpoints; pass --resume to continue it, or choose another --run-dir"
                .into(),
        ));
    }
    let tmp = dir.join(".config.toml.tmp");
    fs::write(&tmp, args.config.to_toml())
        .and_then(|_| fs::rename(&tmp, dir.join("config.toml")))
        .map_err(|e| fail(format!("cannot write into it: {e}")))?;
    for sub in ["tensorboard", "images"] {
        fs::create_dir_all(dir.join(sub))
            .map_err(|e| fail(format!("cannot create {sub}/: {e}")))?;
    }
    Ok(())
}

/// Reads the shards `which` (all when `None`) of a split and returns their
/// images as one `u8` tensor `[N, C, H, W]` on `device`.
fn split_tensor(
    dataset: &Dataset,
    split: &str,
    which: Option<&[usize]>,
    device: Device,
) -> Result<Tensor, TrainError> {
    let data = dataset.read_split(split, which)?;
    let [c, h, w] = dataset.manifest.sample_shape.map(|d| d as i64);
    Tensor::from_slice(&data.images)
        .f_view([data.n as i64, c, h, w])
        .and_then(|t| t.f_to_device(device))
        .map_err(tensor_err("loading the dataset onto the device"))
}

/// Pixels in [0, 1] of the samples `idx` of `images`.
fn gather(images: &Tensor, idx: &[i64], kind: Kind) -> Tensor {
    let idx = Tensor::from_slice(idx).to_device(images.device());
    images.index_select(0, &idx).to_kind(kind) / 255.0
}

/// The tensor kind of `dtype`.
pub fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::Float32 => Kind::Float,
        Dtype::Float64 => Kind::Double,
    }
}

/// Reparameterised codes `μ + σ·ε`, with `ε` rows from records
/// `(seed, stream, counter, rows)`.
fn sample_z(
    mu: &Tensor,
    logvar: &Tensor,
    seed: u64,
    stream: Stream,
    counter: u64,
    rows: std::ops::Range<u64>,
) -> Tensor {
    let l = mu.size()[1];
    let eps = Tensor::from_slice(&rng::normals(
        seed,
        stream,
        counter,
        rows.clone(),
        l as usize,
    ))
    .view([(rows.end - rows.start) as i64, l])
    .to_device(mu.device());
    mu + (logvar * 0.5).exp() * eps
}

/// Everything a trainer holds.
struct Trainer<'a> {
    cfg: &'a Config,
    comm: &'a dyn Comm,
    _vs: nn::VarStore,
    model: Box<dyn Vae>,
    params: FlatParams,
    adam: Adam,
    objective: Objective,
    /// FactorVAE's discriminator and its optimizer.
    disc: Option<Disc>,
    /// Wall time spent in the gradient all-reduce since the last log line
    /// (CPU/MPI; with NCCL the call only enqueues work).
    comm_secs: f64,
    device: Device,
    kind: Kind,
    latent: usize,
}

/// The variables of `vs` in `kind`, gathered into one flat buffer holding
/// rank 0's values on every rank.
fn shared_params(
    vs: &mut nn::VarStore,
    kind: Kind,
    comm: &dyn Comm,
) -> Result<FlatParams, TrainError> {
    if kind == Kind::Double {
        vs.double();
    }
    let mut params = FlatParams::new(vs);
    comm.broadcast(&mut params.flat, 0)?;
    Ok(params)
}

/// The discriminator's own parameters and Adam (a second optimizer).
struct Disc {
    _vs: nn::VarStore,
    net: Discriminator,
    params: FlatParams,
    adam: Adam,
}

impl Disc {
    fn new(
        cfg: &Config,
        latent: i64,
        device: Device,
        kind: Kind,
        comm: &dyn Comm,
    ) -> Result<Disc, TrainError> {
        let d = &cfg.discriminator;
        let mut vs = nn::VarStore::new(device);
        let net = Discriminator::new(&(vs.root() / "discriminator"), latent, d.hidden, d.layers);
        let params = shared_params(&mut vs, kind, comm)?;
        let optim = vae_proto::config::OptimSection {
            lr: d.lr,
            beta1: d.beta1,
            beta2: d.beta2,
            ..cfg.optim.clone()
        };
        let adam = Adam::new(&optim, &params);
        Ok(Disc {
            _vs: vs,
            net,
            params,
            adam,
        })
    }
}

/// One forward pass: the objective's terms, the posterior and the codes.
struct Pass {
    terms: Terms,
    mu: Tensor,
    logvar: Tensor,
    z: Tensor,
}

/// What one training step reports, summed over this rank's samples:
/// the objective's sums (layout of [`Sums`]) and, for FactorVAE, the
/// discriminator's `[correct, loss sum, samples]`.
struct StepSums {
    sums: Tensor,
    disc: Option<Tensor>,
}

impl<'a> Trainer<'a> {
    /// Builds the model (and FactorVAE's discriminator) from the seed; every
    /// rank then takes rank 0's parameters.
    fn new(
        cfg: &'a Config,
        comm: &'a dyn Comm,
        device: Device,
        shape: [usize; 3],
        dataset_size: usize,
    ) -> Result<Trainer<'a>, TrainError> {
        tch::manual_seed(cfg.train.seed as i64);
        let mut vs = nn::VarStore::new(device);
        let model = model::build(&vs.root(), &cfg.model, shape);
        let kind = kind_of(cfg.train.dtype);
        let params = shared_params(&mut vs, kind, comm)?;
        let adam = Adam::new(&cfg.optim, &params);
        let latent = model.latent_dim() as usize;
        let disc = match cfg.model.objective {
            ObjectiveKind::Factor => Some(Disc::new(cfg, latent as i64, device, kind, comm)?),
            _ => None,
        };
        Ok(Trainer {
            cfg,
            comm,
            _vs: vs,
            model,
            params,
            adam,
            objective: Objective::from_config(&cfg.model, dataset_size),
            disc,
            comm_secs: 0.0,
            device,
            kind,
            latent,
        })
    }

    /// Loads a checkpoint's model, discriminator and optimizer states.
    fn load(&mut self, loaded: &checkpoint::Loaded) -> Result<(), TrainError> {
        let (dir, m) = (&loaded.dir, &loaded.manifest);
        if m.model_kind != self.cfg.model.kind.as_str() {
            return Err(TrainError::Invalid(format!(
                "{}: a `{}` model, the config says `{}`",
                dir.display(),
                m.model_kind,
                self.cfg.model.kind.as_str()
            )));
        }
        load_into(&mut self.params, &loaded.model, dir)?;
        let get = |name: &str| {
            loaded
                .optim
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| {
                    TrainError::Invalid(format!(
                        "{}: optimizer state has no `{name}`",
                        dir.display()
                    ))
                })
        };
        self.adam
            .load(&get("adam.m")?, &get("adam.v")?, m.step)
            .map_err(tensor_err("loading optimizer state"))?;
        if let Some(d) = self.disc.as_mut() {
            let saved = loaded.discriminator.as_ref().ok_or_else(|| {
                TrainError::Invalid(format!(
                    "{}: no discriminator in this checkpoint",
                    dir.display()
                ))
            })?;
            load_into(&mut d.params, saved, dir)?;
            d.adam
                .load(&get("disc.adam.m")?, &get("disc.adam.v")?, m.step)
                .map_err(tensor_err("loading the discriminator's optimizer state"))?;
        }
        Ok(())
    }

    /// Global batches one step consumes: 2 for FactorVAE (the second feeds
    /// the discriminator's permuted codes), else 1.
    fn batches_per_step(&self) -> u64 {
        if self.disc.is_some() {
            2
        } else {
            1
        }
    }

    /// This rank's samples of global batch `b` of the epoch, as pixels.
    fn batch(&self, data: &EpochData, b: u64) -> Tensor {
        let at = b as usize * data.stride + data.offset;
        let idx: Vec<i64> = data.order[at..at + data.local]
            .iter()
            .map(|&i| i as i64)
            .collect();
        gather(&data.images, &idx, self.kind)
    }

    /// Encodes `x`, samples codes with noise rows `rows` of `(stream,
    /// counter)`, decodes, and computes the objective's terms at `step`.
    fn forward(
        &self,
        x: &Tensor,
        stream: Stream,
        counter: u64,
        rows: std::ops::Range<u64>,
        step: u64,
    ) -> Pass {
        let (mu, logvar) = self.model.encode(x);
        let z = sample_z(&mu, &logvar, self.cfg.train.seed, stream, counter, rows);
        let logits = self.model.decode(&z);
        let disc_tc = self
            .disc
            .as_ref()
            .map(|d| discriminator::tc_estimate(&d.net.forward(&z)));
        let f = Forward {
            x,
            mu: &mu,
            logvar: &logvar,
            z: &z,
            logits: &logits,
        };
        let terms = self.objective.terms(&f, step, disc_tc.as_ref());
        Pass {
            terms,
            mu,
            logvar,
            z,
        }
    }

    /// One optimizer step (two for FactorVAE: the VAE's, then the
    /// discriminator's), gradients averaged over ranks.
    fn train_step(
        &mut self,
        data: &EpochData,
        batch_in_epoch: u64,
        step: u64,
        slice: std::ops::Range<usize>,
        global_batch: usize,
    ) -> Result<StepSums, TrainError> {
        let seed = self.cfg.train.seed;
        let rows = slice.start as u64..slice.end as u64;
        let x = self.batch(data, batch_in_epoch * self.batches_per_step());
        let Pass { terms, mu, z, .. } =
            self.forward(&x, Stream::TrainNoise, step, rows.clone(), step);
        let loss = terms.loss.sum(self.kind) / global_batch as f64;
        let mut grad = self
            .params
            .gradient(&loss)
            .map_err(tensor_err(format!("gradient at step {step}")))?;
        let t0 = Instant::now();
        self.comm.all_reduce_sum(&mut grad)?;
        self.comm_secs += t0.elapsed().as_secs_f64();
        self.adam
            .step(&mut self.params.flat, &grad, self.cfg.optim.lr);
        let sums = batch_sums(&terms, &mu);

        // The discriminator learns to tell codes of the first batch (class 0)
        // from dimension-wise permuted codes of a second batch (class 1). Its
        // inputs are detached, so the VAE's update above cannot invalidate
        // any graph this step uses.
        if self.disc.is_none() {
            return Ok(StepSums { sums, disc: None });
        }
        let x2 = self.batch(data, batch_in_epoch * 2 + 1);
        let z_perm = tch::no_grad(|| {
            let (mu2, lv2) = self.model.encode(&x2);
            let z2 = sample_z(
                &mu2,
                &lv2,
                seed,
                Stream::SecondBatchNoise,
                step,
                rows.clone(),
            );
            discriminator::permute_dims(&z2, seed, step)
        });
        let Some(disc) = self.disc.as_mut() else {
            return Ok(StepSums { sums, disc: None });
        };
        let real = disc.net.forward(&z.detach());
        let fake = disc.net.forward(&z_perm);
        let n = real.size()[0];
        let zeros = Tensor::zeros([n], (Kind::Int64, self.device));
        let ones = Tensor::ones([n], (Kind::Int64, self.device));
        let ce = |logits: &Tensor, target: &Tensor| {
            logits.log_softmax(1, self.kind).nll_loss_nd::<Tensor>(
                target,
                None,
                tch::Reduction::Sum,
                -100,
            )
        };
        let d_sum = ce(&real, &zeros) + ce(&fake, &ones);
        let d_loss = &d_sum * 0.5 / global_batch as f64;
        let mut dgrad = disc
            .params
            .gradient(&d_loss)
            .map_err(tensor_err(format!("discriminator gradient at step {step}")))?;
        self.comm.all_reduce_sum(&mut dgrad)?;
        let lr = disc.adam.cfg.lr;
        disc.adam.step(&mut disc.params.flat, &dgrad, lr);
        let correct = real.argmax(1, false).eq(0).sum(Kind::Double)
            + fake.argmax(1, false).eq(1).sum(Kind::Double);
        let disc_sums = Tensor::stack(
            &[
                correct,
                d_sum.detach().to_kind(Kind::Double),
                Tensor::full([], 2.0 * n as f64, (Kind::Double, self.device)),
            ],
            0,
        );
        Ok(StepSums {
            sums,
            disc: Some(disc_sums),
        })
    }

    /// Evaluates `images` (the test split): sums over this rank's part, reduced
    /// over ranks, and `μ`, `log σ²` of this rank's part for histograms.
    fn evaluate(
        &self,
        images: &Tensor,
        batch: usize,
    ) -> Result<(Sums, Tensor, Tensor), TrainError> {
        let n = images.size()[0] as usize;
        let (rank, world) = (self.comm.rank(), self.comm.world_size());
        let (lo, hi) = (n * rank / world, n * (rank + 1) / world);
        let mut acc = Tensor::zeros([sums_len(self.latent)], (Kind::Double, self.device));
        let (mut mus, mut lvs) = (Vec::new(), Vec::new());
        tch::no_grad(|| {
            let mut start = lo;
            while start < hi {
                let end = (start + batch).min(hi);
                let x = images
                    .narrow(0, start as i64, (end - start) as i64)
                    .to_kind(self.kind)
                    / 255.0;
                let Pass {
                    terms, mu, logvar, ..
                } = self.forward(
                    &x,
                    Stream::EvalNoise,
                    0,
                    start as u64..end as u64,
                    self.adam.t,
                );
                acc += batch_sums(&terms, &mu);
                mus.push(mu);
                lvs.push(logvar);
                start = end;
            }
        });
        let mut sums = Sums::from_tensor(&acc, self.latent).map_err(tensor_err("evaluation"))?;
        self.comm.all_reduce_f64(&mut sums.v)?;
        let cat = |v: &[Tensor]| {
            if v.is_empty() {
                Tensor::zeros([0], (Kind::Float, Device::Cpu))
            } else {
                Tensor::cat(v, 0)
            }
        };
        Ok((sums, cat(&mus), cat(&lvs)))
    }
}

/// Copies checkpoint tensors into `params` by name, checking names and shapes.
fn load_into(
    params: &mut FlatParams,
    tensors: &[(String, Tensor)],
    from: &Path,
) -> Result<(), TrainError> {
    let map: BTreeMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    if map.len() != params.names.len() {
        return Err(TrainError::Invalid(format!(
            "{}: holds {} tensors, the model has {}: another architecture?",
            from.display(),
            map.len(),
            params.names.len()
        )));
    }
    for (name, var) in params.names.iter().zip(params.vars.iter_mut()) {
        let src = map.get(name.as_str()).ok_or_else(|| {
            TrainError::Invalid(format!("{}: has no tensor `{name}`", from.display()))
        })?;
        if src.size() != var.size() {
            return Err(TrainError::Invalid(format!(
                "{}: tensor `{name}` is {:?}, the model wants {:?}",
                from.display(),
                src.size(),
                var.size()
            )));
        }
        tch::no_grad(|| var.f_copy_(src)).map_err(tensor_err(format!("loading {name}")))?;
    }
    Ok(())
}

/// Rank-0-only outputs: TensorBoard, PNGs, summary.
struct Outputs {
    board: Board,
    run_dir: PathBuf,
    /// Whether the objective estimates a total correlation.
    has_tc: bool,
}

fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let fail = |e: String| TrainError::RunDir {
        path: path.to_path_buf(),
        message: e,
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| fail(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    fs::write(&tmp, bytes)
        .and_then(|_| fs::rename(&tmp, path))
        .map_err(|e| fail(e.to_string()))
}

impl Outputs {
    fn scalars(&mut self, prefix: &str, s: &Sums, step: u64) {
        let b = &mut self.board;
        b.scalar(&format!("{prefix}/loss"), s.loss(), step);
        b.scalar(&format!("{prefix}/recon"), s.recon(), step);
        b.scalar(&format!("{prefix}/kl"), s.kl(), step);
        if self.has_tc {
            b.scalar(&format!("{prefix}/tc"), s.tc(), step);
        }
        b.scalar(
            &format!("{prefix}/active_units"),
            s.active_units() as f64,
            step,
        );
        for (j, v) in s.kl_per_dim().iter().enumerate() {
            b.scalar(&format!("{prefix}/kl_per_dim/{j:02}"), *v, step);
        }
    }

    fn pictures(
        &mut self,
        t: &Trainer,
        test: &Tensor,
        epoch: u64,
        step: u64,
    ) -> Result<(), TrainError> {
        let k = (t.cfg.log.images as i64).min(test.size()[0]);
        if k == 0 {
            return Ok(());
        }
        let (recon, prior, traversal) = tch::no_grad(|| {
            let x = test.narrow(0, 0, k).to_kind(t.kind) / 255.0;
            let (mu, _) = t.model.encode(&x);
            let recon = images::pairs(&x, &t.model.decode(&mu).sigmoid());
            let z = Tensor::from_slice(&rng::normals(
                t.cfg.train.seed,
                Stream::Prior,
                0,
                0..k as u64,
                t.latent,
            ))
            .view([k, t.latent as i64])
            .to_device(t.device)
            .to_kind(t.kind);
            let prior = t.model.decode(&z).sigmoid();
            let traversal =
                images::traversal(&mu.narrow(0, 0, 1), 10, |z| t.model.decode(z).sigmoid());
            (recon, prior, traversal)
        });
        for (tag, file, imgs, per_row) in [
            ("test/reconstructions", "recon", recon, 16),
            ("samples/prior", "prior", prior, 8),
            ("latent/traversals", "traversal", traversal, 10),
        ] {
            let g = images::grid(&imgs, per_row).map_err(tensor_err("image grid"))?;
            let path = self
                .run_dir
                .join("images")
                .join(format!("{file}-epoch-{:03}.png", epoch + 1));
            g.save(&path).map_err(|e| TrainError::RunDir {
                path: path.clone(),
                message: e.to_string(),
            })?;
            self.board
                .image(tag, &g, step)
                .map_err(|e| TrainError::RunDir {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(())
    }
}

/// Trains as `args` says and returns the summary (also written to
/// `summary.json`), or `None` when a signal stopped the run.
pub fn run(args: TrainArgs, comm: &dyn Comm) -> Result<Option<Summary>, TrainError> {
    let cfg = &args.config;
    let (rank, world) = (comm.rank(), comm.world_size());
    let global_batch = cfg.train.batch_size as usize;
    if !global_batch.is_multiple_of(world) {
        return Err(TrainError::Invalid(format!(
            "config key `train.batch_size`: {global_batch} does not divide by the {world} workers"
        )));
    }
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    let device = args.device;
    // Rank 0 owns the run directory; the others wait until it is ready (if
    // rank 0 fails, it aborts the job).
    let ckpt_dir = args.run_dir.join("checkpoints");
    if rank == 0 {
        prepare_run_dir(&args)?;
    }
    comm.barrier()?;

    // Data: manifest first (cheap, fails fast on a bad URL), then the shards
    // this rank needs: all of them in `global` order, its own in `shard` order.
    let dataset = Dataset::open(&cfg.data.url)?;
    let shape = dataset.manifest.sample_shape;
    require_factors(cfg, &dataset, "config key `eval.metrics`")?;
    let train_split = dataset.split("train")?.clone();
    if train_split.samples < global_batch as u64 {
        return Err(TrainError::Invalid(format!(
            "config key `train.batch_size`: {global_batch} is more than the {} training samples",
            train_split.samples
        )));
    }
    let test_images = split_tensor(&dataset, "test", None, device)?;
    let mut source = match cfg.data.order {
        DataOrder::Global => {
            let images = split_tensor(&dataset, "train", None, device)?;
            Source::Global {
                order: GlobalOrder {
                    n: images.size()[0] as usize,
                    batch: global_batch,
                    seed: cfg.train.seed,
                },
                images,
            }
        }
        DataOrder::Shard => {
            let order = ShardOrder {
                shard_sizes: train_split
                    .shards
                    .iter()
                    .map(|s| s.samples as usize)
                    .collect(),
                batch: global_batch,
                seed: cfg.train.seed,
                buffer: cfg.data.shuffle_buffer as usize,
            };
            if order.steps_per_epoch(0, world) == 0 {
                return Err(TrainError::Invalid(format!(
                    "config key `data.order`: \"shard\" deals {} shards to {world} workers, and some worker gets too few samples for one batch of {}",
                    train_split.shards.len(),
                    global_batch / world
                )));
            }
            Source::Shard {
                order,
                dataset: Box::new(dataset),
                loaded: None,
            }
        }
    };

    let mut t = Trainer::new(cfg, comm, device, shape, train_split.samples as usize)?;
    let latent = t.latent;

    let (mut step, mut epoch, mut batch_in_epoch) = (0u64, 0u64, 0u64);
    let mut es = EarlyStoppingState::default();
    let mut history: Vec<EvalRecord> = Vec::new();
    // Rank 0 reads the checkpoint and sends the state to the others, so the
    // run directory need not be on a file system every node sees.
    if args.resume && rank == 0 {
        let dir = checkpoint::resolve(&ckpt_dir)?;
        let loaded = checkpoint::read(&dir)?;
        t.load(&loaded)?;
        let m = &loaded.manifest;
        (step, epoch, batch_in_epoch, es) =
            (m.step, m.epoch, m.batch_in_epoch, m.early_stopping.clone());
        if let Ok(text) = fs::read_to_string(args.run_dir.join("history.json")) {
            history = serde_json::from_str(&text).unwrap_or_default();
            history.retain(|r| r.step <= step);
        }
        println!(
            "resumed from {} (step {step}, epoch {})",
            dir.display(),
            epoch + 1
        );
    }
    if args.resume && world > 1 {
        comm.broadcast(&mut t.params.flat, 0)?;
        comm.broadcast(&mut t.adam.m, 0)?;
        comm.broadcast(&mut t.adam.v, 0)?;
        if let Some(d) = t.disc.as_mut() {
            comm.broadcast(&mut d.params.flat, 0)?;
            comm.broadcast(&mut d.adam.m, 0)?;
            comm.broadcast(&mut d.adam.v, 0)?;
        }
        let mut counters = Tensor::from_slice(&[
            step as f64,
            epoch as f64,
            batch_in_epoch as f64,
            es.best_loss.unwrap_or(f64::NAN),
            es.best_step.map_or(-1.0, |s| s as f64),
            es.bad_evals as f64,
        ]);
        comm.broadcast(&mut counters, 0)?;
        let c = Vec::<f64>::try_from(&counters).map_err(tensor_err("resume counters"))?;
        (step, epoch, batch_in_epoch) = (c[0] as u64, c[1] as u64, c[2] as u64);
        es = EarlyStoppingState {
            best_loss: (!c[3].is_nan()).then_some(c[3]),
            best_step: (c[4] >= 0.0).then_some(c[4] as u64),
            bad_evals: c[5] as u64,
        };
        t.adam.t = step;
        if let Some(d) = t.disc.as_mut() {
            d.adam.t = step;
        }
    }

    let mut out = (rank == 0).then(|| Outputs {
        board: Board::new(&args.run_dir.join("tensorboard")),
        run_dir: args.run_dir.clone(),
        has_tc: matches!(
            cfg.model.objective,
            ObjectiveKind::Factor | ObjectiveKind::Btcvae
        ),
    });
    let lr = cfg.optim.lr;
    let mut interrupted = false;
    let mut last_disc_accuracy: Option<f64> = None;
    let mut last_metrics: BTreeMap<String, f64> = BTreeMap::new();
    let fault_step: Option<u64> = std::env::var("VAE_FAULT_DESYNC_STEP")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut stopped_early = false;
    let mut last_eval: Option<(Sums, EvalRecord)> = None;
    let mut last_ckpt_step = if args.resume { Some(step) } else { None };
    let mut total_samples_per_sec = 0.0;
    let acc_len = sums_len(latent);

    let save = |t: &Trainer,
                step: u64,
                epoch: u64,
                batch_in_epoch: u64,
                es: &EarlyStoppingState,
                name: &str,
                metrics: BTreeMap<String, f64>|
     -> Result<(), TrainError> {
        t.comm.barrier()?;
        if rank == 0 {
            let manifest = CheckpointManifest {
                format: String::new(),
                step,
                epoch,
                batch_in_epoch,
                seed: cfg.train.seed,
                world_size: world,
                model_kind: cfg.model.kind.as_str().into(),
                early_stopping: es.clone(),
                metrics,
                files: vec![],
            };
            let disc = t.disc.as_ref().map(|d| d.params.named());
            let mut optim = t.adam.state();
            if let Some(d) = &t.disc {
                optim.extend(
                    d.adam
                        .state()
                        .into_iter()
                        .map(|(n, v)| (format!("disc.{n}"), v)),
                );
            }
            let contents = Contents {
                model: &t.params.named(),
                optim: &optim,
                discriminator: disc.as_deref(),
            };
            checkpoint::write(&ckpt_dir, name, manifest, &contents)?;
        }
        t.comm.barrier()?;
        Ok(())
    };

    'epochs: while epoch < cfg.train.epochs || batch_in_epoch > 0 {
        if cfg.max_steps.is_some_and(|m| step >= m) {
            break;
        }
        let data = source.epoch(epoch, rank, world, device)?;
        let steps_per_epoch = data.steps / t.batches_per_step();
        let slice = rank * data.local..(rank + 1) * data.local;
        let bar = progress_bar(
            cfg.train.progress && rank == 0,
            steps_per_epoch,
            batch_in_epoch,
            epoch,
        );
        let mut acc = Tensor::zeros([acc_len], (Kind::Double, device));
        let mut disc_acc = Tensor::zeros([3], (Kind::Double, device));
        let mut epoch_acc = Tensor::zeros([acc_len], (Kind::Double, device));
        let (mut window_start, mut window_steps) = (Instant::now(), 0u64);
        let (mut train_time, mut train_samples) = (0.0f64, 0u64);
        while batch_in_epoch < steps_per_epoch {
            if cfg.max_steps.is_some_and(|m| step >= m) {
                break;
            }
            let step_sums =
                t.train_step(&data, batch_in_epoch, step, slice.clone(), global_batch)?;
            acc += &step_sums.sums;
            epoch_acc += step_sums.sums;
            if let Some(d) = step_sums.disc {
                disc_acc += d;
            }
            step += 1;
            batch_in_epoch += 1;
            window_steps += 1;
            bar.inc(1);

            if step % cfg.log.every_steps == 0 || batch_in_epoch == steps_per_epoch {
                let mut s =
                    Sums::from_tensor(&acc, latent).map_err(tensor_err(format!("step {step}")))?;
                comm.all_reduce_f64(&mut s.v)?;
                if !s.loss().is_finite() {
                    return Err(TrainError::Invalid(format!(
                        "loss is {} at step {step}: training diverged",
                        s.loss()
                    )));
                }
                let secs = window_start.elapsed().as_secs_f64();
                let sps = (window_steps * global_batch as u64) as f64 / secs.max(1e-9);
                train_time += secs;
                train_samples += window_steps * global_batch as u64;
                bar.set_message(format!("loss {:.2}  {:.0} samples/s", s.loss(), sps));
                let mut d = Vec::new();
                if t.disc.is_some() {
                    d = Vec::<f64>::try_from(disc_acc.to_device(Device::Cpu))
                        .map_err(tensor_err("discriminator sums"))?;
                    comm.all_reduce_f64(&mut d)?;
                }
                if let Some(o) = out.as_mut() {
                    o.scalars("train", &s, step);
                    o.board.scalar("train/lr", lr, step);
                    o.board.scalar("train/samples_per_sec", sps, step);
                    if world > 1 {
                        o.board.scalar(
                            "train/allreduce_ms_per_step",
                            1e3 * t.comm_secs / window_steps.max(1) as f64,
                            step,
                        );
                    }
                    if d.len() == 3 && d[2] > 0.0 {
                        o.board.scalar("train/disc_accuracy", d[0] / d[2], step);
                        o.board.scalar("train/disc_loss", d[1] / d[2], step);
                        last_disc_accuracy = Some(d[0] / d[2]);
                    }
                    if cfg.model.objective == ObjectiveKind::Capacity {
                        o.board
                            .scalar("train/capacity", t.objective.capacity(step), step);
                    }
                }
                acc = Tensor::zeros([acc_len], (Kind::Double, device));
                disc_acc = Tensor::zeros([3], (Kind::Double, device));
                t.comm_secs = 0.0;
                (window_start, window_steps) = (Instant::now(), 0);
            }
            if fault_step == Some(step) && rank == world - 1 {
                // Fault injection for tests (VAE_FAULT_DESYNC_STEP): the last
                // rank's parameters drift from the others'.
                let _ = tch::no_grad(|| t.params.flat.f_add_scalar_(1e-3))
                    .map_err(tensor_err("fault injection"))?;
            }
            if cfg.eval.every_steps > 0
                && step % cfg.eval.every_steps == 0
                && !cfg.eval.metrics.is_empty()
            {
                last_metrics = disentanglement(&t, step, out.as_mut(), &args.run_dir)?;
            }
            if cfg.dist.check_every > 0 && step % cfg.dist.check_every == 0 {
                check_replicas(&t, step)?;
            }
            let stop = stop_requested(&args.stop, comm)?;
            if stop || (cfg.checkpoint.every_steps > 0 && step % cfg.checkpoint.every_steps == 0) {
                let name = checkpoint::step_name(step);
                save(&t, step, epoch, batch_in_epoch, &es, &name, BTreeMap::new())?;
                set_latest(rank, &ckpt_dir, step, cfg)?;
                last_ckpt_step = Some(step);
            }
            if stop {
                bar.finish_and_clear();
                interrupted = true;
                break 'epochs;
            }
        }
        bar.finish_and_clear();
        let epoch_done = batch_in_epoch == steps_per_epoch;
        if train_samples > 0 {
            total_samples_per_sec = train_samples as f64 / train_time.max(1e-9);
        }
        if !epoch_done {
            break 'epochs; // max_steps reached mid-epoch
        }

        // End of epoch: evaluate, log, early stopping, checkpoint.
        let mut train_s =
            Sums::from_tensor(&epoch_acc, latent).map_err(tensor_err("epoch sums"))?;
        comm.all_reduce_f64(&mut train_s.v)?;
        let (test_s, mus, lvs) = t.evaluate(&test_images, cfg.train.eval_batch_size as usize)?;
        let rec = EvalRecord {
            epoch: epoch + 1,
            step,
            train_loss: if train_s.n() > 0.0 {
                train_s.loss()
            } else {
                last_eval.as_ref().map_or(f64::NAN, |e| e.1.train_loss)
            },
            test_loss: test_s.loss(),
            test_recon: test_s.recon(),
            test_kl: test_s.kl(),
            test_active_units: test_s.active_units(),
            samples_per_sec: total_samples_per_sec,
        };
        if let Some(o) = out.as_mut() {
            println!(
                "epoch {:>3}  step {:>7}  train loss {:.4}  test loss {:.4} (recon {:.4}, kl {:.4}, active {}/{})  {:.0} samples/s",
                rec.epoch, step, rec.train_loss, rec.test_loss, rec.test_recon, rec.test_kl, rec.test_active_units, latent, rec.samples_per_sec
            );
            o.scalars("test", &test_s, step);
            if cfg.log.histograms {
                for (tag, v) in [("test/mu", &mus), ("test/logvar", &lvs)] {
                    let vals = Vec::<f32>::try_from(v.to_device(Device::Cpu).view([-1]))
                        .map_err(tensor_err("histogram"))?;
                    o.board.histogram(tag, &vals, step);
                }
            }
            o.pictures(&t, &test_images, epoch, step)?;
            o.board.flush();
        }
        history.push(rec.clone());
        let mut metrics = BTreeMap::new();
        metrics.insert("test_loss".to_string(), rec.test_loss);
        metrics.insert("train_loss".to_string(), rec.train_loss);

        let mut improved = false;
        if es
            .best_loss
            .is_none_or(|b| rec.test_loss < b - cfg.early_stopping.min_delta)
        {
            es.best_loss = Some(rec.test_loss);
            es.best_step = Some(step);
            es.bad_evals = 0;
            improved = true;
        } else {
            es.bad_evals += 1;
        }
        epoch += 1;
        batch_in_epoch = 0;
        last_eval = Some((test_s, rec));
        if cfg.early_stopping.enabled && improved {
            let name = format!("best-{}", checkpoint::step_name(step));
            save(&t, step, epoch, 0, &es, &name, metrics.clone())?;
            if rank == 0 {
                checkpoint::set_pointer(&ckpt_dir, BEST_DIR, &name)?;
            }
        }
        if rank == 0 {
            write_json_atomic(&args.run_dir.join("history.json"), &history)?;
        }
        let stop_now = cfg.early_stopping.enabled && es.bad_evals >= cfg.early_stopping.patience;
        let last_epoch = epoch >= cfg.train.epochs || cfg.max_steps.is_some_and(|m| step >= m);
        if (cfg.checkpoint.every_epochs > 0 && epoch % cfg.checkpoint.every_epochs == 0)
            || stop_now
            || last_epoch
        {
            save(
                &t,
                step,
                epoch,
                0,
                &es,
                &checkpoint::step_name(step),
                metrics,
            )?;
            set_latest(rank, &ckpt_dir, step, cfg)?;
            last_ckpt_step = Some(step);
        }
        if stop_now {
            stopped_early = true;
            if rank == 0 {
                println!(
                    "early stopping: no improvement of the test loss in {} evaluations",
                    es.bad_evals
                );
            }
            break;
        }
    }

    if interrupted {
        if rank == 0 {
            println!(
                "stopped by a signal at step {step}: checkpoint written to {}; continue with --resume",
                ckpt_dir.join(checkpoint::step_name(step)).display()
            );
        }
        return Ok(None);
    }
    // A run that ended mid-epoch (max_steps) is evaluated and checkpointed there.
    if last_eval.as_ref().is_none_or(|e| e.1.step != step) {
        let (test_s, _, _) = t.evaluate(&test_images, cfg.train.eval_batch_size as usize)?;
        let rec = EvalRecord {
            epoch: epoch + u64::from(batch_in_epoch > 0),
            step,
            train_loss: history.last().map_or(f64::NAN, |r| r.train_loss),
            test_loss: test_s.loss(),
            test_recon: test_s.recon(),
            test_kl: test_s.kl(),
            test_active_units: test_s.active_units(),
            samples_per_sec: total_samples_per_sec,
        };
        if let Some(o) = out.as_mut() {
            println!(
                "stopped at step {step}: test loss {:.4} (recon {:.4}, kl {:.4})",
                rec.test_loss, rec.test_recon, rec.test_kl
            );
            o.scalars("test", &test_s, step);
            o.board.flush();
        }
        last_eval = Some((test_s, rec));
    }
    if last_ckpt_step != Some(step) {
        let mut metrics = BTreeMap::new();
        if let Some((_, r)) = &last_eval {
            metrics.insert("test_loss".to_string(), r.test_loss);
        }
        save(
            &t,
            step,
            epoch,
            batch_in_epoch,
            &es,
            &checkpoint::step_name(step),
            metrics,
        )?;
        set_latest(rank, &ckpt_dir, step, cfg)?;
    }

    if !cfg.eval.metrics.is_empty() && !last_metrics.get("step").is_some_and(|s| *s == step as f64)
    {
        last_metrics = disentanglement(&t, step, out.as_mut(), &args.run_dir)?;
    }
    let (test_s, rec) =
        last_eval.ok_or_else(|| TrainError::Invalid("no evaluation was run".into()))?;
    let summary = Summary {
        epoch: rec.epoch,
        step,
        train_loss: rec.train_loss,
        test_loss: test_s.loss(),
        test_recon: test_s.recon(),
        test_kl: test_s.kl(),
        test_kl_per_dim: test_s.kl_per_dim(),
        test_active_units: test_s.active_units(),
        test_tc: test_s.tc(),
        disc_accuracy: last_disc_accuracy,
        metrics: last_metrics,
        samples_per_sec: total_samples_per_sec,
        best_test_loss: es.best_loss,
        best_step: es.best_step,
        stopped_early,
        world_size: world,
        device: format!("{device:?}"),
        history,
    };
    if rank == 0 {
        write_json_atomic(&args.run_dir.join("summary.json"), &summary)?;
    }
    Ok(Some(summary))
}

/// Disentanglement metrics of the current model (`eval.metrics`), computed
/// by rank 0 while the others wait; logged to TensorBoard and appended to
/// `metrics.json`.
fn disentanglement(
    t: &Trainer,
    step: u64,
    out: Option<&mut Outputs>,
    run_dir: &Path,
) -> Result<BTreeMap<String, f64>, TrainError> {
    let mut values = BTreeMap::new();
    if let Some(o) = out {
        let started = Instant::now();
        values = t.factor_metrics();
        for (k, v) in &values {
            o.board.scalar(&format!("metrics/{k}"), *v, step);
        }
        o.board.flush();
        let shown: Vec<String> = values.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        println!(
            "step {step}: {} ({:.0} s)",
            shown.join(", "),
            started.elapsed().as_secs_f64()
        );
        values.insert("step".into(), step as f64);
        let path = run_dir.join("metrics.json");
        let mut all: Vec<BTreeMap<String, f64>> = fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        all.retain(|m| m.get("step").is_some_and(|s| *s < step as f64));
        all.push(values.clone());
        write_json_atomic(&path, &all)?;
    }
    t.comm.barrier()?;
    Ok(values)
}

/// Whether any rank was asked to stop (all ranks get the same answer).
fn stop_requested(stop: &StopFlag, comm: &dyn Comm) -> Result<bool, TrainError> {
    let mut v = [if stop.raised() { 1.0 } else { 0.0 }];
    if comm.world_size() > 1 {
        comm.all_reduce_f64(&mut v)?;
    }
    Ok(v[0] > 0.0)
}

/// Compares a checksum of the parameters across ranks (`dist.check_every`).
fn check_replicas(t: &Trainer, step: u64) -> Result<(), TrainError> {
    let sum = t.params.flat.sum(Kind::Double).double_value(&[]);
    let sq = t.params.flat.square().sum(Kind::Double).double_value(&[]);
    for v in [sum, sq] {
        let (lo, hi) = t.comm.min_max_f64(v)?;
        if lo.to_bits() != hi.to_bits() {
            return Err(TrainError::Invalid(format!(
                "parameters differ across ranks at step {step} (checksums from {lo} to {hi})"
            )));
        }
    }
    Ok(())
}

/// Points `latest` at the checkpoint of `step` and drops old ones (rank 0).
fn set_latest(rank: usize, dir: &Path, step: u64, cfg: &Config) -> Result<(), CheckpointError> {
    if rank != 0 {
        return Ok(());
    }
    let name = checkpoint::step_name(step);
    checkpoint::set_pointer(dir, LATEST_POINTER, &name)?;
    let mut protect = vec![dir.join(&name)];
    if let Some(best) = checkpoint::follow(dir, BEST_DIR)? {
        protect.push(best);
    }
    checkpoint::prune(dir, cfg.checkpoint.keep_last as usize, &protect)
}

fn progress_bar(show: bool, len: u64, pos: u64, epoch: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("epoch {}", epoch + 1));
    bar.set_position(pos);
    bar
}

/// What `vae-worker eval` was asked to do.
pub struct EvalArgs {
    pub checkpoint: PathBuf,
    /// Metrics to compute (the run's `eval.metrics` when empty).
    pub metrics: Vec<String>,
    pub scale: Option<f64>,
    /// Config overrides on top of the run's resolved config (e.g. `data.url`).
    pub set: Vec<String>,
    pub out: Option<PathBuf>,
}

/// Evaluates a checkpoint on the test split (reconstruction, KL, TC estimate,
/// active units, the discriminator's accuracy) and, on data with known
/// factors, the disentanglement metrics; writes them as JSON and to the run's
/// TensorBoard log. Returns the figures.
pub fn eval_checkpoint(args: EvalArgs) -> Result<BTreeMap<String, f64>, TrainError> {
    let dir = checkpoint::resolve(&args.checkpoint)?;
    let run_dir = dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            TrainError::Invalid(format!("{}: not inside a run directory", dir.display()))
        })?;
    let mut sets = args.set.clone();
    if !args.metrics.is_empty() {
        sets.push(format!(
            "eval.metrics=[{}]",
            args.metrics
                .iter()
                .map(|m| format!("\"{m}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(s) = args.scale {
        sets.push(format!("eval.scale={s}"));
    }
    let cfg_path = run_dir.join("config.toml");
    let cfg = vae_proto::config::load(&cfg_path, &sets)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", cfg_path.display())))?;
    let device = pick_device(cfg.train.device, 0)?;
    let dataset = Dataset::open(&cfg.data.url)?;
    let shape = dataset.manifest.sample_shape;
    let n_train = dataset.split("train")?.samples as usize;
    let test_images = split_tensor(&dataset, "test", None, device)?;
    let comm = crate::comm::Single;
    let mut t = Trainer::new(&cfg, &comm, device, shape, n_train)?;
    let loaded = checkpoint::read(&dir)?;
    t.load(&loaded)?;
    let step = loaded.manifest.step;
    let (s, _, _) = t.evaluate(&test_images, cfg.train.eval_batch_size as usize)?;
    let mut out = BTreeMap::new();
    out.insert("step".to_string(), step as f64);
    out.insert("test_loss".to_string(), s.loss());
    out.insert("test_recon".to_string(), s.recon());
    out.insert("test_kl".to_string(), s.kl());
    out.insert("test_tc".to_string(), s.tc());
    out.insert("test_active_units".to_string(), s.active_units() as f64);
    if let Some(acc) = t.disc_accuracy_on(&test_images)? {
        out.insert("disc_accuracy".to_string(), acc);
    }
    require_factors(&cfg, &dataset, "--metrics")?;
    out.extend(t.factor_metrics());
    let json_path = args
        .out
        .unwrap_or_else(|| run_dir.join(format!("eval-step-{step:010}.json")));
    write_json_atomic(&json_path, &out)?;
    let tb = run_dir.join("tensorboard");
    if tb.is_dir() {
        let mut board = Board::new(&tb);
        for (k, v) in out.iter().filter(|(k, _)| k.as_str() != "step") {
            board.scalar(&format!("eval/{k}"), *v, step);
        }
        board.flush();
    }
    Ok(out)
}

/// Disentanglement metrics need a dataset with known factors: refuses
/// `eval.metrics` on any other (`what` names the setting in the message).
fn require_factors(cfg: &Config, dataset: &Dataset, what: &str) -> Result<(), TrainError> {
    if !cfg.eval.metrics.is_empty() && dataset.manifest.name != "dsprites" {
        return Err(TrainError::Invalid(format!(
            "{what}: disentanglement metrics need a dataset with known factors (dsprites); {} is `{}`",
            cfg.data.url, dataset.manifest.name
        )));
    }
    Ok(())
}

impl Trainer<'_> {
    /// The configured disentanglement metrics (`eval.metrics`, empty for
    /// none) of the model's mean codes on dSprites rendered by the generator.
    fn factor_metrics(&self) -> BTreeMap<String, f64> {
        let mut gt = EncoderOnDsprites {
            model: self.model.as_ref(),
            device: self.device,
            kind: self.kind,
        };
        let budget = Budget {
            scale: self.cfg.eval.scale,
        };
        crate::disentanglement::compute(
            &self.cfg.eval.metrics,
            &mut gt,
            budget,
            self.cfg.train.seed,
        )
    }

    /// FactorVAE: the discriminator's accuracy on codes of the test split
    /// against dimension-wise permuted codes of its other half.
    fn disc_accuracy_on(&self, images: &Tensor) -> Result<Option<f64>, TrainError> {
        let Some(disc) = &self.disc else {
            return Ok(None);
        };
        let half = (images.size()[0] / 2).min(1000);
        if half < 2 {
            return Ok(None);
        }
        let acc = tch::no_grad(|| {
            let code = |start: i64| {
                let x = images.narrow(0, start, half).to_kind(self.kind) / 255.0;
                let (mu, lv) = self.model.encode(&x);
                sample_z(
                    &mu,
                    &lv,
                    self.cfg.train.seed,
                    Stream::EvalNoise,
                    1,
                    start as u64..(start + half) as u64,
                )
            };
            let real = disc.net.forward(&code(0)).argmax(1, false).eq(0);
            let fake = disc
                .net
                .forward(&discriminator::permute_dims(
                    &code(half),
                    self.cfg.train.seed,
                    u64::MAX,
                ))
                .argmax(1, false)
                .eq(1);
            (real.sum(Kind::Double) + fake.sum(Kind::Double)).double_value(&[]) / (2 * half) as f64
        });
        Ok(Some(acc))
    }
}

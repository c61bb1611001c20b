//! Evaluation of the current model: the test split's sums (each rank
//! evaluates its part; the sums are reduced over ranks), the pictures rank 0
//! reports (reconstructions, prior samples, latent traversals), the
//! regulariser's figures, and the disentanglement metrics on data with known
//! factors. Shared by the training loop and `vae-worker eval`.
use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};
use vae_proto::config::Config;

use super::error::{tensor_err, TrainError};
use super::step::{Pass, Trainer};
use crate::collective::{Comm, Whole};
use crate::data::format::Dataset;
use crate::data::lookup::FactorData;
use crate::disentanglement::{self, Budget, EncoderOnStored};
use crate::images;
use crate::metrics::{batch_sums, sums_len, Sums};
use crate::rng::{self, Stream};
use crate::tensorboard::Histogram;

/// The test split's figures: sums over all ranks, and `μ`, `log σ²` of this
/// rank's part `[n, L]` (for histograms).
pub struct TestEval {
    pub sums: Sums,
    pub mu: Tensor,
    pub logvar: Tensor,
}

/// Evaluates `images` (`u8`, `[N, C, H, W]`) in blocks of
/// `train.eval_batch_size` samples, or of `train.batch_size` for objectives
/// defined on a batch (capacity, β-TCVAE: each block is one such batch), with
/// the evaluation noise indexed by sample. Ranks take whole blocks, so the
/// figures do not depend on the number of workers.
pub fn test_split(t: &Trainer, images: &Tensor) -> Result<TestEval, TrainError> {
    let train = &t.cfg.train;
    let block = if t.objective.batch_level() {
        train.batch_size
    } else {
        train.eval_batch_size
    } as usize;
    let comm = t.comm();
    let n = images.size()[0] as usize;
    let (rank, world) = (comm.rank(), comm.world_size());
    let blocks = n.div_ceil(block);
    let lo = blocks * rank / world * block;
    let hi = (blocks * (rank + 1) / world * block).min(n);
    let mut acc = Tensor::zeros([sums_len(t.latent)], (Kind::Double, t.device));
    let (mut mus, mut lvs) = (Vec::new(), Vec::new());
    tch::no_grad(|| -> Result<(), TrainError> {
        for start in (lo..hi).step_by(block) {
            let end = (start + block).min(hi);
            let x = t.pixels(&images.narrow(0, start as i64, (end - start) as i64));
            let rows = start as u64..end as u64;
            let scope = Whole {
                rows: (end - start) as i64,
            };
            let step = t.weights.adam.t;
            let Pass {
                terms, mu, logvar, ..
            } = t.forward(&x, Stream::EvalNoise, 0, rows, step, &scope)?;
            acc += batch_sums(&terms, &mu);
            crate::heartbeat::beat();
            mus.push(mu);
            lvs.push(logvar);
        }
        Ok(())
    })?;
    let mut sums = Sums::from_tensor(&acc, t.latent).map_err(tensor_err("evaluation"))?;
    comm.all_reduce_f64(&mut sums.v)?;
    let cat = |v: &[Tensor]| {
        if v.is_empty() {
            Tensor::zeros([0], (Kind::Float, Device::Cpu))
        } else {
            Tensor::cat(v, 0)
        }
    };
    Ok(TestEval {
        sums,
        mu: cat(&mus),
        logvar: cat(&lvs),
    })
}

/// The histograms of `μ` and `log σ²` over the whole test split: each
/// rank's part counted in one range over all ranks, the counts added up
/// (every rank takes part; a rank without test samples adds nothing).
pub fn histograms(comm: &dyn Comm, test: &TestEval) -> Result<[Histogram; 2], TrainError> {
    let one = |t: &Tensor| -> Result<Histogram, TrainError> {
        let flat = t.to_device(Device::Cpu).to_kind(Kind::Float).reshape([-1]);
        let vals = Vec::<f32>::try_from(flat).map_err(tensor_err("histogram"))?;
        let (lo, hi) = Histogram::range(&vals);
        let (min, _) = comm.min_max_f64(lo)?;
        let (_, max) = comm.min_max_f64(hi)?;
        let mut h = Histogram::part(&vals, min, max);
        let mut sums = h.to_sums();
        comm.all_reduce_f64(&mut sums)?;
        h.set_sums(&sums);
        Ok(h)
    };
    Ok([one(&test.mu)?, one(&test.logvar)?])
}

/// Images for the report, each `[n, C, H, W]` in [0, 1], with the number per
/// grid row.
pub struct Pictures {
    /// The first test images above their reconstructions from `μ`.
    pub reconstructions: Tensor,
    /// Decoded draws from the prior (fixed noise).
    pub prior: Tensor,
    /// Each latent dimension swept over ±3 around the first test image's `μ`.
    pub traversal: Tensor,
}

/// The pictures of the current model from the first `log.images` test
/// images; `None` when there are none to show.
pub fn pictures(t: &Trainer, test: &Tensor) -> Option<Pictures> {
    let k = (t.cfg.log.images as i64).min(test.size()[0]);
    if k == 0 {
        return None;
    }
    Some(tch::no_grad(|| {
        let x = t.pixels(&test.narrow(0, 0, k));
        let (mu, _) = t.model.encode(&x);
        let reconstructions = images::pairs(&x, &t.model.decode(&mu).sigmoid());
        let noise = rng::normals(t.cfg.train.seed, Stream::Prior, 0, 0..k as u64, t.latent);
        let z = Tensor::from_slice(&noise)
            .view([k, t.latent as i64])
            .to_device(t.device)
            .to_kind(t.kind);
        let prior = t.model.decode(&z).sigmoid();
        let traversal = images::traversal(&mu.narrow(0, 0, 1), 10, |z| t.model.decode(z).sigmoid());
        Pictures {
            reconstructions,
            prior,
            traversal,
        }
    }))
}

/// The trained encoder on the stored images of `data`: what the metrics and
/// the traversal's labels measure.
fn encoder_on<'a>(t: &'a Trainer, data: &'a FactorData) -> EncoderOnStored<'a> {
    EncoderOnStored {
        model: t.model.as_ref(),
        device: t.device,
        kind: t.kind,
        data,
        failed: None,
        draws: 0,
    }
}

/// The configured disentanglement metrics (`eval.metrics`; empty for none)
/// of the model's mean codes on the stored images of the factor dataset
/// `data`.
pub fn factor_metrics(t: &Trainer, data: &FactorData) -> Result<BTreeMap<String, f64>, TrainError> {
    let (mut gt, budget) = (
        encoder_on(t, data),
        Budget {
            scale: t.cfg.eval.scale,
        },
    );
    let values = disentanglement::compute(&t.cfg.eval.metrics, &mut gt, budget, t.cfg.train.seed);
    match gt.failed {
        Some(e) => Err(e.into()),
        None => Ok(values),
    }
}

/// Which factor each latent dimension captures — a latent traversal's row
/// labels — as JSON rows (`dim`, `factor`, `share` of its entropy, and the
/// factor's values from first to last in its units where the dataset has
/// them), and one line saying it.
pub fn latent_factors(
    t: &Trainer,
    data: &FactorData,
) -> Result<(serde_json::Value, String), TrainError> {
    let (mut gt, budget) = (
        encoder_on(t, data),
        Budget {
            scale: t.cfg.eval.scale,
        },
    );
    let found = disentanglement::captured::captured(&mut gt, budget, t.cfg.train.seed);
    crate::faults::draws::finish("captured");
    if let Some(e) = gt.failed {
        return Err(e.into());
    }
    let (mut rows, mut said, mut none) = (Vec::new(), Vec::new(), Vec::new());
    for (dim, c) in found.iter().enumerate() {
        let Some(c) = c else {
            none.push(format!("z{dim}"));
            rows.push(serde_json::json!({ "dim": dim, "factor": null }));
            continue;
        };
        let f = data.scored.get(c.factor).and_then(|&k| data.factors.get(k));
        let name = f.map_or("?".to_string(), |f| f.name.clone());
        let range = f.and_then(|f| Some((*f.units.first()?, *f.units.last()?)));
        let short = |x: f64| format!("{}", (x * 1000.0).round() / 1000.0);
        let span = range.map_or(String::new(), |(a, b)| {
            format!(" {}…{}", short(a), short(b))
        });
        said.push(format!("z{dim} ≈ {name}{span} ({:.2})", c.share));
        let units = range.map(|(a, b)| serde_json::json!([a, b]));
        rows.push(
            serde_json::json!({ "dim": dim, "factor": name, "share": c.share, "units": units }),
        );
    }
    let mut line = format!("latent: {}", said.join(", "));
    if !none.is_empty() {
        line += &format!(
            "{}{} capture no factor",
            if said.is_empty() { "" } else { "; " },
            none.join(", ")
        );
    }
    Ok((serde_json::json!({ "rows": rows }), line))
}

/// The regulariser's figures on `images` (FactorVAE: the discriminator's accuracy).
pub fn regularizer_figures(t: &Trainer, images: &Tensor) -> Vec<(&'static str, f64)> {
    t.regularizer.as_ref().map_or_else(Vec::new, |r| {
        r.evaluate(t.model.as_ref(), images, t.cfg.train.seed)
    })
}

/// What the disentanglement metrics (`eval.metrics`) read: the factor
/// dataset's images by factor combination, opened (its shards verified, or
/// fetched into the cache) when `open` (on the rank that computes them).
/// Refuses metrics on a dataset with no factor grid (`what` names the
/// setting in the message).
pub fn factor_data(
    cfg: &Config,
    dataset: &Dataset,
    what: &str,
    open: bool,
) -> Result<Option<FactorData>, TrainError> {
    if cfg.eval.metrics.is_empty() {
        return Ok(None);
    }
    if dataset.manifest.factors.is_none() {
        return Err(TrainError::Invalid(format!(
            "{what}: disentanglement metrics need a factor dataset (dsprites, shapes3d, mpi3d: a manifest with `factors`); {} is `{}`{}",
            vae_proto::redact::redact(&cfg.data.url),
            dataset.manifest.name,
            if dataset.manifest.name == "dsprites" {
                " prepared before factor grids were recorded: prepare it again"
            } else {
                ""
            }
        )));
    }
    if !open {
        return Ok(None);
    }
    Ok(FactorData::open(dataset)?)
}

//! A trained encoder on a factor dataset's stored images: the
//! [`GroundTruth`] the training loop and `vae-worker eval` measure.
use tch::{Device, Kind, Tensor};

use super::ground_truth::GroundTruth;
use crate::rng::{self, Stream};

/// A factor dataset's stored images (found by factor combination through
/// its grid, see [`crate::data::lookup`]), encoded by a model to its mean
/// codes `μ` (or sampled codes `μ + σ·ε`). A read that fails is kept in `failed` (the metrics are then
/// not reported).
pub struct EncoderOnStored<'a> {
    pub model: &'a dyn crate::model::Vae,
    pub device: Device,
    pub kind: Kind,
    pub data: &'a crate::data::lookup::FactorData,
    pub failed: Option<crate::data::DataError>,
    /// Batches drawn so far: the counter of the nuisance factors' draws.
    pub draws: u64,
}

impl GroundTruth for EncoderOnStored<'_> {
    /// The scored factors' sizes (a nuisance factor is drawn, not scored).
    fn factor_sizes(&self) -> Vec<usize> {
        self.data.scored_sizes()
    }

    /// The mean codes `μ`.
    fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>> {
        self.posteriors(factors)
            .into_iter()
            .map(|(mu, _)| mu)
            .collect()
    }

    /// `μ + exp(½ log σ²)·ε`, row `i`'s `ε` the `i`-th of `seed`'s
    /// [`Stream::SampledCodes`] (a fresh draw for each row, repeated images
    /// alike, as disentanglement_lib samples).
    fn represent_sampled(&mut self, factors: &[Vec<usize>], seed: u64) -> Vec<Vec<f32>> {
        let posteriors = self.posteriors(factors);
        let l = posteriors.first().map_or(0, |(mu, _)| mu.len());
        let eps = rng::normals(seed, Stream::SampledCodes, 0, 0..factors.len() as u64, l);
        let eps: Vec<&[f32]> = eps.chunks(l.max(1)).collect();
        crate::faults::draws::noise(&eps);
        posteriors
            .iter()
            .zip(eps)
            .map(|((mu, logvar), e)| {
                let (mu, logvar) = (mu.iter(), logvar.iter());
                mu.zip(logvar)
                    .zip(e)
                    .map(|((m, v), e)| m + (0.5 * v).exp() * e)
                    .collect()
            })
            .collect()
    }
}

/// A posterior's `(μ, log σ²)`, each `[L]`.
type Posterior = (Vec<f32>, Vec<f32>);

impl EncoderOnStored<'_> {
    /// The posterior of each row's image: each distinct image is read and
    /// encoded once (draws repeat factor combinations), 512 at a time.
    /// Row `i`'s nuisance factors are drawn from [`Stream::Nuisance`]
    /// (counter: the batch, index: the row), as disentanglement_lib's
    /// `sample_all_factors` draws them for each observation.
    fn posteriors(&mut self, factors: &[Vec<usize>]) -> Vec<Posterior> {
        self.draws += 1;
        let positions: Vec<usize> = (factors.iter().enumerate())
            .map(|(i, f)| {
                let key = rng::key(0, Stream::Nuisance, self.draws, i as u64);
                let full = self.data.combination(f, |k, n| {
                    rng::below(rng::bits(key, k as u64), n as u64) as usize
                });
                self.data.position(&full)
            })
            .collect();
        let mut distinct = positions.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut codes = Vec::with_capacity(distinct.len());
        for chunk in distinct.chunks(512) {
            crate::heartbeat::beat();
            codes.extend(self.encode(chunk));
        }
        positions
            .iter()
            .map(|p| codes[distinct.partition_point(|d| d < p)].clone())
            .collect()
    }

    /// The posteriors of the stored images at `positions`.
    fn encode(&mut self, positions: &[usize]) -> Vec<Posterior> {
        let [c, h, w] = self.data.shape.map(|d| d as i64);
        let pixels = match self.data.images(positions) {
            Ok(p) if self.failed.is_none() => p,
            Ok(_) => vec![0; positions.len() * (c * h * w) as usize],
            Err(e) => {
                self.failed.get_or_insert(e);
                vec![0; positions.len() * (c * h * w) as usize]
            }
        };
        let x = match &self.data.variant {
            // The metrics' draws: counter 2^63 + the batch, index = the grid position.
            Some(v) => {
                let ids: Vec<u64> = positions.iter().map(|&p| p as u64).collect();
                let made = v.apply(
                    &pixels,
                    (h as usize, w as usize),
                    &ids,
                    (1 << 63) + self.draws,
                );
                Tensor::from_slice(&made)
                    .view([positions.len() as i64, 3, h, w])
                    .to_device(self.device)
                    .to_kind(self.kind)
            }
            None => {
                Tensor::from_slice(&pixels)
                    .view([positions.len() as i64, c, h, w])
                    .to_device(self.device)
                    .to_kind(self.kind)
                    / 255.0
            }
        };
        let (mu, logvar) = tch::no_grad(|| self.model.encode(&x));
        let rows = |t: Tensor| {
            let t = t.to_kind(Kind::Float).to_device(Device::Cpu);
            let d = t.size()[1] as usize;
            let flat = Vec::<f32>::try_from(t.contiguous().view([-1])).unwrap_or_default();
            flat.chunks(d.max(1))
                .map(<[f32]>::to_vec)
                .collect::<Vec<_>>()
        };
        rows(mu).into_iter().zip(rows(logvar)).collect()
    }
}

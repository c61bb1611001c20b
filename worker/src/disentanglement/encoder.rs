//! A trained encoder on a factor dataset's stored images: the
//! [`GroundTruth`] the training loop and `vae-worker eval` measure.
use tch::{Device, Kind, Tensor};

use super::ground_truth::GroundTruth;

/// A factor dataset's stored images (found by factor combination through
/// its grid, see [`crate::data::lookup`]), encoded by a model to its mean
/// codes `μ`. A read that fails is kept in `failed` (the metrics are then
/// not reported).
pub struct EncoderOnStored<'a> {
    pub model: &'a dyn crate::model::Vae,
    pub device: Device,
    pub kind: Kind,
    pub data: &'a crate::data::lookup::FactorData,
    pub failed: Option<crate::data::DataError>,
}

impl GroundTruth for EncoderOnStored<'_> {
    fn factor_sizes(&self) -> Vec<usize> {
        self.data.grid.clone()
    }

    /// Each distinct image is read and encoded once (draws repeat factor
    /// combinations), 512 at a time.
    fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>> {
        let positions: Vec<usize> = factors.iter().map(|f| self.data.position(f)).collect();
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
}

impl EncoderOnStored<'_> {
    /// The mean codes of the stored images at `positions`.
    fn encode(&mut self, positions: &[usize]) -> Vec<Vec<f32>> {
        let [c, h, w] = self.data.shape.map(|d| d as i64);
        let pixels = match self.data.reader.images(positions) {
            Ok(p) if self.failed.is_none() => p,
            Ok(_) => vec![0; positions.len() * (c * h * w) as usize],
            Err(e) => {
                self.failed.get_or_insert(e);
                vec![0; positions.len() * (c * h * w) as usize]
            }
        };
        let x = Tensor::from_slice(&pixels)
            .view([positions.len() as i64, c, h, w])
            .to_device(self.device)
            .to_kind(self.kind)
            / 255.0;
        let mu = tch::no_grad(|| self.model.encode(&x).0)
            .to_kind(Kind::Float)
            .to_device(Device::Cpu);
        let d = mu.size()[1] as usize;
        let flat = Vec::<f32>::try_from(mu.contiguous().view([-1])).unwrap_or_default();
        flat.chunks(d.max(1)).map(|r| r.to_vec()).collect()
    }
}

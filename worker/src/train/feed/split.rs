//! A split read whole onto the device (the test split; the training split
//! in `global` order).
use tch::{Device, Tensor};

use crate::data::format::Dataset;
use crate::train::error::{tensor_err, TrainError};

/// Reads the shards `which` (all when `None`) of a split and returns their
/// images as one `u8` tensor `[N, C, H, W]` on `device`.
pub fn load_split(
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

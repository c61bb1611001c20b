//! A dSprites variant ([`crate::data::variant`]) made of a batch, as the
//! tensor the step trains on.
use tch::{Device, Kind, Tensor};

use crate::data::variant::Variants;
use crate::train::error::{tensor_err, TrainError};

/// Samples `ids` (one byte per pixel, `[n, 1, h, w]`) as `v` makes them
/// under `counter`: `[n, 3, h, w]` in [0, 1] on `device`, of `kind`.
pub fn made(
    v: &Variants,
    images: &[u8],
    (h, w): (i64, i64),
    ids: &[u64],
    counter: u64,
    (device, kind): (Device, Kind),
) -> Result<Tensor, TrainError> {
    let made = v.apply(images, (h as usize, w as usize), ids, counter);
    crate::faults::record_variant(ids, counter, &made);
    Tensor::from_slice(&made)
        .f_view([ids.len() as i64, 3, h, w])
        .and_then(|t| t.f_to_device(device))
        .and_then(|t| t.f_to_kind(kind))
        .map_err(tensor_err("a batch of the data.variant onto the device"))
}

/// A `u8` image tensor `[n, 1, h, w]` (on any device) as bytes.
pub fn bytes_of(images: &Tensor) -> Result<Vec<u8>, TrainError> {
    let flat = images
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_contiguous())
        .and_then(|t| t.f_view([-1]))
        .map_err(tensor_err("a batch of the data.variant off the device"))?;
    Vec::<u8>::try_from(&flat).map_err(tensor_err("a batch of the data.variant off the device"))
}

/// The run's `data.variant` for `dataset` (`None` for `none`): refused, one
/// line, unless the dataset's images are binary and single-channel
/// (dSprites); the Scream picture read from its path or URL.
pub fn open(
    cfg: &vae_proto::config::Config,
    dataset: &crate::data::format::Dataset,
    storage: &crate::data::store::StorageOptions,
) -> Result<Option<std::sync::Arc<Variants>>, TrainError> {
    use vae_proto::config::DataVariant;
    let d = &cfg.data;
    if d.variant == DataVariant::None {
        return Ok(None);
    }
    let m = &dataset.manifest;
    if m.dtype != "u1" || m.sample_shape[0] != 1 {
        return Err(TrainError::Invalid(format!(
            "config key `data.variant`: {:?} is made from binary single-channel images (dSprites); {} holds {} images of {} channels",
            d.variant, d.url, m.dtype, m.sample_shape[0]
        )));
    }
    let scream = match d.variant {
        DataVariant::Scream => {
            let input = crate::data::import::local_input(&d.scream_image, storage)?;
            Some(crate::data::variant::load_picture(
                &input.path,
                &crate::data::store::redact(&d.scream_image),
            )?)
        }
        _ => None,
    };
    Ok(Some(std::sync::Arc::new(Variants {
        variant: d.variant,
        seed: cfg.train.seed,
        scream,
    })))
}

/// The counter of the test split's draws (fixed: the test images are the
/// same at every evaluation).
pub const TEST_COUNTER: u64 = u64::MAX;

/// The test split as the variant makes it (draws under [`TEST_COUNTER`]),
/// stored as bytes like any split: `u8` `[n, 3, H, W]` on the images' device.
pub fn test_images(v: Option<&Variants>, images: Tensor) -> Result<Tensor, TrainError> {
    made_bytes(v, images, 0)
}

/// Samples `first..` of a split (`u8` `[n, 1, H, W]`) as the variant makes
/// them under [`TEST_COUNTER`], as bytes: `u8` `[n, 3, H, W]` on the images'
/// device (unchanged without a variant).
pub fn made_bytes(v: Option<&Variants>, images: Tensor, first: u64) -> Result<Tensor, TrainError> {
    let Some(v) = v else {
        return Ok(images);
    };
    let (n, h, w) = (images.size()[0], images.size()[2], images.size()[3]);
    let ids: Vec<u64> = (first..first + n as u64).collect();
    let made = v.apply(
        &bytes_of(&images)?,
        (h as usize, w as usize),
        &ids,
        TEST_COUNTER,
    );
    let bytes: Vec<u8> = made.iter().map(|x| (x * 255.0).round() as u8).collect();
    Tensor::from_slice(&bytes)
        .f_view([n, 3, h, w])
        .and_then(|t| t.f_to_device(images.device()))
        .map_err(tensor_err(
            "the test split of the data.variant onto the device",
        ))
}

//! `vae-worker data read`: how fast the storage delivers the training data,
//! read as the only worker of a run would.
use tch::{Device, Kind};
use vae_proto::config::Config;

use super::source::Feed;
use crate::train::error::TrainError;

/// What `vae-worker data read` measured.
#[derive(Debug, serde::Serialize)]
pub struct Throughput {
    pub url: String,
    pub samples: u64,
    pub seconds: f64,
    pub samples_per_sec: f64,
}

/// Reads `epochs` epochs of the training data as the only worker of a run
/// of `cfg` would (opening included), on the CPU, and times it.
pub fn read_throughput(cfg: &Config, epochs: u64) -> Result<Throughput, TrainError> {
    let started = std::time::Instant::now();
    let storage = crate::data::store::StorageOptions::from_config(&cfg.storage);
    let dataset = crate::data::streamed::open_data(&cfg.data, &storage)?;
    let mut feed = Feed::open(cfg, dataset, 0, 1, (Device::Cpu, Kind::Float), None)?;
    let mut samples = 0u64;
    for e in 0..epochs {
        let mut epoch = feed.epoch(e, 0, 1, 1)?;
        while let Some(b) = epoch.next_step() {
            samples += b?.x.size()[0] as u64;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Throughput {
        url: cfg.data.url.clone(),
        samples,
        seconds,
        samples_per_sec: samples as f64 / seconds.max(1e-9),
    })
}

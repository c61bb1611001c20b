//! WebDataset tars read as a dataset without conversion: `data.url` names
//! the shards (`s3://bucket/celeba/shard-{000000..000099}.tar`, a path with
//! brace ranges or lists) and `[data.decode]` gives the image importer's
//! options. Opening scans every tar once (fetched `storage.concurrency` at
//! a time, into the shard cache when there is one): each sample's key puts
//! it in the test split by the importer's hash ([`images::in_test`]), the
//! test samples are decoded and held, and each tar becomes a train shard
//! of as many samples as it has train samples, verified by its length and
//! SHA-256 when fetched again. Training then deals, fetches and shuffles
//! these shards as any other (`shard` order: ranges of tars; `global`:
//! every tar decoded once), each piece decoded on every core as it
//! is fetched ([`Tars::decode`], on its own thread while training runs) —
//! so a streamed and a converted dataset are the same samples in the same
//! order. A sample whose image does not decode is skipped, as the importer
//! skips it, and named on stderr; its place in the deal was fixed when the
//! tars were scanned, so the stream that holds it reads one sample fewer
//! (see `train/feed/stream.rs`, which counts it for TensorBoard).
use std::io::Cursor;
use std::sync::Arc;

use futures::StreamExt;
use vae_proto::config::DataSection;
use vae_proto::dataset::{DatasetManifest, ShardEntry, SplitManifest, DATASET_FORMAT};

use super::digest::sha256_hex;
use super::error::DataError;
use super::format::{Dataset, Decoded, Decoder, SplitData};
use super::import::braces::expand_braces;
use super::import::images::{decode_all, in_test, Options};
use super::import::wds::{read_tar_from, Raw};
use super::runtime::runtime;
use super::store::{StorageOptions, Store};

/// The dataset `data` names: WebDataset tars streamed, or one in the
/// project's format.
pub fn open_data(data: &DataSection, options: &StorageOptions) -> Result<Dataset, DataError> {
    if vae_proto::config::names_tars(&data.url) {
        open(data, options)
    } else {
        Dataset::open_images(&data.url, options)
    }
}

/// The tars of a streamed dataset and how their samples decode.
pub struct Tars {
    names: Vec<String>,
    options: Options,
    test: SplitData,
}

/// Whether `raw` is a sample with an image (what a tar's shard holds).
fn has_image(raw: &Raw) -> bool {
    raw.problem.is_none() && !raw.bytes.is_empty()
}

/// The train and test samples of a tar held in memory, in order.
fn samples(name: &str, bytes: &[u8], fraction: f64) -> Result<(Vec<Raw>, Vec<Raw>), DataError> {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    read_tar_from(Cursor::new(bytes), bytes.len() as u64, name, 256, |batch| {
        for raw in batch.into_iter().filter(has_image) {
            match in_test(&raw.key, fraction) {
                true => test.push(raw),
                false => train.push(raw),
            }
        }
        Ok(())
    })?;
    Ok((train, test))
}

impl Tars {
    /// `raws` decoded; one that does not decode is skipped (counted, named).
    fn decoded(&self, name: &str, raws: &[Raw]) -> Decoded {
        let per = (self.options.size as usize).pow(2) * usize::from(self.options.channels);
        let mut out = Decoded {
            samples: Vec::with_capacity(raws.len() * per),
            kept: Vec::with_capacity(raws.len()),
        };
        for (k, (raw, img)) in raws.iter().zip(decode_all(raws, &self.options)).enumerate() {
            match img {
                Ok(img) => {
                    out.samples.extend(img);
                    out.kept.push(k as u32);
                }
                Err(e) => {
                    vae_proto::errln!(
                        "data: {name}: sample `{}` does not decode ({e}): skipped",
                        raw.key
                    );
                }
            }
        }
        out
    }
}

impl Decoder for Tars {
    fn decode(
        &self,
        i: usize,
        bytes: &[u8],
        start: usize,
        end: usize,
    ) -> Result<Decoded, DataError> {
        let name = self.names.get(i).map_or("(tar)", String::as_str);
        let (train, _) = samples(name, bytes, self.options.test_fraction)?;
        let end = end.min(train.len());
        Ok(self.decoded(name, &train[start.min(end)..end]))
    }

    fn test(&self) -> SplitData {
        self.test.clone()
    }
}

/// The tars `data.url` names: their store (the folder they share) and
/// their names in it.
fn tar_names(url: &str, opts: &StorageOptions) -> Result<(Store, Vec<String>), DataError> {
    let bad = |message: String| DataError::InvalidUrl {
        url: url.to_string(),
        message,
    };
    let specs = expand_braces(url).map_err(bad)?;
    let parent = |s: &str| {
        s.rsplit_once('/')
            .map_or(".".to_string(), |p| p.0.to_string())
    };
    let folder = specs.first().map(|s| parent(s)).unwrap_or_default();
    if specs.iter().any(|s| parent(s) != folder) {
        return Err(bad("data.url: the tars must share one folder".into()));
    }
    let names = specs
        .iter()
        .map(|s| s.rsplit('/').next().unwrap_or(s).to_string());
    Ok((Store::open(&folder, opts)?, names.collect()))
}

/// Opens the tars `data.url` names: every tar scanned once (see the module).
pub fn open(data: &DataSection, opts: &StorageOptions) -> Result<Dataset, DataError> {
    let (store, names) = tar_names(&data.url, opts)?;
    let d = &data.decode;
    let options = Options {
        size: d.size,
        crop: (d.crop > 0).then_some(d.crop),
        channels: d.channels,
        test_fraction: d.test_fraction,
        shard_samples: 0,
    };
    let tars = Tars {
        names: names.clone(),
        options,
        test: SplitData {
            images: Vec::new(),
            targets: Vec::new(),
            n: 0,
        },
    };
    let cache = opts.cache_dir.as_deref().map(super::fetch::Cache::new);
    let fetched: Vec<Result<bytes::Bytes, DataError>> = runtime()?.block_on(
        futures::stream::iter(names.iter())
            .map(|n| store.get_async(n))
            .buffered(opts.concurrency.max(1))
            .collect(),
    );
    let (mut shards, mut test_raws) = (Vec::new(), Vec::new());
    for (name, bytes) in names.iter().zip(fetched) {
        let bytes = bytes?;
        let (train, test) = samples(&store.url_of(name), &bytes, d.test_fraction)?;
        let entry = ShardEntry {
            object: name.clone(),
            samples: train.len() as u64,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        if let Some(c) = &cache {
            c.put(&entry, &bytes);
        }
        shards.push(entry);
        test_raws.extend(test);
    }
    let test = tars.decoded("test split", &test_raws);
    let tars = Tars {
        test: SplitData {
            n: test.kept.len(),
            images: test.samples,
            targets: Vec::new(),
        },
        ..tars
    };
    let manifest = manifest(d, shards, tars.test.n as u64);
    let manifest_sha256 = sha256_hex(&serde_json::to_vec(&manifest).unwrap_or_default());
    Ok(Dataset {
        store,
        manifest,
        manifest_sha256,
        options: opts.clone(),
        decoder: Some(Arc::new(tars)),
    })
}

/// The manifest of tars streamed: a train shard per tar, the test split held.
fn manifest(
    d: &vae_proto::config::DecodeSection,
    shards: Vec<ShardEntry>,
    test: u64,
) -> DatasetManifest {
    let s = d.size as usize;
    let train = SplitManifest {
        samples: shards.iter().map(|e| e.samples).sum(),
        shards,
    };
    let test = SplitManifest {
        samples: test,
        shards: Vec::new(),
    };
    DatasetManifest {
        format: DATASET_FORMAT.into(),
        name: "webdataset".into(),
        sample_shape: [usize::from(d.channels), s, s],
        dtype: "u8".into(),
        targets: Vec::new(),
        splits: [("train".to_string(), train), ("test".to_string(), test)].into(),
        factors: None,
        held_out: false,
    }
}

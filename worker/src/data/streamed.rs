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

/// `raws` decoded as `options` say; one that does not decode is skipped
/// (named on stderr; `name` is its tar).
fn decoded(options: &Options, name: &str, raws: &[Raw]) -> Decoded {
    let mut out = Decoded {
        samples: Vec::new(),
        kept: Vec::with_capacity(raws.len()),
    };
    for (k, (raw, img)) in raws.iter().zip(decode_all(raws, options)).enumerate() {
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

/// The bytes of a sample stored as `[data.decode]` makes it.
pub fn sample_bytes(d: &vae_proto::config::DecodeSection) -> usize {
    (d.size as usize).pow(2) * usize::from(d.channels)
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
        Ok(decoded(&self.options, name, &train[start.min(end)..end]))
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

/// What scanning some of the tars found: each one's train shard and its
/// test samples, decoded — in the order they were scanned.
#[derive(Default)]
pub struct Scan {
    /// `(tar index, its train shard, its test samples that decode)`.
    pub tars: Vec<(usize, ShardEntry, usize)>,
    /// Those test samples, stored, one tar after another.
    pub test: Vec<u8>,
}

impl Scan {
    /// As bytes, to send to another rank: the JSON of `tars`, its length
    /// first (8 bytes, little-endian), then the test samples.
    pub fn to_bytes(&self) -> Vec<u8> {
        let head = serde_json::to_vec(&self.tars).unwrap_or_default();
        let mut out = (head.len() as u64).to_le_bytes().to_vec();
        out.extend(head);
        out.extend_from_slice(&self.test);
        out
    }

    /// Read back from [`Scan::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Scan, DataError> {
        let bad = |message: String| DataError::Manifest {
            url: "(a rank's scan of the tars)".into(),
            message,
        };
        let n = b.get(..8).map_or(u64::MAX, |h| {
            u64::from_le_bytes(h.try_into().unwrap_or([0xff; 8]))
        });
        let head = usize::try_from(n)
            .ok()
            .and_then(|n| b.get(8..8usize.checked_add(n)?));
        let head = head.ok_or_else(|| bad(format!("{} bytes, a header of {n}", b.len())))?;
        let tars = serde_json::from_slice(head).map_err(|e| bad(e.to_string()))?;
        Ok(Scan {
            tars,
            test: b[8 + head.len()..].to_vec(),
        })
    }

    /// The scans of several ranks as one, in the tars' order (`per`: the
    /// bytes of a stored sample).
    pub fn merge(parts: Vec<Scan>, per: usize) -> Scan {
        let mut all = Vec::new();
        for part in &parts {
            let mut at = 0;
            for (i, entry, n) in &part.tars {
                let bytes = part.test.get(at..at + n * per).unwrap_or_default();
                all.push((*i, entry.clone(), *n, bytes));
                at += n * per;
            }
        }
        all.sort_by_key(|t| t.0);
        let mut out = Scan::default();
        for (i, entry, n, bytes) in all {
            out.tars.push((i, entry, n));
            out.test.extend_from_slice(bytes);
        }
        out
    }
}

fn options(d: &vae_proto::config::DecodeSection) -> Options {
    Options {
        size: d.size,
        crop: (d.crop > 0).then_some(d.crop),
        channels: d.channels,
        test_fraction: d.test_fraction,
        shard_samples: 0,
    }
}

/// Scans the tars `mine` picks (by index), `storage.concurrency` fetched at
/// a time, each one dropped once scanned (kept in the shard cache when
/// there is one), so memory holds one tar per fetch in flight.
pub fn scan(
    data: &DataSection,
    opts: &StorageOptions,
    mine: &dyn Fn(usize) -> bool,
) -> Result<Scan, DataError> {
    let (store, names) = tar_names(&data.url, opts)?;
    let d = &data.decode;
    let options = options(d);
    let cache = opts.cache_dir.as_deref().map(super::fetch::Cache::new);
    let which: Vec<usize> = (0..names.len()).filter(|&i| mine(i)).collect();
    let (store, names) = (&store, &names);
    runtime()?.block_on(async {
        let mut fetched = futures::stream::iter(which)
            .map(|i| async move { (i, store.get_async(&names[i]).await) })
            .buffered(opts.concurrency.max(1));
        let mut out = Scan::default();
        while let Some((i, bytes)) = fetched.next().await {
            let bytes = bytes?;
            let url = store.url_of(&names[i]);
            let (train, test) = samples(&url, &bytes, d.test_fraction)?;
            let entry = ShardEntry {
                object: names[i].clone(),
                samples: train.len() as u64,
                bytes: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
            };
            if let Some(c) = &cache {
                c.put(&entry, &bytes);
            }
            let test = decoded(&options, &url, &test);
            out.tars.push((i, entry, test.kept.len()));
            out.test.extend(test.samples);
        }
        Ok(out)
    })
}

/// Opens the tars `data.url` names: every tar scanned once (see the module).
pub fn open(data: &DataSection, opts: &StorageOptions) -> Result<Dataset, DataError> {
    open_scanned(data, opts, scan(data, opts, &|_| true)?)
}

/// The dataset of the tars `data.url` names, from their scan (every tar,
/// in order: [`Scan::merge`] of the ranks' parts).
pub fn open_scanned(
    data: &DataSection,
    opts: &StorageOptions,
    scan: Scan,
) -> Result<Dataset, DataError> {
    let (store, names) = tar_names(&data.url, opts)?;
    let d = &data.decode;
    let in_order = scan.tars.iter().enumerate().all(|(k, t)| t.0 == k);
    if scan.tars.len() != names.len() || !in_order {
        return Err(DataError::Manifest {
            url: data.url.clone(),
            message: format!(
                "the scan holds {} of the {} tars",
                scan.tars.len(),
                names.len()
            ),
        });
    }
    let n: usize = scan.tars.iter().map(|t| t.2).sum();
    let tars = Tars {
        names,
        options: options(d),
        test: SplitData {
            n,
            images: scan.test,
            targets: Vec::new(),
        },
    };
    let shards = scan.tars.into_iter().map(|t| t.1).collect();
    let manifest = manifest(d, shards, n as u64);
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

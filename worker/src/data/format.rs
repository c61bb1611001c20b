//! Writing and reading datasets in the project's format (see
//! `vae_proto::dataset`): shards with checksums, then the manifest last, so a
//! reader never sees a manifest naming shards that are not there yet.
use std::collections::BTreeMap;
use vae_proto::dataset::{
    DatasetManifest, ShardEntry, SplitManifest, TargetSpec, DATASET_FORMAT, MANIFEST_NAME,
};

use super::digest::sha256_hex;
use super::error::DataError;
use super::fetch::fetch_all;
use super::store::{StorageOptions, Store};

/// Samples of one split held in memory: images `[n, C, H, W]` as bytes and
/// targets `[n, K]` as bytes.
#[derive(Clone, Debug)]
pub struct SplitData {
    pub images: Vec<u8>,
    pub targets: Vec<u8>,
    pub n: usize,
}

/// Packs `n` binary images of `pixels` pixels (bytes, non-zero = 1) into
/// `⌈pixels/8⌉` bytes each, most significant bit first.
pub fn pack_bits(images: &[u8], n: usize, pixels: usize) -> Vec<u8> {
    let per = pixels.div_ceil(8);
    let mut out = vec![0u8; n * per];
    for i in 0..n {
        for (p, &v) in images[i * pixels..(i + 1) * pixels].iter().enumerate() {
            if v != 0 {
                out[i * per + p / 8] |= 0x80 >> (p % 8);
            }
        }
    }
    out
}

/// The inverse of [`pack_bits`], with 1 → 255 so pixels read as byte / 255.
pub fn unpack_bits(packed: &[u8], n: usize, pixels: usize) -> Vec<u8> {
    let per = pixels.div_ceil(8);
    let mut out = vec![0u8; n * pixels];
    for (row, bytes) in out
        .chunks_exact_mut(pixels.max(1))
        .zip(packed.chunks(per.max(1)))
    {
        let mut eights = row.chunks_exact_mut(8);
        for (o, &b) in eights.by_ref().zip(bytes) {
            o.copy_from_slice(&BYTE_PIXELS[b as usize]);
        }
        let rest = eights.into_remainder();
        if let Some(&b) = bytes.get(pixels / 8) {
            rest.copy_from_slice(&BYTE_PIXELS[b as usize][..rest.len()]);
        }
    }
    out
}

/// Each byte's eight bits as pixels, most significant first: 0 or 255.
static BYTE_PIXELS: [[u8; 8]; 256] = {
    let mut t = [[0u8; 8]; 256];
    let mut b = 0;
    while b < 256 {
        let mut p = 0;
        while p < 8 {
            if b & (0x80 >> p) != 0 {
                t[b][p] = 255;
            }
            p += 1;
        }
        b += 1;
    }
    t
};

/// `[H, W, C]` pixels (`hwc`) as `[C, H, W]` in `out`.
pub fn channels_first(hwc: &[u8], out: &mut [u8], c: usize) {
    let s = hwc.len() / c.max(1);
    for (i, px) in hwc.chunks_exact(c).enumerate() {
        for (k, &v) in px.iter().enumerate() {
            out[k * s + i] = v;
        }
    }
}

/// Writes one shard object and returns its manifest entry.
pub fn put_shard(
    store: &Store,
    object: &str,
    bytes: Vec<u8>,
    samples: usize,
) -> Result<ShardEntry, DataError> {
    let entry = ShardEntry {
        object: object.to_string(),
        samples: samples as u64,
        bytes: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    };
    store.put(object, bytes)?;
    Ok(entry)
}

/// Writes the manifest (last, after every shard it names).
pub fn put_manifest(store: &Store, manifest: &DatasetManifest) -> Result<(), DataError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| DataError::Io {
        url: store.url_of(MANIFEST_NAME),
        message: e.to_string(),
    })?;
    store.put(MANIFEST_NAME, json)
}

/// Shards of one split written as samples come: `<split>-NNNNN.bin`, each
/// `shard_samples` samples (the last fewer), images then targets.
pub struct SplitWriter {
    split: String,
    shard_samples: usize,
    images: Vec<u8>,
    targets: Vec<u8>,
    pending: usize,
    samples: u64,
    shards: Vec<ShardEntry>,
}

impl SplitWriter {
    pub fn new(split: &str, shard_samples: usize) -> SplitWriter {
        SplitWriter {
            split: split.to_string(),
            shard_samples: shard_samples.max(1),
            images: Vec::new(),
            targets: Vec::new(),
            pending: 0,
            samples: 0,
            shards: Vec::new(),
        }
    }

    /// Adds a sample (its image as stored, its targets); writes a shard to
    /// `store` when one is full.
    pub fn push(&mut self, store: &Store, image: &[u8], targets: &[u8]) -> Result<(), DataError> {
        self.images.extend_from_slice(image);
        self.targets.extend_from_slice(targets);
        self.pending += 1;
        self.samples += 1;
        if self.pending == self.shard_samples {
            self.flush(store)?;
        }
        Ok(())
    }

    fn flush(&mut self, store: &Store) -> Result<(), DataError> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut bytes = std::mem::take(&mut self.images);
        bytes.append(&mut self.targets);
        let object = format!("{}-{:05}.bin", self.split, self.shards.len());
        self.shards
            .push(put_shard(store, &object, bytes, self.pending)?);
        self.pending = 0;
        Ok(())
    }

    /// Samples pushed so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Writes the last shard; the split's manifest entry.
    pub fn finish(mut self, store: &Store) -> Result<SplitManifest, DataError> {
        self.flush(store)?;
        Ok(SplitManifest {
            samples: self.samples,
            shards: self.shards,
        })
    }
}

/// A dataset to write: per split, all images and targets in order.
pub struct DatasetWriter<'a> {
    pub name: &'a str,
    pub sample_shape: [usize; 3],
    pub targets: Vec<TargetSpec>,
    pub shard_samples: usize,
}

impl DatasetWriter<'_> {
    /// Writes `splits` (name → data) under `store`, shards first, manifest last.
    pub fn write(
        &self,
        store: &Store,
        splits: &[(&str, &SplitData)],
    ) -> Result<DatasetManifest, DataError> {
        let sample_bytes: usize = self.sample_shape.iter().product();
        let k = self.targets.len();
        let mut manifest = DatasetManifest {
            format: DATASET_FORMAT.into(),
            name: self.name.into(),
            sample_shape: self.sample_shape,
            dtype: "u8".into(),
            targets: self.targets.clone(),
            splits: BTreeMap::new(),
            factors: None,
            held_out: false,
        };
        for (split, data) in splits {
            let mut shards = Vec::new();
            let mut start = 0;
            while start < data.n {
                let end = (start + self.shard_samples.max(1)).min(data.n);
                let mut bytes = Vec::with_capacity((end - start) * (sample_bytes + k));
                bytes.extend_from_slice(&data.images[start * sample_bytes..end * sample_bytes]);
                bytes.extend_from_slice(&data.targets[start * k..end * k]);
                let object = format!("{split}-{:05}.bin", shards.len());
                shards.push(put_shard(store, &object, bytes, end - start)?);
                start = end;
            }
            manifest.splits.insert(
                split.to_string(),
                SplitManifest {
                    samples: data.n as u64,
                    shards,
                },
            );
        }
        put_manifest(store, &manifest)?;
        Ok(manifest)
    }
}

/// Samples stored in another form than this format's shards, decoded as
/// they are read (WebDataset tars streamed: `data/streamed.rs`): the train
/// split's shards are such objects, each decoded when fetched; the test
/// split is held decoded.
pub trait Decoder: Send + Sync {
    /// The train samples `start..end` of shard `i`, from its fetched bytes:
    /// those that decode, stored (`sample_bytes` each), in order.
    fn decode(
        &self,
        i: usize,
        bytes: &[u8],
        start: usize,
        end: usize,
    ) -> Result<Decoded, DataError>;
    /// The test split, decoded.
    fn test(&self) -> SplitData;
}

/// What a [`Decoder`] makes of a piece of a shard.
pub struct Decoded {
    /// The samples that decode, stored, in order.
    pub samples: Vec<u8>,
    /// Each one's position in the piece (from its `start`); the missing
    /// positions are samples that did not decode, skipped.
    pub kept: Vec<u32>,
}

/// An opened dataset: its manifest, read and checked, the store it is in,
/// and how to read from it.
pub struct Dataset {
    pub store: Store,
    pub manifest: DatasetManifest,
    /// The SHA-256 of `manifest.json` as read.
    pub manifest_sha256: String,
    pub options: StorageOptions,
    /// Set when the shards are not in this format (tars decoded as read).
    pub decoder: Option<std::sync::Arc<dyn Decoder>>,
}

impl Dataset {
    pub fn open(url: &str, options: &StorageOptions) -> Result<Dataset, DataError> {
        let store = Store::open(url, options)?;
        let murl = store.url_of(MANIFEST_NAME);
        let bytes = store.get(MANIFEST_NAME).map_err(|e| match e {
            DataError::NotFound { detail, .. } => DataError::NoDataset {
                url: url.to_string(),
                why: missing_manifest(&detail),
            },
            e => e,
        })?;
        let manifest: DatasetManifest =
            serde_json::from_slice(&bytes).map_err(|e| DataError::Manifest {
                url: murl.clone(),
                message: e.to_string(),
            })?;
        manifest
            .check()
            .map_err(|message| DataError::Manifest { url: murl, message })?;
        Ok(Dataset {
            store,
            manifest,
            manifest_sha256: super::digest::sha256_hex(&bytes),
            options: options.clone(),
            decoder: None,
        })
    }

    /// [`Dataset::open`] a dataset of images: one of codes (`vae-worker
    /// encode`'s, dtype `f4`) is refused, naming it.
    pub fn open_images(url: &str, options: &StorageOptions) -> Result<Dataset, DataError> {
        let d = Dataset::open(url, options)?;
        match d.manifest.holds_images() {
            true => Ok(d),
            false => Err(DataError::Manifest {
                url: d.store.url_of(MANIFEST_NAME),
                message: "holds codes written by `vae-worker encode` (dtype f4), not images".into(),
            }),
        }
    }

    pub fn split(&self, name: &str) -> Result<&SplitManifest, DataError> {
        self.manifest
            .splits
            .get(name)
            .ok_or_else(|| DataError::Manifest {
                url: self.store.url_of(MANIFEST_NAME),
                message: format!("has no `{name}` split"),
            })
    }

    /// The entries of the given shards of a split (all when `which` is `None`).
    pub fn shards(
        &self,
        name: &str,
        which: Option<&[usize]>,
    ) -> Result<Vec<ShardEntry>, DataError> {
        let split = self.split(name)?;
        Ok(match which {
            Some(w) => w.iter().map(|&i| split.shards[i].clone()).collect(),
            None => split.shards.clone(),
        })
    }

    /// A fetched shard's images, decoded to one byte per pixel, and targets.
    pub fn decode(&self, bytes: &[u8], samples: u64) -> SplitData {
        let n = samples as usize;
        let split_at = n * self.manifest.sample_bytes();
        let images = if self.manifest.dtype == "u1" {
            unpack_bits(&bytes[..split_at], n, self.manifest.sample_pixels())
        } else {
            bytes[..split_at].to_vec()
        };
        SplitData {
            images,
            targets: bytes[split_at..].to_vec(),
            n,
        }
    }

    /// Reads the given shards of a split (all when `which` is `None`), in
    /// order, several at a time, verified.
    pub fn read_split(&self, name: &str, which: Option<&[usize]>) -> Result<SplitData, DataError> {
        if let Some(d) = &self.decoder {
            return self.read_decoded(d.as_ref(), name, which);
        }
        let entries = self.shards(name, which)?;
        let samples: Vec<u64> = entries.iter().map(|e| e.samples).collect();
        let fetched = fetch_all(&self.store, entries, &self.options)?;
        let mut out = SplitData {
            images: Vec::new(),
            targets: Vec::new(),
            n: 0,
        };
        for (bytes, n) in fetched.iter().zip(samples) {
            let part = self.decode(bytes, n);
            out.images.extend_from_slice(&part.images);
            out.targets.extend_from_slice(&part.targets);
            out.n += part.n;
        }
        Ok(out)
    }
}

impl Dataset {
    /// [`Dataset::read_split`] through a [`Decoder`]: the test split as
    /// held, the train split's shards fetched and decoded whole.
    fn read_decoded(
        &self,
        d: &dyn Decoder,
        name: &str,
        which: Option<&[usize]>,
    ) -> Result<SplitData, DataError> {
        if name != "train" {
            return Ok(d.test());
        }
        let all: Vec<usize> = (0..self.split(name)?.shards.len()).collect();
        let which = which.unwrap_or(&all);
        let entries = self.shards(name, Some(which))?;
        let fetched = fetch_all(&self.store, entries.clone(), &self.options)?;
        let mut images = Vec::new();
        for ((&i, e), bytes) in which.iter().zip(&entries).zip(&fetched) {
            images.extend(d.decode(i, bytes, 0, e.samples as usize)?.samples);
        }
        let n = images.len() / self.manifest.sample_bytes().max(1);
        Ok(SplitData {
            images,
            targets: Vec::new(),
            n,
        })
    }
}

/// What a missing manifest means, from the store's answer.
fn missing_manifest(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    if [
        "nosuchbucket",
        "bucket does not exist",
        "containernotfound",
        "the specified container does not exist",
    ]
    .iter()
    .any(|k| d.contains(k))
    {
        "the bucket (container) does not exist".into()
    } else {
        format!("no {MANIFEST_NAME} there (prepare one with `vae-worker data prepare`)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_unpack_to_the_pixels_packed_whole_bytes_or_not() {
        for pixels in [1, 7, 8, 13, 64, 4096] {
            let images: Vec<u8> = (0..3 * pixels)
                .map(|i| if (i * 7919) % 5 < 2 { 255 } else { 0 })
                .collect();
            let packed = pack_bits(&images, 3, pixels);
            assert_eq!(unpack_bits(&packed, 3, pixels), images, "{pixels} pixels");
        }
    }
}

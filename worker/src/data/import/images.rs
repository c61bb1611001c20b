//! Image sets: a folder or a bucket prefix of PNG/JPEG files (CelebA's
//! `img_align_celeba/`), or WebDataset tar shards named by a URL or path
//! with brace ranges (`s3://bucket/celeba/shard-{000000..000099}.tar`; a
//! sample is the files that share a key, `.cls` and `.json` labels kept).
//! Each image is centre-cropped to `crop` (CelebA's usual 148), resized to
//! `size`×`size` with a Lanczos3 filter (`fast_image_resize`, SIMD), and stored as RGB (or grey) bytes,
//! channels first. Decoding runs on every core, in batches, in input order;
//! a corrupt image is skipped, counted and named in the report. A sample
//! goes to the `test` split when the hash of its key falls below
//! `test_fraction` (stable whatever the order or the number of inputs).
//! `.cls` labels become the target `label`; `.json` labels are kept, one
//! line per sample in split order, in `<split>-labels.jsonl` beside the shards.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use sha2::{Digest, Sha256};
use vae_proto::dataset::{DatasetManifest, TargetSpec, DATASET_FORMAT};

use super::braces::expand_braces;
use super::input::progress;
use super::jpeg;
use super::wds::{read_tar, Raw};
use crate::data::error::DataError;
use crate::data::format::{channels_first, put_manifest, SplitWriter};
use crate::data::runtime::runtime;
use crate::data::store::{StorageOptions, Store};

/// How to turn images into samples.
#[derive(Clone, Debug)]
pub struct Options {
    pub size: u32,
    pub crop: Option<u32>,
    pub channels: u8,
    pub test_fraction: f64,
    pub shard_samples: usize,
}

fn is_image(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with(".png") || n.ends_with(".jpg") || n.ends_with(".jpeg")
}

/// Where the samples come from.
enum Source {
    /// Image files: local paths or objects of a store.
    Files(Store, Vec<String>),
    /// WebDataset tar shards (paths or URLs), read in order.
    Tars(Vec<String>),
}

fn source(from: &str, opts: &StorageOptions) -> Result<Source, DataError> {
    let bad = |message: String| DataError::InvalidUrl {
        url: from.to_string(),
        message,
    };
    if from.trim_end_matches('/').ends_with(".tar") {
        return Ok(Source::Tars(expand_braces(from).map_err(bad)?));
    }
    let store = Store::open(from, opts)?;
    let mut names: Vec<String> = store
        .list("")?
        .into_iter()
        .filter(|n| is_image(n))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(bad("holds no .png, .jpg or .jpeg file".into()));
    }
    Ok(Source::Files(store, names))
}

/// Reads the files `names` of `store`, several at a time.
fn fetch_files(store: &Store, names: &[String], concurrency: usize) -> Result<Vec<Raw>, DataError> {
    use futures::StreamExt;
    runtime()?.block_on(async {
        futures::stream::iter(names)
            .map(|n| async move {
                let bytes = store.get_async(n).await?;
                Ok(Raw {
                    key: n.rsplit_once('.').map_or(n.as_str(), |p| p.0).to_string(),
                    bytes: bytes.to_vec(),
                    cls: None,
                    json: None,
                    problem: None,
                })
            })
            .buffered(concurrency.max(1))
            .collect::<Vec<Result<Raw, DataError>>>()
            .await
            .into_iter()
            .collect()
    })
}

/// What each decoding thread keeps between images: the resizer, the JPEG
/// decoder and the two pixel buffers, reused.
struct Tools {
    resizer: Resizer,
    /// libjpeg-turbo, when it could be started (the `image` crate decodes
    /// otherwise, and what libjpeg-turbo refuses, e.g. CMYK).
    jpeg: Option<jpeg::Decoder>,
    /// The decoded image, row by row (`channels` bytes a pixel).
    decoded: Vec<u8>,
    /// The resized one.
    resized: Vec<u8>,
}

/// The decoded image's size and the region of it to crop, in its own
/// coordinates.
struct Frame {
    size: (u32, u32),
    crop: (f64, f64, f64, f64),
}

/// The centred crop of a `w`×`h` image, or the whole of it when the crop
/// does not fit.
fn crop_of(w: u32, h: u32, o: &Options) -> (u32, u32, u32, u32) {
    match o.crop {
        Some(c) if c <= w && c <= h => ((w - c) / 2, (h - c) / 2, c, c),
        _ => (0, 0, w, h),
    }
}

/// A JPEG decoded by libjpeg-turbo into `out` at the smallest DCT scaling
/// that keeps the crop at least `size`, the crop scaled with it.
fn turbo(
    bytes: &[u8],
    o: &Options,
    d: &mut jpeg::Decoder,
    out: &mut Vec<u8>,
) -> Result<Frame, String> {
    let (w, h) = d.size(bytes)?;
    let (x, y, cw, ch) = crop_of(w, h, o);
    let k = jpeg::reduction(cw, ch, o.size);
    jpeg::within_budget((w, h), k, o.channels)?;
    let size = d.decode(bytes, (w, h), k, o.channels, out)?;
    let f = f64::from(k);
    let scaled = |v: u32| f64::from(v) / f;
    Ok(Frame {
        size,
        crop: (scaled(x), scaled(y), scaled(cw), scaled(ch)),
    })
}

/// Any image the `image` crate reads, at full size, into `out`.
fn full(bytes: &[u8], o: &Options, out: &mut Vec<u8>) -> Result<Frame, String> {
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let (w, h) = (img.width(), img.height());
    let (x, y, cw, ch) = crop_of(w, h, o);
    *out = if o.channels == 1 {
        img.into_luma8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    };
    let f = f64::from;
    Ok(Frame {
        size: (w, h),
        crop: (f(x), f(y), f(cw), f(ch)),
    })
}

/// An image decoded, centre-cropped and resized (Lanczos3, SIMD through
/// `fast_image_resize`, the crop taken by the resizer without a copy), laid
/// out channels first.
fn decode(bytes: &[u8], o: &Options, t: &mut Tools) -> Result<Vec<u8>, String> {
    let frame = match &mut t.jpeg {
        Some(d) if jpeg::is_jpeg(bytes) => turbo(bytes, o, d, &mut t.decoded)
            .or_else(|e| full(bytes, o, &mut t.decoded).map_err(|_| e)),
        _ => full(bytes, o, &mut t.decoded),
    }?;
    let whole = (0.0, 0.0, f64::from(o.size), f64::from(o.size));
    let hwc = if frame.size == (o.size, o.size) && frame.crop == whole {
        &t.decoded
    } else {
        resize(&frame, o, t)?;
        &t.resized
    };
    let mut chw = vec![0u8; hwc.len()];
    channels_first(hwc, &mut chw, usize::from(o.channels));
    Ok(chw)
}

/// The crop of the decoded image resized to `size`×`size` into
/// `t.resized`, row by row.
fn resize(frame: &Frame, o: &Options, t: &mut Tools) -> Result<(), String> {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::PixelType;
    let (x, y, w, h) = frame.crop;
    let opts = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(x, y, w, h);
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let pixel = if o.channels == 1 {
        PixelType::U8
    } else {
        PixelType::U8x3
    };
    let (sw, sh) = frame.size;
    let from = ImageRef::new(sw, sh, &t.decoded, pixel).map_err(|x| e(&x))?;
    t.resized
        .resize((o.size * o.size) as usize * usize::from(o.channels), 0);
    let mut to = Image::from_slice_u8(o.size, o.size, &mut t.resized, pixel).map_err(|x| e(&x))?;
    t.resizer.resize(&from, &mut to, &opts).map_err(|x| e(&x))
}

/// Decodes `batch` on every core, keeping its order.
pub fn decode_all(batch: &[Raw], o: &Options) -> Vec<Result<Vec<u8>, String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = batch.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = batch
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    let mut tools = Tools {
                        resizer: Resizer::new(),
                        jpeg: jpeg::Decoder::new().ok(),
                        decoded: Vec::new(),
                        resized: Vec::new(),
                    };
                    chunk
                        .iter()
                        .map(|r| match &r.problem {
                            Some(p) => Err(p.clone()),
                            None => decode(&r.bytes, o, &mut tools),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .zip(batch.chunks(per))
            .flat_map(|(h, chunk)| {
                h.join().unwrap_or_else(|_| {
                    let e = "the decoder failed (a panic in its thread)";
                    chunk.iter().map(|_| Err(e.to_string())).collect()
                })
            })
            .collect()
    })
}

/// A sample and its image, decoded or why not.
type Done = (Raw, Result<Vec<u8>, String>);

/// Batches decoded on every core while the caller reads the next batch
/// and writes the one before: one batch decoding at a time.
struct Overlap<'s, 'e> {
    scope: &'s std::thread::Scope<'s, 'e>,
    o: &'e Options,
    /// The input, for an error.
    from: &'e str,
    decoding: Option<std::thread::ScopedJoinHandle<'s, Vec<Done>>>,
}

impl Overlap<'_, '_> {
    /// Starts decoding `batch`; returns the batch before it, decoded.
    fn push(&mut self, batch: Vec<Raw>) -> Result<Vec<Done>, DataError> {
        let before = self.finish()?;
        let o = self.o;
        self.decoding = Some(self.scope.spawn(move || {
            let images = decode_all(&batch, o);
            batch.into_iter().zip(images).collect()
        }));
        Ok(before)
    }

    /// The batch decoding, once decoded.
    fn finish(&mut self) -> Result<Vec<Done>, DataError> {
        let Some(h) = self.decoding.take() else {
            return Ok(Vec::new());
        };
        h.join().map_err(|_| DataError::Io {
            url: self.from.to_string(),
            message: "a decoding thread failed".into(),
        })
    }
}

/// Whether the sample with `key` belongs to the test split.
pub fn in_test(key: &str, fraction: f64) -> bool {
    let h = Sha256::digest(key.as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().unwrap_or_default());
    (x as f64 / u64::MAX as f64) < fraction
}

/// What an import did, for the report.
pub struct Report {
    pub manifest: DatasetManifest,
    pub skipped: Vec<(String, String)>,
}

/// The splits being written, their labels and what was skipped.
struct Output {
    store: Store,
    splits: [(SplitWriter, Vec<String>); 2],
    labels: Option<bool>,
    max_cls: u8,
    /// Whether any sample had a `.json` label (then every sample gets a line).
    any_json: bool,
    skipped: Vec<(String, String)>,
}

impl Output {
    fn add(
        &mut self,
        raw: &Raw,
        image: Result<Vec<u8>, String>,
        o: &Options,
    ) -> Result<(), DataError> {
        let image = match image {
            Ok(i) => i,
            Err(e) => {
                self.skipped.push((raw.key.clone(), e));
                return Ok(());
            }
        };
        // The first sample says whether there are `.cls` labels.
        let labelled = *self.labels.get_or_insert(raw.cls.is_some());
        let cls = match (labelled, raw.cls.as_deref().map(str::parse::<u8>)) {
            (false, _) => None,
            (true, Some(Ok(c))) => Some(c),
            (true, Some(Err(_))) => {
                self.skipped
                    .push((raw.key.clone(), "its .cls is not a class 0..255".into()));
                return Ok(());
            }
            (true, None) => {
                self.skipped.push((raw.key.clone(), "no .cls label".into()));
                return Ok(());
            }
        };
        let label = match raw
            .json
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
        {
            None => serde_json::Value::Null,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                self.skipped
                    .push((raw.key.clone(), format!("its .json is not JSON ({e})")));
                return Ok(());
            }
        };
        self.any_json |= raw.json.is_some();
        let targets: Vec<u8> = cls.into_iter().collect();
        self.max_cls = self.max_cls.max(targets.first().copied().unwrap_or(0));
        let (w, json) = &mut self.splits[usize::from(in_test(&raw.key, o.test_fraction))];
        w.push(&self.store, &image, &targets)?;
        // One line per sample, one JSON value on it (`null` without a label).
        json.push(format!(
            "{{\"key\": {}, \"json\": {}}}",
            serde_json::Value::String(raw.key.clone()),
            label
        ));
        Ok(())
    }

    fn finish(self, o: &Options) -> Result<Report, DataError> {
        let c = o.channels as usize;
        let s = o.size as usize;
        let mut m = DatasetManifest {
            format: DATASET_FORMAT.into(),
            name: "images".into(),
            sample_shape: [c, s, s],
            dtype: "u8".into(),
            targets: match self.labels {
                Some(true) => vec![TargetSpec {
                    name: "label".into(),
                    values: self.max_cls as usize + 1,
                }],
                _ => vec![],
            },
            splits: Default::default(),
            factors: None,
            held_out: false,
        };
        for (name, (w, json)) in ["train", "test"].iter().zip(self.splits) {
            if self.any_json && !json.is_empty() {
                self.store
                    .put(&format!("{name}-labels.jsonl"), json.join("\n") + "\n")?;
            }
            m.splits.insert(name.to_string(), w.finish(&self.store)?);
        }
        put_manifest(&self.store, &m)?;
        Ok(Report {
            manifest: m,
            skipped: self.skipped,
        })
    }
}

/// Imports the images `from` names into `out`.
pub fn import(
    from: &str,
    out: &str,
    o: &Options,
    storage: &StorageOptions,
) -> Result<Report, DataError> {
    let src = source(from, storage)?;
    let mut output = Output {
        store: Store::open(out, storage)?,
        splits: [
            (SplitWriter::new("train", o.shard_samples), Vec::new()),
            (SplitWriter::new("test", o.shard_samples), Vec::new()),
        ],
        labels: None,
        max_cls: 0,
        any_json: false,
        skipped: Vec::new(),
    };
    const BATCH: usize = 256;
    std::thread::scope(|scope| {
        let mut overlap = Overlap {
            scope,
            o,
            from,
            decoding: None,
        };
        let mut write = |done: Result<Vec<Done>, DataError>| {
            done?
                .into_iter()
                .try_for_each(|(raw, img)| output.add(&raw, img, o))
        };
        match src {
            Source::Files(store, names) => {
                let bar = progress(names.len() as u64, "images");
                for chunk in names.chunks(BATCH) {
                    let raws = fetch_files(&store, chunk, storage.concurrency)?;
                    write(overlap.push(raws))?;
                    bar.inc(chunk.len() as u64);
                }
                bar.finish_and_clear();
            }
            Source::Tars(specs) => {
                let bar = progress(specs.len() as u64, "shards");
                for spec in &specs {
                    read_tar(spec, storage, BATCH, |batch| write(overlap.push(batch)))?;
                    bar.inc(1);
                }
                bar.finish_and_clear();
            }
        }
        write(overlap.finish())
    })?;
    output.finish(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_split_is_chosen_by_key() {
        let n = (0..10_000)
            .filter(|i| in_test(&format!("img{i}"), 0.1))
            .count();
        assert!((800..1200).contains(&n), "{n}");
        assert_eq!(in_test("abc", 0.5), in_test("abc", 0.5));
    }
}

//! Samples of a split read by their position, without the split in memory
//! (what disentanglement_lib's `StateSpaceAtomIndex` gives its metrics: the
//! image of any factor combination of a factor dataset, its held-out test
//! split included, and its nuisance factors drawn). Each shard is a
//! local file read with positioned reads: a local dataset's own shard files,
//! or a remote dataset's shards fetched once into the shard cache
//! (`storage.cache_dir`, or a temporary directory) — each verified against
//! the manifest's SHA-256 once, when opened.
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::error::DataError;
use super::factors::test_indices;
use super::fetch::{Cache, Prefetch};
use super::format::{unpack_bits, Dataset};

/// A split's samples by position.
pub struct SampleReader {
    /// Per shard: its file, URL (for messages), first sample and sample count.
    shards: Vec<(File, String, u64, u64)>,
    /// Bytes of one sample's image as stored.
    stored: usize,
    /// Pixels of one sample.
    pixels: usize,
    packed: bool,
    _tmp: Option<tempfile::TempDir>,
}

fn io(url: &str, e: impl std::fmt::Display) -> DataError {
    DataError::Io {
        url: url.to_string(),
        message: e.to_string(),
    }
}

/// Checks a local shard file against its manifest entry, streaming.
fn verify_file(path: &std::path::Path, url: &str, sha: &str) -> Result<(), DataError> {
    let mut f = File::open(path).map_err(|e| io(url, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(url, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let sum = hex::encode(h.finalize());
    if sum != sha {
        return Err(DataError::Corrupt {
            url: url.to_string(),
            message: format!("SHA-256 {sum}, the manifest says {sha}"),
        });
    }
    Ok(())
}

impl SampleReader {
    /// Opens split `split` of `dataset` for reading samples by position.
    pub fn open(dataset: &Dataset, split: &str) -> Result<SampleReader, DataError> {
        let entries = dataset.shards(split, None)?;
        let store = &dataset.store;
        let (paths, tmp): (Vec<PathBuf>, _) = match store.local_dir() {
            Some(dir) => {
                let paths: Vec<PathBuf> = entries.iter().map(|e| dir.join(&e.object)).collect();
                for (p, e) in paths.iter().zip(&entries) {
                    verify_file(p, &store.url_of(&e.object), &e.sha256)?;
                }
                (paths, None)
            }
            None => {
                // Fetched (verified) into the cache, then read from there.
                let mut opts = dataset.options.clone();
                let tmp = match &opts.cache_dir {
                    Some(_) => None,
                    None => Some(tempfile::tempdir().map_err(|e| io("(shard cache)", e))?),
                };
                if let Some(t) = &tmp {
                    opts.cache_dir = Some(t.path().to_path_buf());
                }
                let cache = Cache::new(
                    opts.cache_dir
                        .as_deref()
                        .unwrap_or(std::path::Path::new(".")),
                );
                for r in Prefetch::start(store, entries.clone(), &opts, None)? {
                    r?;
                }
                let paths = entries.iter().map(|e| cache.path(&e.sha256)).collect();
                (paths, tmp)
            }
        };
        let mut shards = Vec::with_capacity(entries.len());
        let mut first = 0u64;
        for (p, e) in paths.iter().zip(&entries) {
            let url = store.url_of(&e.object);
            let f = File::open(p)
                .map_err(|err| io(&url, format!("cannot open {}: {err}", p.display())))?;
            shards.push((f, url, first, e.samples));
            first += e.samples;
        }
        let m = &dataset.manifest;
        Ok(SampleReader {
            shards,
            stored: m.sample_bytes(),
            pixels: m.sample_pixels(),
            packed: m.dtype == "u1",
            _tmp: tmp,
        })
    }

    /// Samples in the split.
    pub fn len(&self) -> u64 {
        self.shards.last().map_or(0, |s| s.2 + s.3)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The images of the samples at `positions`, one byte per pixel (binary
    /// images as 0 and 255), `[n, C, H, W]` in that order.
    pub fn images(&self, positions: &[usize]) -> Result<Vec<u8>, DataError> {
        let mut out = Vec::with_capacity(positions.len() * self.pixels);
        let mut sample = vec![0u8; self.stored];
        for &p in positions {
            let p = p as u64;
            let i = self.shards.partition_point(|s| s.2 + s.3 <= p);
            let (f, url, first, n) = self.shards.get(i).ok_or_else(|| {
                io(
                    "(sample lookup)",
                    format!("sample {p} is beyond the split's {}", self.len()),
                )
            })?;
            debug_assert!(p >= *first && p < first + n);
            f.read_exact_at(&mut sample, (p - first) * self.stored as u64)
                .map_err(|e| io(url, e))?;
            if self.packed {
                out.extend(unpack_bits(&sample, 1, self.pixels));
            } else {
                out.extend_from_slice(&sample);
            }
        }
        Ok(out)
    }
}

/// A factor dataset's images by factor combination: its grid, and readers
/// of its train split (and of its test split, when that is held out of
/// the grid).
pub struct FactorData {
    pub reader: SampleReader,
    /// A held-out test split: its reader and the grid positions it holds
    /// (ascending); the train split holds the others, in grid order.
    held_out: Option<(SampleReader, Vec<usize>)>,
    /// Values per factor in the grid.
    pub grid: Vec<usize>,
    /// The factors the metrics score, by index (all but the nuisances).
    pub scored: Vec<usize>,
    /// The manifest's factors (names, values, units).
    pub factors: Vec<vae_proto::dataset::Factor>,
    /// `[C, H, W]` of a sample as stored.
    pub shape: [usize; 3],
    /// A dSprites variant the metrics see, as training does (`data.variant`).
    pub variant: Option<std::sync::Arc<super::variant::Variants>>,
}

impl FactorData {
    /// The factor data of `dataset`, or `None` when it records no factor grid.
    pub fn open(dataset: &Dataset) -> Result<Option<FactorData>, DataError> {
        let m = &dataset.manifest;
        let Some(grid) = m.grid_sizes() else {
            return Ok(None);
        };
        let held_out = match m.held_out {
            true => {
                let test = m.splits.get("test").map_or(0, |s| s.samples as usize);
                let positions = test_indices(grid.iter().product(), test);
                Some((SampleReader::open(dataset, "test")?, positions))
            }
            false => None,
        };
        Ok(Some(FactorData {
            reader: SampleReader::open(dataset, "train")?,
            held_out,
            scored: m.scored_factors(),
            factors: m.factors.clone().unwrap_or_default(),
            grid,
            shape: m.sample_shape,
            variant: None,
        }))
    }

    /// Values per scored factor.
    pub fn scored_sizes(&self) -> Vec<usize> {
        self.scored.iter().map(|&k| self.grid[k]).collect()
    }

    /// The whole combination of the scored factors' values `f`, each
    /// nuisance factor's value drawn by `draw(k, its size)`.
    pub fn combination(
        &self,
        f: &[usize],
        mut draw: impl FnMut(usize, usize) -> usize,
    ) -> Vec<usize> {
        let mut scored = f.iter();
        (0..self.grid.len())
            .map(|k| match self.scored.contains(&k) {
                true => scored.next().copied().unwrap_or(0),
                false => draw(k, self.grid[k]),
            })
            .collect()
    }

    /// The grid position of the combination `f` (indices into the grid's
    /// values, one per factor): row-major.
    pub fn position(&self, f: &[usize]) -> usize {
        f.iter().zip(&self.grid).fold(0, |acc, (v, n)| acc * n + v)
    }

    /// The images at grid `positions`, as [`SampleReader::images`] gives them.
    pub fn images(&self, positions: &[usize]) -> Result<Vec<u8>, DataError> {
        let Some((test, held)) = &self.held_out else {
            return self.reader.images(positions);
        };
        let mut out = Vec::new();
        for &p in positions {
            out.extend(match held.binary_search(&p) {
                Ok(j) => test.images(&[j])?,
                Err(before) => self.reader.images(&[p - before])?,
            });
        }
        Ok(out)
    }
}

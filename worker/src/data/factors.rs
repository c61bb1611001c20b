//! Writing a factor dataset (dSprites, 3dshapes, MPI3D: every combination of
//! the generative factors, in row-major order): the `train` split holds
//! every image in the grid's order, shard by shard as the samples come (so an
//! importer streams, memory bounded); the `test` split is a fixed random
//! subset of them ([`test_indices`]: the same for the generator and for an
//! importer of the same images), copied as they pass — or, with
//! [`TestSplit::HeldOut`], held out of the train split. The manifest records
//! the grid ([`vae_proto::dataset::Factor`]), so the metrics can find the
//! image of any factor combination.
use std::collections::HashMap;

use vae_proto::dataset::{DatasetManifest, Factor, TargetSpec, DATASET_FORMAT};

use super::error::DataError;
use super::format::{put_manifest, SplitWriter};
use super::store::Store;
use crate::rng::{self, Stream};

/// The `n_test` samples of `n` that form the test split, ascending: a
/// partial Fisher–Yates shuffle on the project's counter-based bits (seed 0).
/// Only the swapped positions are held, so memory follows `n_test`, not
/// the grid's size `n` (which an input file declares).
pub fn test_indices(n: usize, n_test: usize) -> Vec<usize> {
    let n_test = n_test.min(n);
    let mut moved: HashMap<usize, usize> = HashMap::with_capacity(2 * n_test);
    for i in 0..n_test {
        let b = rng::bits(rng::key(0, Stream::Permutation, u64::MAX, i as u64), 0);
        let j = i + rng::below(b, (n - i) as u64) as usize;
        let (at_i, at_j) = (*moved.get(&i).unwrap_or(&i), *moved.get(&j).unwrap_or(&j));
        moved.insert(i, at_j);
        moved.insert(j, at_i);
    }
    let mut chosen: Vec<usize> = (0..n_test)
        .map(|i| moved.get(&i).copied().unwrap_or(i))
        .collect();
    chosen.sort_unstable();
    chosen
}

/// What a factor dataset is: its name, sample shape and storage, and its factors.
pub struct FactorSpec {
    pub name: String,
    pub sample_shape: [usize; 3],
    /// `u1` (binary images, packed) or `u8`.
    pub dtype: &'static str,
    /// Per factor: its name, its number of values, and the values the grid holds.
    pub factors: Vec<(String, usize, Vec<u8>)>,
    /// Per factor, each of its values (all of them, by index) in the
    /// factor's own units; empty for a factor the source gives none.
    pub units: Vec<Vec<f64>>,
    /// The factors the metrics do not score, by index (SmallNORB's instance).
    pub nuisance: Vec<usize>,
}

/// How a factor dataset's test split is made.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TestSplit {
    /// This many samples drawn from the grid, which the train split keeps
    /// whole (disentanglement_lib's way: the metrics see every combination).
    Drawn(usize),
    /// This share of the grid held out of the train split.
    HeldOut(f64),
}

impl TestSplit {
    /// `--test-samples N` or, when given, `--test-fraction F`.
    pub fn of(test_samples: usize, test_fraction: Option<f64>) -> TestSplit {
        test_fraction.map_or(TestSplit::Drawn(test_samples), TestSplit::HeldOut)
    }

    /// Test samples of a grid of `n`.
    fn samples(self, n: usize) -> usize {
        match self {
            TestSplit::Drawn(k) => k.min(n),
            TestSplit::HeldOut(f) => ((f * n as f64).round() as usize).min(n.saturating_sub(1)),
        }
    }
}

impl FactorSpec {
    /// Samples in the grid.
    pub fn grid_len(&self) -> usize {
        self.factors.iter().map(|f| f.2.len()).product()
    }

    fn manifest(&self) -> DatasetManifest {
        DatasetManifest {
            format: DATASET_FORMAT.into(),
            name: self.name.clone(),
            sample_shape: self.sample_shape,
            dtype: self.dtype.into(),
            targets: (self.factors.iter())
                .map(|(name, values, _)| TargetSpec {
                    name: name.clone(),
                    values: *values,
                })
                .collect(),
            splits: Default::default(),
            factors: Some(
                (self.factors.iter().enumerate())
                    .map(|(k, (name, _, values))| Factor {
                        name: name.clone(),
                        values: values.clone(),
                        nuisance: self.nuisance.contains(&k),
                        units: match self.units.get(k) {
                            Some(u) if !u.is_empty() => values
                                .iter()
                                .map(|&v| u.get(v as usize).copied().unwrap_or(f64::NAN))
                                .collect(),
                            _ => vec![],
                        },
                    })
                    .collect(),
            ),
            held_out: false,
        }
    }

    /// The targets (factor values) of grid position `i`, row-major.
    pub fn targets_of(&self, mut i: usize) -> Vec<u8> {
        let mut t = vec![0u8; self.factors.len()];
        for (k, f) in self.factors.iter().enumerate().rev() {
            let n = f.2.len();
            t[k] = f.2[i % n];
            i /= n;
        }
        t
    }
}

/// A factor dataset being written, one sample at a time in grid order.
pub struct FactorWriter {
    store: Store,
    manifest: DatasetManifest,
    total: usize,
    test: Vec<usize>,
    /// Whether the test samples are left out of the train split.
    held_out: bool,
    next_test: usize,
    seen: usize,
    train: SplitWriter,
    test_split: SplitWriter,
}

impl FactorWriter {
    /// Starts writing `spec` to `store`, `shard_samples` to a shard, its
    /// test split made as `split` says.
    pub fn new(store: Store, spec: &FactorSpec, shard_samples: usize, split: TestSplit) -> Self {
        let total = spec.grid_len();
        let mut manifest = spec.manifest();
        manifest.held_out = matches!(split, TestSplit::HeldOut(_));
        FactorWriter {
            store,
            held_out: manifest.held_out,
            manifest,
            total,
            test: test_indices(total, split.samples(total)),
            next_test: 0,
            seen: 0,
            train: SplitWriter::new("train", shard_samples),
            test_split: SplitWriter::new("test", shard_samples),
        }
    }

    /// The next sample of the grid: its image as stored and its targets.
    pub fn push(&mut self, image: &[u8], targets: &[u8]) -> Result<(), DataError> {
        if self.test.get(self.next_test) == Some(&self.seen) {
            self.test_split.push(&self.store, image, targets)?;
            self.next_test += 1;
            if !self.held_out {
                self.train.push(&self.store, image, targets)?;
            }
        } else {
            self.train.push(&self.store, image, targets)?;
        }
        self.seen += 1;
        Ok(())
    }

    /// Writes the last shards and, last, the manifest.
    pub fn finish(self) -> Result<DatasetManifest, DataError> {
        if self.seen != self.total {
            return Err(DataError::Io {
                url: self.store.url().to_string(),
                message: format!("{} samples written, the grid has {}", self.seen, self.total),
            });
        }
        let mut m = self.manifest;
        m.splits
            .insert("train".into(), self.train.finish(&self.store)?);
        m.splits
            .insert("test".into(), self.test_split.finish(&self.store)?);
        put_manifest(&self.store, &m)?;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_split_is_a_fixed_sorted_subset() {
        let a = test_indices(1000, 50);
        assert_eq!(a, test_indices(1000, 50));
        assert_eq!(a.len(), 50);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(test_indices(10, 50).len(), 10);
    }

    /// The shuffle as a whole array, as it was written before the grid's
    /// size came from untrusted files: the sparse one picks the same samples.
    fn dense(n: usize, n_test: usize) -> Vec<usize> {
        let n_test = n_test.min(n);
        let mut pick: Vec<usize> = (0..n).collect();
        for i in 0..n_test {
            let b = rng::bits(rng::key(0, Stream::Permutation, u64::MAX, i as u64), 0);
            let j = i + rng::below(b, (n - i) as u64) as usize;
            pick.swap(i, j);
        }
        let mut chosen = pick[..n_test].to_vec();
        chosen.sort_unstable();
        chosen
    }

    #[test]
    fn the_test_split_of_a_huge_grid_holds_only_its_samples() {
        for (n, k) in [
            (737_280, 10_000),
            (480_000, 5_000),
            (1000, 1000),
            (7, 3),
            (1, 1),
        ] {
            assert_eq!(test_indices(n, k), dense(n, k), "n={n} k={k}");
        }
        let huge = 255usize.pow(7);
        let a = test_indices(huge, 1000);
        assert_eq!(a.len(), 1000);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && a[999] < huge);
    }

    #[test]
    fn targets_follow_the_grid_in_row_major_order() {
        let spec = FactorSpec {
            name: "t".into(),
            sample_shape: [1, 1, 1],
            dtype: "u8",
            factors: vec![("a".into(), 3, vec![0, 2]), ("b".into(), 5, vec![1, 3, 4])],
            units: vec![vec![0.5, 1.0, 1.5], vec![]],
            nuisance: vec![1],
        };
        let f = spec.manifest().factors.unwrap_or_default();
        assert_eq!((f[0].units.clone(), f[1].units.len()), (vec![0.5, 1.5], 0));
        assert_eq!((f[0].nuisance, f[1].nuisance), (false, true));
        assert_eq!(TestSplit::HeldOut(0.1).samples(737_280), 73_728);
        assert_eq!(TestSplit::HeldOut(0.99).samples(2), 1);
        assert_eq!(TestSplit::Drawn(10_000).samples(768), 768);
        assert_eq!(spec.grid_len(), 6);
        assert_eq!(spec.targets_of(0), vec![0, 1]);
        assert_eq!(spec.targets_of(2), vec![0, 4]);
        assert_eq!(spec.targets_of(3), vec![2, 1]);
        assert_eq!(spec.targets_of(5), vec![2, 4]);
    }
}

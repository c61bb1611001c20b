//! Disentanglement metrics on a representation of data with known generative
//! factors, computed as disentanglement_lib 1.5 computes them (with its
//! `unsupervised_study_v1` settings): the FactorVAE score ([`factorvae`]),
//! the Mutual Information Gap ([`mig`]) and the BetaVAE score ([`betavae`]).
//! Only the sampling differs: factors are drawn from the project's
//! counter-based streams instead of NumPy's. Representations are compared
//! in float64. The data and the representation come from a [`GroundTruth`]:
//! a factor dataset's stored images of any factor combination (dSprites,
//! 3dshapes, MPI3D, generated or imported), encoded to mean codes by a
//! model, or, in tests, a known function of the factors.
pub mod betavae;
pub mod dci;
pub mod factorvae;
pub mod mig;
pub mod modularity;
pub mod sap;
pub mod unsupervised;

use tch::{Device, Kind, Tensor};

use crate::rng::{self, Stream};

/// Data with known factors, and a representation of it.
pub trait GroundTruth {
    /// Number of values of each factor.
    fn factor_sizes(&self) -> Vec<usize>;
    /// Representations `[n, d]` (row-major) of the observations with the given
    /// factor indices (each `factor_sizes().len()` long).
    fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>>;
    /// The representations of each batch of factor combinations — as many
    /// calls of [`GroundTruth::represent`], but encoded together.
    fn represent_batches(&mut self, batches: &[Vec<Vec<usize>>]) -> Vec<Vec<Vec<f32>>> {
        let all: Vec<Vec<usize>> = batches.iter().flatten().cloned().collect();
        let mut reps = self.represent(&all).into_iter();
        batches
            .iter()
            .map(|b| reps.by_ref().take(b.len()).collect())
            .collect()
    }
}

/// Sample counts, as disentanglement_lib's defaults times `scale`.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub scale: f64,
}

impl Budget {
    pub fn n(&self, full: usize) -> usize {
        ((full as f64 * self.scale).round() as usize).max(10)
    }
}

/// A counter-based source of random integers for one metric run.
pub struct Draw {
    seed: u64,
    counter: u64,
}

impl Draw {
    /// The stream of a metric: `which` keeps the metrics' draws apart.
    pub fn new(seed: u64, which: u64) -> Draw {
        Draw {
            seed,
            counter: which << 40,
        }
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.counter += 1;
        rng::below(
            rng::bits(rng::key(self.seed, Stream::Metrics, 0, self.counter), 0),
            n as u64,
        ) as usize
    }
    pub fn factors(&mut self, sizes: &[usize]) -> Vec<usize> {
        sizes.iter().map(|&s| self.below(s)).collect()
    }

    /// Which of `n` factors a vote or a point fixes.
    pub fn factor_index(&mut self, n: usize) -> usize {
        let k = self.below(n);
        record::pick(k);
        k
    }
}

/// Test-only (the `fault-injection` feature): with `VAE_FAULT_RECORD_DRAWS`
/// set to a path prefix, each metric's draws — the factor index each vote or
/// point fixes, and each batch of factor combinations it represents, in
/// order — are written to `<prefix>-<metric>.json`, so a test can serve the
/// very same draws to disentanglement_lib's own functions on the same
/// encoder (`tests/python/dlib_served.py`). Without the feature, nothing.
pub mod record {
    #[cfg(feature = "fault-injection")]
    use std::sync::Mutex;

    #[cfg(feature = "fault-injection")]
    static EVENTS: Mutex<Vec<serde_json::Value>> = Mutex::new(Vec::new());

    #[cfg(feature = "fault-injection")]
    fn on() -> bool {
        std::env::var_os("VAE_FAULT_RECORD_DRAWS").is_some()
    }

    /// A factor index chosen.
    pub fn pick(_k: usize) {
        #[cfg(feature = "fault-injection")]
        if on() {
            if let Ok(mut e) = EVENTS.lock() {
                e.push(serde_json::json!({ "pick": _k }));
            }
        }
    }

    /// A batch of factor combinations represented.
    pub fn batch(_factors: &[Vec<usize>]) {
        #[cfg(feature = "fault-injection")]
        if on() {
            if let Ok(mut e) = EVENTS.lock() {
                e.push(serde_json::json!({ "batch": _factors }));
            }
        }
    }

    /// Writes what metric `_name` drew, and starts afresh.
    pub fn finish(_name: &str) {
        #[cfg(feature = "fault-injection")]
        if let Some(prefix) = std::env::var_os("VAE_FAULT_RECORD_DRAWS") {
            if let Ok(mut e) = EVENTS.lock() {
                let path = format!("{}-{_name}.json", prefix.to_string_lossy());
                let _ = std::fs::write(
                    path,
                    serde_json::Value::Array(std::mem::take(&mut *e)).to_string(),
                );
            }
        }
    }
}

/// A representation that records the batches asked of it (see [`record`]).
struct Recorded<'a>(&'a mut dyn GroundTruth);

impl GroundTruth for Recorded<'_> {
    fn factor_sizes(&self) -> Vec<usize> {
        self.0.factor_sizes()
    }
    fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>> {
        record::batch(factors);
        self.0.represent(factors)
    }
    fn represent_batches(&mut self, batches: &[Vec<Vec<usize>>]) -> Vec<Vec<Vec<f32>>> {
        batches.iter().for_each(|b| record::batch(b));
        self.0.represent_batches(batches)
    }
}

/// `f` of each item, computed on every core (items in turn on each); the
/// results in the items' order. The metrics fit one learner per factor
/// with it.
pub fn each_factor<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.min(items.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break out };
                        out.push((i, f(item)));
                        crate::watchdog::beat();
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Representations as float64 rows.
pub fn rows_f64(reps: Vec<Vec<f32>>) -> Vec<Vec<f64>> {
    reps.into_iter()
        .map(|r| r.into_iter().map(f64::from).collect())
        .collect()
}

/// `np.var(rows, axis=0, ddof=1)`: the sample variance of each column.
pub fn variances(rows: &[Vec<f64>]) -> Vec<f64> {
    let n = rows.len() as f64;
    let d = rows.first().map_or(0, |r| r.len());
    (0..d)
        .map(|j| {
            let mean = rows.iter().map(|r| r[j]).sum::<f64>() / n;
            rows.iter().map(|r| (r[j] - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)
        })
        .collect()
}

/// `np.argmax`: the index of the first largest value (NaN counts as largest).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if v[best].is_nan() {
            break;
        }
        if x.is_nan() || x > v[best] {
            best = i;
        }
    }
    best
}

/// `np.argmin`: the index of the first smallest value (NaN counts as smallest).
pub fn argmin(v: &[f64]) -> usize {
    let neg: Vec<f64> = v.iter().map(|x| -x).collect();
    argmax(&neg)
}

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
            crate::watchdog::beat();
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

/// A metric's named values.
pub type Values = Vec<(String, f64)>;

/// A metric: its name in `eval.metrics`, and the function that computes its
/// named values from a representation (each draws from its own streams).
pub struct Metric {
    pub name: &'static str,
    pub run: fn(&mut dyn GroundTruth, Budget, u64) -> Values,
}

/// Every metric, in the order of `vae_proto::config::METRICS` (a test
/// checks they agree).
pub const REGISTRY: [Metric; 7] = [
    Metric {
        name: "factorvae",
        run: |gt, b, s| vec![("factorvae_score".into(), factorvae::score(gt, b, s))],
    },
    Metric {
        name: "mig",
        run: |gt, b, s| vec![("mig".into(), mig::score(gt, b, s))],
    },
    Metric {
        name: "betavae",
        run: |gt, b, s| vec![("betavae_score".into(), betavae::score(gt, b, s))],
    },
    Metric {
        name: "dci",
        run: dci::score,
    },
    Metric {
        name: "sap",
        run: sap::score,
    },
    Metric {
        name: "modularity",
        run: modularity::score,
    },
    Metric {
        name: "unsupervised",
        run: unsupervised::score,
    },
];

/// Computes the named metrics (`eval.metrics`): every value each reports;
/// one line on stderr per metric with its wall time.
pub fn compute(
    names: &[String],
    gt: &mut dyn GroundTruth,
    budget: Budget,
    seed: u64,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let mut gt = Recorded(gt);
    for name in names {
        if let Some(m) = REGISTRY.iter().find(|m| m.name == name) {
            let start = std::time::Instant::now();
            out.extend((m.run)(&mut gt, budget, seed));
            vae_proto::errln!("metric {}: {:.3} s", m.name, start.elapsed().as_secs_f64());
            record::finish(m.name);
        }
    }
    out
}

/// `n` samples of factors drawn from stream `which`, and their codes:
/// `(codes [dims][samples], factors [factors][samples])`, as
/// disentanglement_lib's `generate_batch_factor_code` returns them.
pub fn codes_and_factors(
    gt: &mut dyn GroundTruth,
    n: usize,
    seed: u64,
    which: u64,
) -> (Vec<Vec<f64>>, Vec<Vec<usize>>) {
    let sizes = gt.factor_sizes();
    let mut draw = Draw::new(seed, which);
    let factors: Vec<Vec<usize>> = (0..n).map(|_| draw.factors(&sizes)).collect();
    let reps = rows_f64(gt.represent(&factors));
    let d = reps.first().map_or(0, |r| r.len());
    let codes = (0..d)
        .map(|j| reps.iter().map(|r| r[j]).collect())
        .collect();
    let ys = (0..sizes.len())
        .map(|k| factors.iter().map(|f| f[k]).collect())
        .collect();
    (codes, ys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [usize; 5] = [3, 6, 40, 32, 32];

    /// A representation that is a known function of the factors.
    struct Known<F: FnMut(&[usize]) -> Vec<f32>>(F);

    impl<F: FnMut(&[usize]) -> Vec<f32>> GroundTruth for Known<F> {
        fn factor_sizes(&self) -> Vec<usize> {
            SIZES.to_vec()
        }
        fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>> {
            factors.iter().map(|f| (self.0)(f)).collect()
        }
    }

    /// The factors themselves, each scaled to [0, 1].
    fn truth(f: &[usize]) -> Vec<f32> {
        f.iter()
            .zip(SIZES)
            .map(|(&v, n)| v as f32 / (n - 1) as f32)
            .collect()
    }

    /// A fixed random rotation of the (centred) true factors.
    fn rotated(f: &[usize]) -> Vec<f32> {
        let t: Vec<f32> = truth(f).iter().map(|v| v - 0.5).collect();
        // Product of rotations by 45° in the planes (0,1), (2,3), (1,4), (0,3).
        let mut v = t.clone();
        for (a, b) in [(0, 1), (2, 3), (1, 4), (0, 3)] {
            let (x, y) = (v[a], v[b]);
            let s = std::f32::consts::FRAC_1_SQRT_2;
            v[a] = s * (x - y);
            v[b] = s * (x + y);
        }
        v
    }

    fn noise(seed: u64) -> impl FnMut(&[usize]) -> Vec<f32> {
        let mut counter = 0u64;
        move |_f| {
            counter += 1;
            rng::normals(seed, Stream::Metrics, 99, counter..counter + 1, 5)
        }
    }

    const BUDGET: Budget = Budget { scale: 0.2 };

    #[test]
    fn factorvae_score_on_known_representations() {
        let t = factorvae::score(&mut Known(truth), BUDGET, 1);
        let r = factorvae::score(&mut Known(rotated), BUDGET, 1);
        let n = factorvae::score(&mut Known(noise(5)), BUDGET, 1);
        vae_proto::errln!("FactorVAE score: true {t:.3}, rotated {r:.3}, noise {n:.3}");
        assert!(t > 0.99, "true factors: {t}");
        assert!(r < t - 0.1, "rotated: {r} vs {t}");
        assert!((0.15..=0.35).contains(&n), "noise: {n}");
    }

    #[test]
    fn mig_on_known_representations() {
        let t = mig::score(&mut Known(truth), BUDGET, 1);
        let r = mig::score(&mut Known(rotated), BUDGET, 1);
        let n = mig::score(&mut Known(noise(5)), BUDGET, 1);
        vae_proto::errln!("MIG: true {t:.3}, rotated {r:.3}, noise {n:.3}");
        assert!(t > 0.75, "true factors: {t}");
        assert!(r < t - 0.2, "rotated: {r} vs {t}");
        assert!(n.abs() < 0.05, "noise: {n}");
    }

    #[test]
    fn betavae_score_on_known_representations() {
        let t = betavae::score(&mut Known(truth), Budget { scale: 0.05 }, 1);
        let n = betavae::score(&mut Known(noise(5)), Budget { scale: 0.05 }, 1);
        vae_proto::errln!("BetaVAE score: true {t:.3}, noise {n:.3}");
        assert!(t > 0.95, "true factors: {t}");
        assert!(n < 0.4, "noise: {n}");
    }

    #[test]
    fn the_registry_is_the_configs_list_of_metrics() {
        let names: Vec<&str> = REGISTRY.iter().map(|m| m.name).collect();
        assert_eq!(names, vae_proto::config::METRICS);
    }

    #[test]
    fn argmax_and_argmin_take_the_first_as_numpy() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmin(&[2.0, 1.0, 1.0]), 1);
        assert_eq!(argmax(&[1.0, f64::NAN, 5.0]), 1);
    }
}

//! Disentanglement metrics on a representation of data with known generative
//! factors, as disentanglement_lib computes them: the FactorVAE score (Kim &
//! Mnih 2018), the Mutual Information Gap (Chen et al. 2018) and the BetaVAE
//! score (Higgins et al. 2017). The data and the representation come from a
//! [`GroundTruth`]: a generator that can produce observations for any factor
//! values (dSprites), encoded to mean codes by a model, or, in tests, a known
//! function of the factors.
use tch::{Device, Kind, Tensor};

use crate::rng::{self, Stream};

/// Data with known factors, and a representation of it.
pub trait GroundTruth {
    /// Number of values of each factor.
    fn factor_sizes(&self) -> Vec<usize>;
    /// Representations `[n, d]` (row-major) of the observations with the given
    /// factor indices (each `factor_sizes().len()` long).
    fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>>;
}

/// Sample counts, as disentanglement_lib's defaults times `scale`.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub scale: f64,
}

impl Budget {
    fn n(&self, full: usize) -> usize {
        ((full as f64 * self.scale).round() as usize).max(10)
    }
}

/// A counter-based source of random integers for one metric run.
struct Draw {
    seed: u64,
    counter: u64,
}

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.counter += 1;
        rng::below(
            rng::bits(rng::key(self.seed, Stream::Metrics, 0, self.counter), 0),
            n as u64,
        ) as usize
    }
    fn factors(&mut self, sizes: &[usize]) -> Vec<usize> {
        sizes.iter().map(|&s| self.below(s)).collect()
    }
}

fn variances(reps: &[Vec<f32>]) -> Vec<f64> {
    let n = reps.len() as f64;
    let d = reps.first().map_or(0, |r| r.len());
    (0..d)
        .map(|j| {
            let mean = reps.iter().map(|r| r[j] as f64).sum::<f64>() / n;
            reps.iter()
                .map(|r| (r[j] as f64 - mean).powi(2))
                .sum::<f64>()
                / (n - 1.0).max(1.0)
        })
        .collect()
}

/// FactorVAE score: dimensions normalised by their standard deviation over
/// 10,000 samples and pruned below 0.05; each vote fixes one factor over 64
/// samples and names the dimension of least normalised variance; a
/// majority-vote classifier from dimension to factor is trained on 10,000
/// votes and scored on 5,000.
pub fn factorvae_score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> f64 {
    let sizes = gt.factor_sizes();
    let mut draw = Draw { seed, counter: 0 };
    let global: Vec<Vec<usize>> = (0..budget.n(10_000))
        .map(|_| draw.factors(&sizes))
        .collect();
    let global_var = variances(&gt.represent(&global));
    let active: Vec<usize> = (0..global_var.len())
        .filter(|&j| global_var[j].sqrt() >= 0.05)
        .collect();
    if active.is_empty() {
        return 0.0;
    }
    let mut votes = |count: usize, draw: &mut Draw| {
        let mut table = vec![vec![0usize; sizes.len()]; global_var.len()];
        for _ in 0..count {
            let k = draw.below(sizes.len());
            let mut batch: Vec<Vec<usize>> = (0..64).map(|_| draw.factors(&sizes)).collect();
            let fixed = batch[0][k];
            for f in &mut batch {
                f[k] = fixed;
            }
            let local = variances(&gt.represent(&batch));
            let best = active
                .iter()
                .copied()
                .min_by(|&a, &b| (local[a] / global_var[a]).total_cmp(&(local[b] / global_var[b])))
                .unwrap_or(0);
            table[best][k] += 1;
        }
        table
    };
    let train = votes(budget.n(10_000), &mut draw);
    let eval = votes(budget.n(5_000), &mut draw);
    let classifier: Vec<usize> = train
        .iter()
        .map(|row| (0..row.len()).max_by_key(|&k| row[k]).unwrap_or(0))
        .collect();
    let total: usize = eval.iter().flatten().sum();
    let right: usize = eval.iter().zip(&classifier).map(|(row, &k)| row[k]).sum();
    right as f64 / total.max(1) as f64
}

fn entropy(counts: &[usize]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum()
}

/// Mutual information (nats) between two discrete variables.
fn mutual_information(a: &[usize], b: &[usize]) -> f64 {
    let na = a.iter().max().map_or(0, |m| m + 1);
    let nb = b.iter().max().map_or(0, |m| m + 1);
    let mut joint = vec![0usize; na * nb];
    let (mut ca, mut cb) = (vec![0usize; na], vec![0usize; nb]);
    for (&x, &y) in a.iter().zip(b) {
        joint[x * nb + y] += 1;
        ca[x] += 1;
        cb[y] += 1;
    }
    entropy(&ca) + entropy(&cb) - entropy(&joint)
}

/// Mutual Information Gap over 10,000 samples, each code dimension
/// discretised into 20 equal-width bins: the mean over factors of the gap
/// between the two dimensions most informative about it, over its entropy.
pub fn mig(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> f64 {
    let sizes = gt.factor_sizes();
    let mut draw = Draw {
        seed,
        counter: 1 << 40,
    };
    let factors: Vec<Vec<usize>> = (0..budget.n(10_000))
        .map(|_| draw.factors(&sizes))
        .collect();
    let reps = gt.represent(&factors);
    let d = reps.first().map_or(0, |r| r.len());
    if d < 2 {
        return 0.0;
    }
    let bins = 20;
    let codes: Vec<Vec<usize>> = (0..d)
        .map(|j| {
            let (lo, hi) = reps
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), r| {
                    (l.min(r[j]), h.max(r[j]))
                });
            let width = ((hi - lo) / bins as f32).max(f32::MIN_POSITIVE);
            reps.iter()
                .map(|r| (((r[j] - lo) / width) as usize).min(bins - 1))
                .collect()
        })
        .collect();
    let mut total = 0.0;
    for k in 0..sizes.len() {
        let y: Vec<usize> = factors.iter().map(|f| f[k]).collect();
        let h = entropy(&{
            let mut c = vec![0usize; sizes[k]];
            for &v in &y {
                c[v] += 1;
            }
            c
        });
        let mut mi: Vec<f64> = codes.iter().map(|c| mutual_information(c, &y)).collect();
        mi.sort_by(|a, b| b.total_cmp(a));
        if h > 0.0 {
            total += (mi[0] - mi[1]) / h;
        }
    }
    total / sizes.len() as f64
}

/// BetaVAE score: each point fixes one factor in 64 pairs of samples and
/// takes the mean absolute difference of their representations; a linear
/// (softmax) classifier predicting the fixed factor is trained on 10,000
/// points and scored on 5,000.
pub fn betavae_score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> f64 {
    let sizes = gt.factor_sizes();
    let mut draw = Draw {
        seed,
        counter: 2 << 40,
    };
    let mut points = |count: usize, draw: &mut Draw| {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let k = draw.below(sizes.len());
            let a: Vec<Vec<usize>> = (0..64).map(|_| draw.factors(&sizes)).collect();
            let b: Vec<Vec<usize>> = a
                .iter()
                .map(|fa| {
                    let mut fb = draw.factors(&sizes);
                    fb[k] = fa[k];
                    fb
                })
                .collect();
            let (ra, rb) = (gt.represent(&a), gt.represent(&b));
            let d = ra[0].len();
            let feat: Vec<f32> = (0..d)
                .map(|j| {
                    ra.iter()
                        .zip(&rb)
                        .map(|(x, y)| (x[j] - y[j]).abs())
                        .sum::<f32>()
                        / 64.0
                })
                .collect();
            xs.push(feat);
            ys.push(k as i64);
        }
        (xs, ys)
    };
    let (xt, yt) = points(budget.n(10_000), &mut draw);
    let (xe, ye) = points(budget.n(5_000), &mut draw);
    linear_classifier_accuracy(&xt, &yt, &xe, &ye, sizes.len())
}

/// Trains a softmax regression on standardised features (Adam, full batch)
/// and returns its accuracy on the evaluation set.
pub fn linear_classifier_accuracy(
    xt: &[Vec<f32>],
    yt: &[i64],
    xe: &[Vec<f32>],
    ye: &[i64],
    classes: usize,
) -> f64 {
    let to = |x: &[Vec<f32>]| {
        let d = x[0].len() as i64;
        Tensor::from_slice(&x.concat())
            .view([-1, d])
            .to_kind(Kind::Double)
    };
    let (xt, xe) = (to(xt), to(xe));
    let mean = xt.mean_dim(0, true, Kind::Double);
    let std = xt.std_dim(0, false, true) + 1e-8;
    let (xt, xe) = ((&xt - &mean) / &std, (&xe - &mean) / &std);
    let yt = Tensor::from_slice(yt);
    let ye = Tensor::from_slice(ye);
    // Weights and bias in one flat tensor, trained with the project's Adam.
    let (d, k) = (xt.size()[1], classes as i64);
    let mut flat = Tensor::zeros([d * k + k], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let cfg = vae_proto::config::OptimSection {
        lr: 0.05,
        ..Default::default()
    };
    let mut adam = crate::optim::Adam::for_tensor(&cfg, &flat);
    let split = |flat: &Tensor| {
        (
            flat.narrow(0, 0, d * k).view([d, k]),
            flat.narrow(0, d * k, k),
        )
    };
    for _ in 0..500 {
        let (w, b) = split(&flat);
        let loss = (xt.matmul(&w) + b).cross_entropy_for_logits(&yt);
        let grad = Tensor::run_backward(&[loss], &[&flat], false, false).remove(0);
        adam.step(&mut flat, &grad, cfg.lr);
    }
    let (w, b) = split(&flat.detach());
    let pred = (xe.matmul(&w) + &b).argmax(1, false);
    pred.eq_tensor(&ye)
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

/// dSprites rendered by the generator for any factor values, encoded by a
/// model to its mean codes `μ`.
pub struct EncoderOnDsprites<'a> {
    pub model: &'a dyn crate::model::Vae,
    pub device: Device,
    pub kind: Kind,
}

impl GroundTruth for EncoderOnDsprites<'_> {
    fn factor_sizes(&self) -> Vec<usize> {
        crate::data::dsprites::FACTOR_SIZES.to_vec()
    }

    fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>> {
        use crate::data::dsprites::{render, SIDE};
        let mut out = Vec::with_capacity(factors.len());
        let mut img = vec![0u8; SIDE * SIDE];
        for chunk in factors.chunks(512) {
            let mut pixels = Vec::with_capacity(chunk.len() * SIDE * SIDE);
            for f in chunk {
                render([f[0], f[1], f[2], f[3], f[4]], &mut img);
                pixels.extend_from_slice(&img);
            }
            let x = Tensor::from_slice(&pixels)
                .view([chunk.len() as i64, 1, SIDE as i64, SIDE as i64])
                .to_device(self.device)
                .to_kind(self.kind);
            let mu = tch::no_grad(|| self.model.encode(&x).0)
                .to_kind(Kind::Float)
                .to_device(Device::Cpu);
            let d = mu.size()[1] as usize;
            let flat = Vec::<f32>::try_from(mu.contiguous().view([-1])).unwrap_or_default();
            out.extend(flat.chunks(d.max(1)).map(|r| r.to_vec()));
        }
        out
    }
}

/// Computes the named metrics (`factorvae`, `mig`, `betavae`).
pub fn compute(
    names: &[String],
    gt: &mut dyn GroundTruth,
    budget: Budget,
    seed: u64,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for name in names {
        let (key, v) = match name.as_str() {
            "factorvae" => ("factorvae_score", factorvae_score(gt, budget, seed)),
            "mig" => ("mig", mig(gt, budget, seed)),
            "betavae" => ("betavae_score", betavae_score(gt, budget, seed)),
            _ => continue,
        };
        out.insert(key.to_string(), v);
    }
    out
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
        let t = factorvae_score(&mut Known(truth), BUDGET, 1);
        let r = factorvae_score(&mut Known(rotated), BUDGET, 1);
        let n = factorvae_score(&mut Known(noise(5)), BUDGET, 1);
        eprintln!("FactorVAE score: true {t:.3}, rotated {r:.3}, noise {n:.3}");
        assert!(t > 0.99, "true factors: {t}");
        assert!(r < t - 0.1, "rotated: {r} vs {t}");
        assert!((0.15..=0.35).contains(&n), "noise: {n}");
    }

    #[test]
    fn mig_on_known_representations() {
        let t = mig(&mut Known(truth), BUDGET, 1);
        let r = mig(&mut Known(rotated), BUDGET, 1);
        let n = mig(&mut Known(noise(5)), BUDGET, 1);
        eprintln!("MIG: true {t:.3}, rotated {r:.3}, noise {n:.3}");
        assert!(t > 0.75, "true factors: {t}");
        assert!(r < t - 0.2, "rotated: {r} vs {t}");
        assert!(n.abs() < 0.05, "noise: {n}");
    }

    #[test]
    fn betavae_score_on_known_representations() {
        let t = betavae_score(&mut Known(truth), Budget { scale: 0.05 }, 1);
        let n = betavae_score(&mut Known(noise(5)), Budget { scale: 0.05 }, 1);
        eprintln!("BetaVAE score: true {t:.3}, noise {n:.3}");
        assert!(t > 0.95, "true factors: {t}");
        assert!(n < 0.4, "noise: {n}");
    }

    #[test]
    fn mutual_information_and_entropy_on_known_cases() {
        assert!((entropy(&[5, 5]) - 2f64.ln()).abs() < 1e-12);
        let a = [0, 1, 0, 1, 0, 1];
        assert!((mutual_information(&a, &a) - 2f64.ln()).abs() < 1e-12);
        let b = [0, 0, 1, 1, 2, 2];
        assert!(mutual_information(&[0, 1, 0, 1, 0, 1], &[0, 0, 0, 1, 1, 1]).abs() < 0.2);
        assert!((mutual_information(&b, &b) - 3f64.ln()).abs() < 1e-12);
    }
}

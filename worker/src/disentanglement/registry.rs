//! The registry of metrics: each by its name in `eval.metrics` and the
//! function that computes its values ([`REGISTRY`]), and [`compute`], which
//! runs the ones asked for. A new metric is a file beside this one and a
//! line in [`REGISTRY`] (and its name in `vae_proto::config::METRICS`).
use super::ground_truth::{Budget, GroundTruth, Values};
use super::{betavae, dci, factorvae, irs, mig, modularity, sap, unsupervised};

/// A metric: its name in `eval.metrics`, and the function that computes its
/// named values from a representation (each draws from its own streams).
pub struct Metric {
    pub name: &'static str,
    pub run: fn(&mut dyn GroundTruth, Budget, u64) -> Values,
}

/// Every metric, in the order of `vae_proto::config::METRICS` (a test
/// checks they agree).
pub const REGISTRY: [Metric; 9] = [
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
    Metric {
        name: "unsupervised_sampled",
        run: unsupervised::score_sampled,
    },
    Metric {
        name: "irs",
        run: irs::score,
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
            crate::faults::draws::finish(m.name);
        }
    }
    out
}

/// A representation that records the batches asked of it (a fault hook:
/// [`crate::faults::draws`]).
struct Recorded<'a>(&'a mut dyn GroundTruth);

impl GroundTruth for Recorded<'_> {
    fn factor_sizes(&self) -> Vec<usize> {
        self.0.factor_sizes()
    }
    fn represent(&mut self, factors: &[Vec<usize>]) -> Vec<Vec<f32>> {
        crate::faults::draws::batch(factors);
        self.0.represent(factors)
    }
    fn represent_batches(&mut self, batches: &[Vec<Vec<usize>>]) -> Vec<Vec<Vec<f32>>> {
        batches.iter().for_each(|b| crate::faults::draws::batch(b));
        self.0.represent_batches(batches)
    }
    fn represent_sampled(&mut self, factors: &[Vec<usize>], seed: u64) -> Vec<Vec<f32>> {
        crate::faults::draws::batch(factors);
        self.0.represent_sampled(factors, seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{self, Stream};

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
    fn irs_on_known_representations() {
        let t = irs::score(&mut Known(truth), BUDGET, 1)[0].1;
        let r = irs::score(&mut Known(rotated), BUDGET, 1)[0].1;
        vae_proto::errln!("IRS: true {t:.3}, rotated {r:.3}");
        // Factors of more than 20 values are binned (as disentanglement_lib
        // does), so even the true factors stay a little below 1.
        assert!(t > 0.95, "true factors: {t}");
        assert!(r < t - 0.1, "rotated: {r} vs {t}");
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
}

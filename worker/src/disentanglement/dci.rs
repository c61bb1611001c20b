//! DCI (Eastwood & Williams 2018) as disentanglement_lib 1.5's
//! `compute_dci` computes it on 10,000 training and 5,000 test samples: per
//! factor, scikit-learn's `GradientBoostingClassifier()` with its defaults
//! (log loss, 100 stages, depth-3 regression trees on the squared error —
//! scikit-learn 1.9's trees for boosting; `friedman_mse` picks the same
//! splits —, learning rate 0.1, prior initialisation, Newton leaf values,
//! one tree per class and stage for more than two classes) gives a column of
//! the importance matrix (`feature_importances_`: each tree's impurity
//! decrease per feature over its root's samples, averaged over the trees,
//! normalised) and its test accuracy; disentanglement and completeness are
//! the importance-weighted `1 − entropy` of the matrix's rows and columns,
//! informativeness the mean accuracy on the test samples
//! (`dci_informativeness`) and on the training ones
//! (`dci_informativeness_train`). The trees here are that
//! algorithm written out (a tie between features may split on another of
//! them than scikit-learn's random feature order does).
use super::ground_truth::{codes_and_factors, Budget, GroundTruth, Values};
use super::stats::each_factor;

/// `GradientBoostingClassifier()`'s defaults.
const STAGES: usize = 100;
const DEPTH: usize = 3;
const LEARNING_RATE: f64 = 0.1;

/// The scores of the representation of `gt`.
pub fn score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> Values {
    let (codes, ys) = codes_and_factors(gt, budget.n(10_000), seed, 9);
    let (test_codes, test_ys) = codes_and_factors(gt, budget.n(5_000), seed, 10);
    let d = dci(&codes, &ys, &test_codes, &test_ys);
    vec![
        ("dci_disentanglement".into(), d.disentanglement),
        ("dci_completeness".into(), d.completeness),
        ("dci_informativeness_train".into(), d.informativeness_train),
        ("dci_informativeness".into(), d.informativeness_test),
    ]
}

/// DCI's three figures.
#[derive(Clone, Copy, Debug)]
pub struct Dci {
    pub disentanglement: f64,
    pub completeness: f64,
    pub informativeness_train: f64,
    pub informativeness_test: f64,
}

/// DCI of codes `[dims][samples]` against factors `[factors][samples]`.
pub fn dci(codes: &[Vec<f64>], ys: &[Vec<usize>], tcodes: &[Vec<f64>], tys: &[Vec<usize>]) -> Dci {
    let x = features(codes);
    let xt = features(tcodes);
    let mut importance = vec![vec![0.0; ys.len()]; codes.len()];
    let (mut train, mut test) = (0.0, 0.0);
    let pairs: Vec<_> = ys.iter().zip(tys).collect();
    let fitted = each_factor(&pairs, |(y, yt)| {
        let model = Boosted::fit(&x, y);
        (
            model.importances(),
            model.accuracy(&x, y),
            model.accuracy(&xt, yt),
        )
    });
    for (j, (importances, on_train, on_test)) in fitted.into_iter().enumerate() {
        for (i, v) in importances.into_iter().enumerate() {
            importance[i][j] = v.abs();
        }
        train += on_train;
        test += on_test;
    }
    let factors = ys.len().max(1) as f64;
    Dci {
        disentanglement: disentanglement(&importance),
        completeness: completeness(&importance),
        informativeness_train: train / factors,
        informativeness_test: test / factors,
    }
}

/// Codes as scikit-learn's trees see them: float32.
fn features(codes: &[Vec<f64>]) -> Vec<Vec<f32>> {
    codes
        .iter()
        .map(|c| c.iter().map(|&v| v as f32).collect())
        .collect()
}

/// `scipy.stats.entropy(p + 1e-11, base)`: the entropy of `p` normalised.
fn entropy(p: &[f64], base: f64) -> f64 {
    let q: Vec<f64> = p.iter().map(|v| v + 1e-11).collect();
    let s: f64 = q.iter().sum();
    -q.iter().map(|v| (v / s) * (v / s).ln()).sum::<f64>() / base.ln()
}

/// `importance` is `[codes][factors]`.
pub fn disentanglement(importance: &[Vec<f64>]) -> f64 {
    let factors = importance.first().map_or(0, |r| r.len());
    let total: f64 = importance.iter().flatten().sum();
    importance
        .iter()
        .map(|row| {
            let weight = if total == 0.0 {
                1.0 / importance.len() as f64
            } else {
                row.iter().sum::<f64>() / total
            };
            (1.0 - entropy(row, factors as f64)) * weight
        })
        .sum()
}

/// `importance` is `[codes][factors]`.
pub fn completeness(importance: &[Vec<f64>]) -> f64 {
    let factors = importance.first().map_or(0, |r| r.len());
    let total: f64 = importance.iter().flatten().sum();
    (0..factors)
        .map(|j| {
            let col: Vec<f64> = importance.iter().map(|r| r[j]).collect();
            let weight = if total == 0.0 {
                1.0 / factors as f64
            } else {
                col.iter().sum::<f64>() / total
            };
            (1.0 - entropy(&col, importance.len() as f64)) * weight
        })
        .sum()
}

/// A regression tree's node.
#[derive(Clone, Debug)]
enum Node {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    Leaf {
        value: f64,
    },
}

/// A depth-limited regression tree on the `friedman_mse` criterion.
#[derive(Clone, Debug)]
struct Tree {
    nodes: Vec<Node>,
    /// Per feature: the impurity decrease of its splits, over the root's samples.
    importance: Vec<f64>,
}

impl Tree {
    /// Fits residuals `r` on features `x` (`[features][samples]`), whose
    /// samples are also given sorted by each feature (`order`).
    fn fit(x: &[Vec<f32>], order: &[Vec<u32>], r: &[f64]) -> Tree {
        let n = r.len();
        let mut tree = Tree {
            nodes: Vec::new(),
            importance: vec![0.0; x.len()],
        };
        let mut node_of = vec![0u32; n];
        tree.grow(x, order, r, &mut node_of, 0, 0, n as f64);
        tree
    }

    /// Grows the node holding the samples `s` with `node_of[s] == id`,
    /// placed at `self.nodes.len()`; returns its index.
    #[allow(clippy::too_many_arguments)]
    fn grow(
        &mut self,
        x: &[Vec<f32>],
        order: &[Vec<u32>],
        r: &[f64],
        node_of: &mut [u32],
        id: u32,
        depth: usize,
        root_n: f64,
    ) -> usize {
        let at = self.nodes.len();
        self.nodes.push(Node::Leaf { value: 0.0 });
        let members: Vec<u32> = order[0]
            .iter()
            .copied()
            .filter(|&s| node_of[s as usize] == id)
            .collect();
        let n = members.len() as f64;
        let (sum, sq) = members.iter().fold((0.0, 0.0), |(a, b), &s| {
            let v = r[s as usize];
            (a + v, b + v * v)
        });
        let impurity = sq / n - (sum / n).powi(2);
        if depth >= DEPTH || members.len() < 2 || impurity <= f64::EPSILON {
            return at;
        }
        let Some((feature, threshold, (il, nl), (ir, nr))) = best_split(x, order, r, node_of, id)
        else {
            return at;
        };
        self.importance[feature] += (n * impurity - nl * il - nr * ir) / root_n;
        let (lid, rid) = (id * 2 + 1, id * 2 + 2);
        for &s in &members {
            node_of[s as usize] = if (x[feature][s as usize] as f64) <= threshold {
                lid
            } else {
                rid
            };
        }
        let left = self.grow(x, order, r, node_of, lid, depth + 1, root_n);
        let right = self.grow(x, order, r, node_of, rid, depth + 1, root_n);
        self.nodes[at] = Node::Split {
            feature,
            threshold,
            left,
            right,
        };
        at
    }

    /// The leaf sample `s` of `x` falls in.
    fn leaf(&self, x: &[Vec<f32>], s: usize) -> usize {
        let mut at = 0;
        while let Node::Split {
            feature,
            threshold,
            left,
            right,
        } = self.nodes[at]
        {
            at = if (x[feature][s] as f64) <= threshold {
                left
            } else {
                right
            };
        }
        at
    }

    fn predict(&self, x: &[Vec<f32>], s: usize) -> f64 {
        match self.nodes[self.leaf(x, s)] {
            Node::Leaf { value } => value,
            Node::Split { .. } => 0.0,
        }
    }
}

/// The split of node `id` with the largest proxy improvement of the squared
/// error (`sum_left² / n_left + sum_right² / n_right`):
/// `(feature, threshold, (impurity, n) left, right)`.
type Split = (usize, f64, (f64, f64), (f64, f64));

fn best_split(
    x: &[Vec<f32>],
    order: &[Vec<u32>],
    r: &[f64],
    node_of: &[u32],
    id: u32,
) -> Option<Split> {
    let mut best: Option<(f64, Split)> = None;
    for (f, sorted) in order.iter().enumerate() {
        let members: Vec<u32> = sorted
            .iter()
            .copied()
            .filter(|&s| node_of[s as usize] == id)
            .collect();
        let n = members.len() as f64;
        let (total, total_sq) = members.iter().fold((0.0, 0.0), |(a, b), &s| {
            let v = r[s as usize];
            (a + v, b + v * v)
        });
        let (mut sl, mut ql) = (0.0, 0.0);
        for i in 0..members.len() - 1 {
            let v = r[members[i] as usize];
            sl += v;
            ql += v * v;
            let (a, b) = (x[f][members[i] as usize], x[f][members[i + 1] as usize]);
            // scikit-learn's FEATURE_THRESHOLD: no split between equal values.
            if b <= a + 1e-7 {
                continue;
            }
            let nl = (i + 1) as f64;
            let nr = n - nl;
            let (sr, qr) = (total - sl, total_sq - ql);
            let proxy = sl * sl / nl + sr * sr / nr;
            if best.as_ref().is_none_or(|(p, _)| proxy > *p) {
                let il = ql / nl - (sl / nl).powi(2);
                let ir = qr / nr - (sr / nr).powi(2);
                let threshold = (a as f64 + b as f64) / 2.0;
                best = Some((proxy, (f, threshold, (il, nl), (ir, nr))));
            }
        }
    }
    best.map(|(_, s)| s)
}

/// A gradient-boosted classifier: trees per stage (one per class, or one
/// for two classes) on the log loss's negative gradient.
struct Boosted {
    classes: Vec<usize>,
    init: Vec<f64>,
    stages: Vec<Vec<Tree>>,
}

impl Boosted {
    fn fit(x: &[Vec<f32>], y: &[usize]) -> Boosted {
        let n = y.len();
        let mut classes: Vec<usize> = y.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let k = classes.len();
        let index: Vec<usize> = y
            .iter()
            .map(|v| classes.partition_point(|c| c < v))
            .collect();
        let prior: Vec<f64> = (0..k)
            .map(|c| index.iter().filter(|&&i| i == c).count() as f64 / n as f64)
            .collect();
        let trees = if k <= 2 { 1 } else { k };
        let init: Vec<f64> = match k {
            1 => vec![0.0],
            2 => vec![(prior[1] / prior[0]).ln()],
            _ => prior.iter().map(|p| p.ln()).collect(),
        };
        let order: Vec<Vec<u32>> = x
            .iter()
            .map(|col| {
                let mut o: Vec<u32> = (0..n as u32).collect();
                o.sort_by(|&a, &b| col[a as usize].total_cmp(&col[b as usize]));
                o
            })
            .collect();
        let mut raw: Vec<Vec<f64>> = (0..trees).map(|t| vec![init[t]; n]).collect();
        let mut stages = Vec::new();
        if k == 1 {
            return Boosted {
                classes,
                init,
                stages,
            };
        }
        for _ in 0..STAGES {
            // Progress for the watchdog: a fit takes seconds, not a step's ms.
            crate::heartbeat::beat();
            let probs = probabilities(&raw, n, k);
            let mut stage = Vec::with_capacity(trees);
            for (t, raw_t) in raw.iter_mut().enumerate() {
                // Class t's indicator (for two classes: class 1's).
                let target = if k == 2 { 1 } else { t };
                let y: Vec<bool> = index.iter().map(|&i| i == target).collect();
                let tree = newton_tree(x, &order, &y, &probs[target], k);
                for (s, r) in raw_t.iter_mut().enumerate() {
                    *r += LEARNING_RATE * tree.predict(x, s);
                }
                stage.push(tree);
            }
            stages.push(stage);
        }
        Boosted {
            classes,
            init,
            stages,
        }
    }

    /// `feature_importances_`: the trees' importances (those that split),
    /// averaged, normalised to sum 1.
    fn importances(&self) -> Vec<f64> {
        let trees: Vec<&Tree> = self
            .stages
            .iter()
            .flatten()
            .filter(|t| t.nodes.len() > 1)
            .collect();
        let d = trees.first().map_or(0, |t| t.importance.len());
        let mut avg = vec![0.0; d];
        for t in &trees {
            for (a, v) in avg.iter_mut().zip(&t.importance) {
                *a += v / trees.len() as f64;
            }
        }
        let s: f64 = avg.iter().sum();
        if s > 0.0 {
            avg.iter_mut().for_each(|a| *a /= s);
        }
        avg
    }

    /// The fraction of the samples of `x` predicted as `y`.
    fn accuracy(&self, x: &[Vec<f32>], y: &[usize]) -> f64 {
        let right = (0..y.len()).filter(|&s| self.predict(x, s) == y[s]).count();
        right as f64 / y.len().max(1) as f64
    }

    /// The predicted class of sample `s` of `x`.
    fn predict(&self, x: &[Vec<f32>], s: usize) -> usize {
        let mut raw = self.init.clone();
        for stage in &self.stages {
            for (t, tree) in stage.iter().enumerate() {
                raw[t] += LEARNING_RATE * tree.predict(x, s);
            }
        }
        let c = match self.classes.len() {
            1 => 0,
            2 => usize::from(raw[0] > 0.0),
            _ => super::stats::argmax(&raw),
        };
        self.classes[c]
    }
}

/// A tree fitted to the log loss's negative gradient `y − p` of one class
/// (`k` classes), its leaves set by one Newton step as scikit-learn's
/// `_update_terminal_regions` sets them.
fn newton_tree(x: &[Vec<f32>], order: &[Vec<u32>], y: &[bool], p: &[f64], k: usize) -> Tree {
    let residual: Vec<f64> = y
        .iter()
        .zip(p)
        .map(|(&y, &p)| f64::from(u8::from(y)) - p)
        .collect();
    let mut tree = Tree::fit(x, order, &residual);
    let mut num = vec![0.0; tree.nodes.len()];
    let mut den = vec![0.0; tree.nodes.len()];
    for (s, (r, p)) in residual.iter().zip(p).enumerate() {
        let leaf = tree.leaf(x, s);
        num[leaf] += r;
        den[leaf] += p * (1.0 - p);
    }
    let factor = if k == 2 {
        1.0
    } else {
        (k - 1) as f64 / k as f64
    };
    for (i, node) in tree.nodes.iter_mut().enumerate() {
        if let Node::Leaf { value } = node {
            *value = if den[i].abs() < 1e-150 {
                0.0
            } else {
                factor * num[i] / den[i]
            };
        }
    }
    tree
}

/// Class probabilities `[classes][samples]` of raw predictions: the
/// softmax over classes, or for two classes the sigmoid of the one.
fn probabilities(raw: &[Vec<f64>], n: usize, k: usize) -> Vec<Vec<f64>> {
    if k == 2 {
        let p1: Vec<f64> = raw[0].iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
        return vec![p1.iter().map(|p| 1.0 - p).collect(), p1];
    }
    let mut out = vec![vec![0.0; n]; k];
    for s in 0..n {
        let m = (0..k).map(|c| raw[c][s]).fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = (0..k).map(|c| (raw[c][s] - m).exp()).sum();
        for c in 0..k {
            out[c][s] = (raw[c][s] - m).exp() / z;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_code_per_factor_is_disentangled_and_complete() {
        let id = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert!((disentanglement(&id) - 1.0).abs() < 1e-6);
        assert!((completeness(&id) - 1.0).abs() < 1e-6);
        let mixed = vec![vec![1.0, 1.0], vec![1.0, 1.0]];
        assert!(disentanglement(&mixed).abs() < 1e-6);
    }

    #[test]
    fn boosting_learns_a_factor_from_its_code() {
        let y: Vec<usize> = (0..600).map(|i| i % 3).collect();
        let good: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f64 + (i % 7) as f64 * 0.01)
            .collect();
        let noise: Vec<f64> = (0..600).map(|i| ((i * 7919) % 600) as f64).collect();
        let (codes, ys) = ([good, noise], [y]);
        let d = dci(&codes, &ys, &codes, &ys);
        assert!(d.informativeness_test > 0.99, "{d:?}");
        assert!(d.completeness > 0.8, "{d:?}");
    }
}

//! The SAP score (Kumar et al. 2018) as disentanglement_lib 1.5's
//! `compute_sap` computes it for discrete factors, on 10,000 training and
//! 5,000 test samples: for each code dimension and factor, the test
//! accuracy of scikit-learn's `LinearSVC(C=0.01, class_weight="balanced")`
//! on that one dimension; the score is the mean over factors of the gap
//! between the two best dimensions. The SVM is liblinear's problem, solved
//! exactly: squared hinge loss, L2 penalty on the weight and on the
//! intercept (liblinear's bias feature), one class against the rest with
//! the class's balanced weight on its positives (liblinear's weighted C);
//! with one feature and a bias, Newton's method on two parameters.
use super::ground_truth::{codes_and_factors, Budget, GroundTruth};

/// `LinearSVC`'s `C`.
const C: f64 = 0.01;

/// The score of the representation of `gt`.
pub fn score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> Vec<(String, f64)> {
    let (codes, ys) = codes_and_factors(gt, budget.n(10_000), seed, 7);
    let (test_codes, test_ys) = codes_and_factors(gt, budget.n(5_000), seed, 8);
    vec![("sap_score".into(), sap(&codes, &ys, &test_codes, &test_ys))]
}

/// SAP of codes `[dims][samples]` against factors `[factors][samples]`.
pub fn sap(codes: &[Vec<f64>], ys: &[Vec<usize>], tcodes: &[Vec<f64>], tys: &[Vec<usize>]) -> f64 {
    if codes.len() < 2 {
        return 0.0;
    }
    let gaps: Vec<f64> = ys
        .iter()
        .zip(tys)
        .map(|(y, yt)| {
            let mut acc: Vec<f64> = codes
                .iter()
                .zip(tcodes)
                .map(|(c, ct)| accuracy(c, y, ct, yt))
                .collect();
            acc.sort_by(|a, b| b.total_cmp(a));
            acc[0] - acc[1]
        })
        .collect();
    gaps.iter().sum::<f64>() / gaps.len() as f64
}

/// Test accuracy of the SVM trained on one dimension `x` for labels `y`.
pub fn accuracy(x: &[f64], y: &[usize], xt: &[f64], yt: &[usize]) -> f64 {
    let mut classes: Vec<usize> = y.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let n = y.len() as f64;
    let weight =
        |c: usize| n / (classes.len() as f64 * y.iter().filter(|&&v| v == c).count() as f64);
    let predict: Box<dyn Fn(f64) -> usize> = match classes.len() {
        0 => return 0.0,
        1 => {
            let c = classes[0];
            Box::new(move |_| c)
        }
        2 => {
            let (neg, pos) = (classes[0], classes[1]);
            let (w, b) = fit(
                x,
                &y.iter().map(|&v| v == pos).collect::<Vec<_>>(),
                C * weight(pos),
                C * weight(neg),
            );
            Box::new(move |v| if w * v + b > 0.0 { pos } else { neg })
        }
        _ => {
            let models: Vec<(usize, f64, f64)> = classes
                .iter()
                .map(|&c| {
                    let positive: Vec<bool> = y.iter().map(|&v| v == c).collect();
                    let (w, b) = fit(x, &positive, C * weight(c), C);
                    (c, w, b)
                })
                .collect();
            Box::new(move |v| {
                let mut best = (models[0].0, f64::NEG_INFINITY);
                for &(c, w, b) in &models {
                    if w * v + b > best.1 {
                        best = (c, w * v + b);
                    }
                }
                best.0
            })
        }
    };
    let right = xt
        .iter()
        .zip(yt)
        .filter(|(v, y)| predict(**v) == **y)
        .count();
    right as f64 / yt.len().max(1) as f64
}

/// `argmin ½(w² + b²) + Σ cᵢ max(0, 1 − yᵢ(w xᵢ + b))²` with `cᵢ = c_pos`
/// for the positives (yᵢ = +1) and `c_neg` for the rest.
pub fn fit(x: &[f64], positive: &[bool], c_pos: f64, c_neg: f64) -> (f64, f64) {
    let objective = |w: f64, b: f64| {
        let mut f = 0.5 * (w * w + b * b);
        for (&xi, &p) in x.iter().zip(positive) {
            let (y, c) = if p { (1.0, c_pos) } else { (-1.0, c_neg) };
            let m = 1.0 - y * (w * xi + b);
            if m > 0.0 {
                f += c * m * m;
            }
        }
        f
    };
    let (mut w, mut b) = (0.0, 0.0);
    for _ in 0..100 {
        // Gradient and (generalised) Hessian of the objective.
        let (mut gw, mut gb) = (w, b);
        let (mut hww, mut hwb, mut hbb) = (1.0, 0.0, 1.0);
        for (&xi, &p) in x.iter().zip(positive) {
            let (y, c) = if p { (1.0, c_pos) } else { (-1.0, c_neg) };
            let m = 1.0 - y * (w * xi + b);
            if m > 0.0 {
                gw -= 2.0 * c * m * y * xi;
                gb -= 2.0 * c * m * y;
                hww += 2.0 * c * xi * xi;
                hwb += 2.0 * c * xi;
                hbb += 2.0 * c;
            }
        }
        if gw.abs() + gb.abs() < 1e-12 {
            break;
        }
        let det = hww * hbb - hwb * hwb;
        let (dw, db) = ((hbb * gw - hwb * gb) / det, (hww * gb - hwb * gw) / det);
        let f0 = objective(w, b);
        let mut t = 1.0;
        while t > 1e-12 && objective(w - t * dw, b - t * db) > f0 - 0.25 * t * (gw * dw + gb * db) {
            t *= 0.5;
        }
        w -= t * dw;
        b -= t * db;
        if (t * dw).abs() + (t * db).abs() < 1e-14 {
            break;
        }
    }
    (w, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separable_dimension_is_learned_and_the_best_two_give_the_gap() {
        let y: Vec<usize> = (0..600).map(|i| i % 3).collect();
        let good: Vec<f64> = y.iter().map(|&v| v as f64 * 10.0).collect();
        let noise: Vec<f64> = (0..600).map(|i| ((i * 7919) % 600) as f64 / 60.0).collect();
        let acc = accuracy(&good, &y, &good, &y);
        assert!(acc > 0.6, "{acc}");
        let ys = [y];
        let s = sap(&[good.clone(), noise.clone()], &ys, &[good, noise], &ys);
        assert!(s > 0.2, "{s}");
    }

    #[test]
    fn the_solution_is_stationary() {
        let x = [-2.0, -1.0, 0.5, 1.0, 3.0];
        let pos = [false, false, true, true, true];
        let (w, b) = fit(&x, &pos, 0.7, 0.3);
        let h = 1e-6;
        let f = |w: f64, b: f64| {
            0.5 * (w * w + b * b)
                + x.iter()
                    .zip(&pos)
                    .map(|(&xi, &p)| {
                        let (y, c) = if p { (1.0, 0.7) } else { (-1.0, 0.3) };
                        c * (1.0 - y * (w * xi + b)).max(0.0).powi(2)
                    })
                    .sum::<f64>()
        };
        assert!((f(w + h, b) - f(w - h, b)).abs() / (2.0 * h) < 1e-5);
        assert!((f(w, b + h) - f(w, b - h)).abs() / (2.0 * h) < 1e-5);
    }
}

//! The arithmetic the metrics share, as NumPy does it: column variances,
//! `argmax`/`argmin`, ranks with ties averaged (scipy's `rankdata`),
//! quantiles (`np.quantile`'s linear interpolation),
//! float64 rows, and one learner per factor on every core.

/// The `q` quantile (0..=1) of `xs`, linearly interpolated (NumPy's
/// default); NaN when empty.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let at = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (at - lo as f64)
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
                        crate::heartbeat::beat();
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
/// The ranks of `xs` (1 = smallest), ties given their mean rank
/// (`scipy.stats.rankdata`).
pub fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_and_argmin_take_the_first_as_numpy() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmin(&[2.0, 1.0, 1.0]), 1);
        assert_eq!(argmax(&[1.0, f64::NAN, 5.0]), 1);
    }
}

//! The FactorVAE score (Kim & Mnih 2018) as disentanglement_lib 1.5's
//! `compute_factor_vae` computes it: column variances (`ddof = 1`) over
//! 10,000 samples; dimensions whose standard deviation is below 0.05 are
//! pruned; each vote fixes one factor over a batch of 64 and names the active
//! dimension of least variance relative to the global one; a majority-vote
//! classifier from dimension to factor is trained on 10,000 votes and scored
//! on 5,000.
//!
//! As in disentanglement_lib, a vote's column is the argmin's index *among
//! the active dimensions*; that only relabels the columns (one to one), so
//! the score is the same as with dimension indices.
use super::draw::Draw;
use super::ground_truth::{Budget, GroundTruth};
use super::stats::{argmax, argmin, rows_f64, variances};

/// Threshold on a dimension's standard deviation below which it is pruned
/// (`prune_dims.threshold` in disentanglement_lib's study config).
pub const PRUNE_THRESHOLD: f64 = 0.05;
/// Samples per vote (`batch_size`).
pub const BATCH: usize = 64;

/// The score of the representation of `gt`.
pub fn score(gt: &mut dyn GroundTruth, budget: Budget, seed: u64) -> f64 {
    let sizes = gt.factor_sizes();
    let mut draw = Draw::new(seed, 0);
    let global: Vec<Vec<usize>> = (0..budget.n(10_000))
        .map(|_| draw.factors(&sizes))
        .collect();
    let global_var = variances(&rows_f64(gt.represent(&global)));
    let active = active_dims(&global_var);
    if !active.iter().any(|&a| a) {
        return 0.0;
    }
    let mut votes = |count: usize, draw: &mut Draw| {
        let (mut batches, mut fixed) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for _ in 0..count {
            let k = draw.factor_index(sizes.len());
            let mut batch: Vec<Vec<usize>> = (0..BATCH).map(|_| draw.factors(&sizes)).collect();
            let value = batch[0][k];
            for f in &mut batch {
                f[k] = value;
            }
            batches.push(batch);
            fixed.push(k);
        }
        let mut table = vec![vec![0u64; global_var.len()]; sizes.len()];
        for (reps, k) in gt.represent_batches(&batches).into_iter().zip(fixed) {
            let local = variances(&rows_f64(reps));
            table[k][vote(&local, &global_var, &active)] += 1;
        }
        table
    };
    let train = votes(budget.n(10_000), &mut draw);
    let eval = votes(budget.n(5_000), &mut draw);
    accuracy(&train, &eval)
}

/// `_prune_dims`: whether each dimension's standard deviation reaches the threshold.
pub fn active_dims(global_var: &[f64]) -> Vec<bool> {
    global_var
        .iter()
        .map(|v| v.sqrt() >= PRUNE_THRESHOLD)
        .collect()
}

/// One vote: `np.argmin(local[active] / global[active])`, an index among
/// the active dimensions (the first on ties).
pub fn vote(local_var: &[f64], global_var: &[f64], active: &[bool]) -> usize {
    let ratios: Vec<f64> = (0..local_var.len())
        .filter(|&j| active[j])
        .map(|j| local_var[j] / global_var[j])
        .collect();
    argmin(&ratios)
}

/// The majority-vote classifier's accuracy: `votes[factor][dimension]`
/// counts; each dimension is classified as the factor with the most
/// training votes (the first on ties, as `np.argmax`), and the accuracy is
/// the share of evaluation votes it gets right.
pub fn accuracy(train: &[Vec<u64>], eval: &[Vec<u64>]) -> f64 {
    let dims = train.first().map_or(0, |r| r.len());
    let (mut right, mut total) = (0u64, 0u64);
    for d in 0..dims {
        let column: Vec<f64> = train.iter().map(|r| r[d] as f64).collect();
        let k = argmax(&column);
        right += eval[k][d];
        total += eval.iter().map(|r| r[d]).sum::<u64>();
    }
    right as f64 / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_index_the_active_dimensions_as_disentanglement_lib_does() {
        let global = [1.0, 1e-4, 1.0, 1.0];
        let active = active_dims(&global);
        assert_eq!(active, vec![true, false, true, true]);
        // Dimension 3 has the least relative variance: among the active
        // dimensions it is the third (index 2).
        assert_eq!(vote(&[0.9, 0.0, 0.5, 0.1], &global, &active), 2);
        // Ties go to the first.
        assert_eq!(vote(&[0.2, 0.0, 0.2, 0.2], &global, &active), 0);
    }

    #[test]
    fn ties_in_the_classifier_go_to_the_first_factor() {
        // Dimension 0: factors 0 and 1 tie, so factor 0; dimension 1: factor 1.
        let train = vec![vec![3, 0], vec![3, 5]];
        let eval = vec![vec![4, 1], vec![2, 3]];
        assert_eq!(accuracy(&train, &eval), (4.0 + 3.0) / 10.0);
    }
}

//! A factor file's rows placed on the grid by their labels: each factor's
//! classes are the ranks of its column's distinct values, the classes must
//! make every combination exactly once (a complete grid), and each grid
//! position (row-major) is given the row that holds it — so a file whose
//! rows come in another order than the grid's (SmallNORB's, a re-saved
//! 3dshapes) imports as the same dataset.

/// The grid that a file's labels make.
pub struct Placement {
    /// Per factor, its distinct values, ascending (class `c` is `distinct[c]`).
    pub distinct: Vec<Vec<f64>>,
    /// Per grid position (row-major over the classes), the file's row.
    pub rows: Vec<u32>,
}

impl Placement {
    /// Whether the file's rows are already in the grid's order.
    pub fn in_order(&self) -> bool {
        self.rows.iter().enumerate().all(|(i, &r)| r as usize == i)
    }

    /// Values per factor.
    pub fn sizes(&self) -> Vec<usize> {
        self.distinct.iter().map(Vec::len).collect()
    }

    /// The classes of grid position `i`.
    pub fn classes_of(&self, mut i: usize) -> Vec<u8> {
        let mut t = vec![0u8; self.distinct.len()];
        for (k, d) in self.distinct.iter().enumerate().rev() {
            t[k] = (i % d.len()) as u8;
            i /= d.len();
        }
        t
    }
}

/// Places `rows` rows of `names.len()` labels each (`labels`, row-major) on
/// their grid; the error names the column or the rows that do not fit.
pub fn place(labels: &[f64], rows: usize, names: &[&str]) -> Result<Placement, String> {
    let k = names.len();
    if labels.len() != rows * k || rows == 0 || rows > u32::MAX as usize {
        return Err(format!("{} labels for {rows} rows of {k}", labels.len()));
    }
    let mut distinct: Vec<Vec<f64>> = Vec::with_capacity(k);
    for (c, name) in names.iter().enumerate() {
        let mut v: Vec<f64> = (0..rows).map(|r| labels[r * k + c]).collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(format!(
                "column {c} ({name}) holds a value that is not finite"
            ));
        }
        v.sort_by(f64::total_cmp);
        v.dedup();
        if v.len() > 256 {
            return Err(format!(
                "{name} has {} distinct values, at most 256",
                v.len()
            ));
        }
        distinct.push(v);
    }
    let grid = distinct
        .iter()
        .try_fold(1usize, |n, d| n.checked_mul(d.len()));
    if grid != Some(rows) {
        let sizes: Vec<usize> = distinct.iter().map(Vec::len).collect();
        return Err(format!(
            "{rows} rows, but the distinct values ({sizes:?} per factor) make a grid of {}: not a complete grid of factors",
            grid.map_or("more than 2^64".into(), |g| g.to_string())
        ));
    }
    let mut placed = vec![u32::MAX; rows];
    for r in 0..rows {
        let mut pos = 0usize;
        for (c, d) in distinct.iter().enumerate() {
            let x = labels[r * k + c];
            pos = pos * d.len() + d.partition_point(|v| v.total_cmp(&x).is_lt());
        }
        if placed[pos] != u32::MAX {
            return Err(format!(
                "rows {} and {r} have the same labels {:?}: not a complete grid of factors",
                placed[pos],
                &labels[r * k..r * k + k]
            ));
        }
        placed[pos] = r as u32;
    }
    Ok(Placement {
        distinct,
        rows: placed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_in_any_order_find_their_place_and_gaps_are_named() {
        // A 2×3 grid written column-major: rows come in another order.
        let mut labels = vec![];
        for b in [10.0, 20.0, 30.0] {
            for a in [0.5, -1.0] {
                labels.extend([a, b]);
            }
        }
        let p = place(&labels, 6, &["a", "b"]).unwrap();
        assert_eq!(p.sizes(), vec![2, 3]);
        assert_eq!(p.distinct[0], vec![-1.0, 0.5]);
        // Grid (a=-1, b=10) is row 1, (a=-1, b=20) row 3, …
        assert_eq!(p.rows, vec![1, 3, 5, 0, 2, 4]);
        assert!(!p.in_order());
        assert_eq!(p.classes_of(4), vec![1, 1]);
        // A repeated row is named with both of its rows.
        labels[2..4].copy_from_slice(&[0.5, 10.0]);
        let e = place(&labels, 6, &["a", "b"]).err().unwrap_or_default();
        assert!(e.contains("not a complete grid"), "{e}");
        let e = place(&[1.0, f64::NAN], 1, &["a", "b"])
            .err()
            .unwrap_or_default();
        assert!(e.contains("column 1 (b)"), "{e}");
    }
}

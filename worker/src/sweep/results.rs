//! A sweep's results, written by world rank 0 when every point is done:
//! `sweep.json` and `sweep.csv` (one row per point: the swept values, final
//! test loss, reconstruction, KL, active units and the disentanglement
//! metrics when configured), a PNG plot of each final figure against the
//! swept values ([`super::plot`]), the table on the console, and the
//! HPARAMS experiment at the sweep's root, so `tensorboard --logdir RUN`
//! shows the points side by side.
use std::path::Path;

use vae_proto::config::Config;
use vae_proto::sweep::Sweep;

use super::hparams::domains;
use super::point::{PointResult, FIGURES};
use crate::atomic::write_json;
use crate::tensorboard::Board;
use crate::train::TrainError;

/// The columns of the figures, in order: the fixed ones, then the metrics.
fn figure_columns(rows: &[PointResult]) -> Vec<String> {
    let mut cols: Vec<String> = FIGURES.iter().map(|s| s.to_string()).collect();
    for r in rows {
        for k in r.figures.keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    cols
}

/// Writes everything a finished sweep leaves in `run_dir`.
pub fn write(
    run_dir: &Path,
    sweep: &Sweep,
    base: &Config,
    rows: &[PointResult],
) -> Result<(), TrainError> {
    let keys: Vec<String> = sweep.columns();
    let cols = figure_columns(rows);
    write_json(&run_dir.join("sweep.json"), &rows)?;
    let csv = csv(&keys, &cols, rows);
    crate::atomic::write(&run_dir.join("sweep.csv"), csv.as_bytes()).map_err(|e| {
        TrainError::RunDir {
            path: run_dir.join("sweep.csv"),
            message: e.to_string(),
        }
    })?;
    for c in &cols {
        let path = run_dir.join(format!("sweep-{c}.png"));
        super::plot::figure(&path, &keys, c, rows).map_err(|message| TrainError::RunDir {
            path: path.clone(),
            message,
        })?;
    }
    experiment(run_dir, sweep, base, &cols)?;
    vae_proto::console::out(table(&keys, &cols, rows).trim_end_matches('\n'));
    Ok(())
}

/// The CSV: swept keys, then figures.
fn csv(keys: &[String], cols: &[String], rows: &[PointResult]) -> String {
    let mut out = keys
        .iter()
        .chain(cols)
        .map(|s| quote(s))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in rows {
        let vals = keys
            .iter()
            .map(|k| quote(r.values.get(k).map_or("", String::as_str)))
            .chain(
                cols.iter()
                    .map(|c| r.figures.get(c).map_or(String::new(), |v| v.to_string())),
            );
        out.push_str(&vals.collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The table printed at the end.
fn table(keys: &[String], cols: &[String], rows: &[PointResult]) -> String {
    let head: Vec<String> = keys.iter().chain(cols).cloned().collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            keys.iter()
                .map(|k| r.values.get(k).cloned().unwrap_or_default())
                .chain(
                    cols.iter()
                        .map(|c| r.figures.get(c).map_or("-".into(), |v| format!("{v:.4}"))),
                )
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            body.iter()
                .map(|r| r[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let c: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:>w$}"))
            .collect();
        format!("  {}\n", c.join("  "))
    };
    let mut out = String::from("sweep results:\n");
    out.push_str(&line(&head));
    for r in &body {
        out.push_str(&line(r));
    }
    out
}

/// The HPARAMS experiment at the sweep's root: the hyperparameters and the
/// metrics (scalar tags of each point's TensorBoard run).
fn experiment(
    run_dir: &Path,
    sweep: &Sweep,
    base: &Config,
    cols: &[String],
) -> Result<(), TrainError> {
    if sweep.points.is_empty() {
        return Ok(());
    }
    let hparams = domains(&sweep.points, |p| {
        vae_proto::sweep::point_config(base, p, "sweep").ok()
    });
    let metrics: Vec<String> = cols
        .iter()
        .map(|c| match c.strip_prefix("test_") {
            Some("active_units") => "test/active_units".to_string(),
            Some(rest) => format!("test/{rest}"),
            None => format!("metrics/{c}"),
        })
        .collect();
    let mut board = Board::new(run_dir)?;
    board.experiment(&hparams, &metrics);
    Ok(board.flush()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn row(i: usize, beta: &str, loss: f64) -> PointResult {
        PointResult {
            index: i,
            name: format!("model.beta={beta}"),
            values: BTreeMap::from([("model.beta".into(), beta.into())]),
            figures: BTreeMap::from([("test_loss".into(), loss), ("mig".into(), 0.25)]),
        }
    }

    #[test]
    fn csv_and_table_have_a_row_per_point() {
        let keys = vec!["model.beta".to_string()];
        let rows = [row(0, "1", 100.5), row(1, "4", 120.25)];
        let cols = figure_columns(&rows);
        assert_eq!(cols[0], "test_loss");
        assert!(cols.contains(&"mig".to_string()));
        let c = csv(&keys, &cols, &rows);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("model.beta,test_loss"));
        assert!(lines[2].starts_with("4,120.25"));
        let t = table(&keys, &cols, &rows);
        assert!(t.contains("120.2500") && t.contains("0.2500"));
        assert_eq!(quote("a,b"), "\"a,b\"");
    }
}

//! `study.csv`: one row per point of the sweep (a model of the study),
//! rewritten by world rank 0 as points are handed out and end (at most
//! twice a second, and at the end), so a study can be read half-way: its method and swept values, its status
//! (`finished`, `failed`, `running`, `waiting`), the group that trained it,
//! tries, wall time, steps, every final figure and metric, and a failed
//! point's reason.
use std::collections::BTreeMap;
use std::path::Path;

use vae_proto::sweep::Sweep;

use super::point::{Outcome, Status, FIGURES};
use crate::train::TrainError;

/// Writes `RUN/study.csv` (atomically).
pub fn write(
    run_dir: &Path,
    sweep: &Sweep,
    outcomes: &BTreeMap<usize, Outcome>,
    running: &BTreeMap<usize, usize>,
) -> Result<(), TrainError> {
    let path = run_dir.join("study.csv");
    crate::atomic::write(&path, csv(sweep, outcomes, running).as_bytes()).map_err(|e| {
        TrainError::RunDir {
            path,
            message: e.to_string(),
        }
    })
}

/// The figures' columns: the fixed ones, then every metric met.
fn figure_columns(outcomes: &BTreeMap<usize, Outcome>) -> Vec<String> {
    let mut cols: Vec<String> = FIGURES.iter().map(|s| s.to_string()).collect();
    for r in outcomes.values().filter_map(|o| o.result.as_ref()) {
        for k in r.figures.keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    cols
}

fn csv(
    sweep: &Sweep,
    outcomes: &BTreeMap<usize, Outcome>,
    running: &BTreeMap<usize, usize>,
) -> String {
    let keys = sweep.columns();
    let figures = figure_columns(outcomes);
    let fixed = ["status", "group", "tries", "wall_s", "steps"];
    let head: Vec<&str> = ["point"]
        .into_iter()
        .chain(keys.iter().map(String::as_str))
        .chain(fixed)
        .chain(figures.iter().map(String::as_str))
        .chain(["reason"])
        .collect();
    let mut out = head.iter().map(|h| quote(h)).collect::<Vec<_>>().join(",");
    out.push('\n');
    for p in &sweep.points {
        let values: BTreeMap<&str, &str> = p
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut row: Vec<String> = vec![quote(&p.name)];
        row.extend(
            keys.iter()
                .map(|k| quote(values.get(k.as_str()).copied().unwrap_or(""))),
        );
        match (outcomes.get(&p.index), running.get(&p.index)) {
            (Some(o), _) => {
                let status = match o.status {
                    Status::Finished => "finished",
                    Status::Failed => "failed",
                    Status::Stopped => "stopped",
                };
                row.extend([
                    status.to_string(),
                    o.group.to_string(),
                    o.tries.to_string(),
                    format!("{:.3}", o.wall_s),
                    o.steps.to_string(),
                ]);
                let fig = |c: &String| {
                    o.result
                        .as_ref()
                        .and_then(|r| r.figures.get(c))
                        .map_or(String::new(), |v| v.to_string())
                };
                row.extend(figures.iter().map(fig));
                row.push(quote(o.reason.as_deref().unwrap_or("")));
            }
            (None, g) => {
                let status = if g.is_some() { "running" } else { "waiting" };
                row.push(status.into());
                row.push(g.map_or(String::new(), |g| g.to_string()));
                row.extend(std::iter::repeat_n(String::new(), 3 + figures.len() + 1));
            }
        }
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"").replace('\n', " "))
    } else {
        s.to_string()
    }
}

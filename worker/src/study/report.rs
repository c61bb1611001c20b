//! `vae-worker study report RUN [RUN…] [--out DIR]`: from each study's
//! `study.csv`, the figures of Locatello et al.'s study per dataset — how
//! the metrics agree (Spearman's rank correlation over every model), each
//! metric's spread per method, each method's metrics against its
//! hyperparameter with every seed a dot (how much the seed moves a score),
//! the total correlation of the sampled against the mean representation,
//! and how good a model each unsupervised score (and the lowest test loss)
//! picks within its method — and `index.html`, which shows them with the
//! table of models.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::figures::{heatmap, panels, Panel, Style};
use super::html::{page, Section};
use super::stats::{spearman, standing};
use super::table::{read, Model, Study};

/// The scores that need no factor labels (disentanglement_lib's
/// `unsupervised_metrics`): lower is taken as better.
const UNSUPERVISED: [&str; 4] = [
    "gaussian_total_correlation",
    "gaussian_wasserstein_correlation",
    "gaussian_wasserstein_correlation_norm",
    "mutual_info_score",
];

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("study report: {0}")]
    Study(String),
    #[error("study report: {path}: {message}", path = path.display())]
    Write { path: PathBuf, message: String },
}

/// What a report holds.
pub struct Written {
    pub index: PathBuf,
    pub models: usize,
    pub figures: usize,
}

/// Writes the report of the studies in `runs` into `out`.
pub fn report(runs: &[PathBuf], out: &Path) -> Result<Written, ReportError> {
    let studies: Vec<Study> = runs
        .iter()
        .map(|r| read(r))
        .collect::<Result<_, _>>()
        .map_err(ReportError::Study)?;
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |message: String| ReportError::Write { path, message }
    };
    std::fs::create_dir_all(out).map_err(|e| fail(out)(e.to_string()))?;
    let mut sections = Vec::new();
    for (k, s) in studies.iter().enumerate() {
        let tag = format!("{k}-{}", slug(&s.label));
        let figures = figures_of(s, &tag, out)?;
        sections.push(Section { study: s, figures });
    }
    let index = out.join("index.html");
    crate::atomic::write(&index, page(&sections).as_bytes())
        .map_err(|e| fail(&index)(e.to_string()))?;
    Ok(Written {
        index,
        models: studies.iter().map(|s| s.models.len()).sum(),
        figures: sections.iter().map(|s| s.figures.len()).sum(),
    })
}

/// A file-name-safe form of a label.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The figures of study `s` (files `<tag>-…png` in `out`), with captions.
fn figures_of(s: &Study, tag: &str, out: &Path) -> Result<Vec<(String, String)>, ReportError> {
    let mut made = Vec::new();
    let mut add =
        |file: String, caption: String, r: Result<(), String>| -> Result<(), ReportError> {
            r.map_err(|message| ReportError::Write {
                path: out.join(&file),
                message,
            })?;
            made.push((file, caption));
            Ok(())
        };
    let metrics = metric_columns(s);
    let label = &s.label;
    if metrics.len() >= 2 {
        let (names, cells) = agreement(s, &metrics);
        let file = format!("{tag}-agreement.png");
        let r = heatmap(
            &out.join(&file),
            &format!("{label}: Spearman rank correlation of the metrics"),
            &names,
            &names,
            &cells,
        );
        add(file, format!("{label}: how the metrics agree — Spearman's rank correlation over every finished model"), r)?;
    }
    let methods = s.methods();
    let per_method: Vec<Panel> = metrics
        .iter()
        .map(|m| Panel {
            title: m.clone(),
            x_label: "method".into(),
            categories: methods.clone(),
            values: methods
                .iter()
                .map(|me| values(s.finished().filter(|x| &x.method == me), m))
                .collect(),
        })
        .collect();
    let file = format!("{tag}-scores.png");
    let r = panels(
        &out.join(&file),
        &format!("{label}: scores per method (over seeds and settings)"),
        Style::Boxes,
        &per_method,
    );
    add(
        file,
        format!("{label}: each metric per method, over every seed and setting"),
        r,
    )?;
    if let Some(tc) = mean_and_sampled(s) {
        let file = format!("{tag}-sampled.png");
        let r = panels(
            &out.join(&file),
            &format!(
                "{label}: Gaussian total correlation of the sampled and the mean representation"
            ),
            Style::Boxes,
            &tc,
        );
        add(file, format!("{label}: total correlation of the sampled representation (left) and of the mean representation (right) per method, over every seed and setting"), r)?;
    }
    for (file, caption, r) in seeds(s, tag, out, &metrics) {
        add(file, caption, r)?;
    }
    if let Some((rows, cols, cells)) = selection(s, &metrics) {
        let file = format!("{tag}-selection.png");
        let r = heatmap(
            &out.join(&file),
            &format!("{label}: model selection within each method"),
            &rows,
            &cols,
            &cells,
        );
        add(file, format!("{label}: unsupervised model selection — where the model each score picks (lowest) stands among its method's models on each metric (1 = best, median over methods)"), r)?;
    }
    Ok(made)
}

/// Per method with a hyperparameter: its metrics against it, every seed a
/// dot (file, caption, how the drawing went).
fn seeds(
    s: &Study,
    tag: &str,
    out: &Path,
    metrics: &[String],
) -> Vec<(String, String, Result<(), String>)> {
    let label = &s.label;
    let mut made = Vec::new();
    for (i, me) in s.methods().iter().enumerate() {
        let models: Vec<&Model> = s.finished().filter(|x| &x.method == me).collect();
        let Some(key) = hyperparameter(&models) else {
            continue;
        };
        let file = format!("{tag}-seeds-{i}-{}.png", slug(me));
        let title = format!(
            "{label}, {me}: each metric against {key} — every seed a dot, the median a line"
        );
        let r = panels(
            &out.join(&file),
            &title,
            Style::Dots,
            &by_setting(&models, &key, metrics),
        );
        made.push((file, title, r));
    }
    made
}

/// The Gaussian total correlation of the sampled and of the mean
/// representation per method (Locatello et al.'s first figure), when the
/// study computed both (`unsupervised_sampled` and `unsupervised`).
fn mean_and_sampled(s: &Study) -> Option<Vec<Panel>> {
    let methods = s.methods();
    let panel = |column: &str, title: &str| Panel {
        title: title.into(),
        x_label: "method".into(),
        categories: methods.clone(),
        values: methods
            .iter()
            .map(|me| values(s.finished().filter(|x| &x.method == me), column))
            .collect(),
    };
    let sampled = panel(
        "sampled_gaussian_total_correlation",
        "sampled representation",
    );
    let mean = panel("gaussian_total_correlation", "mean representation");
    let any = |p: &Panel| p.values.iter().any(|v| !v.is_empty());
    (any(&sampled) && any(&mean)).then(|| vec![sampled, mean])
}

/// The columns compared: the metrics, or every figure when fewer than two
/// metrics were computed; those with a value in two finished models (the
/// sampled representation's scores have a figure of their own; a count of
/// dimensions is not a score).
fn metric_columns(s: &Study) -> Vec<String> {
    let has = |f: &String| s.finished().filter(|m| m.figures.contains_key(f)).count() >= 2;
    let score = |f: &String| {
        !f.starts_with("test_") && !f.starts_with("sampled_") && !f.ends_with("_active_dims")
    };
    let metrics: Vec<String> = s
        .figures
        .iter()
        .filter(|f| score(f) && has(f))
        .cloned()
        .collect();
    match metrics.len() >= 2 {
        true => metrics,
        false => s.figures.iter().filter(|f| has(f)).cloned().collect(),
    }
}

/// `metric`'s values over `models`.
fn values<'a>(models: impl Iterator<Item = &'a Model>, metric: &str) -> Vec<f64> {
    models
        .filter_map(|m| m.figures.get(metric).copied())
        .collect()
}

/// Spearman's correlation of every pair of metrics over the models that
/// have both.
fn agreement(s: &Study, metrics: &[String]) -> (Vec<String>, Vec<Vec<f64>>) {
    let cells = metrics
        .iter()
        .map(|a| {
            metrics
                .iter()
                .map(|b| {
                    let pairs: Vec<(f64, f64)> = s
                        .finished()
                        .filter_map(|m| Some((*m.figures.get(a)?, *m.figures.get(b)?)))
                        .collect();
                    let (x, y): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
                    spearman(&x, &y)
                })
                .collect()
        })
        .collect();
    (metrics.to_vec(), cells)
}

/// The key a method's models sweep besides the seed (the first such).
fn hyperparameter(models: &[&Model]) -> Option<String> {
    models
        .iter()
        .flat_map(|m| m.values.keys())
        .find(|k| k.as_str() != "train.seed")
        .cloned()
}

/// A panel per metric: its values at each setting of `key` (in numeric
/// order when the settings are numbers).
fn by_setting(models: &[&Model], key: &str, metrics: &[String]) -> Vec<Panel> {
    let mut settings: Vec<String> = Vec::new();
    for m in models {
        if let Some(v) = m.values.get(key) {
            if !settings.contains(v) {
                settings.push(v.clone());
            }
        }
    }
    settings.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    });
    metrics
        .iter()
        .map(|metric| Panel {
            title: metric.clone(),
            x_label: key.to_string(),
            categories: settings.clone(),
            values: settings
                .iter()
                .map(|v| {
                    values(
                        models
                            .iter()
                            .copied()
                            .filter(|m| m.values.get(key) == Some(v)),
                        metric,
                    )
                })
                .collect(),
        })
        .collect()
}

/// A heat map's row names, column names and cells.
type Grid = (Vec<String>, Vec<String>, Vec<Vec<f64>>);

/// Rows: the unsupervised scores and the test loss; columns: the other
/// metrics; a cell: the median over methods of where the model the row
/// picks (its lowest) stands among its method's on the column's metric.
fn selection(s: &Study, metrics: &[String]) -> Option<Grid> {
    let rows: Vec<String> = UNSUPERVISED
        .iter()
        .map(|u| u.to_string())
        .filter(|u| metrics.contains(u))
        .chain(["test_loss".to_string()])
        .collect();
    let cols: Vec<String> = metrics
        .iter()
        .filter(|m| !UNSUPERVISED.contains(&m.as_str()) && !m.starts_with("test_"))
        .cloned()
        .collect();
    if cols.is_empty() {
        return None;
    }
    let mut by_method: BTreeMap<&str, Vec<&Model>> = BTreeMap::new();
    for m in s.finished() {
        by_method.entry(m.method.as_str()).or_default().push(m);
    }
    let cell = |row: &str, col: &str| {
        let standings: Vec<f64> = by_method
            .values()
            .filter_map(|ms| {
                let score = |m: &&&Model| m.figures.get(row).copied().unwrap_or(f64::INFINITY);
                let picked = ms
                    .iter()
                    .filter(|m| m.figures.contains_key(col) && m.figures.contains_key(row))
                    .min_by(|a, b| score(a).total_cmp(&score(b)))?;
                let all: Vec<f64> = values(ms.iter().copied(), col);
                Some(standing(*picked.figures.get(col)?, &all, true))
            })
            .collect();
        crate::disentanglement::stats::quantile(&standings, 0.5)
    };
    let cells = rows
        .iter()
        .map(|r| cols.iter().map(|c| cell(r, c)).collect())
        .collect();
    Some((rows, cols, cells))
}

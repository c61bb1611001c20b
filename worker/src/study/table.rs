//! A study's models as its `study.csv` lists them: each point's method,
//! swept values, status and figures (test loss, reconstruction, KL, active
//! units, every metric), read back for the report.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The columns between a point's swept values and its figures.
const FIXED: [&str; 5] = ["status", "group", "tries", "wall_s", "steps"];

/// One model of a study.
#[derive(Clone, Debug)]
pub struct Model {
    pub point: String,
    /// The grid it belongs to (`""` in a sweep without grids).
    pub method: String,
    /// Swept key → value (the method's own keys and the seed).
    pub values: BTreeMap<String, String>,
    pub status: String,
    /// Figure → value, for a finished model.
    pub figures: BTreeMap<String, f64>,
}

/// A study: where it ran, what to call it, its swept keys, figure names in
/// `study.csv`'s order, and its models.
#[derive(Clone, Debug)]
pub struct Study {
    pub run: PathBuf,
    pub label: String,
    pub keys: Vec<String>,
    pub figures: Vec<String>,
    pub models: Vec<Model>,
}

impl Study {
    /// The finished models.
    pub fn finished(&self) -> impl Iterator<Item = &Model> {
        self.models.iter().filter(|m| m.status == "finished")
    }

    /// The methods, in the order first met.
    pub fn methods(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in &self.models {
            if !out.contains(&m.method) {
                out.push(m.method.clone());
            }
        }
        out
    }
}

/// Reads `run/study.csv`; the label is the last part of the dataset's URL
/// in the first point's `config.toml` (else the run's folder name).
pub fn read(run: &Path) -> Result<Study, String> {
    let path = run.join("study.csv");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = text.lines().map(split);
    let head = rows
        .next()
        .ok_or_else(|| format!("{}: empty", path.display()))?;
    let at = |name: &str| head.iter().position(|h| h == name);
    let (Some(status), Some(steps), Some(reason)) = (at("status"), at("steps"), at("reason"))
    else {
        return Err(format!(
            "{}: not a study.csv (no status, steps or reason column)",
            path.display()
        ));
    };
    let keys: Vec<String> = head[1..status].to_vec();
    let figures: Vec<String> = head[steps + 1..reason].to_vec();
    let mut models = Vec::new();
    for (i, row) in rows.enumerate() {
        if row.len() != head.len() {
            return Err(format!(
                "{}: row {} has {} cells, the header {}",
                path.display(),
                i + 2,
                row.len(),
                head.len()
            ));
        }
        let values: BTreeMap<String, String> = keys
            .iter()
            .zip(&row[1..status])
            .filter(|(k, v)| k.as_str() != "method" && !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        models.push(Model {
            point: row[0].clone(),
            method: at("method").map_or(String::new(), |m| row[m].clone()),
            values,
            status: row[status].clone(),
            figures: figures
                .iter()
                .zip(&row[steps + 1..reason])
                .filter_map(|(f, v)| {
                    Some((f.clone(), v.parse::<f64>().ok().filter(|v| v.is_finite())?))
                })
                .collect(),
        });
    }
    let label = label(run, models.first().map(|m| m.point.as_str()));
    debug_assert!(FIXED.iter().all(|f| head.iter().any(|h| h == f)));
    Ok(Study {
        run: run.to_path_buf(),
        label,
        keys: keys.into_iter().filter(|k| k != "method").collect(),
        figures,
        models,
    })
}

/// What to call a study: its dataset's name, else its folder's.
fn label(run: &Path, first: Option<&str>) -> String {
    let folder = run
        .file_name()
        .map_or("study".to_string(), |n| n.to_string_lossy().into_owned());
    let Some(point) = first else { return folder };
    let Ok(text) = std::fs::read_to_string(run.join(point).join("config.toml")) else {
        return folder;
    };
    let url = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("data")?.get("url")?.as_str().map(str::to_string));
    url.and_then(|u| {
        u.trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
    .unwrap_or(folder)
}

/// One CSV line's cells (quotes as `study.csv` writes them).
fn split(line: &str) -> Vec<String> {
    let (mut cells, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    cells.push(cur);
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_split_at_commas_outside_quotes() {
        assert_eq!(
            split("\"a,b\",1,,\"say \"\"x\"\"\""),
            ["a,b", "1", "", "say \"x\""]
        );
    }
}

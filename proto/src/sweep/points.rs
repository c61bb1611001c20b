//! A sweep's points: the Cartesian product of its axes (a study: of each
//! grid's), named `key=value,…`, and the config of each.
use std::collections::BTreeMap;

use super::axes::{axis_of, canonical, check_axes, key_err, value_text, Axis, MAX_POINTS};
use crate::config::{self, Config, ConfigError};

/// One point of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Its position in the product (the first axis varies slowest).
    pub index: usize,
    /// `key=value,key=value`: the name of its run directory.
    pub name: String,
    /// The `--set` overrides that make its config.
    pub sets: Vec<String>,
    /// `(key, value)` per axis, credentials taken out (for reports); a
    /// study's point has `("method", grid name)` first.
    pub values: Vec<(String, String)>,
}

/// A study's points: each grid's fixed keys and axes (those `cli` names
/// replaced; crossed with the shared `axes` it does not sweep itself), one
/// grid after the other.
pub(super) fn grid_points(
    base: &Config,
    shared: &[Axis],
    cli: &[Axis],
) -> Result<Vec<Point>, ConfigError> {
    let mut all: Vec<Point> = Vec::new();
    for (i, g) in base.sweep.grids.iter().enumerate() {
        let at = format!("sweep.grids[{i}]");
        let plain = !g.name.is_empty()
            && g.name.len() <= 64
            && g.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !plain {
            return Err(key_err(
                &format!("{at}.name"),
                format!(
                    "`{}` is not a name of letters, digits, `-_.`",
                    g.name.escape_debug()
                ),
            ));
        }
        if base.sweep.grids[..i].iter().any(|o| o.name == g.name) {
            return Err(key_err(
                &format!("{at}.name"),
                format!("`{}` names two grids", g.name),
            ));
        }
        let mut axes = Vec::new();
        for (k, v) in &g.values {
            match cli.iter().find(|a| &a.key == k) {
                Some(a) => axes.push(a.clone()),
                None => axes.push(axis_of(k, v, &format!("{at}.values.{k}"))?),
            }
        }
        axes.extend(
            shared
                .iter()
                .filter(|a| !g.values.contains_key(&a.key))
                .cloned(),
        );
        check_axes(&axes)?;
        let fixed: Vec<(String, String)> = g
            .set
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect();
        all.extend(product(&axes, Some(&g.name), &fixed)?);
        if all.len() > MAX_POINTS {
            return Err(key_err(
                "sweep.grids",
                format!("more than {MAX_POINTS} points"),
            ));
        }
    }
    for (i, p) in all.iter_mut().enumerate() {
        p.index = i;
    }
    Ok(all)
}

/// The Cartesian product of the axes, the first axis varying slowest (a
/// grid's points named after it and with its `fixed` keys set). Points
/// whose names would be the same once credentials are taken out get their
/// index after the name, so each keeps a run directory of its own.
pub(super) fn product(
    axes: &[Axis],
    grid: Option<&str>,
    fixed: &[(String, String)],
) -> Result<Vec<Point>, ConfigError> {
    let count = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
        .filter(|&n| n <= MAX_POINTS)
        .ok_or_else(|| key_err("sweep", format!("more than {MAX_POINTS} points")))?;
    let mut points = points_of(axes, grid, fixed);
    debug_assert_eq!(points.len(), count);
    let names: Vec<String> = points.iter().map(|p| p.name.clone()).collect();
    for p in &mut points {
        if names.iter().filter(|n| **n == p.name).count() > 1 {
            p.name = format!("{}~{}", p.name, p.index);
        }
    }
    Ok(points)
}

fn points_of(axes: &[Axis], grid: Option<&str>, fixed: &[(String, String)]) -> Vec<Point> {
    let mut combos: Vec<Vec<(String, String)>> = vec![vec![]];
    for a in axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                a.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((a.key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
        .into_iter()
        .enumerate()
        .map(|(index, exact)| {
            // Names and reported values never carry a credential; the
            // overrides that build the point's config keep the exact text.
            let mut values: Vec<(String, String)> = grid
                .map(|g| ("method".to_string(), g.to_string()))
                .into_iter()
                .collect();
            values.extend(
                exact
                    .iter()
                    .map(|(k, v)| (k.clone(), crate::redact::redact(v))),
            );
            let name = values
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        canonical(v).replace(['/', ' ', '?', '#', '%', '[', ']', '\\', '"'], "_")
                    )
                })
                .collect::<Vec<_>>()
                .join(",");
            Point {
                index,
                name,
                sets: fixed
                    .iter()
                    .chain(&exact)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                values,
            }
        })
        .collect()
}

/// The config of point `p`: `base` with its values set and no sweep of its
/// own; with a `checkpoint.url`, the point's checkpoints go under
/// `<checkpoint.url>/<point name>/`, as its run directory goes under the
/// sweep's, so no point resumes another's.
pub fn point_config(base: &Config, p: &Point, origin: &str) -> Result<Config, ConfigError> {
    let mut table: toml::Table =
        base.to_toml_exact()
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
    table.remove("sweep");
    for s in &p.sets {
        config::apply_override(&mut table, s)?;
    }
    let url = table
        .get("checkpoint")
        .and_then(|c| c.get("url"))
        .and_then(toml::Value::as_str)
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty());
    if let Some(url) = url {
        let own = toml::Value::String(format!("{url}/{}/", p.name));
        if let Some(c) = table
            .get_mut("checkpoint")
            .and_then(toml::Value::as_table_mut)
        {
            c.insert("url".into(), own);
        }
    }
    let text = toml::to_string(&table).map_err(|e| ConfigError::Syntax {
        origin: origin.to_string(),
        message: e.to_string(),
    })?;
    config::parse(&text, &format!("{origin} (sweep point {})", p.name), &[])
}

/// The swept values of a point as a map, for reports.
pub fn values_map(p: &Point) -> BTreeMap<String, String> {
    p.values.iter().cloned().collect()
}

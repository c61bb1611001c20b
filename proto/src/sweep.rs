//! A sweep: the Cartesian product of values of config keys, trained as one
//! job. Its axes come from the config's `[sweep]` table (`values`, a map
//! from a config key to a list of values) and from `--sweep KEY=V1,V2,...`
//! (which replaces the config's axis of the same key); each point is the
//! base config with one value per axis set, named `key=value,key=value`
//! (its run directory under the sweep's). Checked here, before any worker
//! starts: every point's config must validate, every error naming the key.
use std::collections::BTreeMap;

use crate::config::{self, Config, ConfigError};

/// One axis: a config key and its values as `--set` would take them.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// One point of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Its position in the product (the first axis varies slowest).
    pub index: usize,
    /// `key=value,key=value`: the name of its run directory.
    pub name: String,
    /// The `--set` overrides that make its config.
    pub sets: Vec<String>,
    /// `(key, value)` per axis, credentials taken out (for reports).
    pub values: Vec<(String, String)>,
}

/// A sweep, checked.
#[derive(Clone, Debug)]
pub struct Sweep {
    pub axes: Vec<Axis>,
    pub ranks_per_point: usize,
    pub points: Vec<Point>,
}

fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Parses `KEY=V1,V2,...` (a `--sweep` argument).
pub fn parse_axis(arg: &str) -> Result<Axis, ConfigError> {
    let bad = |message: &str| ConfigError::Override {
        arg: format!("--sweep {arg}"),
        message: message.to_string(),
    };
    let (key, values) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=V1,V2,..., e.g. model.beta=1,2,4"))?;
    let values: Vec<String> = split_values(values);
    if key.trim().is_empty() || values.is_empty() || values.iter().any(String::is_empty) {
        return Err(bad("expected KEY=V1,V2,..., e.g. model.beta=1,2,4"));
    }
    Ok(Axis {
        key: key.trim().to_string(),
        values,
    })
}

/// Splits `1,2,[3, 4]` at the commas outside brackets and quotes.
fn split_values(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out
}

impl Sweep {
    /// The sweep of `base` (its `[sweep]` table) and the `--sweep` axes
    /// `cli` (replacing the table's axis of the same key), with
    /// `ranks_per_point` from the command line or the table. `None` when
    /// there is no axis at all. Every point's config is validated.
    pub fn plan(
        base: &Config,
        cli: &[String],
        ranks_per_point: Option<usize>,
        origin: &str,
    ) -> Result<Option<Sweep>, ConfigError> {
        let mut axes: Vec<Axis> = base
            .sweep
            .values
            .iter()
            .map(|(k, vs)| Axis {
                key: k.clone(),
                values: vs.iter().map(value_text).collect(),
            })
            .collect();
        for arg in cli {
            let a = parse_axis(arg)?;
            match axes.iter_mut().find(|x| x.key == a.key) {
                Some(x) => *x = a,
                None => axes.push(a),
            }
        }
        if axes.is_empty() {
            return Ok(None);
        }
        let rpp = ranks_per_point.unwrap_or(base.sweep.ranks_per_point as usize);
        if rpp == 0 {
            return Err(key_err(
                "sweep.ranks_per_point",
                "must be at least 1, got 0",
            ));
        }
        for a in &axes {
            if a.key.starts_with("sweep.") || a.key == "sweep" {
                return Err(key_err(&a.key, "a sweep cannot sweep its own settings"));
            }
            if a.values.is_empty() {
                return Err(key_err(&format!("sweep.values.{}", a.key), "has no values"));
            }
        }
        let points = product(&axes);
        for p in &points {
            let config = point_config(base, p, origin)?;
            if config.check_world(rpp).is_err() {
                return Err(key_err(
                    "train.batch_size",
                    format!(
                        "{} (point {}) does not divide by the {rpp} ranks per point",
                        config.train.batch_size, p.name
                    ),
                ));
            }
        }
        Ok(Some(Sweep {
            axes,
            ranks_per_point: rpp,
            points,
        }))
    }

    /// The `--sweep` and `--ranks-per-point` arguments that give workers this sweep.
    pub fn worker_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        for a in &self.axes {
            v.push("--sweep".to_string());
            v.push(format!("{}={}", a.key, a.values.join(",")));
        }
        v.push("--ranks-per-point".into());
        v.push(self.ranks_per_point.to_string());
        v
    }

    /// How many groups `ranks` ranks make, or why they cannot.
    pub fn groups(&self, ranks: usize) -> Result<usize, String> {
        if ranks == 0 || !ranks.is_multiple_of(self.ranks_per_point) {
            return Err(format!(
                "{ranks} ranks do not divide into groups of --ranks-per-point {}",
                self.ranks_per_point
            ));
        }
        Ok(ranks / self.ranks_per_point)
    }
}

/// A TOML value as `--set` takes it (strings bare).
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The Cartesian product of the axes, the first axis varying slowest.
/// Points whose names would be the same once credentials are taken out
/// get their index after the name, so each keeps a run directory of its own.
fn product(axes: &[Axis]) -> Vec<Point> {
    let mut points = points_of(axes);
    let names: Vec<String> = points.iter().map(|p| p.name.clone()).collect();
    for p in &mut points {
        if names.iter().filter(|n| **n == p.name).count() > 1 {
            p.name = format!("{}~{}", p.name, p.index);
        }
    }
    points
}

fn points_of(axes: &[Axis]) -> Vec<Point> {
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
            let values: Vec<(String, String)> = exact
                .iter()
                .map(|(k, v)| (k.clone(), crate::redact::redact(v)))
                .collect();
            Point {
                index,
                name: values
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.replace(['/', ' ', '?', '#', '%', '[', ']', '\\', '"'], "_")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                sets: exact.iter().map(|(k, v)| format!("{k}={v}")).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str) -> Config {
        config::parse(text, "test", &[]).unwrap()
    }

    #[test]
    fn the_product_varies_the_first_axis_slowest_and_names_points() {
        let s = Sweep::plan(
            &base(""),
            &["model.beta=1,4".into(), "train.seed=1,2,3".into()],
            Some(2),
            "t",
        )
        .unwrap()
        .unwrap();
        let names: Vec<&str> = s.points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names[0], "model.beta=1,train.seed=1");
        assert_eq!(names[5], "model.beta=4,train.seed=3");
        assert_eq!(s.points.len(), 6);
        assert_eq!(s.groups(4), Ok(2));
        assert!(s.groups(3).is_err());
        assert_eq!(
            s.worker_args(),
            vec![
                "--sweep",
                "model.beta=1,4",
                "--sweep",
                "train.seed=1,2,3",
                "--ranks-per-point",
                "2"
            ]
        );
    }

    #[test]
    fn the_config_table_gives_axes_and_the_command_line_replaces_them() {
        let b = base("[sweep]\nranks_per_point = 1\n[sweep.values]\n\"model.beta\" = [1.0, 2.0]\n\"model.kind\" = [\"mlp\", \"conv\"]\n");
        let s = Sweep::plan(&b, &["model.beta=8".into()], None, "t")
            .unwrap()
            .unwrap();
        assert_eq!(s.points.len(), 2);
        assert_eq!(s.points[1].sets, vec!["model.beta=8", "model.kind=conv"]);
        let c = point_config(&b, &s.points[1], "t").unwrap();
        assert_eq!(c.model.beta, 8.0);
        assert_eq!(c.checkpoint.url, "");
        let mut with_url = b.clone();
        with_url.raw.checkpoint.url = "s3://bucket/runs/7".into();
        let c = point_config(&with_url, &s.points[1], "t").unwrap();
        assert_eq!(
            c.checkpoint.url,
            format!("s3://bucket/runs/7/{}/", s.points[1].name)
        );
        assert!(c.sweep.values.is_empty());
        assert!(Sweep::plan(&base(""), &[], None, "t").unwrap().is_none());
    }

    #[test]
    fn bad_axes_are_named() {
        let err = |args: &[&str], rpp| {
            let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            Sweep::plan(&base(""), &a, rpp, "t")
                .unwrap_err()
                .to_string()
        };
        let e = err(&["model.betta=1,2"], None);
        assert!(e.contains("betta"), "{e}");
        let e = err(&["model.beta=1,high"], None);
        assert!(e.contains("model.beta"), "{e}");
        let e = err(&["train.batch_size=128,100"], Some(3));
        assert!(
            e.contains("train.batch_size") && e.contains("ranks per point"),
            "{e}"
        );
        let e = err(&["model.beta"], None);
        assert!(e.contains("--sweep model.beta"), "{e}");
        let e = err(&["sweep.ranks_per_point=1,2"], None);
        assert!(e.contains("sweep"), "{e}");
    }

    #[test]
    fn point_names_and_values_carry_no_credential() {
        let s = Sweep::plan(
            &base(""),
            &["data.url=https://u:topsecret@h/a?sig=one,https://u:topsecret@h/a?sig=two".into()],
            None,
            "t",
        )
        .unwrap()
        .unwrap();
        assert_ne!(s.points[0].name, s.points[1].name);
        for p in &s.points {
            assert!(!p.name.contains("topsecret"), "{}", p.name);
            assert!(!format!("{:?}", p.values).contains("topsecret"));
            assert!(p.sets[0].contains("topsecret"));
        }
    }

    #[test]
    fn values_split_outside_brackets() {
        assert_eq!(
            split_values("[32, 64],[8, 16]"),
            vec!["[32, 64]".to_string(), "[8, 16]".to_string()]
        );
    }
}

//! A sweep's axes: a config key and its values, from `--sweep KEY=V1,V2`
//! or `KEY=A..B` and from the config's tables (a list or a range), checked;
//! a value as a point's name shows it.
use crate::config::ConfigError;

/// One axis: a config key and its values as `--set` would take them.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// The most points a sweep may have (a range or a product beyond it is
/// refused before any point is made).
pub const MAX_POINTS: usize = 100_000;

pub(super) fn key_err(key: &str, message: impl Into<String>) -> ConfigError {
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
    let mut values: Vec<String> = split_values(values);
    if key.trim().is_empty() || values.is_empty() || values.iter().any(String::is_empty) {
        return Err(bad("expected KEY=V1,V2,..., e.g. model.beta=1,2,4"));
    }
    if let [one] = &values[..] {
        if let Some(range) = range(one) {
            values = range.map_err(|m| bad(&m))?;
        }
    }
    Ok(Axis {
        key: key.trim().to_string(),
        values,
    })
}

/// `A..B` (integers, both included) as its values; `None` when `s` is no
/// range, an error when it is one too long or backwards.
fn range(s: &str) -> Option<Result<Vec<String>, String>> {
    let (a, b) = s.trim().split_once("..")?;
    let (a, b) = (a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?);
    let n = b.checked_sub(a).and_then(|d| d.checked_add(1)).unwrap_or(0);
    if n < 1 || n > MAX_POINTS as i64 {
        return Some(Err(format!(
            "range {s}: from 1 to {MAX_POINTS} values, from the first to the last"
        )));
    }
    Some(Ok((a..=b).map(|v| v.to_string()).collect()))
}

/// An axis of the config: a list of values or a range `"A..B"`.
pub(super) fn axis_of(key: &str, v: &toml::Value, at: &str) -> Result<Axis, ConfigError> {
    let values = match v {
        toml::Value::Array(vs) => vs.iter().map(value_text).collect(),
        toml::Value::String(s) => match range(s) {
            Some(r) => r.map_err(|m| key_err(at, m))?,
            None => {
                return Err(key_err(
                    at,
                    format!("`{s}` is neither a list of values nor a range \"A..B\""),
                ))
            }
        },
        other => {
            return Err(key_err(
                at,
                format!("{other} is neither a list of values nor a range \"A..B\""),
            ))
        }
    };
    Ok(Axis {
        key: key.to_string(),
        values,
    })
}

/// Splits `1,2,[3, 4]` at the commas outside brackets and quotes.
pub(super) fn split_values(s: &str) -> Vec<String> {
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

/// A TOML value as `--set` takes it (strings bare).
pub(super) fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Axes that may be swept, each with values.
pub(super) fn check_axes(axes: &[Axis]) -> Result<(), ConfigError> {
    for a in axes {
        if a.key.starts_with("sweep.") || a.key == "sweep" {
            return Err(key_err(&a.key, "a sweep cannot sweep its own settings"));
        }
        if a.values.is_empty() {
            return Err(key_err(&format!("sweep.values.{}", a.key), "has no values"));
        }
    }
    Ok(())
}

/// A value as a point's name shows it: a number in its shortest form
/// (`4.0` and `4` alike, `1e-3` as `0.001`), anything else as written.
pub(super) fn canonical(v: &str) -> String {
    match v.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && v.trim().bytes().any(|b| b.is_ascii_digit()) => f.to_string(),
        _ => v.to_string(),
    }
}

//! A point's hyperparameters for TensorBoard's HPARAMS view: the swept keys
//! and the main ones, as its config has them (the weights of other
//! objectives left out), and the experiment's domain of each ([`domains`]).
use std::collections::BTreeMap;

use vae_proto::config::{Config, ObjectiveKind};
use vae_proto::sweep::Point;

use crate::tensorboard::HValue;

/// Config keys recorded as hyperparameters of every point (with the swept ones).
const MAIN_KEYS: [&str; 11] = [
    "model.kind",
    "model.objective",
    "model.latent_dim",
    "model.beta",
    "model.tc_weight",
    "train.batch_size",
    "train.epochs",
    "train.max_steps",
    "train.seed",
    "optim.lr",
    "data.url",
];

/// A point's hyperparameters: the swept keys and the main ones, as its
/// config has them, but for the weights of objectives other than its own
/// (`model.tc_weight` of a β-VAE); a URL's credentials taken out.
pub fn hparams(config: &Config, p: &Point) -> BTreeMap<String, HValue> {
    let table: toml::Table = config.to_toml().parse().unwrap_or_default();
    let own = config.model.objective.weights();
    let applies = |k: &&str| !ObjectiveKind::WEIGHTS.contains(k) || own.contains(k);
    let keys = p.values.iter().map(|(k, _)| k.as_str()).chain(MAIN_KEYS);
    keys.filter(applies)
        .filter_map(|k| lookup(&table, k).map(|v| (k.to_string(), value(k, v))))
        .collect()
}

/// The experiment's hyperparameters: each key any point records, with its
/// values over the points (sorted, each once). `config_of` gives a point's
/// config; only the first point of each method (grid) is read whole, the
/// others differ from it in their swept values alone.
pub fn domains(
    points: &[Point],
    config_of: impl Fn(&Point) -> Option<Config>,
) -> BTreeMap<String, Vec<HValue>> {
    let mut firsts: BTreeMap<Option<&str>, BTreeMap<String, HValue>> = BTreeMap::new();
    let mut out: BTreeMap<String, Vec<HValue>> = BTreeMap::new();
    for p in points {
        let method = p
            .values
            .iter()
            .find(|(k, _)| k == "method")
            .map(|(_, v)| v.as_str());
        let first = firsts
            .entry(method)
            .or_insert_with(|| config_of(p).map(|c| hparams(&c, p)).unwrap_or_default());
        for (k, v) in first {
            let swept = p.values.iter().find(|(key, _)| key == k);
            let v = swept.map_or_else(|| v.clone(), |(_, text)| like(v, text));
            let values = out.entry(k.clone()).or_default();
            if !values.contains(&v) {
                values.push(v);
            }
        }
    }
    for values in out.values_mut() {
        values.sort_by(HValue::order);
    }
    out
}

/// A swept value's text as a value of the same kind as `first`'s.
fn like(first: &HValue, text: &str) -> HValue {
    match first {
        HValue::Number(_) => text
            .parse()
            .map_or(HValue::Text(text.into()), HValue::Number),
        HValue::Flag(_) => text.parse().map_or(HValue::Text(text.into()), HValue::Flag),
        HValue::Text(_) => HValue::Text(text.trim_matches('"').into()),
    }
}

/// Key `k`'s value as a hyperparameter (a URL without its credentials).
fn value(k: &str, v: &toml::Value) -> HValue {
    match (k, v) {
        ("data.url", toml::Value::String(s)) => HValue::Text(vae_proto::redact::redact(s)),
        _ => HValue::from_toml(v),
    }
}

/// The value at dotted `key` of a TOML table.
fn lookup<'t>(table: &'t toml::Table, key: &str) -> Option<&'t toml::Value> {
    let mut parts = key.split('.');
    let mut v = table.get(parts.next()?)?;
    for part in parts {
        v = v.as_table()?.get(part)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(values: &[(&str, &str)]) -> Point {
        Point {
            index: 0,
            name: String::new(),
            sets: values.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn config(sets: &[String]) -> Config {
        vae_proto::config::parse("", "test", sets).unwrap()
    }

    #[test]
    fn a_beta_vae_records_no_tc_weight_and_a_factor_vae_no_beta() {
        let p = point(&[("model.beta", "4")]);
        let h = hparams(&config(&p.sets), &p);
        assert_eq!(h["model.beta"], HValue::Number(4.0));
        assert!(h.contains_key("train.max_steps") && h.contains_key("data.url"));
        assert!(!h.contains_key("model.tc_weight"), "{h:?}");
        let p = point(&[("model.objective", "\"factor\""), ("model.tc_weight", "6")]);
        let h = hparams(&config(&p.sets), &p);
        assert_eq!(h["model.tc_weight"], HValue::Number(6.0));
        assert!(!h.contains_key("model.beta"), "{h:?}");
    }

    #[test]
    fn domains_hold_every_swept_value_once_sorted() {
        let points: Vec<Point> = ["8", "1", "4", "1"]
            .iter()
            .map(|b| point(&[("model.beta", b)]))
            .collect();
        let d = domains(&points, |p| Some(config(&p.sets)));
        let n = |x: f64| HValue::Number(x);
        assert_eq!(d["model.beta"], vec![n(1.0), n(4.0), n(8.0)]);
        assert_eq!(d["train.seed"].len(), 1);
    }
}

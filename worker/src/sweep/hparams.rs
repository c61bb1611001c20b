//! A point's hyperparameters for TensorBoard's HPARAMS view: the swept keys
//! and the main ones, as its config has them.
use std::collections::BTreeMap;

use vae_proto::config::Config;
use vae_proto::sweep::Point;

use crate::tensorboard::HValue;

/// Config keys recorded as hyperparameters of every point (with the swept ones).
const MAIN_KEYS: [&str; 9] = [
    "model.kind",
    "model.objective",
    "model.latent_dim",
    "model.beta",
    "model.tc_weight",
    "train.batch_size",
    "train.epochs",
    "train.seed",
    "optim.lr",
];

/// A point's hyperparameters: the swept keys and the main ones, as its config has them.
pub fn hparams(config: &Config, p: &Point) -> BTreeMap<String, HValue> {
    let table: toml::Table = config.to_toml().parse().unwrap_or_default();
    let keys = p.values.iter().map(|(k, _)| k.as_str()).chain(MAIN_KEYS);
    keys.filter_map(|k| lookup(&table, k).map(|v| (k.to_string(), HValue::from_toml(v))))
        .collect()
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

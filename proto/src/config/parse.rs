//! Reading a config: TOML text or a file (or the built-in default), the
//! `--set KEY=VALUE` overrides applied on the TOML tree, then validated.
use std::path::Path;

use super::error::{key_err, ConfigError};
use super::resolved::{Config, RawConfig};

/// The built-in default job: pytorch/examples' MNIST VAE.
pub const DEFAULT_CONFIG: &str = include_str!("../../../configs/mnist_vae.toml");

/// How messages name [`DEFAULT_CONFIG`].
pub const DEFAULT_CONFIG_NAME: &str = "built-in configs/mnist_vae.toml";

/// Parses TOML text, applies `--set KEY=VALUE` overrides and validates.
/// `origin` names the text in messages (a file path, or `built-in default`).
pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Config, ConfigError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                origin: origin.to_string(),
                message: e.to_string().trim().replace('\n', " "),
            })?;
    for arg in overrides {
        apply_override(&mut table, arg)?;
    }
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            // toml adds "in `section`" on a second line: the key says it already.
            let message = e.into_inner().to_string();
            let message = message
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            key_err(if key == "." { "(top level)" } else { &key }, message)
        })?;
    raw.validate()
}

/// Reads and parses a config file; see [`parse`].
pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string(), overrides)
}

/// Sets `a.b.c = value` in a TOML table. The value is read as a TOML value
/// (`1e-3`, `true`, `[32, 64]`, `"x"`), and as a bare string if it is not one;
/// a key that holds a list takes a comma list too (`eval.metrics=mig,dci`,
/// `[mig]`: as `eval --metrics` does), each item read the same way.
pub fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), ConfigError> {
    let bad = |message: &str| ConfigError::Override {
        arg: arg.to_string(),
        message: message.to_string(),
    };
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE, e.g. model.beta=4"))?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("the key has an empty part"));
    }
    let value = match parse_value(value.trim()) {
        toml::Value::String(text) if holds_a_list(&parts) => comma_list(&text),
        v => v,
    };
    let (last, parents) = parts.split_last().ok_or_else(|| bad("empty key"))?;
    let mut node = table;
    for part in parents {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| bad(&format!("`{part}` is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

/// Whether the key `parts` holds a list in the default config.
fn holds_a_list(parts: &[&str]) -> bool {
    static DEFAULTS: std::sync::OnceLock<toml::Table> = std::sync::OnceLock::new();
    let defaults = DEFAULTS.get_or_init(|| {
        let text = parse("", DEFAULT_CONFIG_NAME, &[]).map(|c| c.to_toml_exact());
        text.ok().and_then(|t| t.parse().ok()).unwrap_or_default()
    });
    let Some((first, rest)) = parts.split_first() else {
        return false;
    };
    let mut v = defaults.get(*first);
    for p in rest {
        v = v.and_then(|v| v.as_table()).and_then(|t| t.get(*p));
    }
    v.is_some_and(toml::Value::is_array)
}

/// `a,b,c` or `[a, b]` (items that are not TOML, bare) as a TOML array.
fn comma_list(text: &str) -> toml::Value {
    let inner = text.trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(inner);
    let items = inner.split(',').map(str::trim).filter(|t| !t.is_empty());
    toml::Value::Array(items.map(parse_value).collect())
}

fn parse_value(text: &str) -> toml::Value {
    let doc = format!("v = {text}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.into())),
        Err(_) => toml::Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::diff::first_difference;
    use super::super::train::Precision;
    use super::{load, parse};

    fn err(text: &str, sets: &[&str]) -> String {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        match parse(text, "test", &sets) {
            Ok(_) => panic!("expected an error for {text:?} {sets:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_file_in_configs_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut n = 0;
        let mut todo = vec![dir.clone()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    let c = load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    // A sweep's every point must be a valid config too.
                    crate::sweep::Sweep::plan(&c, &[], None, &path.display().to_string())
                        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    n += 1;
                }
            }
        }
        assert!(n >= 6 + 6, "configs found in {}: {n}", dir.display());
    }

    #[test]
    fn a_list_key_takes_a_comma_list_as_eval_metrics_does() {
        for form in [
            "mig,factorvae",
            "[mig, factorvae]",
            "[\"mig\",\"factorvae\"]",
            " mig , factorvae ",
        ] {
            let c = parse("", "test", &[format!("eval.metrics={form}")]).unwrap();
            assert_eq!(c.eval.metrics, ["mig", "factorvae"], "{form}");
        }
        let c = parse("", "test", &["eval.metrics=[mig]".into()]).unwrap();
        assert_eq!(c.eval.metrics, ["mig"]);
        let c = parse(
            "",
            "test",
            &["model.conv_channels=8,16".into(), "model.kind=conv".into()],
        )
        .unwrap();
        assert_eq!(c.model.conv_channels, [8, 16]);
        // A key that does not hold a list keeps its one value.
        assert!(err("", &["model.beta=1,2"]).contains("model.beta"));
        let c = parse("", "test", &["data.url=a,b".into()]).unwrap();
        assert_eq!(c.data.url, "a,b");
    }

    #[test]
    fn defaults_are_pytorch_examples() {
        let c = parse("", "test", &[]).unwrap();
        assert_eq!(c.train.batch_size, 128);
        assert_eq!(c.train.epochs, 10);
        assert_eq!(c.optim.lr, 1e-3);
        assert_eq!(c.model.latent_dim, 20);
        assert_eq!(c.max_steps, None);
    }

    #[test]
    fn precision_is_fp32_or_bf16_over_float32() {
        let c = parse("", "test", &["train.precision=bf16".into()]).unwrap();
        assert_eq!(c.train.precision, Precision::Bf16);
        let e = err("", &["train.precision=fp16"]);
        assert!(e.contains("train.precision") && e.contains("fp16"), "{e}");
        let e = err("", &["train.precision=bf16", "train.dtype=float64"]);
        assert!(
            e.contains("train.precision") && e.contains("float32"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[model]\nbetaa = 2.0\n", &[]);
        assert!(e.contains("model.betaa") || e.contains("betaa"), "{e}");
        let e = err("", &["train.batchsize=3"]);
        assert!(e.contains("batchsize"), "{e}");
        let e = err("[nope]\n", &[]);
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("[train]\nbatch_size = \"big\"\n", &[]);
        assert!(e.contains("train.batch_size"), "{e}");
        let e = err("", &["model.kind=transformer"]);
        assert!(e.contains("model.kind") && e.contains("transformer"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = err("[model]\nbeta = -1.0\n", &[]);
        assert!(e.contains("model.beta") && e.contains("-1"), "{e}");
        let e = err("", &["train.batch_size=0"]);
        assert!(e.contains("train.batch_size") && e.contains('0'), "{e}");
        let e = err("", &["train.batch_size=-5"]);
        assert!(e.contains("train.batch_size"), "{e}");
        let e = err("", &["optim.lr=0"]);
        assert!(e.contains("optim.lr"), "{e}");
        let e = err("[model\n", &[]);
        assert!(e.contains("not valid TOML"), "{e}");
        let e = err("", &["model.beta"]);
        assert!(e.contains("KEY=VALUE"), "{e}");
        let e = err("", &["dist.timeout_s=0"]);
        assert!(e.contains("dist.timeout_s") && e.contains('0'), "{e}");
        let e = err("", &["dist.timeout_s=-5"]);
        assert!(e.contains("dist.timeout_s"), "{e}");
        // Every duration key refuses what `Duration` cannot hold, naming it.
        for key in [
            "dist.timeout_s",
            "dist.wait_timeout_s",
            "storage.timeout_s",
            "storage.retry_timeout_s",
            "storage.connect_timeout_s",
        ] {
            for v in ["1e20", "inf", "nan"] {
                let e = err("", &[&format!("{key}={v}")]);
                assert!(e.contains(key) && !e.contains('\n'), "{e}");
            }
        }
        let e = err("", &["model.objective=factor", "train.batch_size=1"]);
        assert!(
            e.contains("train.batch_size") && e.contains("factor"),
            "{e}"
        );
    }

    #[test]
    fn overrides_set_nested_keys_and_types() {
        let sets = [
            "model.beta=4".to_string(),
            "model.conv_channels=[8, 16]".to_string(),
            "data.url=s3://bucket/mnist".to_string(),
            "train.max_steps=7".to_string(),
        ];
        let c = parse("[model]\nbeta = 1.0\n", "test", &sets).unwrap();
        assert_eq!(c.model.beta, 4.0);
        assert_eq!(c.model.conv_channels, vec![8, 16]);
        assert_eq!(c.data.url, "s3://bucket/mnist");
        assert_eq!(c.max_steps, Some(7));
        // The resolved config round-trips.
        let again = parse(&c.to_toml(), "resolved", &[]).unwrap();
        assert_eq!(again.model.beta, 4.0);
        assert_eq!(again.hash(), c.hash());
        assert_ne!(parse("", "t", &[]).unwrap().hash(), c.hash());
    }

    #[test]
    fn the_hash_holds_no_password() {
        let with = |pw: &str| {
            parse(
                "",
                "t",
                &[format!("data.url=https://alice:{pw}@host/mnist")],
            )
            .unwrap()
        };
        let (a, b) = (with("hunter2"), with("correct-horse"));
        assert_eq!(a.hash(), b.hash());
        assert!(!a.to_toml().contains("hunter2"));
        use sha2::{Digest, Sha256};
        assert_eq!(
            a.hash(),
            hex::encode(Sha256::digest(a.to_toml().as_bytes()))
        );
    }

    #[test]
    fn the_written_config_has_no_credentials_and_names_the_first_difference() {
        let c = parse(
            "",
            "t",
            &[
                "data.url=https://alice:pw1234@example.com/mnist".into(),
                "storage.endpoint=http://minio:pw5678@10.0.0.1:9000".into(),
            ],
        )
        .unwrap();
        let written = c.to_toml();
        assert!(
            !written.contains("pw1234") && !written.contains("pw5678"),
            "{written}"
        );
        assert!(c.to_toml_exact().contains("pw1234"));
        let other = parse("", "t", &["model.beta=2".into(), "train.seed=9".into()]).unwrap();
        let base = parse("", "t", &[]).unwrap();
        assert_eq!(
            first_difference(&base.to_toml(), &other.to_toml()).as_deref(),
            Some("model.beta")
        );
        assert_eq!(first_difference(&base.to_toml(), &base.to_toml()), None);
    }

    use proptest::prelude::*;

    proptest! {
        /// A config file and `--set` arguments, mutated: parsed or refused
        /// with an error, never a panic.
        #[test]
        fn prop_mutated_configs_and_sets_never_panic(
            text in crate::fuzz::mutated_text(include_str!("../../../configs/dsprites_factorvae.toml")),
            set in crate::fuzz::mutated_text("train.max_steps=20"),
            list in crate::fuzz::mutated_text("eval.metrics=mig,dci"),
        ) {
            let _ = parse(&text, "fuzz.toml", &[set, list]);
        }
    }
}

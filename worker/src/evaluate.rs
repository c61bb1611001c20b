//! `vae-worker eval`: evaluates a checkpoint on its run's test split (or
//! `--data`'s): reconstruction, KL, TC estimate, active units, the
//! regulariser's figures such as the discriminator's accuracy, and on data
//! with known factors the disentanglement metrics; writes them as JSON (a
//! file of its own per checkpoint step, metrics, scale and data, with the
//! record of what was computed: [`crate::provenance`]) and to the run's
//! TensorBoard log under `eval/`. A checkpoint is data, not a
//! credential router: its `[storage]` section is ignored, and every request
//! goes where the caller's environment and `--set storage.*` say.
use std::collections::BTreeMap;
use std::path::Path;

use vae_proto::cli::EvalCmd;

use crate::atomic::write_json;
use crate::checkpoint;
use crate::collective::Single;
use crate::data::format::Dataset;
use crate::data::store::StorageOptions;
use crate::device;
use crate::provenance::Provenance;
use crate::tensorboard::Board;
use crate::train::eval::{self, factor_data};
use crate::train::feed::load_split;
use crate::train::iwae;
use crate::train::state::restore;
use crate::train::step::Trainer;
use crate::train::TrainError;

/// A checkpoint opened for evaluation: its config (with the command's
/// overrides, its storage settings the caller's), the checkpoint, and its
/// local run directory when it has one.
pub struct Opened {
    pub cfg: vae_proto::config::Config,
    pub loaded: checkpoint::Loaded,
    pub run_dir: Option<std::path::PathBuf>,
}

/// Opens `cmd.checkpoint` with the caller's storage settings.
pub fn open(cmd: &EvalCmd) -> Result<Opened, TrainError> {
    let caller = caller_storage(cmd)?;
    let (ckpts, name) = checkpoint::locate(&cmd.checkpoint, &caller)?;
    let loaded = ckpts.read(&name)?;
    // A local run directory: the one the checkpoints are in.
    let run_dir = ckpts
        .store
        .local_dir()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    let cfg = config(cmd, &loaded.config, run_dir.as_deref())?;
    Ok(Opened {
        cfg,
        loaded,
        run_dir,
    })
}

/// The checkpoint's model on `device` for `dataset`'s samples, refused
/// (one line naming both shapes) when it was trained on another shape.
pub fn model<'a>(
    o: &'a Opened,
    dataset: &Dataset,
    comm: &'a dyn crate::collective::Comm,
    device: tch::Device,
) -> Result<Trainer<'a>, TrainError> {
    let (cfg, loaded) = (&o.cfg, &o.loaded);
    let n_train = dataset.split("train")?.samples as usize;
    let [c, h, w] = dataset.manifest.sample_shape;
    // A dSprites variant (`data.variant`) trains on RGB images of the shapes.
    let c = match cfg.data.variant {
        vae_proto::config::DataVariant::None => c,
        _ => 3,
    };
    let data_shape = [c, h, w];
    let mut t = Trainer::new(cfg, comm, device, data_shape, n_train)?;
    let shape = |s: [usize; 3]| format!("{}×{}×{}", s[0], s[1], s[2]);
    let wrong_data = |trained: String| {
        TrainError::Invalid(format!(
            "the model was trained on {trained} samples; the data at {} is {} (pass --data with data of the model's shape)",
            cfg.data.url,
            shape(data_shape)
        ))
    };
    match loaded.manifest.sample_shape {
        Some(s) if s != data_shape => return Err(wrong_data(shape(s))),
        // An older checkpoint does not say: its weights tell.
        None => restore(&mut t, loaded).map_err(|e| match e {
            TrainError::Weights(crate::weights::WeightsError::Shape { .. }) => {
                wrong_data(format!("other than {}", shape(data_shape)))
            }
            e => e,
        })?,
        Some(_) => restore(&mut t, loaded)?,
    }
    Ok(t)
}

/// Runs `vae-worker eval` and returns what it wrote: the figures and the
/// `evaluation` record of what they are.
pub fn run(cmd: EvalCmd) -> Result<serde_json::Value, TrainError> {
    let o = open(&cmd)?;
    let (cfg, loaded, run_dir) = (&o.cfg, &o.loaded, o.run_dir.clone());
    let gpus = device::cuda_devices();
    let alone = device::Local { rank: 0, size: 1 };
    let device = device::pick(cfg.train.device, alone, false, gpus, gpus)?;
    let storage = StorageOptions::from_config(&cfg.storage);
    let dataset = crate::data::streamed::open_data(&cfg.data, &storage)?;
    let variant = crate::train::feed::variant::open(cfg, &dataset, &storage)?;
    let test_images = load_split(&dataset, "test", None, device)?;
    let test_images = crate::train::feed::variant::test_images(variant.as_deref(), test_images)?;
    let t = model(&o, &dataset, &Single, device)?;
    let step = loaded.manifest.step;
    let s = eval::test_split(&t, &test_images)?.sums;
    let mut out = BTreeMap::from([
        ("step".to_string(), step as f64),
        ("test_loss".to_string(), s.loss()),
        ("test_recon".to_string(), s.recon()),
        ("test_kl".to_string(), s.kl()),
        ("test_tc".to_string(), s.tc()),
        ("test_active_units".to_string(), s.active_units() as f64),
    ]);
    if let Some(k) = cmd.iwae {
        // Both as log-likelihood bounds in nats per sample.
        out.insert("test_elbo".into(), -(s.recon() + s.kl()));
        out.insert(format!("test_iwae_{k}"), iwae::bound(&t, &test_images, k)?);
    }
    for (k, v) in eval::regularizer_figures(&t, &test_images) {
        out.insert(k.to_string(), v);
    }
    if let Some(mut data) = factor_data(cfg, &dataset, "--metrics", true)? {
        data.variant = variant;
        out.extend(eval::factor_metrics(&t, &data)?);
    }
    let mut record = Provenance::new(
        &cmd.checkpoint,
        step,
        &cfg.data.url,
        &dataset.manifest_sha256,
        dataset.split("test")?.samples,
        &cfg.eval.metrics,
        (cfg.eval.scale, cmd.scale.is_some()),
        cfg.train.seed,
    );
    record.iwae = cmd.iwae;
    let file = record.file_name();
    let json_path = cmd.out.clone().unwrap_or_else(|| {
        run_dir
            .as_ref()
            .map_or(file.clone().into(), |d| d.join(&file))
    });
    let mut written = serde_json::to_value(&out).unwrap_or_default();
    written["evaluation"] = serde_json::to_value(&record).unwrap_or_default();
    write_json(&json_path, &written)?;
    if let Some(line) = record.counts_line() {
        vae_proto::errln!("{line}");
    }
    vae_proto::errln!("eval: wrote {}", json_path.display());
    let tb = run_dir
        .map(|d| d.join("tensorboard"))
        .filter(|d| d.is_dir());
    if let Some(tb) = tb {
        let mut board = Board::new(&tb)?;
        for (k, v) in out.iter().filter(|(k, _)| k.as_str() != "step") {
            board.scalar(&format!("eval/{k}"), *v, step);
        }
        board.flush()?;
    }
    Ok(written)
}

/// How this command reaches storage: the environment, and its own
/// `--set storage.*` overrides (nothing from any checkpoint).
fn caller_storage(cmd: &EvalCmd) -> Result<StorageOptions, TrainError> {
    let sets: Vec<String> = cmd
        .set
        .iter()
        .filter(|s| s.trim_start().starts_with("storage."))
        .cloned()
        .collect();
    let c = vae_proto::config::parse("", "the command line", &sets)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(StorageOptions::from_config(&c.storage))
}

/// `text` (a saved config) without its `[storage]` section.
fn without_storage(text: &str) -> String {
    match text.parse::<toml::Table>() {
        Ok(mut t) => {
            t.remove("storage");
            toml::to_string(&t).unwrap_or_default()
        }
        Err(_) => text.to_string(),
    }
}

/// The config the checkpoint was written with (or its run directory's,
/// for older checkpoints) without its storage settings, with the command's
/// overrides (which give the storage settings and `--data`).
fn config(
    cmd: &EvalCmd,
    saved: &Option<String>,
    run_dir: Option<&Path>,
) -> Result<vae_proto::config::Config, TrainError> {
    let sets = overrides(cmd);
    let bad = |origin: &str, e: vae_proto::config::ConfigError| {
        TrainError::Invalid(format!("{origin}: {e}"))
    };
    let parse =
        |text: &str, origin: &str| vae_proto::config::parse(&without_storage(text), origin, &sets);
    match (saved, run_dir) {
        (Some(text), _) => {
            parse(text, "the checkpoint's config.toml").map_err(|e| bad(&cmd.checkpoint, e))
        }
        (None, Some(dir)) => {
            let path = dir.join("config.toml");
            let text = std::fs::read_to_string(&path).map_err(|e| {
                bad(
                    &path.display().to_string(),
                    vae_proto::config::ConfigError::Read {
                        path: path.clone(),
                        source: e,
                    },
                )
            })?;
            parse(&text, &path.display().to_string())
                .map_err(|e| bad(&path.display().to_string(), e))
        }
        (None, None) => Err(TrainError::Invalid(format!(
            "{}: the checkpoint has no config.toml and is not inside a run directory",
            cmd.checkpoint
        ))),
    }
}

/// The run's config overrides: `--set`, then `--data`, `--metrics` and `--scale`.
fn overrides(cmd: &EvalCmd) -> Vec<String> {
    let mut sets = cmd.set.clone();
    if let Some(url) = &cmd.data {
        sets.push(format!(
            "data.url=\"{}\"",
            url.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    if !cmd.metrics.is_empty() {
        let quoted: Vec<String> = cmd.metrics.iter().map(|m| format!("\"{m}\"")).collect();
        sets.push(format!("eval.metrics=[{}]", quoted.join(", ")));
    }
    if let Some(s) = cmd.scale {
        sets.push(format!("eval.scale={s}"));
    }
    sets
}

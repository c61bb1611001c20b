//! `vae-worker eval`: evaluates a checkpoint on its run's test split
//! (reconstruction, KL, TC estimate, active units, the regulariser's figures
//! such as the discriminator's accuracy) and, on data with known factors,
//! the disentanglement metrics; writes them as JSON and to the run's
//! TensorBoard log under `eval/`.
use std::collections::BTreeMap;
use std::path::Path;

use vae_proto::cli::EvalCmd;

use crate::checkpoint;
use crate::comm::Single;
use crate::data::format::Dataset;
use crate::data::store::StorageOptions;
use crate::device;
use crate::tensorboard::Board;
use crate::train::eval::{self, require_factors};
use crate::train::feed::load_split;
use crate::train::report::write_json;
use crate::train::state::restore;
use crate::train::step::Trainer;
use crate::train::TrainError;

/// Runs `vae-worker eval` and returns the figures.
pub fn run(cmd: EvalCmd) -> Result<BTreeMap<String, f64>, TrainError> {
    let (ckpts, name) = checkpoint::locate(&cmd.checkpoint, &StorageOptions::default())?;
    let loaded = ckpts.read(&name)?;
    // A local run directory: the one the checkpoints are in.
    let run_dir = ckpts
        .store
        .local_dir()
        .and_then(Path::parent)
        .map(Path::to_path_buf);
    let cfg = config(&cmd, &loaded.config, run_dir.as_deref())?;
    let device = device::pick(cfg.train.device, device::Local { rank: 0, size: 1 }, false)?;
    let storage = StorageOptions::from_config(&cfg.storage);
    let dataset = Dataset::open(&cfg.data.url, &storage)?;
    let n_train = dataset.split("train")?.samples as usize;
    let test_images = load_split(&dataset, "test", None, device)?;
    let mut t = Trainer::new(
        &cfg,
        &Single,
        device,
        dataset.manifest.sample_shape,
        n_train,
    )?;
    restore(&mut t, &loaded)?;
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
    for (k, v) in eval::regularizer_figures(&t, &test_images) {
        out.insert(k.to_string(), v);
    }
    require_factors(&cfg, &dataset, "--metrics")?;
    out.extend(eval::factor_metrics(&t));
    let file = format!("eval-step-{step:010}.json");
    let json_path = cmd.out.unwrap_or_else(|| {
        run_dir
            .as_ref()
            .map_or(file.clone().into(), |d| d.join(&file))
    });
    write_json(&json_path, &out)?;
    let tb = run_dir
        .map(|d| d.join("tensorboard"))
        .filter(|d| d.is_dir());
    if let Some(tb) = tb {
        let mut board = Board::new(&tb);
        for (k, v) in out.iter().filter(|(k, _)| k.as_str() != "step") {
            board.scalar(&format!("eval/{k}"), *v, step);
        }
        board.flush();
    }
    Ok(out)
}

/// The config the checkpoint was written with (or its run directory's,
/// for older checkpoints), with the command's overrides.
fn config(
    cmd: &EvalCmd,
    saved: &Option<String>,
    run_dir: Option<&Path>,
) -> Result<vae_proto::config::Config, TrainError> {
    let sets = overrides(cmd);
    let bad = |origin: &str, e: vae_proto::config::ConfigError| {
        TrainError::Invalid(format!("{origin}: {e}"))
    };
    match (saved, run_dir) {
        (Some(text), _) => vae_proto::config::parse(text, "the checkpoint's config.toml", &sets)
            .map_err(|e| bad(&cmd.checkpoint, e)),
        (None, Some(dir)) => {
            let path = dir.join("config.toml");
            vae_proto::config::load(&path, &sets).map_err(|e| bad(&path.display().to_string(), e))
        }
        (None, None) => Err(TrainError::Invalid(format!(
            "{}: the checkpoint has no config.toml and is not inside a run directory",
            cmd.checkpoint
        ))),
    }
}

/// The run's config overrides: `--set`, then `--metrics` and `--scale`.
fn overrides(cmd: &EvalCmd) -> Vec<String> {
    let mut sets = cmd.set.clone();
    if !cmd.metrics.is_empty() {
        let quoted: Vec<String> = cmd.metrics.iter().map(|m| format!("\"{m}\"")).collect();
        sets.push(format!("eval.metrics=[{}]", quoted.join(", ")));
    }
    if let Some(s) = cmd.scale {
        sets.push(format!("eval.scale={s}"));
    }
    sets
}

//! What a run reports as scalars (a logging window's, an evaluation's),
//! its first console line, and whether its objective estimates a TC.
use std::path::Path;

use tch::Device;
use vae_proto::config::Config;

use super::meter::Window;
use crate::collective::Comm;
use crate::metrics::Sums;
use crate::train::step::Trainer;

/// Logging windows in a row with the same slowest rank before the console says so.
pub const STRAGGLER_WINDOWS: u32 = 3;

/// The scalars of an evaluation or a window under `prefix` (`train`, `test`).
pub fn sums_scalars(prefix: &str, s: &Sums, has_tc: bool) -> Vec<(String, f64)> {
    let mut v = vec![
        (format!("{prefix}/loss"), s.loss()),
        (format!("{prefix}/recon"), s.recon()),
        (format!("{prefix}/kl"), s.kl()),
    ];
    if has_tc {
        v.push((format!("{prefix}/tc"), s.tc()));
    }
    v.push((format!("{prefix}/active_units"), s.active_units() as f64));
    for (j, x) in s.kl_per_dim().iter().enumerate() {
        v.push((format!("{prefix}/kl_per_dim/{j:02}"), *x));
    }
    v
}

/// Every training scalar of a logging window at `step`.
pub fn train_scalars(w: &Window, t: &Trainer, step: u64) -> Vec<(String, f64)> {
    let mut v = sums_scalars("train", &w.sums, t.objective.objective.has_tc());
    v.push(("train/lr".into(), t.cfg.optim.lr));
    v.push(("train/samples_per_sec".into(), w.samples_per_sec));
    v.push(("dist/world_size".into(), t.comm().world_size() as f64));
    if vae_proto::config::names_tars(&t.cfg.data.url) {
        v.push(("data/skipped_in_epoch".into(), w.skipped));
    }
    if t.comm().world_size() > 1 {
        v.push(("train/allreduce_ms_per_step".into(), 1e3 * w.allreduce_secs));
    }
    if let Some((max, min, slowest)) = w.stragglers() {
        v.push(("dist/wait_ms_max".into(), 1e3 * max));
        v.push(("dist/wait_ms_min".into(), 1e3 * min));
        v.push(("dist/slowest_rank".into(), slowest as f64));
    }
    if let Some(r) = &t.regularizer {
        v.extend(
            r.scalars(&w.regularizer)
                .into_iter()
                .map(|(k, x)| (k.into(), x)),
        );
    }
    v.extend(t.objective.objective.scalars(step));
    v
}

/// The first line of a run (rank 0): where it writes, on how many workers,
/// on which device, and how gradients travel.
pub fn banner(run_dir: &Path, comm: &dyn Comm, device: Device) {
    if comm.rank() != 0 {
        return;
    }
    let world = comm.world_size();
    vae_proto::outln!(
        "run directory: {} ({world} worker{}, {device:?}, gradients over {})",
        run_dir.display(),
        if world == 1 { "" } else { "s" },
        comm.backend()
    );
}

/// Whether the configured objective estimates a total correlation.
pub fn has_tc(cfg: &Config) -> bool {
    crate::objective::build(&cfg.model, 1).has_tc()
}

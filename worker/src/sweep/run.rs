//! Running a sweep: this rank's group trains its points in turn, then world
//! rank 0 gathers every point's results and writes them ([`run`]).
use std::path::PathBuf;

use tch::Device;
use vae_proto::cli::Resume;
use vae_proto::config::Config;
use vae_proto::sweep::{point_config, Point, Sweep};

use super::hparams::hparams;
use super::point::PointResult;
use super::results;
use crate::collective::{from_rank0, Comm};
use crate::signals::StopFlag;
use crate::train::{self, TrainArgs, TrainError};

/// What a sweep needs to run.
pub struct SweepArgs<'a> {
    pub base: Config,
    pub sweep: Sweep,
    pub origin: String,
    pub run_dir: PathBuf,
    pub device: Device,
    pub stop: StopFlag,
    /// The whole job's communicator, and this rank's group's.
    pub world: &'a dyn Comm,
    pub group: &'a dyn Comm,
}

/// Trains this rank's group's points, then gathers every point's results on
/// world rank 0, which writes `sweep.json`, `sweep.csv`, the plots and the
/// HPARAMS experiment, and returns them. `None` when a signal stopped it.
pub fn run(a: SweepArgs) -> Result<Option<Vec<PointResult>>, TrainError> {
    let groups = a
        .sweep
        .groups(a.world.world_size())
        .map_err(|m| TrainError::Invalid(format!("--ranks-per-point: {m}")))?;
    let group = a.world.rank() / a.sweep.ranks_per_point;
    if a.world.rank() == 0 {
        std::fs::create_dir_all(&a.run_dir).map_err(|e| TrainError::RunDir {
            path: a.run_dir.clone(),
            message: format!("cannot create it: {e}"),
        })?;
        vae_proto::outln!(
            "sweep: {} points in {} group{} of {} rank{}, run directory {}",
            a.sweep.points.len(),
            groups,
            if groups == 1 { "" } else { "s" },
            a.sweep.ranks_per_point,
            if a.sweep.ranks_per_point == 1 {
                ""
            } else {
                "s"
            },
            a.run_dir.display()
        );
    }
    let mut mine = Vec::new();
    let mut stopped = false;
    for p in a.sweep.points.iter().filter(|p| p.index % groups == group) {
        match point(&a, p)? {
            Some(r) => mine.push(r),
            None => {
                stopped = true;
                break;
            }
        }
    }
    // After training: the one collective of the whole job (groups that
    // finish early wait here for the others, which their own watchdogs
    // watch: not timed, so a long point elsewhere is no false alarm).
    let _waiting = crate::watchdog::phase(crate::watchdog::Phase::Finished);
    let stopped = a.world.any(stopped)?;
    let payload = if a.group.rank() == 0 {
        serde_json::to_vec(&mine).map_err(|e| TrainError::Invalid(e.to_string()))?
    } else {
        b"[]".to_vec()
    };
    let gathered = a.world.gather_bytes(&payload, 0)?;
    if stopped {
        return Ok(None);
    }
    let Some(parts) = gathered else {
        return Ok(Some(Vec::new()));
    };
    let mut all: Vec<PointResult> = Vec::new();
    for part in parts {
        let rs: Vec<PointResult> =
            serde_json::from_slice(&part).map_err(|e| TrainError::Invalid(e.to_string()))?;
        all.extend(rs);
    }
    all.sort_by_key(|r| r.index);
    results::write(&a.run_dir, &a.sweep, &a.base, &all)?;
    Ok(Some(all))
}

/// One point, trained by this rank's group (or found done): its results,
/// or `None` when a signal stopped it.
fn point(a: &SweepArgs, p: &Point) -> Result<Option<PointResult>, TrainError> {
    let dir = a.run_dir.join(&p.name);
    let done = if a.group.rank() == 0 {
        std::fs::read(dir.join("summary.json")).ok()
    } else {
        None
    };
    if let Some(summary) = from_rank0(a.group, done)? {
        if a.group.rank() == 0 {
            vae_proto::outln!("sweep: {} was trained before; not again", p.name);
        }
        let summary: train::report::Summary =
            serde_json::from_slice(&summary).map_err(|e| TrainError::RunDir {
                path: dir.join("summary.json"),
                message: e.to_string(),
            })?;
        return Ok(Some(PointResult::new(p, &summary)));
    }
    let config =
        point_config(&a.base, p, &a.origin).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let args = TrainArgs {
        hparams: Some(hparams(&config, p)),
        config,
        run_dir: dir,
        resume: Resume::IfPresent,
        device: a.device,
        stop: a.stop.clone(),
    };
    let summary = train::run(args, a.group)?;
    Ok(summary.map(|s| PointResult::new(p, &s)))
}

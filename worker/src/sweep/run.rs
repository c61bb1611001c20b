//! Running a sweep: each group's leader asks for its next point when it is
//! free ([`super::queue`]), the group trains it (tried again from its last
//! checkpoint when it fails, then recorded as failed), and world rank 0,
//! which hands the points out between its own steps, writes `study.csv`
//! as they end and the sweep's results at the end ([`run`]).
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use tch::Device;
use vae_proto::cli::Resume;
use vae_proto::config::Config;
use vae_proto::sweep::{point_config, Point, Sweep};

use super::hparams::hparams;
use super::point::{Outcome, PointResult, Status};
use super::queue::{self, Dispatcher};
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

/// Trains the points this rank's group is handed, then world rank 0 writes
/// `sweep.json`, `sweep.csv`, the plots and the HPARAMS experiment from
/// the finished points, says how many finished, failed and were not
/// started, and returns the finished points. `None` when a signal stopped it.
pub fn run(a: SweepArgs) -> Result<Option<Vec<PointResult>>, TrainError> {
    let groups = a
        .sweep
        .groups(a.world.world_size())
        .map_err(|m| TrainError::Invalid(format!("--ranks-per-point: {m}")))?;
    let group = a.world.rank() / a.sweep.ranks_per_point;
    let dispatcher = match a.world.rank() {
        0 => Some(RefCell::new(begin(&a, groups)?)),
        _ => None,
    };
    // World rank 0 answers the other groups at every beat of its own work
    // (between steps, in evaluations and metrics).
    let serve = || {
        if let Some(Ok(mut d)) = dispatcher.as_ref().map(RefCell::try_borrow_mut) {
            d.serve_beside();
        }
    };
    let mut last: Option<Outcome> = None;
    let mut stopped = false;
    loop {
        let next = match (a.group.rank(), &dispatcher) {
            (0, Some(d)) => d.borrow_mut().take(last.take())?,
            (0, None) => queue::ask(a.world, group, last.take())?,
            _ => None,
        };
        let Some(i) = from_rank0(a.group, next)? else {
            break;
        };
        let o = crate::heartbeat::with_service(&serve, || tried(&a, &a.sweep.points[i], group))?;
        stopped |= o.status == Status::Stopped;
        last = Some(o);
    }
    if let Some(d) = &dispatcher {
        d.borrow_mut().serve_until_done()?;
        d.borrow_mut().flush()?;
    }
    // The one collective of the whole job, once every point is handed out
    // and trained (not timed: a long point elsewhere is no false alarm).
    let _waiting = crate::watchdog::phase(crate::watchdog::Phase::Finished);
    if a.world.any(stopped || a.stop.raised())? {
        return Ok(None);
    }
    let Some(d) = dispatcher else {
        return Ok(Some(Vec::new()));
    };
    let d = d.into_inner();
    let finished: Vec<PointResult> = d
        .outcomes()
        .values()
        .filter_map(|o| o.result.clone())
        .collect();
    let failed = d
        .outcomes()
        .values()
        .filter(|o| o.status == Status::Failed)
        .count();
    let not_started = a.sweep.points.len() - finished.len() - failed;
    results::write(&a.run_dir, &a.sweep, &a.base, &finished)?;
    if !a.base.sweep.grids.is_empty() {
        let out = a.run_dir.join("report");
        let w = crate::study::report(std::slice::from_ref(&a.run_dir), &out).map_err(|e| {
            TrainError::RunDir {
                path: out.clone(),
                message: e.to_string(),
            }
        })?;
        vae_proto::outln!("study report: {} figures, {}", w.figures, w.index.display());
    }
    vae_proto::outln!(
        "sweep: {} finished, {failed} failed, {not_started} not started (study.csv has every point and each failure's reason)",
        finished.len()
    );
    Ok(Some(finished))
}

/// World rank 0 before any point: the run directory, the first line, the queue.
fn begin<'a>(a: &'a SweepArgs, groups: usize) -> Result<Dispatcher<'a>, TrainError> {
    std::fs::create_dir_all(&a.run_dir).map_err(|e| TrainError::RunDir {
        path: a.run_dir.clone(),
        message: format!("cannot create it: {e}"),
    })?;
    let rpp = a.sweep.ranks_per_point;
    vae_proto::outln!(
        "sweep: {} points in {groups} group{} of {rpp} rank{}, handed out as groups free up, run directory {}",
        a.sweep.points.len(),
        if groups == 1 { "" } else { "s" },
        if rpp == 1 { "" } else { "s" },
        a.run_dir.display()
    );
    if groups > a.sweep.points.len() {
        vae_proto::outln!(
            "sweep: {} point{} for {groups} groups: {} group{} will have nothing to train (--ranks-per-point gives a point more ranks)",
            a.sweep.points.len(),
            if a.sweep.points.len() == 1 { "" } else { "s" },
            groups - a.sweep.points.len(),
            if groups - a.sweep.points.len() == 1 { "" } else { "s" },
        );
    }
    Dispatcher::new(a.world, &a.sweep, groups, &a.run_dir, a.stop.clone())
}

/// Trains point `p` on this rank's group, again from its last checkpoint
/// after a failure, up to `sweep.point_retries` times; how it ended.
/// A failure is the point's when every rank of the group meets it alike (a
/// diverged loss, or any error in a group of one rank). An error only some
/// ranks of a larger group meet ends the job (the others wait in a
/// collective), but first this rank records it in the point's folder
/// ([`queue::record_error`]): a restart (`--max-restarts`) counts it as a
/// try of the point, and records the point as failed once its tries are spent.
fn tried(a: &SweepArgs, p: &Point, group: usize) -> Result<Outcome, TrainError> {
    let started = Instant::now();
    let tries = a.sweep.point_retries + 1;
    let outcome = |status, result: Option<(PointResult, u64)>, reason, tries| Outcome {
        index: p.index,
        status,
        steps: result.as_ref().map_or(0, |r| r.1),
        result: result.map(|r| r.0),
        reason,
        tries,
        group,
        wall_s: started.elapsed().as_secs_f64(),
    };
    let mut reason = String::new();
    for t in 1..=tries {
        match point(a, p) {
            Ok(Some(r)) => return Ok(outcome(Status::Finished, Some(r), None, t)),
            Ok(None) => return Ok(outcome(Status::Stopped, None, None, t)),
            Err(e) if matches!(e, TrainError::Diverged { .. }) || a.group.world_size() == 1 => {
                reason = vae_proto::redact::redact(&e.to_string());
                if a.group.rank() == 0 {
                    let next = if t < tries {
                        "trying again from its last checkpoint"
                    } else {
                        "recorded as failed; the sweep goes on"
                    };
                    vae_proto::errln!(
                        "sweep: {} failed (try {t} of {tries}): {reason}; {next}",
                        p.name
                    );
                }
            }
            Err(e) => {
                let dir = a.run_dir.join(&p.name);
                queue::record_error(&dir, &vae_proto::redact::redact(&e.to_string()));
                vae_proto::errln!(
                    "sweep: {} failed on world rank {}: {e}; the job ends, and a restart counts it as a try of the point",
                    p.name,
                    a.world.rank()
                );
                return Err(e);
            }
        }
    }
    Ok(outcome(Status::Failed, None, Some(reason), tries))
}

/// One point, trained by this rank's group (the points found done are
/// never handed out: [`Dispatcher::new`]): its results and steps, or
/// `None` when a signal stopped it.
fn point(a: &SweepArgs, p: &Point) -> Result<Option<(PointResult, u64)>, TrainError> {
    let dir = a.run_dir.join(&p.name);
    let mut p = p.clone();
    if let Some(e) = crate::faults::point_error(&p.name) {
        return Err(TrainError::Invalid(e));
    }
    if crate::faults::diverging_point(&p.name) {
        p.sets.push("optim.lr=1e30".into());
    }
    let config =
        point_config(&a.base, &p, &a.origin).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let args = TrainArgs {
        hparams: Some(hparams(&config, &p)),
        config,
        run_dir: dir,
        resume: Resume::IfPresent,
        device: a.device,
        stop: a.stop.clone(),
    };
    let summary = train::run(args, a.group)?;
    Ok(summary.map(|s| (PointResult::new(&p, &s), s.step)))
}

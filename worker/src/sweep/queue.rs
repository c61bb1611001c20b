//! The hand-out of a sweep's points by work, not by index: the leader
//! (rank 0) of each group asks world rank 0 for its next point when it is
//! free, reporting how its last one ended; world rank 0 answers from the
//! queue of points not yet finished or failed ([`Dispatcher`]), between
//! the steps of the point its own group trains, so no group idles while
//! points remain, whatever each costs. The messages are MPI point-to-point
//! messages on the job's own communicator (the existing wire-up: no other
//! channel). A restart builds the queue again from the run directories: a
//! point with a `summary.json` is finished, one with a `failed.json` failed.
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vae_proto::sweep::Sweep;

use super::live;
use super::point::{FailedRecord, Outcome, PointResult, Status};
use crate::collective::{Comm, CommError};
use crate::signals::StopFlag;
use crate::train::report::Summary;
use crate::train::TrainError;

/// MPI tags of a leader's request and of rank 0's answer.
const ASK: i32 = 7301;
const GIVE: i32 = 7302;

/// How many points ended before a restart are named one by one.
const SAID_ONE_BY_ONE: usize = 10;

/// A leader's request: how its last point ended, if it had one.
#[derive(Serialize, Deserialize)]
struct Ask {
    group: usize,
    done: Option<Outcome>,
}

/// A leader's side (not world rank 0): reports `done` and gets the index of
/// its group's next point, `None` when nothing is left for it.
pub fn ask(
    world: &dyn Comm,
    group: usize,
    done: Option<Outcome>,
) -> Result<Option<usize>, CommError> {
    let failed = |e: serde_json::Error| CommError::Failed {
        rank: world.rank(),
        op: "sweep hand-out",
        message: e.to_string(),
    };
    let bytes = serde_json::to_vec(&Ask { group, done }).map_err(failed)?;
    world.send_bytes(&bytes, 0, ASK)?;
    // Not timed by the watchdog: rank 0 answers between its own steps.
    let _waiting = crate::watchdog::phase(crate::watchdog::Phase::Finished);
    let answer = world.recv_bytes(0, GIVE)?;
    serde_json::from_slice(&answer).map_err(failed)
}

/// World rank 0's side: the queue and what became of every point.
pub struct Dispatcher<'a> {
    world: &'a dyn Comm,
    sweep: &'a Sweep,
    run_dir: PathBuf,
    stop: StopFlag,
    todo: VecDeque<usize>,
    /// Point index → the group training it now.
    running: BTreeMap<usize, usize>,
    outcomes: BTreeMap<usize, Outcome>,
    /// Leaders (world ranks) not yet told that nothing is left.
    open: BTreeSet<usize>,
    /// Set by a point stopped by a signal: nothing more is handed out.
    stopping: bool,
    /// An error met while answering beside rank 0's own work, raised at
    /// its next [`take`](Self::take).
    failed: Option<CommError>,
    /// When `study.csv` was last written, and whether it is behind.
    written: std::time::Instant,
    behind: bool,
}

/// How often `study.csv` is rewritten at most while points end (it is
/// written once more at the end).
const WRITE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl<'a> Dispatcher<'a> {
    /// The queue of `sweep`'s points not finished or failed in `run_dir`,
    /// for `groups` groups of `sweep.ranks_per_point` ranks.
    pub fn new(
        world: &'a dyn Comm,
        sweep: &'a Sweep,
        groups: usize,
        run_dir: &Path,
        stop: StopFlag,
    ) -> Result<Dispatcher<'a>, TrainError> {
        let mut d = Dispatcher {
            world,
            sweep,
            run_dir: run_dir.to_path_buf(),
            stop,
            todo: VecDeque::new(),
            running: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            open: (1..groups).map(|g| g * sweep.ranks_per_point).collect(),
            stopping: false,
            failed: None,
            written: std::time::Instant::now(),
            behind: true,
        };
        for p in &sweep.points {
            match earlier(&run_dir.join(&p.name), p, sweep.point_retries + 1)? {
                Some(o) => {
                    if d.outcomes.len() < SAID_ONE_BY_ONE {
                        let was = match &o.reason {
                            Some(r) => format!("failed before ({r})"),
                            None => "was trained before".into(),
                        };
                        vae_proto::outln!("sweep: {} {was}; not again", p.name);
                    }
                    d.outcomes.insert(p.index, o);
                }
                None => d.todo.push_back(p.index),
            }
        }
        if d.outcomes.len() > SAID_ONE_BY_ONE {
            vae_proto::outln!(
                "sweep: {} points ended before (study.csv lists them); not again",
                d.outcomes.len()
            );
        }
        d.write_live(true)?;
        Ok(d)
    }

    /// Rank 0's own group: records how its last point ended and takes its
    /// next one (answering the leaders waiting first).
    pub fn take(&mut self, done: Option<Outcome>) -> Result<Option<usize>, TrainError> {
        if let Some(e) = self.failed.take() {
            return Err(e.into());
        }
        self.serve_waiting()?;
        if let Some(o) = done {
            self.record(o)?;
        }
        let next = self.next(0);
        self.write_live(false)?;
        Ok(next)
    }

    /// Answers the requests waiting now, beside rank 0's own work (at its
    /// beats); an error is kept for the next [`take`](Self::take).
    pub fn serve_beside(&mut self) {
        if self.failed.is_none() {
            self.failed = self.serve_waiting().err();
        }
    }

    /// Answers every request waiting now.
    pub fn serve_waiting(&mut self) -> Result<(), CommError> {
        while let Some((from, bytes)) = self.world.try_recv_any(ASK)? {
            self.answer(from, &bytes)?;
        }
        Ok(())
    }

    /// Answers requests until every other leader has been told that
    /// nothing is left (rank 0's own group is done).
    pub fn serve_until_done(&mut self) -> Result<(), CommError> {
        let _waiting = crate::watchdog::phase(crate::watchdog::Phase::Finished);
        while !self.open.is_empty() {
            match self.world.try_recv_any(ASK)? {
                Some((from, bytes)) => self.answer(from, &bytes)?,
                None => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
        Ok(())
    }

    /// What became of every point handed out or found done.
    pub fn outcomes(&self) -> &BTreeMap<usize, Outcome> {
        &self.outcomes
    }

    fn answer(&mut self, from: usize, bytes: &[u8]) -> Result<(), CommError> {
        let failed = |message: String| CommError::Failed {
            rank: 0,
            op: "sweep hand-out",
            message,
        };
        let ask: Ask = serde_json::from_slice(bytes).map_err(|e| failed(e.to_string()))?;
        if let Some(o) = ask.done {
            self.record(o).map_err(|e| failed(e.to_string()))?;
        }
        let give = self.next(ask.group);
        if give.is_none() {
            self.open.remove(&from);
        }
        self.write_live(false).map_err(|e| failed(e.to_string()))?;
        let bytes = serde_json::to_vec(&give).map_err(|e| failed(e.to_string()))?;
        self.world.send_bytes(&bytes, from, GIVE)
    }

    /// The next point for `group`; `None` when none is left or the sweep
    /// is stopping.
    fn next(&mut self, group: usize) -> Option<usize> {
        if self.stopping || self.stop.raised() {
            return None;
        }
        let i = self.todo.pop_front()?;
        self.running.insert(i, group);
        Some(i)
    }

    fn record(&mut self, o: Outcome) -> Result<(), TrainError> {
        self.running.remove(&o.index);
        match o.status {
            Status::Stopped => {
                self.stopping = true;
                return Ok(());
            }
            Status::Failed => {
                let record = FailedRecord {
                    reason: o.reason.clone().unwrap_or_default(),
                    tries: o.tries,
                };
                let dir = self.run_dir.join(&self.sweep.points[o.index].name);
                std::fs::create_dir_all(&dir).map_err(|e| TrainError::RunDir {
                    path: dir.clone(),
                    message: e.to_string(),
                })?;
                crate::atomic::write_json(&dir.join("failed.json"), &record)?;
            }
            Status::Finished => {}
        }
        self.outcomes.insert(o.index, o);
        Ok(())
    }

    /// Writes `study.csv` when it is behind and [`WRITE_EVERY`] has passed
    /// since the last time, or `now`.
    fn write_live(&mut self, now: bool) -> Result<(), TrainError> {
        self.behind = true;
        if now || self.written.elapsed() >= WRITE_EVERY {
            live::write(&self.run_dir, self.sweep, &self.outcomes, &self.running)?;
            self.written = std::time::Instant::now();
            self.behind = false;
        }
        Ok(())
    }

    /// Writes `study.csv` if it is behind (at the end).
    pub fn flush(&mut self) -> Result<(), TrainError> {
        match self.behind {
            true => self.write_live(true),
            false => Ok(()),
        }
    }
}

/// The file recording the `n`-th error a rank met in the point whose
/// folder is `dir`, which ended the job ([`record_error`]).
fn error_file(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("error-{n}.json"))
}

/// The errors recorded in `dir` by earlier attempts of the job, in order.
fn errors(dir: &Path) -> Vec<FailedRecord> {
    (1..)
        .map(|n| std::fs::read(error_file(dir, n)))
        .take_while(Result::is_ok)
        .filter_map(|b| b.ok().and_then(|b| serde_json::from_slice(&b).ok()))
        .collect()
}

/// Records an error a rank met in the point whose folder is `dir` (one
/// that ends the job: see `run::tried`), as its next `error-N.json`. Ranks
/// of one group that meet errors together mostly write the same file; at
/// worst the point is tried once less. Best effort: the job is ending.
pub fn record_error(dir: &Path, reason: &str) {
    let n = errors(dir).len() + 1;
    let record = FailedRecord {
        reason: reason.to_string(),
        tries: n,
    };
    let _ = std::fs::create_dir_all(dir);
    let _ = crate::atomic::write_json(&error_file(dir, n), &record);
}

/// What a previous attempt of the job left for point `p` in `dir`: finished,
/// failed, or failed by errors that ended `tries` attempts of the job (then
/// recorded as failed now).
fn earlier(
    dir: &Path,
    p: &vae_proto::sweep::Point,
    tries: usize,
) -> Result<Option<Outcome>, TrainError> {
    let bad = |path: PathBuf, e: serde_json::Error| TrainError::RunDir {
        path,
        message: e.to_string(),
    };
    let outcome = |status, result, reason, tries, steps| Outcome {
        index: p.index,
        status,
        result,
        reason,
        tries,
        group: 0,
        wall_s: 0.0,
        steps,
    };
    if let Ok(bytes) = std::fs::read(dir.join("summary.json")) {
        let s: Summary =
            serde_json::from_slice(&bytes).map_err(|e| bad(dir.join("summary.json"), e))?;
        let r = PointResult::new(p, &s);
        return Ok(Some(outcome(Status::Finished, Some(r), None, 1, s.step)));
    }
    if let Ok(bytes) = std::fs::read(dir.join("failed.json")) {
        let f: FailedRecord =
            serde_json::from_slice(&bytes).map_err(|e| bad(dir.join("failed.json"), e))?;
        return Ok(Some(outcome(
            Status::Failed,
            None,
            Some(f.reason),
            f.tries,
            0,
        )));
    }
    let errors = errors(dir);
    match errors.last() {
        Some(last) if errors.len() >= tries => {
            let record = FailedRecord {
                reason: last.reason.clone(),
                tries: errors.len(),
            };
            crate::atomic::write_json(&dir.join("failed.json"), &record)?;
            let (reason, n) = (record.reason, record.tries);
            Ok(Some(outcome(Status::Failed, None, Some(reason), n, 0)))
        }
        Some(last) => {
            vae_proto::outln!(
                "sweep: {} ended the job before ({}; try {} of {tries}); trying again from its last checkpoint",
                p.name,
                last.reason,
                errors.len()
            );
            Ok(None)
        }
        None => Ok(None),
    }
}

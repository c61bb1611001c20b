//! The position of a run ([`TrainState`]: step, epoch, batch within it,
//! early stopping) and its checkpoints ([`Checkpointer`]): rank 0 copies the
//! state off the device and writes it, in the background while training
//! goes on; `latest` and `best` are replaced only after a checkpoint is
//! complete; a resume is read by rank 0 and broadcast — weights, optimizer
//! moments and this state — so the checkpoints need not be where every node
//! can read them.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vae_proto::checkpoint::{CheckpointManifest, EarlyStoppingState, BEST_DIR, LATEST_POINTER};
use vae_proto::config::Config;

use super::context::RunContext;
use super::error::TrainError;
use super::step::Trainer;
use crate::checkpoint::{self, host_copy, CheckpointError, Checkpoints, Loaded, Snapshot};
use crate::collective::Comm;

/// Where a run is. Together with the seed it is the whole RNG state too:
/// data order is a function of `(seed, epoch)`, noise of `(seed, step, sample)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u64,
    /// Epoch in progress (0-based).
    pub epoch: u64,
    /// Steps of `epoch` already taken.
    pub batch_in_epoch: u64,
    /// The number of workers that started `epoch`: in `shard` order their
    /// deal of shards governs the whole epoch, also when it is resumed with
    /// another number of workers.
    pub epoch_world: Option<usize>,
    pub early_stopping: EarlyStoppingState,
}

impl TrainState {
    pub fn from_manifest(m: &CheckpointManifest) -> TrainState {
        TrainState {
            step: m.step,
            epoch: m.epoch,
            batch_in_epoch: m.batch_in_epoch,
            epoch_world: m
                .epoch_world
                .or((m.batch_in_epoch > 0).then_some(m.world_size)),
            early_stopping: m.early_stopping.clone(),
        }
    }

    /// The number of workers whose deal governs the current epoch: `world`
    /// when the epoch starts now, else the workers that started it.
    pub fn epoch_world(&mut self, world: usize) -> usize {
        if self.batch_in_epoch == 0 {
            self.epoch_world = Some(world);
        }
        *self.epoch_world.get_or_insert(world)
    }

    /// A step was taken.
    pub fn finish_step(&mut self) {
        self.step += 1;
        self.batch_in_epoch += 1;
    }

    /// The epoch is complete.
    pub fn finish_epoch(&mut self) {
        self.epoch += 1;
        self.batch_in_epoch = 0;
        self.epoch_world = None;
    }
}

/// Writes and reads the run's checkpoints (`checkpoint.url`, by default
/// `<run-dir>/checkpoints`). Rank 0 copies the state off the device and
/// writes it — in the background when `checkpoint.asynchronous` — while
/// training continues; a checkpoint waits for the previous one's write, and
/// [`Checkpointer::finish`] for the last.
pub struct Checkpointer<'a> {
    ckpts: Checkpoints,
    cfg: &'a Config,
    comm: &'a dyn Comm,
    run_dir: std::path::PathBuf,
    /// The run's identity, recorded in every checkpoint it writes.
    ctx: RunContext,
    /// The write in progress (rank 0).
    writing: Option<std::thread::JoinHandle<Result<Duration, CheckpointError>>>,
    /// How long the last checkpoint held training up, and how long the
    /// write before it took (for the report).
    pub last_stall: Option<Duration>,
    pub last_write: Option<Duration>,
}

/// One checkpoint to write: what, where, and the pointer to move after.
struct Job {
    ckpts: Checkpoints,
    name: String,
    manifest: CheckpointManifest,
    snapshot: Snapshot,
    pointer: &'static str,
    /// Step checkpoints to keep (`None`: no pruning).
    keep: Option<usize>,
}

impl Job {
    fn run(self) -> Result<Duration, CheckpointError> {
        let started = Instant::now();
        let between = || crate::faults::while_writing_checkpoint();
        self.ckpts
            .write(&self.name, self.manifest, &self.snapshot, &between)?;
        self.ckpts.set_pointer(self.pointer, &self.name)?;
        if let Some(keep) = self.keep {
            let mut protect = vec![self.name.clone()];
            protect.extend(self.ckpts.follow(BEST_DIR)?);
            self.ckpts.prune(keep, &protect)?;
        }
        Ok(started.elapsed())
    }
}

impl<'a> Checkpointer<'a> {
    pub fn new(
        ckpts: Checkpoints,
        cfg: &'a Config,
        comm: &'a dyn Comm,
        run_dir: &std::path::Path,
        ctx: RunContext,
    ) -> Checkpointer<'a> {
        Checkpointer {
            ckpts,
            cfg,
            comm,
            run_dir: run_dir.to_path_buf(),
            ctx,
            writing: None,
            last_stall: None,
            last_write: None,
        }
    }

    /// Where the step checkpoint of `step` is (or will be).
    pub fn step_url(&self, step: u64) -> String {
        self.ckpts.url_of(&checkpoint::step_name(step))
    }

    /// Waits for the write in progress, if any; its error, if it failed.
    pub fn finish(&mut self) -> Result<(), TrainError> {
        let _g = crate::watchdog::phase(crate::watchdog::Phase::Waiting);
        if let Some(w) = self.writing.take() {
            let took = w
                .join()
                .map_err(|_| TrainError::Invalid("the checkpoint writer panicked".into()))??;
            self.last_write = Some(took);
        }
        Ok(())
    }

    /// Checkpoint `name` of the trainer at `state`, then `pointer` moved to
    /// it: rank 0 writes. A synchronous write (`checkpoint.asynchronous =
    /// false`) holds the step up: the other ranks wait for it at a barrier,
    /// in a phase of their own, so a long write is not taken for a stalled
    /// all-reduce; an asynchronous one only copies the state, and the others
    /// go on (a rank that stops meanwhile is seen at the next all-reduce).
    /// Every rank calls this.
    fn save(
        &mut self,
        t: &Trainer,
        state: &TrainState,
        name: String,
        pointer: &'static str,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        if self.comm.rank() == 0 {
            let _g = crate::watchdog::phase(crate::watchdog::Phase::Checkpoint);
            self.write(t, state, name, pointer, metrics)?;
        }
        if self.comm.world_size() > 1 && !self.cfg.checkpoint.asynchronous {
            let _g = crate::watchdog::phase(crate::watchdog::Phase::Waiting);
            self.comm.barrier()?;
        }
        Ok(())
    }

    /// Rank 0's part of [`Checkpointer::save`].
    fn write(
        &mut self,
        t: &Trainer,
        state: &TrainState,
        name: String,
        pointer: &'static str,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let started = Instant::now();
        self.finish()?;
        let job = Job {
            ckpts: self.ckpts.clone(),
            manifest: self.manifest(state, metrics, t.sample_shape),
            snapshot: snapshot(t, &self.ctx.toml),
            keep: (pointer == LATEST_POINTER).then_some(self.cfg.checkpoint.keep_last as usize),
            name,
            pointer,
        };
        if self.cfg.checkpoint.asynchronous {
            self.writing = Some(std::thread::spawn(move || job.run()));
        } else {
            self.last_write = Some(job.run()?);
        }
        self.last_stall = Some(started.elapsed());
        Ok(())
    }

    fn manifest(
        &self,
        state: &TrainState,
        metrics: BTreeMap<String, f64>,
        sample_shape: [usize; 3],
    ) -> CheckpointManifest {
        CheckpointManifest {
            format: String::new(),
            step: state.step,
            epoch: state.epoch,
            batch_in_epoch: state.batch_in_epoch,
            epoch_world: state.epoch_world,
            seed: self.cfg.train.seed,
            world_size: self.comm.world_size(),
            model_kind: self.cfg.model.kind.as_str().into(),
            sample_shape: Some(sample_shape),
            run_id: Some(self.ctx.run_id.clone()),
            config_hash: Some(self.ctx.config_hash.clone()),
            early_stopping: state.early_stopping.clone(),
            metrics,
            files: vec![],
        }
    }

    /// Writes the step checkpoint, points `latest` at it and drops old ones.
    pub fn save_step(
        &mut self,
        t: &Trainer,
        state: &TrainState,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let name = checkpoint::step_name(state.step);
        self.save(t, state, name, LATEST_POINTER, metrics)
    }

    /// Writes the best checkpoint so far and points `best` at it.
    pub fn save_best(
        &mut self,
        t: &Trainer,
        state: &TrainState,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let name = format!("best-{}", checkpoint::step_name(state.step));
        self.save(t, state, name, BEST_DIR, metrics)
    }

    /// Rank 0 reads a checkpoint into `t` — `explicit` (damage is an
    /// error), or the latest, or when the latest is damaged the newest
    /// intact one (saying which was skipped and why); every rank then holds
    /// its weights, optimizer states and position. Returns the position
    /// and, on rank 0, the URL of the checkpoint read.
    pub fn resume(
        &mut self,
        t: &mut Trainer,
        start: &super::rundir::Start,
        report: &mut super::report::Reporter,
    ) -> Result<(TrainState, Option<String>), TrainError> {
        use super::rundir::Start;
        let mut state = TrainState::default();
        let mut from = None;
        if self.comm.rank() == 0 {
            let loaded = match start {
                Start::Explicit(spec) => {
                    let (ckpts, name) = checkpoint::locate(spec, &self.ctx.storage)?;
                    ckpts.read(&name)?
                }
                Start::Latest { adopt } => {
                    let loaded = self.newest_intact(report)?;
                    self.check_identity(&loaded, *adopt, report)?;
                    loaded
                }
                Start::Fresh => return Ok((state, None)),
            };
            restore(t, &loaded)?;
            state = TrainState::from_manifest(&loaded.manifest);
            from = Some(loaded.url);
        }
        if self.comm.world_size() > 1 {
            t.weights.broadcast(self.comm, 0)?;
            if let Some(r) = t.regularizer.as_mut() {
                r.weights_mut().broadcast(self.comm, 0)?;
            }
            state = crate::collective::from_rank0(self.comm, state)?;
        }
        t.set_step(state.step);
        Ok((state, from))
    }

    /// Refuses a checkpoint another run wrote (two jobs sharing a
    /// `checkpoint.url`), naming both; `adopt` makes this run the
    /// checkpoint's (an explicit `--resume` of a run directory that lost its
    /// identity). A changed config is allowed (a longer run, say) and noted.
    fn check_identity(
        &mut self,
        loaded: &Loaded,
        adopt: bool,
        report: &super::report::Reporter,
    ) -> Result<(), TrainError> {
        let m = &loaded.manifest;
        let Some(theirs) = &m.run_id else {
            return Ok(()); // written before checkpoints recorded their run
        };
        if adopt {
            self.ctx.run_id = theirs.clone();
            super::rundir::write_run_id(&self.run_dir, theirs)?;
        } else if *theirs != self.ctx.run_id {
            let hash = m.config_hash.as_deref().unwrap_or("?");
            return Err(TrainError::Invalid(format!(
                "{}: written by run {theirs} (config {}), not by this run {} (config {}, run directory {}): another job shares this checkpoint.url; give each job its own, or pass --resume-from {} to start from it deliberately",
                loaded.url,
                &hash[..hash.len().min(12)],
                self.ctx.run_id,
                &self.ctx.config_hash[..12],
                self.run_dir.display(),
                loaded.url
            )));
        }
        if m.config_hash
            .as_ref()
            .is_some_and(|h| *h != self.ctx.config_hash)
        {
            let key = loaded
                .config
                .as_deref()
                .and_then(|c| vae_proto::config::first_difference(c, &self.ctx.toml));
            report.say(&format!(
                "note: the config differs from the one {} was trained with{}",
                loaded.url,
                key.map_or(String::new(), |k| format!(" (first at `{k}`)"))
            ));
        }
        Ok(())
    }

    /// The latest checkpoint, or when it is damaged (its objects missing or
    /// not matching its manifest) the newest one that is intact.
    fn newest_intact(&self, report: &super::report::Reporter) -> Result<Loaded, TrainError> {
        let latest = self.ckpts.latest()?;
        let first = match self.ckpts.read(&latest) {
            Ok(l) => return Ok(l),
            Err(e) if damaged(&e) => e,
            Err(e) => return Err(e.into()),
        };
        let mut why = format!("{}: {first}", self.ckpts.url_of(&latest));
        for name in self.ckpts.complete()?.into_iter().filter(|n| *n != latest) {
            match self.ckpts.read(&name) {
                Ok(l) => {
                    report.say(&format!(
                        "checkpoint {why}; resuming from the newest intact one, {}",
                        l.url
                    ));
                    return Ok(l);
                }
                Err(e) if damaged(&e) => why = format!("{}: {e}", self.ckpts.url_of(&name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(first.into())
    }
}

/// Whether an error reading a checkpoint means the checkpoint is damaged
/// (rather than the store unreachable).
fn damaged(e: &CheckpointError) -> bool {
    matches!(
        e,
        CheckpointError::Corrupt { .. }
            | CheckpointError::Tensor { .. }
            | CheckpointError::Storage(crate::data::DataError::NotFound { .. })
    )
}

/// The trainer's state copied off the device.
fn snapshot(t: &Trainer, config: &str) -> Snapshot {
    let mut optim = t.weights.optim_state("");
    let reg = t.regularizer.as_ref();
    if let Some(r) = reg {
        optim.extend(r.weights().optim_state(r.checkpoint_prefix()));
    }
    let reg = reg.map(|r| r.weights());
    Snapshot {
        model: host_copy(&t.weights.params.named()),
        optim: host_copy(&optim),
        regularizer: reg.map(|w| host_copy(&w.params.named())),
        config: config.to_string(),
    }
}

/// Loads a checkpoint's weights and optimizer states into `t`.
pub fn restore(t: &mut Trainer, loaded: &Loaded) -> Result<(), TrainError> {
    let (dir, m) = (&loaded.url, &loaded.manifest);
    if m.model_kind != t.cfg.model.kind.as_str() {
        return Err(TrainError::Invalid(format!(
            "{dir}: a `{}` model, the config says `{}`",
            m.model_kind,
            t.cfg.model.kind.as_str()
        )));
    }
    t.weights
        .restore(&loaded.model, &loaded.optim, "", m.step, dir)?;
    if let Some(r) = t.regularizer.as_mut() {
        let saved = loaded.discriminator.as_ref().ok_or_else(|| {
            TrainError::Invalid(format!("{dir}: no discriminator in this checkpoint"))
        })?;
        let prefix = r.checkpoint_prefix();
        r.weights_mut()
            .restore(saved, &loaded.optim, prefix, m.step, dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_broadcast_encoding() {
        let s = TrainState {
            step: 1234,
            epoch: 3,
            batch_in_epoch: 17,
            epoch_world: Some(3),
            early_stopping: EarlyStoppingState {
                best_loss: Some(0.1 + 0.2),
                best_step: Some(999),
                bad_evals: 2,
            },
        };
        let same = crate::collective::from_rank0(&crate::collective::Single, s.clone()).unwrap();
        assert_eq!(same, s);
        let bytes = serde_json::to_vec(&s).unwrap();
        let back: TrainState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.early_stopping.best_loss.map(f64::to_bits),
            s.early_stopping.best_loss.map(f64::to_bits)
        );
    }

    #[test]
    fn steps_and_epochs_advance_the_position() {
        let mut s = TrainState::default();
        s.finish_step();
        s.finish_step();
        assert_eq!((s.step, s.epoch, s.batch_in_epoch), (2, 0, 2));
        s.finish_epoch();
        assert_eq!((s.step, s.epoch, s.batch_in_epoch), (2, 1, 0));
    }
}

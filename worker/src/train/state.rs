//! The position of a run ([`TrainState`]: step, epoch, batch within it,
//! early stopping) and its checkpoints ([`Checkpointer`]): rank 0 writes them
//! (the others wait at a barrier), `latest` and `best` are replaced only
//! after a checkpoint is complete, and a resume is read by rank 0 and
//! broadcast — weights, optimizer moments and this state — so the run
//! directory need not be on a file system every node sees.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vae_proto::checkpoint::{CheckpointManifest, EarlyStoppingState, BEST_DIR, LATEST_POINTER};
use vae_proto::config::Config;

use super::step::Trainer;
use super::TrainError;
use crate::checkpoint::{self, Contents, Loaded};
use crate::comm::Comm;

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

/// Writes and reads the run's checkpoints under `<run-dir>/checkpoints`.
pub struct Checkpointer<'a> {
    dir: PathBuf,
    cfg: &'a Config,
    comm: &'a dyn Comm,
}

impl<'a> Checkpointer<'a> {
    pub fn new(run_dir: &Path, cfg: &'a Config, comm: &'a dyn Comm) -> Checkpointer<'a> {
        Checkpointer {
            dir: super::rundir::checkpoints(run_dir),
            cfg,
            comm,
        }
    }

    /// Where the step checkpoint of `step` is (or will be).
    pub fn step_path(&self, step: u64) -> PathBuf {
        self.dir.join(checkpoint::step_name(step))
    }

    /// Writes checkpoint `name` of the trainer at `state` (rank 0; every
    /// rank waits for it).
    fn save(
        &self,
        t: &Trainer,
        state: &TrainState,
        name: &str,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        self.comm.barrier()?;
        if self.comm.rank() == 0 {
            let manifest = CheckpointManifest {
                format: String::new(),
                step: state.step,
                epoch: state.epoch,
                batch_in_epoch: state.batch_in_epoch,
                epoch_world: state.epoch_world,
                seed: self.cfg.train.seed,
                world_size: self.comm.world_size(),
                model_kind: self.cfg.model.kind.as_str().into(),
                early_stopping: state.early_stopping.clone(),
                metrics,
                files: vec![],
            };
            let mut optim = t.weights.optim_state("");
            let reg = t.regularizer.as_ref().map(|r| r.weights());
            if let Some(w) = reg {
                optim.extend(w.optim_state("disc."));
            }
            let reg_params = reg.map(|w| w.params.named());
            let contents = Contents {
                model: &t.weights.params.named(),
                optim: &optim,
                regularizer: reg_params.as_deref(),
            };
            checkpoint::write(&self.dir, name, manifest, &contents)?;
        }
        self.comm.barrier()?;
        Ok(())
    }

    /// Writes the step checkpoint, points `latest` at it and drops old ones.
    pub fn save_step(
        &self,
        t: &Trainer,
        state: &TrainState,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let name = checkpoint::step_name(state.step);
        self.save(t, state, &name, metrics)?;
        if self.comm.rank() != 0 {
            return Ok(());
        }
        checkpoint::set_pointer(&self.dir, LATEST_POINTER, &name)?;
        let mut protect = vec![self.dir.join(&name)];
        if let Some(best) = checkpoint::follow(&self.dir, BEST_DIR)? {
            protect.push(best);
        }
        checkpoint::prune(&self.dir, self.cfg.checkpoint.keep_last as usize, &protect)?;
        Ok(())
    }

    /// Writes the best checkpoint so far and points `best` at it.
    pub fn save_best(
        &self,
        t: &Trainer,
        state: &TrainState,
        metrics: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let name = format!("best-{}", checkpoint::step_name(state.step));
        self.save(t, state, &name, metrics)?;
        if self.comm.rank() == 0 {
            checkpoint::set_pointer(&self.dir, BEST_DIR, &name)?;
        }
        Ok(())
    }

    /// Rank 0 reads the latest checkpoint into `t`; every rank then holds
    /// its weights, optimizer states and position. Returns the position and,
    /// on rank 0, the checkpoint read.
    pub fn resume(&self, t: &mut Trainer) -> Result<(TrainState, Option<PathBuf>), TrainError> {
        let mut state = TrainState::default();
        let mut from = None;
        if self.comm.rank() == 0 {
            let dir = checkpoint::resolve(&self.dir)?;
            let loaded = checkpoint::read(&dir)?;
            restore(t, &loaded)?;
            state = TrainState::from_manifest(&loaded.manifest);
            from = Some(dir);
        }
        if self.comm.world_size() > 1 {
            t.weights.broadcast(self.comm, 0)?;
            if let Some(r) = t.regularizer.as_mut() {
                r.weights_mut().broadcast(self.comm, 0)?;
            }
            state = crate::comm::from_rank0(self.comm, state)?;
        }
        t.set_step(state.step);
        Ok((state, from))
    }
}

/// Loads a checkpoint's weights and optimizer states into `t`.
pub fn restore(t: &mut Trainer, loaded: &Loaded) -> Result<(), TrainError> {
    let (dir, m) = (&loaded.dir, &loaded.manifest);
    if m.model_kind != t.cfg.model.kind.as_str() {
        return Err(TrainError::Invalid(format!(
            "{}: a `{}` model, the config says `{}`",
            dir.display(),
            m.model_kind,
            t.cfg.model.kind.as_str()
        )));
    }
    t.weights
        .restore(&loaded.model, &loaded.optim, "", m.step, dir)?;
    if let Some(r) = t.regularizer.as_mut() {
        let saved = loaded.discriminator.as_ref().ok_or_else(|| {
            TrainError::Invalid(format!(
                "{}: no discriminator in this checkpoint",
                dir.display()
            ))
        })?;
        r.weights_mut()
            .restore(saved, &loaded.optim, "disc.", m.step, dir)?;
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
        let same = crate::comm::from_rank0(&crate::comm::Single, s.clone()).unwrap();
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

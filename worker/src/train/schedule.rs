//! When the training loop does what: pure decisions on step and epoch
//! counters, no tensors and no I/O, so every rank computes the same answer
//! from the same counters. After a step: log, compute metrics, check
//! replicas, checkpoint? After an epoch: checkpoint, stop early? And whether
//! there is another step or epoch at all. The early-stopping policy lives
//! here too.
use vae_proto::checkpoint::EarlyStoppingState;
use vae_proto::config::Config;

/// The schedule of one run, from the config.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub epochs: u64,
    pub max_steps: Option<u64>,
    pub log_every: u64,
    /// Disentanglement metrics every this many steps (when any are configured).
    pub metrics_every: Option<u64>,
    /// Whether metrics are configured at all (then they are also computed at the end).
    pub metrics: bool,
    pub check_every: Option<u64>,
    pub checkpoint_every_steps: Option<u64>,
    pub checkpoint_every_epochs: Option<u64>,
    pub early_stopping: EarlyStopping,
}

/// What to do after a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfterStep {
    pub log: bool,
    pub metrics: bool,
    pub check_replicas: bool,
    /// A scheduled checkpoint (a stop request adds one, see [`AfterStep::checkpoint_if`]).
    pub checkpoint: bool,
}

impl AfterStep {
    /// Whether to checkpoint, given whether the ranks agreed to stop (a stop
    /// always writes one).
    pub fn checkpoint_if(&self, stop: bool) -> bool {
        self.checkpoint || stop
    }
}

fn every(n: u64) -> Option<u64> {
    (n > 0).then_some(n)
}

fn due(step: u64, every: Option<u64>) -> bool {
    every.is_some_and(|n| step.is_multiple_of(n))
}

impl Schedule {
    pub fn from_config(cfg: &Config) -> Schedule {
        let metrics = !cfg.eval.metrics.is_empty();
        Schedule {
            epochs: cfg.train.epochs,
            max_steps: cfg.max_steps,
            log_every: cfg.log.every_steps,
            metrics_every: every(cfg.eval.every_steps).filter(|_| metrics),
            metrics,
            check_every: every(cfg.dist.check_every),
            checkpoint_every_steps: every(cfg.checkpoint.every_steps),
            checkpoint_every_epochs: every(cfg.checkpoint.every_epochs),
            early_stopping: EarlyStopping {
                enabled: cfg.early_stopping.enabled,
                patience: cfg.early_stopping.patience,
                min_delta: cfg.early_stopping.min_delta,
            },
        }
    }

    /// Whether `train.max_steps` has been reached at `step`.
    pub fn step_limit_reached(&self, step: u64) -> bool {
        self.max_steps.is_some_and(|m| step >= m)
    }

    /// Whether to start (or continue) an epoch: epochs remain, or one is
    /// part-done (a resume mid-epoch), and the step limit is not reached.
    pub fn more_epochs(&self, epoch: u64, batch_in_epoch: u64, step: u64) -> bool {
        (epoch < self.epochs || batch_in_epoch > 0) && !self.step_limit_reached(step)
    }

    /// The step the run ends at, seen from `step` (step `batch_in_epoch`
    /// of `steps_in_epoch` in 0-based `epoch`): the end of its last epoch,
    /// or `train.max_steps` when that comes first (early stopping aside).
    pub fn end_step(&self, step: u64, epoch: u64, batch_in_epoch: u64, steps_in_epoch: u64) -> u64 {
        let later = self.epochs.saturating_sub(epoch + 1) * steps_in_epoch;
        let end = step + steps_in_epoch.saturating_sub(batch_in_epoch) + later;
        self.max_steps.map_or(end, |m| end.min(m))
    }

    /// What to do after the step that brought the count to `step`, being
    /// step `batch_in_epoch` of `steps_in_epoch`. A logging window closes
    /// every `log.every_steps`, at an epoch's end and at `train.max_steps`
    /// (so even a run shorter than one window has its training curves). A step checkpoint due on
    /// an epoch's last step is left to the end of the epoch
    /// ([`Schedule::checkpoint_after_epoch`]), so `step-N` is written once,
    /// with the epoch complete.
    pub fn after_step(&self, step: u64, batch_in_epoch: u64, steps_in_epoch: u64) -> AfterStep {
        let last_of_epoch = batch_in_epoch == steps_in_epoch;
        AfterStep {
            log: step.is_multiple_of(self.log_every)
                || last_of_epoch
                || self.step_limit_reached(step),
            metrics: due(step, self.metrics_every),
            check_replicas: due(step, self.check_every),
            checkpoint: due(step, self.checkpoint_every_steps) && !last_of_epoch,
        }
    }

    /// Whether to checkpoint when `epochs_done` epochs are complete at
    /// `step`: on the epoch schedule, on the step schedule (its checkpoint
    /// on an epoch's last step comes here), when stopping early, and after
    /// the last.
    pub fn checkpoint_after_epoch(&self, epochs_done: u64, step: u64, stopping: bool) -> bool {
        let last = epochs_done >= self.epochs || self.step_limit_reached(step);
        due(epochs_done, self.checkpoint_every_epochs)
            || due(step, self.checkpoint_every_steps)
            || stopping
            || last
    }

    /// Whether the end of training computes metrics: when configured, unless
    /// they were just computed at this very step.
    pub fn metrics_at_end(&self, step: u64, last_metrics_step: Option<u64>) -> bool {
        self.metrics && last_metrics_step != Some(step)
    }
}

/// Early stopping on the test loss: an evaluation improves when its loss is
/// below the best by more than `min_delta`; after `patience` evaluations
/// without improvement the run stops (when enabled). The best loss is
/// tracked either way, for the summary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStopping {
    pub enabled: bool,
    pub patience: u64,
    pub min_delta: f64,
}

/// What one evaluation means for early stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    /// Keep this model as the best checkpoint.
    pub keep_best: bool,
    /// Stop training now.
    pub stop: bool,
}

impl EarlyStopping {
    /// Records the test loss of the evaluation at `step` in `state`.
    pub fn observe(&self, state: &mut EarlyStoppingState, loss: f64, step: u64) -> Verdict {
        let improved = state.best_loss.is_none_or(|b| loss < b - self.min_delta);
        if improved {
            state.best_loss = Some(loss);
            state.best_step = Some(step);
            state.bad_evals = 0;
        } else {
            state.bad_evals += 1;
        }
        Verdict {
            keep_best: self.enabled && improved,
            stop: self.enabled && state.bad_evals >= self.patience,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            epochs: 3,
            max_steps: None,
            log_every: 50,
            metrics_every: None,
            metrics: false,
            check_every: None,
            checkpoint_every_steps: None,
            checkpoint_every_epochs: Some(1),
            early_stopping: EarlyStopping {
                enabled: false,
                patience: 2,
                min_delta: 0.0,
            },
        }
    }

    #[test]
    fn logs_every_n_steps_and_at_the_end_of_each_epoch() {
        let s = schedule();
        let logged: Vec<u64> = (1..=130)
            .filter(|&step| s.after_step(step, (step - 1) % 60 + 1, 60).log)
            .collect();
        assert_eq!(logged, vec![50, 60, 100, 120]);
    }

    #[test]
    fn step_actions_follow_their_periods() {
        let s = Schedule {
            metrics_every: Some(10),
            metrics: true,
            check_every: Some(4),
            checkpoint_every_steps: Some(6),
            ..schedule()
        };
        let a = s.after_step(12, 1, 100);
        assert!(!a.metrics && a.check_replicas && a.checkpoint && !a.log);
        let a = s.after_step(20, 1, 100);
        assert!(a.metrics && a.check_replicas && !a.checkpoint);
        let a = s.after_step(7, 1, 100);
        assert_eq!(a, AfterStep::default());
        assert!(a.checkpoint_if(true) && !a.checkpoint_if(false));
    }

    #[test]
    fn a_step_checkpoint_on_an_epoch_s_last_step_is_written_once() {
        let s = Schedule {
            checkpoint_every_steps: Some(30),
            checkpoint_every_epochs: None,
            ..schedule()
        };
        // Epochs of 60 steps: step 60 is the first epoch's last.
        let during: Vec<u64> = (1..=180)
            .filter(|&st| s.after_step(st, (st - 1) % 60 + 1, 60).checkpoint)
            .collect();
        assert_eq!(during, vec![30, 90, 150]);
        let after: Vec<u64> = (1..=3)
            .filter(|&e| s.checkpoint_after_epoch(e, e * 60, false))
            .collect();
        assert_eq!(after, vec![1, 2, 3]);
        // A stop on that step still checkpoints there.
        assert!(s.after_step(60, 60, 60).checkpoint_if(true));
    }

    #[test]
    fn metrics_every_needs_metrics_configured() {
        let mut cfg = vae_proto::config::parse("", "test", &["eval.every_steps=5".into()]).unwrap();
        assert_eq!(Schedule::from_config(&cfg).metrics_every, None);
        cfg = vae_proto::config::parse(
            "",
            "test",
            &["eval.every_steps=5".into(), "eval.metrics=[\"mig\"]".into()],
        )
        .unwrap();
        let s = Schedule::from_config(&cfg);
        assert_eq!(s.metrics_every, Some(5));
        assert!(s.metrics_at_end(7, Some(5)) && !s.metrics_at_end(5, Some(5)));
    }

    #[test]
    fn epochs_run_until_the_count_or_the_step_limit() {
        let s = Schedule {
            max_steps: Some(100),
            ..schedule()
        };
        assert!(s.more_epochs(2, 0, 99));
        assert!(!s.more_epochs(3, 0, 50));
        assert!(s.more_epochs(3, 4, 50), "a part-done epoch is finished");
        assert!(!s.more_epochs(1, 0, 100));
    }

    #[test]
    fn epoch_checkpoints_on_schedule_on_stop_and_at_the_end() {
        let s = Schedule {
            checkpoint_every_epochs: Some(2),
            epochs: 5,
            max_steps: Some(1000),
            ..schedule()
        };
        let at: Vec<u64> = (1..=5)
            .filter(|&e| s.checkpoint_after_epoch(e, e * 10, false))
            .collect();
        assert_eq!(at, vec![2, 4, 5]);
        assert!(s.checkpoint_after_epoch(1, 10, true));
        assert!(s.checkpoint_after_epoch(1, 1000, false));
        let never = Schedule {
            checkpoint_every_epochs: None,
            ..s
        };
        assert!(!never.checkpoint_after_epoch(2, 20, false));
    }

    #[test]
    fn early_stopping_counts_evaluations_without_improvement() {
        let p = EarlyStopping {
            enabled: true,
            patience: 2,
            min_delta: 0.5,
        };
        let mut st = EarlyStoppingState::default();
        let v: Vec<Verdict> = [(10.0, 1), (9.0, 2), (8.8, 3), (8.6, 4), (8.0, 5)]
            .iter()
            .map(|&(loss, step)| p.observe(&mut st, loss, step))
            .collect();
        let keep: Vec<bool> = v.iter().map(|v| v.keep_best).collect();
        let stop: Vec<bool> = v.iter().map(|v| v.stop).collect();
        // 8.8 and 8.6 are within min_delta of 9.0: the second of them stops
        // the run; 8.0 (were it evaluated) improves and resets the count.
        assert_eq!(keep, vec![true, true, false, false, true]);
        assert_eq!(stop, vec![false, false, false, true, false]);
        assert_eq!((st.best_loss, st.best_step), (Some(8.0), Some(5)));
    }

    #[test]
    fn disabled_early_stopping_tracks_the_best_but_never_acts() {
        let p = EarlyStopping {
            enabled: false,
            patience: 1,
            min_delta: 0.0,
        };
        let mut st = EarlyStoppingState::default();
        for (loss, step) in [(3.0, 1), (4.0, 2), (5.0, 3)] {
            assert_eq!(
                p.observe(&mut st, loss, step),
                Verdict {
                    keep_best: false,
                    stop: false
                }
            );
        }
        assert_eq!((st.best_loss, st.bad_evals), (Some(3.0), 2));
    }
}

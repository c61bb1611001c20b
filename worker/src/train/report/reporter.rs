//! The [`Reporter`]: what rank 0 writes (a no-op elsewhere) to its sinks.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tch::Device;
use vae_proto::checkpoint::EarlyStoppingState;
use vae_proto::config::Config;

use crate::atomic::write_json;
use crate::images;
use crate::metrics::Sums;
use crate::tensorboard::{Board, Histogram};
use crate::train::error::{tensor_err, TrainError};
use crate::train::eval::{Pictures, TestEval};

use super::meter::Window;
use super::records::{EvalRecord, Membership, Summary};
use super::scalars::{has_tc, sums_scalars, STRAGGLER_WINDOWS};

/// What an evaluation draws: histograms of the test split's codes (every
/// rank computed them) and rank 0's pictures, each when due.
#[derive(Default)]
pub struct Drawn {
    pub histograms: Option<[Histogram; 2]>,
    pub pictures: Option<Pictures>,
}

/// What the end of a run knows, for [`Reporter::summary`].
pub struct Outcome<'a> {
    pub test: &'a Sums,
    pub last: &'a EvalRecord,
    pub early_stopping: &'a EarlyStoppingState,
    pub stopped_early: bool,
    pub world_size: usize,
    pub device: Device,
}

fn unix_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Rank 0's outputs in the run directory.
struct Outputs {
    board: Board,
    run_dir: PathBuf,
}

/// The run's reporter: writes on rank 0, does nothing on the others.
pub struct Reporter {
    out: Option<Outputs>,
    show_progress: bool,
    bar: indicatif::ProgressBar,
    has_tc: bool,
    log_images: bool,
    histograms: bool,
    history: Vec<EvalRecord>,
    /// The last value of every training scalar.
    last: BTreeMap<String, f64>,
    /// The last disentanglement metrics, with their `step`.
    metrics: BTreeMap<String, f64>,
    /// Checkpoint stalls and writes so far, in ms.
    stalls: Vec<f64>,
    writes: Vec<f64>,
    /// Whether this run is an HPARAMS session (a sweep's point).
    session: bool,
    /// The rank that was slowest in the last windows, and for how many.
    straggler: Option<(usize, u32)>,
    /// The step of the last pictures written.
    pictures_step: Option<u64>,
    /// Whether a progress bar is drawn (else a line per logging window).
    bar_shown: bool,
    /// Epoch (0-based), its steps done and its steps in all.
    position: (u64, u64, u64),
    /// The step the run ends at (its epochs, or `train.max_steps`).
    end_step: u64,
    /// Steps between logging windows: pictures and histograms at most this often.
    log_every: u64,
    /// The step of the last histograms written.
    histograms_step: Option<u64>,
    /// The world sizes the run has trained on, from the step each began.
    membership: Vec<Membership>,
}

/// Seconds as `1h02m`, `3m05s` or `12s`.
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

impl Reporter {
    pub fn new(cfg: &Config, run_dir: &Path, rank: usize) -> Result<Reporter, TrainError> {
        let out = match rank {
            0 => Some(Outputs {
                board: Board::new(&run_dir.join("tensorboard"))?,
                run_dir: run_dir.to_path_buf(),
            }),
            _ => None,
        };
        Ok(Reporter {
            show_progress: cfg.train.progress && out.is_some(),
            bar_shown: cfg.train.progress && vae_proto::console::bar_visible(),
            out,
            bar: indicatif::ProgressBar::hidden(),
            has_tc: has_tc(cfg),
            log_images: cfg.log.images > 0,
            histograms: cfg.log.histograms,
            history: Vec::new(),
            membership: Vec::new(),
            last: BTreeMap::new(),
            metrics: BTreeMap::new(),
            stalls: Vec::new(),
            writes: Vec::new(),
            session: false,
            straggler: None,
            pictures_step: None,
            position: (0, 0, 0),
            end_step: 0,
            log_every: cfg.log.every_steps.max(1),
            histograms_step: None,
        })
    }

    /// Whether this rank writes (rank 0).
    pub fn is_active(&self) -> bool {
        self.out.is_some()
    }

    /// Whether an epoch's end at `step` shows pictures (compute them only
    /// then): at most once per logging window, and at the run's end.
    pub fn wants_pictures(&self, step: u64) -> bool {
        self.is_active() && self.log_images && self.due(self.pictures_step, step)
    }

    /// Whether histograms are due at `step` (every rank asks: they are
    /// computed over the whole test split): as pictures.
    pub fn wants_histograms(&self, step: u64) -> bool {
        self.histograms && self.due(self.histograms_step, step)
    }

    /// Whether a logging window has passed since `last`, or `step` ends the run.
    fn due(&self, last: Option<u64>, step: u64) -> bool {
        step >= self.end_step || last.is_none_or(|l| step >= l + self.log_every)
    }

    /// Whether pictures of `step` (a metrics evaluation, the run's end) are
    /// wanted and not written yet.
    pub fn wants_pictures_at(&self, step: u64) -> bool {
        self.is_active() && self.log_images && self.pictures_step != Some(step)
    }

    /// Pictures at an evaluation that is not an epoch's end (the metrics'
    /// `eval.every_steps`, the end of a run cut by `train.max_steps`).
    pub fn pictures(&mut self, p: Pictures, step: u64) -> Result<(), TrainError> {
        let Some(o) = self.out.as_mut() else {
            return Ok(());
        };
        o.pictures(p, step)?;
        self.pictures_step = Some(step);
        Ok(o.board.flush()?)
    }

    /// A console line (rank 0).
    pub fn say(&self, line: &str) {
        if self.is_active() {
            vae_proto::console::out(line);
        }
    }

    /// A resumed run continues its history (evaluations up to `state`'s step).
    pub fn resumed(&mut self, from: &str, step: u64, epoch: u64) {
        let Some(o) = &self.out else { return };
        let path = o.run_dir.join("history.json");
        if let Ok(text) = std::fs::read_to_string(path) {
            self.history = serde_json::from_str(&text).unwrap_or_default();
            self.history.retain(|r| r.step <= step);
        }
        vae_proto::outln!("resumed from {from} (step {step}, epoch {})", epoch + 1);
    }

    /// Records that the run trains on `world_size` workers from `step`
    /// (rank 0, in `membership.json`, kept across restarts): a change of
    /// world size (an elastic job that lost or gained hosts) is a new entry;
    /// entries after `step` (from an attempt whose work was lost) go.
    pub fn membership(&mut self, step: u64, world_size: usize) -> Result<(), TrainError> {
        let Some(o) = &self.out else { return Ok(()) };
        let path = o.run_dir.join("membership.json");
        let mut all: Vec<Membership> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        all.retain(|m| m.step < step || (m.step == step && m.world_size == world_size));
        if all.last().is_none_or(|m| m.world_size != world_size) {
            if let Some(last) = all.last() {
                vae_proto::outln!(
                    "world size {} → {world_size} from step {step}",
                    last.world_size
                );
            }
            all.push(Membership { step, world_size });
        }
        self.membership = all;
        Ok(write_json(&path, &self.membership)?)
    }

    /// An epoch of `steps` steps begins with `done` of them done, at the
    /// run's `step`; the run ends at `end_step`.
    pub fn begin_epoch(&mut self, steps: u64, done: u64, epoch: u64, step: u64, end_step: u64) {
        self.position = (epoch, done, steps);
        self.end_step = end_step;
        if !(self.show_progress && self.bar_shown) {
            return;
        }
        // The bar ends where this epoch's training does.
        let last = steps.min(done + end_step.saturating_sub(step));
        let bar = indicatif::ProgressBar::new(last);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("epoch {}", epoch + 1));
        bar.set_position(done);
        self.bar = bar;
    }

    pub fn tick(&mut self) {
        self.bar.inc(1);
        self.position.1 += 1;
    }

    pub fn end_epoch(&self) {
        self.bar.finish_and_clear();
    }

    /// A logging window: progress message, the scalars of [`train_scalars`],
    /// and a console line when one rank has been the slowest for
    /// [`STRAGGLER_WINDOWS`] windows in a row, by a margin.
    pub fn window(
        &mut self,
        w: &Window,
        scalars: Vec<(String, f64)>,
        step: u64,
    ) -> Result<(), TrainError> {
        self.stragglers(w, step);
        let Some(o) = self.out.as_mut() else {
            return Ok(());
        };
        // To the run's end, not the epoch's.
        let eta = duration(self.end_step.saturating_sub(step) as f64 * w.step_secs);
        self.bar.set_message(format!(
            "loss {:.2}  {:.0} samples/s  ETA {eta}",
            w.sums.loss(),
            w.samples_per_sec
        ));
        if !self.bar_shown {
            // Under mpirun, srun or into a file the bar is not seen: one
            // line per window says what it would.
            let (epoch, done, steps) = self.position;
            vae_proto::outln!(
                "epoch {} step {done}/{steps} (step {step} of {})  loss {:.4}  {:.0} samples/s  ETA {eta}",
                epoch + 1,
                self.end_step,
                w.sums.loss(),
                w.samples_per_sec,
            );
        }
        for (tag, v) in scalars {
            o.board.scalar(&tag, v, step);
            self.last.insert(tag, v);
        }
        Ok(o.board.flush()?)
    }

    fn stragglers(&mut self, w: &Window, step: u64) {
        let Some((max, min, slowest)) = w.stragglers() else {
            return;
        };
        // A margin: the others wait more than 1 ms and 20% of a step longer.
        let marked = max - min > 1e-3_f64.max(0.2 * w.step_secs);
        let streak = match self.straggler {
            Some((r, n)) if r == slowest && marked => n + 1,
            _ if marked => 1,
            _ => 0,
        };
        self.straggler = (streak > 0).then_some((slowest, streak));
        if streak == STRAGGLER_WINDOWS {
            self.say(&format!(
                "step {step}: rank {slowest} has been the slowest for {streak} logging windows; the others wait up to {:.1} ms per step for it",
                1e3 * max
            ));
        }
    }

    /// The end-of-epoch evaluation: console line, test scalars, histograms,
    /// pictures, and `history.json`.
    pub fn epoch(
        &mut self,
        rec: &EvalRecord,
        test: &TestEval,
        latent: usize,
        drawn: Drawn,
    ) -> Result<(), TrainError> {
        let Some(o) = self.out.as_mut() else {
            // Every rank keeps count of what was drawn (histograms are
            // computed by all of them together).
            return self.drawn(drawn, rec.step);
        };
        vae_proto::outln!(
            "epoch {:>3}  step {:>7}  train loss {:.4}  test loss {:.4} (recon {:.4}, kl {:.4}, active {}/{})  {:.0} samples/s",
            rec.epoch, rec.step, rec.train_loss, rec.test_loss, rec.test_recon, rec.test_kl, rec.test_active_units, latent, rec.samples_per_sec
        );
        for (tag, v) in sums_scalars("test", &test.sums, self.has_tc) {
            o.board.scalar(&tag, v, rec.step);
        }
        o.board.flush()?;
        self.drawn(drawn, rec.step)?;
        let Some(o) = self.out.as_mut() else {
            return Ok(());
        };
        self.history.push(rec.clone());
        Ok(write_json(&o.run_dir.join("history.json"), &self.history)?)
    }

    /// Histograms and pictures of an evaluation at `step`. Every rank calls
    /// this: each keeps the step of the last histograms, which decides
    /// (the same way on every rank) when they are next computed together.
    pub fn drawn(&mut self, drawn: Drawn, step: u64) -> Result<(), TrainError> {
        if drawn.histograms.is_some() {
            self.histograms_step = Some(step);
        }
        let Some(o) = self.out.as_mut() else {
            return Ok(());
        };
        if let Some([mu, logvar]) = &drawn.histograms {
            o.board.histogram("test/mu", mu, step);
            o.board.histogram("test/logvar", logvar, step);
        }
        if let Some(p) = drawn.pictures {
            o.pictures(p, step)?;
            self.pictures_step = Some(step);
        }
        Ok(o.board.flush()?)
    }

    /// The evaluation where a run ends mid-epoch (`train.max_steps`).
    pub fn final_eval(&mut self, rec: &EvalRecord, test: &Sums) -> Result<(), TrainError> {
        let Some(o) = self.out.as_mut() else {
            return Ok(());
        };
        vae_proto::outln!(
            "stopped at step {}: test loss {:.4} (recon {:.4}, kl {:.4})",
            rec.step,
            rec.test_loss,
            rec.test_recon,
            rec.test_kl
        );
        for (tag, v) in sums_scalars("test", test, self.has_tc) {
            o.board.scalar(&tag, v, rec.step);
        }
        Ok(o.board.flush()?)
    }

    /// Makes this run an HPARAMS session with `hparams` (its start recorded
    /// when `starting`; a resumed session has it already).
    pub fn session(
        &mut self,
        hparams: &BTreeMap<String, crate::tensorboard::HValue>,
        starting: bool,
    ) {
        let Some(o) = self.out.as_mut() else { return };
        self.session = true;
        if starting {
            o.board.session_start(hparams, unix_secs());
        }
    }

    /// A checkpoint's stall and (when known) the last write's duration:
    /// TensorBoard `checkpoint/stall_ms`, `checkpoint/write_ms`.
    pub fn checkpoint(&mut self, stall: Option<Duration>, write: Option<Duration>, step: u64) {
        let Some(o) = self.out.as_mut() else { return };
        for (tag, d, all) in [
            ("checkpoint/stall_ms", stall, &mut self.stalls),
            ("checkpoint/write_ms", write, &mut self.writes),
        ] {
            if let Some(d) = d {
                let ms = d.as_secs_f64() * 1e3;
                o.board.scalar(tag, ms, step);
                all.push(ms);
            }
        }
    }

    /// The training loss of the last evaluation reported (NaN before any).
    pub fn last_train_loss(&self) -> f64 {
        self.history.last().map_or(f64::NAN, |r| r.train_loss)
    }

    /// Disentanglement metrics at `step`: TensorBoard `metrics/*`, the
    /// console, and `metrics.json` (one entry per step).
    pub fn metrics(
        &mut self,
        step: u64,
        mut values: BTreeMap<String, f64>,
        took: Duration,
    ) -> Result<(), TrainError> {
        let Some(o) = self.out.as_mut() else {
            return Ok(());
        };
        for (k, v) in &values {
            o.board.scalar(&format!("metrics/{k}"), *v, step);
        }
        o.board.flush()?;
        let shown: Vec<String> = values.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        let took = match took.as_secs_f64() {
            t if t < 1.0 => format!("{:.0} ms", t * 1e3),
            t => format!("{t:.1} s"),
        };
        vae_proto::outln!("step {step}: {} ({took})", shown.join(", "));
        values.insert("step".into(), step as f64);
        let path = o.run_dir.join("metrics.json");
        let mut all: Vec<BTreeMap<String, f64>> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        all.retain(|m| m.get("step").is_some_and(|s| *s < step as f64));
        all.push(values.clone());
        self.metrics = values;
        Ok(write_json(&path, &all)?)
    }

    /// The latent traversal's row labels of `step` (which factor each
    /// dimension captures): `images/traversal-step-N.json` beside its PNG,
    /// and `line` on the console.
    pub fn latent_factors(
        &mut self,
        step: u64,
        rows: &serde_json::Value,
        line: &str,
    ) -> Result<(), TrainError> {
        let Some(o) = self.out.as_mut() else {
            return Ok(());
        };
        vae_proto::outln!("{line}");
        let path = (o.run_dir.join("images")).join(format!("traversal-step-{step:010}.json"));
        Ok(write_json(&path, rows)?)
    }

    /// Builds the run's summary and writes `summary.json` (rank 0).
    pub fn summary(&mut self, end: Outcome, samples_per_sec: f64) -> Result<Summary, TrainError> {
        let summary = Summary {
            epoch: end.last.epoch,
            step: end.last.step,
            train_loss: end.last.train_loss,
            test_loss: end.test.loss(),
            test_recon: end.test.recon(),
            test_kl: end.test.kl(),
            test_kl_per_dim: end.test.kl_per_dim(),
            test_active_units: end.test.active_units(),
            test_tc: end.test.tc(),
            disc_accuracy: self.last.get("train/disc_accuracy").copied(),
            metrics: self.metrics.clone(),
            samples_per_sec,
            checkpoint_stall_ms: mean(&self.stalls),
            checkpoint_write_ms: mean(&self.writes),
            best_test_loss: end.early_stopping.best_loss,
            best_step: end.early_stopping.best_step,
            stopped_early: end.stopped_early,
            world_size: end.world_size,
            device: format!("{:?}", end.device),
            history: std::mem::take(&mut self.history),
            membership: self.membership.clone(),
        };
        if let Some(o) = self.out.as_mut() {
            if self.session {
                o.board.session_end(true, unix_secs());
            }
            o.board.flush()?;
            write_json(&o.run_dir.join("summary.json"), &summary)?;
        }
        Ok(summary)
    }
}

impl Outputs {
    /// The pictures as PNGs under `images/` (named by step) and TensorBoard images.
    fn pictures(&mut self, p: Pictures, step: u64) -> Result<(), TrainError> {
        for (tag, file, imgs, per_row) in [
            ("test/reconstructions", "recon", p.reconstructions, 16),
            ("samples/prior", "prior", p.prior, 8),
            ("latent/traversals", "traversal", p.traversal, 10),
        ] {
            let g = images::grid(&imgs, per_row).map_err(tensor_err("image grid"))?;
            let path = self
                .run_dir
                .join("images")
                .join(format!("{file}-step-{step:010}.png"));
            let fail = |message: String| TrainError::RunDir {
                path: path.clone(),
                message,
            };
            g.save(&path).map_err(|e| fail(e.to_string()))?;
            self.board
                .image(tag, &g, step)
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }
}

//! The training loop, read as the algorithm: set up → for each step: feed a
//! batch → step → report → act on the schedule → finish ([`run`]).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use tch::{Device, Tensor};
use vae_proto::cli::Resume;
use vae_proto::config::Config;

use super::context::RunContext;
use super::error::{tensor_err, TrainError};
use super::eval;
use super::feed::{self, Epoch, Feed};
use super::report::{self, Drawn, EvalRecord, Meter, Outcome, Reporter, Summary};
use super::rundir;
use super::schedule::Schedule;
use super::state::{Checkpointer, TrainState};
use super::step::{StepOutcome, Trainer};
use crate::checkpoint::Checkpoints;
use crate::collective::Comm;
use crate::device::kind_of;
use crate::metrics::Sums;
use crate::signals::StopFlag;
use crate::watchdog::{self, Phase};

/// What `vae-worker train` was asked to do.
pub struct TrainArgs {
    pub config: Config,
    pub run_dir: PathBuf,
    pub resume: Resume,
    pub device: Device,
    /// Raised by SIGINT/SIGTERM/SIGUSR1: checkpoint and stop.
    pub stop: StopFlag,
    /// In a sweep: this point's hyperparameters, recorded for TensorBoard's
    /// HPARAMS view (session start, and end when the run completes).
    pub hparams: Option<std::collections::BTreeMap<String, crate::tensorboard::HValue>>,
}

/// Trains as `args` says and returns the summary (also written to
/// `summary.json`), or `None` when a signal stopped the run.
pub fn run(args: TrainArgs, comm: &dyn Comm) -> Result<Option<Summary>, TrainError> {
    let mut run = in_phase(Phase::SetUp, || Run::set_up(&args, comm))?;
    let s = run.schedule.clone();
    while s.more_epochs(run.state.epoch, run.state.batch_in_epoch, run.state.step) {
        let per_step = run.trainer.batches_per_step();
        let dealt = run.state.epoch_world(comm.world_size());
        let (e, done) = (run.state.epoch, run.state.batch_in_epoch);
        let mut epoch = in_phase(Phase::SetUp, || run.feed.epoch(e, done, per_step, dealt))?;
        run.begin_epoch(epoch.steps);
        let mut next = in_phase(Phase::Fetch, || epoch.next_step());
        // Every rank holds its first batch before the first all-reduce.
        in_phase(Phase::Agree, || comm.barrier())?;
        while !s.step_limit_reached(run.state.step) {
            let Some(batch) = next.take() else {
                break;
            };
            let outcome = in_phase(Phase::Step, || {
                crate::faults::slow_rank(comm.rank());
                run.trainer.step(&batch?, run.state.step)
            })?;
            // This rank's next batch comes before the stop agreement, so a
            // slow shard fetch is waited for there, in the data phases, not
            // in the next step's all-reduce.
            if !s.step_limit_reached(run.state.step + 1) {
                next = in_phase(Phase::Fetch, || epoch.next_step());
            }
            if run.after_step(outcome, &epoch)? == Flow::Stop {
                return run.interrupted();
            }
            // A beat between steps too: a sweep's rank 0 hands out points
            // there while it trains one itself.
            crate::heartbeat::beat();
        }
        let complete = run.end_epoch(epoch.steps);
        if !complete || in_phase(Phase::Evaluation, || run.after_epoch())? == Flow::Stop {
            break; // max_steps reached mid-epoch, or early stopping
        }
    }
    in_phase(Phase::Evaluation, || run.finish()).map(Some)
}

/// Runs `f` with the watchdog in `phase`, with a beat before and after it
/// (a sweep's rank 0 answers the other groups at its beats).
fn in_phase<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    let _g = watchdog::phase(phase);
    crate::heartbeat::beat();
    let out = f();
    crate::heartbeat::beat();
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Everything one run holds. Every rank holds the same counters, so every
/// branch below is taken by all ranks together.
struct Run<'a> {
    comm: &'a dyn Comm,
    schedule: Schedule,
    trainer: Trainer<'a>,
    feed: Feed,
    test_images: Tensor,
    ckpt: Checkpointer<'a>,
    report: Reporter,
    meter: Meter,
    state: TrainState,
    stop: &'a StopFlag,
    /// What the disentanglement metrics read (rank 0, when configured).
    factors: Option<crate::data::lookup::FactorData>,
    /// The last evaluation: test sums and record.
    last_eval: Option<(Sums, EvalRecord)>,
    last_ckpt_step: Option<u64>,
    last_metrics_step: Option<u64>,
    stopped_early: bool,
}

impl<'a> Run<'a> {
    /// Checks what can fail early, prepares the run directory (rank 0),
    /// opens the data, builds the model and, when resuming, restores it.
    fn set_up(args: &'a TrainArgs, comm: &'a dyn Comm) -> Result<Run<'a>, TrainError> {
        let cfg = &args.config;
        let (rank, world) = (comm.rank(), comm.world_size());
        cfg.check_world(world)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        if cfg.train.threads > 0 {
            tch::set_num_threads(cfg.train.threads as i32);
        }
        report::banner(&args.run_dir, comm, args.device);
        // Rank 0 owns the run directory and the checkpoints; the others wait
        // until they are ready (if rank 0 fails, it aborts the job).
        let mut ctx = RunContext::new(cfg);
        let ckpts = Checkpoints::open(&rundir::checkpoints_url(&args.run_dir, cfg), &ctx.storage)?;
        let mut prepared = rundir::Prepared {
            run_id: String::new(),
            start: rundir::Start::Fresh,
        };
        if rank == 0 {
            prepared = rundir::prepare(&args.run_dir, &ctx.toml, &args.resume, &ckpts)?;
        }
        let prepared = crate::collective::from_rank0(comm, prepared)?;
        // Data: manifest first (cheap, fails fast on a bad URL), then the
        // test split and this rank's training data.
        let dataset = feed::scan::open_data(&cfg.data, &ctx.storage, comm)?;
        if let Some(note) = dataset.manifest.test_split_note().filter(|_| rank == 0) {
            vae_proto::outln!("data: {note}");
        }
        let variant = feed::variant::open(cfg, &dataset, &ctx.storage)?;
        let mut factors = eval::factor_data(cfg, &dataset, "config key `eval.metrics`", rank == 0)?;
        if let Some(f) = factors.as_mut() {
            f.variant = variant.clone();
        }
        let [c, h, w] = dataset.manifest.sample_shape;
        let shape = [variant.as_ref().map_or(c, |v| v.channels(c)), h, w];
        let n_train = dataset.split("train")?.samples as usize;
        let test_images = feed::load_split(&dataset, "test", None, args.device)?;
        let test_images = feed::variant::test_images(variant.as_deref(), test_images)?;
        let kind = kind_of(cfg.train.dtype);
        let feed = Feed::open(cfg, dataset, rank, world, (args.device, kind), variant)?;
        let mut trainer = Trainer::new(cfg, comm, args.device, shape, n_train)?;
        ctx.run_id = prepared.run_id;
        let mut ckpt = Checkpointer::new(ckpts, cfg, comm, &args.run_dir, ctx);
        let mut report = Reporter::new(cfg, &args.run_dir, rank)?;
        let mut state = TrainState::default();
        let resume = prepared.start != rundir::Start::Fresh;
        if resume {
            let (resumed, from) = ckpt.resume(&mut trainer, &prepared.start, &mut report)?;
            if let Some(from) = from {
                report.resumed(&from, resumed.step, resumed.epoch);
            }
            state = resumed;
        }
        report.membership(state.step, world)?;
        if let Some(h) = &args.hparams {
            report.session(h, !resume);
        }
        Ok(Run {
            comm,
            schedule: Schedule::from_config(cfg),
            meter: Meter::new(&trainer),
            trainer,
            feed,
            test_images,
            ckpt,
            report,
            last_ckpt_step: resume.then_some(state.step),
            state,
            stop: &args.stop,
            factors,
            last_eval: None,
            last_metrics_step: None,
            stopped_early: false,
        })
    }

    fn begin_epoch(&mut self, steps: u64) {
        self.meter.begin_epoch();
        let s = &self.state;
        let end = (self.schedule).end_step(s.step, s.epoch, s.batch_in_epoch, steps);
        (self.report).begin_epoch(steps, s.batch_in_epoch, s.epoch, s.step, end);
    }

    /// What the evaluation `test` at this step draws, when due: histograms
    /// over the whole test split (every rank), pictures (rank 0).
    fn drawn(&self, test: &eval::TestEval) -> Result<Drawn, TrainError> {
        let step = self.state.step;
        let histograms = match self.report.wants_histograms(step) {
            true => Some(eval::histograms(self.comm, test)?),
            false => None,
        };
        let pictures = match self.report.wants_pictures(step) {
            true => eval::pictures(&self.trainer, &self.test_images),
            false => None,
        };
        Ok(Drawn {
            histograms,
            pictures,
        })
    }

    /// After a step: agree on stopping (the first collective after the
    /// step, which waits for every rank's next batch), count the step,
    /// report, and act on the schedule (logging window, metrics, replica
    /// check, checkpoint, stop on a signal).
    fn after_step(&mut self, outcome: StepOutcome, epoch: &Epoch) -> Result<Flow, TrainError> {
        let stop = in_phase(Phase::Agree, || stop_requested(self.stop, self.comm))?;
        let _step = watchdog::phase(Phase::Step);
        self.state.finish_step();
        watchdog::at_step(self.state.step);
        self.meter.add(outcome);
        self.report.tick();
        let step = self.state.step;
        let todo = self
            .schedule
            .after_step(step, self.state.batch_in_epoch, epoch.steps);
        if todo.log {
            let window = self.meter.window(self.comm, step, epoch.skipped())?;
            let scalars = report::train_scalars(&window, &self.trainer, step);
            self.report.window(&window, scalars, step)?;
        }
        if let Some(by) = crate::faults::desync(step, self.comm.rank(), self.comm.world_size()) {
            let flat = &mut self.trainer.weights.params.flat;
            let _ =
                tch::no_grad(|| flat.f_add_scalar_(by)).map_err(tensor_err("fault injection"))?;
        }
        if todo.metrics {
            self.metrics()?;
        }
        if todo.check_replicas {
            self.trainer.check_replicas(step)?;
        }
        if todo.checkpoint_if(stop) {
            self.ckpt
                .save_step(&self.trainer, &self.state, BTreeMap::new())?;
            self.checkpointed();
            self.last_ckpt_step = Some(step);
        }
        Ok(if stop { Flow::Stop } else { Flow::Continue })
    }

    /// Ends an epoch's steps; whether all of them ran.
    fn end_epoch(&mut self, steps: u64) -> bool {
        self.report.end_epoch();
        self.meter.end_epoch();
        self.state.batch_in_epoch == steps
    }

    /// After a complete epoch: evaluate, report, early stopping, checkpoints.
    fn after_epoch(&mut self) -> Result<Flow, TrainError> {
        let train = self.meter.epoch_sums(self.comm)?;
        let test = eval::test_split(&self.trainer, &self.test_images)?;
        let step = self.state.step;
        let train_loss = if train.n() > 0.0 {
            train.loss()
        } else {
            self.last_eval.as_ref().map_or(f64::NAN, |e| e.1.train_loss)
        };
        let rec = EvalRecord::new(
            self.state.epoch + 1,
            step,
            train_loss,
            &test.sums,
            self.meter.samples_per_sec,
        );
        let drawn = self.drawn(&test)?;
        // Rank 0 reports (pictures, files) while the others wait for its
        // decision: both may take a while, so the long timeout applies.
        let waiting = watchdog::phase(Phase::Waiting);
        self.report.epoch(&rec, &test, self.trainer.latent, drawn)?;
        // Rank 0 decides (every rank's test loss is a reduced float, and
        // reductions need not be bit-identical on every rank).
        let es = &mut self.state.early_stopping;
        let verdict = self
            .schedule
            .early_stopping
            .observe(es, rec.test_loss, step);
        let decided = (verdict, self.state.early_stopping.clone());
        let (verdict, es) = crate::collective::from_rank0(self.comm, decided)?;
        drop(waiting);
        self.state.early_stopping = es;
        self.state.finish_epoch();
        let metrics = BTreeMap::from([
            ("test_loss".to_string(), rec.test_loss),
            ("train_loss".to_string(), rec.train_loss),
        ]);
        self.last_eval = Some((test.sums, rec));
        if verdict.keep_best {
            self.ckpt
                .save_best(&self.trainer, &self.state, metrics.clone())?;
            self.checkpointed();
        }
        let epochs_done = self.state.epoch;
        if self
            .schedule
            .checkpoint_after_epoch(epochs_done, step, verdict.stop)
        {
            self.ckpt.save_step(&self.trainer, &self.state, metrics)?;
            self.checkpointed();
            self.last_ckpt_step = Some(step);
        }
        if verdict.stop {
            self.stopped_early = true;
            let bad = self.state.early_stopping.bad_evals;
            self.report.say(&format!(
                "early stopping: no improvement of the test loss in {bad} evaluations"
            ));
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// Reports how long the last checkpoint held training up, and how long
    /// the last completed write took.
    fn checkpointed(&mut self) {
        let (stall, write) = (self.ckpt.last_stall.take(), self.ckpt.last_write.take());
        self.report.checkpoint(stall, write, self.state.step);
    }

    /// Disentanglement metrics, computed by rank 0 while the others wait.
    fn metrics(&mut self) -> Result<(), TrainError> {
        let step = self.state.step;
        if self.report.is_active() {
            let _g = watchdog::phase(Phase::Metrics);
            let started = Instant::now();
            let values = match &self.factors {
                Some(data) => eval::factor_metrics(&self.trainer, data)?,
                None => BTreeMap::new(),
            };
            self.report.metrics(step, values, started.elapsed())?;
            self.pictures()?;
            if let Some(data) = &self.factors {
                let (rows, line) = eval::latent_factors(&self.trainer, data)?;
                self.report.latent_factors(step, &rows, &line)?;
            }
        }
        self.last_metrics_step = Some(step);
        let _g = watchdog::phase(Phase::Waiting);
        self.comm.barrier()?;
        Ok(())
    }

    /// Pictures of the model now (rank 0), unless this step has them.
    fn pictures(&mut self) -> Result<(), TrainError> {
        let step = self.state.step;
        if self.report.wants_pictures_at(step) {
            if let Some(p) = eval::pictures(&self.trainer, &self.test_images) {
                self.report.pictures(p, step)?;
            }
        }
        Ok(())
    }

    /// A signal stopped the run; its checkpoint is written (waited for).
    fn interrupted(mut self) -> Result<Option<Summary>, TrainError> {
        self.report.end_epoch();
        self.ckpt.finish()?;
        let step = self.state.step;
        self.report.say(&format!(
            "stopped by a signal at step {step}: checkpoint written to {}; continue with --resume",
            self.ckpt.step_url(step)
        ));
        Ok(None)
    }

    /// The end of training: a run that ended mid-epoch (`train.max_steps`) is
    /// evaluated and checkpointed there; final metrics; the summary.
    fn finish(mut self) -> Result<Summary, TrainError> {
        let step = self.state.step;
        if self.last_eval.as_ref().is_none_or(|e| e.1.step != step) {
            let test = eval::test_split(&self.trainer, &self.test_images)?;
            let epoch = self.state.epoch + u64::from(self.state.batch_in_epoch > 0);
            let train_loss = self.report.last_train_loss();
            let sps = self.meter.samples_per_sec;
            let rec = EvalRecord::new(epoch, step, train_loss, &test.sums, sps);
            self.report.final_eval(&rec, &test.sums)?;
            let drawn = self.drawn(&test)?;
            self.report.drawn(drawn, step)?;
            self.last_eval = Some((test.sums, rec));
        }
        let (test, last) = self
            .last_eval
            .take()
            .ok_or_else(|| TrainError::Invalid("no evaluation was run".into()))?;
        if self.last_ckpt_step != Some(step) {
            let metrics = BTreeMap::from([("test_loss".to_string(), last.test_loss)]);
            self.ckpt.save_step(&self.trainer, &self.state, metrics)?;
            self.checkpointed();
        }
        if self.schedule.metrics_at_end(step, self.last_metrics_step) {
            self.metrics()?;
        }
        self.ckpt.finish()?;
        self.checkpointed();
        let end = Outcome {
            test: &test,
            last: &last,
            early_stopping: &self.state.early_stopping,
            stopped_early: self.stopped_early,
            world_size: self.comm.world_size(),
            device: self.trainer.device,
        };
        self.report.summary(end, self.meter.samples_per_sec)
    }
}

/// Whether any rank was asked to stop (all ranks get the same answer).
fn stop_requested(stop: &StopFlag, comm: &dyn Comm) -> Result<bool, TrainError> {
    Ok(comm.any(stop.raised())?)
}

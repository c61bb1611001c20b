//! What the steps report, added up and reduced: [`Meter`] sums on the
//! device (no host sync per step) and reduces a logging window or an epoch
//! over ranks (every rank takes part), with the divergence check (rank 0
//! decides, its error aborts the job) and each rank's wait in the gradient
//! all-reduce (the stragglers, [`Window::stragglers`]).
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::collective::Comm;
use crate::metrics::{sums_len, Sums};
use crate::train::error::{tensor_err, TrainError};
use crate::train::step::{StepOutcome, Trainer};

/// A logging window's figures, reduced over ranks.
pub struct Window {
    pub sums: Sums,
    /// The regulariser's sums (empty without one).
    pub regularizer: Vec<f64>,
    pub samples_per_sec: f64,
    /// Mean seconds per step in the gradient all-reduce, on this rank.
    pub allreduce_secs: f64,
    /// The same for every rank (with more than one): the slowest rank
    /// waits least, the others wait for it.
    pub waits: Vec<f64>,
    /// Mean seconds per step.
    pub step_secs: f64,
    /// Samples skipped so far this epoch because they do not decode (all ranks).
    pub skipped: f64,
}

impl Window {
    /// `(max wait, min wait, the slowest rank)` over ranks, in seconds.
    pub fn stragglers(&self) -> Option<(f64, f64, usize)> {
        if self.waits.len() < 2 {
            return None;
        }
        let max = self.waits.iter().copied().fold(f64::MIN, f64::max);
        let (slowest, min) = self
            .waits
            .iter()
            .copied()
            .enumerate()
            .fold((0, f64::MAX), |b, (i, w)| if w < b.1 { (i, w) } else { b });
        Some((max, min, slowest))
    }
}

/// Adds up what the steps report, on the device (no host sync per step).
pub struct Meter {
    latent: usize,
    device: Device,
    global_batch: u64,
    reg_len: usize,
    window: Tensor,
    regularizer: Tensor,
    epoch: Tensor,
    comm_secs: f64,
    window_start: Instant,
    window_steps: u64,
    epoch_secs: f64,
    epoch_samples: u64,
    /// Training throughput of the last epoch that trained (samples/s).
    pub samples_per_sec: f64,
}

impl Meter {
    pub fn new(t: &Trainer) -> Meter {
        let zeros = || Tensor::zeros([0], (Kind::Double, t.device));
        Meter {
            latent: t.latent,
            device: t.device,
            global_batch: t.cfg.train.batch_size,
            reg_len: t.regularizer.as_ref().map_or(0, |r| r.sums_len()),
            window: zeros(),
            regularizer: zeros(),
            epoch: zeros(),
            comm_secs: 0.0,
            window_start: Instant::now(),
            window_steps: 0,
            epoch_secs: 0.0,
            epoch_samples: 0,
            samples_per_sec: 0.0,
        }
    }

    fn zeros(&self, n: usize) -> Tensor {
        Tensor::zeros([n as i64], (Kind::Double, self.device))
    }

    /// Starts an epoch: every sum and clock from zero.
    pub fn begin_epoch(&mut self) {
        self.epoch = self.zeros(sums_len(self.latent) as usize);
        (self.epoch_secs, self.epoch_samples) = (0.0, 0);
        self.reset_window();
    }

    fn reset_window(&mut self) {
        self.window = self.zeros(sums_len(self.latent) as usize);
        self.regularizer = self.zeros(self.reg_len);
        self.comm_secs = 0.0;
        (self.window_start, self.window_steps) = (Instant::now(), 0);
    }

    pub fn add(&mut self, o: StepOutcome) {
        self.window += &o.sums;
        self.epoch += o.sums;
        if let Some(r) = o.regularizer {
            self.regularizer += r;
        }
        self.comm_secs += o.comm_secs;
        self.window_steps += 1;
    }

    /// Reduces the window over ranks (every rank calls this) and starts the
    /// next one. A loss that is not finite ends the run, naming the step:
    /// rank 0 decides and tells every rank, so all of them end it with the
    /// same error (a sweep then records the point as failed and goes on).
    pub fn window(
        &mut self,
        comm: &dyn Comm,
        step: u64,
        skipped: u64,
    ) -> Result<Window, TrainError> {
        let mut sums = Sums::from_tensor(&self.window, self.latent)
            .map_err(tensor_err(format!("step {step}")))?;
        comm.all_reduce_f64(&mut sums.v)?;
        let loss = sums.loss();
        // As text: JSON has no NaN.
        let diverged =
            crate::collective::from_rank0(comm, (!loss.is_finite()).then(|| loss.to_string()))?;
        if let Some(loss) = diverged {
            return Err(TrainError::Diverged { step, loss });
        }
        let secs = self.window_start.elapsed().as_secs_f64();
        let samples = self.window_steps * self.global_batch;
        self.epoch_secs += secs;
        self.epoch_samples += samples;
        let mut regularizer = Vec::new();
        if self.reg_len > 0 {
            regularizer = Vec::<f64>::try_from(self.regularizer.to_device(Device::Cpu))
                .map_err(tensor_err("regulariser sums"))?;
            comm.all_reduce_f64(&mut regularizer)?;
        }
        let allreduce_secs = self.comm_secs / self.window_steps.max(1) as f64;
        // Each rank's wait, and the skipped samples, summed in one reduction.
        let world = comm.world_size();
        let mut waits = vec![0.0; world + 1];
        (waits[comm.rank()], waits[world]) = (allreduce_secs, skipped as f64);
        if world > 1 {
            comm.all_reduce_f64(&mut waits)?;
        }
        let skipped = waits.pop().unwrap_or(0.0);
        if world == 1 {
            waits.clear();
        }
        let w = Window {
            sums,
            regularizer,
            samples_per_sec: samples as f64 / secs.max(1e-9),
            allreduce_secs,
            waits,
            step_secs: secs / self.window_steps.max(1) as f64,
            skipped,
        };
        self.reset_window();
        Ok(w)
    }

    /// Ends an epoch (complete or cut short): its throughput becomes the run's.
    pub fn end_epoch(&mut self) {
        if self.epoch_samples > 0 {
            self.samples_per_sec = self.epoch_samples as f64 / self.epoch_secs.max(1e-9);
        }
    }

    /// The epoch's training sums, reduced over ranks (every rank calls this).
    pub fn epoch_sums(&self, comm: &dyn Comm) -> Result<Sums, TrainError> {
        let mut s =
            Sums::from_tensor(&self.epoch, self.latent).map_err(tensor_err("epoch sums"))?;
        comm.all_reduce_f64(&mut s.v)?;
        Ok(s)
    }
}

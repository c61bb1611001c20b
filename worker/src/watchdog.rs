//! The stall watchdog. The training thread says which phase it is in (a
//! step's collectives, evaluation, waiting for rank 0's metrics or a
//! checkpoint write, set-up) and beats when it makes progress; a thread
//! checks once a second. When a phase makes no progress for its timeout
//! (`dist.timeout_s`; `dist.wait_timeout_s` for phases that wait on another
//! rank's long work, so a long metric computation is no false alarm), the
//! worker prints one line — rank, host, step, phase — and ends its process
//! at once; mpirun (or `srun --kill-on-bad-exit`) then ends the job, and
//! `vae-launch` restarts it from the latest checkpoint. A stalled process
//! itself (stopped, hung in a driver) cannot speak: the ranks waiting for it
//! do, and the launcher names the one that did not. A watchdog that finds
//! itself frozen (its process was stopped) gives its rank a fresh start
//! instead of accusing the others. Hooks (the NCCL
//! communicator's asynchronous error state) are polled on the same tick.
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the training thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Nothing the watchdog times (before training, after it).
    Idle = 0,
    /// Reading data, building the model, resuming: may be long (large
    /// datasets from buckets), so the long timeout applies.
    SetUp = 1,
    /// A training step and its collectives (the gradient all-reduce).
    Step = 2,
    /// The test split's evaluation and its reductions.
    Evaluation = 3,
    /// Waiting for another rank's long work (rank 0's metrics, a
    /// checkpoint write): the long timeout.
    Waiting = 4,
    /// Computing the disentanglement metrics (beats per batch).
    Metrics = 5,
    /// Reading this rank's next batch (a shard fetch from storage, bounded
    /// by the storage's own retries).
    Fetch = 6,
    /// Agreeing with the other ranks to go on (the stop agreement), which
    /// waits for every rank's next batch: as long as a fetch may take.
    Agree = 7,
    /// Rank 0 writing a checkpoint in the step (`checkpoint.asynchronous = false`).
    Checkpoint = 8,
    /// Done, waiting for the rest of the job (a sweep's other groups, which
    /// their own watchdogs watch): not timed.
    Finished = 9,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::SetUp,
            2 => Phase::Step,
            3 => Phase::Evaluation,
            4 => Phase::Waiting,
            5 => Phase::Metrics,
            6 => Phase::Fetch,
            7 => Phase::Agree,
            8 => Phase::Checkpoint,
            9 => Phase::Finished,
            _ => Phase::Idle,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::SetUp => "set-up (data, model, resume)",
            Phase::Step => "a training step (the gradient all-reduce)",
            Phase::Evaluation => "evaluation",
            Phase::Waiting => "waiting for another rank's long work (metrics, checkpoint)",
            Phase::Metrics => "the disentanglement metrics",
            Phase::Fetch => "reading its next batch (a shard fetch)",
            Phase::Agree => {
                "waiting for the other ranks' next batch (a shard fetch) and stop decision"
            }
            Phase::Checkpoint => "writing a checkpoint",
            Phase::Finished => "finished, waiting for the rest of the job",
        }
    }

    /// The limit of this phase and the config key that sets it (`None`:
    /// not timed).
    fn limit(self, s: &Shared) -> Option<(Duration, &'static str)> {
        match self {
            Phase::Idle | Phase::Finished => None,
            Phase::SetUp | Phase::Waiting | Phase::Checkpoint => {
                Some((s.wait_timeout, "dist.wait_timeout_s"))
            }
            Phase::Fetch | Phase::Agree => Some((s.timeout + s.fetch_bound, "dist.timeout_s")),
            Phase::Step | Phase::Evaluation | Phase::Metrics => Some((s.timeout, "dist.timeout_s")),
        }
    }
}

/// Something to check on every tick; an error message ends the job.
pub type Hook = Box<dyn Fn() -> Option<String> + Send>;

struct Shared {
    start: Instant,
    phase: AtomicU8,
    step: AtomicU64,
    /// Milliseconds since `start` of the last progress.
    last: AtomicU64,
    timeout: Duration,
    wait_timeout: Duration,
    /// How long a shard fetch may take beyond `timeout` (the storage's
    /// retry bound; zero when training fetches nothing).
    fetch_bound: Duration,
    rank: AtomicU64,
    /// The process that started this one under an MPI launcher (mpirun,
    /// orted, slurmstepd): when it is gone, so is the job.
    parent: Option<i32>,
    host: String,
    hooks: Mutex<Vec<Hook>>,
    done: AtomicBool,
}

static WATCHDOG: OnceLock<Arc<Shared>> = OnceLock::new();

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// The limits the watchdog applies (from `[dist]` and `[storage]`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    pub wait_timeout: Duration,
    pub fetch_bound: Duration,
}

/// Starts the watchdog of this process (once; later calls do nothing), from
/// the start of the process: set-up is watched too. `rank` is the launcher's
/// (the environment's) until [`set_rank`] confirms it. Under an MPI launcher
/// the process also ends when its parent does (`kill -9` of the launcher).
pub fn start(rank: usize, limits: Limits) {
    crate::heartbeat::install(beat);
    let host = crate::device::host_name();
    // SAFETY: getppid has no preconditions.
    let parent = vae_proto::console::launched_by_mpi().then(|| unsafe { libc::getppid() });
    let shared = Arc::new(Shared {
        start: Instant::now(),
        phase: AtomicU8::new(Phase::Idle as u8),
        step: AtomicU64::new(0),
        last: AtomicU64::new(0),
        timeout: limits.timeout,
        wait_timeout: limits.wait_timeout,
        fetch_bound: limits.fetch_bound,
        rank: AtomicU64::new(rank as u64),
        parent,
        host,
        hooks: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
    });
    if WATCHDOG.set(Arc::clone(&shared)).is_ok() {
        std::thread::Builder::new()
            .name("vae-watchdog".into())
            .spawn(move || watch(&shared))
            .ok();
    }
}

fn watch(s: &Shared) {
    let tick = Duration::from_millis(500)
        .min(s.timeout / 4)
        .max(Duration::from_millis(50));
    loop {
        let before = Instant::now();
        std::thread::sleep(tick);
        if s.done.load(Ordering::Relaxed) {
            return;
        }
        if before.elapsed() > tick + Duration::from_secs(2) {
            // This process (or its machine) was frozen: its own idleness
            // says nothing of the others. Give it a fresh start.
            beat();
            continue;
        }
        if let Some(p) = s.parent {
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } != p {
                orphaned(s, p);
            }
        }
        if let Ok(hooks) = s.hooks.lock() {
            for h in hooks.iter() {
                if let Some(problem) = h() {
                    stalled(s, &problem);
                }
            }
        }
        let phase = Phase::from_u8(s.phase.load(Ordering::Relaxed));
        let Some((limit, key)) = phase.limit(s) else {
            continue;
        };
        let idle = ms(s.start.elapsed()).saturating_sub(s.last.load(Ordering::Relaxed));
        if idle > ms(limit) {
            stalled(
                s,
                &format!(
                    "no progress for {:.0} s in {} ({key}{})",
                    idle as f64 / 1e3,
                    phase.describe(),
                    if matches!(phase, Phase::Fetch | Phase::Agree) {
                        format!(
                            " = {:.0}, plus {:.0} s the storage may retry",
                            s.timeout.as_secs_f64(),
                            s.fetch_bound.as_secs_f64()
                        )
                    } else {
                        format!(" = {:.0}", limit.as_secs_f64())
                    }
                ),
            );
        }
    }
}

/// The launcher or mpirun that started this process is gone (killed): the
/// job is over, and nothing may go on writing into its run directory.
fn orphaned(s: &Shared, parent: i32) -> ! {
    vae_proto::errln!(
        "vae-worker: rank {} on {}: the process that started it ({parent}) is gone; ending",
        s.rank.load(Ordering::Relaxed),
        s.host
    );
    // SAFETY: _exit ends the process immediately; no Rust state is touched.
    unsafe { libc::_exit(1) }
}

/// Says why, gives the other ranks a moment to say what they saw, and ends
/// the process without running anything else (MPI would wait forever).
fn stalled(s: &Shared, why: &str) -> ! {
    vae_proto::errln!(
        "vae-worker: rank {} on {} stalled at step {}: {why}; ending the job so it can restart from the latest checkpoint",
        s.rank.load(Ordering::Relaxed),
        s.host,
        s.step.load(Ordering::Relaxed)
    );
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: _exit ends the process immediately; no Rust state is touched.
    unsafe { libc::_exit(STALL_EXIT) }
}

/// The exit status of a process its watchdog ended.
pub const STALL_EXIT: i32 = 75;

fn shared() -> Option<&'static Arc<Shared>> {
    WATCHDOG.get()
}

/// Progress: the training thread is alive and moving.
pub fn beat() {
    if let Some(s) = shared() {
        s.last.store(ms(s.start.elapsed()), Ordering::Relaxed);
    }
}

/// The step the run is at (for the report).
pub fn at_step(step: u64) {
    if let Some(s) = shared() {
        s.step.store(step, Ordering::Relaxed);
    }
}

/// Rank, step and phase of this process, once the watchdog runs (for
/// messages about a failure, e.g. out of memory).
pub fn where_now() -> Option<(usize, u64, Phase)> {
    shared().map(|s| {
        let phase = Phase::from_u8(s.phase.load(Ordering::Relaxed));
        (
            s.rank.load(Ordering::Relaxed) as usize,
            s.step.load(Ordering::Relaxed),
            phase,
        )
    })
}

/// This process's rank in the job, once MPI has said it.
pub fn set_rank(rank: usize) {
    if let Some(s) = shared() {
        s.rank.store(rank as u64, Ordering::Relaxed);
    }
}

/// Adds a check to every tick (e.g. the NCCL communicator's error state).
pub fn hook(h: Hook) {
    if let Some(s) = shared() {
        if let Ok(mut hooks) = s.hooks.lock() {
            hooks.push(h);
        }
    }
}

/// Stops watching (the run is over).
pub fn finish() {
    if let Some(s) = shared() {
        s.done.store(true, Ordering::Relaxed);
    }
}

/// Enters `phase` until the guard is dropped (then the previous phase is
/// back); entering counts as progress.
pub fn phase(phase: Phase) -> PhaseGuard {
    let previous = shared().map_or(Phase::Idle, |s| {
        Phase::from_u8(s.phase.swap(phase as u8, Ordering::Relaxed))
    });
    beat();
    PhaseGuard { previous }
}

pub struct PhaseGuard {
    previous: Phase,
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        if let Some(s) = shared() {
            s.phase.store(self.previous as u8, Ordering::Relaxed);
        }
        beat();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_nest_and_come_back() {
        // Without a started watchdog the calls are harmless no-ops.
        let g = phase(Phase::Step);
        beat();
        drop(g);
        for p in [
            Phase::Metrics,
            Phase::Fetch,
            Phase::Agree,
            Phase::Checkpoint,
            Phase::Finished,
        ] {
            assert_eq!(Phase::from_u8(p as u8), p);
        }
    }
}

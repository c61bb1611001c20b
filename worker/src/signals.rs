//! Graceful stop: SIGINT, SIGTERM (SLURM preemption) and SIGUSR1 (what
//! `vae-launch` forwards through mpirun, as often as it takes: repeating it
//! changes nothing) set a flag; the training loop agrees on it across ranks,
//! finishes the step, writes a checkpoint and exits. A second SIGINT or
//! SIGTERM, or SIGUSR2 (the launcher's "at once"), stops at once: the writes
//! in progress are cleaned up first (staged files removed, multipart uploads
//! aborted: [`crate::data::inflight`]), then the process ends with 128 + the
//! signal. `vae-launch` starts workers with SIGUSR1 and SIGUSR2 ignored
//! until these handlers are in place, so a stop that comes while a worker
//! is still loading is not its death.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

/// How long the cleanup after a second signal may take per upload.
const ABORT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Installs the handlers (a thread that receives the signals). Without
    /// them (an error), the flag never rises and the default action (exit)
    /// applies.
    pub fn install() -> StopFlag {
        let flag = Arc::new(AtomicBool::new(false));
        let sigs = [SIGINT, SIGTERM, SIGUSR1, SIGUSR2];
        if let Ok(mut signals) = signal_hook::iterator::Signals::new(sigs) {
            let raised = Arc::clone(&flag);
            let _ = std::thread::Builder::new()
                .name("vae-signals".into())
                .spawn(move || {
                    for sig in signals.forever() {
                        let before = raised.swap(true, Ordering::SeqCst);
                        match sig {
                            SIGUSR2 => stop_at_once(sig),
                            SIGINT | SIGTERM if before => stop_at_once(sig),
                            _ => {}
                        }
                    }
                });
        }
        StopFlag(flag)
    }

    /// A flag that no signal raises.
    pub fn never() -> StopFlag {
        StopFlag(Arc::new(AtomicBool::new(false)))
    }

    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The second signal: clean up the writes in progress, then end the process.
fn stop_at_once(sig: i32) -> ! {
    let cleaned = crate::data::inflight::global().abort_all(ABORT_TIMEOUT);
    vae_proto::errln!(
        "vae-worker: signal {sig} after a stop request: stopping at once ({cleaned} write{} in progress cleaned up)",
        if cleaned == 1 { "" } else { "s" }
    );
    // SAFETY: _exit ends the process without running anything else (MPI
    // would wait for the other ranks).
    unsafe { libc::_exit(128 + sig) }
}

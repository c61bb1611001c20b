//! Graceful stop: SIGINT, SIGTERM (SLURM preemption) and SIGUSR1 (what
//! `vae-launch` forwards through mpirun) set a flag; the training loop agrees
//! on it across ranks, finishes the step, writes a checkpoint and exits. A
//! second signal ends the process at once.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

#[derive(Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Installs the handlers. Without handlers (an error), the flag never rises
    /// and the default action (exit) applies.
    pub fn install() -> StopFlag {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM, SIGUSR1] {
            // Order matters: the first handler exits if the flag is already up.
            let _ =
                signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&flag));
            let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
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

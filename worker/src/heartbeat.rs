//! A heartbeat that long computations below the training loop (the
//! disentanglement metrics, an evaluation) give while they work, so the
//! watchdog, which sits above them, does not take them for a stalled rank.
//! A leaf: the watchdog installs what a beat does ([`install`]); without
//! one, a beat does nothing.
use std::sync::OnceLock;

static BEAT: OnceLock<fn()> = OnceLock::new();

/// Makes every [`beat`] call `f` (once per process; later calls are ignored).
pub fn install(f: fn()) {
    let _ = BEAT.set(f);
}

/// Says this rank is still making progress.
pub fn beat() {
    if let Some(f) = BEAT.get() {
        f();
    }
}

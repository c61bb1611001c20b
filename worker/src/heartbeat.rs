//! A heartbeat that long computations below the training loop (the
//! disentanglement metrics, an evaluation) and the loop itself (between
//! steps) give while they work, so the watchdog, which sits above them,
//! does not take them for a stalled rank, and so a service that must answer
//! while this rank computes (a sweep's rank 0 handing out points) runs
//! often. A leaf: the watchdog installs what a beat does ([`install`]), a
//! caller adds a service for a scope ([`with_service`]); without them, a
//! beat does nothing.
use std::cell::Cell;
use std::sync::OnceLock;

static BEAT: OnceLock<fn()> = OnceLock::new();

/// A service called at every beat of this thread, while its scope lasts.
type Service = *const (dyn Fn() + 'static);

thread_local! {
    static SERVICE: Cell<Option<Service>> = const { Cell::new(None) };
}

/// Makes every [`beat`] call `f` (once per process; later calls are ignored).
pub fn install(f: fn()) {
    let _ = BEAT.set(f);
}

/// Runs `body` with `service` called at every beat on this thread (the
/// service before it restored after, also when `body` unwinds).
pub fn with_service<R>(service: &dyn Fn(), body: impl FnOnce() -> R) -> R {
    struct Restore(Option<Service>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERVICE.with(|s| s.set(self.0));
        }
    }
    let short: *const (dyn Fn() + '_) = service;
    // SAFETY: only the lifetime is erased; the pointer is taken out of the
    // thread-local (`Restore`, dropped before this function returns or
    // unwinds) while `service` is still borrowed, and only this thread
    // reads it.
    let erased: Service = unsafe { std::mem::transmute(short) };
    let _restore = Restore(SERVICE.with(|s| s.replace(Some(erased))));
    body()
}

/// Says this rank is still making progress (and runs the scope's service).
pub fn beat() {
    if let Some(f) = BEAT.get() {
        f();
    }
    if let Some(service) = SERVICE.with(Cell::get) {
        // SAFETY: set by `with_service`, whose borrow is live while it is set.
        unsafe { (*service)() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_runs_at_each_beat_of_its_scope_only() {
        let n = Cell::new(0);
        let count = || n.set(n.get() + 1);
        beat();
        with_service(&count, || {
            beat();
            beat();
        });
        beat();
        assert_eq!(n.get(), 2);
    }
}

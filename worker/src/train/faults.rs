//! Fault injection for the tests, compiled in only with the cargo feature
//! `fault-injection` (`scripts/test.sh` builds with it; release builds
//! without it have nothing here but no-ops). Faults are asked for through
//! the environment of the worker under test:
//! - `VAE_FAULT_DESYNC_STEP=N`: after step N the last rank's parameters drift
//!   from the others' (what the replica check, `dist.check_every`, must catch).
//! - `VAE_FAULT_SLOW_CHECKPOINT_MS=N`: a checkpoint's write pauses N ms
//!   between its objects and its manifest.
//! - `VAE_FAULT_SLOW_RANK=R:MS`: rank R sleeps MS ms before every step.
//! - `VAE_FAULT_SLOW_PART_MS=N`: each part of a multipart upload waits N ms.
//! - `VAE_FAULT_SLOW_FETCH=R:MS`: rank R waits MS ms for each shard it reads.
//! - `VAE_FAULT_CONNECT_FAIL=R`: rank R fails just after MPI starts.
//! - `VAE_FAULT_SETUP_HANG=R`: rank R hangs in set-up, before MPI starts.
//! - `VAE_FAULT_VERSION=R:TEXT`: rank R claims another version (`agree.rs`).
use super::step::Trainer;
use super::TrainError;

/// Called after every step, with the step count.
#[cfg(feature = "fault-injection")]
pub fn after_step(t: &mut Trainer, step: u64) -> Result<(), TrainError> {
    use std::sync::OnceLock;
    static DESYNC: OnceLock<Option<u64>> = OnceLock::new();
    let desync = DESYNC.get_or_init(|| {
        std::env::var("VAE_FAULT_DESYNC_STEP")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    let comm = t.comm();
    if *desync == Some(step) && comm.rank() + 1 == comm.world_size() {
        let flat = &mut t.weights.params.flat;
        let _ = tch::no_grad(|| flat.f_add_scalar_(1e-3))
            .map_err(super::tensor_err("fault injection"))?;
    }
    Ok(())
}

/// Called before every step: `VAE_FAULT_SLOW_RANK=R:MS` makes rank R sleep
/// MS milliseconds before each step (a straggler the others wait for).
#[cfg(feature = "fault-injection")]
pub fn before_step(comm: &dyn crate::comm::Comm, _step: u64) {
    use std::sync::OnceLock;
    static SLOW: OnceLock<Option<(usize, u64)>> = OnceLock::new();
    let slow = SLOW.get_or_init(|| {
        let v = std::env::var("VAE_FAULT_SLOW_RANK").ok()?;
        let (r, ms) = v.split_once(':')?;
        Some((r.parse().ok()?, ms.parse().ok()?))
    });
    if let Some((r, ms)) = *slow {
        if comm.rank() == r {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}

/// Called before every step; without the feature, nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn before_step(_comm: &dyn crate::comm::Comm, _step: u64) {}

/// Called by the checkpoint writer between a checkpoint's objects and its
/// manifest: `VAE_FAULT_SLOW_CHECKPOINT_MS=N` makes it wait N ms there (a
/// slow bucket), so a test can kill the job in the middle of a write.
#[cfg(feature = "fault-injection")]
pub fn while_writing_checkpoint() {
    if let Some(ms) = std::env::var("VAE_FAULT_SLOW_CHECKPOINT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Before each part of a multipart upload: `VAE_FAULT_SLOW_PART_MS=N`
/// delays it N ms (a slow bucket), so a test can stop the process while an
/// upload is open.
#[cfg(feature = "fault-injection")]
pub fn slow_upload_part() -> impl std::future::Future<Output = ()> {
    let ms: u64 = std::env::var("VAE_FAULT_SLOW_PART_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_millis(ms))
}

/// Before each part of a multipart upload; without the feature, nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn slow_upload_part() -> impl std::future::Future<Output = ()> {
    std::future::ready(())
}

/// Called by the checkpoint writer; without the feature, nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn while_writing_checkpoint() {}

/// Called after every step; without the `fault-injection` feature, nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn after_step(_t: &mut Trainer, _step: u64) -> Result<(), TrainError> {
    Ok(())
}

/// `rank:value` from the environment variable `var`, when `rank` is this
/// process's (the launcher's rank).
#[cfg(feature = "fault-injection")]
fn for_this_rank(var: &str) -> Option<String> {
    let v = std::env::var(var).ok()?;
    let (r, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
    (r.parse::<usize>().ok()? == crate::comm::env_rank()).then(|| rest.to_string())
}

/// Before a shard is read: `VAE_FAULT_SLOW_FETCH=R:MS` (a slow bucket on one rank).
#[cfg(feature = "fault-injection")]
pub fn slow_fetch() {
    if let Some(ms) = for_this_rank("VAE_FAULT_SLOW_FETCH").and_then(|v| v.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Just after MPI starts: `VAE_FAULT_CONNECT_FAIL=R` fails rank R there.
#[cfg(feature = "fault-injection")]
pub fn connect() -> Result<(), String> {
    match for_this_rank("VAE_FAULT_CONNECT_FAIL") {
        Some(_) => Err("injected set-up failure (VAE_FAULT_CONNECT_FAIL)".into()),
        None => Ok(()),
    }
}

/// Early in set-up: `VAE_FAULT_SETUP_HANG=R` makes rank R hang there.
#[cfg(feature = "fault-injection")]
pub fn setup_hang() {
    if for_this_rank("VAE_FAULT_SETUP_HANG").is_some() {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// `VAE_FAULT_VERSION=R:TEXT`: the version rank R claims.
#[cfg(feature = "fault-injection")]
pub fn fault_version() -> Option<String> {
    for_this_rank("VAE_FAULT_VERSION")
}

/// Without the feature, nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn slow_fetch() {}

/// Without the feature, nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn connect() -> Result<(), String> {
    Ok(())
}

/// Without the feature, nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn setup_hang() {}

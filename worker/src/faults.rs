//! Fault injection for the tests: every hook, in one leaf module (it
//! imports nothing of the crate). Each hook does something only in a build
//! with the cargo feature `fault-injection` (`scripts/test.sh` builds with
//! it; elsewhere each is a no-op the compiler folds away), and only when
//! the worker under test is asked through its environment. [`HOOKS`] lists
//! them; adding one is a function here and a line there.
use std::sync::OnceLock;
use std::time::Duration;

/// Every hook: its environment variable and what it does.
pub const HOOKS: [(&str, &str); 13] = [
    ("VAE_FAULT_DESYNC_STEP", "N: after step N the last rank's parameters drift from the others' (what dist.check_every must catch)"),
    ("VAE_FAULT_SLOW_CHECKPOINT_MS", "N: a checkpoint's write pauses N ms between its objects and its manifest"),
    ("VAE_FAULT_SLOW_RANK", "R:MS: rank R sleeps MS ms before every step"),
    ("VAE_FAULT_SLOW_PART_MS", "N: each part of a multipart upload waits N ms"),
    ("VAE_FAULT_SLOW_FETCH", "R:MS: rank R waits MS ms for each shard it reads"),
    ("VAE_FAULT_CONNECT_FAIL", "R: rank R fails just after MPI starts"),
    ("VAE_FAULT_SETUP_HANG", "R: rank R hangs in set-up, before MPI starts"),
    ("VAE_FAULT_VERSION", "R:TEXT: rank R claims another version"),
    ("VAE_FAULT_RECORD_DRAWS", "PREFIX: each metric's draws are written to PREFIX-<metric>.json"),
    ("VAE_FAULT_DIVERGE_POINT", "NAME: the sweep point named NAME trains with optim.lr = 1e30, so its loss diverges"),
    ("VAE_FAULT_POINT_ERROR", "R:NAME: world rank R meets an error when it starts the sweep point named NAME (the other ranks of its group do not)"),
    ("VAE_FAULT_RECORD_VARIANT", "PATH: the first batch a data.variant makes (its samples, counter and pixels) is written to PATH"),
    ("VAE_FAULT_STOP_AT_END", "R: rank R stops itself (SIGSTOP) after the run, before MPI is finalised"),
];

/// Whether this build has the hooks.
const ON: bool = cfg!(feature = "fault-injection");

fn var(name: &str) -> Option<String> {
    ON.then(|| std::env::var(name).ok()).flatten()
}

fn number(name: &str) -> Option<u64> {
    var(name)?.parse().ok()
}

/// `rank:value` from the variable `name`, when `rank` is this process's
/// (the launcher's rank).
fn for_this_rank(name: &str) -> Option<String> {
    let v = var(name)?;
    let (r, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
    (r.parse::<usize>().ok()? == vae_proto::console::env_rank()).then(|| rest.to_string())
}

/// After step `step` on `rank` of `world`: how much to add to every
/// parameter (`VAE_FAULT_DESYNC_STEP`), if anything.
pub fn desync(step: u64, rank: usize, world: usize) -> Option<f64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    let at = *AT.get_or_init(|| number("VAE_FAULT_DESYNC_STEP"));
    (at == Some(step) && rank + 1 == world).then_some(1e-3)
}

/// After a run that ended well, before MPI is finalised: this rank
/// stops itself (`VAE_FAULT_STOP_AT_END`), as a process frozen at the very
/// end would.
pub fn stop_at_end() {
    if for_this_rank("VAE_FAULT_STOP_AT_END").is_some() {
        // SAFETY: raise has no preconditions.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

/// Whether sweep point `name` is the one made to diverge
/// (`VAE_FAULT_DIVERGE_POINT`).
pub fn diverging_point(name: &str) -> bool {
    var("VAE_FAULT_DIVERGE_POINT").is_some_and(|v| v == name)
}

/// Whether this rank meets an error at the start of sweep point `name`
/// (`VAE_FAULT_POINT_ERROR`), and which.
pub fn point_error(name: &str) -> Option<String> {
    (for_this_rank("VAE_FAULT_POINT_ERROR")? == name).then(|| {
        format!(
            "an injected error on world rank {}",
            vae_proto::console::env_rank()
        )
    })
}

/// Before every step on `rank` (`VAE_FAULT_SLOW_RANK`: a straggler).
pub fn slow_rank(rank: usize) {
    static SLOW: OnceLock<Option<(usize, u64)>> = OnceLock::new();
    let slow = SLOW.get_or_init(|| {
        let v = var("VAE_FAULT_SLOW_RANK")?;
        let (r, ms) = v.split_once(':')?;
        Some((r.parse().ok()?, ms.parse().ok()?))
    });
    if let Some((r, ms)) = *slow {
        if rank == r {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}

/// Between a checkpoint's objects and its manifest
/// (`VAE_FAULT_SLOW_CHECKPOINT_MS`: a slow bucket, to kill a job mid-write).
pub fn while_writing_checkpoint() {
    if let Some(ms) = number("VAE_FAULT_SLOW_CHECKPOINT_MS") {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Before each part of a multipart upload (`VAE_FAULT_SLOW_PART_MS`: a
/// slow bucket, to stop a process while an upload is open).
pub async fn slow_upload_part() {
    if let Some(ms) = number("VAE_FAULT_SLOW_PART_MS") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Before a shard is read (`VAE_FAULT_SLOW_FETCH`: a slow bucket on one rank).
pub fn slow_fetch() {
    if let Some(ms) = for_this_rank("VAE_FAULT_SLOW_FETCH").and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Just after MPI starts (`VAE_FAULT_CONNECT_FAIL`).
pub fn connect() -> Result<(), String> {
    match for_this_rank("VAE_FAULT_CONNECT_FAIL") {
        Some(_) => Err("injected set-up failure (VAE_FAULT_CONNECT_FAIL)".into()),
        None => Ok(()),
    }
}

/// Early in set-up, before MPI starts (`VAE_FAULT_SETUP_HANG`).
pub fn setup_hang() {
    if for_this_rank("VAE_FAULT_SETUP_HANG").is_some() {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// The version this rank claims instead of its own (`VAE_FAULT_VERSION`).
pub fn version() -> Option<String> {
    for_this_rank("VAE_FAULT_VERSION")
}

/// `VAE_FAULT_RECORD_VARIANT=PATH`: the first batch a dSprites variant
/// makes — the samples' indices, the counter and the pixels `[n, 3, H, W]`
/// — written to PATH (once per process), so a test can make the same
/// images with disentanglement_lib's own code.
pub fn record_variant(ids: &[u64], counter: u64, pixels: &[f32]) {
    if let Some(path) = var("VAE_FAULT_RECORD_VARIANT") {
        if !std::path::Path::new(&path).exists() {
            let v = serde_json::json!({ "ids": ids, "counter": counter, "pixels": pixels });
            let _ = std::fs::write(path, v.to_string());
        }
    }
}

/// `VAE_FAULT_RECORD_DRAWS=PREFIX`: each metric's draws — the factor index
/// each vote or point fixes, and each batch of factor combinations it
/// represents, and a sampled representation's noise, in order — written to `PREFIX-<metric>.json`, so a test can
/// serve the very same draws to disentanglement_lib's own functions on the
/// same encoder (`tests/python/dlib_served.py`).
pub mod draws {
    use std::sync::Mutex;

    static EVENTS: Mutex<Vec<serde_json::Value>> = Mutex::new(Vec::new());

    fn on() -> bool {
        super::var("VAE_FAULT_RECORD_DRAWS").is_some()
    }

    fn push(event: serde_json::Value) {
        if on() {
            if let Ok(mut e) = EVENTS.lock() {
                e.push(event);
            }
        }
    }

    /// A factor index chosen.
    pub fn pick(k: usize) {
        push(serde_json::json!({ "pick": k }));
    }

    /// A batch of factor combinations represented.
    pub fn batch(factors: &[Vec<usize>]) {
        push(serde_json::json!({ "batch": factors }));
    }

    /// The noise `ε` of a sampled representation, a row per sample.
    pub fn noise(rows: &[&[f32]]) {
        push(serde_json::json!({ "noise": rows }));
    }

    /// Writes what metric `name` drew, and starts afresh.
    pub fn finish(name: &str) {
        if let Some(prefix) = super::var("VAE_FAULT_RECORD_DRAWS") {
            if let Ok(mut e) = EVENTS.lock() {
                let events = serde_json::Value::Array(std::mem::take(&mut *e));
                let _ = std::fs::write(format!("{prefix}-{name}.json"), events.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every `VAE_FAULT_*` variable the crate reads is listed in `HOOKS`,
    /// and is read here only.
    #[test]
    fn every_hook_is_listed_and_lives_here() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut todo = vec![src.clone()];
        let mut read = std::collections::BTreeSet::new();
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for (i, _) in text.match_indices("\"VAE_FAULT_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                        .collect();
                    if name == "VAE_FAULT_" {
                        continue; // this test's own pattern
                    }
                    assert!(
                        path.ends_with("faults.rs"),
                        "{} reads {name}: hooks live in faults.rs",
                        path.display()
                    );
                    read.insert(name);
                }
            }
        }
        let listed: std::collections::BTreeSet<String> =
            super::HOOKS.iter().map(|(v, _)| v.to_string()).collect();
        assert_eq!(read, listed);
    }
}

//! What this node can give workers: `--nproc-per-node` and the GPUs seen.

/// What `--nproc-per-node` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nproc {
    Auto,
    Exactly(usize),
}

impl std::str::FromStr for Nproc {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Nproc::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Nproc::Exactly(n)),
            _ => Err(format!("expected a positive number or `auto`, got `{s}`")),
        }
    }
}

/// Devices this node can give workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Devices {
    pub gpus: usize,
    pub cores: usize,
}

/// Counts the GPUs this process may use: `CUDA_VISIBLE_DEVICES` when set,
/// else the `/dev/nvidiaN` device nodes.
pub fn detect_devices() -> Devices {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gpus = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(v) => v
            .split(',')
            .filter(|s| !s.trim().is_empty() && s.trim() != "-1")
            .count(),
        Err(_) => std::fs::read_dir("/dev")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.strip_prefix("nvidia")
                            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
                    })
                    .count()
            })
            .unwrap_or(0),
    };
    Devices { gpus, cores }
}

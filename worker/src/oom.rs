//! Out of memory: libtorch reports a failed allocation (CUDA's caching
//! allocator, or the CPU allocator) as an error that tch turns into a panic.
//! The panic hook asks [`line`] first, so the user reads one line naming the
//! rank, step and the config key that sets the size of what was being
//! allocated, not a backtrace.
use crate::watchdog::{self, Phase};

/// Whether libtorch's `message` is an allocation failure.
pub fn is_out_of_memory(message: &str) -> bool {
    [
        "CUDA out of memory",
        "out of memory",
        "not enough memory",
        "can't allocate memory",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// The config keys that size what `phase` allocates.
fn keys(phase: Phase) -> &'static str {
    match phase {
        Phase::Step => "lower train.batch_size (or the model's size)",
        Phase::Evaluation | Phase::Metrics => "lower train.eval_batch_size",
        Phase::SetUp => "the model (model.hidden_dim, model.conv_channels, model.latent_dim) or the data does not fit",
        Phase::Fetch => "lower storage.prefetch_shards or data.shuffle_buffer",
        Phase::Idle
        | Phase::Waiting
        | Phase::Agree
        | Phase::Checkpoint
        | Phase::Finished => "lower train.batch_size or train.eval_batch_size",
    }
}

/// One line for a panic `message` that is an allocation failure; `None`
/// for any other panic.
pub fn line(message: &str) -> Option<String> {
    if !is_out_of_memory(message) {
        return None;
    }
    let device = if message.contains("CUDA") {
        "CUDA"
    } else {
        "host"
    };
    let detail = allocation(message);
    Some(match watchdog::where_now() {
        Some((rank, step, phase)) => format!(
            "rank {rank}: {device} out of memory at step {step} in {}{detail}: {}",
            phase.describe(),
            keys(phase)
        ),
        None => format!(
            "{device} out of memory{detail}: lower train.batch_size / train.eval_batch_size or the model's size"
        ),
    })
}

/// " (tried to allocate X)" from libtorch's message, when it says.
fn allocation(message: &str) -> String {
    let lower = message.to_lowercase();
    let Some(at) = lower.find("tried to allocate ") else {
        return String::new();
    };
    let rest = &message[at + "tried to allocate ".len()..];
    let amount: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == ' ')
        .collect();
    let amount = amount
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    format!(" (tried to allocate {amount})")
}

/// The text of a panic's payload.
pub fn panic_text(info: &std::panic::PanicHookInfo<'_>) -> String {
    let p = info.payload();
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_and_host_allocation_failures_become_one_line_naming_a_key() {
        let cuda = "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.1 GiB\")";
        let l = line(cuda).unwrap();
        assert!(
            l.contains("CUDA out of memory") && l.contains("2.00 GiB"),
            "{l}"
        );
        assert!(l.contains("train.batch_size") && !l.contains('\n'), "{l}");
        let host = "Torch(\"[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate 3136000000000 bytes.\")";
        let l = line(host).unwrap();
        assert!(
            l.contains("host out of memory") && l.contains("3136000000000 bytes"),
            "{l}"
        );
        assert!(line("index out of range").is_none());
    }
}

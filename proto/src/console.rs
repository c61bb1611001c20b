//! The console of the launcher and the workers alike. Every line leaves in
//! one `write` call, so mpirun's `--tag-output` (which tags each write a
//! rank makes) tags it once, and credentials are taken out of it
//! ([`crate::redact`]). A reader that closes its end (`vae-launch … | head`)
//! ends the writing to that stream, not the program: later lines there are
//! dropped and the job goes on. [`bar_visible`] says whether a progress bar
//! would be seen at all; where it would not, callers print a line instead.
//! Also what the launch environment says: [`launched_by_mpi`], [`env_rank`].
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static OUT_CLOSED: AtomicBool = AtomicBool::new(false);
static ERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `line` and a newline to stdout in one piece, redacted.
pub fn out(line: &str) {
    put(&mut std::io::stdout().lock(), line, &OUT_CLOSED);
}

/// Writes `line` and a newline to stderr in one piece, redacted.
pub fn err(line: &str) {
    put(&mut std::io::stderr().lock(), line, &ERR_CLOSED);
}

/// Whether stdout's reader has gone (a closed pipe was met).
pub fn stdout_closed() -> bool {
    OUT_CLOSED.load(Ordering::Relaxed)
}

fn put(w: &mut dyn Write, line: &str, closed: &AtomicBool) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let mut text = crate::redact::redact(line);
    text.push('\n');
    if let Err(e) = w.write_all(text.as_bytes()).and_then(|()| w.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            closed.store(true, Ordering::Relaxed);
        }
    }
}

/// `println!` in one piece, redacted, and quiet on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::console::out(&format!($($arg)*)) };
}

/// `eprintln!` in one piece, redacted, and quiet on a closed pipe.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::console::err(&format!($($arg)*)) };
}

/// Whether this process was started by an MPI launcher (Open MPI, PMIx, PMI).
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// The rank an MPI launcher (Open MPI, PMIx, PMI, SLURM's srun) gave this
/// process in its environment, before MPI starts; 0 outside one.
pub fn env_rank() -> usize {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "PMI_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(0)
}

/// Whether a progress bar would be seen: it draws on stderr, which must be
/// a terminal, and not one an MPI launcher made (Open MPI gives each rank a
/// pseudo-terminal of its own and relays what it reads from it as lines).
pub fn bar_visible() -> bool {
    std::io::stderr().is_terminal() && !launched_by_mpi()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each `write` call separately.
    struct Calls(Vec<Vec<u8>>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_is_one_write_with_its_newline_and_no_credential() {
        let mut w = Calls(vec![]);
        let closed = AtomicBool::new(false);
        put(
            &mut w,
            &format!("metric {}: {:.3} s from https://u:pw@h/x", "mig", 0.25),
            &closed,
        );
        assert_eq!(w.0.len(), 1);
        let text = String::from_utf8(w.0[0].clone()).unwrap();
        assert_eq!(text, "metric mig: 0.250 s from https://[redacted]@h/x\n");
    }

    #[test]
    fn a_closed_pipe_stops_the_writing_and_does_not_panic() {
        let closed = AtomicBool::new(false);
        put(&mut Closed, "a", &closed);
        assert!(closed.load(Ordering::Relaxed));
        let mut w = Calls(vec![]);
        put(&mut w, "b", &closed);
        assert!(w.0.is_empty());
    }
}

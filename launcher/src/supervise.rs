//! Running and supervising a planned job: start `mpirun` (which starts the
//! workers), prefix each output line with its rank, forward signals (the
//! first SIGINT/SIGTERM becomes SIGUSR1, which mpirun passes to every worker:
//! finish the step, checkpoint, exit; a second one kills everything), and
//! when the job fails, clean up every process and start it again from the
//! latest checkpoint while restarts remain.
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use crate::plan::Plan;
use crate::procs;

/// Rewrites mpirun's `--tag-output` prefix `[job,rank]<stdout>:` as
/// `[rank N] ` (or `[rank N@host] ` when `host_of` knows the rank's host).
pub fn retag(line: &str, host_of: &dyn Fn(usize) -> Option<String>) -> String {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((tag, text)) = rest.split_once(">:") {
            if let Some((ids, _stream)) = tag.split_once("]<") {
                if let Some((_, rank)) = ids.split_once(',') {
                    return match rank.parse().ok().and_then(host_of) {
                        Some(h) => format!("[rank {rank}@{h}] {text}"),
                        None => format!("[rank {rank}] {text}"),
                    };
                }
            }
        }
    }
    line.to_string()
}

fn relay<R: std::io::Read + Send + 'static>(
    from: R,
    to_stderr: bool,
    hosts: (Vec<String>, usize),
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let host_of = |r: usize| hosts.0.get(r / hosts.1.max(1)).cloned();
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let line = retag(&line, &host_of);
            if to_stderr {
                let _ = writeln!(std::io::stderr(), "{line}");
            } else {
                let _ = writeln!(std::io::stdout(), "{line}");
            }
        }
    })
}

/// Signals received: 0 none, else the first signal's number; the count of
/// signals decides between a graceful and an immediate stop.
struct SignalState {
    first: AtomicI32,
    count: AtomicI32,
    mpirun: AtomicI32,
}

fn watch_signals(state: Arc<SignalState>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let n = state.count.fetch_add(1, Ordering::SeqCst);
            let pid = state.mpirun.load(Ordering::SeqCst);
            if n == 0 {
                state.first.store(sig, Ordering::SeqCst);
                eprintln!("[launcher] signal {sig}: asking the workers to checkpoint and stop (again to kill)");
                if pid > 0 {
                    procs::signal(pid, libc::SIGUSR1);
                }
            } else {
                eprintln!("[launcher] second signal: killing the job");
                procs::kill_all_descendants(None);
            }
        }
    });
    Ok(())
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

fn start(plan: &Plan, mpirun: &str, worker: &Path, restart: bool) -> std::io::Result<Child> {
    let mut cmd = plan.mpirun(mpirun, worker, restart);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn()
}

/// Runs the job with up to `max_restarts` restarts; returns the exit code.
pub fn run(plan: &Plan, mpirun: &str, worker: &Path, max_restarts: u32) -> anyhow::Result<i32> {
    procs::become_subreaper();
    let state = Arc::new(SignalState {
        first: AtomicI32::new(0),
        count: AtomicI32::new(0),
        mpirun: AtomicI32::new(0),
    });
    watch_signals(Arc::clone(&state))?;
    let mut attempt = 0;
    loop {
        let restart = attempt > 0;
        eprintln!(
            "[launcher] starting {} {} worker{}{}",
            plan.ranks(),
            if plan.gpus { "GPU" } else { "CPU" },
            if plan.ranks() == 1 { "" } else { "s" },
            if restart {
                " from the latest checkpoint (if there is one)"
            } else {
                ""
            }
        );
        let mut child = start(plan, mpirun, worker, restart)
            .map_err(|e| anyhow::anyhow!("cannot start {mpirun}: {e}"))?;
        state.mpirun.store(child.id() as i32, Ordering::SeqCst);
        let hosts = (plan.hosts.clone(), plan.nproc);
        let out = child.stdout.take().map(|s| relay(s, false, hosts.clone()));
        let err = child.stderr.take().map(|s| relay(s, true, hosts));
        let status = child.wait()?;
        state.mpirun.store(0, Ordering::SeqCst);
        // Whatever mpirun left behind goes now (and is reaped).
        procs::kill_all_descendants(None);
        for h in [out, err].into_iter().flatten() {
            let _ = h.join();
        }
        let code = exit_code(status);
        let sig = state.first.load(Ordering::SeqCst);
        if sig != 0 {
            eprintln!(
                "[launcher] stopped by signal {sig}; resume with the same command and --resume"
            );
            return Ok(if code == 0 { 128 + sig } else { code });
        }
        if code == 0 {
            return Ok(0);
        }
        if attempt >= max_restarts {
            eprintln!("[launcher] job failed with exit status {code}");
            return Ok(code);
        }
        attempt += 1;
        eprintln!(
            "[launcher] job failed with exit status {code}; restart {attempt} of {max_restarts}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::retag;

    #[test]
    fn retags_mpirun_output() {
        let none = |_| None;
        assert_eq!(retag("[1,0]<stdout>:epoch 1", &none), "[rank 0] epoch 1");
        assert_eq!(
            retag("[1,12]<stderr>:error: x", &none),
            "[rank 12] error: x"
        );
        assert_eq!(retag("plain line", &none), "plain line");
        let two = |r: usize| {
            Some(if r < 2 {
                "a".to_string()
            } else {
                "b".to_string()
            })
        };
        assert_eq!(retag("[1,3]<stdout>:hi", &two), "[rank 3@b] hi");
    }
}

//! Running and supervising a planned job: start `mpirun` (which starts the
//! workers), prefix each output line with its rank, forward signals (the
//! first SIGINT/SIGTERM becomes SIGUSR1, which mpirun passes to every worker:
//! finish the step, checkpoint, exit; a second one kills everything), and
//! when the job fails, clean up every process and start it again from the
//! latest checkpoint while restarts remain.
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

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

/// Ranks whose watchdog reported a stall in this attempt, with the line.
type Stalls = Arc<Mutex<BTreeMap<usize, String>>>;

/// The rank of a retagged line `[rank N…] …` that reports a stall.
fn stall_report(line: &str) -> Option<usize> {
    if !line.contains(" stalled at step ") {
        return None;
    }
    let rest = line.strip_prefix("[rank ")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

fn relay<R: std::io::Read + Send + 'static>(
    from: R,
    to_stderr: bool,
    hosts: (Vec<String>, usize),
    stalls: Stalls,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let host_of = |r: usize| hosts.0.get(r / hosts.1.max(1)).cloned();
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let line = retag(&line, &host_of);
            if let Some(rank) = stall_report(&line) {
                if let Ok(mut s) = stalls.lock() {
                    s.insert(rank, line.clone());
                }
            }
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

/// After a stall: which ranks said they waited, and which did not (the
/// stalled ones: a stopped or hung process cannot speak).
fn name_the_stalled(stalls: &Stalls, ranks: usize) {
    let Ok(reported) = stalls.lock() else { return };
    if reported.is_empty() {
        return;
    }
    let silent: Vec<String> = (0..ranks)
        .filter(|r| !reported.contains_key(r))
        .map(|r| r.to_string())
        .collect();
    let said: Vec<String> = reported.keys().map(|r| r.to_string()).collect();
    let culprit = if silent.is_empty() {
        "every rank reported it".to_string()
    } else {
        format!("rank {} did not report: the stalled one", silent.join(", "))
    };
    eprintln!(
        "[launcher] a stall: rank {} waited in vain ({}); {culprit}",
        said.join(", "),
        reported
            .values()
            .next()
            .and_then(|l| l.split(" stalled ").nth(1))
            .and_then(|l| l.split("; ending").next())
            .unwrap_or("")
    );
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
        let stalls: Stalls = Arc::default();
        let out =
            (child.stdout.take()).map(|s| relay(s, false, hosts.clone(), Arc::clone(&stalls)));
        let err = (child.stderr.take()).map(|s| relay(s, true, hosts, Arc::clone(&stalls)));
        let status = child.wait()?;
        state.mpirun.store(0, Ordering::SeqCst);
        // Whatever mpirun left behind goes now (and is reaped).
        procs::kill_all_descendants(None);
        for h in [out, err].into_iter().flatten() {
            let _ = h.join();
        }
        let code = exit_code(status);
        name_the_stalled(&stalls, plan.ranks());
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
    fn stall_reports_name_their_rank() {
        use super::stall_report;
        let l = "[rank 3] vae-worker: rank 3 on vm stalled at step 57: no progress";
        assert_eq!(stall_report(l), Some(3));
        assert_eq!(
            stall_report("[rank 2@10.0.0.2] vae-worker: rank 2 on b stalled at step 1: x"),
            Some(2)
        );
        assert_eq!(stall_report("[rank 1] epoch 1"), None);
    }

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

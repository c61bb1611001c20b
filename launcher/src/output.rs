//! The job's output on the launcher's console: mpirun's `--tag-output`
//! lines read from its pipes, retagged `[rank N] ` (with the host when the
//! job spans hosts), credentials taken out, each written whole; and what
//! the supervisor learns from them ([`Said`]: stalls, failed ranks, a
//! stop). An error that every rank reports alike is shown once, and Open
//! MPI's `MPI_ABORT` banner (the workers abort the job after saying why)
//! is left out, so a failure reads as one line.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::sync::{mpsc, Arc, Mutex};

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

/// What the output of one attempt said: the ranks whose watchdog reported
/// a stall (with the line), the ranks mpirun named as the ones that failed,
/// and whether the workers stopped on a request (a checkpoint written).
#[derive(Default)]
pub struct Said {
    pub stalls: BTreeMap<usize, String>,
    pub failed: BTreeSet<usize>,
    pub stopped: bool,
    /// Worker errors shown, without their rank (each is shown once).
    pub errors: BTreeSet<String>,
    /// Whether mpirun said that one of its daemons (`orted`) failed to start
    /// or was lost.
    pub daemon_failed: bool,
    /// mpirun's own lines (not a rank's), at most [`KEPT_LINES`]: the
    /// remote agent's errors and mpirun's banners, which name the host.
    mpirun_lines: Vec<String>,
    /// When rank 0 said the run is done (`done: step …`, `sweep done: …`).
    pub done_at: Option<std::time::Instant>,
}

/// How many of mpirun's own lines an attempt keeps.
const KEPT_LINES: usize = 400;

/// What Open MPI (ORTE, PRRTE) says when a daemon fails to start or is lost.
const DAEMON_FAILED: [&str; 4] = [
    "unable to reliably start one or more daemons",
    "lost communication with a remote daemon",
    "daemon has unexpectedly failed",
    "daemon did not report back when launched",
];

/// Lines of mpirun's banners that name a host that is not the failed one.
const NOT_THE_FAILED_HOST: [&str; 5] = [
    "my node:",
    "target node:",
    "Local host:",
    "HNP daemon",
    "mpirun was unable",
];

pub type Attempt = Arc<Mutex<Said>>;

/// The rank mpirun names as a failed process: `mpirun noticed that process
/// rank N with PID …` or `Process name: [[job,vpid],N]`.
fn failed_rank(line: &str) -> Option<usize> {
    let digits = |s: &str| -> Option<usize> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    if let Some((_, rest)) = line.split_once("noticed that process rank ") {
        return digits(rest);
    }
    let rest = line.trim().strip_prefix("Process name: [[")?;
    digits(rest.split_once("],")?.1)
}

/// The rank of a retagged line `[rank N…] …` that reports a stall.
fn stall_report(line: &str) -> Option<usize> {
    if !line.contains(" stalled at step ") {
        return None;
    }
    let rest = line.strip_prefix("[rank ")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Copies `from` line by line to the launcher's stdout or stderr, retagged
/// and redacted; says `done` when the pipe closes.
pub fn relay<R: std::io::Read + Send + 'static>(
    from: R,
    to_stderr: bool,
    rank_hosts: Vec<String>,
    said: Attempt,
    done: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let host_of = |r: usize| rank_hosts.get(r).cloned();
        let mut banner = Banner::default();
        let mut forwarded = false;
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            // mpirun says so each time a stop request is repeated: once is enough.
            if line.starts_with("mpirun: Forwarding signal")
                && std::mem::replace(&mut forwarded, true)
            {
                continue;
            }
            for line in banner.feed(line) {
                let line = vae_proto::redact::redact(&retag(&line, &host_of));
                if let Ok(mut s) = said.lock() {
                    if !s.take(&line) {
                        continue;
                    }
                }
                match to_stderr {
                    true => vae_proto::console::err(&line),
                    false => vae_proto::console::out(&line),
                }
            }
        }
        let _ = done.send(());
    });
}

impl Said {
    /// Learns from a retagged `line`; whether to show it (an error another
    /// rank already reported is not shown again).
    fn take(&mut self, line: &str) -> bool {
        if let Some(rank) = stall_report(line) {
            self.stalls.insert(rank, line.to_string());
        }
        if let Some(rank) = failed_rank(line) {
            self.failed.insert(rank);
        }
        self.stopped |= line.contains("stopped by a signal at step");
        if self.done_at.is_none() && rank0_done(line) {
            self.done_at = Some(std::time::Instant::now());
        }
        if !line.starts_with("[rank ") {
            self.daemon_failed |= DAEMON_FAILED.iter().any(|d| line.contains(d));
            if self.mpirun_lines.len() < KEPT_LINES {
                self.mpirun_lines.push(line.to_string());
            }
        }
        match worker_error(line) {
            Some(text) => self.errors.insert(text),
            None => true,
        }
    }
}

impl Said {
    /// When a daemon failed: the hosts among `hosts` that mpirun's own
    /// lines name (the remote agent's error, `ssh: connect to host H …`,
    /// `user@H: Permission denied`; ORTE's `Remote daemon: … on node H`),
    /// leaving out the lines that name the local or a healthy node.
    pub fn daemon_hosts(&self, hosts: &[String]) -> BTreeSet<String> {
        if !self.daemon_failed {
            return BTreeSet::new();
        }
        self.mpirun_lines
            .iter()
            .filter(|l| !NOT_THE_FAILED_HOST.iter().any(|n| l.contains(n)))
            .flat_map(|l| hosts.iter().filter(|h| names_host(l, h)))
            .cloned()
            .collect()
    }
}

/// Whether `line` holds `host` as a whole word (not inside a longer name).
fn names_host(line: &str, host: &str) -> bool {
    let part_of_name =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    line.match_indices(host).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + host.len()..].chars().next();
        // A name's last dot (end of a sentence) is not part of it.
        let after = after.filter(|&c| {
            c != '.' || line[at + host.len() + 1..].starts_with(|c: char| c.is_ascii_alphanumeric())
        });
        !part_of_name(before) && !part_of_name(after)
    })
}

/// Whether `line` is rank 0's last line of a run that ended well.
fn rank0_done(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("[rank 0") else {
        return false;
    };
    let Some((tag, text)) = rest.split_once("] ") else {
        return false;
    };
    (tag.is_empty() || tag.starts_with('@'))
        && (text.starts_with("done: step ") || text.starts_with("sweep done: "))
}

/// The text of a worker's error line `[rank N…] vae-worker: error: rank N: …`
/// without its ranks (the same failure on every rank reads alike).
fn worker_error(line: &str) -> Option<String> {
    let (_, text) = line.split_once("vae-worker: error: ")?;
    let text = match text.strip_prefix("rank ") {
        Some(rest) => rest.split_once(": ").map_or(text, |(_, t)| t),
        None => text,
    };
    Some(text.to_string())
}

/// Leaves out Open MPI's `MPI_ABORT` banner (a block between lines of
/// dashes that starts "MPI_ABORT was invoked") and its "N more processes
/// have sent help message … mpi-abort" follow-ups: the worker that aborted
/// has said why in its own line.
#[derive(Default)]
struct Banner {
    /// A line of dashes waiting for the next line to tell what it opens.
    held: Option<String>,
    inside: bool,
}

fn dashes(line: &str) -> bool {
    line.len() > 20 && line.bytes().all(|b| b == b'-')
}

impl Banner {
    /// The lines to show for the next `line` read.
    fn feed(&mut self, line: String) -> Vec<String> {
        if self.inside {
            self.inside = !dashes(&line);
            return vec![];
        }
        if let Some(held) = self.held.take() {
            if line.starts_with("MPI_ABORT was invoked") {
                self.inside = true;
                return vec![];
            }
            let mut out = vec![held];
            out.extend(self.feed(line));
            return out;
        }
        if dashes(&line) {
            self.held = Some(line);
            return vec![];
        }
        let follow_up = (line.contains("sent help message") && line.contains("mpi-abort"))
            || line.contains("\"orte_base_help_aggregate\" to 0");
        match follow_up {
            true => vec![],
            false => vec![line],
        }
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
    fn a_failed_daemon_blames_the_host_mpirun_s_lines_name() {
        // What Open MPI 4.1 printed here when the agent failed for hostb.
        let text = "ssh: connect to host hostb port 22: Connection refused
--------------------------------------------------------------------------
ORTE was unable to reliably start one or more daemons.
This usually is caused by:
--------------------------------------------------------------------------
ORTE does not know how to route a message to the specified daemon
located on the indicated node:

  my node:   vm
  target node:  hosta
--------------------------------------------------------------------------
[rank 0@hosta] epoch 1 mentions hostb";
        let mut said = super::Said::default();
        for l in text.lines() {
            said.take(l);
        }
        let hosts = ["hosta".to_string(), "hostb".to_string(), "vm".to_string()];
        assert_eq!(said.daemon_hosts(&hosts), ["hostb".to_string()].into());
        let mut lost = super::Said::default();
        for l in [
            "ORTE has lost communication with a remote daemon.",
            "  HNP daemon   : [[41397,0],0] on node hosta",
            "  Remote daemon: [[41397,0],1] on node hostb.",
        ] {
            lost.take(l);
        }
        assert_eq!(lost.daemon_hosts(&hosts), ["hostb".to_string()].into());
        let mut fine = super::Said::default();
        fine.take("ssh: connect to host hostb port 22: Connection refused");
        assert!(fine.daemon_hosts(&hosts).is_empty(), "no daemon failed");
    }

    #[test]
    fn rank_0_s_last_line_is_known() {
        use super::rank0_done;
        assert!(rank0_done("[rank 0] done: step 300, test loss 1.0"));
        assert!(rank0_done(
            "[rank 0@node1] sweep done: 4 points, results in r"
        ));
        assert!(!rank0_done("[rank 1] done: step 300"));
        assert!(!rank0_done("[rank 10] done: step 300"));
        assert!(!rank0_done("[rank 0] epoch 1 done: step"));
    }

    #[test]
    fn mpirun_s_failed_process_lines_name_their_rank() {
        use super::failed_rank;
        let l =
            "mpirun noticed that process rank 2 with PID 0 on node vm exited on signal 9 (Killed).";
        assert_eq!(failed_rank(l), Some(2));
        assert_eq!(failed_rank("  Process name: [[4242,1],3]"), Some(3));
        assert_eq!(failed_rank("[rank 1] epoch 1"), None);
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

    #[test]
    fn the_mpi_abort_banner_is_left_out_and_other_blocks_kept() {
        let text = "[rank 0] vae-worker: error: rank 0: no dataset at x
--------------------------------------------------------------------------
MPI_ABORT was invoked on rank 0 in communicator MPI_COMM_WORLD
with errorcode 1.

NOTE: invoking MPI_ABORT causes Open MPI to kill all MPI processes.
--------------------------------------------------------------------------
[vm:16801] 1 more process has sent help message help-mpi-api.txt / mpi-abort
[vm:16801] Set MCA parameter \"orte_base_help_aggregate\" to 0 to see all help / error messages
--------------------------------------------------------------------------
Primary job  terminated normally, but 1 process returned
--------------------------------------------------------------------------
done";
        let mut b = super::Banner::default();
        let shown: Vec<String> = text.lines().flat_map(|l| b.feed(l.to_string())).collect();
        let dash = "-".repeat(74);
        assert_eq!(
            shown,
            [
                "[rank 0] vae-worker: error: rank 0: no dataset at x",
                dash.as_str(),
                "Primary job  terminated normally, but 1 process returned",
                dash.as_str(),
                "done"
            ]
        );
    }

    #[test]
    fn an_error_every_rank_reports_alike_is_shown_once() {
        let mut said = super::Said::default();
        assert!(said.take("[rank 0] vae-worker: error: rank 0: no dataset at s3://b/x"));
        assert!(!said.take("[rank 1] vae-worker: error: rank 1: no dataset at s3://b/x"));
        assert!(said.take("[rank 1] vae-worker: error: rank 1: out of memory"));
        assert!(said.take("[rank 1] epoch 1"));
        assert!(said.take("[rank 1] epoch 1"));
    }
}

//! Elastic hosts (`--min-hosts K`, `--host-discovery SCRIPT`): which hosts
//! a job runs on from one attempt to the next. After a failed attempt a host
//! is dropped when its remote agent (mpirun's `plm_rsh_agent`, `ssh` by
//! default) does not reach it within [`PROBE_TIMEOUT`], or when its workers
//! failed in two attempts in a row (Horovod's blacklist); the job goes on
//! while at least K hosts remain. A discovery script (Horovod's convention:
//! `host:slots` lines) is polled every [`POLL`]; a host it lists that is not
//! in the job and answers makes the job grow at its next checkpoint.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::PlanError;
use crate::hosts::{check_name, slot_count, HostSpec, MAX_SLOTS};

/// How long a host has to answer its remote agent.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the discovery script runs while a job runs.
pub const POLL: Duration = Duration::from_secs(3);
/// How long the discovery script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Failed attempts in a row after which a host is dropped though it answers.
pub const STRIKES: u32 = 2;

/// What `--min-hosts` and `--host-discovery` asked for.
#[derive(Clone, Debug)]
pub struct Elastic {
    pub min_hosts: usize,
    pub discovery: Option<PathBuf>,
    /// The remote agent's command (e.g. `ssh` or `ssh -x`), called as
    /// `AGENT HOST true` (`ssh … -- HOST true` for ssh).
    pub agent: Vec<String>,
}

/// The hosts of a job and their record across attempts.
#[derive(Debug)]
pub struct Members {
    /// Hosts in the job now, in rank order.
    pub active: Vec<HostSpec>,
    /// Consecutive failed attempts in which each host's workers failed.
    strikes: BTreeMap<String, u32>,
    /// Hosts dropped for failing [`STRIKES`] times in a row: not taken back.
    banned: BTreeSet<String>,
    /// Hosts lost during this job (for the message when too few are left).
    pub lost: BTreeSet<String>,
}

impl Elastic {
    /// Checks the request before anything starts: the discovery script runs
    /// and its output parses; `--min-hosts` is not above the hosts there are.
    /// Returns the hosts to start on.
    pub fn initial_hosts(&self, given: Vec<HostSpec>) -> Result<Vec<HostSpec>, PlanError> {
        let hosts = match &self.discovery {
            Some(script) => {
                check_executable(script)?;
                discover(script)?
            }
            None => given,
        };
        if self.min_hosts > hosts.len() {
            let whence = match &self.discovery {
                Some(s) => format!("{} lists", s.display()),
                None => "the job is given".to_string(),
            };
            return Err(PlanError::Usage(format!(
                "--min-hosts {}: {whence} only {} host{}",
                self.min_hosts,
                hosts.len(),
                if hosts.len() == 1 { "" } else { "s" }
            )));
        }
        Ok(hosts)
    }

    /// Whether `host` answers its remote agent within [`PROBE_TIMEOUT`].
    pub fn answers(&self, host: &str) -> bool {
        let Some((prog, args)) = self.agent.split_first() else {
            return false;
        };
        if check_name(host).is_err() {
            return false;
        }
        // ssh takes what follows `--` as the host, never as an option.
        let is_ssh = Path::new(prog).file_name().is_some_and(|n| n == "ssh");
        let child = Command::new(prog)
            .args(args)
            .args(is_ssh.then_some("--"))
            .args([host, "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else { return false };
        let deadline = Instant::now() + PROBE_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }
}

/// The remote agent mpirun will use: `--mca plm_rsh_agent X` among the
/// extra mpirun arguments, else `OMPI_MCA_plm_rsh_agent`, else `ssh`.
pub fn rsh_agent(mpirun_args: &[String]) -> Vec<String> {
    let from_args = mpirun_args
        .windows(3)
        .find(|w| w[0] == "--mca" && w[1] == "plm_rsh_agent")
        .map(|w| w[2].clone());
    let agent = from_args
        .or_else(|| std::env::var("OMPI_MCA_plm_rsh_agent").ok())
        .unwrap_or_else(|| "ssh".into());
    let mut words: Vec<String> = agent.split_whitespace().map(String::from).collect();
    if words.first().is_some_and(|w| w == "ssh") {
        words.extend(["-o".into(), "BatchMode=yes".into()]);
    }
    words
}

fn check_executable(script: &Path) -> Result<(), PlanError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = script.display();
    let meta = std::fs::metadata(script)
        .map_err(|e| PlanError::Usage(format!("--host-discovery {shown}: {e}")))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(PlanError::Usage(format!(
            "--host-discovery {shown}: not an executable file"
        )));
    }
    Ok(())
}

/// The most output a discovery script may print: 1 MiB (tens of thousands
/// of hosts).
const MAX_OUTPUT: u64 = 1 << 20;

/// Runs the discovery script in a process group of its own and parses its
/// `host[:slots]` lines. Its output is read up to [`MAX_OUTPUT`] and for at
/// most [`SCRIPT_TIMEOUT`]; when it ends (or overruns either), its whole
/// group is killed, so a background child holding its output blocks nothing.
pub fn discover(script: &Path) -> Result<Vec<HostSpec>, PlanError> {
    use std::os::unix::process::CommandExt;
    let shown = script.display();
    let fail = |m: String| PlanError::Usage(format!("--host-discovery {shown}: {m}"));
    let mut child = Command::new(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let out = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(o) = out {
            use std::io::Read;
            let _ = o.take(MAX_OUTPUT + 1).read_to_end(&mut bytes);
        }
        let _ = tx.send(bytes);
    });
    let group = child.id() as libc::pid_t;
    let kill_group = || {
        // SAFETY: killpg on the group the script leads; no memory is touched.
        unsafe { libc::killpg(group, libc::SIGKILL) };
    };
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => break None,
        }
    };
    kill_group();
    let _ = child.kill();
    let _ = child.wait();
    let Some(status) = status else {
        return Err(fail(format!(
            "did not finish within {} s",
            SCRIPT_TIMEOUT.as_secs()
        )));
    };
    let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    let bytes = rx
        .recv_timeout(wait)
        .map_err(|_| fail("its output was not closed after it ended".into()))?;
    if bytes.len() as u64 > MAX_OUTPUT {
        return Err(fail(format!("printed more than {MAX_OUTPUT} bytes")));
    }
    if !status.success() {
        return Err(fail(format!("exited with {status}")));
    }
    parse_discovered(&String::from_utf8_lossy(&bytes)).map_err(fail)
}

/// `host:slots` (or `host`) per line; blank lines and `#` comments skipped.
pub fn parse_discovered(text: &str) -> Result<Vec<HostSpec>, String> {
    let mut hosts: Vec<HostSpec> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (name, slots) = match line.rsplit_once(':') {
            Some((name, n)) if !name.ends_with(':') => {
                let slots = slot_count(n).ok_or_else(|| {
                    format!(
                        "line {}: `{}`: slots `{}` is not a number from 1 to {MAX_SLOTS}",
                        i + 1,
                        line.escape_debug(),
                        n.escape_debug()
                    )
                })?;
                (name, Some(slots))
            }
            _ => (line, None),
        };
        check_name(name).map_err(|e| {
            format!(
                "line {}: `{}` is not `host:slots` ({e})",
                i + 1,
                line.escape_debug()
            )
        })?;
        if hosts.iter().any(|h| h.name == name) {
            return Err(format!("line {}: host `{name}` listed twice", i + 1));
        }
        hosts.push(HostSpec {
            name: name.to_string(),
            slots,
        });
    }
    if hosts.is_empty() {
        return Err("lists no host".into());
    }
    Ok(hosts)
}

impl Members {
    pub fn new(active: Vec<HostSpec>) -> Members {
        Members {
            active,
            strikes: BTreeMap::new(),
            banned: BTreeSet::new(),
            lost: BTreeSet::new(),
        }
    }

    /// After a failed attempt in which the workers of `blamed` hosts failed:
    /// counts strikes, and drops hosts with [`STRIKES`] in a row and hosts
    /// that do not answer. Says why for each; returns whether any was dropped.
    pub fn after_failure(&mut self, e: &Elastic, blamed: &BTreeSet<String>) -> bool {
        for h in &self.active {
            let s = self.strikes.entry(h.name.clone()).or_default();
            *s = if blamed.contains(&h.name) { *s + 1 } else { 0 };
        }
        let before = self.active.len();
        let mut kept = Vec::new();
        for h in std::mem::take(&mut self.active) {
            let strikes = self.strikes.get(&h.name).copied().unwrap_or(0);
            if strikes >= STRIKES {
                vae_proto::errln!("[launcher] dropping host {}: its workers failed in {strikes} attempts in a row", h.name);
                self.banned.insert(h.name.clone());
                self.lost.insert(h.name.clone());
            } else if !e.answers(&h.name) {
                vae_proto::errln!(
                    "[launcher] dropping host {}: {} did not reach it ({} s allowed)",
                    h.name,
                    e.agent.join(" "),
                    PROBE_TIMEOUT.as_secs()
                );
                self.lost.insert(h.name.clone());
            } else {
                kept.push(h);
            }
        }
        self.active = kept;
        self.active.len() < before
    }

    /// Hosts `discovered` lists that are not in the job, not banned, and answer.
    pub fn newcomers(&self, e: &Elastic, discovered: &[HostSpec]) -> Vec<HostSpec> {
        discovered
            .iter()
            .filter(|h| !self.active.iter().any(|a| a.name == h.name))
            .filter(|h| !self.banned.contains(&h.name))
            .filter(|h| e.answers(&h.name))
            .cloned()
            .collect()
    }

    /// Takes `hosts` into the job (they are no longer lost).
    pub fn add(&mut self, hosts: Vec<HostSpec>) {
        for h in hosts {
            self.lost.remove(&h.name);
            self.strikes.remove(&h.name);
            self.active.push(h);
        }
    }

    /// Hosts the discovery script no longer lists leave the job.
    pub fn keep_listed(&mut self, discovered: &[HostSpec]) {
        let (kept, gone): (Vec<HostSpec>, Vec<HostSpec>) = std::mem::take(&mut self.active)
            .into_iter()
            .partition(|h| discovered.iter().any(|d| d.name == h.name));
        for h in gone {
            vae_proto::errln!(
                "[launcher] host {} is no longer listed by the discovery script; leaving it out",
                h.name
            );
            self.lost.insert(h.name);
        }
        self.active = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_output_parses_or_names_the_line() {
        let h = parse_discovered("# hosts\na:2\n\nb\n").unwrap();
        assert_eq!(
            h[0],
            HostSpec {
                name: "a".into(),
                slots: Some(2)
            }
        );
        assert_eq!(
            h[1],
            HostSpec {
                name: "b".into(),
                slots: None
            }
        );
        for (text, what) in [
            ("a:x\n", "line 1"),
            ("a:2\nb:0\n", "line 2"),
            ("a b c\n", "line 1"),
            ("a\na\n", "twice"),
            ("\n", "no host"),
        ] {
            let e = parse_discovered(text).unwrap_err();
            assert!(e.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn the_agent_is_mpirun_s() {
        let a = |v: &[&str]| rsh_agent(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&["--mca", "plm_rsh_agent", "/x/agent"]), ["/x/agent"]);
        if std::env::var_os("OMPI_MCA_plm_rsh_agent").is_none() {
            assert_eq!(a(&[]), ["ssh", "-o", "BatchMode=yes"]);
        }
    }

    #[test]
    fn a_host_failing_twice_in_a_row_is_dropped_though_it_answers() {
        let e = Elastic {
            min_hosts: 1,
            discovery: None,
            agent: vec!["true".into()],
        };
        let host = |n: &str| HostSpec {
            name: n.into(),
            slots: Some(1),
        };
        let mut m = Members::new(vec![host("a"), host("b")]);
        let b: BTreeSet<String> = ["b".to_string()].into();
        assert!(!m.after_failure(&e, &b));
        assert!(!m.after_failure(&e, &BTreeSet::new()), "not in a row");
        assert!(!m.after_failure(&e, &b));
        assert!(m.after_failure(&e, &b));
        assert_eq!(m.active, [host("a")]);
        assert!(
            m.newcomers(&e, &[host("a"), host("b")]).is_empty(),
            "banned"
        );
        let unreachable = Elastic {
            agent: vec!["false".into()],
            ..e
        };
        assert!(m.after_failure(&unreachable, &BTreeSet::new()));
        assert!(m.active.is_empty() && m.lost.contains("a"));
    }

    use proptest::prelude::*;

    proptest! {
        /// A discovery script's output, mutated: hosts that are all safe
        /// names with 1 to 4096 slots, or one error line.
        #[test]
        fn prop_mutated_discovery_output_gives_safe_hosts_or_an_error(
            text in vae_proto::fuzz::mutated_text("# hosts\nnode01:4\nnode02\n10.0.0.3:2\n[fe80::1]:1\n")
        ) {
            match parse_discovered(&text) {
                Ok(hosts) => {
                    for h in hosts {
                        prop_assert!(crate::hosts::check_name(&h.name).is_ok(), "{:?}", h);
                        prop_assert!(h.slots.is_none_or(|s| (1..=MAX_SLOTS).contains(&s)));
                    }
                }
                Err(e) => prop_assert!(!e.contains('\n'), "{}", e),
            }
        }
    }
}

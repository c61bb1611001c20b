//! Elastic hosts (`--min-hosts K`, `--host-discovery SCRIPT`, `--host-cool-down
//! S`): the request, the probe of a host through its remote agent (mpirun's
//! `plm_rsh_agent`, `ssh` by default; many hosts probed at once), and the
//! discovery script (Horovod's convention: `host:slots` lines), polled every
//! [`POLL`] and run with a deadline, an output cap and its whole process
//! group killed. Which hosts a job keeps from one attempt to the next is
//! [`crate::members`].
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
/// How many hosts are probed at the same time.
const PROBES_AT_ONCE: usize = 64;

/// What `--min-hosts` and `--host-discovery` asked for.
#[derive(Clone, Debug)]
pub struct Elastic {
    pub min_hosts: usize,
    pub discovery: Option<PathBuf>,
    /// The remote agent's command (e.g. `ssh` or `ssh -x`), called as
    /// `AGENT HOST true` (`ssh … -- HOST true` for ssh).
    pub agent: Vec<String>,
    /// How long a dropped host rests before it may join again (doubled at
    /// each drop of the same host, up to 16 times).
    pub cool_down: Duration,
}

impl Elastic {
    /// Checks the request before anything starts: the discovery script runs
    /// and its output parses; `--min-hosts` is not above the hosts there are.
    /// Returns the hosts to start on.
    pub fn initial_hosts(&self, given: Vec<HostSpec>) -> Result<Vec<HostSpec>, PlanError> {
        let hosts = match &self.discovery {
            Some(script) => {
                check_executable(script)?;
                discover(script, None)?
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

impl Elastic {
    /// Which of `hosts` answer, probed at the same time (at most
    /// [`PROBES_AT_ONCE`] together): one slow host costs one
    /// [`PROBE_TIMEOUT`], not one each.
    pub fn answering(&self, hosts: &[&str]) -> Vec<bool> {
        let mut answers = Vec::with_capacity(hosts.len());
        for chunk in hosts.chunks(PROBES_AT_ONCE) {
            std::thread::scope(|s| {
                let probes: Vec<_> = chunk.iter().map(|h| s.spawn(|| self.answers(h))).collect();
                answers.extend(probes.into_iter().map(|p| p.join().unwrap_or(false)));
            });
        }
        answers
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
/// most [`SCRIPT_TIMEOUT`]; when it ends (or overruns either, or `cancel`
/// rises), its whole group is killed, so a background child holding its
/// output blocks nothing.
pub fn discover(script: &Path, cancel: Option<&AtomicBool>) -> Result<Vec<HostSpec>, PlanError> {
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
            Ok(Some(s)) => break Ok(s),
            Ok(None) if cancel.is_some_and(|c| c.load(Ordering::SeqCst)) => {
                break Err("stopped: the job's attempt ended".to_string())
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                break Err(format!(
                    "did not finish within {} s",
                    SCRIPT_TIMEOUT.as_secs()
                ))
            }
        }
    };
    kill_group();
    let _ = child.kill();
    let _ = child.wait();
    let status = status.map_err(fail)?;
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

//! Which hosts an elastic job runs on from one attempt to the next (Horovod's
//! blacklist with a cool-down). After a failed attempt a host gets a strike
//! when its workers failed, when its MPI daemon failed (mpirun's output
//! names it), or when it no longer answers its remote agent; a host that
//! does not answer leaves the job and rests for `--host-cool-down` (doubled
//! at each drop) before it may join again, keeping its strikes; one with
//! [`STRIKES`] in a row is dropped for good. A failed attempt that does not
//! blame a host, or a stop that all workers made cleanly, clears its
//! strikes. So a host that flaps (answers, fails, answers) is dropped by its
//! second failure instead of joining each time it answers.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::elastic::{Elastic, PROBE_TIMEOUT, STRIKES};
use crate::hosts::HostSpec;

/// The hosts of a job and their record across attempts.
#[derive(Clone, Debug)]
pub struct Members {
    /// Hosts in the job now, in rank order.
    pub active: Vec<HostSpec>,
    /// Consecutive failed attempts in which each host failed (kept while a
    /// host is out of the job).
    strikes: BTreeMap<String, u32>,
    /// Hosts dropped for failing [`STRIKES`] times in a row: not taken back.
    banned: BTreeSet<String>,
    /// Hosts dropped for not answering: until when they rest, and how many
    /// times they were dropped.
    resting: BTreeMap<String, (Instant, u32)>,
    /// Hosts lost during this job (for the message when too few are left).
    pub lost: BTreeSet<String>,
}

impl Members {
    pub fn new(active: Vec<HostSpec>) -> Members {
        Members {
            active,
            strikes: BTreeMap::new(),
            banned: BTreeSet::new(),
            resting: BTreeMap::new(),
            lost: BTreeSet::new(),
        }
    }

    /// After a failed attempt in which the workers or daemons of `blamed`
    /// hosts failed: counts strikes (a host that does not answer gets one
    /// too), drops hosts with [`STRIKES`] in a row for good and hosts that
    /// do not answer for a cool-down. Says why for each; returns whether
    /// any was dropped.
    pub fn after_failure(&mut self, e: &Elastic, blamed: &BTreeSet<String>) -> bool {
        let names: Vec<&str> = self.active.iter().map(|h| h.name.as_str()).collect();
        let answers = e.answering(&names);
        let before = self.active.len();
        let mut kept = Vec::new();
        for (h, answers) in std::mem::take(&mut self.active).into_iter().zip(answers) {
            let s = self.strikes.entry(h.name.clone()).or_default();
            *s = if blamed.contains(&h.name) || !answers {
                *s + 1
            } else {
                0
            };
            let strikes = *s;
            if strikes >= STRIKES {
                vae_proto::errln!(
                    "[launcher] dropping host {}: it failed in {strikes} attempts in a row (its workers, its MPI daemon, or its answer)",
                    h.name
                );
                self.banned.insert(h.name.clone());
                self.lost.insert(h.name.clone());
            } else if !answers {
                let rest = self.rest(&h.name, e);
                vae_proto::errln!(
                    "[launcher] dropping host {}: {} did not reach it ({} s allowed); it may join again in {} s",
                    h.name,
                    e.agent.join(" "),
                    PROBE_TIMEOUT.as_secs(),
                    rest.as_secs()
                );
                self.lost.insert(h.name.clone());
            } else {
                kept.push(h);
            }
        }
        self.active = kept;
        self.active.len() < before
    }

    /// Starts `host`'s cool-down (doubled at each drop, at most 16 times
    /// `e.cool_down`); how long it is.
    fn rest(&mut self, host: &str, e: &Elastic) -> std::time::Duration {
        let drops = self.resting.get(host).map_or(0, |r| r.1) + 1;
        let rest = e.cool_down * (1u32 << (drops - 1).min(4));
        self.resting
            .insert(host.to_string(), (Instant::now() + rest, drops));
        rest
    }

    /// After an attempt that every worker ended cleanly (a stop to grow):
    /// no host failed in it.
    pub fn after_success(&mut self) {
        for h in &self.active {
            self.strikes.remove(&h.name);
        }
    }

    /// Hosts `discovered` lists that are not in the job, not banned, not
    /// resting, and answer (probed at the same time).
    pub fn newcomers(&self, e: &Elastic, discovered: &[HostSpec]) -> Vec<HostSpec> {
        let now = Instant::now();
        let candidates: Vec<&HostSpec> = discovered
            .iter()
            .filter(|h| !self.active.iter().any(|a| a.name == h.name))
            .filter(|h| !self.banned.contains(&h.name))
            .filter(|h| self.resting.get(&h.name).is_none_or(|r| r.0 <= now))
            .collect();
        let names: Vec<&str> = candidates.iter().map(|h| h.name.as_str()).collect();
        candidates
            .into_iter()
            .zip(e.answering(&names))
            .filter(|(_, answers)| *answers)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Takes `hosts` into the job (they are no longer lost; their strikes
    /// stay until an attempt they take part in clears them).
    pub fn add(&mut self, hosts: Vec<HostSpec>) {
        for h in hosts {
            self.lost.remove(&h.name);
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
    use std::time::Duration;

    fn host(n: &str) -> HostSpec {
        HostSpec {
            name: n.into(),
            slots: Some(1),
        }
    }

    /// An agent that answers for the hosts named in `up` (a file).
    fn agent(dir: &std::path::Path, up: &[&str]) -> Elastic {
        let list = dir.join("up");
        std::fs::write(&list, up.join("\n")).unwrap();
        let script = dir.join("agent");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ngrep -qx \"$1\" {}\n", list.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Elastic {
            min_hosts: 1,
            discovery: None,
            agent: vec![script.display().to_string()],
            cool_down: Duration::from_millis(300),
        }
    }

    #[test]
    fn a_host_failing_twice_in_a_row_is_dropped_though_it_answers() {
        let d = tempfile::tempdir().unwrap();
        let e = agent(d.path(), &["a", "b"]);
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
        let unreachable = agent(d.path(), &[]);
        assert!(m.after_failure(&unreachable, &BTreeSet::new()));
        assert!(m.active.is_empty() && m.lost.contains("a"));
    }

    #[test]
    fn a_flapping_host_rests_keeps_its_strike_and_is_dropped_at_its_second_failure() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Members::new(vec![host("a"), host("b")]);
        let b: BTreeSet<String> = ["b".to_string()].into();
        // b's workers fail and it stops answering: out, resting.
        let e = agent(d.path(), &["a"]);
        assert!(m.after_failure(&e, &b));
        assert_eq!(m.active, [host("a")]);
        // It answers at once: not taken back before its cool-down.
        let e = agent(d.path(), &["a", "b"]);
        assert!(m.newcomers(&e, &[host("a"), host("b")]).is_empty());
        std::thread::sleep(e.cool_down + Duration::from_millis(50));
        let back = m.newcomers(&e, &[host("a"), host("b")]);
        assert_eq!(back, [host("b")]);
        m.add(back);
        // It fails again: that is its second strike, not its first.
        assert!(m.after_failure(&e, &b));
        assert_eq!(m.active, [host("a")]);
        assert!(m.newcomers(&e, &[host("b")]).is_empty(), "banned");
    }

    #[test]
    fn each_drop_of_the_same_host_rests_it_twice_as_long() {
        let d = tempfile::tempdir().unwrap();
        let e = agent(d.path(), &[]);
        let mut m = Members::new(Vec::new());
        let rests: Vec<Duration> = (0..6).map(|_| m.rest("b", &e)).collect();
        let ms: Vec<u128> = rests.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [300, 600, 1200, 2400, 4800, 4800]);
    }

    #[test]
    fn new_hosts_are_probed_at_the_same_time() {
        let d = tempfile::tempdir().unwrap();
        // Each probe answers only once all four have begun: probed one
        // after the other, none would.
        let script = d.path().join("agent");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ntouch {dir}/began-$1\nfor i in $(seq 50); do\n  [ $(ls {dir} | grep -c began-) -ge 4 ] && exit 0\n  sleep 0.1\ndone\nexit 1\n",
                dir = d.path().display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = Elastic {
            min_hosts: 1,
            discovery: None,
            agent: vec![script.display().to_string()],
            cool_down: Duration::from_secs(1),
        };
        let m = Members::new(Vec::new());
        let listed = [host("n1"), host("n2"), host("n3"), host("n4")];
        assert_eq!(m.newcomers(&e, &listed), listed);
    }
}

//! Workers on separate hosts over TCP: the test makes two hosts on this
//! machine — two network namespaces on a bridge, each with its own address —
//! and `vae-launch --hosts A,B` starts one worker in each through mpirun,
//! whose rsh agent (a script the test writes) enters the host's namespace.
//! MPI's traffic takes TCP (`--mca btl tcp,self`) between the namespaces the
//! test made, which it removes afterwards, also when it fails. A module of
//! the `launch` test binary. The agent reaches a host only over the
//! network (a TCP connection attempt to it first, as ssh would make), so a
//! host whose link is down does not answer — the elastic tests cut one off.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    assert_no_process_left, env, launch, launch_bin, max_diff, ok, params, python, repo, text,
    wait_for, worker_args, worker_pids,
};

/// Two namespaces on a bridge; removed when dropped.
struct Hosts {
    names: [String; 2],
    bridge: String,
    /// The hosts' addresses, and the /24 they are in.
    addrs: [String; 2],
    /// The bridge side of each host's link.
    links: [String; 2],
    net: String,
    agent: PathBuf,
    dir: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Hosts {
    fn new() -> Hosts {
        // Unique among the tests of this process and across processes:
        // namespaces, links and the /24 are named by it.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 8;
        let id = (std::process::id() % 1_000) * 8 + n;
        let sub = 10 + (std::process::id() % 30) * 8 + n;
        let net = format!("10.213.{sub}");
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("rsh-into-netns");
        let hosts = Hosts {
            names: [format!("vaedp-a-{id}"), format!("vaedp-b-{id}")],
            bridge: format!("vdbr{id}"),
            addrs: [format!("{net}.2"), format!("{net}.3")],
            links: [format!("vd0{id}"), format!("vd1{id}")],
            net: format!("{net}.0/24"),
            agent,
            dir,
        };
        ip(&["link", "add", &hosts.bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{net}.1/24"), "dev", &hosts.bridge]);
        ip(&["link", "set", &hosts.bridge, "up"]);
        for (i, ns) in hosts.names.iter().enumerate() {
            let (outer, inner) = (format!("vd{i}{id}"), format!("vd{i}{id}p"));
            ip(&["netns", "add", ns]);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &outer, "master", &hosts.bridge, "up"]);
            ip(&["link", "set", &inner, "netns", ns]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", hosts.addrs[i]),
                "dev",
                &inner,
            ]);
            ip(&["-n", ns, "link", "set", &inner, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // Each host has its own temporary directory, as separate machines
        // do: Open MPI's daemons keep their session directories there, and
        // a stale one in a shared /tmp (a daemon killed with its host, whose
        // job family a later mpirun happens to draw) stops a daemon from
        // starting.
        // Reachable: a TCP connection attempt is answered (accepted or
        // refused) within 2 s; a host whose link is down lets it time out.
        let script = format!(
            "#!/bin/bash\n# mpirun's rsh agent: runs COMMAND in the namespace of HOST,\n# when HOST answers over the network.\nhost=\"$1\"; shift\ncase \"$host\" in\n  {}) ns={} ;;\n  {}) ns={} ;;\n  *) echo \"no such test host: $host\" >&2; exit 1 ;;\nesac\ntimeout 2 bash -c \"exec 3<>/dev/tcp/$host/9\" 2>/dev/null\nif [ $? -eq 124 ]; then echo \"$host: connection timed out\" >&2; exit 255; fi\n# A host whose MPI daemon cannot start, though it answers.\nif [ -e \"{}/no-daemon-$host\" ] && [[ \"$*\" == *orted* ]]; then echo \"$host: orted: cannot start\" >&2; exit 1; fi\ntmp=\"{}/$ns\"; mkdir -p \"$tmp\"\nexec ip netns exec \"$ns\" env TMPDIR=\"$tmp\" /bin/sh -c \"$*\"\n",
            hosts.addrs[0],
            hosts.names[0],
            hosts.addrs[1],
            hosts.names[1],
            hosts.dir.path().display(),
            hosts.dir.path().display()
        );
        std::fs::write(&hosts.agent, script).unwrap();
        let ok = Command::new("chmod").arg("+x").arg(&hosts.agent).status();
        assert!(ok.is_ok_and(|s| s.success()));
        hosts
    }

    /// Host `i` answers its agent, but its MPI daemon cannot start.
    fn refuse_daemon(&self, i: usize) {
        std::fs::write(
            self.dir.path().join(format!("no-daemon-{}", self.addrs[i])),
            b"",
        )
        .unwrap();
    }

    /// The launcher arguments that put one worker on each host.
    fn launch_args(&self) -> Vec<String> {
        let mut v = vec![
            "--hosts".to_string(),
            self.addrs.join(","),
            "--nproc-per-node".into(),
            "1".into(),
        ];
        v.extend(self.mpirun_args());
        v
    }

    /// mpirun's arguments for these hosts: the agent, and TCP between them.
    fn mpirun_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (k, val) in [
            ("plm_rsh_agent", self.agent.display().to_string()),
            ("oob_tcp_if_include", self.net.clone()),
            ("btl_tcp_if_include", self.net.clone()),
            ("btl", "tcp,self".into()),
        ] {
            for a in ["--mca".to_string(), k.to_string(), val] {
                v.push(format!("--mpirun-arg={a}"));
            }
        }
        v
    }

    /// Cuts host `i` off: every process in it killed (gone before the link
    /// goes, so their peers see the connections close), then its link down.
    fn cut(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = Self::pids(&self.names[i]);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
            assert!(
                Instant::now() < deadline,
                "processes in {} survive kill -9",
                self.names[i]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ip(&["link", "set", &self.links[i], "down"]);
    }

    /// Host `i`'s link up again.
    fn restore(&self, i: usize) {
        ip(&["link", "set", &self.links[i], "up"]);
    }

    fn pids(ns: &str) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// Waits until no process is left in either namespace.
    fn assert_empty(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        for ns in &self.names {
            while !Self::pids(ns).is_empty() {
                assert!(Instant::now() < deadline, "processes left in {ns}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The pid of a worker of `run` in host `i`'s namespace, if one runs.
    fn worker_in(&self, run: &std::path::Path, i: usize) -> Option<String> {
        worker_pids(run)
            .into_iter()
            .find(|pid| Self::namespace_of(pid) == self.names[i])
    }

    /// The namespace a process is in (`ip netns identify`).
    fn namespace_of(pid: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "identify", pid])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in &self.names {
            // Whatever still runs in a namespace goes with it.
            let _ = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let _ = Command::new("kill").args(["-9", pid]).status();
                    }
                });
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .status();
    }
}

#[test]
fn two_hosts_over_tcp_train_what_one_host_trains_and_survive_kill_9_of_the_remote_worker() {
    let hosts = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let sets = ["train.max_steps=200", "checkpoint.every_steps=40"];
    let local = dir.path().join("one-host");
    ok(launch(&local, &sets, &[]));
    let run = dir.path().join("two-hosts");
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .args(hosts.launch_args())
        .args(["--max-restarts", "1", "--"])
        .args(worker_args(&run, &sets));
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    // The worker on the second host, killed hard.
    let remote = hosts
        .worker_in(&run, 1)
        .expect("a worker on the second host");
    assert!(Command::new("kill")
        .args(["-9", &remote])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("restart 1 of 1"), "{text}");
    assert!(
        text.contains(&format!("[rank 0@{}]", hosts.addrs[0])),
        "{text}"
    );
    assert!(
        params(&run) == params(&local),
        "two hosts differ from one: {text}"
    );
    assert_no_process_left(&run);
    hosts.assert_empty();
}

/// The (first step, world size) of each membership a run trained on, in
/// order (`membership.json`).
fn membership(run: &std::path::Path) -> Vec<(u64, u64)> {
    std::fs::read_to_string(run.join("membership.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(&t).ok())
        .map(|a| {
            a.iter()
                .filter_map(|m| Some((m["step"].as_u64()?, m["world_size"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The world sizes a run trained on, in order.
fn world_sizes(run: &std::path::Path) -> Vec<u64> {
    membership(run).into_iter().map(|(_, w)| w).collect()
}

/// The step of the run's `latest` checkpoint, once there is one.
fn latest_step(run: &std::path::Path) -> Option<u64> {
    let name = std::fs::read_to_string(run.join("checkpoints/latest")).ok()?;
    name.trim().trim_start_matches("step-").parse().ok()
}

fn wait_until(what: &str, done: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Max |Δ| between the parameters two runs ended with.
fn same_model(a: &std::path::Path, b: &std::path::Path) -> f64 {
    params(a);
    params(b);
    max_diff(
        &a.join("exported.safetensors"),
        &b.join("exported.safetensors"),
    )
}

/// The uninterrupted run on one machine with `n` workers.
fn on_one_machine(run: &std::path::Path, sets: &[&str], n: usize) {
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .args(["--nproc-per-node", &n.to_string(), "--"])
        .args(worker_args(run, sets));
    ok(c);
}

#[test]
fn a_lost_host_and_the_job_goes_on_then_grows_back_ending_with_the_uninterrupted_model() {
    let hosts = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        "train.max_steps=300",
        "checkpoint.every_steps=20",
        "train.dtype=float64",
        "log.every_steps=10",
    ];
    let local = dir.path().join("uninterrupted");
    on_one_machine(&local, &sets, 4);
    // The discovery script lists what the file says: both hosts, 2 slots each.
    let listed = dir.path().join("hosts.txt");
    let both = format!("{}:2\n{}:2\n", hosts.addrs[0], hosts.addrs[1]);
    std::fs::write(&listed, &both).unwrap();
    let script = dir.path().join("discover.sh");
    std::fs::write(&script, format!("#!/bin/sh\ncat {}\n", listed.display())).unwrap();
    assert!(Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap()
        .success());
    let run = dir.path().join("elastic");
    let mut c = Command::new(launch_bin());
    env(&mut c)
        // Rank 0 takes 50 ms more a step, so the job outlasts the test's moves.
        .env("VAE_FAULT_SLOW_RANK", "0:50")
        .arg("--host-discovery")
        .arg(&script)
        .args(["--min-hosts", "1", "--max-restarts", "2"])
        .args(["--host-cool-down", "1"])
        .args(hosts.mpirun_args())
        .arg("--")
        .args(worker_args(&run, &sets));
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    // The second host goes: its processes killed, its link down, unlisted.
    std::fs::write(&listed, format!("{}:2\n", hosts.addrs[0])).unwrap();
    hosts.cut(1);
    wait_until("the job goes on with 2 workers", &|| {
        world_sizes(&run) == [4, 2]
    });
    // ...and trains on them: a checkpoint of theirs, 20 steps after they
    // began, so TensorBoard has their world size before the host returns.
    let shrunk = membership(&run)[1].0;
    wait_until("a checkpoint of the 2 workers", &|| {
        latest_step(&run).is_some_and(|s| s >= shrunk + 20)
    });
    // It comes back.
    hosts.restore(1);
    std::fs::write(&listed, &both).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("dropping host {}", hosts.addrs[1])),
        "{text}"
    );
    assert!(
        text.contains(&format!("host {} answers", hosts.addrs[1])),
        "{text}"
    );
    for l in text.lines().filter(|l| l.starts_with("[launcher]")) {
        eprintln!("{l}");
    }
    assert_eq!(world_sizes(&run), [4, 2, 4], "{text}");
    // TensorBoard shows the shrink and the growth.
    let events = Command::new(python())
        .arg(repo().join("tests/python/read_events.py"))
        .arg(run.join("tensorboard"))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&events.stdout).unwrap();
    let mut sizes: Vec<f64> = serde_json::from_value(json["scalars"]["dist/world_size"].clone())
        .expect("dist/world_size");
    sizes.dedup();
    assert_eq!(sizes, [4.0, 2.0, 4.0]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["membership"].as_array().map(Vec::len),
        Some(3),
        "{summary}"
    );
    let d = same_model(&run, &local);
    eprintln!("elastic 4 → 2 → 4 workers vs 4 uninterrupted, float64: max |Δ| = {d:e}");
    assert!(d <= 1e-10, "max |Δ| {d:e}: {text}");
    assert_no_process_left(&run);
    hosts.assert_empty();
}

#[test]
fn below_min_hosts_the_job_ends_naming_the_hosts_lost() {
    let hosts = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .env("VAE_FAULT_SLOW_RANK", "0:50")
        .args(hosts.launch_args())
        .args(["--min-hosts", "2", "--max-restarts", "3", "--"])
        .args(worker_args(
            &run,
            &["train.max_steps=400", "checkpoint.every_steps=20"],
        ));
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    hosts.cut(1);
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("fewer than --min-hosts 2"))
        .unwrap_or_else(|| panic!("no line about --min-hosts: {text}"));
    assert!(line.contains(&hosts.addrs[1]), "{line}");
    assert!(!text.contains("restart 1 of 3"), "{text}");
    assert_no_process_left(&run);
    hosts.assert_empty();
}

#[test]
fn a_host_whose_workers_fail_twice_in_a_row_is_dropped_though_it_answers() {
    let hosts = Hosts::new();
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        "train.max_steps=200",
        "checkpoint.every_steps=20",
        "train.dtype=float64",
    ];
    let local = dir.path().join("uninterrupted");
    on_one_machine(&local, &sets, 2);
    let run = dir.path().join("run");
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .env("VAE_FAULT_SLOW_RANK", "0:50")
        .args(hosts.launch_args())
        .args(["--min-hosts", "1", "--max-restarts", "3", "--"])
        .args(worker_args(&run, &sets));
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    // The second host's worker dies in this attempt and in the next.
    let mut killed = Vec::new();
    for _ in 0..2 {
        let mut pid = None;
        wait_until("a worker on the second host", &|| {
            hosts
                .worker_in(&run, 1)
                .is_some_and(|p| !killed.contains(&p))
        });
        if let Some(p) = hosts.worker_in(&run, 1) {
            pid = Some(p);
        }
        let pid = pid.unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success());
        killed.push(pid);
    }
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "dropping host {}: it failed in 2 attempts in a row",
            hosts.addrs[1]
        )),
        "{text}"
    );
    assert_eq!(world_sizes(&run), [2, 1], "{text}");
    let d = same_model(&run, &local);
    assert!(d <= 1e-10, "max |Δ| {d:e}: {text}");
    assert_no_process_left(&run);
    hosts.assert_empty();
}

#[test]
fn a_host_whose_mpi_daemon_fails_is_dropped_though_it_answers() {
    let hosts = Hosts::new();
    hosts.refuse_daemon(1);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .args(hosts.launch_args())
        .args(["--min-hosts", "1", "--max-restarts", "3", "--"])
        .args(worker_args(
            &run,
            &["train.max_steps=30", "checkpoint.every_steps=10"],
        ));
    let out = c.output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    // Its agent answers each probe: what blames it is mpirun's account of
    // the daemon, twice in a row.
    assert!(
        text.contains(&format!(
            "dropping host {}: it failed in 2 attempts in a row",
            hosts.addrs[1]
        )),
        "{text}"
    );
    assert!(!text.contains("restart 3 of 3"), "{text}");
    assert_eq!(world_sizes(&run), [1], "{text}");
    assert_no_process_left(&run);
    hosts.assert_empty();
}

#[test]
fn bad_elastic_requests_fail_with_one_line_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str, exec: bool| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        if exec {
            assert!(Command::new("chmod")
                .arg("+x")
                .arg(&p)
                .status()
                .unwrap()
                .success());
        }
        p.display().to_string()
    };
    let garbage = script("garbage.sh", "#!/bin/sh\necho 'a b c'\n", true);
    let slots = script("slots.sh", "#!/bin/sh\necho a:2\necho b:x\n", true);
    let plain = script("plain.sh", "#!/bin/sh\necho a:2\n", false);
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["--hosts", "a,b", "--min-hosts", "3"], "--min-hosts 3"),
        (vec!["--min-hosts", "2"], "--min-hosts needs hosts"),
        (vec!["--host-discovery", &garbage], "not `host:slots`"),
        (vec!["--host-discovery", &slots], "line 2"),
        (vec!["--host-discovery", &plain], "not an executable"),
    ];
    for (args, expected) in cases {
        let run = dir.path().join("never");
        let mut c = Command::new(launch_bin());
        env(&mut c)
            .args(&args)
            .arg("--")
            .args(worker_args(&run, &[]));
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!run.exists(), "{args:?}");
    }
}

//! Workers on separate hosts over TCP: the test makes two hosts on this
//! machine — two network namespaces on a bridge, each with its own address —
//! and `vae-launch --hosts A,B` starts one worker in each through mpirun,
//! whose rsh agent (a script the test writes) enters the host's namespace.
//! MPI's traffic takes TCP (`--mca btl tcp,self`) between the namespaces the
//! test made, which it removes afterwards, also when it fails. A module of
//! the `launch` test binary.
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    assert_no_process_left, env, launch, launch_bin, ok, params, processes_mentioning, wait_for,
    worker_args,
};

/// Two namespaces on a bridge; removed when dropped.
struct Hosts {
    names: [String; 2],
    bridge: String,
    /// The hosts' addresses, and the /24 they are in.
    addrs: [String; 2],
    net: String,
    agent: PathBuf,
    _dir: tempfile::TempDir,
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
        let id = std::process::id() % 10_000;
        let sub = 10 + id % 200;
        let net = format!("10.213.{sub}");
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("rsh-into-netns");
        let hosts = Hosts {
            names: [format!("vaedp-a-{id}"), format!("vaedp-b-{id}")],
            bridge: format!("vdbr{id}"),
            addrs: [format!("{net}.2"), format!("{net}.3")],
            net: format!("{net}.0/24"),
            agent,
            _dir: dir,
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
        let script = format!(
            "#!/bin/sh\n# mpirun's rsh agent: runs COMMAND in the namespace of HOST.\nhost=\"$1\"; shift\ncase \"$host\" in\n  {}) ns={} ;;\n  {}) ns={} ;;\n  *) echo \"no such test host: $host\" >&2; exit 1 ;;\nesac\nexec ip netns exec \"$ns\" /bin/sh -c \"$*\"\n",
            hosts.addrs[0], hosts.names[0], hosts.addrs[1], hosts.names[1]
        );
        std::fs::write(&hosts.agent, script).unwrap();
        let ok = Command::new("chmod").arg("+x").arg(&hosts.agent).status();
        assert!(ok.is_ok_and(|s| s.success()));
        hosts
    }

    /// The launcher arguments that put one worker on each host.
    fn launch_args(&self) -> Vec<String> {
        let mut v = vec![
            "--hosts".to_string(),
            self.addrs.join(","),
            "--nproc-per-node".into(),
            "1".into(),
        ];
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
    let remote = processes_mentioning(&run.display().to_string())
        .into_iter()
        .map(|p| p.split(':').next().unwrap().to_string())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "vae-worker")
                && Hosts::namespace_of(pid) == hosts.names[1]
        })
        .expect("a worker on the second host");
    assert!(Command::new("kill")
        .args(["-9", &remote])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
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
    let deadline = Instant::now() + Duration::from_secs(5);
    for ns in &hosts.names {
        loop {
            let out = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .unwrap();
            if out.stdout.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "processes left in {ns}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

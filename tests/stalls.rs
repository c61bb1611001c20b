//! Stalls, stragglers and damaged checkpoints: a worker stopped with
//! SIGSTOP ends the job through the others' watchdogs (and the launcher
//! restarts it), a long rank-0 phase is no false alarm, a slow rank shows in
//! TensorBoard, and a damaged latest checkpoint gives way to the newest
//! intact one. A module of the `launch` test binary.
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    assert_no_process_left, env, launch, ok, params, python, repo, uninterrupted, wait_for,
    worker_args, worker_bin, worker_pids, EVERY, STEPS,
};

/// The pid of a worker of the job in `run` (the last one found).
fn a_worker(run: &Path) -> String {
    worker_pids(run).pop().expect("a running worker")
}

fn signal(sig: &str, pid: &str) {
    assert!(Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success());
}

const TIMEOUT: &str = "dist.timeout_s=15";

#[test]
fn a_stopped_worker_ends_the_job_within_the_timeout_and_the_restart_ends_identical() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("stopped");
    let mut child = launch(&run, &[STEPS, EVERY, TIMEOUT], &["--max-restarts", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The launcher's lines, timestamped as they come.
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .map(|l| (Instant::now(), l))
            .collect::<Vec<_>>()
    });
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    let victim = a_worker(&run);
    signal("-STOP", &victim);
    let stopped = Instant::now();
    let status = child.wait().unwrap();
    let lines = lines.join().unwrap();
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    let text = text.join("\n");
    assert!(status.success(), "{text}");
    let (failed_at, _) = lines
        .iter()
        .find(|(_, l)| l.contains("restart 1 of 1"))
        .unwrap_or_else(|| panic!("no restart: {text}"));
    let noticed = failed_at.duration_since(stopped);
    assert!(
        noticed < Duration::from_secs(15 + 10),
        "noticed after {noticed:?}: {text}"
    );
    assert!(text.contains("stalled at step"), "{text}");
    assert!(text.contains("did not report: the stalled one"), "{text}");
    assert!(params(&run) == uninterrupted(), "the restarted run differs");
    assert_no_process_left(&run);
}

#[test]
fn under_plain_mpirun_a_stopped_worker_ends_the_job_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("mpirun");
    let mut c = Command::new("mpirun");
    env(&mut c)
        .args(["-np", "2", "--oversubscribe"])
        .arg(worker_bin())
        .args(worker_args(
            &run,
            &["train.max_steps=100000", EVERY, "dist.timeout_s=8"],
        ));
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    signal("-STOP", &a_worker(&run));
    let stopped = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = stopped.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(took < Duration::from_secs(8 + 10), "took {took:?}: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("stalled at step"))
        .unwrap_or_else(|| panic!("no stall line: {err}"));
    assert!(
        line.contains("dist.timeout_s = 8") && line.contains("rank "),
        "{line}"
    );
    assert_no_process_left(&run);
}

#[test]
fn rank_0_computing_metrics_longer_than_the_timeout_is_no_false_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let data = super::dsprites_subset(dir.path());
    let run = dir.path().join("metrics");
    let url = format!("data.url={}", data.display());
    let out = ok(launch(
        &run,
        &[
            &url,
            "model.hidden_dim=64",
            "train.batch_size=32",
            "train.max_steps=30",
            // Metrics read each distinct image once: the subset's few make
            // even the published counts quick; DCI's boosted trees take a
            // few seconds (beating the watchdog at every stage).
            "eval.metrics=[\"factorvae\", \"mig\", \"dci\"]",
            "eval.scale=1",
            "dist.timeout_s=2",
        ],
        &[],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    // "step 30: factorvae_score …, mig … (N s)": longer than the timeout.
    let secs: f64 = text
        .lines()
        .find(|l| l.contains("factorvae_score"))
        .and_then(|l| l.rsplit('(').next())
        .and_then(|t| t.trim_end_matches(" s)").trim().parse().ok())
        .unwrap_or_else(|| panic!("no metrics line: {text}"));
    assert!(
        secs > 2.0,
        "the metrics took {secs} s, not longer than the timeout"
    );
    assert!(text.contains("done: step 30"), "{text}");
}

#[test]
fn a_slow_rank_shows_up_as_the_slowest_in_tensorboard() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("slow");
    let mut c = launch(&run, &["train.max_steps=120", "log.every_steps=20"], &[]);
    c.env("VAE_FAULT_SLOW_RANK", "1:25");
    let out = ok(c);
    let events = Command::new(python())
        .arg(repo().join("tests/python/read_events.py"))
        .arg(run.join("tensorboard"))
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&events.stdout).unwrap();
    let slowest: Vec<f64> = serde_json::from_value(json["scalars"]["dist/slowest_rank"].clone())
        .expect("dist/slowest_rank");
    assert!(
        slowest.len() >= 5 && slowest.iter().all(|&r| r == 1.0),
        "{slowest:?}"
    );
    let waits: Vec<f64> =
        serde_json::from_value(json["scalars"]["dist/wait_ms_max"].clone()).unwrap();
    assert!(waits.iter().all(|&w| w > 15.0), "{waits:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rank 1 has been the slowest"), "{text}");
}

#[test]
fn a_damaged_latest_checkpoint_gives_way_to_the_newest_intact_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("damaged");
    ok(launch(&run, &["train.max_steps=120", EVERY], &[]));
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let model = run
        .join("checkpoints")
        .join(latest.trim())
        .join("model.safetensors");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[4096] ^= 0x01;
    std::fs::write(&model, bytes).unwrap();
    // An explicit --resume-from that checkpoint fails hard, naming it.
    let mut c = launch(&run, &[STEPS, EVERY], &[]);
    c.args([
        "--resume-from",
        &run.join("checkpoints")
            .join(latest.trim())
            .display()
            .to_string(),
    ]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("model.safetensors") && err.contains("SHA-256"),
        "{err}"
    );
    // --resume goes back to the previous one, says so, and ends identical.
    let mut c = launch(&run, &[STEPS, EVERY], &[]);
    c.arg("--resume");
    let out = ok(c);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "checkpoint file://{}",
            run.join("checkpoints").join(latest.trim()).display()
        )) && text.contains("resuming from the newest intact one")
            && text.contains("step-0000000080"),
        "{text}"
    );
    assert!(
        params(&run) == uninterrupted(),
        "the run differs from an uninterrupted one"
    );
}

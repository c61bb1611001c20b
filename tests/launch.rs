//! Data-parallel end-to-end tests: real `mpirun` with 2 processes of the real
//! `vae-worker`, supervised by the real `vae-launch`, on real MNIST.
#[path = "cluster.rs"]
mod cluster;
#[path = "common/mod.rs"]
mod common;
#[path = "console.rs"]
mod console;
#[path = "data.rs"]
mod data;
#[path = "datasets.rs"]
mod datasets;
#[path = "common/emulators.rs"]
mod emulators;
#[path = "encode.rs"]
mod encode;
#[path = "faults.rs"]
mod faults;
#[path = "hosts.rs"]
mod hosts;
#[path = "slurm.rs"]
mod slurm;
#[path = "stalls.rs"]
mod stalls;
#[path = "storage.rs"]
mod storage;
#[path = "untrusted.rs"]
mod untrusted;
use common::{max_diff, mnist, python, repo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn launch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vae-launch"))
}

/// vae-worker sits next to vae-launch in the target directory.
fn worker_bin() -> PathBuf {
    launch_bin().with_file_name("vae-worker")
}

/// `vae-worker` for an import, under an address-space limit: an allocation
/// sized from a file's header fails the import, not the machine (libtorch's
/// CUDA libraries take about 3 GB of it before a byte is read).
fn importer() -> Command {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg("ulimit -v 5000000; exec \"$0\" \"$@\"")
        .arg(worker_bin());
    env(&mut c);
    c
}

fn env(c: &mut Command) -> &mut Command {
    c.env_remove("LD_LIBRARY_PATH")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMP_NUM_THREADS", "1")
}

fn worker_args(run_dir: &Path, sets: &[&str]) -> Vec<String> {
    let mut a = vec![
        "train".to_string(),
        "--run-dir".into(),
        run_dir.display().to_string(),
    ];
    for s in [
        format!("data.url={}", mnist()),
        "train.threads=1".into(),
        "train.progress=false".into(),
    ]
    .iter()
    .map(String::as_str)
    .chain(sets.iter().copied())
    {
        a.push("--set".into());
        a.push(s.to_string());
    }
    a
}

fn launch(run_dir: &Path, sets: &[&str], extra: &[&str]) -> Command {
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .args(["--nproc-per-node", "2"])
        .args(extra)
        .arg("--")
        .args(worker_args(run_dir, sets));
    c
}

/// What a process printed: its stdout, then its stderr.
fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn ok(mut c: Command) -> Output {
    let out = c.output().expect("start");
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The model's parameters after a run, as exported safetensors bytes.
fn params(run: &Path) -> Vec<u8> {
    let out = run.join("exported.safetensors");
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .arg("export")
        .arg("--checkpoint")
        .arg(run)
        .arg("--out")
        .arg(&out);
    ok(c);
    std::fs::read(out).unwrap()
}

/// Processes whose command line mentions `needle` (our run directory).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// The pids of the workers of the job in `run`.
fn worker_pids(run: &Path) -> Vec<String> {
    processes_mentioning(&run.display().to_string())
        .into_iter()
        .map(|p| p.split(':').next().unwrap_or_default().to_string())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "vae-worker")
        })
        .collect()
}

/// Kills one worker of the job running in `run` with SIGKILL.
fn kill_a_worker(run: &Path) {
    let pids = worker_pids(run);
    let pid = pids.first().expect("a running worker");
    assert!(Command::new("kill")
        .args(["-9", pid])
        .status()
        .unwrap()
        .success());
}

fn assert_no_process_left(run: &Path) {
    let needle = run.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_mentioning(&needle);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} never appeared at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_ranks_train_what_one_rank_with_the_same_global_batch_trains() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, tolerance) in [("float64", 1e-10), ("float32", 1e-4)] {
        let sets = ["train.max_steps=20", &format!("train.dtype={dtype}")];
        let one = dir.path().join(format!("one-{dtype}"));
        let two = dir.path().join(format!("two-{dtype}"));
        let mut c = Command::new(worker_bin());
        env(&mut c).args(worker_args(&one, &sets));
        ok(c);
        // Straight under mpirun, as a user (or srun) would start it.
        let mut c = Command::new("mpirun");
        env(&mut c)
            .args(["-np", "2", "--oversubscribe"])
            .arg(worker_bin())
            .args(worker_args(&two, &sets));
        let out = ok(c);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("2 workers"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        params(&one);
        params(&two);
        let d = max_diff(
            &one.join("exported.safetensors"),
            &two.join("exported.safetensors"),
        );
        assert!(
            d <= tolerance,
            "{dtype}: 1 rank and 2 ranks differ by {d} after 20 steps"
        );
    }
}

const STEPS: &str = "train.max_steps=300";
const EVERY: &str = "checkpoint.every_steps=40";

/// An uninterrupted 2-rank run, shared by the interruption tests.
fn uninterrupted() -> &'static [u8] {
    static RUN: OnceLock<Vec<u8>> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("straight");
        ok(launch(&run, &[STEPS, EVERY], &[]));
        params(&run)
    })
}

#[test]
fn kill_9_of_a_worker_restarts_from_the_checkpoint_and_ends_identical() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("killed");
    let child = launch(&run, &[STEPS, EVERY], &["--max-restarts", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    kill_a_worker(&run);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("restart 1 of 1") && err.contains("from the run's newest checkpoint"),
        "{err}"
    );
    assert!(
        params(&run) == uninterrupted(),
        "parameters differ from an uninterrupted run"
    );
    assert_no_process_left(&run);
}

#[test]
fn sigterm_to_the_launcher_checkpoints_and_resume_ends_identical() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("stopped");
    let child = launch(&run, &[STEPS, EVERY], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(143),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stopped by a signal at step"), "{stdout}");
    assert_no_process_left(&run);
    // The stop wrote a checkpoint at the step it stopped at, named latest.
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
    assert!(step < 300, "stopped at {step}");
    let mut c = launch(&run, &[STEPS, EVERY], &[]);
    c.arg("--resume");
    ok(c);
    assert!(
        params(&run) == uninterrupted(),
        "parameters differ from an uninterrupted run"
    );
}

#[test]
fn a_bad_data_url_on_one_rank_ends_the_job_quickly_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // In `shard` order each rank reads only its own shards; one is missing,
    // so exactly one rank fails.
    let data = dir.path().join("mnist-damaged");
    std::fs::create_dir(&data).unwrap();
    for e in std::fs::read_dir(mnist()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, data.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::remove_file(data.join("train-00002.bin")).unwrap();
    let run = dir.path().join("bad");
    let started = Instant::now();
    let out = launch(
        &run,
        &[
            &format!("data.url={}", data.display()),
            "data.order=shard",
            "train.max_steps=50",
        ],
        &[],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("train-00002.bin") && err.contains("not found"),
        "{err}"
    );
    assert_no_process_left(&run);
}

#[test]
fn bad_config_fails_before_any_worker_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("r");
    let out = launch(&run, &["model.beta=-2"], &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.beta") && !err.contains("starting"),
        "{err}"
    );
    assert!(!run.exists(), "a worker started");
    let out = launch(&run, &["train.batch_size=127"], &[])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not divide"));
}

#[test]
fn the_replica_check_stops_naming_the_step_where_ranks_diverge() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("desync");
    let mut c = launch(&run, &["train.max_steps=40", "dist.check_every=5"], &[]);
    c.env("VAE_FAULT_DESYNC_STEP", "7");
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("parameters differ across ranks at step 10"),
        "{text}"
    );
    assert_no_process_left(&run);
    // Without the fault, the same check passes.
    let run = dir.path().join("in-sync");
    ok(launch(
        &run,
        &["train.max_steps=20", "dist.check_every=5"],
        &[],
    ));
}

#[test]
fn nccl_on_a_cpu_worker_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(
        &dir.path().join("r"),
        &["dist.backend=nccl", "train.device=cpu"],
    ));
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("dist.backend"));
}

fn dsprites_subset(dir: &Path) -> PathBuf {
    let out = dir.join("dsprites");
    let mut c = importer();
    c.args(["data", "prepare", "dsprites", "--out"])
        .arg(&out)
        .args([
            "--scales",
            "2",
            "--orientations",
            "2",
            "--positions",
            "8",
            "--test-samples",
            "500",
        ]);
    ok(c);
    out
}

fn summary(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap()
}

fn finite(v: &serde_json::Value, key: &str) -> f64 {
    let x = v[key].as_f64().unwrap_or(f64::NAN);
    assert!(x.is_finite(), "{key} is {x}: {v}");
    x
}

#[test]
fn factorvae_and_btcvae_train_data_parallel_on_dsprites() {
    let dir = tempfile::tempdir().unwrap();
    let data = dsprites_subset(dir.path());
    // 40 steps: mid-epoch for both (6 and 12 steps an epoch).
    for (config, steps) in [("dsprites_factorvae", 40), ("dsprites_btcvae", 40)] {
        let run = dir.path().join(config);
        let cfg = repo().join(format!("configs/{config}.toml"));
        let (url, max) = (
            format!("data.url={}", data.display()),
            format!("train.max_steps={steps}"),
        );
        let mut c = launch(
            &run,
            &[&url, &max, "log.every_steps=25", "eval.scale=0.01"],
            &[],
        );
        c.arg("--config").arg(&cfg);
        let out = ok(c);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("2 workers"), "{text}");
        let s = summary(&run);
        for key in [
            "train_loss",
            "test_loss",
            "test_recon",
            "test_kl",
            "test_tc",
        ] {
            finite(&s, key);
        }
        let m = &s["metrics"];
        for key in ["factorvae_score", "mig", "betavae_score"] {
            let v = finite(m, key);
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        // Pictures at the end of a run cut by train.max_steps mid-epoch.
        let last = format!("images/traversal-step-{steps:010}.png");
        assert!(run.join(&last).is_file(), "{last}");
        let ckpt = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
        let ckpt = run.join("checkpoints").join(ckpt.trim());
        if config == "dsprites_factorvae" {
            finite(&s, "disc_accuracy");
            assert!(ckpt.join("discriminator.safetensors").is_file());
        }
        // `vae-worker eval` on the checkpoint gives the figures and metrics as JSON.
        let json = dir.path().join(format!("{config}-eval.json"));
        let mut c = Command::new(worker_bin());
        env(&mut c)
            .args(["eval", "--checkpoint"])
            .arg(&ckpt)
            .args(["--metrics", "factorvae,mig", "--scale", "0.01", "--out"])
            .arg(&json);
        ok(c);
        let e: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        for key in ["test_loss", "test_kl", "test_tc", "factorvae_score", "mig"] {
            finite(&e, key);
        }
        assert_eq!(e["step"].as_f64(), Some(steps as f64));
        if config == "dsprites_factorvae" {
            finite(&e, "disc_accuracy");
        }
    }
}

#[test]
fn factorvae_discriminator_learns_to_tell_codes_from_permuted_codes() {
    // On dSprites the posterior collapses for the first thousands of steps
    // (no total correlation to detect); on MNIST the codes are informative
    // within a few hundred steps, so the discriminator's accuracy moves away
    // from chance.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("mnist-factor");
    ok(launch(
        &run,
        &[
            "model.objective=factor",
            "model.tc_weight=35",
            "model.latent_dim=10",
            "train.batch_size=64",
            "train.max_steps=200",
            "log.every_steps=50",
        ],
        &[],
    ));
    let s = summary(&run);
    let acc = finite(&s, "disc_accuracy");
    assert!(acc > 0.55, "discriminator accuracy {acc}");
    finite(&s, "test_tc");
}

#[test]
fn resume_with_another_number_of_workers_continues_the_same_run() {
    // In float64 the result of 2 ranks then 1 rank equals 1 rank throughout.
    let dir = tempfile::tempdir().unwrap();
    let (straight, mixed) = (dir.path().join("straight"), dir.path().join("mixed"));
    let run = |run_dir: &Path, n: &str, steps: u32, resume: bool| {
        let max = format!("train.max_steps={steps}");
        let mut c = Command::new(launch_bin());
        env(&mut c)
            .args(["--nproc-per-node", n, "--"])
            .args(worker_args(run_dir, &[&max, "train.dtype=float64"]));
        if resume {
            c.arg("--resume");
        }
        ok(c)
    };
    run(&straight, "1", 60, false);
    run(&mixed, "2", 30, false);
    let out = run(&mixed, "1", 60, true);
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed from"));
    params(&straight);
    params(&mixed);
    let d = max_diff(
        &straight.join("exported.safetensors"),
        &mixed.join("exported.safetensors"),
    );
    assert!(d <= 1e-10, "2 then 1 worker(s) differ from 1 worker by {d}");
}

#[test]
fn a_second_signal_stops_everything_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("twice");
    let mut child = launch(&run, &["train.max_steps=100000", EVERY], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        !status.success() || status.code() == Some(143),
        "{status:?}"
    );
    assert_no_process_left(&run);
    // Whatever happened, `latest` names a complete checkpoint.
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    assert!(run
        .join("checkpoints")
        .join(latest.trim())
        .join("checkpoint.json")
        .is_file());
}

/// Runs `sets` (float64, 20 steps) on 1 rank and under `mpirun -np 2`, and
/// returns the largest parameter difference (every network of the run).
fn one_vs_two_ranks(dir: &Path, name: &str, sets: &[&str]) -> f64 {
    let all: Vec<&str> = ["train.max_steps=20", "train.dtype=float64"]
        .into_iter()
        .chain(sets.iter().copied())
        .collect();
    let (one, two) = (dir.join(format!("{name}-1")), dir.join(format!("{name}-2")));
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(&one, &all));
    ok(c);
    let mut c = Command::new("mpirun");
    env(&mut c)
        .args(["-np", "2", "--oversubscribe"])
        .arg(worker_bin())
        .args(worker_args(&two, &all));
    ok(c);
    params(&one);
    params(&two);
    max_diff(
        &one.join("exported.safetensors"),
        &two.join("exported.safetensors"),
    )
}

#[test]
fn every_objective_trains_the_same_model_on_one_and_two_ranks() {
    // Each objective where the batch matters: the capacity term on the
    // global batch's mean KL (C crosses it within the 20 steps), β-TCVAE's
    // minibatch-weighted sampling over the global batch (β ≠ 1, else its
    // log q(z) terms cancel), FactorVAE's permutation of the global batch
    // (both networks are compared).
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str]); 6] = [
        ("vae", &["model.beta=4"]),
        (
            "capacity",
            &[
                "model.objective=capacity",
                "model.capacity_max=30",
                "model.capacity_steps=20",
            ],
        ),
        (
            "factor",
            &[
                "model.objective=factor",
                "model.tc_weight=10",
                "discriminator.hidden=64",
            ],
        ),
        ("btcvae", &["model.objective=btcvae", "model.tc_weight=6"]),
        // The covariance of μ (and for II of z) over the global batch.
        ("dip_i", &["model.objective=dip_i", "model.dip_lambda_od=5"]),
        (
            "dip_ii",
            &["model.objective=dip_ii", "model.dip_lambda_od=5"],
        ),
    ];
    for (name, sets) in cases {
        let mut sets = sets.to_vec();
        sets.push("train.batch_size=32");
        let d = one_vs_two_ranks(dir.path(), name, &sets);
        assert!(d <= 1e-10, "{name}: 1 and 2 ranks differ by {d}");
    }
}

/// A dSprites subset of 1,536 images in 24 shards of 64 (for `shard` order).
fn small_shards(dir: &Path) -> PathBuf {
    let out = dir.join("shards");
    let mut c = importer();
    c.args(["data", "prepare", "dsprites", "--out"])
        .arg(&out)
        .args(["--scales", "2", "--orientations", "4", "--positions", "8"])
        .args(["--test-samples", "100", "--shard-size", "64"]);
    ok(c);
    out
}

/// `sets` on `small_shards`: a small MLP, float64, global batch 12.
fn shard_args(run: &Path, data: &Path, sets: &[&str]) -> Vec<String> {
    let url = format!("data.url={}", data.display());
    let mut all = vec![
        url.as_str(),
        "train.dtype=float64",
        "train.batch_size=12",
        "model.hidden_dim=32",
        "model.latent_dim=4",
        "log.images=0",
    ];
    all.extend_from_slice(sets);
    worker_args(run, &all)
}

fn mpirun(n: usize, args: Vec<String>) -> Output {
    let mut c = Command::new("mpirun");
    env(&mut c)
        .args(["-np", &n.to_string(), "--oversubscribe"])
        .arg(worker_bin())
        .args(args);
    ok(c)
}

#[test]
fn shard_order_resumed_mid_epoch_on_3_or_1_ranks_trains_the_2_rank_epoch() {
    // The epoch that 2 ranks started keeps their deal of shards: resumed on
    // 3 ranks or on 1, every step trains the same global batch the 2 ranks
    // would have, so the parameters (float64) are the uninterrupted run's.
    let dir = tempfile::tempdir().unwrap();
    let data = small_shards(dir.path());
    let shard = [
        "data.order=shard",
        "data.shuffle_buffer=50",
        "train.epochs=1",
    ];
    let straight = dir.path().join("straight");
    mpirun(2, shard_args(&straight, &data, &shard));
    let steps = summary(&straight)["step"].as_u64().unwrap();
    assert!(steps > 100, "{steps} steps in the epoch");
    for n in [3, 1] {
        let run = dir.path().join(format!("resumed-on-{n}"));
        let mut cut = shard.to_vec();
        cut.push("train.max_steps=50");
        mpirun(2, shard_args(&run, &data, &cut));
        let mut args = shard_args(&run, &data, &shard);
        args.push("--resume".into());
        mpirun(n, args);
        let s = summary(&run);
        assert_eq!(s["step"].as_u64(), Some(steps), "on {n} ranks");
        assert_eq!(s["epoch"].as_u64(), Some(1));
        params(&straight);
        params(&run);
        let d = max_diff(
            &straight.join("exported.safetensors"),
            &run.join("exported.safetensors"),
        );
        assert!(d <= 1e-10, "resumed on {n} ranks: differs by {d}");
    }
}

#[test]
fn early_stopping_on_3_ranks_stops_every_rank_at_the_same_step() {
    // min_delta so large that no evaluation after the first improves:
    // patience 1 stops after the second epoch, decided by rank 0.
    let dir = tempfile::tempdir().unwrap();
    let data = small_shards(dir.path());
    let run = dir.path().join("early");
    let sets = [
        "train.epochs=6",
        "train.dtype=float32",
        "early_stopping.enabled=true",
        "early_stopping.patience=1",
        "early_stopping.min_delta=1e9",
    ];
    let started = Instant::now();
    let out = mpirun(3, shard_args(&run, &data, &sets));
    assert!(started.elapsed() < Duration::from_secs(120));
    let s = summary(&run);
    assert_eq!(s["stopped_early"].as_bool(), Some(true));
    assert_eq!(s["history"].as_array().unwrap().len(), 2);
    let stop_step = s["step"].as_u64().unwrap();
    assert_eq!(stop_step, 2 * 1536 / 12);
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), format!("step-{stop_step:010}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("early stopping").count(), 1, "{text}");
    assert_no_process_left(&run);
}

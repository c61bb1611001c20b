//! Datasets and checkpoints on real object-store emulators (S3: moto, GCS:
//! fake-gcs-server, Azure: azurite; `common/emulators.rs`), through the real
//! binaries. A module of the `launch` test binary (its helpers are there).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::emulators::{self, S3_SECRET};
use super::{
    assert_no_process_left, env, kill_a_worker, launch, mnist, ok, params, processes_mentioning,
    text, worker_args, worker_bin,
};

fn with_env(c: &mut Command, vars: &[(String, String)]) {
    for (k, v) in vars {
        c.env(k, v);
    }
}

/// `vae-worker data prepare mnist --out URL` from the cached IDX files.
fn prepare_mnist(url: &str, vars: &[(String, String)]) {
    let mut c = super::importer();
    c.args(["data", "prepare", "mnist", "--idx-dir"])
        .arg(emulators::cache().join("mnist-idx"))
        .args(["--out", url]);
    with_env(&mut c, vars);
    ok(c);
}

/// One worker trains `sets` into `run`; returns its exported parameters
/// (from `checkpoint.url` when the sets name one).
fn train_one(run: &Path, sets: &[&str], vars: &[(String, String)]) -> Vec<u8> {
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(run, sets));
    with_env(&mut c, vars);
    ok(c);
    let out = run.join("exported.safetensors");
    match sets.iter().find_map(|s| s.strip_prefix("checkpoint.url=")) {
        Some(url) => export_spec(url, &out, vars),
        None => export_spec(&run.display().to_string(), &out, vars),
    }
}

/// `vae-worker export` of the latest checkpoint `spec` names (path or URL).
fn export_spec(spec: &str, out: &Path, vars: &[(String, String)]) -> Vec<u8> {
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(["export", "--checkpoint", spec, "--out"])
        .arg(out);
    with_env(&mut c, vars);
    ok(c);
    std::fs::read(out).unwrap()
}

/// Waits until `url` holds a checkpoint (the worker's own export finds one).
fn wait_for_checkpoint_in(url: &str, dir: &Path, vars: &[(String, String)]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let probe = dir.join("probe.safetensors");
    loop {
        let mut c = Command::new(worker_bin());
        env(&mut c)
            .args(["export", "--checkpoint", url, "--out"])
            .arg(&probe);
        with_env(&mut c, vars);
        if c.output().is_ok_and(|o| o.status.success()) {
            return;
        }
        assert!(Instant::now() < deadline, "no checkpoint in {url}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const STEPS: &str = "train.max_steps=200";

#[test]
fn an_s3_dataset_with_checkpoints_in_the_bucket_survives_kill_9_identical_to_file() {
    let s3 = emulators::s3("vaedp");
    let vars = emulators::s3_env(&s3);
    prepare_mnist("s3://vaedp/mnist", &vars);
    let dir = tempfile::tempdir().unwrap();
    // The reference: the same job on the local copy, uninterrupted.
    let local = dir.path().join("local");
    ok(launch(&local, &[STEPS, "checkpoint.every_steps=40"], &[]));
    let want = params(&local);
    let run = dir.path().join("s3");
    let sets = [
        STEPS,
        "checkpoint.every_steps=40",
        "data.url=s3://vaedp/mnist",
        "checkpoint.url=s3://vaedp/runs/kill9",
    ];
    let mut c = launch(&run, &sets, &["--max-restarts", "1"]);
    with_env(&mut c, &vars);
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a checkpoint in the bucket (the launcher's stdout names the
    // steps; the bucket is polled through the worker's own export).
    wait_for_checkpoint_in("s3://vaedp/runs/kill9", dir.path(), &vars);
    kill_a_worker(&run);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("restart 1 of 1"), "{}", text(&out));
    let got = export_spec(
        "s3://vaedp/runs/kill9",
        &dir.path().join("s3.safetensors"),
        &vars,
    );
    assert!(got == want, "the s3:// run differs from the file:// run");
    assert_no_process_left(&run);
    // No credential anywhere: output, resolved config, checkpoints' config.
    assert!(!text(&out).contains(S3_SECRET));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(!config.contains(S3_SECRET) && !config.contains("vaedp-test-key-id"));
}

#[test]
fn gs_and_az_datasets_train_what_the_file_dataset_trains() {
    let dir = tempfile::tempdir().unwrap();
    let sets = ["train.max_steps=30", "train.threads=1"];
    let want = train_one(&dir.path().join("file"), &sets, &[]);
    // GCS: the emulator takes no writes through the XML API object_store
    // uses, so the dataset is seeded through its JSON API; reads are real.
    let gcs = emulators::gcs("vaedp");
    emulators::gcs_upload_dir(&gcs, "vaedp", "mnist", Path::new(&mnist()));
    let gvars = emulators::gcs_env(&gcs, dir.path());
    let mut gsets = sets.to_vec();
    gsets.push("data.url=gs://vaedp/mnist");
    let got = train_one(&dir.path().join("gs"), &gsets, &gvars);
    assert!(got == want, "gs:// differs from file://");
    // Azure: written by `data prepare`, checkpoints in the container too.
    let az = emulators::azure("vaedp");
    let avars = emulators::azure_env(&az);
    prepare_mnist("az://vaedp/mnist", &avars);
    let mut asets = sets.to_vec();
    asets.extend([
        "data.url=az://vaedp/mnist",
        "checkpoint.url=az://vaedp/runs/a",
    ]);
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(&dir.path().join("az"), &asets));
    with_env(&mut c, &avars);
    ok(c);
    let got = export_spec(
        "az://vaedp/runs/a",
        &dir.path().join("az.safetensors"),
        &avars,
    );
    assert!(got == want, "az:// differs from file://");
}

/// A dSprites subset in shards of 64 samples, uploaded to `s3://vaedp/ds`:
/// in `shard` order, shards are fetched all through training.
fn shards_in_s3(vars: &[(String, String)]) {
    let mut c = super::importer();
    c.args(["data", "prepare", "dsprites", "--out", "s3://vaedp/ds"])
        .args(["--scales", "2", "--orientations", "4", "--positions", "8"])
        .args(["--test-samples", "100", "--shard-size", "64"]);
    with_env(&mut c, vars);
    ok(c);
}

/// The reference for an outage test: the job `launch` (2 workers) runs
/// without an outage, checkpoints in `s3://vaedp/calm`; its parameters.
fn calm_run(dir: &Path, vars: &[(String, String)], retry: &str) -> Vec<u8> {
    let sets = outage_sets("checkpoint.url=s3://vaedp/calm", &[retry]);
    let mut c = launch(&dir.join("calm"), &sets, &[]);
    with_env(&mut c, vars);
    ok(c);
    export_spec("s3://vaedp/calm", &dir.join("c.safetensors"), vars)
}

fn outage_sets<'a>(ckpt: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "data.url=s3://vaedp/ds",
        ckpt,
        "data.order=shard",
        "data.shuffle_buffer=100",
        "train.batch_size=12",
        "train.epochs=3",
        "model.hidden_dim=32",
        "model.latent_dim=4",
        "log.images=0",
        "checkpoint.every_steps=25",
        "storage.prefetch_shards=1",
        "storage.concurrency=1",
        "storage.timeout_s=1",
        "storage.connect_timeout_s=1",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn an_s3_outage_within_the_retry_budget_is_ridden_out_identically() {
    let s3 = emulators::s3("vaedp");
    let vars = emulators::s3_env(&s3);
    let dir = tempfile::tempdir().unwrap();
    shards_in_s3(&vars);
    let want = calm_run(dir.path(), &vars, "storage.retry_timeout_s=60");
    let run = dir.path().join("stormy");
    let sets = outage_sets(
        "checkpoint.url=s3://vaedp/stormy",
        &["storage.retry_timeout_s=60"],
    );
    let mut c = launch(&run, &sets, &[]);
    with_env(&mut c, &vars);
    let started = Instant::now();
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    s3.freeze(true);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the job ended before the outage"
    );
    std::thread::sleep(Duration::from_secs(5));
    s3.freeze(false);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(started.elapsed() > Duration::from_secs(6));
    let got = export_spec(
        "s3://vaedp/stormy",
        &dir.path().join("s.safetensors"),
        &vars,
    );
    assert!(got == want, "the run through the outage differs");
}

#[test]
fn an_s3_outage_past_the_retry_budget_ends_the_job_naming_the_url_and_resume_finishes() {
    let s3 = emulators::s3("vaedp");
    let vars = emulators::s3_env(&s3);
    let dir = tempfile::tempdir().unwrap();
    shards_in_s3(&vars);
    let want = calm_run(dir.path(), &vars, "storage.retry_timeout_s=3");
    let run = dir.path().join("down");
    let sets = outage_sets(
        "checkpoint.url=s3://vaedp/down",
        &["storage.retry_timeout_s=3"],
    );
    let mut c = launch(&run, &sets, &[]);
    with_env(&mut c, &vars);
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The outage comes once a checkpoint is in the bucket.
    wait_for_checkpoint_in("s3://vaedp/down", dir.path(), &vars);
    s3.freeze(true);
    let frozen = Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = frozen.elapsed();
    s3.freeze(false);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        waited < Duration::from_secs(30),
        "took {waited:?} to give up"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("error:") && l.contains("s3://vaedp/")),
        "{}",
        text(&out)
    );
    assert_no_process_left(&run);
    let mut c = launch(&run, &sets, &[]);
    c.arg("--resume");
    with_env(&mut c, &vars);
    ok(c);
    let got = export_spec("s3://vaedp/down", &dir.path().join("d.safetensors"), &vars);
    assert!(got == want, "the resumed run differs");
}

#[test]
fn bad_credentials_a_missing_bucket_and_a_corrupt_shard_each_give_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let fails = |sets: &[&str], vars: &[(String, String)]| -> String {
        let mut c = Command::new(worker_bin());
        env(&mut c).args(worker_args(&dir.path().join("r"), sets));
        with_env(&mut c, vars);
        let out = c.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            !err.contains("panicked") && !err.contains(S3_SECRET),
            "{err}"
        );
        err
    };
    // Azure with a wrong account key: azurite checks the signature.
    let az = emulators::azure("vaedp");
    let mut avars = emulators::azure_env(&az);
    prepare_mnist("az://vaedp/mnist", &avars);
    avars.push((
        "AZURE_STORAGE_ACCOUNT_KEY".into(),
        "d3JvbmcgYWNjb3VudCBrZXk=".into(),
    ));
    let e = fails(&["data.url=az://vaedp/mnist"], &avars);
    assert!(
        e.contains("az://vaedp/mnist/manifest.json") && e.contains("access denied"),
        "{e}"
    );
    // A bucket that does not exist.
    let s3 = emulators::s3("vaedp");
    let vars = emulators::s3_env(&s3);
    let e = fails(&["data.url=s3://no-such-bucket/mnist"], &vars);
    assert!(
        e.contains("s3://no-such-bucket/mnist") && e.contains("does not exist"),
        "{e}"
    );
    // A shard whose bytes are not the ones the manifest lists.
    prepare_mnist("s3://vaedp/mnist", &vars);
    let shard = std::fs::read(Path::new(&mnist()).join("train-00003.bin")).unwrap();
    let mut bad = shard.clone();
    bad[1000] ^= 0xff;
    emulators::s3_put(&s3, "vaedp", "mnist/train-00003.bin", &bad);
    let e = fails(&["data.url=s3://vaedp/mnist", "train.max_steps=5"], &vars);
    assert!(
        e.contains("s3://vaedp/mnist/train-00003.bin") && e.contains("SHA-256"),
        "{e}"
    );
}

#[test]
fn a_kill_during_a_slow_background_checkpoint_leaves_the_previous_one_latest() {
    let dir = tempfile::tempdir().unwrap();
    let sets = [STEPS, "checkpoint.every_steps=40"];
    let straight = dir.path().join("straight");
    ok(launch(&straight, &sets, &[]));
    let run = dir.path().join("slow");
    let mut c = launch(&run, &sets, &[]);
    c.env("VAE_FAULT_SLOW_CHECKPOINT_MS", "4000");
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The second checkpoint's objects are there, its manifest is not: the
    // writer is between them. Kill everything.
    let first = run.join("checkpoints/step-0000000040/checkpoint.json");
    let second = run.join("checkpoints/step-0000000080");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(first.is_file() && second.join("model.safetensors").is_file()) {
        assert!(
            Instant::now() < deadline,
            "no second checkpoint being written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!second.join("checkpoint.json").exists());
    for p in processes_mentioning(&run.display().to_string()) {
        let pid = p.split(':').next().unwrap().to_string();
        let _ = Command::new("kill").args(["-9", &pid]).status();
    }
    let _ = child.wait();
    assert_no_process_left(&run);
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    assert_eq!(latest.trim(), "step-0000000040");
    let mut c = launch(&run, &sets, &[]);
    c.arg("--resume");
    ok(c);
    assert!(params(&run) == params(&straight), "the resumed run differs");
}

/// MNIST-format IDX files holding `n` training images (MNIST's, repeated).
fn big_idx(dir: &Path, n: usize) -> PathBuf {
    let src = emulators::cache().join("mnist-idx");
    let images = std::fs::read(src.join("train-images-idx3-ubyte")).unwrap();
    let labels = std::fs::read(src.join("train-labels-idx1-ubyte")).unwrap();
    let (img, lab) = (&images[16..], &labels[8..]);
    let out = dir.join("idx");
    std::fs::create_dir_all(&out).unwrap();
    let mut head = vec![0, 0, 8, 3];
    for v in [n as u32, 28, 28] {
        head.extend_from_slice(&v.to_be_bytes());
    }
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(out.join("train-images-idx3-ubyte")).unwrap(),
    );
    std::io::Write::write_all(&mut f, &head).unwrap();
    let mut l = vec![0, 0, 8, 1];
    l.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        let k = i % 60_000;
        std::io::Write::write_all(&mut f, &img[k * 784..(k + 1) * 784]).unwrap();
        l.push(lab[k]);
    }
    drop(f);
    std::fs::write(out.join("train-labels-idx1-ubyte"), l).unwrap();
    for t in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::copy(src.join(t), out.join(t)).unwrap();
    }
    out
}

/// A memory cgroup (v1, as this machine has) limiting what is started in it.
pub(super) struct MemoryLimit(pub(super) PathBuf);

impl MemoryLimit {
    pub(super) fn new(bytes: u64) -> Option<MemoryLimit> {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/memory/vaedp-test-{}",
            std::process::id()
        ));
        std::fs::create_dir(&dir).ok()?;
        let limit = MemoryLimit(dir);
        std::fs::write(limit.0.join("memory.limit_in_bytes"), bytes.to_string()).ok()?;
        Some(limit)
    }
    pub(super) fn peak(&self) -> u64 {
        std::fs::read_to_string(self.0.join("memory.max_usage_in_bytes"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_dataset_larger_than_the_memory_allowed_trains_in_shard_order() {
    const LIMIT: u64 = 900 << 20;
    let dir = tempfile::tempdir().unwrap();
    let n = 1_300_000; // 1.02 GB of images
    let idx = big_idx(dir.path(), n);
    let data = dir.path().join("big");
    let mut c = super::importer();
    c.args(["data", "prepare", "mnist", "--idx-dir"])
        .arg(&idx)
        .arg("--out")
        .arg(&data)
        .args(["--shard-size", "50000"]);
    ok(c);
    std::fs::remove_dir_all(&idx).unwrap();
    let stored: u64 = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(stored > LIMIT, "{stored} bytes");
    let Some(limit) = MemoryLimit::new(LIMIT) else {
        panic!("cannot create a memory cgroup under /sys/fs/cgroup/memory (needed to limit the worker's memory)");
    };
    let run = dir.path().join("run");
    let url = format!("data.url={}", data.display());
    let args = worker_args(
        &run,
        &[
            &url,
            "data.order=shard",
            "train.max_steps=300",
            "log.images=0",
        ],
    );
    // The worker is started inside the cgroup (by a shell that joins it).
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
        limit.0.display()
    );
    let mut c = Command::new("sh");
    env(&mut c)
        .arg("-c")
        .arg(script)
        .arg(worker_bin())
        .args(&args);
    let out = ok(c);
    let peak = limit.peak();
    eprintln!("dataset {stored} bytes stored; worker peak {peak} bytes under a {LIMIT}-byte limit");
    assert!(peak > 0 && peak <= LIMIT, "peak {peak}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("done: step 300"));
}

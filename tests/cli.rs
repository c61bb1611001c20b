//! End-to-end tests of the real `vae-worker` binary on real MNIST, checked with
//! real readers: PyTorch (pytorch/examples' VAE), TensorBoard's
//! EventAccumulator. `scripts/setup.sh` (run by `scripts/test.sh`) provides
//! the dataset in `data/mnist` and the Python venv.
#[path = "accel.rs"]
mod accel;
#[path = "common/mod.rs"]
mod common;
use common::{max_diff, mnist, python, repo};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The real binary, without LD_LIBRARY_PATH (it must find libtorch by rpath).
fn worker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vae-worker"));
    c.env_remove("LD_LIBRARY_PATH").env("OMP_NUM_THREADS", "2");
    c
}

/// The real binary for an import, under an address-space limit: an
/// allocation sized from a file's header fails the import, not the machine
/// (libtorch's CUDA libraries take about 3 GB of it before a byte is read).
fn importer() -> Command {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg("ulimit -v 5000000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_vae-worker"));
    c.env_remove("LD_LIBRARY_PATH").env("OMP_NUM_THREADS", "2");
    c
}

fn run_ok(mut c: Command) -> Output {
    let out = c.output().expect("start process");
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn train(run_dir: &Path, sets: &[&str]) -> Command {
    let mut c = worker();
    c.args(["train", "--run-dir"]).arg(run_dir);
    c.args(["--set", &format!("data.url={}", mnist())]);
    for s in sets {
        c.args(["--set", s]);
    }
    c
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("valid JSON")
}

fn py(args: &[&str]) -> serde_json::Value {
    let mut c = Command::new(python());
    c.args(args);
    let out = run_ok(c);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).expect("python printed JSON")
}

/// One epoch of the default job (configs/mnist_vae.toml, built in), shared by
/// the tests that read what it leaves.
fn default_run() -> &'static Path {
    static RUN: OnceLock<tempfile::TempDir> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        run_ok(train(&dir.path().join("run"), &["train.epochs=1"]));
        dir
    })
    .path()
}

#[test]
fn one_epoch_matches_pytorch_examples() {
    let run = default_run().join("run");
    let s = json(&run.join("summary.json"));
    for key in [
        "epoch",
        "step",
        "train_loss",
        "test_loss",
        "test_recon",
        "test_kl",
        "samples_per_sec",
    ] {
        assert!(s[key].is_number(), "summary.json lacks {key}: {s}");
    }
    assert_eq!(s["step"], 468);
    let ours = s["test_loss"].as_f64().unwrap();
    let script = repo().join("tests/python/pytorch_vae.py");
    let theirs = py(&[script.to_str().unwrap(), "train", &mnist(), "1"])["test_loss"]
        .as_f64()
        .unwrap();
    assert!(
        (ours - theirs).abs() < 2.0,
        "vae-worker {ours} vs PyTorch {theirs} after 1 epoch"
    );
    // The resolved config is in the run directory and parses.
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(text.contains("batch_size = 128"), "{text}");
    let step = json(&run.join("summary.json"))["step"].as_u64().unwrap();
    for file in ["recon", "prior", "traversal"] {
        let png = run.join(format!("images/{file}-step-{step:010}.png"));
        assert!(png.is_file(), "{}", png.display());
    }
}

#[test]
fn tensorboard_reads_the_event_files() {
    let run = default_run().join("run");
    let script = repo().join("tests/python/read_events.py");
    let ev = py(&[
        script.to_str().unwrap(),
        run.join("tensorboard").to_str().unwrap(),
    ]);
    let scalars = ev["scalars"].as_object().expect("scalars");
    for split in ["train", "test"] {
        for name in [
            "loss",
            "recon",
            "kl",
            "active_units",
            "kl_per_dim/00",
            "kl_per_dim/19",
        ] {
            let tag = format!("{split}/{name}");
            let values = scalars
                .get(&tag)
                .unwrap_or_else(|| panic!("no scalar {tag}: {:?}", scalars.keys()));
            let values = values.as_array().unwrap();
            assert!(
                !values.is_empty()
                    && values
                        .iter()
                        .all(|v| v.as_f64().is_some_and(f64::is_finite)),
                "{tag}: {values:?}"
            );
        }
    }
    for tag in ["train/lr", "train/samples_per_sec"] {
        assert!(scalars.contains_key(tag), "no scalar {tag}");
    }
    for tag in ["test/reconstructions", "samples/prior"] {
        let imgs = ev["images"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no image {tag}: {}", ev["images"]));
        assert!(
            imgs[0][0].as_u64().unwrap() > 28 && imgs[0][2].as_u64().unwrap() > 100,
            "{tag}: {imgs:?}"
        );
    }
    for tag in ["test/mu", "test/logvar"] {
        assert!(
            ev["histograms"][tag].as_u64().unwrap_or(0) >= 1,
            "no histogram {tag}: {}",
            ev["histograms"]
        );
    }
}

#[test]
fn exported_weights_give_the_same_test_loss_in_pytorch() {
    let run = default_run().join("run");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    let mut c = worker();
    c.args(["export", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(&out);
    run_ok(c);
    let ours = json(&run.join("summary.json"))["test_loss"]
        .as_f64()
        .unwrap();
    let script = repo().join("tests/python/pytorch_vae.py");
    let theirs = py(&[
        script.to_str().unwrap(),
        "eval",
        &mnist(),
        out.to_str().unwrap(),
        "1",
    ])["test_loss"]
        .as_f64()
        .unwrap();
    assert!(
        (ours - theirs).abs() < 1e-3,
        "vae-worker {ours} vs PyTorch with the exported weights {theirs}"
    );
}

fn exported(run: &Path, dir: &Path, name: &str) -> Vec<u8> {
    let out = dir.join(name);
    let mut c = worker();
    c.args(["export", "--checkpoint"])
        .arg(run)
        .arg("--out")
        .arg(&out);
    run_ok(c);
    std::fs::read(out).unwrap()
}

#[test]
fn resume_equals_an_uninterrupted_run_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, split) = (dir.path().join("straight"), dir.path().join("split"));
    let common = ["train.threads=1", "train.epochs=2", "log.every_steps=7"];
    let with = |extra: &str| -> Vec<String> {
        common
            .iter()
            .map(|s| s.to_string())
            .chain([extra.to_string()])
            .collect()
    };
    let args = with("train.max_steps=520");
    run_ok(train(
        &straight,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let args = with("train.max_steps=300");
    run_ok(train(
        &split,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let args = with("train.max_steps=520");
    let mut c = train(&split, &args.iter().map(String::as_str).collect::<Vec<_>>());
    c.arg("--resume");
    let out = run_ok(c);
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed from"));
    assert_eq!(json(&split.join("summary.json"))["step"], 520);
    let a = exported(&straight, dir.path(), "a.safetensors");
    let b = exported(&split, dir.path(), "b.safetensors");
    assert!(a == b, "parameters differ after resume");
}

/// A checkpoint written by the worker before Adam became PyTorch's fused
/// kernel (`tests/fixtures/adam-before-fused`, made by the `make.sh` beside
/// it) loads — the same moment tensors under the same names — and goes on:
/// its 10 remaining steps end where that worker's uninterrupted run ended,
/// to float64 rounding (resumed with its moments zeroed, it ends 8e-3 away).
#[test]
fn a_checkpoint_written_before_the_fused_adam_loads_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo().join("tests/fixtures/adam-before-fused");
    let run = dir.path().join("run");
    let mut c = train(
        &run,
        &[
            "model.hidden_dim=4",
            "model.latent_dim=2",
            "train.dtype=float64",
            "train.threads=1",
            "train.progress=false",
            "train.max_steps=20",
            "checkpoint.every_steps=10",
            "checkpoint.keep_last=5",
            "log.images=0",
            "log.histograms=false",
        ],
    );
    c.arg("--resume-from").arg(fixture.join("step-0000000010"));
    let out = run_ok(c);
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed from"));
    assert_eq!(json(&run.join("summary.json"))["step"], 20);
    exported(&run, dir.path(), "ours.safetensors");
    let d = max_diff(
        &dir.path().join("ours.safetensors"),
        &fixture.join("step-20.safetensors"),
    );
    eprintln!("resumed with the fused Adam vs the old worker's run: max |Δ| = {d:e}");
    assert!(d <= 1e-10, "max |Δ| {d:e}");
}

#[test]
fn conv_vae_trains_and_its_loss_goes_down() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("configs/mnist_conv_vae.toml");
    let at = |steps: u32, name: &str| {
        let mut c = train(
            &dir.path().join(name),
            &[&format!("train.max_steps={steps}")],
        );
        c.arg("--config").arg(&config);
        run_ok(c);
        json(&dir.path().join(name).join("summary.json"))["test_loss"]
            .as_f64()
            .unwrap()
    };
    let (start, later) = (at(1, "a"), at(120, "b"));
    assert!(
        later < start - 100.0,
        "conv VAE test loss {start} -> {later}"
    );
}

/// The minor page faults of a finished run of `c` (its own, from `wait4`).
fn minor_faults(mut c: Command) -> i64 {
    let child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start process");
    let pid = child.id() as i32;
    // Reaped by wait4 below, which also reads the child's own usage.
    std::mem::forget(child);
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, once (its `Child` was forgotten).
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert!(
        waited == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{c:?} failed"
    );
    usage.ru_minflt
}

#[test]
fn training_steps_reuse_freed_host_memory_instead_of_faulting_it_in() {
    // glibc's default maps large blocks fresh and gives them back on free
    // (its threshold moving with what was freed): the conv VAE's
    // activations at batch 128 (4 MiB for the first layer) were faulted in
    // and zeroed again step after step, 4,400-6,000 faults a step (measured
    // with the worker before `vae_worker::alloc`). With freed memory kept,
    // the steps after the first reuse it: ~50 a step. The final evaluation
    // (batches of 100) is the same in both runs and cancels out.
    let dir = tempfile::tempdir().unwrap();
    let config = repo().join("configs/mnist_conv_vae.toml");
    let faults = |steps: u32| {
        let mut c = train(
            &dir.path().join(format!("s{steps}")),
            &[
                &format!("train.max_steps={steps}"),
                "train.eval_batch_size=100",
                "train.progress=false",
                "checkpoint.every_epochs=0",
                "log.images=0",
                "log.histograms=false",
            ],
        );
        c.arg("--config").arg(&config);
        minor_faults(c)
    };
    let (few, more) = (faults(4), faults(44));
    let per_step = (more - few) / 40;
    assert!(
        per_step < 1000,
        "{per_step} page faults a step ({few} in 4 steps, {more} in 44)"
    );
}

/// Runs the worker expecting failure; returns its stderr.
fn fails(mut c: Command) -> String {
    let out = c.output().expect("start process");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{c:?} succeeded");
    assert!(!err.contains("panicked"), "{c:?} panicked: {err}");
    assert_eq!(err.trim().lines().count(), 1, "want one line, got: {err}");
    err
}

#[test]
fn bad_config_values_exit_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    for (set, want) in [
        ("model.betta=2", "betta"),
        ("train.batch_size=\"big\"", "train.batch_size"),
        ("model.beta=-1", "model.beta"),
        ("train.batch_size=0", "train.batch_size"),
        ("model.kind=transformer", "transformer"),
    ] {
        let err = fails(train(&run, &[set]));
        assert!(err.contains(want), "--set {set}: {err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[train]\nepochs = 1\nlearning_rate = 3\n").unwrap();
    let mut c = worker();
    c.args(["train", "--config"])
        .arg(&bad)
        .arg("--run-dir")
        .arg(&run);
    let err = fails(c);
    assert!(err.contains("learning_rate"), "{err}");
    let mut c = worker();
    c.args(["train", "--config"])
        .arg(dir.path().join("missing.toml"))
        .arg("--run-dir")
        .arg(&run);
    let err = fails(c);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn bad_data_and_run_dirs_exit_with_one_line_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    // Missing dataset.
    let nowhere = dir.path().join("no-such-dataset");
    let mut c = train(&dir.path().join("r1"), &[]);
    c.args(["--set", &format!("data.url={}", nowhere.display())]);
    let err = fails(c);
    assert!(err.contains("no-such-dataset"), "{err}");

    // A copy of MNIST with one shard corrupted, one truncated, one missing.
    for (case, damage) in [("corrupt", 0), ("truncated", 1), ("missing", 2)] {
        let copy = dir.path().join(case);
        std::fs::create_dir(&copy).unwrap();
        for e in std::fs::read_dir(mnist()).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
        let shard = copy.join("train-00003.bin");
        match damage {
            0 => {
                let mut b = std::fs::read(&shard).unwrap();
                b[1000] ^= 0xff;
                std::fs::write(&shard, b).unwrap();
            }
            1 => {
                let b = std::fs::read(&shard).unwrap();
                std::fs::write(&shard, &b[..b.len() / 2]).unwrap();
            }
            _ => std::fs::remove_file(&shard).unwrap(),
        }
        let mut c = train(&dir.path().join(format!("r-{case}")), &[]);
        c.args(["--set", &format!("data.url=file://{}", copy.display())]);
        let err = fails(c);
        assert!(err.contains("train-00003.bin"), "{case}: {err}");
    }

    // Unwritable run directory: its parent is a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = fails(train(&file.join("run"), &[]));
    assert!(err.contains("a-file"), "{err}");

    // --resume with nothing to resume.
    let mut c = train(&dir.path().join("empty"), &[]);
    c.arg("--resume");
    let err = fails(c);
    assert!(
        err.contains("no checkpoint") && err.contains("empty"),
        "{err}"
    );
}

#[test]
fn an_untrusted_manifest_is_refused_naming_the_object_and_field() {
    // A manifest from a bucket is data someone else wrote: each lie is one
    // line naming the manifest and the field, before anything is allocated
    // from it or written outside storage.cache_dir.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let manifest: serde_json::Value = json(&Path::new(&mnist()).join("manifest.json"));
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 5] = [
        (
            "sha",
            |m| {
                let escape = format!("../../../vaedp-escape-{}", std::process::id());
                m["splits"]["train"]["shards"][0]["sha256"] = escape.into()
            },
            "sha256",
        ),
        (
            "overflow",
            |m| m["splits"]["train"]["shards"][0]["samples"] = (u64::MAX / 3).into(),
            "overflow",
        ),
        (
            "absurd",
            |m| m["splits"]["train"]["samples"] = (1u64 << 40).into(),
            "samples",
        ),
        (
            "size",
            |m| m["splits"]["train"]["shards"][1]["bytes"] = 12345.into(),
            "bytes",
        ),
        (
            "escape",
            |m| m["splits"]["train"]["shards"][0]["object"] = "../../etc/passwd".into(),
            "shard object",
        ),
    ];
    for (name, edit, want) in cases {
        let copy = dir.path().join(name);
        std::fs::create_dir(&copy).unwrap();
        for e in std::fs::read_dir(mnist()).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
        let mut m = manifest.clone();
        edit(&mut m);
        std::fs::write(copy.join("manifest.json"), m.to_string()).unwrap();
        let mut c = worker();
        c.args(["data", "read", "--set"])
            .arg(format!("data.url={}", copy.display()))
            .args(["--set", "data.order=shard", "--set"])
            .arg(format!("storage.cache_dir={}", cache.display()));
        let err = fails(c);
        assert!(
            err.contains("manifest.json") && err.contains(want),
            "{name}: {err}"
        );
    }
    // Where a cache keyed by that "SHA-256" would have written.
    let escape = format!("../../../vaedp-escape-{}", std::process::id());
    assert!(!cache.join(&escape[..2]).join(&escape).exists());
    assert!(!cache.exists(), "the cache was written to");
}

#[test]
fn without_a_terminal_each_logging_window_is_a_line() {
    // Under mpirun or in a SLURM output file the progress bar is invisible.
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(train(
        &dir.path().join("run"),
        &["train.max_steps=60", "log.every_steps=20", "log.images=0"],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" ETA ")).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("epoch 1 step 20/468") && lines[0].contains("samples/s"),
        "{text}"
    );
    assert!(lines[2].contains("(step 60 of 60)"), "{text}");
}

#[test]
fn eval_names_both_shapes_and_points_into_a_sweep_s_folder() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("dsprites");
    let mut c = importer();
    c.args([
        "data",
        "prepare",
        "dsprites",
        "--scales",
        "1",
        "--orientations",
        "1",
    ])
    .args(["--positions", "4", "--out"])
    .arg(&ds);
    run_ok(c);
    let mut c = worker();
    c.args(["eval", "--checkpoint"])
        .arg(default_run().join("run"))
        .arg("--data")
        .arg(&ds);
    let err = fails(c);
    assert!(
        err.contains("trained on 1×28×28 samples") && err.contains("is 1×64×64"),
        "{err}"
    );
    // A sweep's folder: the points keep the checkpoints.
    let sweep = dir.path().join("sweep");
    let point = sweep.join("model.beta=4");
    std::fs::create_dir_all(point.join("checkpoints")).unwrap();
    std::fs::write(point.join("checkpoints/latest"), "step-0000000001\n").unwrap();
    let mut c = worker();
    c.args(["eval", "--checkpoint"]).arg(&sweep);
    let err = fails(c);
    assert!(
        err.contains("sweep's folder") && err.contains(&point.display().to_string()),
        "{err}"
    );
}

#[test]
fn early_stopping_keeps_the_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Improvements under 5 nats do not count: epoch 3 improves less than that.
    run_ok(train(
        &run,
        &[
            "train.epochs=6",
            "early_stopping.enabled=true",
            "early_stopping.patience=1",
            "early_stopping.min_delta=5",
        ],
    ));
    let s = json(&run.join("summary.json"));
    assert_eq!(s["stopped_early"], true, "{s}");
    assert!(s["epoch"].as_u64().unwrap() < 6, "{s}");
    let best_step = s["best_step"].as_u64().unwrap();
    let best = std::fs::read_to_string(run.join("checkpoints/best")).unwrap();
    assert_eq!(best.trim(), format!("best-step-{best_step:010}"));
    let m = json(
        &run.join("checkpoints")
            .join(best.trim())
            .join("checkpoint.json"),
    );
    assert_eq!(m["step"].as_u64(), Some(best_step));
    assert!(
        (m["metrics"]["test_loss"].as_f64().unwrap() - s["best_test_loss"].as_f64().unwrap()).abs()
            < 1e-9
    );
}

fn prepare_dsprites(out: &Path, args: &[&str]) {
    let mut c = importer();
    c.args(["data", "prepare", "dsprites", "--out"])
        .arg(out)
        .args(args);
    run_ok(c);
}

#[test]
fn dsprites_generator_writes_the_factors_in_order_and_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let sub = [
        "--scales",
        "2",
        "--orientations",
        "3",
        "--positions",
        "4",
        "--test-samples",
        "50",
        "--shard-size",
        "100",
    ];
    prepare_dsprites(&a, &sub);
    prepare_dsprites(&b, &sub);
    let script = repo().join("tests/python/check_dsprites.py");
    let ra = py(&[script.to_str().unwrap(), a.to_str().unwrap()]);
    let rb = py(&[script.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(
        ra["sha256"], rb["sha256"],
        "generation is not deterministic"
    );
    assert_eq!(ra["n"], 3 * 2 * 3 * 4 * 4);
    assert_eq!(ra["dtype"], "u1");
    assert_eq!(
        ra["targets"],
        serde_json::json!(["shape", "scale", "orientation", "posX", "posY"])
    );
    assert_eq!(ra["values"], serde_json::json!([0, 255]));
    // Original order: posY fastest, then posX, orientation, scale, shape;
    // kept values are evenly spaced and include both ends (orientation,
    // cyclic, over [0, 2π) without the full turn: 0, 13, 26 of 40).
    let f = ra["factors"].as_array().unwrap();
    assert_eq!(f[0], serde_json::json!([0, 0, 0, 0, 0]));
    assert_eq!(f[1], serde_json::json!([0, 0, 0, 0, 10]));
    assert_eq!(f[3], serde_json::json!([0, 0, 0, 0, 31]));
    assert_eq!(f[4], serde_json::json!([0, 0, 0, 10, 0]));
    assert_eq!(f[16], serde_json::json!([0, 0, 13, 0, 0]));
    assert_eq!(f[48], serde_json::json!([0, 5, 0, 0, 0]));
    assert_eq!(f[95], serde_json::json!([0, 5, 26, 31, 31]));
    assert_eq!(f[96], serde_json::json!([1, 0, 0, 0, 0]));
    // Every image has a shape, and no shape touches the frame.
    assert_eq!(ra["empty"], 0);
    assert!(
        ra["min_row"].as_i64().unwrap() > 0 && ra["max_row"].as_i64().unwrap() < 63,
        "{ra}"
    );
    assert!(
        ra["min_col"].as_i64().unwrap() > 0 && ra["max_col"].as_i64().unwrap() < 63,
        "{ra}"
    );
}

/// Every file under `dir` (relative name → bytes).
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn the_real_dsprites_npz_imports_as_the_generated_dataset_shard_for_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (generated, imported) = (dir.path().join("generated"), dir.path().join("imported"));
    let sizes = ["--test-samples", "300", "--shard-size", "500"];
    let mut gen_args = vec!["--scales", "2", "--orientations", "4", "--positions", "8"];
    gen_args.extend(sizes);
    prepare_dsprites(&generated, &gen_args);
    // The file in the published layout, written by NumPy from those images.
    let npz = dir
        .path()
        .join("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz");
    let script = repo().join("tests/python/make_dsprites_npz.py");
    let mut writer = Command::new(python());
    writer.arg(&script).arg(&generated).arg(&npz);
    run_ok(writer);
    let mut c = importer();
    c.args(["data", "prepare", "dsprites", "--from"])
        .arg(&npz)
        .arg("--out")
        .arg(&imported)
        .args(sizes);
    run_ok(c);
    let (a, b) = (tree(&generated), tree(&imported));
    // The manifest keeps each factor's values in its units: those of the
    // file's latents_values (NumPy's linspace, as the published file).
    let code = "import sys, json, numpy as np\nd = np.load(sys.argv[1], allow_pickle=True)\nm = json.load(open(sys.argv[2]))\nfor k, f in enumerate(m['factors']):\n    want = np.unique(d['latents_values'][:, k + 1])\n    assert np.allclose(f['units'], want, rtol=0, atol=1e-12), (f['name'], f['units'], want)\nprint(json.dumps({'ok': True}))";
    assert_eq!(
        py(&[
            "-c",
            code,
            npz.to_str().unwrap(),
            generated.join("manifest.json").to_str().unwrap()
        ])["ok"],
        true
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(*bytes == b[name], "{name} differs");
    }
    // The same encoder on either gives the same metrics, to the last digit.
    let run = dir.path().join("run");
    let mut c = worker();
    c.args(["train", "--run-dir"]).arg(&run);
    for s in [
        format!("data.url={}", generated.display()),
        "train.max_steps=20".into(),
        "train.batch_size=64".into(),
        "model.latent_dim=6".into(),
        "log.images=0".into(),
    ] {
        c.args(["--set", &s]);
    }
    run_ok(c);
    let eval = |data: &Path, name: &str| {
        let out = dir.path().join(name);
        let mut c = worker();
        c.args(["eval", "--checkpoint"])
            .arg(&run)
            .arg("--data")
            .arg(data)
            .args([
                "--metrics",
                "factorvae,mig,betavae",
                "--scale",
                "0.02",
                "--out",
            ])
            .arg(&out);
        run_ok(c);
        json(&out)
    };
    let (mut on_generated, mut on_imported) =
        (eval(&generated, "a.json"), eval(&imported, "b.json"));
    // The same data under two URLs: the same manifest, the same figures.
    let (a, b) = (
        on_generated["evaluation"].take(),
        on_imported["evaluation"].take(),
    );
    assert_eq!(a["manifest_sha256"], b["manifest_sha256"]);
    assert_ne!(a["data_url"], b["data_url"]);
    assert_eq!(
        (a["scale"].as_f64(), a["published_counts"].as_bool()),
        (Some(0.02), Some(false))
    );
    assert_eq!(on_generated, on_imported);
    for key in ["factorvae_score", "mig", "betavae_score"] {
        let v = on_generated[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    // Bad input: one line naming the file and the key, nothing written.
    let edits = [
        ("missing", "del d['latents_classes']", "latents_classes"),
        ("dtype", "d['imgs'] = d['imgs'].astype(np.float32)", "imgs"),
        (
            "grid",
            "d['imgs'] = d['imgs'][:-1]; d['latents_classes'] = d['latents_classes'][:-1]",
            "grid",
        ),
    ];
    for (name, edit, want) in edits {
        let bad = dir.path().join(format!("{name}.npz"));
        let code = format!(
            "import sys, numpy as np\nd = dict(np.load(sys.argv[1], allow_pickle=True))\n{edit}\nnp.savez_compressed(sys.argv[2], **d)"
        );
        let mut py = Command::new(python());
        py.args(["-c", &code]).arg(&npz).arg(&bad);
        run_ok(py);
        let dest = dir.path().join(format!("out-{name}"));
        let mut c = importer();
        c.args(["data", "prepare", "dsprites", "--from"])
            .arg(&bad)
            .arg("--out")
            .arg(&dest);
        let err = fails(c);
        assert!(
            err.contains(&format!("{name}.npz")) && err.contains(want),
            "{name}: {err}"
        );
        assert!(!dest.join("manifest.json").exists() && !dest.join("train-00000.bin").exists());
    }
}

/// Runs tests/python/make_factor_files.py with `args`; its stdout.
fn factor_files(args: &[&str]) -> String {
    let script = repo().join("tests/python/make_factor_files.py");
    let mut py = Command::new(python());
    py.arg(&script).args(args);
    let out = run_ok(py);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `vae-worker data prepare NAME --from FILE --out DIR ARGS`.
fn prepare_from(name: &str, from: &Path, out: &Path, args: &[&str]) -> Command {
    let mut c = importer();
    c.args(["data", "prepare", name, "--from"])
        .arg(from)
        .arg("--out")
        .arg(out)
        .args(args);
    c
}

#[test]
fn shapes3d_h5_and_mpi3d_npz_import_pixel_for_pixel_and_train_with_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let h5 = dir.path().join("3dshapes.h5");
    factor_files(&["shapes3d", h5.to_str().unwrap()]);
    let shapes = dir.path().join("shapes3d");
    run_ok(prepare_from(
        "shapes3d",
        &h5,
        &shapes,
        &["--test-samples", "40", "--shard-size", "100"],
    ));
    let m = json(&shapes.join("manifest.json"));
    let sizes: Vec<usize> = m["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["values"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![2, 2, 3, 2, 4, 3]);
    assert_eq!(m["sample_shape"], serde_json::json!([3, 64, 64]));
    // Each factor's values in its units: the file's distinct labels.
    let code = "import sys, json, h5py, numpy as np\nlabels = h5py.File(sys.argv[1], 'r')['labels'][:]\nm = json.load(open(sys.argv[2]))\nfor k, f in enumerate(m['factors']):\n    assert np.array_equal(f['units'], np.unique(labels[:, k])), (f['name'], f['units'])\nprint(json.dumps({'ok': True}))";
    let manifest = shapes.join("manifest.json");
    assert_eq!(
        py(&["-c", code, h5.to_str().unwrap(), manifest.to_str().unwrap()])["ok"],
        true
    );
    let check = |file: &Path, ds: &Path| -> serde_json::Value {
        serde_json::from_str(
            factor_files(&["check", file.to_str().unwrap(), ds.to_str().unwrap()]).trim(),
        )
        .unwrap()
    };
    let c = check(&h5, &shapes);
    assert_eq!(c["samples"], 288);
    assert_eq!(c["pixels_equal"], true, "{c}");
    assert_eq!(c["targets_equal"], true, "{c}");
    // FactorVAE on it, with the metrics read from the stored images.
    let run = dir.path().join("run");
    let mut c = worker();
    c.args(["train", "--config"])
        .arg(repo().join("configs/shapes3d_factorvae.toml"))
        .arg("--run-dir")
        .arg(&run);
    for s in [
        format!("data.url={}", shapes.display()),
        "train.max_steps=8".into(),
        "train.batch_size=16".into(),
        "eval.scale=0.01".into(),
        "discriminator.hidden=64".into(),
        "log.images=4".into(),
    ] {
        c.args(["--set", &s]);
    }
    run_ok(c);
    let s = json(&run.join("summary.json"));
    for k in ["factorvae_score", "mig", "betavae_score"] {
        let v = s["metrics"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} = {v}");
    }
    assert!(run.join("images/traversal-step-0000000008.png").is_file());

    // MPI3D's layout, a reduced grid given by --factor-sizes.
    let npz = dir.path().join("mpi3d_toy.npz");
    factor_files(&["mpi3d", npz.to_str().unwrap(), "2,2,1,1,2,3,3"]);
    let mpi = dir.path().join("mpi3d");
    run_ok(prepare_from(
        "mpi3d",
        &npz,
        &mpi,
        &["--factor-sizes", "2,2,1,1,2,3,3", "--test-samples", "10"],
    ));
    let c = check(&npz, &mpi);
    assert_eq!(c["samples"], 72);
    assert_eq!(c["pixels_equal"], true, "{c}");
    assert_eq!(c["targets_equal"], true, "{c}");

    // Bad input: one line naming the file and the key, nothing written.
    let bad = dir.path().join("bad.h5");
    let code = "import sys, h5py\nsrc = h5py.File(sys.argv[1], 'r')\nwith h5py.File(sys.argv[2], 'w') as f:\n    f['images'] = src['images'][:-1]\n    f['labels'] = src['labels'][:-1]";
    let mut py = Command::new(python());
    py.args(["-c", code]).arg(&h5).arg(&bad);
    run_ok(py);
    let dest = dir.path().join("out-bad");
    let err = fails(prepare_from("shapes3d", &bad, &dest, &[]));
    assert!(
        err.contains("bad.h5") && err.contains("labels") && err.contains("grid"),
        "{err}"
    );
    let err = fails(prepare_from("mpi3d", &npz, &dest, &[]));
    assert!(
        err.contains("mpi3d_toy.npz") && err.contains("images"),
        "{err}"
    );
    let err = fails(prepare_from("shapes3d", &npz, &dest, &[]));
    assert!(err.contains("mpi3d_toy.npz"), "{err}");
    // Labels of another dtype: float32 reads as float64 does; integers are
    // named as the dtype that differs (not as a wrong shape).
    for (name, dtype) in [("f32.h5", "float32"), ("i64.h5", "int64")] {
        let path = dir.path().join(name);
        let code = format!("import sys, h5py\nsrc = h5py.File(sys.argv[1], 'r')\nwith h5py.File(sys.argv[2], 'w') as f:\n    f['images'] = src['images'][:]\n    f['labels'] = src['labels'][:].astype('{dtype}')");
        let mut py = Command::new(python());
        py.args(["-c", &code]).arg(&h5).arg(&path);
        run_ok(py);
        let dest = dir.path().join(format!("out-{dtype}"));
        let c = prepare_from("shapes3d", &path, &dest, &["--test-samples", "10"]);
        if dtype == "float32" {
            let out = String::from_utf8_lossy(&run_ok(c).stdout).into_owned();
            assert!(
                out.contains("note: the test split's 10 samples are drawn from the"),
                "{out}"
            );
        } else {
            let err = fails(c);
            assert!(
                err.contains("key `labels`: dtype") && err.contains("expected float64"),
                "{err}"
            );
        }
    }
    assert!(!dest.exists());
}

#[test]
fn factorvae_resume_restores_both_networks_and_both_optimizers() {
    let dir = tempfile::tempdir().unwrap();
    let (straight, split) = (dir.path().join("straight"), dir.path().join("split"));
    let base = [
        "model.objective=factor",
        "model.tc_weight=10",
        "train.batch_size=32",
        "train.threads=1",
        "discriminator.hidden=64",
    ];
    let with = |steps: u32| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain([format!("train.max_steps={steps}")])
            .collect()
    };
    let args = with(60);
    run_ok(train(
        &straight,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let args = with(25);
    run_ok(train(
        &split,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let args = with(60);
    let mut c = train(&split, &args.iter().map(String::as_str).collect::<Vec<_>>());
    c.arg("--resume");
    run_ok(c);
    let last = |run: &Path| {
        run.join("checkpoints").join(
            std::fs::read_to_string(run.join("checkpoints/latest"))
                .unwrap()
                .trim(),
        )
    };
    for file in [
        "model.safetensors",
        "discriminator.safetensors",
        "optim.safetensors",
    ] {
        let a = std::fs::read(last(&straight).join(file)).unwrap();
        let b = std::fs::read(last(&split).join(file)).unwrap();
        assert!(a == b, "{file} differs after resume");
    }
}

#[test]
fn capacity_objective_raises_c_linearly_and_trains() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    run_ok(train(
        &run,
        &[
            "model.objective=capacity",
            "model.capacity_max=20",
            "model.capacity_steps=100",
            "model.capacity_weight=10",
            "train.max_steps=150",
            "log.every_steps=25",
        ],
    ));
    let s = json(&run.join("summary.json"));
    assert!(s["test_loss"].as_f64().unwrap().is_finite());
    let script = repo().join("tests/python/read_events.py");
    let ev = py(&[
        script.to_str().unwrap(),
        run.join("tensorboard").to_str().unwrap(),
    ]);
    let c: Vec<f64> = ev["scalars"]["train/capacity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // C = 20 · min(1, step / 100) at steps 25, 50, ...
    let want = [5.0, 10.0, 15.0, 20.0, 20.0, 20.0];
    assert_eq!(c.len(), want.len(), "{c:?}");
    for (got, want) in c.iter().zip(want) {
        assert!((got - want).abs() < 1e-4, "{c:?}");
    }
    // The KL is pulled towards C: by the end it is within a few nats of 20.
    assert!((s["test_kl"].as_f64().unwrap() - 20.0).abs() < 6.0, "{s}");
}

/// Runs a reference script of tests/python with the venv's python.
fn reference(script: &str, out: &Path) {
    let status = Command::new(python())
        .arg(repo().join("tests/python").join(script))
        .arg(out)
        .status()
        .expect("python");
    assert!(status.success(), "{script} failed");
}

#[test]
fn objectives_and_their_gradients_equal_the_reference_implementations() {
    use tch::{Kind, Tensor};
    use vae_worker::collective::Whole;
    use vae_worker::loss::{gradients, Forward};
    use vae_worker::model::discriminator::tc_estimate;
    use vae_worker::objective::Loss;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("objectives.safetensors");
    reference("objectives_reference.py", &path);
    let t: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .collect();
    let get = |k: &str| t[k].shallow_clone();
    let b = get("x").size()[0];
    // Each objective from the registry, as a config names it.
    let objective = |sets: &[&str]| {
        let mut all = vec![
            "model.capacity_max=5",
            "model.capacity_steps=100",
            "model.capacity_weight=7",
        ];
        all.extend_from_slice(sets);
        let sets: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let cfg = vae_proto::config::parse("", "test", &sets).unwrap();
        Loss::from_config(&cfg.model, 100)
    };
    for (name, o) in [
        ("vae", objective(&["model.beta=4"])),
        ("capacity", objective(&["model.objective=capacity"])),
        (
            "factor",
            objective(&["model.objective=factor", "model.tc_weight=3"]),
        ),
        (
            "btcvae",
            objective(&["model.objective=btcvae", "model.tc_weight=6"]),
        ),
        // disentanglement_lib's defaults: λ_d = 10·λ_od (I), λ_od (II).
        (
            "dip_i",
            objective(&["model.objective=dip_i", "model.dip_lambda_od=5"]),
        ),
        (
            "dip_ii",
            objective(&["model.objective=dip_ii", "model.dip_lambda_od=5"]),
        ),
    ] {
        let leaf = |k: &str| get(k).set_requires_grad(true);
        let (mu, logvar, logits) = (leaf("mu"), leaf("logvar"), leaf("logits"));
        let z = &mu + (&logvar * 0.5).exp() * get("eps");
        let disc = z.matmul(&get("disc_w").tr()) + get("disc_b");
        let penalty = tc_estimate(&disc);
        let (x, scope) = (get("x"), Whole { rows: b });
        let f = Forward {
            x: &x,
            mu: &mu,
            logvar: &logvar,
            z: &z,
            logits: &logits,
        };
        // Step 50 of 100: the capacity C is 2.5 nats, as in the reference.
        let terms = o.terms(&f, 50, Some(&penalty), &scope).unwrap();
        let loss = terms.loss.sum(Kind::Double) / b as f64;
        let want = get(&format!("{name}.loss")).double_value(&[0]);
        assert!(
            (loss.double_value(&[]) - want).abs() < 1e-6,
            "{name}: loss {} vs {want}",
            loss.double_value(&[])
        );
        let grads =
            gradients(&loss, &terms.cross, &scope, &[&mu, &logvar, &logits], false).unwrap();
        for (g, wrt) in grads.iter().zip(["mu", "logvar", "logits"]) {
            let diff = (g - get(&format!("{name}.grad_{wrt}")))
                .abs()
                .max()
                .double_value(&[]);
            assert!(diff < 1e-6, "{name}: gradient wrt {wrt} differs by {diff}");
        }
    }
}

#[test]
fn metrics_equal_disentanglement_libs_own_functions() {
    use vae_worker::disentanglement::stats::variances;
    use vae_worker::disentanglement::{betavae, factorvae, mig};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlib.json");
    reference("dlib_metrics.py", &path);
    let d = json(&path);
    let rows =
        |v: &serde_json::Value| -> Vec<Vec<f64>> { serde_json::from_value(v.clone()).unwrap() };
    let ints = |v: &serde_json::Value| -> Vec<usize> { serde_json::from_value(v.clone()).unwrap() };

    // MIG on fixed codes and factors, to 1e-9.
    let m = &d["mig"];
    let ys: Vec<Vec<usize>> = serde_json::from_value(m["ys"].clone()).unwrap();
    let ours = mig::mig(&rows(&m["codes"]), &ys);
    let want = m["mig"].as_f64().unwrap();
    assert!(
        (ours - want).abs() < 1e-9,
        "MIG {ours} vs disentanglement_lib {want}"
    );

    // FactorVAE score: the same votes, the same majority-vote classifier.
    let f = &d["factorvae"];
    let global = variances(&rows(&f["global"]));
    let active = factorvae::active_dims(&global);
    let (ks, n_train) = (ints(&f["ks"]), f["n_train"].as_u64().unwrap() as usize);
    let mut tables = [
        vec![vec![0u64; global.len()]; 5],
        vec![vec![0u64; global.len()]; 5],
    ];
    for (i, (k, batch)) in ks.iter().zip(f["batches"].as_array().unwrap()).enumerate() {
        let v = factorvae::vote(&variances(&rows(batch)), &global, &active);
        tables[usize::from(i >= n_train)][*k][v] += 1;
    }
    let ours = factorvae::accuracy(&tables[0], &tables[1]);
    assert_eq!(
        ours,
        f["eval_accuracy"].as_f64().unwrap(),
        "FactorVAE score"
    );
    assert_eq!(
        factorvae::accuracy(&tables[0], &tables[0]),
        f["train_accuracy"].as_f64().unwrap()
    );

    // BetaVAE score: the same features, scikit-learn's LogisticRegression()
    // against linfa-logistic on the same objective.
    let bv = &d["betavae"];
    let (ks, n_train) = (ints(&bv["ks"]), bv["n_train"].as_u64().unwrap() as usize);
    let batches: Vec<Vec<Vec<f64>>> = bv["batches"].as_array().unwrap().iter().map(rows).collect();
    let feats: Vec<Vec<f64>> = batches
        .chunks(2)
        .map(|p| betavae::feature(&p[0], &p[1]))
        .collect();
    let (xt, xe) = feats.split_at(n_train);
    let (yt, ye) = ks.split_at(n_train);
    assert_eq!(
        betavae::accuracy(xt, yt, xe, ye),
        bv["eval_accuracy"].as_f64().unwrap(),
        "BetaVAE score"
    );
    assert_eq!(
        betavae::accuracy(xt, yt, xt, yt),
        bv["train_accuracy"].as_f64().unwrap()
    );
}

#[test]
fn every_metric_equals_disentanglement_lib_on_a_trained_encoder_at_published_counts() {
    // A β-VAE trained on a dSprites subset; every metric at scale 1 (the
    // published 10,000 / 5,000 samples, votes of 64); the draws vae-worker
    // made are served to disentanglement_lib's own functions on the same
    // weights (tests/python/dlib_served.py), so both score the same points.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dsprites");
    prepare_dsprites(
        &data,
        &[
            "--scales",
            "2",
            "--orientations",
            "4",
            "--positions",
            "8",
            "--test-samples",
            "300",
        ],
    );
    let run = dir.path().join("run");
    let mut c = worker();
    c.args(["train", "--run-dir"]).arg(&run);
    for s in [
        format!("data.url={}", data.display()),
        "model.hidden_dim=64".into(),
        "model.latent_dim=6".into(),
        "model.beta=4".into(),
        "train.batch_size=64".into(),
        "train.max_steps=300".into(),
        "log.images=0".into(),
    ] {
        c.args(["--set", &s]);
    }
    run_ok(c);
    let (ours, prefix, export) = (
        dir.path().join("ours.json"),
        dir.path().join("draws"),
        dir.path().join("model.safetensors"),
    );
    let mut c = worker();
    c.args(["eval", "--checkpoint"])
        .arg(&run)
        .args([
            "--metrics",
            "factorvae,betavae,mig,dci,sap,modularity,unsupervised,unsupervised_sampled,irs",
        ])
        .args(["--scale", "1", "--out"])
        .arg(&ours)
        .env("VAE_FAULT_RECORD_DRAWS", &prefix);
    run_ok(c);
    let mut c = worker();
    c.args(["export", "--checkpoint"])
        .arg(&run)
        .arg("--out")
        .arg(&export);
    run_ok(c);
    let theirs = dir.path().join("dlib.json");
    let mut py = Command::new(python());
    py.arg(repo().join("tests/python/dlib_served.py"))
        .arg(&data)
        .arg(&export)
        .arg(run.join("config.toml"))
        .arg(&prefix)
        .arg("1")
        .arg(&theirs);
    let out = run_ok(py);
    let (a, b) = (json(&ours), json(&theirs));
    eprintln!(
        "disentanglement_lib seconds: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Deterministic given the points: to float rounding (a vote or a bin
    // may only flip on a float32 difference between tch and PyTorch, never
    // seen); a learner within its solver's tolerance.
    for (key, tol) in [
        ("factorvae_score", 4e-4),
        ("mig", 1e-6),
        ("modularity_score", 1e-6),
        ("gaussian_total_correlation", 1e-6),
        ("gaussian_wasserstein_correlation", 1e-6),
        ("gaussian_wasserstein_correlation_norm", 1e-6),
        ("mutual_info_score", 1e-6),
        ("sampled_gaussian_total_correlation", 1e-6),
        ("sampled_gaussian_wasserstein_correlation", 1e-6),
        ("sampled_gaussian_wasserstein_correlation_norm", 1e-6),
        ("sampled_mutual_info_score", 1e-6),
        ("irs", 1e-6),
        ("betavae_score", 0.01),
        ("sap_score", 0.002),
        ("explicitness_score", 0.002),
        ("dci_disentanglement", 0.002),
        ("dci_completeness", 0.002),
        ("dci_informativeness_train", 0.002),
        ("dci_informativeness", 0.002),
    ] {
        let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
        eprintln!("{key}: vae-worker {x}, disentanglement_lib {y}");
        assert!(
            (x - y).abs() <= tol,
            "{key}: vae-worker {x}, disentanglement_lib {y}"
        );
    }
}

/// Trains `sets` for a few steps, exports, and returns (step, the worker's
/// test loss, PyTorch's test loss of the export in its vaedp_models module).
fn export_and_reload(run: &Path, sets: &[&str]) -> (u64, f64, f64) {
    run_ok(train(run, sets));
    let out = run.join("export.safetensors");
    let mut c = worker();
    c.args(["export", "--checkpoint"])
        .arg(run)
        .arg("--out")
        .arg(&out);
    run_ok(c);
    let mut c = worker();
    c.args(["eval", "--checkpoint"])
        .arg(run)
        .arg("--out")
        .arg(run.join("eval.json"));
    run_ok(c);
    let e = json(&run.join("eval.json"));
    let step = e["step"].as_f64().unwrap() as u64;
    let theirs = py(&[
        repo()
            .join("tests/python/check_export.py")
            .to_str()
            .unwrap(),
        run.to_str().unwrap(),
        out.to_str().unwrap(),
        &step.to_string(),
    ]);
    (
        step,
        e["test_loss"].as_f64().unwrap(),
        theirs["test_loss"].as_f64().unwrap(),
    )
}

#[test]
fn every_export_loads_strictly_into_its_pytorch_module_with_the_workers_test_loss() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("dsprites");
    prepare_dsprites(
        &ds,
        &[
            "--scales",
            "2",
            "--orientations",
            "2",
            "--positions",
            "8",
            "--test-samples",
            "200",
        ],
    );
    let ds_url = format!("data.url={}", ds.display());
    let common = [
        "train.max_steps=10",
        "train.progress=false",
        "model.latent_dim=6",
    ];
    let cases: [(&str, Vec<&str>); 4] = [
        (
            "mlp-factor",
            vec![
                "model.objective=factor",
                "model.tc_weight=10",
                "discriminator.hidden=64",
            ],
        ),
        (
            "conv28-capacity",
            vec![
                "model.kind=conv",
                "model.objective=capacity",
                "model.capacity_steps=5",
            ],
        ),
        (
            "conv64-btcvae",
            vec![
                &ds_url,
                "model.kind=conv",
                "model.hidden_dim=64",
                "model.objective=btcvae",
                "model.tc_weight=4",
                "train.batch_size=64",
            ],
        ),
        (
            "conv64-factor",
            vec![
                &ds_url,
                "model.kind=conv",
                "model.objective=factor",
                "model.tc_weight=10",
                "train.batch_size=64",
                "discriminator.hidden=100",
                "discriminator.layers=3",
            ],
        ),
    ];
    for (name, sets) in cases {
        let sets: Vec<&str> = common.iter().copied().chain(sets).collect();
        let (step, ours, theirs) = export_and_reload(&dir.path().join(name), &sets);
        eprintln!("{name}: step {step}, vae-worker {ours}, PyTorch {theirs}");
        assert!(
            (ours - theirs).abs() < 1e-4,
            "{name}: {ours} vs PyTorch {theirs}"
        );
    }
}

#[test]
fn the_shard_cache_serves_shards_without_downloading_them_again() {
    // A dataset whose shards vanish after a first run: a second run with the
    // same cache still trains (the cache is keyed by SHA-256 and verified),
    // and a run without it names the missing object.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(mnist()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join(e.file_name())).unwrap();
    }
    let cache = dir.path().join("cache");
    let sets = || {
        vec![
            format!("data.url={}", data.display()),
            format!("storage.cache_dir={}", cache.display()),
            "data.order=shard".to_string(),
            "train.max_steps=20".to_string(),
        ]
    };
    let run = |name: &str, cached: bool| {
        let mut c = worker();
        c.args(["train", "--run-dir"]).arg(dir.path().join(name));
        for s in sets() {
            if cached || !s.starts_with("storage.cache_dir") {
                c.args(["--set", &s]);
            }
        }
        c
    };
    run_ok(run("a", true));
    let cached = std::fs::read_dir(&cache).unwrap().count();
    assert!(cached > 0, "nothing cached");
    for e in std::fs::read_dir(&data).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "manifest.json" {
            std::fs::remove_file(p).unwrap();
        }
    }
    run_ok(run("b", true));
    let err = fails(run("c", false));
    assert!(
        err.contains("object not found") && err.contains(".bin"),
        "{err}"
    );
}

#[test]
fn eval_iwae_equals_a_pytorch_transcription_on_the_export() {
    // Burda et al.'s bound with K = 16, in float64, against
    // torch.distributions on the exported weights with the same noise
    // (scripts/noise.py): an MLP with the Bernoulli likelihood on MNIST's
    // 10,000 test images, a conv VAE with the Gaussian (squared-error) one
    // on 200 dSprites images.
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("dsprites");
    prepare_dsprites(
        &ds,
        &[
            "--scales",
            "2",
            "--orientations",
            "2",
            "--positions",
            "8",
            "--test-samples",
            "200",
        ],
    );
    let ds = format!("data.url={}", ds.display());
    let cases: [(&str, &[&str]); 2] = [
        ("mlp", &[]),
        (
            "conv-gaussian",
            &[&ds, "model.kind=conv", "model.likelihood=gaussian"],
        ),
    ];
    for (name, sets) in cases {
        let run = dir.path().join(name);
        let mut all = vec!["train.max_steps=20", "train.dtype=float64", "log.images=0"];
        all.extend(sets);
        run_ok(train(&run, &all));
        let export = run.join("export.safetensors");
        let mut c = worker();
        c.args(["export", "--checkpoint"])
            .arg(&run)
            .arg("--out")
            .arg(&export);
        run_ok(c);
        let out = run.join("iwae.json");
        let mut c = worker();
        c.args(["eval", "--checkpoint"])
            .arg(&run)
            .args(["--iwae", "16", "--out"])
            .arg(&out);
        run_ok(c);
        let e = json(&out);
        let (ours, elbo) = (
            e["test_iwae_16"].as_f64().unwrap(),
            e["test_elbo"].as_f64().unwrap(),
        );
        assert_eq!(e["evaluation"]["iwae"], 16, "{e}");
        let theirs = py(&[
            repo().join("tests/python/check_iwae.py").to_str().unwrap(),
            run.to_str().unwrap(),
            export.to_str().unwrap(),
            "16",
        ])["iwae"]
            .as_f64()
            .unwrap();
        eprintln!("{name}: IWAE-16 {ours} (PyTorch {theirs}), ELBO {elbo}");
        assert!((ours - theirs).abs() < 1e-6, "{name}: {ours} vs {theirs}");
        // Tighter than the ELBO over the test split.
        assert!(ours > elbo, "{name}: IWAE {ours} vs ELBO {elbo}");
    }
    // K out of range: one line, nothing written.
    let mut c = worker();
    c.args(["eval", "--checkpoint"])
        .arg(dir.path().join("mlp"))
        .args(["--iwae", "0"]);
    let err = fails(c);
    assert!(
        err.contains("--iwae: K must be 1 to 100000, got 0"),
        "{err}"
    );
}

#[test]
fn two_evaluations_of_one_checkpoint_keep_their_own_files_and_say_their_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dsprites");
    prepare_dsprites(
        &data,
        &[
            "--scales",
            "2",
            "--orientations",
            "2",
            "--positions",
            "8",
            "--test-samples",
            "100",
        ],
    );
    let run = dir.path().join("run");
    let url = format!("data.url={}", data.display());
    let out = run_ok(train(
        &run,
        &[
            &url,
            "train.max_steps=10",
            "model.latent_dim=6",
            "log.images=0",
        ],
    ));
    // The run's first lines say its test figures are on training data.
    let said = String::from_utf8_lossy(&out.stdout);
    let want = "data: the test split's 100 samples are drawn from the 768 of the training grid: test figures are on training data";
    assert!(said.contains(want), "{said}");
    // Two evaluations of one checkpoint that compute different things each
    // keep their own file, say where and whether they are at the published
    // counts.
    let mut said = Vec::new();
    for args in [
        &["--metrics", "mig"][..],
        &["--metrics", "mig,sap", "--scale", "0.05"],
    ] {
        let mut c = worker();
        c.args(["eval", "--checkpoint"]).arg(&run).args(args);
        said.push(String::from_utf8_lossy(&run_ok(c).stderr).into_owned());
    }
    assert!(
        said[0].contains("eval: metrics at the published counts (10000 / 5000 samples"),
        "{}",
        said[0]
    );
    assert!(
        said[1].contains(
            "eval: metrics at --scale 0.05 (500 / 250 samples): not the published counts"
        ),
        "{}",
        said[1]
    );
    let files: Vec<PathBuf> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("eval-step-")
        })
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for (f, text) in files.iter().zip(&said) {
        assert!(
            said.iter()
                .any(|t| t.contains(&format!("eval: wrote {}", f.display()))),
            "{text}"
        );
        let e = json(f);
        assert!(e["mig"].as_f64().is_some(), "{e}");
        let sap = e["evaluation"]["metrics"].as_array().unwrap().len() == 2;
        assert_eq!(sap, e["sap_score"].is_number(), "{e}");
    }
}

//! What a researcher sees of a run where they run it: the console under
//! `vae-launch` and plain `mpirun` with the output going to a file (a line
//! per logging window, each metric line whole, counting to the run's real
//! end), a closed stdout that is no crash, TensorBoard holding what the run
//! did, and mistakes that are one line before any worker starts. A module of
//! the `launch` test binary (its helpers are there).
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{
    dsprites_subset, env, launch, launch_bin, mnist, ok, python, repo, worker_args, worker_bin,
};

/// The steps of a run whose epochs have `per_epoch` steps that close a
/// logging window: every `every`, each epoch's end and the last step.
fn window_steps(per_epoch: u64, every: u64, last: u64) -> Vec<u64> {
    (1..=last)
        .filter(|s| s % every == 0 || s % per_epoch == 0 || *s == last)
        .collect()
}

/// The dSprites subset's settings for a short 2-rank run with metrics.
fn console_sets(data: &Path) -> Vec<String> {
    [
        format!("data.url={}", data.display()),
        "train.max_steps=30".into(),
        "log.every_steps=4".into(),
        "log.images=0".into(),
        "eval.metrics=[\"mig\", \"sap\"]".into(),
        "eval.scale=0.01".into(),
    ]
    .to_vec()
}

/// Runs `c` with stdout and stderr each into a file (as SLURM and `nohup`
/// do), and returns both texts.
fn into_files(mut c: Command, dir: &Path, name: &str) -> (String, String) {
    let (o, e) = (
        dir.join(format!("{name}.out")),
        dir.join(format!("{name}.err")),
    );
    let status = c
        .stdout(Stdio::from(std::fs::File::create(&o).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&e).unwrap()))
        .status()
        .unwrap();
    let (out, err) = (
        std::fs::read_to_string(&o).unwrap(),
        std::fs::read_to_string(&e).unwrap(),
    );
    assert!(status.success(), "{c:?}: {out}\n{err}");
    (out, err)
}

/// Checks the window lines (with their prefix) and the metric lines in
/// `out`/`err`: one window line per logging window, counting to step 30.
fn check_console(out: &str, err: &str, prefix: &str, err_prefix: &str) {
    let windows: Vec<&str> = out.lines().filter(|l| l.contains(" ETA ")).collect();
    let steps = window_steps(6, 4, 30);
    assert_eq!(windows.len(), steps.len(), "{out}");
    for (line, step) in windows.iter().zip(&steps) {
        assert!(
            line.starts_with(prefix) && line.contains(&format!("(step {step} of 30)")),
            "{line}\n{out}"
        );
    }
    assert!(windows[windows.len() - 1].ends_with("ETA 0s"), "{out}");
    let metrics: Vec<&str> = err.lines().filter(|l| l.contains("metric")).collect();
    assert_eq!(metrics.len(), 2, "{err}");
    for (line, name) in metrics.iter().zip(["mig", "sap"]) {
        let rest = line
            .strip_prefix(&format!("{err_prefix}metric {name}: "))
            .and_then(|r| r.strip_suffix(" s"))
            .unwrap_or_else(|| panic!("a shredded metric line: {line:?}\n{err}"));
        assert!(rest.parse::<f64>().is_ok(), "{line}");
    }
    // The metrics' line says how long they took (in ms when under a second).
    let summary = out.lines().find(|l| l.contains(": mig ")).unwrap_or("");
    let took = summary.rsplit_once(" (").map_or("", |(_, t)| t);
    let ms = took
        .strip_suffix(" ms)")
        .and_then(|t| t.parse::<f64>().ok());
    let s = took.strip_suffix(" s)").and_then(|t| t.parse::<f64>().ok());
    assert!(
        ms.is_some_and(|m| m >= 1.0) || s.is_some_and(|s| s >= 1.0),
        "{summary}"
    );
}

#[test]
fn under_vae_launch_and_mpirun_each_window_is_a_line_and_each_metric_line_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dsprites_subset(dir.path());
    let sets = console_sets(&data);
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let c = launch(&dir.path().join("launched"), &sets, &[]);
    let (out, err) = into_files(c, dir.path(), "launch");
    check_console(&out, &err, "[rank 0] epoch ", "[rank 0] ");
    // Straight under mpirun, its own tags on each line (a tag inside a
    // line is a line written in pieces).
    let mut c = Command::new("mpirun");
    env(&mut c)
        .args(["-np", "2", "--oversubscribe", "--tag-output"])
        .arg(worker_bin())
        .args(worker_args(&dir.path().join("mpirun"), &sets));
    let (out, err) = into_files(c, dir.path(), "mpirun");
    let tags = |t: &str| t.lines().filter(|l| l.matches("]<std").count() > 1).count();
    assert_eq!(tags(&out) + tags(&err), 0, "{out}\n{err}");
    check_console(&out, &err, "[1,0]<stdout>:epoch ", "[1,0]<stderr>:");
}

#[test]
fn a_closed_stdout_is_no_crash_and_the_job_runs_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = launch(&run, &["train.max_steps=40", "log.every_steps=1"], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: one line read, then the pipe is closed.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(first.contains("run directory"), "{first}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(run.join("summary.json").is_file(), "the job did not finish");
}

/// What TensorBoard's own reader finds in `run`'s event files.
pub fn events(run: &Path) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo().join("tests/python/read_events.py"))
        .arg(run.join("tensorboard"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tensorboard_holds_the_whole_test_split_the_last_window_and_pictures_in_proportion() {
    let dir = tempfile::tempdir().unwrap();
    let data = dsprites_subset(dir.path());
    let url = format!("data.url={}", data.display());
    // 5 steps, fewer than one logging window, cut mid-epoch (6 steps); a
    // test split (500) smaller than one evaluation block (1000) on 2 ranks.
    let short = dir.path().join("short");
    ok(launch(
        &short,
        &[
            &url,
            "train.max_steps=5",
            "log.every_steps=50",
            "train.eval_batch_size=1000",
        ],
        &[],
    ));
    let ev = events(&short);
    assert_eq!(
        ev["scalar_steps"]["train/loss"],
        serde_json::json!([5]),
        "{ev}"
    );
    for tag in ["test/mu", "test/logvar"] {
        // The whole test split: 500 samples × 20 latent dimensions.
        assert_eq!(
            ev["histogram_steps"][tag],
            serde_json::json!([[5, 10000.0]]),
            "{ev}"
        );
    }
    // 30 steps of 2-step epochs (batch 384 of 768), a window every 10:
    // pictures and histograms at most once per window, and at the end.
    let many = dir.path().join("many");
    ok(launch(
        &many,
        &[
            &url,
            "train.epochs=100",
            "train.max_steps=30",
            "log.every_steps=10",
            "train.batch_size=384",
            "log.images=8",
        ],
        &[],
    ));
    let ev = events(&many);
    let steps = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().or_else(|| s[0].as_u64()).unwrap())
            .collect()
    };
    assert_eq!(
        steps(&ev["image_steps"]["test/reconstructions"]),
        [2, 12, 22, 30]
    );
    assert_eq!(steps(&ev["histogram_steps"]["test/mu"]), [2, 12, 22, 30]);
    // Every epoch still has its test scalars.
    assert_eq!(
        ev["scalar_steps"]["test/loss"].as_array().unwrap().len(),
        15
    );
}

/// `vae-launch … -- train …` with `extra_worker` arguments after the sets.
fn launch_with(run: &Path, sets: &[&str], extra_worker: &[&str]) -> Command {
    let mut c = launch(run, sets, &[]);
    c.args(extra_worker);
    c
}

/// A failed command's stderr as its non-empty lines.
fn error_lines(mut c: Command, code: i32) -> Vec<String> {
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{c:?}: {err}");
    err.lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn mistakes_are_one_line_before_any_worker_starts_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dataset");
    let run = dir.path().join("r1");
    let lines = error_lines(
        launch(&run, &[&format!("data.url={}", missing.display())], &[]),
        2,
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("no dataset at {}", missing.display())),
        "{lines:?}"
    );
    assert!(!run.exists(), "the run directory was created");
    // --resume of a run that does not exist.
    let run = dir.path().join("does-not-exist");
    let lines = error_lines(launch_with(&run, &[], &["--resume"]), 2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("does not exist") && lines[0].contains("--resume"),
        "{lines:?}"
    );
    assert!(!run.exists(), "the run directory was created");
    // The same from a single vae-worker.
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(&run, &[])).arg("--resume");
    let lines = error_lines(c, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!run.exists(), "the run directory was created");
}

/// A copy of MNIST with one training shard damaged.
fn damaged_mnist(dir: &Path) -> PathBuf {
    let copy = dir.join("mnist-damaged");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(mnist()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
    }
    let shard = copy.join("train-00003.bin");
    let mut b = std::fs::read(&shard).unwrap();
    b[1000] ^= 0xff;
    std::fs::write(&shard, b).unwrap();
    copy
}

#[test]
fn an_error_every_rank_meets_is_one_line_without_mpi_s_banner() {
    let dir = tempfile::tempdir().unwrap();
    let data = damaged_mnist(dir.path());
    // In global order every rank reads every shard: both fail alike.
    let lines = error_lines(
        launch(
            &dir.path().join("r"),
            &[&format!("data.url={}", data.display())],
            &[],
        ),
        1,
    );
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("train-00003.bin"))
        .collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    assert!(errors[0].contains("vae-worker: error:"), "{lines:?}");
    let all = lines.join("\n");
    assert!(
        !all.contains("MPI_ABORT") && !all.contains("job failed"),
        "{all}"
    );
    assert!(!all.contains("help message"), "{all}");
    assert!(launch_bin().is_file());
}

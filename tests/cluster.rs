//! Sweeps as one job, TensorBoard's HPARAMS view of them, and (in
//! `slurm.rs`, `hosts.rs`) a real SLURM and workers on separate hosts. A
//! module of the `launch` test binary (its helpers are there).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    assert_no_process_left, env, kill_a_worker, launch_bin, max_diff, ok, params, python, text,
    worker_args, worker_bin,
};

/// `vae-launch --sweep … -- train …` with the test's usual settings.
pub fn sweep(run: &Path, sweeps: &[&str], rpp: usize, sets: &[&str], extra: &[&str]) -> Command {
    let mut c = Command::new(launch_bin());
    env(&mut c);
    for s in sweeps {
        c.args(["--sweep", s]);
    }
    c.args(["--ranks-per-point", &rpp.to_string()])
        .args(extra)
        .arg("--")
        .args(worker_args(run, sets));
    c
}

/// A stand-alone run of one point on `n` ranks under mpirun.
fn stand_alone(run: &Path, n: usize, sets: &[&str]) {
    let mut c = Command::new("mpirun");
    env(&mut c)
        .args(["-np", &n.to_string(), "--oversubscribe"])
        .arg(worker_bin())
        .args(worker_args(run, sets));
    ok(c);
}

fn png_decodes(path: &Path) -> bool {
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(mut r) = png::Decoder::new(std::io::BufReader::new(f)).read_info() else {
        return false;
    };
    let mut buf = vec![0; r.output_buffer_size()];
    r.next_frame(&mut buf)
        .is_ok_and(|i| i.width > 100 && i.height > 100)
}

/// A sweep run by the first test that needs one (2 β × 2 ranks, float64).
fn two_by_two() -> &'static Path {
    static RUN: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = ok(sweep(
            &dir.path().join("sweep"),
            &["model.beta=1,4"],
            2,
            &["train.max_steps=20", "train.dtype=float64"],
            &[],
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("sweep results:"), "{text}");
        dir
    })
    .path()
}

#[test]
fn a_sweep_is_one_job_whose_points_equal_their_stand_alone_runs() {
    let run = two_by_two().join("sweep");
    let dir = tempfile::tempdir().unwrap();
    for beta in ["1", "4"] {
        let point = run.join(format!("model.beta={beta}"));
        let alone = dir.path().join(format!("alone-{beta}"));
        let b = format!("model.beta={beta}");
        stand_alone(
            &alone,
            2,
            &["train.max_steps=20", "train.dtype=float64", &b],
        );
        params(&point);
        params(&alone);
        let d = max_diff(
            &point.join("exported.safetensors"),
            &alone.join("exported.safetensors"),
        );
        assert!(
            d <= 1e-10,
            "point β={beta} differs from its stand-alone run by {d}"
        );
    }
    let csv = std::fs::read_to_string(run.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("model.beta,test_loss,test_recon,test_kl,test_active_units"));
    assert!(lines[1].starts_with("1,") && lines[2].starts_with("4,"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2));
    for figure in ["test_loss", "test_kl", "test_active_units"] {
        assert!(
            png_decodes(&run.join(format!("sweep-{figure}.png"))),
            "{figure}"
        );
    }
}

/// TensorBoard's own server, on loopback, over `logdir`; killed on drop.
struct TensorBoard {
    child: std::process::Child,
    port: u16,
}

impl TensorBoard {
    fn start(logdir: &Path) -> TensorBoard {
        let port = super::emulators::free_port();
        let child = Command::new(Path::new(&python()).with_file_name("tensorboard"))
            .arg("--logdir")
            .arg(logdir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tensorboard");
        TensorBoard { child, port }
    }

    /// POSTs JSON to one of the hparams plugin's routes (through Python's
    /// urllib); the response as JSON, once the server answers.
    fn hparams(&self, route: &str, body: &str) -> serde_json::Value {
        let code = "import sys, urllib.request\nr = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), headers={'Content-Type': 'application/json'})\nprint(urllib.request.urlopen(r, timeout=10).read().decode())";
        let url = format!("http://127.0.0.1:{}/data/plugin/hparams/{route}", self.port);
        let out = Command::new(python())
            .args(["-c", code, &url, body])
            .output()
            .unwrap();
        if !out.status.success() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for TensorBoard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tensorboards_own_server_shows_the_sweep_in_its_hparams_view() {
    let run = two_by_two().join("sweep");
    let tb = TensorBoard::start(&run);
    let groups_request = r#"{"startIndex": 0, "sliceSize": 100, "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"], "colParams": [{"metric": {"tag": "test/loss"}}, {"hparam": "model.beta"}]}"#;
    let deadline = Instant::now() + Duration::from_secs(90);
    let (experiment, groups) = loop {
        let e = tb.hparams("experiment", "{}");
        let g = tb.hparams("session_groups", groups_request);
        let n = g["sessionGroups"].as_array().map_or(0, Vec::len);
        if n == 2 && e["metricInfos"].as_array().is_some_and(|m| !m.is_empty()) {
            break (e, g);
        }
        assert!(
            Instant::now() < deadline,
            "no hparams from TensorBoard: {e} {g}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let names: Vec<&str> = experiment["hparamInfos"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["name"].as_str())
        .collect();
    assert!(
        names.contains(&"model.beta") && names.contains(&"optim.lr"),
        "{names:?}"
    );
    // The swept key first, marked as differing, with its domain; the run's
    // length and data recorded; a weight the β-VAE does not read left out.
    assert_eq!(names[0], "model.beta", "{names:?}");
    let beta = &experiment["hparamInfos"][0];
    assert_eq!(beta["differs"], true, "{beta}");
    assert_eq!(
        beta["domainDiscrete"],
        serde_json::json!([1.0, 4.0]),
        "{beta}"
    );
    assert!(
        names.contains(&"train.max_steps") && names.contains(&"data.url"),
        "{names:?}"
    );
    assert!(!names.contains(&"model.tc_weight"), "{names:?}");
    let mut betas = Vec::new();
    for g in groups["sessionGroups"].as_array().unwrap() {
        betas.push(g["hparams"]["model.beta"].as_f64().unwrap());
        let loss = g["metricValues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"]["tag"] == "test/loss")
            .and_then(|m| m["value"].as_f64())
            .unwrap();
        assert!(loss.is_finite() && loss > 0.0);
        assert_eq!(g["sessions"][0]["status"], "STATUS_SUCCESS");
    }
    betas.sort_by(f64::total_cmp);
    assert_eq!(betas, vec![1.0, 4.0]);
}

fn summary_mtime(point: &Path) -> std::time::SystemTime {
    std::fs::metadata(point.join("summary.json"))
        .and_then(|m| m.modified())
        .unwrap()
}

#[test]
fn kill_9_in_one_group_mid_sweep_retrains_nothing_finished_and_ends_identical() {
    // 4 points over 2 groups of 1 rank: group 0 trains β=1 then β=4,
    // group 1 trains β=2 then β=8.
    let sets = ["train.max_steps=160", "checkpoint.every_steps=20"];
    let axes = ["model.beta=1,2,4,8"];
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    ok(sweep(
        &straight,
        &axes,
        1,
        &sets,
        &["--nproc-per-node", "2"],
    ));
    let run = dir.path().join("killed");
    let child = sweep(
        &run,
        &axes,
        1,
        &sets,
        &["--nproc-per-node", "2", "--max-restarts", "1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Once a first point is done and a second one has a checkpoint.
    let first = run.join("model.beta=1");
    let deadline = Instant::now() + Duration::from_secs(180);
    let second = loop {
        let later = ["model.beta=4", "model.beta=2", "model.beta=8"]
            .map(|p| run.join(p))
            .into_iter()
            .find(|p| p.join("checkpoints/latest").is_file() && !p.join("summary.json").exists());
        if first.join("summary.json").is_file() {
            if let Some(p) = later {
                break p;
            }
        }
        assert!(Instant::now() < deadline, "the sweep never got there");
        std::thread::sleep(Duration::from_millis(50));
    };
    let done_at = summary_mtime(&first);
    kill_a_worker(&run);
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("restart 1 of 1"), "{text}");
    assert!(
        text.contains("model.beta=1 was trained before; not again"),
        "{text}"
    );
    assert_eq!(
        summary_mtime(&first),
        done_at,
        "a finished point was trained again"
    );
    assert!(second.join("summary.json").is_file());
    for p in [
        "model.beta=1",
        "model.beta=2",
        "model.beta=4",
        "model.beta=8",
    ] {
        assert!(
            params(&run.join(p)) == params(&straight.join(p)),
            "point {p} differs from the uninterrupted sweep"
        );
    }
    assert_no_process_left(&run);
}

/// What headless Chromium finds in the page `index`: how many images it
/// has and how many decoded, and the rows of each table of models (a
/// page of the test's own that frames it and counts).
fn in_chromium(index: &Path) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.html");
    let src = format!("file://{}", index.display());
    std::fs::write(
        &probe,
        format!(
            "<!doctype html><html><body><iframe id=\"r\" src=\"{src}\"></iframe><script>\n\
             window.onload = () => {{ const d = document.getElementById('r').contentDocument;\n\
             const imgs = [...d.images];\n\
             const decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;\n\
             const rows = [...d.querySelectorAll('table.models')].map(t => t.tBodies[0].rows.length);\n\
             document.body.setAttribute('data-result', JSON.stringify({{images: imgs.length, decoded, rows}})); }};\n\
             </script></body></html>\n"
        ),
    )
    .unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
        ])
        .args(["--virtual-time-budget=20000", "--dump-dom"])
        .arg(format!("file://{}", probe.display()))
        .output()
        .expect("chromium (scripts/setup.sh --tests installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    let found = dom
        .split("data-result=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("the page did not load in chromium: {dom}"));
    serde_json::from_str(&found.replace("&quot;", "\"")).unwrap()
}

/// `study.csv`'s rows as maps from column to value (no quoted commas but
/// in the point's name, the first column).
fn study_rows(run: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(run.join("study.csv")).unwrap_or_default();
    let mut lines = text.lines();
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    let head: Vec<&str> = head.split(',').collect();
    lines
        .map(|l| {
            let (name, rest) = match l.strip_prefix('"') {
                Some(q) => q.split_once("\",").unwrap(),
                None => l.split_once(',').unwrap(),
            };
            let mut cells = vec![name];
            cells.extend(rest.splitn(head.len() - 1, ','));
            head.iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn a_study_is_one_job_surviving_a_failed_point_and_kill_9() {
    // configs/study/dsprites.toml's six methods, each with 2 of its
    // settings × 2 seeds: 24 points on 2 ranks, a few steps each, on a
    // reduced dSprites; one point diverges, a worker is killed halfway.
    let dir = tempfile::tempdir().unwrap();
    let data = super::dsprites_subset(dir.path());
    let run = dir.path().join("study");
    let config = super::repo().join("configs/study/dsprites.toml");
    let failing = "method=factor_vae,model.tc_weight=2,train.seed=1";
    let sets = [
        format!("data.url={}", data.display()),
        "train.max_steps=6".into(),
        "log.every_steps=3".into(),
        "checkpoint.every_steps=3".into(),
        "eval.metrics=[mig,unsupervised,unsupervised_sampled,irs]".into(),
        "eval.scale=0.02".into(),
        "train.threads=1".into(),
        "train.progress=false".into(),
    ];
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .env("VAE_FAULT_DIVERGE_POINT", failing)
        .args(["--nproc-per-node", "2", "--max-restarts", "1"])
        .args(["--sweep", "train.seed=1..2", "--sweep", "model.beta=1,4"])
        .args([
            "--sweep",
            "model.capacity_max=5,25",
            "--sweep",
            "model.tc_weight=2,6",
        ])
        .args([
            "--sweep",
            "model.dip_lambda_od=1,5",
            "--",
            "train",
            "--config",
        ])
        .arg(&config)
        .arg("--run-dir")
        .arg(&run);
    for s in &sets {
        c.args(["--set", s]);
    }
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Halfway: study.csv, written as points end, has 8 finished.
    let deadline = Instant::now() + Duration::from_secs(300);
    while study_rows(&run)
        .iter()
        .filter(|r| r["status"] == "finished")
        .count()
        < 8
    {
        assert!(Instant::now() < deadline, "the study never got halfway");
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_a_worker(&run);
    let out = child.wait_with_output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("restart 1 of 1"), "{text}");
    assert!(
        text.contains("sweep: 23 finished, 1 failed, 0 not started"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{failing} failed (try 2 of 2)")),
        "{text}"
    );
    let rows = study_rows(&run);
    assert_eq!(rows.len(), 24);
    let methods: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["method"].as_str()).collect();
    assert_eq!(methods.len(), 6, "{methods:?}");
    for r in &rows {
        let want = if r["point"] == failing {
            "failed"
        } else {
            "finished"
        };
        assert_eq!(r["status"], want, "{r:?}");
        if want == "finished" {
            assert!(
                r["test_loss"].parse::<f64>().is_ok_and(f64::is_finite),
                "{r:?}"
            );
            assert_eq!(r["steps"], "6", "{r:?}");
        } else {
            assert!(r["reason"].contains("diverged"), "{r:?}");
        }
    }
    // Both groups were handed points.
    let groups: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["group"].as_str()).collect();
    assert!(groups.contains("0") && groups.contains("1"), "{groups:?}");
    // The report the job wrote at its end, and one of two studies side by
    // side, in a real browser: every figure decodes, a row per model.
    let page = in_chromium(&run.join("report/index.html"));
    assert_eq!(page["rows"], serde_json::json!([24]), "{page}");
    assert!(page["images"].as_u64() >= Some(10), "{page}");
    assert_eq!(page["decoded"], page["images"], "{page}");
    // Mean against sampled total correlation, and IRS among the metrics.
    assert!(run.join("report/0-dsprites-sampled.png").is_file());
    assert!(rows.iter().all(|r| r["status"] != "finished"
        || (r["irs"].parse::<f64>().is_ok()
            && r["sampled_gaussian_total_correlation"]
                .parse::<f64>()
                .is_ok())));
    let both = dir.path().join("both");
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(["study", "report"])
        .arg(&run)
        .arg(&run)
        .arg("--out")
        .arg(&both);
    let said = String::from_utf8_lossy(&ok(c).stdout).into_owned();
    assert!(said.contains("study report: 48 models"), "{said}");
    let page = in_chromium(&both.join("index.html"));
    assert_eq!(page["rows"], serde_json::json!([24, 24]), "{page}");
    assert_eq!(page["decoded"], page["images"], "{page}");
    // A finished model equals the same point trained alone.
    let point = run.join("method=factor_vae,model.tc_weight=6,train.seed=2");
    let alone = dir.path().join("alone");
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(["train", "--config"])
        .arg(point.join("config.toml"))
        .arg("--run-dir")
        .arg(&alone);
    ok(c);
    assert!(
        params(&point) == params(&alone),
        "the study's point differs from its run alone"
    );
    assert_no_process_left(&run);
}

#[test]
fn bad_sweeps_fail_before_any_worker_starts_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("bad");
    for (sweeps, rpp, extra, want) in [
        (&["model.betta=1,2"][..], 1, &[][..], "betta"),
        (&["model.beta=1,two"][..], 1, &[][..], "model.beta"),
        (
            &["model.beta=1,2"][..],
            2,
            &["--nproc-per-node", "3"][..],
            "ranks-per-point 2",
        ),
        (
            &["train.batch_size=128,100"][..],
            3,
            &[][..],
            "train.batch_size",
        ),
    ] {
        let out = sweep(&run, sweeps, rpp, &[], extra).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("starting"), "{err}");
    }
    assert!(!run.exists());
}

#[test]
fn an_error_on_one_rank_of_a_group_is_a_try_of_its_point_and_the_study_goes_on_after_restarts() {
    // One group of 2 ranks, 3 points; world rank 1 alone meets an error each
    // time it starts β=2: the job ends twice (the other rank waits in a
    // collective), each restart counts a try, and the third attempt records
    // β=2 as failed and trains β=4.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("sweep");
    let mut c = sweep(
        &run,
        &["model.beta=1,2,4"],
        2,
        &["train.max_steps=10"],
        &["--nproc-per-node", "2", "--max-restarts", "2"],
    );
    c.env("VAE_FAULT_POINT_ERROR", "1:model.beta=2");
    let out = c.output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("model.beta=2 failed on world rank 1: an injected error on world rank 1"),
        "{text}"
    );
    assert!(
        text.contains("try 1 of 2); trying again from its last checkpoint"),
        "{text}"
    );
    assert!(
        text.contains("sweep: 2 finished, 1 failed, 0 not started"),
        "{text}"
    );
    let failed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("model.beta=2/failed.json")).unwrap())
            .unwrap();
    assert_eq!(failed["tries"], 2, "{failed}");
    assert!(
        failed["reason"].as_str().unwrap().contains("injected"),
        "{failed}"
    );
    for b in ["1", "4"] {
        assert!(
            run.join(format!("model.beta={b}/summary.json")).is_file(),
            "{b}"
        );
    }
}

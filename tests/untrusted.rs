//! Untrusted inputs (issue 31): small hostile files written by the tools that
//! write the real ones (NumPy's header writer and zipfile, h5py, PIL:
//! `tests/python/make_hostile_inputs.py`), imported by the real binary under
//! an address-space limit, so an allocation sized from a header fails the
//! import, not the machine; and hostile host lists given to the real
//! `vae-launch`. A module of the `launch` test binary.
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{env, launch_bin, processes_mentioning, python, repo, text, worker_args, worker_bin};

/// Address space for one import: the worker maps libtorch's CUDA libraries
/// (about 3 GB of it) before it reads a byte; what the import itself may
/// take is the rest.
const ULIMIT_KB: u64 = 5_000_000;

/// `vae-worker ARGS` under `ulimit -v`.
fn limited(args: &[&str]) -> Output {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(format!("ulimit -v {ULIMIT_KB}; exec \"$0\" \"$@\""))
        .arg(worker_bin())
        .args(args);
    env(&mut c).output().unwrap()
}

/// The fixtures in `dir`, with `secret` the file external storage points at.
fn fixtures(dir: &Path, secret: &Path) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo().join("tests/python/make_hostile_inputs.py"))
        .arg(dir)
        .arg(secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The manifest of the dataset in `dir`.
fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// Fails with exit 1 and one line naming the file and `wanted`.
fn refused(out: &Output, file: &str, wanted: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{file}: {}", text(out));
    assert_eq!(err.trim().lines().count(), 1, "{file}: {err}");
    assert!(err.contains(file) && err.contains(wanted), "{file}: {err}");
}

#[test]
fn declared_sizes_allocate_nothing_and_hdf5_never_reads_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("credentials");
    std::fs::write(
        &secret,
        "aws_secret_access_key = THE-SECRET-KEY\n".repeat(400),
    )
    .unwrap();
    let f = fixtures(dir.path(), &secret);
    let path = |k: &str| f[k].as_str().unwrap().to_string();
    let out = |n: &str| dir.path().join(n).display().to_string();
    let cases = [
        (
            "dsprites",
            "huge_imgs.npz",
            "more than the archive's entry can hold",
        ),
        ("shapes3d", "huge_labels.h5", "-byte file can hold"),
        ("shapes3d", "external.h5", "stored in external files"),
        ("shapes3d", "link.h5", "an external link into another file"),
        ("shapes3d", "virtual.h5", "a virtual dataset"),
    ];
    for (i, (name, file, wanted)) in cases.into_iter().enumerate() {
        let to = out(&format!("out{i}"));
        let o = limited(&["data", "prepare", name, "--from", &path(file), "--out", &to]);
        refused(&o, file, wanted);
        assert!(!Path::new(&to).join("manifest.json").exists(), "{file}");
    }
    // Nothing of the secret reached any output.
    for e in walk(dir.path()) {
        let rel = e
            .strip_prefix(dir.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("out") {
            let bytes = std::fs::read(&e).unwrap();
            let hit = bytes.windows(14).any(|w| w == b"THE-SECRET-KEY");
            assert!(!hit, "{} holds the secret", e.display());
        }
    }
    // A grid of 256 values per factor imports (all 256 of them) …
    let to = out("mpi3d256");
    let o = limited(&[
        "data",
        "prepare",
        "mpi3d",
        "--from",
        &path("mpi3d_256.npz"),
        "--factor-sizes",
        "256,1,1,1,1,1,1",
        "--out",
        &to,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let m = manifest(Path::new(&to));
    assert_eq!(
        m["factors"][0]["values"].as_array().unwrap().len(),
        256,
        "{m}"
    );
    assert_eq!(m["splits"]["train"]["samples"], 256, "{m}");
    // … and a grid of 255^7 is refused by its shape, before a test split of
    // it is drawn.
    let o = limited(&[
        "data",
        "prepare",
        "mpi3d",
        "--from",
        &path("mpi3d_256.npz"),
        "--factor-sizes",
        "255,255,255,255,255,255,255",
        "--out",
        &out("mpi3d255"),
    ]);
    refused(&o, "mpi3d_256.npz", "the complete grid");
}

#[test]
fn a_jpeg_declaring_65500_squared_is_skipped_and_named_like_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures(dir.path(), &dir.path().join("none"));
    let jpegs = Path::new(f["jpegs/fine.jpg"].as_str().unwrap())
        .parent()
        .unwrap();
    let to = dir.path().join("set").display().to_string();
    let o = limited(&[
        "data",
        "prepare",
        "images",
        "--from",
        &jpegs.display().to_string(),
        "--crop",
        "148",
        "--size",
        "64",
        "--test-fraction",
        "0",
        "--out",
        &to,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("skipped 1 image: giant (the JPEG header declares 65500 × 65500 pixels"),
        "{err}"
    );
    let m = manifest(Path::new(&to));
    assert_eq!(m["splits"]["train"]["samples"], 1, "{m}");
}

#[test]
fn webdataset_shards_keep_one_json_line_per_sample_and_refuse_cuts_and_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures(dir.path(), &dir.path().join("none"));
    let prepare = |tar: &str| {
        let to = dir.path().join(tar.replace('/', "_"));
        let from = f[tar].as_str().unwrap().to_string();
        let o = limited(&[
            "data",
            "prepare",
            "images",
            "--from",
            &from,
            "--size",
            "16",
            "--test-fraction",
            "0",
            "--out",
            &to.display().to_string(),
        ]);
        (o, to)
    };
    // Labels: a line per sample in split order, each one JSON value.
    let (o, to) = prepare("wds/labels.tar");
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("skipped 1 image: 000001 (its .json is not JSON"),
        "{err}"
    );
    let jsonl = std::fs::read_to_string(to.join("train-labels.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&str> = lines.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["000000", "000002", "000003"], "{jsonl}");
    assert_eq!(
        lines[0]["json"],
        serde_json::json!({"i": 0, "tags": ["a", "b"]})
    );
    assert_eq!(lines[1]["json"], serde_json::Value::Null);
    assert_eq!(lines[2]["json"], serde_json::json!({"i": 3}));
    // Links are skipped and named; the samples stay.
    let (o, to) = prepare("wds/links.tar");
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(
            "skipped 2 images: 000002.jpg (a link in the tar: skipped), 000003.jpg (a link"
        ),
        "{err}"
    );
    let m = manifest(&to);
    assert_eq!(m["splits"]["train"]["samples"], 2, "{m}");
    // A shard cut at an entry boundary, a key met twice: refused, nothing written.
    for (tar, wanted) in [
        ("wds/cut.tar", "cut short"),
        ("wds/dup.tar", "key `a` met twice"),
    ] {
        let (o, to) = prepare(tar);
        refused(&o, tar, wanted);
        assert!(!to.join("manifest.json").exists(), "{tar}");
    }
}

#[test]
fn brace_patterns_are_capped_before_any_name_is_made() {
    let dir = tempfile::tempdir().unwrap();
    for from in ["x{0..99999}y{0..99999}.tar", "{0..10000000}.tar"] {
        let to = dir.path().join("never").display().to_string();
        let o = limited(&["data", "prepare", "images", "--from", from, "--out", &to]);
        refused(&o, from, "expands to more than 1000000 names");
    }
}

/// Every file under `dir`: its path relative to `dir`, and its bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// `vae-worker data prepare dsprites` (generated) into `out`, with `extra`.
fn generate(out: &Path, keep: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "data",
        "prepare",
        "dsprites",
        "--scales",
        keep,
        "--orientations",
        "2",
    ];
    args.extend([
        "--positions",
        "2",
        "--shard-size",
        "4",
        "--test-samples",
        "8",
        "--out",
    ]);
    let out = out.display().to_string();
    args.push(&out);
    args.extend(extra);
    limited(&args)
}

#[test]
fn an_import_over_a_dataset_is_refused_or_staged_and_published_whole() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("ds");
    let o = generate(&ds, "2", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let before = tree(&ds);
    assert_eq!(
        before.keys().filter(|k| k.starts_with("train-")).count(),
        12
    );
    // Over a dataset without --overwrite: one line, nothing touched.
    let o = generate(&ds, "1", &[]);
    refused(
        &o,
        "manifest.json",
        "already holds a dataset; pass --overwrite",
    );
    assert_eq!(tree(&ds), before);
    // An import that fails halfway (the real file's layout, its image
    // stream damaged in the middle): the old dataset as it was.
    let npz = dir
        .path()
        .join("dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz");
    let mut py = Command::new(python());
    py.arg(repo().join("tests/python/make_dsprites_npz.py"))
        .arg(&ds)
        .arg(&npz);
    assert!(py.output().unwrap().status.success());
    let damage = "import sys, zipfile\n\
        p = sys.argv[1]; i = zipfile.ZipFile(p).getinfo('imgs.npy'); b = bytearray(open(p, 'rb').read())\n\
        o = i.header_offset; d = o + 30 + int.from_bytes(b[o+26:o+28], 'little') + int.from_bytes(b[o+28:o+30], 'little')\n\
        m = d + i.compress_size // 2; b[m:m+64] = bytes(64); open(p, 'wb').write(b)\n";
    let mut py = Command::new(python());
    py.args(["-c", damage]).arg(&npz);
    assert!(py.output().unwrap().status.success());
    let ds_s = ds.display().to_string();
    let o = limited(&[
        "data",
        "prepare",
        "dsprites",
        "--from",
        &npz.display().to_string(),
        "--out",
        &ds_s,
        "--shard-size",
        "4",
        "--test-samples",
        "8",
        "--overwrite",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(tree(&ds), before, "{}", text(&o));
    // A smaller import with --overwrite: published whole, nothing stale.
    let o = generate(&ds, "1", &["--overwrite"]);
    assert!(o.status.success(), "{}", text(&o));
    let after = tree(&ds);
    let m: serde_json::Value = serde_json::from_slice(&after["manifest.json"]).unwrap();
    assert_eq!(m["splits"]["train"]["samples"], 24, "{m}");
    let mut named: Vec<String> = ["train", "test"]
        .iter()
        .flat_map(|s| m["splits"][s]["shards"].as_array().unwrap().clone())
        .map(|s| s["object"].as_str().unwrap().to_string())
        .collect();
    named.push("manifest.json".into());
    named.sort();
    assert_eq!(after.keys().cloned().collect::<Vec<_>>(), named);
}

/// An executable script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// `vae-launch ARGS -- train …` under `ulimit -v` (the launcher links no
/// libtorch: 1 GB is ample); its output and how long it took.
fn launch_limited(dir: &Path, args: &[&str]) -> (Output, Duration) {
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg("ulimit -v 1000000; exec \"$0\" \"$@\"")
        .arg(launch_bin())
        .args(args)
        .arg("--")
        .args(worker_args(&dir.join("never"), &[]));
    env(&mut c);
    let began = Instant::now();
    let out = c.output().unwrap();
    (out, began.elapsed())
}

#[test]
fn hostile_host_lists_get_one_line_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let marker = d.join("ran");
    let m = marker.display();
    let inject = script(
        d,
        "inject.sh",
        &format!("#!/bin/sh\necho 'localhost:1'\necho '-oProxyCommand=touch${{IFS}}{m}'\n"),
    );
    let list = script(d, "list.sh", "#!/bin/sh\necho 'a,b:2'\n");
    let huge = script(d, "huge.sh", "#!/bin/sh\necho 'localhost:1000000000000'\n");
    let flood = script(d, "flood.sh", "#!/bin/sh\nexec yes localhost:1\n");
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["--host-discovery", &inject, "--min-hosts", "1"],
            "line 2: `-oProxyCommand",
        ),
        (
            vec!["--host-discovery", &list, "--min-hosts", "1"],
            "`a,b` is not a host name",
        ),
        (
            vec!["--host-discovery", &huge, "--min-hosts", "1"],
            "not a number from 1 to 4096",
        ),
        (
            vec!["--host-discovery", &flood, "--min-hosts", "1"],
            "printed more than 1048576 bytes",
        ),
        (
            vec!["--hosts", "localhost:1000000000000", "--min-hosts", "1"],
            "not a number of workers from 1 to 4096",
        ),
    ];
    for (args, wanted) in cases {
        let (out, took) = launch_limited(d, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert!(took < Duration::from_secs(25), "{args:?} took {took:?}");
    }
    assert!(!marker.exists(), "a host name ran a command");
    assert!(!d.join("never").exists());
}

#[test]
fn a_discovery_script_s_background_child_blocks_nothing_and_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tag = format!("vaedp-bg-{}", std::process::id());
    let bg = script(
        d,
        "bg.sh",
        &format!("#!/bin/sh\necho localhost:1\nsh -c 'sleep 300; : {tag}' &\n"),
    );
    // One host where two are needed: the launcher stops after discovery.
    let (out, took) = launch_limited(d, &["--host-discovery", &bg, "--min-hosts", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(err.contains("--min-hosts 2"), "{err}");
    // Not held for the child's 300 s, nor for the script's 30 s limit.
    assert!(took < Duration::from_secs(25), "took {took:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(processes_mentioning(&tag), Vec::<String>::new());
}

#[test]
fn a_discovery_script_that_hangs_while_the_job_runs_holds_up_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tag = format!("vaedp-hang-{}", std::process::id());
    // The first call (before the job) answers; every poll after hangs.
    let called = d.join("called");
    let hang = script(
        d,
        "hang.sh",
        &format!(
            "#!/bin/sh
if [ -e {c} ]; then sh -c 'sleep 300; : {tag}'; fi
touch {c}
echo localhost:2
",
            c = called.display()
        ),
    );
    let run = d.join("run");
    let mut c = Command::new(launch_bin());
    env(&mut c)
        // Long enough for polls (every 3 s) to begin while it trains.
        .env("VAE_FAULT_SLOW_RANK", "0:100")
        .args(["--host-discovery", &hang, "--min-hosts", "1", "--"])
        .args(worker_args(&run, &["train.max_steps=80"]));
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", text(&out));
    // The poll runs beside the loop that waits for mpirun: the job's end
    // is not held for the script's 30 s (which used to end in this line).
    assert!(!err.contains("did not finish within"), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(processes_mentioning(&tag), Vec::<String>::new());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

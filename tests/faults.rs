//! The holes a cluster finds (issue 17), each closed and proved here with
//! the real binaries, real mpirun and the S3 emulator: sweep points and
//! stray jobs never resume each other's checkpoints; ranks that would train
//! different things stop before the first step; a restart after
//! `--resume-from` continues the run; Ctrl-C at a terminal, `kill -9` of the
//! launcher, a signal between attempts and a pipe held open end promptly and
//! lose nothing; a full disk stops the job with its last checkpoint intact;
//! a second signal aborts uploads; set-up failures and hangs end the job;
//! long waits are no false alarms; a checkpoint cannot send the caller's
//! requests elsewhere; credentials in URLs reach no output. A module of the
//! `launch` test binary.
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::emulators;
use super::{
    assert_no_process_left, env, kill_a_worker, launch, launch_bin, ok, params,
    processes_mentioning, python, text, uninterrupted, wait_for, worker_args, worker_bin, EVERY,
    STEPS,
};

fn with_env(c: &mut Command, vars: &[(String, String)]) {
    for (k, v) in vars {
        c.env(k, v);
    }
}

fn signal(sig: &str, target: &str) {
    assert!(Command::new("kill")
        .args([sig, "--", target])
        .status()
        .unwrap()
        .success());
}

/// Lines of a child's stream as they come.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns every line seen so far.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            let hit = l.contains(needle);
            seen.push(l);
            if hit {
                return;
            }
        }
    }
    panic!("no line with `{needle}`: {}", seen.join("\n"));
}

/// Waits for `child` at most `limit`; kills it and fails if it takes longer.
fn wait_at_most(child: &mut std::process::Child, limit: Duration, what: &str) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vae-launch --nproc-per-node N EXTRA -- train ...`.
fn launch_n(run: &Path, n: usize, sets: &[&str], extra: &[&str]) -> Command {
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .args(["--nproc-per-node", &n.to_string()])
        .args(extra)
        .arg("--")
        .args(worker_args(run, sets));
    c
}

fn mpirun_cmd() -> Command {
    let mut c = Command::new("mpirun");
    env(&mut c).args(["--oversubscribe"]);
    c
}

// ---------------------------------------------------------------------------
// Wrong results

#[test]
fn sweep_points_with_a_bucket_checkpoint_url_keep_their_own_checkpoints() {
    let s3 = emulators::s3("sweep");
    let vars = emulators::s3_env(&s3);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("sweep");
    // One group trains both points in turn: the second would find the first's.
    let mut c = launch_n(
        &run,
        1,
        &[
            "train.max_steps=30",
            "checkpoint.url=s3://sweep/runs/42",
            "model.hidden_dim=64",
            "log.images=0",
        ],
        &["--sweep", "model.beta=1,4"],
    );
    with_env(&mut c, &vars);
    let out = ok(c);
    let all = text(&out);
    assert!(!all.contains("resumed from"), "a point resumed: {all}");
    let exported = |point: &str| {
        let f = dir.path().join(format!("{point}.safetensors"));
        let mut c = Command::new(worker_bin());
        env(&mut c)
            .args(["export", "--checkpoint"])
            .arg(format!("s3://sweep/runs/42/{point}/"))
            .arg("--out")
            .arg(&f);
        with_env(&mut c, &vars);
        ok(c);
        std::fs::read(f).unwrap()
    };
    assert_ne!(
        exported("model.beta=1"),
        exported("model.beta=4"),
        "both points ended with one model"
    );
}

#[test]
fn a_resume_refuses_another_run_s_checkpoints_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared-checkpoints");
    let url = format!("checkpoint.url={}", shared.display());
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let sets = ["train.max_steps=10", &url, "log.images=0"];
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(&one, &sets));
    ok(c);
    // Another job on the same URL, restarted as vae-launch restarts.
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(worker_args(&two, &sets))
        .arg("--resume-if-present");
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let id = |d: &Path| {
        std::fs::read_to_string(d.join("run-id"))
            .unwrap()
            .trim()
            .to_string()
    };
    let line = err
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_default();
    assert!(
        line.contains(&id(&one)) && line.contains(&id(&two)) && line.contains("checkpoint.url"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
    // Resuming it deliberately is allowed.
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(worker_args(
            &two,
            &["train.max_steps=12", &url, "log.images=0"],
        ))
        .arg("--resume-from")
        .arg(&shared);
    ok(c);
}

#[test]
fn ranks_started_with_different_configs_or_versions_stop_before_the_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("mpmd");
    // An MPMD line with a typo: rank 1 trains another beta.
    let mut c = mpirun_cmd();
    c.args(["-np", "1"])
        .arg(worker_bin())
        .args(worker_args(&run, &["train.max_steps=20", "model.beta=1"]))
        .args([":", "-np", "1"])
        .arg(worker_bin())
        .args(worker_args(&run, &["train.max_steps=20", "model.beta=2"]));
    let started = Instant::now();
    let out = c.output().unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let line = all
        .lines()
        .find(|l| l.contains("disagree"))
        .unwrap_or_else(|| panic!("{all}"));
    assert!(
        line.contains("rank 1") && line.contains("model.beta"),
        "{line}"
    );
    assert!(
        !run.join("checkpoints/latest").exists(),
        "it trained: {all}"
    );
    // Another binary version on rank 1.
    let run = dir.path().join("versions");
    let mut c = mpirun_cmd();
    c.args(["-np", "2", "-x", "VAE_FAULT_VERSION=1:9.9.9-other"])
        .arg(worker_bin())
        .args(worker_args(&run, &["train.max_steps=20"]));
    let out = c.output().unwrap();
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.lines()
            .any(|l| l.contains("disagree") && l.contains("9.9.9-other")),
        "{all}"
    );
}

#[test]
fn a_restart_after_resume_from_continues_from_the_run_s_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("from");
    let every = "checkpoint.every_steps=10";
    ok(launch(&run, &["train.max_steps=40", every], &[]));
    let x = run.join("checkpoints/step-0000000030");
    assert!(x.join("checkpoint.json").is_file());
    // Continue from step 30 with keep_last = 1: X is pruned as the run goes
    // on, and a worker is killed once step 60 is written.
    let mut c = launch(
        &run,
        &["train.max_steps=150", every, "checkpoint.keep_last=1"],
        &["--max-restarts", "1"],
    );
    c.arg("--resume-from").arg(&x);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_lines = lines_of(child.stdout.take().unwrap());
    let err_lines = lines_of(child.stderr.take().unwrap());
    wait_for(&run.join("checkpoints/step-0000000060"), "step 60");
    kill_a_worker(&run);
    let code = wait_at_most(&mut child, Duration::from_secs(180), "the restarted job");
    let out: Vec<String> = out_lines.try_iter().collect();
    let err: Vec<String> = err_lines.try_iter().collect();
    let all = format!("{}\n{}", out.join("\n"), err.join("\n"));
    assert_eq!(code, 0, "{all}");
    assert!(all.contains("restart 1 of 1"), "{all}");
    let resumed: Vec<&String> = out.iter().filter(|l| l.contains("resumed from")).collect();
    assert_eq!(resumed.len(), 2, "{all}");
    assert!(
        !resumed[1].contains("step-0000000030"),
        "the restart went back to X: {all}"
    );
    assert!(!x.exists(), "keep_last should have pruned X");
}

// ---------------------------------------------------------------------------
// Lost work

/// The launcher in a process group of its own, as a shell starts a
/// foreground job: a terminal's Ctrl-C signals the whole group.
fn launch_in_group(run: &Path, sets: &[&str], extra: &[&str]) -> std::process::Child {
    let mut c = launch(run, sets, extra);
    c.process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn ctrl_c_or_sigterm_to_the_process_group_checkpoints_and_ends_130_or_143() {
    let dir = tempfile::tempdir().unwrap();
    for (sig, code) in [("-INT", 130), ("-TERM", 143)] {
        let run = dir.path().join(format!("group{sig}"));
        let child = launch_in_group(&run, &[STEPS, EVERY], &[]);
        wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
        signal(sig, &format!("-{}", child.id()));
        let out = child.wait_with_output().unwrap();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(code), "{sig}: {all}");
        assert!(all.contains("stopped by a signal at step"), "{all}");
        assert_no_process_left(&run);
        let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
        let step: u64 = latest.trim().trim_start_matches("step-").parse().unwrap();
        assert!(step < 300, "stopped at {step}");
        assert!(run
            .join("checkpoints")
            .join(latest.trim())
            .join("checkpoint.json")
            .is_file());
        if sig == "-INT" {
            let mut c = launch(&run, &[STEPS, EVERY], &[]);
            c.arg("--resume");
            ok(c);
            assert!(
                params(&run) == uninterrupted(),
                "resume after Ctrl-C differs"
            );
        }
    }
}

#[test]
fn kill_9_of_the_launcher_ends_mpirun_and_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("orphaned");
    let mut child = launch(&run, &["train.max_steps=100000", EVERY], &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    signal("-KILL", &child.id().to_string());
    let _ = child.wait();
    assert_no_process_left(&run);
}

#[test]
fn a_signal_between_attempts_stops_the_job_there() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("between");
    let mut child = launch(
        &run,
        &["train.max_steps=100000", EVERY],
        &["--max-restarts", "3"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let err = lines_of(child.stderr.take().unwrap());
    wait_for(&run.join("checkpoints/latest"), "a first checkpoint");
    kill_a_worker(&run);
    let mut seen = Vec::new();
    wait_line(&err, "restart 1 of 3", &mut seen);
    signal("-TERM", &child.id().to_string());
    let code = wait_at_most(&mut child, Duration::from_secs(20), "the launcher");
    seen.extend(err.try_iter());
    let all = seen.join("\n");
    assert_eq!(code, 143, "{all}");
    let starts = seen
        .iter()
        .filter(|l| l.contains("[launcher] starting"))
        .count();
    assert_eq!(starts, 1, "another attempt started: {all}");
    assert_no_process_left(&run);
}

#[test]
fn an_output_pipe_held_open_after_the_job_does_not_block_the_launcher() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("fake-mpirun.pid");
    // An mpirun that exits at once; meanwhile a process that is not the
    // launcher's (as one in uninterruptible sleep would) holds its output open.
    let fake = dir.path().join("fake-mpirun");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho $$ > {0}.tmp && mv {0}.tmp {0}\nsleep 1\necho done\nexit 0\n",
            pid_file.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let run = dir.path().join("held");
    let mut child = Command::new(launch_bin());
    env(&mut child)
        .arg("--mpirun")
        .arg(&fake)
        .arg("--")
        .args(worker_args(&run, &["train.max_steps=5"]))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = child.spawn().unwrap();
    wait_for(&pid_file, "the fake mpirun");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec sleep 60 2>> /proc/{pid}/fd/2 >> /proc/{pid}/fd/1"
        ))
        .spawn()
        .unwrap();
    let code = wait_at_most(&mut child, Duration::from_secs(15), "the launcher");
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(code, 0);
}

/// A tmpfs of `size` mounted at a fresh directory; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount (the tests run as root)");
        assert!(out.status.success(), "{}", text(&out));
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Leaves about `free` bytes free.
    fn fill_to(&self, free: u64) {
        let st = nix_free(self.path());
        let filler = st.saturating_sub(free);
        let f = std::fs::File::create(self.path().join("filler")).unwrap();
        use std::io::Write;
        let mut f = std::io::BufWriter::new(f);
        let chunk = vec![7u8; 1 << 16];
        let mut left = filler;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = f.flush();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Free bytes of the file system at `p` (df).
fn nix_free(p: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Nothing half-written under a final name in `run`: every PNG decodes,
/// every JSON parses, TensorBoard reads every event record, no staged or
/// temporary file is left, and `latest` names a checkpoint that `export`
/// reads and verifies.
fn assert_whole(run: &Path, checkpoints: &Path) {
    for f in files_under(run).into_iter().chain(files_under(checkpoints)) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".tmp-") && !name.contains('#'),
            "left behind: {}",
            f.display()
        );
        match f.extension().and_then(|e| e.to_str()) {
            Some("png") => {
                let decoder = png::Decoder::new(std::fs::File::open(&f).unwrap());
                let mut reader = decoder.read_info().expect("a whole PNG");
                let mut buf = vec![0; reader.output_buffer_size()];
                reader
                    .next_frame(&mut buf)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            }
            Some("json") => {
                let t = std::fs::read_to_string(&f).unwrap();
                serde_json::from_str::<serde_json::Value>(&t)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            }
            _ => {}
        }
    }
    let code = "import sys\nfrom tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader\nfrom tensorboard.compat.proto import event_pb2\nn = 0\nfor r in RawEventFileLoader(sys.argv[1], detect_file_replacement=False).Load():\n    event_pb2.Event.FromString(r); n += 1\nprint(n)";
    for f in files_under(&run.join("tensorboard")) {
        let size = std::fs::metadata(&f).unwrap().len();
        let out = Command::new(python())
            .args(["-c", code])
            .arg(&f)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        // A whole file: its records add up to its size (read back by hand).
        let bytes = std::fs::read(&f).unwrap();
        let mut at = 0usize;
        while at + 12 <= bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            at += 12 + len + 4;
        }
        assert_eq!(
            at as u64,
            size,
            "{}: a partial record at the end",
            f.display()
        );
    }
    if let Ok(latest) = std::fs::read_to_string(checkpoints.join("latest")) {
        let c = checkpoints.join(latest.trim());
        let mut e = Command::new(worker_bin());
        env(&mut e)
            .args(["export", "--checkpoint"])
            .arg(&c)
            .arg("--out")
            .arg(std::env::temp_dir().join(format!("whole-{}.safetensors", std::process::id())));
        ok(e);
    }
}

#[test]
fn a_full_disk_stops_the_job_naming_the_path_with_its_last_checkpoint_intact() {
    // Checkpoints fill the disk: about 7.8 MB each, keep_last 3, on 20 MB.
    let disk = SmallDisk::new("20m");
    let run = disk.path().join("run");
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(
        &run,
        &[
            "train.max_steps=200",
            "checkpoint.every_steps=10",
            "log.images=0",
        ],
    ));
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(&disk.path().display().to_string()) && lines[0].contains("No space left"),
        "{err}"
    );
    assert!(
        run.join("checkpoints/latest").is_file(),
        "no checkpoint survived: {err}"
    );
    assert_whole(&run, &run.join("checkpoints"));

    // TensorBoard, pictures and JSON fill it (checkpoints elsewhere).
    let disk = SmallDisk::new("4m");
    let run = disk.path().join("run");
    let elsewhere = tempfile::tempdir().unwrap();
    let ckpts = elsewhere.path().join("checkpoints");
    std::fs::create_dir_all(&run).unwrap();
    disk.fill_to(300 << 10);
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(
        &run,
        &[
            "train.epochs=3",
            "log.every_steps=1",
            "checkpoint.every_steps=50",
            &format!("checkpoint.url={}", ckpts.display()),
        ],
    ));
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(&run.display().to_string()) && lines[0].contains("No space left"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_whole(&run, &ckpts);
}

#[test]
fn a_second_signal_aborts_open_uploads() {
    let s3 = emulators::s3("uploads");
    let vars = emulators::s3_env(&s3);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("big");
    // A model whose tensors are above the multipart threshold (16 MiB),
    // uploaded slowly.
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(worker_args(
            &run,
            &[
                "model.hidden_dim=3000",
                "train.max_steps=100000",
                "checkpoint.every_steps=3",
                "checkpoint.url=s3://uploads/ck",
                "log.images=0",
            ],
        ))
        .env("VAE_FAULT_SLOW_PART_MS", "4000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    with_env(&mut c, &vars);
    let mut child = c.spawn().unwrap();
    let uploads = || {
        let code = "import sys, boto3\nc = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x')\nprint(len(c.list_multipart_uploads(Bucket='uploads').get('Uploads', [])))";
        let out = Command::new(python())
            .args(["-c", code, &s3.endpoint()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<usize>()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while uploads() == 0 {
        assert!(Instant::now() < deadline, "no upload started");
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = child.id().to_string();
    signal("-TERM", &pid);
    std::thread::sleep(Duration::from_millis(300));
    signal("-TERM", &pid);
    let code = wait_at_most(&mut child, Duration::from_secs(30), "the worker");
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, 143, "{err}");
    assert!(err.contains("stopping at once"), "{err}");
    assert_eq!(uploads(), 0, "multipart uploads left open: {err}");
}

// ---------------------------------------------------------------------------
// Hangs and false alarms

#[test]
fn a_worker_frozen_after_the_run_does_not_hold_the_job() {
    // Rank 1 stops itself (SIGSTOP) once the run is over, before MPI is
    // finalised: rank 0 is gone, no watchdog runs, mpirun waits for it.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut c = launch_n(&run, 2, &["train.max_steps=30"], &[]);
    c.env("VAE_FAULT_STOP_AT_END", "1");
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err_lines = lines_of(child.stderr.take().unwrap());
    let code = wait_at_most(
        &mut child,
        Duration::from_secs(120),
        "a job with a frozen worker",
    );
    let err: Vec<String> = err_lines.try_iter().collect();
    assert_eq!(code, 0, "{}", err.join("\n"));
    assert!(
        err.iter()
            .any(|l| l.contains("rank 0 finished the run 30 s ago but the job has not ended")),
        "{}",
        err.join("\n")
    );
    assert!(run.join("summary.json").is_file());
    assert_no_process_left(&run);
}

#[test]
fn a_set_up_failure_or_hang_on_one_rank_ends_the_job() {
    let dir = tempfile::tempdir().unwrap();
    for (fault, expect) in [
        ("VAE_FAULT_CONNECT_FAIL=1", "injected set-up failure"),
        ("VAE_FAULT_SETUP_HANG=1", "set-up"),
    ] {
        let run = dir.path().join(fault.split('=').next().unwrap());
        let mut c = mpirun_cmd();
        c.args(["-np", "2", "-x", fault])
            .arg(worker_bin())
            .args(worker_args(
                &run,
                &["train.max_steps=20", "dist.wait_timeout_s=3"],
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let out_lines = lines_of(child.stdout.take().unwrap());
        let err_lines = lines_of(child.stderr.take().unwrap());
        let code = wait_at_most(&mut child, Duration::from_secs(40), fault);
        let all: Vec<String> = out_lines.try_iter().chain(err_lines.try_iter()).collect();
        let all = all.join("\n");
        assert_ne!(code, 0, "{fault}: {all}");
        assert!(all.contains(expect), "{fault}: {all}");
        assert_no_process_left(&run);
    }
}

#[test]
fn long_waits_for_other_ranks_are_no_false_alarm() {
    let dir = tempfile::tempdir().unwrap();
    // A sweep group done early waits for the other past dist.wait_timeout_s.
    let data = super::small_shards(dir.path());
    let run = dir.path().join("sweep");
    let mut args = super::shard_args(&run, &data, &["dist.wait_timeout_s=3", "train.epochs=100"]);
    args.insert(0, "--".into());
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .args(["--nproc-per-node", "2", "--sweep", "train.max_steps=5,1500"])
        .args(args);
    let out = ok(c);
    assert!(text(&out).contains("sweep done"), "{}", text(&out));
    // Rank 0 writes a checkpoint in the step for longer than dist.timeout_s.
    let run = dir.path().join("sync");
    let mut args = super::shard_args(
        &run,
        &data,
        &[
            "train.max_steps=20",
            "checkpoint.every_steps=10",
            "checkpoint.asynchronous=false",
            "dist.timeout_s=2",
        ],
    );
    args.insert(0, "--".into());
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .args(["--nproc-per-node", "2"])
        .args(args)
        .env("VAE_FAULT_SLOW_CHECKPOINT_MS", "4000");
    ok(c);
    // One rank's shard fetches are slower than dist.timeout_s.
    let run = dir.path().join("fetch");
    let mut args = super::shard_args(
        &run,
        &data,
        &["data.order=shard", "train.max_steps=20", "dist.timeout_s=2"],
    );
    args.insert(0, "--".into());
    let mut c = Command::new(launch_bin());
    env(&mut c)
        .args(["--nproc-per-node", "2"])
        .args(args)
        .env("VAE_FAULT_SLOW_FETCH", "1:3500");
    ok(c);
}

// ---------------------------------------------------------------------------
// Secrets

#[test]
fn eval_takes_storage_settings_from_the_caller_never_from_the_checkpoint() {
    let s3 = emulators::s3("data");
    let vars = emulators::s3_env(&s3);
    let dir = tempfile::tempdir().unwrap();
    let local = super::dsprites_subset(dir.path());
    let mut c = super::importer();
    c.args(["data", "prepare", "dsprites", "--out", "s3://data/ds"])
        .args(["--scales", "2", "--orientations", "2", "--positions", "8"])
        .args(["--test-samples", "500"]);
    with_env(&mut c, &vars);
    ok(c);
    let run = dir.path().join("run");
    let mut c = Command::new(worker_bin());
    env(&mut c).args(worker_args(
        &run,
        &["data.url=s3://data/ds", "train.max_steps=5", "log.images=0"],
    ));
    with_env(&mut c, &vars);
    ok(c);
    // A listener the checkpoint will name as its storage endpoint.
    let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    evil.set_nonblocking(true).unwrap();
    let port = evil.local_addr().unwrap().port();
    let latest = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    let ckpt = run.join("checkpoints").join(latest.trim());
    let code = "import sys, json, hashlib, re\nd, port = sys.argv[1], sys.argv[2]\ncfg = open(d + '/config.toml').read()\ncfg = re.sub(r'(?m)^endpoint = \".*\"$', 'endpoint = \"http://127.0.0.1:' + port + '\"', cfg)\nassert 'endpoint = \"http://127.0.0.1' in cfg\nopen(d + '/config.toml', 'w').write(cfg)\nm = json.load(open(d + '/checkpoint.json'))\nfor f in m['files']:\n    if f['name'] == 'config.toml':\n        b = cfg.encode(); f['bytes'] = len(b); f['sha256'] = hashlib.sha256(b).hexdigest()\njson.dump(m, open(d + '/checkpoint.json', 'w'))";
    let out = Command::new(python())
        .args(["-c", code])
        .arg(&ckpt)
        .arg(port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let json = dir.path().join("eval.json");
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(["eval", "--checkpoint"])
        .arg(&ckpt)
        .args(["--metrics", "mig", "--scale", "0.01", "--out"])
        .arg(&json);
    with_env(&mut c, &vars);
    let out = ok(c);
    assert!(
        evil.accept().is_err(),
        "eval sent a request to the checkpoint's endpoint: {}",
        text(&out)
    );
    // --data names the dataset to evaluate on.
    let mut c = Command::new(worker_bin());
    env(&mut c)
        .args(["eval", "--checkpoint"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&local)
        .args(["--metrics", "mig", "--scale", "0.01", "--out"])
        .arg(&json);
    ok(c);
}

#[test]
fn credentials_in_urls_reach_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = super::dsprites_subset(dir.path());
    let url = |secret: &str| format!("file://{}?sv=2022&sig={secret}", data.display());
    let run = dir.path().join("sweep");
    let mut c = launch_n(
        &run,
        1,
        &["train.max_steps=10", "log.images=4", "eval.scale=0.01"],
        &[
            "--sweep",
            &format!("data.url={},{}", url("SeCrEtOnE"), url("SeCrEtTwO")),
        ],
    );
    c.arg("--config")
        .arg(super::repo().join("configs/dsprites_beta_vae.toml"));
    c.env("AWS_SESSION_TOKEN", "SeCrEtToKeN");
    let out = ok(c);
    let mut everything = text(&out).into_bytes();
    for f in files_under(&run) {
        everything.extend(f.display().to_string().into_bytes());
        everything.extend(std::fs::read(&f).unwrap());
    }
    let haystack = String::from_utf8_lossy(&everything);
    for secret in ["SeCrEtOnE", "SeCrEtTwO", "SeCrEtToKeN"] {
        assert!(!haystack.contains(secret), "{secret} leaked");
    }
    assert!(haystack.contains("[redacted]"));
}

// ---------------------------------------------------------------------------
// Bad input

#[test]
fn a_hand_started_mpirun_without_run_dir_makes_one_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> =
        worker_args(Path::new("unused"), &["train.max_steps=5", "log.images=0"])
            .into_iter()
            .skip(3) // no --run-dir: the default name
            .collect();
    let worker = worker_bin().display().to_string();
    // A sweep of two groups (each group's rank 0 writes its point), rank 1
    // starting 1.5 s late: its clock would name another directory.
    let sweep = ["--sweep", "model.beta=1,4"];
    let mut c = mpirun_cmd();
    c.current_dir(dir.path())
        .args(["-np", "1", &worker])
        .arg("train")
        .args(&args)
        .args(sweep)
        .args([":", "-np", "1", "sh", "-c"])
        .arg(format!(
            "sleep 1.5; exec {worker} train {} {}",
            args.join(" "),
            sweep.join(" ")
        ));
    ok(c);
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
}

// ---------------------------------------------------------------------------
// Faults survived, as a figure (scripts/chaos.sh N runs N trials)

#[test]
fn chaos_trials_end_bit_identical_with_no_process_left() {
    let trials: usize = std::env::var("VAE_CHAOS_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let s3 = emulators::s3("chaos");
    let vars = emulators::s3_env(&s3);
    let dir = tempfile::tempdir().unwrap();
    let mut c = super::importer();
    c.args(["data", "prepare", "mnist", "--idx-dir"])
        .arg(emulators::cache().join("mnist-idx"))
        .args(["--out", "s3://chaos/mnist"]);
    with_env(&mut c, &vars);
    ok(c);
    let sets = |i: usize| {
        vec![
            "data.url=s3://chaos/mnist".to_string(),
            format!("checkpoint.url=s3://chaos/runs/{i}/"),
            "model.hidden_dim=100".into(),
            "train.max_steps=400".into(),
            "checkpoint.every_steps=20".into(),
            "log.images=0".into(),
            "dist.timeout_s=5".into(),
            // A rank stopped in set-up (the data download) is seen after this.
            "dist.wait_timeout_s=30".into(),
            "storage.timeout_s=2".into(),
            "storage.retry_timeout_s=60".into(),
        ]
    };
    let start = |i: usize, extra: &[&str], resume: bool| {
        let run = dir.path().join(format!("trial-{i}"));
        let s: Vec<String> = sets(i);
        let s: Vec<&str> = s.iter().map(String::as_str).collect();
        let mut c = launch(&run, &s, extra);
        if resume {
            c.arg("--resume");
        }
        with_env(&mut c, &vars);
        c.process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        (run, c)
    };
    let export = |i: usize| {
        let f = dir.path().join(format!("params-{i}.safetensors"));
        let mut c = Command::new(worker_bin());
        env(&mut c)
            .args([
                "export",
                "--checkpoint",
                &format!("s3://chaos/runs/{i}/"),
                "--out",
            ])
            .arg(&f);
        with_env(&mut c, &vars);
        ok(c);
        std::fs::read(f).unwrap()
    };
    let (_, reference) = start(0, &[], false);
    let began = Instant::now();
    ok(reference);
    // Faults land while a run trains: within 80% of an uninterrupted one.
    let span = began.elapsed().mul_f64(0.8);
    let want = export(0);
    let kinds = [
        "kill -9 of a worker",
        "kill -STOP of a worker",
        "storage frozen",
        "signal to the group, then --resume",
    ];
    let rng = std::collections::hash_map::RandomState::new();
    let mut report = Vec::new();
    for i in 1..=trials {
        use std::hash::{BuildHasher, Hasher};
        let mut h = rng.build_hasher();
        h.write_usize(i);
        let r = h.finish();
        let kind = (r % 4) as usize;
        let delay = Duration::from_millis(300).max(span.mul_f64(((r >> 8) % 1000) as f64 / 1000.0));
        let (run, mut c) = start(i, &["--max-restarts", "3"], false);
        let mut child = c.spawn().unwrap();
        let out_lines = lines_of(child.stdout.take().unwrap());
        let err_lines = lines_of(child.stderr.take().unwrap());
        std::thread::sleep(delay);
        let workers = || {
            processes_mentioning(&run.display().to_string())
                .into_iter()
                .filter_map(|p| p.split(':').next().map(str::to_string))
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "vae-worker")
                })
                .collect::<Vec<_>>()
        };
        let victim = workers().get((r as usize >> 32) % 2).cloned();
        let landed = child.try_wait().unwrap().is_none();
        match (kind, victim) {
            (0, Some(v)) => signal("-KILL", &v),
            (1, Some(v)) => signal("-STOP", &v),
            (2, _) => {
                s3.freeze(true);
                std::thread::sleep(Duration::from_secs(4));
                s3.freeze(false);
            }
            (3, _) => signal("-TERM", &format!("-{}", child.id())),
            _ => {} // the job had ended already: no fault landed
        }
        let code = wait_at_most(&mut child, Duration::from_secs(300), kinds[kind]);
        let mut lines: Vec<String> = out_lines.try_iter().chain(err_lines.try_iter()).collect();
        if kind == 3 && code == 143 {
            let (_, mut c) = start(i, &["--max-restarts", "3"], true);
            let out = c.output().unwrap();
            lines.push(text(&out));
            assert!(
                out.status.success(),
                "trial {i} resume: {}",
                lines.join("\n")
            );
        } else {
            assert_eq!(code, 0, "trial {i} ({}): {}", kinds[kind], lines.join("\n"));
        }
        assert_no_process_left(&run);
        let identical = export(i) == want;
        report.push(format!(
            "trial {i}: {} after {:.1} s{}: {}",
            kinds[kind],
            delay.as_secs_f64(),
            if landed {
                ""
            } else {
                " (the run had ended: no fault)"
            },
            if identical {
                "bit-identical"
            } else {
                "DIFFERS"
            }
        ));
        assert!(
            identical,
            "trial {i} ({}) differs: {}",
            kinds[kind],
            lines.join("\n")
        );
    }
    eprintln!("chaos: {} trials\n{}", trials, report.join("\n"));
}

//! A real one-node SLURM (Debian's `slurm-wlm` 22.05 and `munge`, which
//! `scripts/setup.sh` installs): the test writes a minimal `slurm.conf` in a
//! temporary directory, starts munged (if it is not running), slurmctld and
//! slurmd, and submits the project's own `scripts/slurm/*.sbatch` with
//! `sbatch --wait`, overriding nodes, tasks and GPUs on the command line. A
//! module of the `launch` test binary.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{env, max_diff, mnist, params, repo, worker_bin};

/// The cluster; stopped (daemons killed) when dropped.
struct Slurm {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

fn run(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("{c:?}: {e} (is SLURM installed? run scripts/setup.sh)"))
}

fn sh(script: &str) -> Output {
    run(Command::new("sh").args(["-c", script]))
}

fn hostname() -> String {
    String::from_utf8_lossy(&sh("hostname -s").stdout)
        .trim()
        .to_string()
}

impl Slurm {
    fn start() -> Slurm {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host = hostname();
        // More CPUs than the machine has (config_overrides lets slurmd take
        // the config's word): a 4-task sweep fits on a 2-core machine.
        let cpus = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(8);
        let conf = d.join("slurm.conf");
        let text = format!(
            "ClusterName=vaedp\nSlurmctldHost={host}\nSlurmUser=root\nSlurmdUser=root\n\
             AuthType=auth/munge\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
             SlurmctldPort={p1}\nSlurmdPort={p2}\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nMpiDefault=none\n\
             ReturnToService=2\nKillWait=60\nSlurmdParameters=config_overrides\n\
             NodeName={host} CPUs={cpus} RealMemory=1000 State=UNKNOWN\n\
             PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8\n",
            d = d.display(),
            p1 = super::emulators::free_port(),
            p2 = super::emulators::free_port(),
        );
        std::fs::write(&conf, text).unwrap();
        for sub in ["state", "spool"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // munge: the package's key, its own user, one daemon for the machine.
        let munge = sh("munge -n | unmunge >/dev/null 2>&1 || { mkdir -p /run/munge && chown munge:munge /run/munge && runuser -u munge -- /usr/sbin/munged; sleep 1; munge -n | unmunge >/dev/null; }");
        assert!(
            munge.status.success(),
            "munged would not start: {}",
            String::from_utf8_lossy(&munge.stderr)
        );
        let s = Slurm { dir, conf };
        for daemon in ["slurmctld", "slurmd"] {
            let out = run(Command::new(format!("/usr/sbin/{daemon}"))
                .arg("-f")
                .arg(&s.conf));
            assert!(
                out.status.success(),
                "{daemon}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = run(s.cmd("sinfo").args(["-h", "-o", "%t"]));
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "idle" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the node never got idle (state {state:?}): {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        s
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        env(&mut c)
            .env("SLURM_CONF", &self.conf)
            .current_dir(repo());
        c
    }

    fn log(&self) -> String {
        ["slurmctld.log", "slurmd.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `sbatch --parsable` of a project script with `run_dir`; its job id.
    fn submit(
        &self,
        script: &str,
        opts: &[&str],
        vars: &[(&str, &str)],
        args: &[String],
    ) -> String {
        let mut c = self.cmd("sbatch");
        c.args([
            "--parsable",
            "--nodes=1",
            "--gpus-per-node=0",
            "--cpus-per-task=1",
        ])
        .args(opts)
        .arg(format!("--output={}/%j.out", self.dir.path().display()))
        .arg(script)
        .args(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = run(&mut c);
        assert!(
            out.status.success(),
            "sbatch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `train.sbatch` on 2 tasks into `run_dir` with `sets`; its job id.
    fn train(&self, run_dir: &Path, sets: &[&str]) -> String {
        let rd = run_dir.display().to_string();
        self.submit(
            "scripts/slurm/train.sbatch",
            &["--ntasks-per-node=2"],
            &[("RUN_DIR", &rd)],
            &set_args(sets),
        )
    }

    fn state(&self, job: &str) -> String {
        let out = run(self.cmd("scontrol").args(["show", "job", job]));
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("JobState="))
            .unwrap_or("")
            .to_string()
    }

    /// Waits for `job` to end; its final state.
    fn wait(&self, job: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let s = self.state(job);
            if [
                "COMPLETED",
                "FAILED",
                "CANCELLED",
                "TIMEOUT",
                "NODE_FAIL",
                "OUT_OF_MEMORY",
            ]
            .contains(&s.as_str())
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} still {s}: {}",
                self.output(job)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn output(&self, job: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{job}.out"))).unwrap_or_default()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = self.cmd("scancel").arg("--user=root").output();
        for pid in ["slurmd.pid", "slurmctld.pid"] {
            if let Ok(p) = std::fs::read_to_string(self.dir.path().join(pid)) {
                let _ = Command::new("kill").arg(p.trim()).status();
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn set_args(sets: &[&str]) -> Vec<String> {
    let url = format!("data.url={}", mnist());
    [url.as_str(), "train.progress=false", "train.threads=1"]
        .iter()
        .chain(sets)
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect()
}

/// The reference: the same training on 2 ranks under mpirun.
fn mpirun_reference(run: &Path, sets: &[&str]) {
    let mut c = Command::new("mpirun");
    env(&mut c)
        .args(["-np", "2", "--oversubscribe"])
        .arg(worker_bin())
        .args(["train", "--run-dir"])
        .arg(run)
        .args(set_args(sets));
    let out = run_ok(c);
    drop(out);
}

fn run_ok(mut c: Command) -> Output {
    let out = run(&mut c);
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn a_real_slurm_runs_training_a_sweep_and_a_requeued_job_to_identical_results() {
    let slurm = Slurm::start();
    let dir = tempfile::tempdir().unwrap();

    // Training: train.sbatch on 2 tasks equals mpirun -np 2.
    let sets = ["train.max_steps=60", "train.dtype=float64"];
    let reference = dir.path().join("reference");
    mpirun_reference(&reference, &sets);
    let run_dir = dir.path().join("sbatch");
    let job = slurm.train(&run_dir, &sets);
    assert_eq!(slurm.wait(&job), "COMPLETED", "{}", slurm.output(&job));
    params(&reference);
    params(&run_dir);
    let d = max_diff(
        &reference.join("exported.safetensors"),
        &run_dir.join("exported.safetensors"),
    );
    assert!(d <= 1e-10, "the SLURM job differs from mpirun by {d}");

    // A sweep: sweep.sbatch, 2 points on 4 tasks in groups of 2.
    let sweep_dir = dir.path().join("sweep");
    let sd = sweep_dir.display().to_string();
    let vars = [
        ("RUN_DIR", sd.as_str()),
        ("SWEEP", "model.beta=1,4"),
        ("RANKS_PER_POINT", "2"),
    ];
    let job = slurm.submit(
        "scripts/slurm/sweep.sbatch",
        &["--ntasks-per-node=4"],
        &vars,
        &set_args(&["train.max_steps=20"]),
    );
    assert_eq!(slurm.wait(&job), "COMPLETED", "{}", slurm.output(&job));
    let csv = std::fs::read_to_string(sweep_dir.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(slurm.output(&job).contains("sweep results:"));

    // Preemption: requeued mid-run, the job resumes and ends identical.
    let sets = ["train.max_steps=400", "checkpoint.every_steps=50"];
    let straight = dir.path().join("straight");
    mpirun_reference(&straight, &sets);
    let run_dir = dir.path().join("requeued");
    let job = slurm.train(&run_dir, &sets);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run_dir.join("checkpoints/latest").is_file() {
        assert!(
            Instant::now() < deadline,
            "no checkpoint: {}",
            slurm.output(&job)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = run(slurm.cmd("scontrol").args(["requeue", &job]));
    assert!(
        out.status.success(),
        "requeue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A requeued job waits (BeginTime) before it may start again: not here.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = slurm.state(&job);
        if s == "PENDING" {
            let _ = run(slurm.cmd("scontrol").args([
                "update",
                &format!("JobId={job}"),
                "StartTime=now",
            ]));
        }
        if s == "COMPLETED" || s == "FAILED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} is {s}: {}",
            slurm.output(&job)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = slurm.output(&job);
    assert_eq!(slurm.wait(&job), "COMPLETED", "{text}");
    assert!(
        text.contains("resumed from"),
        "the requeued job did not resume: {text}"
    );
    assert!(
        params(&run_dir) == params(&straight),
        "the requeued job differs: {text}"
    );
}

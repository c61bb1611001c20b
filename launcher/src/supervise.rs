//! Running and supervising a planned job: start `mpirun` (which starts the
//! workers) in a process group of its own, so a Ctrl-C at the terminal
//! reaches the launcher alone, and tied to the launcher's life (a parent-death
//! signal: `kill -9` of the launcher takes mpirun with it, and the workers
//! follow their mpirun); prefix each output line with its rank (credentials
//! taken out); forward signals (the first SIGINT/SIGTERM becomes SIGUSR1,
//! which mpirun passes to every worker: finish the step, checkpoint, exit —
//! repeated while the job runs, so a worker still starting gets it too; a
//! second one becomes SIGUSR2: the workers clean up and leave at once, then
//! what is left is killed); and when the job fails, clean up every process and start it
//! again from the run's newest checkpoint while restarts remain. A signal
//! between two attempts ends the job there; output pipes a process keeps open
//! after the job ended (one stuck in uninterruptible sleep) are not waited for.
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::elastic::{self, Elastic};
use crate::hosts::HostSpec;
use crate::members::Members;
use crate::output::{relay, Attempt, Said};
use crate::plan::Plan;
use crate::procs;

/// How long the workers have after a second signal to abort their uploads
/// and remove staged files before everything is killed.
const CLEANUP_GRACE: Duration = Duration::from_secs(5);
/// How long output relays may take to drain once the job's processes are gone.
const DRAIN: Duration = Duration::from_secs(3);
/// The pause before a restart (a signal in it ends the job).
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Signals received: 0 none, else the first signal's number; the count of
/// signals decides between a graceful and an immediate stop.
pub struct SignalState {
    first: AtomicI32,
    count: AtomicI32,
    mpirun: AtomicI32,
}

impl SignalState {
    fn stopping(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }
}

/// Asks the job to stop (SIGUSR1 to mpirun, which forwards it) every
/// [`RESEND`] while it runs: a worker that was still starting (the signal
/// ignored until its handler is in place) gets it too, and one that has it
/// already is not bothered by it again.
fn keep_asking(state: Arc<SignalState>) {
    std::thread::spawn(move || loop {
        if state.count.load(Ordering::SeqCst) > 1 {
            return;
        }
        let pid = state.mpirun.load(Ordering::SeqCst);
        if pid > 0 {
            procs::signal(pid, libc::SIGUSR1);
        }
        std::thread::sleep(RESEND);
    });
}

/// How often a stop request is repeated to the job.
const RESEND: Duration = Duration::from_secs(1);

/// Starts watching SIGINT and SIGTERM, before anything of the job runs
/// (the checks included): a signal from then on asks the job to stop, and
/// is never the launcher's death.
pub fn watch() -> std::io::Result<Arc<SignalState>> {
    let state = Arc::new(SignalState {
        first: AtomicI32::new(0),
        count: AtomicI32::new(0),
        mpirun: AtomicI32::new(0),
    });
    watch_signals(Arc::clone(&state))?;
    Ok(state)
}

fn watch_signals(state: Arc<SignalState>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let n = state.count.fetch_add(1, Ordering::SeqCst);
            let pid = state.mpirun.load(Ordering::SeqCst);
            if n == 0 {
                state.first.store(sig, Ordering::SeqCst);
                vae_proto::errln!("[launcher] signal {sig}: asking the workers to checkpoint and stop (again to stop at once)");
                keep_asking(Arc::clone(&state));
            } else {
                vae_proto::errln!("[launcher] second signal: the workers clean up and leave; then killing the job");
                if pid > 0 {
                    procs::signal(pid, libc::SIGUSR2);
                }
                let started = Instant::now();
                while started.elapsed() < CLEANUP_GRACE
                    && state.mpirun.load(Ordering::SeqCst) == pid
                    && pid > 0
                    && procs::alive(pid)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                procs::kill_all_descendants(None);
            }
        }
    });
    Ok(())
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Starts mpirun for one attempt: in its own process group (a terminal's
/// Ctrl-C goes to the launcher only, which forwards it as the workers
/// expect), killed if the launcher dies.
fn start(plan: &Plan, mpirun: &str, worker: &Path, restart: bool) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut cmd = plan.mpirun(mpirun, worker, restart);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl and getppid are async-signal-safe; nothing else runs
    // between fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
    cmd.spawn()
}

/// After a stall: which ranks said they waited, and which did not (the
/// stalled ones: a stopped or hung process cannot speak); returns those.
fn name_the_stalled(said: &Said, ranks: usize) -> Vec<usize> {
    let reported = &said.stalls;
    if reported.is_empty() {
        return Vec::new();
    }
    let silent_ranks: Vec<usize> = (0..ranks).filter(|r| !reported.contains_key(r)).collect();
    let silent: Vec<String> = silent_ranks.iter().map(|r| r.to_string()).collect();
    let said: Vec<String> = reported.keys().map(|r| r.to_string()).collect();
    let culprit = if silent.is_empty() {
        "every rank reported it".to_string()
    } else {
        format!("rank {} did not report: the stalled one", silent.join(", "))
    };
    vae_proto::errln!(
        "[launcher] a stall: rank {} waited in vain ({}); {culprit}",
        said.join(", "),
        reported
            .values()
            .next()
            .and_then(|l| l.split(" stalled ").nth(1))
            .and_then(|l| l.split("; ending").next())
            .unwrap_or("")
    );
    silent_ranks
}

/// Waits for `n` relays to finish, at most [`DRAIN`]; a pipe that stays
/// open (a process in uninterruptible sleep holds it) is left behind.
fn drain(done: &mpsc::Receiver<()>, n: usize) {
    let deadline = Instant::now() + DRAIN;
    for _ in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        if done.recv_timeout(left).is_err() {
            vae_proto::errln!("[launcher] a process still holds the job's output open (uninterruptible sleep?); not waiting for it");
            return;
        }
    }
}

/// Pauses before a restart; `false` when a signal came meanwhile.
fn pause_before_restart(state: &SignalState) -> bool {
    let until = Instant::now() + RESTART_DELAY;
    while Instant::now() < until {
        if state.stopping() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    !state.stopping()
}

/// How the job ended after a signal: 128 + the signal when the workers
/// stopped cleanly, else their failure.
fn stopped(state: &SignalState, code: i32) -> i32 {
    let sig = state.first.load(Ordering::SeqCst);
    vae_proto::errln!(
        "[launcher] stopped by signal {sig}; resume with the same command and --resume"
    );
    if code == 0 {
        128 + sig
    } else {
        code
    }
}

/// How an attempt ended.
struct Ended {
    code: i32,
    said: Said,
    /// Hosts that answered the discovery while it ran: the job grows onto them.
    grow: Vec<HostSpec>,
}

/// Runs one attempt of `plan` to its end. While it runs, hosts that the
/// discovery script lists and that answer make it checkpoint and stop (the
/// stop request), to start again on more workers.
fn attempt(
    plan: &Plan,
    mpirun: &str,
    worker: &Path,
    restart: bool,
    state: &SignalState,
    elastic: Option<(&Elastic, &Members)>,
) -> anyhow::Result<Ended> {
    let mut child = start(plan, mpirun, worker, restart)
        .map_err(|e| anyhow::anyhow!("cannot start {mpirun}: {e}"))?;
    let pid = child.id() as i32;
    // A stop asked for meanwhile reaches this mpirun through `keep_asking`.
    state.mpirun.store(pid, Ordering::SeqCst);
    let said: Attempt = Arc::default();
    let (done_tx, done) = mpsc::channel();
    let mut relays = 0;
    if let Some(s) = child.stdout.take() {
        relay(
            s,
            false,
            plan.rank_hosts(),
            Arc::clone(&said),
            done_tx.clone(),
        );
        relays += 1;
    }
    if let Some(s) = child.stderr.take() {
        relay(s, true, plan.rank_hosts(), Arc::clone(&said), done_tx);
        relays += 1;
    }
    let mut grow = Vec::new();
    let poller = elastic.and_then(|(e, members)| Poller::start(plan, e, members));
    let mut asked = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if done_long_ago(&said) {
            vae_proto::errln!(
                "[launcher] rank 0 finished the run {} s ago but the job has not ended (a worker stopped or hung at its end): ending it",
                DONE_GRACE.as_secs()
            );
            // Every process of the job goes (and is reaped, mpirun too):
            // the run is complete.
            procs::kill_all_descendants(None);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
        if !grow.is_empty() && asked.elapsed() >= RESEND {
            procs::signal(pid, libc::SIGUSR1);
            asked = Instant::now();
        }
        if grow.is_empty() && !state.stopping() {
            if let Some(new) = poller.as_ref().and_then(Poller::grown) {
                grow = new;
                procs::signal(pid, libc::SIGUSR1);
                asked = Instant::now();
            }
        }
    };
    drop(poller);
    state.mpirun.store(0, Ordering::SeqCst);
    // Whatever mpirun left behind goes now (and is reaped).
    procs::kill_all_descendants(None);
    drain(&done, relays);
    let said = std::mem::take(
        &mut *said
            .lock()
            .map_err(|_| anyhow::anyhow!("output relay failed"))?,
    );
    Ok(Ended {
        code: status.map_or(0, exit_code),
        said,
        grow,
    })
}

/// How long the job may go on after rank 0 said the run is done (the
/// other ranks finalise MPI within seconds).
const DONE_GRACE: Duration = Duration::from_secs(30);

/// Whether rank 0 said the run is done more than [`DONE_GRACE`] ago.
fn done_long_ago(said: &Attempt) -> bool {
    said.lock()
        .ok()
        .and_then(|s| s.done_at)
        .is_some_and(|t| t.elapsed() > DONE_GRACE)
}

/// The discovery script polled every [`elastic::POLL`] on a thread of its
/// own while an attempt runs, so that neither the script (up to its 30 s)
/// nor the probes of new hosts hold up the loop that waits for mpirun; it
/// stops (the script's process group killed) when the attempt ends.
struct Poller {
    grown: mpsc::Receiver<Vec<HostSpec>>,
    cancel: Arc<AtomicBool>,
}

impl Poller {
    fn start(plan: &Plan, e: &Elastic, members: &Members) -> Option<Poller> {
        e.discovery.as_ref()?;
        let (plan, e, members) = (plan.clone(), e.clone(), members.clone());
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, grown) = mpsc::channel();
        let stop = Arc::clone(&cancel);
        std::thread::spawn(move || loop {
            let next = Instant::now() + elastic::POLL;
            while Instant::now() < next {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let new = growth(&plan, &e, &members, &stop);
            if !new.is_empty() {
                let _ = tx.send(new);
                return;
            }
        });
        Some(Poller { grown, cancel })
    }

    /// Hosts that answered, when the poll found some.
    fn grown(&self) -> Option<Vec<HostSpec>> {
        self.grown.try_recv().ok()
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

/// Hosts the discovery script lists now that are not in the job and
/// answer, when taking them makes the world larger (empty otherwise; a
/// failing script is reported, not fatal).
fn growth(plan: &Plan, e: &Elastic, members: &Members, cancel: &AtomicBool) -> Vec<HostSpec> {
    let Some(script) = &e.discovery else {
        return Vec::new();
    };
    let listed = match elastic::discover(script, Some(cancel)) {
        Ok(l) => l,
        Err(_) if cancel.load(Ordering::SeqCst) => return Vec::new(),
        Err(err) => {
            vae_proto::errln!("[launcher] host discovery: {err} (the hosts stay as they are)");
            return Vec::new();
        }
    };
    if cancel.load(Ordering::SeqCst) {
        return Vec::new();
    }
    let new = members.newcomers(e, &listed);
    if new.is_empty() {
        return new;
    }
    let all: Vec<HostSpec> = members.active.iter().chain(&new).cloned().collect();
    match plan.on_hosts(&all) {
        Some(bigger) if bigger.ranks() > plan.ranks() => {
            let names: Vec<&str> = new.iter().map(|h| h.name.as_str()).collect();
            vae_proto::errln!(
                "[launcher] host {} answers: the workers checkpoint and stop, then the job goes on with {} workers",
                names.join(", "),
                bigger.ranks()
            );
            new
        }
        _ => Vec::new(),
    }
}

/// `[launcher]` line for a (re)start on hosts.
fn say_hosts(plan: &Plan, members: &Members) -> String {
    let lost: Vec<&str> = members.lost.iter().map(String::as_str).collect();
    format!(
        "on {}{}",
        plan.host_slots(),
        if lost.is_empty() {
            String::new()
        } else {
            format!(" (lost: {})", lost.join(", "))
        }
    )
}

/// After a failed attempt on elastic hosts (the hosts whose workers or
/// MPI daemon failed blamed): drop the hosts that failed twice in a row or
/// do not answer, take in newly listed ones, and plan
/// the job on what is left; `Err(message)` when too few hosts remain or
/// no world size fits.
fn replan(
    plan: &Plan,
    e: &Elastic,
    members: &mut Members,
    ended: &Ended,
    stalled: &[usize],
) -> Result<Plan, String> {
    let mut blamed: BTreeSet<String> = ended
        .said
        .failed
        .iter()
        .chain(stalled)
        .filter_map(|r| plan.host_of(*r).map(str::to_string))
        .collect();
    blamed.extend(ended.said.daemon_hosts(&plan.rank_hosts()));
    members.after_failure(e, &blamed);
    if let Some(script) = &e.discovery {
        match elastic::discover(script, None) {
            Ok(listed) => {
                members.keep_listed(&listed);
                let new = members.newcomers(e, &listed);
                members.add(new);
            }
            Err(err) => {
                vae_proto::errln!("[launcher] host discovery: {err} (the hosts stay as they are)")
            }
        }
    }
    let lost: Vec<&str> = members.lost.iter().map(String::as_str).collect();
    if members.active.len() < e.min_hosts {
        return Err(format!(
            "{} host{} left, fewer than --min-hosts {}; lost: {}",
            members.active.len(),
            if members.active.len() == 1 { "" } else { "s" },
            e.min_hosts,
            lost.join(", ")
        ));
    }
    plan.on_hosts(&members.active).ok_or_else(|| {
        format!(
            "no world size that the {} hosts left hold divides the job (train.batch_size, or the sweep's groups); lost: {}",
            members.active.len(),
            lost.join(", ")
        )
    })
}

/// `[launcher] starting N CPU workers [on hosts] [from the run's newest checkpoint]`.
fn announce(plan: &Plan, hosts: Option<&Members>, restart: bool) {
    vae_proto::errln!(
        "[launcher] starting {} {} worker{}{}{}",
        plan.ranks(),
        if plan.gpus { "GPU" } else { "CPU" },
        if plan.ranks() == 1 { "" } else { "s" },
        hosts.map_or(String::new(), |m| format!(" {}", say_hosts(plan, m))),
        if restart {
            " from the run's newest checkpoint (if there is one)"
        } else {
            ""
        }
    );
}

/// Runs the job with up to `max_restarts` restarts, on hosts that may
/// change between attempts when `elastic` (with the hosts the job was given,
/// each with the workers it can take); returns the exit code.
pub fn run(
    plan: &Plan,
    mpirun: &str,
    worker: &Path,
    max_restarts: u32,
    elastic: Option<(&Elastic, Members)>,
    state: Arc<SignalState>,
) -> anyhow::Result<i32> {
    procs::become_subreaper();
    let (elastic, mut members) = match elastic {
        Some((e, m)) => (Some(e), m),
        None => (None, Members::new(Vec::new())),
    };
    let mut plan = plan.clone();
    let (mut failures, mut restart) = (0, false);
    loop {
        announce(&plan, elastic.is_some().then_some(&members), restart);
        let ended = attempt(
            &plan,
            mpirun,
            worker,
            restart,
            &state,
            elastic.map(|e| (e, &members)),
        )?;
        restart = true;
        let code = ended.code;
        let stalled = name_the_stalled(&ended.said, plan.ranks());
        if state.stopping() {
            return Ok(stopped(&state, code));
        }
        if !ended.grow.is_empty() && code == 0 && ended.said.stopped {
            members.after_success();
            members.add(ended.grow);
            if let Some(bigger) = plan.on_hosts(&members.active) {
                plan = bigger;
            }
            continue;
        }
        if code == 0 {
            return Ok(0);
        }
        if failures >= max_restarts {
            // A worker that said why has said it all (one line).
            if ended.said.errors.is_empty() {
                vae_proto::errln!("[launcher] job failed with exit status {code}");
            }
            return Ok(code);
        }
        if let Some(e) = elastic {
            match replan(&plan, e, &mut members, &ended, &stalled) {
                Ok(p) => plan = p,
                Err(why) => {
                    vae_proto::errln!(
                        "[launcher] job failed with exit status {code}; cannot go on: {why}"
                    );
                    return Ok(code);
                }
            }
        }
        failures += 1;
        vae_proto::errln!(
            "[launcher] job failed with exit status {code}; restart {failures} of {max_restarts} in {} s",
            RESTART_DELAY.as_secs()
        );
        if !pause_before_restart(&state) {
            // Nothing runs: the stop is the user's, not the failure's.
            return Ok(stopped(&state, 0));
        }
    }
}

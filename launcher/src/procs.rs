//! Process bookkeeping through `/proc`: the descendants of a process, and
//! killing them all, so a job leaves no orphan (mpirun puts each worker in a
//! process group of its own, so a group kill does not reach them). The
//! launcher is made a child subreaper, so workers orphaned by a dying mpirun
//! become its children and are reaped here, never left as zombies.
use std::collections::{HashMap, HashSet};

/// `pid → parent pid` of every process now alive.
fn parents() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: parse after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// Every live descendant of `root` (not `root` itself).
pub fn descendants(root: i32) -> Vec<i32> {
    let map = parents();
    let mut out = Vec::new();
    let mut seen: HashSet<i32> = HashSet::from([root]);
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (&child, &parent) in &map {
            if parent == p && seen.insert(child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid we saw alive; a stale pid only gives ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Makes this process the reaper of orphaned descendants (Linux).
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// SIGKILLs every descendant of this process except `keep`, then reaps all
/// exited children that are not `keep`.
pub fn kill_all_descendants(keep: Option<i32>) {
    let me = std::process::id() as i32;
    for _ in 0..3 {
        let pids: Vec<i32> = descendants(me)
            .into_iter()
            .filter(|p| Some(*p) != keep)
            .collect();
        if pids.is_empty() {
            break;
        }
        for p in &pids {
            signal(*p, libc::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        reap_orphans(keep);
    }
    reap_orphans(keep);
}

/// Reaps exited children (orphans handed to us as subreaper), except `keep`.
pub fn reap_orphans(keep: Option<i32>) {
    let me = std::process::id() as i32;
    for pid in descendants(me) {
        if Some(pid) == keep {
            continue;
        }
        let mut status = 0;
        // SAFETY: waitpid on one of our children, non-blocking.
        unsafe {
            libc::waitpid(pid, &mut status, libc::WNOHANG);
        }
    }
}

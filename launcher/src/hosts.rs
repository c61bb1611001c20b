//! Hosts to run on (`--hosts`, `--hostfile`), the workers each takes, and
//! how a world of a given size is spread over them ([`fit`]).
use std::path::Path;

use crate::error::PlanError;

/// A host to run on, and how many workers it takes (`None`: `--nproc-per-node`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpec {
    pub name: String,
    pub slots: Option<usize>,
}

/// The most workers one host may take: more than any machine has cores.
pub const MAX_SLOTS: usize = 4096;

/// A slot count: 1 to [`MAX_SLOTS`].
pub fn slot_count(v: &str) -> Option<usize> {
    v.parse().ok().filter(|n| (1..=MAX_SLOTS).contains(n))
}

/// A host name as it may reach `ssh` and mpirun's `--host`: letters,
/// digits and `.-_:[]` (an IPv6 address in brackets), not starting with
/// `-` (an option to ssh), at most 253 characters. A name from a hostfile,
/// `--hosts` or a discovery script is untrusted: anything else is refused.
pub fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_:[]".contains(c);
    if name.is_empty() || name.len() > 253 || name.starts_with('-') || !name.chars().all(allowed) {
        return Err(format!(
            "`{}` is not a host name (letters, digits and .-_:[] only, not starting with -)",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// `--hosts` entries: `name` or `name:N` (N workers there, as mpirun's `--host`).
pub fn parse_hosts(list: &[String]) -> Result<Vec<HostSpec>, PlanError> {
    let hosts = list.iter().map(|h| match h.rsplit_once(':') {
        Some((name, n)) if !name.is_empty() && !name.ends_with(':') => {
            let slots = slot_count(n).ok_or_else(|| {
                PlanError::Usage(format!(
                    "--hosts {h}: `{n}` is not a number of workers from 1 to {MAX_SLOTS}"
                ))
            })?;
            Ok(HostSpec {
                name: name.to_string(),
                slots: Some(slots),
            })
        }
        _ => Ok(HostSpec {
            name: h.clone(),
            slots: None,
        }),
    });
    let hosts: Vec<HostSpec> = hosts.collect::<Result<_, PlanError>>()?;
    for h in &hosts {
        check_name(&h.name).map_err(|e| PlanError::Usage(format!("--hosts: {e}")))?;
    }
    Ok(hosts)
}

/// The hosts of a hostfile (mpirun's format): the first word of each line
/// that is not blank or a comment, with its `slots=N` when it says one.
pub fn read_hostfile(path: &Path) -> Result<Vec<HostSpec>, PlanError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| PlanError::Usage(format!("--hostfile {shown}: {e}")))?;
    let mut hosts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        check_name(name)
            .map_err(|e| PlanError::Usage(format!("--hostfile {shown} line {}: {e}", i + 1)))?;
        let mut slots = None;
        for w in words {
            if let Some(v) = w.strip_prefix("slots=") {
                slots = Some(slot_count(v).ok_or_else(|| {
                    PlanError::Usage(format!(
                        "--hostfile {shown} line {}: slots=`{v}` is not a number from 1 to {MAX_SLOTS}",
                        i + 1
                    ))
                })?);
            }
        }
        hosts.push(HostSpec {
            name: name.to_string(),
            slots,
        });
    }
    if hosts.is_empty() {
        return Err(PlanError::Usage(format!(
            "--hostfile {shown}: names no host"
        )));
    }
    Ok(hosts)
}

/// How many workers each host gets for a world of `ranks`: one each in turn
/// while a host has slots left (so every host has one before any has two).
pub fn spread(capacity: &[usize], ranks: usize) -> Vec<usize> {
    let mut out = vec![0; capacity.len()];
    let mut left = ranks;
    while left > 0 {
        let mut placed = false;
        for (o, c) in out.iter_mut().zip(capacity) {
            if left > 0 && *o < *c {
                *o += 1;
                left -= 1;
                placed = true;
            }
        }
        if !placed {
            break;
        }
    }
    out
}

/// The world for hosts of `capacity` slots: `largest` gives the largest
/// world size up to the slots' total that the job accepts (found by
/// arithmetic, not by trying each size), spread over the hosts; `None`
/// when there is none.
pub fn fit(capacity: &[usize], largest: &dyn Fn(usize) -> Option<usize>) -> Option<Vec<usize>> {
    let total = capacity.iter().fold(0usize, |n, &c| n.saturating_add(c));
    largest(total)
        .filter(|w| (1..=total).contains(w))
        .map(|w| spread(capacity, w))
}

/// The largest divisor of `n` that is at most `cap` (`None` for `n` 0 or
/// `cap` 0), in √n steps.
pub fn largest_divisor(n: u64, cap: usize) -> Option<usize> {
    let cap = cap as u64;
    let mut best = None;
    let mut d = 1u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            for v in [d, n / d] {
                if v <= cap && best.is_none_or(|b| v > b) {
                    best = Some(v);
                }
            }
        }
        d += 1;
    }
    best.map(|b| b as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_world_the_batch_allows_is_spread_over_the_hosts() {
        let by64 = |total: usize| largest_divisor(64, total);
        assert_eq!(fit(&[2, 2], &by64), Some(vec![2, 2]));
        assert_eq!(fit(&[2, 2, 2], &by64), Some(vec![2, 1, 1]));
        assert_eq!(fit(&[3], &by64), Some(vec![2]));
        assert_eq!(fit(&[3], &|_| None), None);
        // Slots beyond counting cost nothing: the world is found by arithmetic.
        let w = fit(&[usize::MAX, usize::MAX], &by64).unwrap();
        assert_eq!(w.iter().sum::<usize>(), 64);
        assert_eq!(largest_divisor(96, 7), Some(6));
        assert_eq!(largest_divisor(97, 96), Some(1));
        assert_eq!(largest_divisor(1 << 40, 1000), Some(512));
        assert_eq!(largest_divisor(0, 5), None);
        assert_eq!(spread(&[1, 4], 4), vec![1, 3]);
    }

    #[test]
    fn host_names_that_could_be_options_or_lists_are_refused() {
        for ok in [
            "node-01",
            "a.b.example.org",
            "10.0.0.1",
            "[fe80::1]",
            "gpu_3",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "-oProxyCommand=touch${IFS}/tmp/x",
            "a,b",
            "a b",
            "",
            "x;y",
            "h\n",
            "$(id)",
        ] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains("not a host name"), "{e}");
        }
        assert!(parse_hosts(&["a,b:2".into()]).is_err());
        assert!(parse_hosts(&["localhost:1000000000000".into()]).is_err());
        assert!(parse_hosts(&["localhost:4096".into()]).is_ok());
    }

    use proptest::prelude::*;

    proptest! {
        /// `--hosts` entries and hostfile lines, mutated: safe names with
        /// bounded slots, or an error; a world found for them at once.
        #[test]
        fn prop_mutated_host_lists_give_safe_hosts_or_an_error(
            entry in vae_proto::fuzz::mutated_text("node-01.example:4096"),
            line in vae_proto::fuzz::mutated_text("node02 slots=16 # rack 3"),
        ) {
            if let Ok(hosts) = parse_hosts(&[entry]) {
                for h in &hosts {
                    prop_assert!(check_name(&h.name).is_ok());
                }
            }
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("hostfile");
            std::fs::write(&f, line).unwrap();
            if let Ok(hosts) = read_hostfile(&f) {
                let cap: Vec<usize> = hosts.iter().map(|h| h.slots.unwrap_or(1)).collect();
                prop_assert!(cap.iter().all(|&s| s <= MAX_SLOTS));
                let w = fit(&cap, &|t| largest_divisor(1 << 20, t));
                prop_assert!(w.is_some_and(|w| w.iter().sum::<usize>() <= cap.iter().sum()));
            }
        }
    }
}

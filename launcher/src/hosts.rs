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

fn positive_slots(v: &str) -> Option<usize> {
    v.parse().ok().filter(|n| *n > 0)
}

/// `--hosts` entries: `name` or `name:N` (N workers there, as mpirun's `--host`).
pub fn parse_hosts(list: &[String]) -> Result<Vec<HostSpec>, PlanError> {
    list.iter()
        .map(|h| match h.rsplit_once(':') {
            Some((name, n)) if !name.is_empty() && !name.ends_with(':') => {
                let slots = positive_slots(n).ok_or_else(|| {
                    PlanError::Usage(format!(
                        "--hosts {h}: `{n}` is not a positive number of workers"
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
        })
        .collect()
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
        let mut slots = None;
        for w in words {
            if let Some(v) = w.strip_prefix("slots=") {
                slots = Some(positive_slots(v).ok_or_else(|| {
                    PlanError::Usage(format!(
                        "--hostfile {shown} line {}: slots=`{v}` is not a positive number",
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

/// The largest world size at most the hosts' slots that `accepts`, and how
/// many workers each host gets; `None` when there is none.
pub fn fit(capacity: &[usize], accepts: &dyn Fn(usize) -> bool) -> Option<Vec<usize>> {
    let total: usize = capacity.iter().sum();
    (1..=total)
        .rev()
        .find(|&w| accepts(w))
        .map(|w| spread(capacity, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_world_the_batch_allows_is_spread_over_the_hosts() {
        let by64 = |w: usize| 64 % w == 0;
        assert_eq!(fit(&[2, 2], &by64), Some(vec![2, 2]));
        assert_eq!(fit(&[2, 2, 2], &by64), Some(vec![2, 1, 1]));
        assert_eq!(fit(&[3], &by64), Some(vec![2]));
        assert_eq!(fit(&[3], &|w| w == 5), None);
        assert_eq!(spread(&[1, 4], 4), vec![1, 3]);
    }
}

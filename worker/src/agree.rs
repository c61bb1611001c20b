//! What every rank must agree on before the first step: the resolved config
//! (its hash) and the worker's version. Ranks started with different configs
//! (an MPMD line with a typo, a stale config file on one node) or binaries
//! would otherwise train silently wrong; rank 0 compares every rank's with
//! its own and stops the job with one line naming the ranks and the first
//! key that differs.
use serde::{Deserialize, Serialize};
use vae_proto::config::{first_difference, Config};

use crate::collective::{from_rank0, Comm};
use crate::train::TrainError;

/// The worker's version: the package's and the commit it was built from.
pub fn version() -> String {
    if let Some(v) = crate::faults::version() {
        return v;
    }
    format!(
        "{} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("VAE_BUILD_COMMIT")
    )
}

/// What one rank runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Identity {
    version: String,
    hash: String,
    /// The resolved config (credentials taken out), to name the key.
    config: String,
    /// Anything else the ranks must share (a sweep's axes).
    extra: String,
}

/// Checks that every rank of `comm` runs `config` (with `extra`, e.g. the
/// sweep) on the same version; an error naming the ranks and the first
/// differing key otherwise. Only rank 0 reports it: the others wait for its
/// abort.
pub fn check(comm: &dyn Comm, config: &Config, extra: &str) -> Result<(), TrainError> {
    if comm.world_size() == 1 {
        return Ok(());
    }
    let me = Identity {
        version: version(),
        hash: config.hash(),
        config: config.to_toml(),
        extra: extra.to_string(),
    };
    let bytes = serde_json::to_vec(&me).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let all = comm.gather_bytes(&bytes, 0)?;
    let verdict = all.map(|parts| compare(&me, &parts));
    let verdict: Option<String> = from_rank0(comm, verdict.flatten())?;
    match verdict {
        None => Ok(()),
        Some(line) if comm.rank() == 0 => Err(TrainError::Invalid(line)),
        Some(line) => {
            // Rank 0 aborts the job; wait for it rather than say it again.
            let _ = comm.barrier();
            Err(TrainError::Invalid(line))
        }
    }
}

/// Rank 0's comparison of every rank's identity (`parts`, in rank order)
/// with its own: `None` when all agree, else the line that says how not.
fn compare(first: &Identity, parts: &[Vec<u8>]) -> Option<String> {
    let ids: Vec<Option<Identity>> = parts
        .iter()
        .map(|p| serde_json::from_slice(p).ok())
        .collect();
    let differs = |id: &Option<Identity>| {
        id.as_ref().is_none_or(|i| {
            i.version != first.version || i.hash != first.hash || i.extra != first.extra
        })
    };
    let odd: Vec<usize> = (0..ids.len()).filter(|&r| differs(&ids[r])).collect();
    let r = *odd.first()?;
    let ranks = odd
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let what = match &ids[r] {
        None => "an unreadable identity".to_string(),
        Some(i) if i.version != first.version => format!(
            "another vae-worker version ({} on rank {r}, {} on rank 0)",
            i.version, first.version
        ),
        Some(i) if i.extra != first.extra => {
            format!(
                "another sweep (`{}` on rank {r}, `{}` on rank 0)",
                i.extra, first.extra
            )
        }
        Some(i) => match first_difference(&first.config, &i.config) {
            Some(key) => format!("another config: key `{key}` differs first"),
            None => "another config (the same keys, another hash)".to_string(),
        },
    };
    Some(format!(
        "ranks disagree on what they train: rank {ranks} differ{} from rank 0: {what}; start every rank with the same config and binary",
        if odd.len() == 1 { "s" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(sets: &[&str], version: &str) -> Identity {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let c = vae_proto::config::parse("", "t", &sets).unwrap();
        Identity {
            version: version.into(),
            hash: c.hash(),
            config: c.to_toml(),
            extra: String::new(),
        }
    }

    #[test]
    fn the_first_differing_key_and_the_ranks_are_named() {
        let zero = id(&[], "1");
        let enc = |i: &Identity| serde_json::to_vec(i).unwrap();
        let same = [enc(&zero), enc(&zero)];
        assert_eq!(compare(&zero, &same), None);
        let odd = id(&["model.beta=4"], "1");
        let line = compare(&zero, &[enc(&zero), enc(&zero), enc(&odd)]).unwrap();
        assert!(
            line.contains("rank 2 differs") && line.contains("model.beta"),
            "{line}"
        );
        let old = id(&[], "0.0.9");
        let line = compare(&zero, &[enc(&zero), enc(&old), enc(&old)]).unwrap();
        assert!(
            line.contains("rank 1, 2 differ") && line.contains("0.0.9"),
            "{line}"
        );
    }
}

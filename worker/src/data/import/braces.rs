//! Brace patterns in `--from` (`s3://bucket/celeba/shard-{000000..000099}.tar`,
//! `x-{a,b}-{1..2}.tar`), as WebDataset and the shell write them: every
//! group expanded, the names sorted. The number of names is counted before
//! any is made and capped, so a pattern cannot ask for more memory than a
//! million names take.

/// The most names a `--from` pattern may expand to: a million shards.
pub const MAX_NAMES: u64 = 1_000_000;

/// One `{…}` group of a pattern: a range `a..b` (zero-padded like `a`) or
/// a list `x,y,z`.
enum Group {
    Range { x: u64, y: u64, width: usize },
    List(Vec<String>),
}

impl Group {
    fn parse(body: &str) -> Result<Group, String> {
        let Some((a, b)) = body.split_once("..") else {
            return Ok(Group::List(body.split(',').map(str::to_string).collect()));
        };
        match (a.parse(), b.parse()) {
            (Ok(x), Ok(y)) if x <= y => Ok(Group::Range {
                x,
                y,
                width: a.len(),
            }),
            _ => Err(format!("`{{{body}}}` is not a range a..b of numbers")),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Group::Range { x, y, .. } => y - x + 1,
            Group::List(v) => v.len() as u64,
        }
    }

    fn item(&self, i: u64) -> String {
        match self {
            Group::Range { x, width, .. } => format!("{:0w$}", x + i, w = *width),
            Group::List(v) => v[i as usize].clone(),
        }
    }
}

/// `{a..b}` (zero-padded like `a`) and `{x,y,z}` expanded, every group,
/// sorted; the number of names is counted first and capped at
/// [`MAX_NAMES`] before any is made.
pub fn expand_braces(spec: &str) -> Result<Vec<String>, String> {
    let (mut texts, mut groups) = (Vec::new(), Vec::new());
    let mut rest = spec;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| format!("`{spec}`: a `{{` without its `}}`"))?;
        texts.push(&rest[..open]);
        groups.push(Group::parse(&rest[open + 1..close])?);
        rest = &rest[close + 1..];
    }
    texts.push(rest);
    let count = (groups.iter())
        .try_fold(1u64, |n, g| n.checked_mul(g.len()))
        .filter(|&n| n <= MAX_NAMES)
        .ok_or_else(|| format!("`{spec}` expands to more than {MAX_NAMES} names"))?;
    let mut out = Vec::with_capacity(count as usize);
    for mut i in 0..count {
        let mut name = String::from(texts[0]);
        let mut picks = vec![0; groups.len()];
        for (k, g) in groups.iter().enumerate().rev() {
            picks[k] = i % g.len();
            i /= g.len();
        }
        for (k, g) in groups.iter().enumerate() {
            name.push_str(&g.item(picks[k]));
            name.push_str(texts[k + 1]);
        }
        out.push(name);
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn braces_expand_ranges_and_lists() {
        let v = expand_braces("s3://b/shard-{000..002}.tar").unwrap();
        assert_eq!(
            v,
            [
                "s3://b/shard-000.tar",
                "s3://b/shard-001.tar",
                "s3://b/shard-002.tar"
            ]
        );
        let v = expand_braces("x-{a,b}-{1..2}.tar").unwrap();
        assert_eq!(v, ["x-a-1.tar", "x-a-2.tar", "x-b-1.tar", "x-b-2.tar"]);
        assert!(expand_braces("x-{5..1}.tar").is_err());
        assert!(expand_braces("x-{1..2.tar").is_err());
        assert_eq!(expand_braces("plain.tar").unwrap(), ["plain.tar"]);
    }

    #[test]
    fn the_names_a_pattern_makes_are_capped_before_any_is_made() {
        assert_eq!(
            expand_braces("x{0..999}y{0..999}.tar").unwrap().len(),
            1_000_000
        );
        for spec in [
            "x{0..99999}y{0..99999}.tar",
            "{0..10000000}",
            "{0..18446744073709551614}{0..9}",
        ] {
            let e = expand_braces(spec).unwrap_err();
            assert!(e.contains("more than 1000000 names"), "{e}");
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// Patterns, mutated: expanded within the cap, or an error.
        #[test]
        fn prop_mutated_patterns_stay_under_the_cap(
            spec in vae_proto::fuzz::mutated_text("s3://b/{a,bb}/shard-{000000..000099}-{1..9}.tar")
        ) {
            if let Ok(names) = expand_braces(&spec) {
                prop_assert!(!names.is_empty() && names.len() as u64 <= MAX_NAMES);
            }
        }
    }
}

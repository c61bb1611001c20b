//! Inputs for the property tests over every parser of untrusted bytes
//! (compiled for tests, and for other crates' tests with the `fuzz`
//! feature): a valid input with a few bytes replaced and perhaps cut
//! short, which is where a parser's checks are tried hardest. Each property
//! runs `PROPTEST_CASES` inputs (256 by default; `scripts/bench.sh fuzz`
//! runs many more).
use proptest::prelude::*;

/// `seed` with up to 8 bytes replaced, then perhaps cut at some length.
pub fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = seed.len();
    let edits = prop::collection::vec((0..n.max(1), any::<u8>()), 0..8);
    (edits, prop::option::of(0..=n)).prop_map(move |(edits, cut)| {
        let mut b = seed.clone();
        for (i, v) in edits {
            if let Some(x) = b.get_mut(i) {
                *x = v;
            }
        }
        if let Some(c) = cut {
            b.truncate(c);
        }
        b
    })
}

/// [`mutated`] text (invalid UTF-8 replaced).
pub fn mutated_text(seed: &str) -> impl Strategy<Value = String> {
    mutated(seed.as_bytes().to_vec()).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

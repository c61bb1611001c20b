//! What the launcher and the workers share, with no libtorch in it: the config
//! schema and its validation ([`config`]), the worker's command line
//! ([`cli`]), sweeps ([`sweep`]), the manifests of datasets ([`dataset`])
//! and checkpoints ([`checkpoint`]), keeping credentials out of what is
//! printed or written ([`redact`]), and the console both write to
//! ([`console`]: whole lines, a closed pipe is not a crash); for tests, the
//! mutated inputs the property tests try ([`fuzz`]).
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod console;
pub mod dataset;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod redact;
pub mod sweep;

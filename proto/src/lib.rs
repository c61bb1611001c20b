//! What the launcher and the workers share, with no libtorch in it: the config
//! schema and its validation ([`config`]), the worker's command line
//! ([`cli`]), sweeps ([`sweep`]), the manifests of datasets ([`dataset`])
//! and checkpoints ([`checkpoint`]), and keeping credentials out of what is
//! printed or written ([`redact`]).
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod dataset;
pub mod redact;
pub mod sweep;

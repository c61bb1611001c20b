//! `vae-launch`: plans a job ([`plan`]), starts one worker per GPU (or N CPU
//! workers) through `mpirun` and supervises it ([`supervise`], with process
//! bookkeeping in [`procs`] and its output in [`output`]), on hosts that may
//! come and go ([`elastic`]).
//! Before it starts any worker it has the worker check the job ([`preflight`]).
//! It does not link libtorch.
pub mod cli;
pub mod devices;
pub mod elastic;
pub mod error;
pub mod hosts;
pub mod members;
pub mod mpirun;
pub mod output;
pub mod plan;
pub mod preflight;
pub mod procs;
pub mod supervise;

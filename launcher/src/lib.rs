//! `vae-launch`: plans a job ([`plan`]), starts one worker per GPU (or N CPU
//! workers) through `mpirun` and supervises it ([`supervise`], with process
//! bookkeeping in [`procs`]), on hosts that may come and go ([`elastic`]).
//! It does not link libtorch.
pub mod elastic;
pub mod plan;
pub mod procs;
pub mod supervise;

//! Communication between workers over MPI (the wire-up, host-side
//! collectives) and NCCL (gradients on GPU): joining the job ([`connect`])
//! and the [`Dist`] communicator. The collectives' traits are
//! `crate::collective`'s.
mod connect;
mod dist;

pub use connect::{abort_job, connect, finalize, Connection};
pub use dist::{uses_nccl, Dist};

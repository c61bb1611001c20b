//! Collective communication between workers. Training code talks to a
//! [`Comm`]; a single process uses [`Single`], where every collective is the
//! identity. Gradients go through [`Comm::all_reduce_sum`] as one flat buffer.
use tch::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum CommError {
    #[error("rank {rank}: {op} failed: {message}")]
    Failed {
        rank: usize,
        op: &'static str,
        message: String,
    },
}

pub trait Comm {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Sums `t` over all ranks, in place.
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), CommError>;
    /// Sums host values over all ranks, in place (metrics, agreement flags).
    fn all_reduce_f64(&self, v: &mut [f64]) -> Result<(), CommError>;
    /// Copies rank `root`'s `t` to every rank, in place.
    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), CommError>;
    fn barrier(&self) -> Result<(), CommError>;
}

/// One worker alone.
pub struct Single;

impl Comm for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _t: &mut Tensor) -> Result<(), CommError> {
        Ok(())
    }
    fn all_reduce_f64(&self, _v: &mut [f64]) -> Result<(), CommError> {
        Ok(())
    }
    fn broadcast(&self, _t: &mut Tensor, _root: usize) -> Result<(), CommError> {
        Ok(())
    }
    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }
}

//! The collectives training code talks to, below everything that uses
//! them: [`Comm`] (a job's or a group's ranks), [`BatchScope`] (where a
//! batch's rows are), [`Single`] (one process alone), [`Whole`] and
//! [`RankSlice`], and [`from_rank0`] (rank 0 decides, every rank follows).
//! The implementation over MPI and NCCL is `crate::comm`'s.
use tch::Tensor;

use crate::device::DeviceError;

#[derive(Debug, thiserror::Error)]
pub enum CommError {
    #[error("rank {rank}: {op} failed: {message}")]
    Failed {
        rank: usize,
        op: &'static str,
        message: String,
    },
    #[error("rank {rank}: {message}")]
    Setup { rank: usize, message: String },
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{0}")]
    Config(String),
}

pub trait Comm {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Sums `t` over all ranks; `t` is replaced by the sum.
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), CommError>;
    /// Sums host values over all ranks, in place (metrics, agreement flags).
    fn all_reduce_f64(&self, v: &mut [f64]) -> Result<(), CommError>;
    /// The minimum and maximum of `v` over all ranks.
    fn min_max_f64(&self, v: f64) -> Result<(f64, f64), CommError>;
    /// Whether `flag` is set on any rank (an exact integer reduction: every
    /// rank gets the same answer).
    fn any(&self, flag: bool) -> Result<bool, CommError>;
    /// Every rank's rows of `t` (`[n, ...]`, the same shape on every rank),
    /// concatenated in rank order: `[world · n, ...]`, on `t`'s device, no gradient.
    fn all_gather(&self, t: &Tensor) -> Result<Tensor, CommError>;
    /// Copies rank `root`'s `t` to every rank, in place.
    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), CommError>;
    /// Copies rank `root`'s bytes to every rank (the length too).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<(), CommError>;
    /// Every rank's `bytes`, in rank order, on rank `root` (`None` elsewhere).
    fn gather_bytes(&self, bytes: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>, CommError>;
    fn barrier(&self) -> Result<(), CommError>;
    /// Name of the gradient data plane, for logs.
    fn backend(&self) -> &'static str;
    /// Sends `bytes` to rank `dest` under `tag` (point to point: a sweep's
    /// hand-out of points). Only the job's MPI communicator has it.
    fn send_bytes(&self, _bytes: &[u8], _dest: usize, _tag: i32) -> Result<(), CommError> {
        Err(self.no_point_to_point("send"))
    }
    /// Receives the message under `tag` from rank `src` (waits for it).
    fn recv_bytes(&self, _src: usize, _tag: i32) -> Result<Vec<u8>, CommError> {
        Err(self.no_point_to_point("receive"))
    }
    /// Receives a message under `tag` from any rank when one is waiting:
    /// its sender and bytes; `None` at once when none is.
    fn try_recv_any(&self, _tag: i32) -> Result<Option<(usize, Vec<u8>)>, CommError> {
        Err(self.no_point_to_point("receive"))
    }
    /// The error of a communicator without point-to-point messages.
    fn no_point_to_point(&self, op: &'static str) -> CommError {
        CommError::Failed {
            rank: self.rank(),
            op,
            message: format!(
                "the {} communicator has no point-to-point messages",
                self.backend()
            ),
        }
    }
}

/// Where a batch's rows are. An objective defined on the whole batch (the
/// capacity term on its mean KL, β-TCVAE's minibatch-weighted sampling over
/// all its codes, FactorVAE's permutation of its codes) sees the rest of the
/// batch through this, so it computes the same on any number of workers.
pub trait BatchScope {
    /// Rows of the whole batch.
    fn size(&self) -> i64;
    /// Index of this part's first row in the whole batch.
    fn offset(&self) -> i64;
    /// Rows of this part.
    fn rows(&self) -> i64;
    /// The sum of `t` over every part (small tensors, float or double).
    fn sum(&self, t: &Tensor) -> Result<Tensor, CommError>;
    /// Every part's rows of `t` in batch order, `[size, ...]`, no gradient.
    fn gather(&self, t: &Tensor) -> Result<Tensor, CommError>;
    /// [`BatchScope::gather`] as a leaf that records its gradient: the whole
    /// batch's rows for a term across the batch, whose gradient
    /// [`BatchScope::sum_gradients`] then sums over the parts.
    fn gather_leaf(&self, t: &Tensor) -> Result<Tensor, CommError> {
        Ok(self.gather(t)?.set_requires_grad(true))
    }
    /// The gradient of every part's loss with respect to a tensor of the
    /// whole batch, summed: `g` (`[size, ...]`) is replaced by the sum.
    fn sum_gradients(&self, g: &mut Tensor) -> Result<(), CommError>;
}

/// A batch held whole by one process (one worker, or an evaluation block).
pub struct Whole {
    pub rows: i64,
}

impl BatchScope for Whole {
    fn size(&self) -> i64 {
        self.rows
    }
    fn offset(&self) -> i64 {
        0
    }
    fn rows(&self) -> i64 {
        self.rows
    }
    fn sum(&self, t: &Tensor) -> Result<Tensor, CommError> {
        Ok(t.detach())
    }
    fn gather(&self, t: &Tensor) -> Result<Tensor, CommError> {
        Ok(t.detach())
    }
    fn sum_gradients(&self, _g: &mut Tensor) -> Result<(), CommError> {
        Ok(())
    }
}

/// This rank's slice of a global batch split into equal contiguous slices
/// in rank order (how both data orders deal a global batch).
pub struct RankSlice<'a> {
    pub comm: &'a dyn Comm,
    /// Rows per rank.
    pub rows: i64,
}

impl BatchScope for RankSlice<'_> {
    fn size(&self) -> i64 {
        self.rows * self.comm.world_size() as i64
    }
    fn offset(&self) -> i64 {
        self.rows * self.comm.rank() as i64
    }
    fn rows(&self) -> i64 {
        self.rows
    }
    fn sum(&self, t: &Tensor) -> Result<Tensor, CommError> {
        let mut s = t.detach().copy();
        self.comm.all_reduce_sum(&mut s)?;
        Ok(s)
    }
    fn gather(&self, t: &Tensor) -> Result<Tensor, CommError> {
        self.comm.all_gather(t)
    }
    fn sum_gradients(&self, g: &mut Tensor) -> Result<(), CommError> {
        self.comm.all_reduce_sum(g)
    }
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
    fn min_max_f64(&self, v: f64) -> Result<(f64, f64), CommError> {
        Ok((v, v))
    }
    fn any(&self, flag: bool) -> Result<bool, CommError> {
        Ok(flag)
    }
    fn all_gather(&self, t: &Tensor) -> Result<Tensor, CommError> {
        Ok(t.detach())
    }
    fn broadcast(&self, _t: &mut Tensor, _root: usize) -> Result<(), CommError> {
        Ok(())
    }
    fn broadcast_bytes(&self, _bytes: &mut Vec<u8>, _root: usize) -> Result<(), CommError> {
        Ok(())
    }
    fn gather_bytes(&self, bytes: &[u8], _root: usize) -> Result<Option<Vec<Vec<u8>>>, CommError> {
        Ok(Some(vec![bytes.to_vec()]))
    }
    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "none"
    }
}

/// Rank 0's `value` on every rank: how rank 0 decides a branch every rank
/// takes (sent as JSON, which round-trips every `f64` exactly).
pub fn from_rank0<T>(comm: &dyn Comm, value: T) -> Result<T, CommError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    if comm.world_size() == 1 {
        return Ok(value);
    }
    let failed = |e: serde_json::Error| CommError::Failed {
        rank: comm.rank(),
        op: "broadcast of rank 0's decision",
        message: e.to_string(),
    };
    let mut bytes = if comm.rank() == 0 {
        serde_json::to_vec(&value).map_err(failed)?
    } else {
        Vec::new()
    };
    comm.broadcast_bytes(&mut bytes, 0)?;
    serde_json::from_slice(&bytes).map_err(failed)
}

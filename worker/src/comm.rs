//! Collective communication between workers. Training code talks to a
//! [`Comm`]: [`Single`] for one process; [`Dist`] when started by an MPI
//! launcher (`mpirun`, `srun`, `vae-launch`). MPI is the wire-up (ranks,
//! barriers, broadcast, host-side reductions, the NCCL unique id); gradients
//! travel as one flat buffer through NCCL on GPU (the torch wheel's libnccl,
//! see [`crate::nccl`]) or MPI on CPU.
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::topology::{Communicator, SimpleCommunicator};
use tch::{Device, Tensor};
use vae_proto::config::{Backend, DeviceChoice};

use crate::device::{self, DeviceError, Local};
use crate::nccl::Communicator as NcclComm;

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

/// A worker's place in the job: its collectives (MPI and NCCL under an MPI
/// launcher, [`Single`] otherwise) — the whole job's, and in a sweep its
/// group's — and its device. MPI itself stays initialised until
/// [`finalize`]: an error on any path before that ends the job with
/// `MPI_Abort` ([`abort_job`]), never with a finalize that waits for every
/// other rank.
pub struct Connection {
    /// A sweep's group of ranks training one point (its own communicator).
    group: Option<Dist>,
    world: Option<Dist>,
    pub device: Device,
}

/// MPI, once initialised: kept here (not in a value an error path could
/// drop, which would finalise MPI and wait for the other ranks) until the
/// run ends well ([`finalize`]).
static UNIVERSE: std::sync::Mutex<Option<mpi::environment::Universe>> = std::sync::Mutex::new(None);

/// Finalises MPI after a successful run, once `conn` (every communicator) is gone.
pub fn finalize(conn: Connection) {
    drop(conn);
    if let Ok(mut u) = UNIVERSE.lock() {
        drop(u.take());
    }
}

/// The rank an MPI launcher gave this process in its environment (before
/// MPI is initialised; 0 outside one).
pub fn env_rank() -> usize {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "PMI_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(0)
}

impl Connection {
    /// The communicator training runs on: the group's in a sweep, else the job's.
    pub fn comm(&self) -> &dyn Comm {
        match (&self.group, &self.world) {
            (Some(g), _) => g,
            (None, Some(w)) => w,
            _ => &Single,
        }
    }

    /// The whole job's communicator.
    pub fn world(&self) -> &dyn Comm {
        match &self.world {
            Some(w) => w,
            None => &Single,
        }
    }
}

/// Joins the job this process was started in: initialises MPI when an MPI
/// launcher started it, picks the device (on GPU, the node-local rank's),
/// splits the job into groups of `ranks_per_point` ranks for a sweep (a
/// collective over the whole job), and sets up the gradient data plane
/// `backend` asks for on the communicator training uses (in a sweep, NCCL's
/// unique id is broadcast within the group).
pub fn connect(
    choice: DeviceChoice,
    backend: Backend,
    ranks_per_point: Option<usize>,
) -> Result<Connection, CommError> {
    let mut world = None;
    if launched_by_mpi() {
        let universe = mpi::initialize().ok_or(CommError::Setup {
            rank: env_rank(),
            message: "MPI was already initialised".into(),
        })?;
        world = Some(Dist::world(&universe));
        if let Ok(mut u) = UNIVERSE.lock() {
            *u = Some(universe);
        }
    }
    crate::train::faults::connect().map_err(|message| CommError::Setup {
        rank: env_rank(),
        message,
    })?;
    let local = world
        .as_ref()
        .map_or(Local { rank: 0, size: 1 }, Dist::local);
    // Every rank takes the same kind of device: CUDA for `auto` only when
    // every rank has one, so no rank joins NCCL while another stays on MPI.
    let here = device::cuda_devices();
    let everywhere = match &world {
        Some(w) => w.min_usize(here),
        None => here,
    };
    let nccl_on_cuda = uses_nccl(backend, Device::Cuda(0)).unwrap_or(false);
    let device = device::pick(choice, local, nccl_on_cuda, here, everywhere)?;
    // Checked here too for a worker outside MPI, which has no Dist.
    uses_nccl(backend, device).map_err(CommError::Config)?;
    let mut group = match (&world, ranks_per_point) {
        (Some(w), Some(rpp)) => Some(w.split(w.rank / rpp.max(1))?),
        _ => None,
    };
    if let Some(d) = group.as_mut().or(world.as_mut()) {
        d.setup_backend(backend, device)?;
    }
    Ok(Connection {
        group,
        world,
        device,
    })
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

/// Whether an MPI launcher started this process (Open MPI's mpirun, or a
/// PMI/PMIx launcher such as srun).
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// Whether `backend` puts gradients on NCCL for a worker on `device`; an
/// error when it asks for NCCL on a CPU worker.
pub fn uses_nccl(backend: Backend, device: Device) -> Result<bool, String> {
    match backend {
        Backend::Mpi => Ok(false),
        Backend::Auto => Ok(device.is_cuda()),
        Backend::Nccl if device.is_cuda() => Ok(true),
        Backend::Nccl => Err(
            "config key `dist.backend`: \"nccl\" needs CUDA devices; this worker runs on the CPU"
                .into(),
        ),
    }
}

/// Ends every process of the job (after a fatal error or a panic on one rank,
/// so the others never wait forever in a collective). No-op outside MPI.
pub fn abort_job(code: i32) {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        SimpleCommunicator::world().abort(code);
    }
}

/// Workers started by an MPI launcher, over one communicator (the job's,
/// or a sweep group's). Tensor collectives run on NCCL when `nccl` is set
/// (CUDA tensors), else on MPI over host memory.
pub struct Dist {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    nccl: Option<NcclComm>,
}

impl Dist {
    /// The job's communicator. Call [`Dist::setup_backend`] once the device is known.
    fn world(universe: &mpi::environment::Universe) -> Dist {
        Dist::over(universe.world())
    }

    /// The smallest of every rank's `v`.
    fn min_usize(&self, v: usize) -> usize {
        let mut min = 0u64;
        self.world
            .all_reduce_into(&(v as u64), &mut min, SystemOperation::min());
        min as usize
    }

    fn over(world: SimpleCommunicator) -> Dist {
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Dist {
            world,
            rank,
            size,
            nccl: None,
        }
    }

    /// This rank's place among the ranks on its node that see the same GPUs:
    /// the node from MPI's shared-memory split (`MPI_Comm_split_type`, which
    /// knows it under `mpirun`, `srun` and any launcher alike), the GPUs from
    /// `CUDA_VISIBLE_DEVICES` (SLURM's `--gpus-per-task=1` shows each rank
    /// one GPU of its own; then each takes its first). A collective.
    fn local(&self) -> Local {
        let node = self.world.split_shared(self.rank as i32);
        let mine = device::visible_key();
        let mut keys = vec![0u64; node.size() as usize];
        node.all_gather_into(&mine, &mut keys[..]);
        device::among_same_visible(&keys, node.rank() as usize)
    }

    /// The communicator of the ranks whose `color` is this rank's (ranks
    /// keep their order). A collective: every rank calls it.
    pub fn split(&self, color: usize) -> Result<Dist, CommError> {
        use mpi::topology::Color;
        let sub = self
            .world
            .split_by_color_with_key(Color::with_value(color as i32), self.rank as i32)
            .ok_or(CommError::Setup {
                rank: self.rank,
                message: format!("MPI gave no communicator for group {color}"),
            })?;
        Ok(Dist::over(sub))
    }

    /// Chooses the gradient data plane for `device` as `backend` asks.
    pub fn setup_backend(&mut self, backend: Backend, device: Device) -> Result<(), CommError> {
        let use_nccl = uses_nccl(backend, device).map_err(|message| CommError::Setup {
            rank: self.rank,
            message,
        })?;
        if use_nccl {
            let Device::Cuda(ordinal) = device else {
                unreachable!("checked above")
            };
            let setup = |e: crate::nccl::NcclError| CommError::Setup {
                rank: self.rank,
                message: e.to_string(),
            };
            // Every rank checks for the library before rank 0 broadcasts.
            let lib = crate::nccl::library().map_err(setup)?;
            let mut id = if self.rank == 0 {
                lib.unique_id().map_err(setup)?
            } else {
                [0u8; 128]
            };
            self.world.process_at_rank(0).broadcast_into(&mut id[..]);
            let comm = NcclComm::new(ordinal, self.rank, self.size, id).map_err(setup)?;
            // The watchdog polls the communicator's asynchronous error state
            // and aborts it on an error, so a failed peer ends the job
            // instead of hanging it.
            crate::watchdog::hook(Box::new(comm.error_poller()));
            self.nccl = Some(comm);
        }
        Ok(())
    }

    /// Sums a float or double tensor over ranks through host memory, straight
    /// into a new tensor (no staging copies).
    fn host_all_reduce<T: mpi::datatype::Equivalence>(
        &self,
        t: &mut Tensor,
    ) -> Result<(), CommError> {
        let host = t.to_device(Device::Cpu).contiguous();
        let out = host.empty_like();
        let n = host.numel();
        // SAFETY: `host` and `out` are distinct contiguous CPU tensors of `n`
        // elements of kind T, alive for the whole call.
        let (send, recv) = unsafe {
            (
                std::slice::from_raw_parts(host.data_ptr() as *const T, n),
                std::slice::from_raw_parts_mut(out.data_ptr() as *mut T, n),
            )
        };
        // MPI counts are C ints: reduce in chunks of at most 2^30 elements.
        const CHUNK: usize = 1 << 30;
        for (s, r) in send.chunks(CHUNK).zip(recv.chunks_mut(CHUNK)) {
            self.world.all_reduce_into(s, r, SystemOperation::sum());
        }
        *t = if t.device() == Device::Cpu {
            out
        } else {
            out.to_device(t.device())
        };
        Ok(())
    }

    /// Gathers every rank's rows of a float or double tensor through host memory.
    fn host_all_gather<T: mpi::datatype::Equivalence>(
        &self,
        t: &Tensor,
    ) -> Result<Tensor, CommError> {
        let host = t.detach().to_device(Device::Cpu).contiguous();
        let mut shape = host.size();
        if shape.is_empty() {
            shape.push(1);
        }
        shape[0] *= self.size as i64;
        let out = Tensor::empty(shape.as_slice(), (host.kind(), Device::Cpu));
        let n = host.numel();
        // SAFETY: `host` is a contiguous CPU tensor of `n` elements of kind T;
        // `out` one of `size · n`, distinct, both alive for the whole call.
        let (send, recv) = unsafe {
            (
                std::slice::from_raw_parts(host.data_ptr() as *const T, n),
                std::slice::from_raw_parts_mut(out.data_ptr() as *mut T, n * self.size),
            )
        };
        self.world.all_gather_into(send, recv);
        Ok(out.to_device(t.device()))
    }

    fn host_broadcast<T: mpi::datatype::Equivalence>(&self, host: &mut Tensor, root: usize) {
        let n = host.numel();
        // SAFETY: `host` is a contiguous CPU tensor of `n` elements of kind T.
        let buf: &mut [T] = unsafe { std::slice::from_raw_parts_mut(host.data_ptr() as *mut T, n) };
        self.world.process_at_rank(root as i32).broadcast_into(buf);
    }
}

impl Comm for Dist {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), CommError> {
        match &self.nccl {
            Some(n) if t.device().is_cuda() => {
                let failed = |message: String| CommError::Failed {
                    rank: self.rank,
                    op: "NCCL all-reduce",
                    message,
                };
                let double = match t.kind() {
                    tch::Kind::Float => false,
                    tch::Kind::Double => true,
                    k => return Err(failed(format!("{k:?} tensors are not supported"))),
                };
                let c = t.contiguous();
                // SAFETY: `c` is a contiguous CUDA tensor of `numel` elements of
                // that kind on this rank's device, alive for the call; NCCL runs
                // on the legacy default stream, where torch's kernels run too.
                unsafe { n.all_reduce_sum(c.data_ptr(), c.numel(), double) }
                    .map_err(|e| failed(e.to_string()))?;
                *t = c;
                Ok(())
            }
            _ => match t.kind() {
                tch::Kind::Float => self.host_all_reduce::<f32>(t),
                tch::Kind::Double => self.host_all_reduce::<f64>(t),
                k => Err(CommError::Failed {
                    rank: self.rank,
                    op: "all-reduce",
                    message: format!("{k:?} tensors are not supported"),
                }),
            },
        }
    }
    fn all_reduce_f64(&self, v: &mut [f64]) -> Result<(), CommError> {
        let send = v.to_vec();
        self.world
            .all_reduce_into(&send[..], v, SystemOperation::sum());
        Ok(())
    }
    fn min_max_f64(&self, v: f64) -> Result<(f64, f64), CommError> {
        let (mut lo, mut hi) = (0f64, 0f64);
        self.world
            .all_reduce_into(&v, &mut lo, SystemOperation::min());
        self.world
            .all_reduce_into(&v, &mut hi, SystemOperation::max());
        Ok((lo, hi))
    }
    fn any(&self, flag: bool) -> Result<bool, CommError> {
        let mut any = 0i32;
        self.world
            .all_reduce_into(&i32::from(flag), &mut any, SystemOperation::max());
        Ok(any > 0)
    }
    fn all_gather(&self, t: &Tensor) -> Result<Tensor, CommError> {
        match t.kind() {
            tch::Kind::Float => self.host_all_gather::<f32>(t),
            tch::Kind::Double => self.host_all_gather::<f64>(t),
            k => Err(CommError::Failed {
                rank: self.rank,
                op: "all-gather",
                message: format!("{k:?} tensors are not supported"),
            }),
        }
    }
    fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), CommError> {
        let mut host = t.to_device(Device::Cpu).contiguous();
        match t.kind() {
            tch::Kind::Float => self.host_broadcast::<f32>(&mut host, root),
            tch::Kind::Double => self.host_broadcast::<f64>(&mut host, root),
            k => {
                return Err(CommError::Failed {
                    rank: self.rank,
                    op: "broadcast",
                    message: format!("{k:?} tensors are not supported"),
                })
            }
        }
        tch::no_grad(|| t.f_copy_(&host.to_device(t.device()))).map_err(|e| CommError::Failed {
            rank: self.rank,
            op: "broadcast",
            message: e.to_string(),
        })?;
        Ok(())
    }
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<(), CommError> {
        let from = self.world.process_at_rank(root as i32);
        let mut len = bytes.len() as u64;
        from.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        from.broadcast_into(&mut bytes[..]);
        Ok(())
    }
    fn gather_bytes(&self, bytes: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>, CommError> {
        use mpi::datatype::PartitionMut;
        let to = self.world.process_at_rank(root as i32);
        let n = i32::try_from(bytes.len()).map_err(|_| CommError::Failed {
            rank: self.rank,
            op: "gather",
            message: format!("{} bytes is more than one message takes", bytes.len()),
        })?;
        if self.rank != root {
            to.gather_into(&n);
            to.gather_varcount_into(bytes);
            return Ok(None);
        }
        let mut counts = vec![0i32; self.size];
        to.gather_into_root(&n, &mut counts[..]);
        let displs: Vec<i32> = counts
            .iter()
            .scan(0, |at, &c| {
                let d = *at;
                *at += c;
                Some(d)
            })
            .collect();
        let mut all = vec![0u8; counts.iter().map(|&c| c as usize).sum()];
        let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
        to.gather_varcount_into_root(bytes, &mut part);
        Ok(Some(
            counts
                .iter()
                .zip(&displs)
                .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
                .collect(),
        ))
    }
    fn barrier(&self) -> Result<(), CommError> {
        self.world.barrier();
        Ok(())
    }
    fn backend(&self) -> &'static str {
        if self.nccl.is_some() {
            "nccl"
        } else {
            "mpi"
        }
    }
}

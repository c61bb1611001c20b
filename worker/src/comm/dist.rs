//! [`Dist`]: workers started by an MPI launcher, over one communicator:
//! host-side collectives over MPI, tensor collectives over NCCL on CUDA
//! devices (the torch wheel's libnccl, [`crate::nccl`]).
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::point_to_point::{Destination, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use tch::{Device, Tensor};
use vae_proto::config::Backend;

use crate::collective::{Comm, CommError};
use crate::device::{self, Local};
use crate::nccl::Communicator as NcclComm;

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
    pub(super) fn world(universe: &mpi::environment::Universe) -> Dist {
        Dist::over(universe.world())
    }

    /// The smallest of every rank's `v`.
    pub(super) fn min_usize(&self, v: usize) -> usize {
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
    pub(super) fn local(&self) -> Local {
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
    fn send_bytes(&self, bytes: &[u8], dest: usize, tag: i32) -> Result<(), CommError> {
        self.world
            .process_at_rank(dest as i32)
            .send_with_tag(bytes, tag);
        Ok(())
    }
    fn recv_bytes(&self, src: usize, tag: i32) -> Result<Vec<u8>, CommError> {
        let (bytes, _) = self
            .world
            .process_at_rank(src as i32)
            .receive_vec_with_tag::<u8>(tag);
        Ok(bytes)
    }
    fn try_recv_any(&self, tag: i32) -> Result<Option<(usize, Vec<u8>)>, CommError> {
        let Some(status) = self.world.any_process().immediate_probe_with_tag(tag) else {
            return Ok(None);
        };
        let from = status.source_rank();
        let (bytes, _) = self
            .world
            .process_at_rank(from)
            .receive_vec_with_tag::<u8>(tag);
        Ok(Some((from as usize, bytes)))
    }
    fn backend(&self) -> &'static str {
        if self.nccl.is_some() {
            "nccl"
        } else {
            "mpi"
        }
    }
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

//! Joining the job: MPI when an MPI launcher started this process, the
//! device, a sweep's groups and the gradient data plane ([`connect`]); the
//! end of it ([`finalize`], or [`abort_job`] on a fatal error).
use mpi::topology::{Communicator, SimpleCommunicator};
use tch::Device;
use vae_proto::config::{Backend, DeviceChoice};

use super::dist::{uses_nccl, Dist};
use crate::collective::{Comm, CommError, Single};
use crate::device::{self, Local};

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
    if vae_proto::console::launched_by_mpi() {
        let universe = mpi::initialize().ok_or(CommError::Setup {
            rank: vae_proto::console::env_rank(),
            message: "MPI was already initialised".into(),
        })?;
        world = Some(Dist::world(&universe));
        if let Ok(mut u) = UNIVERSE.lock() {
            *u = Some(universe);
        }
    }
    crate::faults::connect().map_err(|message| CommError::Setup {
        rank: vae_proto::console::env_rank(),
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
        (Some(w), Some(rpp)) => Some(w.split(w.rank() / rpp.max(1))?),
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

/// Ends every process of the job (after a fatal error or a panic on one rank,
/// so the others never wait forever in a collective). No-op outside MPI.
pub fn abort_job(code: i32) {
    if mpi::environment::is_initialized() && !mpi::environment::is_finalized() {
        SimpleCommunicator::world().abort(code);
    }
}

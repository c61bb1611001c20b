//! Where tensors live and in what precision: the device a worker trains on
//! (`train.device`; on GPU the node-local rank's device) and the tensor kind
//! of `train.dtype`.
use tch::{Device, Kind};
use vae_proto::config::{DeviceChoice, Dtype};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("config key `train.device`: \"cuda\" asked for, but libtorch sees no CUDA device")]
    NoCuda,
    #[error("{workers} workers on host {host} share {gpus} CUDA device(s): NCCL needs one GPU per worker; start at most {gpus} per node (vae-launch --nproc-per-node auto) or set dist.backend = \"mpi\"")]
    TooFewGpus {
        workers: usize,
        gpus: usize,
        host: String,
    },
}

/// This worker's place on its node: its rank among the node's workers, and
/// how many there are (from MPI's shared-memory split, or 0 of 1 alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Local {
    pub rank: usize,
    pub size: usize,
}

/// The device for `choice` on the worker at `local` whose gradients go over
/// NCCL when `nccl` would be chosen on CUDA.
pub fn pick(choice: DeviceChoice, local: Local, nccl_on_cuda: bool) -> Result<Device, DeviceError> {
    let gpus = if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    };
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if gpus == 0 => Ok(Device::Cpu),
        _ if gpus == 0 => Err(DeviceError::NoCuda),
        _ => gpu_for(local, gpus, nccl_on_cuda).map(Device::Cuda),
    }
}

/// The ordinal of the GPU for the worker at `local` among `gpus` GPUs: its
/// node-local rank. Workers may share a GPU only off NCCL (one NCCL rank per
/// device), so with NCCL more workers than GPUs on a node is an error.
pub fn gpu_for(local: Local, gpus: usize, nccl: bool) -> Result<usize, DeviceError> {
    if nccl && local.size > gpus {
        return Err(DeviceError::TooFewGpus {
            workers: local.size,
            gpus,
            host: host_name(),
        });
    }
    Ok(local.rank % gpus.max(1))
}

/// This machine's host name (for messages).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map_or_else(|| "?".into(), |h| h.trim().to_string())
}

/// The tensor kind of `dtype`.
pub fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::Float32 => Kind::Float,
        Dtype::Float64 => Kind::Double,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gpu_is_the_node_local_rank() {
        let at = |rank, size| Local { rank, size };
        assert_eq!(gpu_for(at(0, 4), 4, true).ok(), Some(0));
        assert_eq!(gpu_for(at(3, 4), 4, true).ok(), Some(3));
        assert_eq!(gpu_for(at(1, 2), 8, true).ok(), Some(1));
        // Off NCCL, workers may share devices round-robin.
        assert_eq!(gpu_for(at(5, 6), 4, false).ok(), Some(1));
    }

    #[test]
    fn more_nccl_workers_than_gpus_is_refused_with_one_line() {
        let e = gpu_for(Local { rank: 0, size: 3 }, 2, true).unwrap_err();
        let line = e.to_string();
        assert!(
            line.contains("3 workers") && line.contains("2 CUDA device"),
            "{line}"
        );
        assert!(
            line.contains("dist.backend") && !line.contains('\n'),
            "{line}"
        );
    }
}

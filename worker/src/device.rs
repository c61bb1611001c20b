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

/// The CUDA devices this process sees.
pub fn cuda_devices() -> usize {
    if tch::Cuda::is_available() {
        tch::Cuda::device_count().max(0) as usize
    } else {
        0
    }
}

/// The device for `choice` on the worker at `local`, which sees `gpus` CUDA
/// devices while every rank of the job sees at least `everywhere`; its
/// gradients go over NCCL when `nccl_on_cuda` and it is on CUDA. `auto`
/// takes CUDA only when every rank can, so all ranks agree on the device
/// kind (and so on the backend).
pub fn pick(
    choice: DeviceChoice,
    local: Local,
    nccl_on_cuda: bool,
    gpus: usize,
    everywhere: usize,
) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if everywhere == 0 => Ok(Device::Cpu),
        _ if gpus == 0 => Err(DeviceError::NoCuda),
        _ => gpu_for(local, gpus, nccl_on_cuda).map(Device::Cuda),
    }
}

/// A key for the GPUs this process may use (`CUDA_VISIBLE_DEVICES`, or all):
/// ranks with the same key share the same devices.
pub fn visible_key() -> u64 {
    use std::hash::{Hash, Hasher};
    let v = std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "(all)".into());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.trim().hash(&mut h);
    h.finish()
}

/// The place of node-local rank `me` among the node's ranks that see the
/// same GPUs (`keys[r]`: node-local rank r's [`visible_key`]): its index
/// among them picks its device, and their number is how many share them.
pub fn among_same_visible(keys: &[u64], me: usize) -> Local {
    let mine = keys.get(me).copied().unwrap_or(0);
    Local {
        rank: keys[..me.min(keys.len())]
            .iter()
            .filter(|k| **k == mine)
            .count(),
        size: keys.iter().filter(|k| **k == mine).count().max(1),
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
    fn gpus_per_task_gives_each_rank_its_own_visible_device() {
        // SLURM --gpus-per-task=1: four ranks on a node, each seeing one
        // (different) GPU: each takes device 0 of its own, no refusal.
        let keys = [11, 22, 33, 44];
        for me in 0..4 {
            let l = among_same_visible(&keys, me);
            assert_eq!(l, Local { rank: 0, size: 1 });
            assert_eq!(gpu_for(l, 1, true).ok(), Some(0));
        }
        // All ranks see the same four GPUs: the node-local rank picks.
        let same = [7, 7, 7, 7];
        let l = among_same_visible(&same, 2);
        assert_eq!(l, Local { rank: 2, size: 4 });
        assert_eq!(gpu_for(l, 4, true).ok(), Some(2));
        // Two groups of two (--gpus-per-task=2 style).
        let pairs = [1, 1, 2, 2];
        assert_eq!(among_same_visible(&pairs, 3), Local { rank: 1, size: 2 });
    }

    #[test]
    fn auto_takes_cuda_only_where_every_rank_has_it() {
        let l = Local { rank: 0, size: 1 };
        assert_eq!(
            pick(DeviceChoice::Auto, l, true, 0, 0).ok(),
            Some(Device::Cpu)
        );
        // This rank has a GPU but another has none: CPU here too.
        assert_eq!(
            pick(DeviceChoice::Auto, l, true, 2, 0).ok(),
            Some(Device::Cpu)
        );
        assert_eq!(
            pick(DeviceChoice::Cpu, l, true, 2, 2).ok(),
            Some(Device::Cpu)
        );
        assert!(pick(DeviceChoice::Cuda, l, true, 0, 0).is_err());
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

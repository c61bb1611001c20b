//! Where tensors live and in what precision: the device a worker trains on
//! (`train.device`; on GPU the node-local rank's device) and the tensor kind
//! of `train.dtype`.
use tch::{Device, Kind};
use vae_proto::config::{DeviceChoice, Dtype};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("config key `train.device`: \"cuda\" asked for, but libtorch sees no CUDA device")]
    NoCuda,
}

/// The device for `choice` on the worker of node-local rank `local_rank`.
pub fn pick(choice: DeviceChoice, local_rank: usize) -> Result<Device, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto if !tch::Cuda::is_available() => Ok(Device::Cpu),
        _ if tch::Cuda::is_available() => Ok(Device::Cuda(
            local_rank % tch::Cuda::device_count().max(1) as usize,
        )),
        _ => Err(DeviceError::NoCuda),
    }
}

/// The tensor kind of `dtype`.
pub fn kind_of(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::Float32 => Kind::Float,
        Dtype::Float64 => Kind::Double,
    }
}

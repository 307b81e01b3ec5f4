//! Host values onto the training device without waiting for it. A plain `to_device` from host
//! memory is a blocking copy, after which libtorch synchronises the CUDA stream: the host waits
//! for every kernel queued before it (most of a step, when the copy comes late in one).
//! Copied asynchronously, a small buffer in ordinary (pageable) memory is staged by the driver
//! before the call returns, so it may be dropped at once, and the copy queues behind the work
//! already queued. (A large pageable buffer is staged in chunks that do wait: batches travel
//! pinned, through the host's loader.)

use crate::Result;
use tch::{Device, Tensor};

/// A small host tensor `t` on `device`, copied without waiting for the device (the same
/// tensor when it is there already). Any other copy (from a device, or to the host) is the
/// ordinary blocking one: reading a device value back always waits.
pub fn upload(t: &Tensor, device: Device) -> Result<Tensor> {
    if t.device() == device {
        return Ok(t.shallow_clone());
    }
    let from_host = t.device() == Device::Cpu;
    Ok(t.f_to_device_(device, t.kind(), from_host, false)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_to_the_tensors_own_device_is_the_tensor() {
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        let same = upload(&t, Device::Cpu).unwrap();
        assert_eq!(same.data_ptr(), t.data_ptr());
    }
}

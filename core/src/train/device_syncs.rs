//! The host's waits for the GPU inside training steps, counted (`device_syncs_per_step` in the
//! metrics of a CUDA run). [`super::host_read`] counts the trainer's own reads; this counts
//! every synchronising CUDA call libtorch makes on the training thread during a step, a
//! plugin's included: a blocking copy to or from the device, `.item()`, `nonzero`, a boolean
//! mask index. Through c10's sync debug mode (`csrc/syncs.cpp`); unavailable without CUDA.

use tch::Device;

extern "C" {
    fn pt_syncs_begin() -> std::ffi::c_int;
    fn pt_syncs_end();
    fn pt_syncs_count() -> u64;
}

/// While it lives, this thread's synchronising CUDA calls are counted.
pub(super) struct SyncCount(());

impl SyncCount {
    /// Counting for a step on `device`: None off CUDA or where libtorch cannot count.
    pub(super) fn begin(device: Device) -> Option<SyncCount> {
        // SAFETY: no arguments; the shim catches every C++ exception.
        (device.is_cuda() && unsafe { pt_syncs_begin() } == 1).then_some(SyncCount(()))
    }
}

impl Drop for SyncCount {
    fn drop(&mut self) {
        // SAFETY: no arguments; the shim catches every C++ exception.
        unsafe { pt_syncs_end() }
    }
}

/// Synchronising calls counted so far in this process.
pub(super) fn syncs_so_far() -> u64 {
    // SAFETY: reads an atomic counter.
    unsafe { pt_syncs_count() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_counted_off_cuda() {
        assert!(SyncCount::begin(Device::Cpu).is_none());
        let before = syncs_so_far();
        let t = tch::Tensor::from_slice(&[1.0f32, 2.0]).sum(tch::Kind::Float);
        assert_eq!(f64::try_from(&t).unwrap(), 3.0);
        assert_eq!(syncs_so_far(), before);
        // With a CUDA libtorch the shim switches the debug mode on and off again without a GPU;
        // CPU work inside counts nothing.
        // SAFETY: no arguments; the shim catches every C++ exception.
        if unsafe { pt_syncs_begin() } == 1 {
            let _ = tch::Tensor::from_slice(&[1.0f32]).f_to_device(Device::Cpu).unwrap();
            unsafe { pt_syncs_end() };
            assert_eq!(syncs_so_far(), before);
        }
    }
}
